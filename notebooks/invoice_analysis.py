"""What the analyst notebooks in this folder share: where the data is, queries, money and charts.

Not a notebook itself (marimo lists only files that create a ``marimo.App``); every notebook
imports it in its setup cell. A notebook reads its settings from its own command line
(``marimo edit notebooks/receivables.py -- --duckdb PATH``, ``python notebooks/receivables.py
--duckdb PATH``), else from dlt config (``[invoice_sync]`` in ``.dlt/config.toml`` or
``INVOICE_SYNC__DUCKDB``-style env vars), else from the defaults below.

Queries go through dlt's SQL client (:func:`dlt.dataset`), so the same notebook reads the local
DuckDB file or a warehouse configured as a dlt destination (credentials from dlt config, e.g.
``DESTINATION__POSTGRES__CREDENTIALS``). Their SQL sticks to what DuckDB and PostgreSQL share,
like the models; ``{{ table }}`` names a table of the dataset. Money stays ``Decimal`` from the
warehouse to the table cells; charts get floats of amounts already summed exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import dlt
from invoice_source.errors import ConfigurationError
from invoice_source.models import existing_tables, load_models, render
from invoice_source.money import format_amount, to_major
from invoice_source.pipeline import DEFAULT_DATASET, DEFAULT_DUCKDB_FILE

SETTINGS_SECTION = "invoice_sync"
NOTEBOOKS_DIR = Path(__file__).resolve().parent
REPOSITORY_DIR = NOTEBOOKS_DIR.parent
# dialects whose sessions are switched to UTC, so months and days are counted in UTC everywhere
UTC_SESSION_SQL = {"duckdb": "SET TIME ZONE 'UTC'", "postgres": "SET TIME ZONE 'UTC'"}
# the common statuses of invoice_history, in lifecycle order, with a colour each for charts
STATUS_ORDER = ("draft", "open", "paid", "uncollectible", "void", "unknown")
STATUS_COLORS = ("#9ca3af", "#3b82f6", "#16a34a", "#dc2626", "#525252", "#eab308")
# receivables aging: days past due (or since issue), as analysts bucket them
AGING_BUCKETS = ("not yet due", "0–30", "31–60", "61–90", "90+")
AGING_COLORS = ("#a3a3a3", "#facc15", "#fb923c", "#ef4444", "#991b1b")
# width of an exported chart whose width follows its container in the notebook
EXPORT_WIDTH = 720
JSONValue = str | int | float | bool | None


class Arguments(Protocol):
    """A notebook's command-line arguments (``mo.cli_args()``, or a plain dict)."""

    def get(self, key: str) -> Any:
        """The value of ``--key``, None when absent."""
        ...


@dataclass(frozen=True)
class NotebookSettings:
    """Where a notebook reads from, the day it reports as of, and where it writes its charts."""

    duckdb_path: Path | None
    destination: str | None
    dataset: str
    as_of: dt.date
    charts_dir: Path | None

    @classmethod
    def resolve(cls, cli_args: Arguments | None = None) -> NotebookSettings:
        """Settings from the notebook's arguments, then dlt config, then defaults.

        Arguments: ``--duckdb PATH``, ``--destination NAME``, ``--dataset NAME``,
        ``--as-of YYYY-MM-DD``, ``--charts-dir DIR``. dlt config keys (``[invoice_sync]``):
        ``duckdb``, ``destination``, ``dataset``, ``as_of``, ``charts_dir``.
        """
        args = cli_args or {}
        destination = _setting(args, "destination")
        duckdb_value = _setting(args, "duckdb")
        if destination and destination.endswith(".duckdb"):
            duckdb_value, destination = destination, None
        if destination == "duckdb":
            destination = None
        duckdb_path = None
        if destination is None:
            duckdb_path = find_duckdb_file(duckdb_value or DEFAULT_DUCKDB_FILE)
        as_of_value = _setting(args, "as_of")
        try:
            as_of = dt.date.fromisoformat(as_of_value) if as_of_value else utc_today()
        except ValueError:
            raise ConfigurationError(
                f"as_of {as_of_value!r} is not a date (YYYY-MM-DD): fix --as-of or"
                f" {SETTINGS_SECTION.upper()}__AS_OF"
            ) from None
        charts_dir = _setting(args, "charts_dir")
        return cls(
            duckdb_path=duckdb_path,
            destination=destination,
            dataset=_setting(args, "dataset") or DEFAULT_DATASET,
            as_of=as_of,
            charts_dir=Path(charts_dir).resolve() if charts_dir else None,
        )

    @property
    def location(self) -> str:
        """Where the data is read from, for the notebook's header (never a credential)."""
        if self.duckdb_path is not None:
            return f"DuckDB file `{self.duckdb_path}`, dataset `{self.dataset}`"
        return f"destination `{self.destination}`, dataset `{self.dataset}`"


