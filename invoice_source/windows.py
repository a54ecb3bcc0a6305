"""Dates given by users (config, CLI) turned into the instants the sources filter on."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pendulum

from invoice_source.errors import ConfigurationError


def parse_instant(value: object, *, key: str) -> datetime | None:
    """An ISO date or datetime (string, ``date``, ``datetime`` or unix seconds) as aware UTC.

    ``key`` names the setting in the error raised for a value that is not a date.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = pendulum.parse(value, tz="UTC")
        except (ValueError, pendulum.parsing.exceptions.ParserError) as exc:
            raise ConfigurationError(
                f"{key}: {value!r} is not a date; use YYYY-MM-DD or an ISO 8601 datetime"
            ) from exc
        if isinstance(parsed, datetime):
            return parsed.astimezone(timezone.utc)
        if isinstance(parsed, date):
            return datetime(parsed.year, parsed.month, parsed.day, tzinfo=timezone.utc)
    raise ConfigurationError(f"{key}: {value!r} is not a date; use YYYY-MM-DD")


def parse_window(
    start_date: object, end_date: object, *, section: str
) -> tuple[datetime | None, datetime | None]:
    """Parse a ``[start_date, end_date)`` window; refuse one that ends before it starts."""
    start = parse_instant(start_date, key=f"{section}.start_date")
    end = parse_instant(end_date, key=f"{section}.end_date")
    if start is not None and end is not None and end <= start:
        raise ConfigurationError(
            f"{section}: end_date {end.isoformat()} is not after start_date {start.isoformat()}"
        )
    return start, end