def _setting(cli_args: Arguments, key: str) -> str | None:
    """``--key`` / ``--key-with-dashes`` from the command line, else ``invoice_sync.key``."""
    for name in (key.replace("_", "-"), key):
        value = cli_args.get(name)
        if value not in (None, ""):
            return str(value)
    configured: Any = dlt.config.get(f"{SETTINGS_SECTION}.{key}")
    return str(configured) if configured not in (None, "") else None


def utc_today() -> dt.date:
    """Today's date in UTC."""
    return dt.datetime.now(dt.timezone.utc).date()


def find_duckdb_file(value: str) -> Path:
    """The DuckDB file ``value``; a relative path is looked up from the working directory, then
    from the repository root (where ``invoice-sync run`` and ``make demo`` write it)."""
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPOSITORY_DIR / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = " or ".join(str(c) for c in candidates)
    raise ConfigurationError(
        f"no DuckDB file at {looked}: run `make demo` (or `invoice-sync run all`) first, or point"
        f" the notebook at the file with `-- --duckdb PATH` or {SETTINGS_SECTION.upper()}__DUCKDB"
    )


class Warehouse:
    """The dataset a notebook reads, through dlt's SQL client (a DuckDB file or a warehouse)."""

    def __init__(self, settings: NotebookSettings) -> None:
        self.settings = settings
        destination: Any = (
            dlt.destinations.duckdb(str(settings.duckdb_path))
            if settings.duckdb_path is not None
            else settings.destination
        )
        self.dataset = dlt.dataset(destination, settings.dataset)
        self._tables: set[str] | None = None

    def tables(self) -> set[str]:
        """Names of the tables in the dataset (read once)."""
        if self._tables is None:
            with self.dataset.sql_client as client:
                self._tables = existing_tables(client) if client.has_dataset() else set()
        return self._tables

    def has_table(self, name: str) -> bool:
        """Whether the dataset has table ``name``."""
        return name in self.tables()

    def missing_tables(self, *names: str) -> list[str]:
        """Those of ``names`` the dataset does not have."""
        return [name for name in names if not self.has_table(name)]

    def sql_client(self) -> Any:
        """dlt's SQL client of the dataset, so project helpers that take a pipeline
        (``invoice_source.models.reports.read_report``) take a warehouse too."""
        return self.dataset.sql_client

    def rows_where(
        self, table: str, column: str, values: Sequence[Any], order_by: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Every row of ``table`` whose ``column`` is one of ``values`` (names come from the
        notebooks, never from input; values are bound as parameters)."""
        if not values:
            return []
        placeholders = ", ".join(["%s"] * len(values))
        order = f" order by {', '.join(order_by)}" if order_by else ""
        return self.query(
            f"select * from {{{{ {table} }}}} where {column} in ({placeholders}){order}", *values
        )

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Rows of ``sql`` as dicts; ``{{ table }}`` is qualified, ``%s`` binds ``params``."""
        with self.dataset.sql_client as client:
            utc = UTC_SESSION_SQL.get(str(client.capabilities.sqlglot_dialect))
            if utc:
                client.execute_sql(utc)
            with client.execute_query(render(sql, client), *params) as cursor:
                columns = [column[0] for column in cursor.description]
                return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def check_explanations(model_name: str) -> dict[str, str]:
    """What each check of a report model means, from its SQL header (``--   name   meaning``)."""
    for model in load_models():
        if model.name == model_name:
            return {
                match.group(1): match.group(2).strip()
                for match in re.finditer(r"^--\s+(\w+)\s{2,}(\S.*)$", model.sql, re.MULTILINE)
            }
    return {}


def major_unit_columns(rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Columns of report rows that hold exact major-unit amounts (``*_major``)."""
    return tuple(column for column in (rows[0] if rows else {}) if column.endswith("_major"))


def missing_tables_message(warehouse: Warehouse, missing: Sequence[str], needed_for: str) -> str:
    """Markdown telling the analyst which tables are missing and how they get built."""
    names = ", ".join(f"`{name}`" for name in missing)
    return (
        f"**{needed_for}**: {warehouse.settings.location} has no {names}. "
        "Load the sources with `invoice-sync run all` (it builds the models after loading) "
        "or `make demo`, or point the notebook at another file with `-- --duckdb PATH`."
    )


def money(amount: Decimal | None, currency: str) -> str:
    """An exact amount in its currency's own decimals (``1,234.500 BHD``); empty for none."""
    return format_amount(amount, currency) if amount is not None else ""


def sum_by(
    rows: Iterable[Mapping[str, Any]], keys: Sequence[str], values: Sequence[str]
) -> list[dict[str, Any]]:
    """``rows`` grouped by ``keys`` with ``values`` summed exactly (ints, Decimals), in the order
    each group first appears; a missing value counts as zero."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        group_key = tuple(row.get(key) for key in keys)
        group = groups.get(group_key)
        if group is None:
            group = groups[group_key] = {key: row.get(key) for key in keys}
            group.update({value: 0 for value in values})
        for value in values:
            group[value] += row.get(value) or 0
    return list(groups.values())


def with_major_units(
    rows: Iterable[Mapping[str, Any]], currency_column: str = "currency"
) -> list[dict[str, Any]]:
    """Rows with every integer ``<name>_minor`` column replaced by ``<name>``: the exact amount
    in major units of the row's currency (JPY 0 decimals, USD 2, BHD 3)."""
    converted: list[dict[str, Any]] = []
    for row in rows:
        currency = str(row[currency_column])
        new_row: dict[str, Any] = {}
        for column, value in row.items():
            if column.endswith("_minor"):
                new_row[column.removesuffix("_minor")] = (
                    to_major(int(value), currency) if value is not None else None
                )
            else:
                new_row[column] = value
        converted.append(new_row)
    return converted


def percent(part: Decimal | None, whole: Decimal | None) -> str:
    """``part`` as a percentage of ``whole`` with two decimals (empty when undefined)."""
    if part is None or not whole:
        return ""
    return f"{(Decimal(part) * 100 / Decimal(whole)).quantize(Decimal('0.01'))} %"


def display_rows(
    rows: Iterable[Mapping[str, Any]],
    money_columns: Sequence[str] = (),
    currency_column: str = "currency",
) -> list[dict[str, Any]]:
    """Rows for a table: money formatted in each row's currency, timestamps as UTC text."""
    shown: list[dict[str, Any]] = []
    for row in rows:
        currency = str(row.get(currency_column) or "")
        cells: dict[str, Any] = {}
        for column, value in row.items():
            if column in money_columns and currency:
                cells[column] = money(value, currency)
            else:
                cells[column] = display_value(value)
        shown.append(cells)
    return shown


def display_value(value: Any) -> Any:
    """A cell value people read: exact decimals without trailing zeros, UTC timestamps."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value.is_finite() else str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def chart_values(
    rows: Iterable[Mapping[str, Any]], currency_column: str = "currency"
) -> list[dict[str, JSONValue]]:
    """Rows as Vega-Lite data: numbers as floats (for plotting only; every sum is already exact),
    timestamps as ISO text, and for each money column ``x`` a ``x_text`` with the exact amount
    for tooltips when the row has a currency."""
    values: list[dict[str, JSONValue]] = []
    for row in rows:
        currency = str(row.get(currency_column) or "")
        value_row: dict[str, JSONValue] = {}
        for column, value in row.items():
            if isinstance(value, Decimal):
                value_row[column] = float(value)
                if currency:
                    value_row[f"{column}_text"] = money(value, currency)
            elif isinstance(value, dt.datetime | dt.date):
                value_row[column] = value.isoformat()
            else:
                value_row[column] = value
        values.append(value_row)
    return values


def aging_bucket(days: int) -> str:
    """The aging bucket of an invoice ``days`` past its due date (negative: not yet due)."""
    if days < 0:
        return AGING_BUCKETS[0]
    if days <= 30:
        return AGING_BUCKETS[1]
    if days <= 60:
        return AGING_BUCKETS[2]
    if days <= 90:
        return AGING_BUCKETS[3]
    return AGING_BUCKETS[4]


def month_label(value: dt.datetime | dt.date | None) -> str:
    """``2025-03`` for a timestamp or date (UTC)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return f"{value.year:04d}-{value.month:02d}"


def ranked_options(rows: Iterable[Mapping[str, Any]], key: str, weight: str) -> list[str]:
    """Distinct values of ``key``, the one with the largest total ``weight`` first."""
    totals: dict[str, Decimal] = {}
    for row in rows:
        value = row.get(key)
        if value is None:
            continue
        totals[str(value)] = totals.get(str(value), Decimal(0)) + Decimal(row.get(weight) or 0)
    return sorted(totals, key=lambda value: (-totals[value], value))


def save_chart(chart: Any, name: str, settings: NotebookSettings) -> Any:
    """Write ``chart`` as ``<name>.png`` and ``<name>.vl.json`` to the charts directory, when
    one is set (``--charts-dir``); returns the chart so a cell can show it."""
    if settings.charts_dir is not None:
        settings.charts_dir.mkdir(parents=True, exist_ok=True)
        exported = chart
        if getattr(chart, "width", None) == "container":  # no container outside a browser
            exported = chart.properties(width=EXPORT_WIDTH)
        (settings.charts_dir / f"{name}.vl.json").write_text(
            json.dumps(exported.to_dict(), indent=1)
        )
        exported.save(str(settings.charts_dir / f"{name}.png"), scale_factor=2)
    return chart
