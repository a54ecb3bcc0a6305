"""Alternative Payments invoices as table rows and pyarrow tables (exact money, typed times).

``alternative_payments_invoices``: one row per invoice, ``is_archived`` set when the invoice was
read from the archived list or carries the ``archived`` status. ``status`` is kept as the API
sends it, known value or not.
``alternative_payments_invoice_line_items``: one row per line, ``line_number`` its 1-based
position in ``line_items``, ``line_total = amount * quantity`` computed exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns

from invoice_source import money
from invoice_source.alternative_payments import settings
from invoice_source.alternative_payments.client import Invoice, to_utc
from invoice_source.errors import ApiError

logger = logging.getLogger("invoice_source.alternative_payments")

AMOUNT_TYPE: Final = pa.decimal128(money.AMOUNT_COLUMN["precision"], money.AMOUNT_COLUMN["scale"])
TIMESTAMP_TYPE: Final = pa.timestamp("us", tz="UTC")

INVOICE_SCHEMA: Final = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("invoice_number", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("currency", pa.string()),
        pa.field("status", pa.string()),
        pa.field("is_archived", pa.bool_(), nullable=False),
        pa.field("created_at", TIMESTAMP_TYPE),
        pa.field("due_date", pa.date32()),
        pa.field("last_notification_at", TIMESTAMP_TYPE),
        pa.field("memo", pa.string()),
        pa.field("sub_total", AMOUNT_TYPE),
        pa.field("total", AMOUNT_TYPE),
    ]
)
LINE_ITEM_SCHEMA: Final = pa.schema(
    [
        pa.field("invoice_id", pa.string(), nullable=False),
        pa.field("line_number", pa.int64(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("quantity", pa.int64()),
        pa.field("amount", AMOUNT_TYPE),
        pa.field("line_total", AMOUNT_TYPE),
        pa.field("currency", pa.string()),
    ]
)

INVOICE_COLUMNS: Final[TTableSchemaColumns] = {
    "id": {"data_type": "text", "nullable": False},
    "is_archived": {"data_type": "bool", "nullable": False},
    "created_at": {"data_type": "timestamp", "timezone": True},
    "due_date": {"data_type": "date"},
    "last_notification_at": {"data_type": "timestamp", "timezone": True},
    "sub_total": {**money.AMOUNT_COLUMN},  # type: ignore[typeddict-item]
    "total": {**money.AMOUNT_COLUMN},  # type: ignore[typeddict-item]
}
LINE_ITEM_COLUMNS: Final[TTableSchemaColumns] = {
    "invoice_id": {"data_type": "text", "nullable": False},
    "line_number": {"data_type": "bigint", "nullable": False},
    "quantity": {"data_type": "bigint"},
    "amount": {**money.AMOUNT_COLUMN},  # type: ignore[typeddict-item]
    "line_total": {**money.AMOUNT_COLUMN},  # type: ignore[typeddict-item]
}


@dataclass
class InvoiceBatch:
    """Rows for both tables from one page (or one invoice read by id)."""

    invoices: list[dict[str, Any]] = field(default_factory=list)
    line_items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, invoice: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        """Append one invoice and its lines."""
        self.invoices.append(invoice)
        self.line_items.extend(lines)


def invoice_rows(
    raw: Invoice | Mapping[str, Any], *, is_archived: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The invoice row and its line rows for one invoice as the API sent it."""
    invoice_id = raw.get("id")
    if not isinstance(invoice_id, str) or not invoice_id:
        raise ApiError("Alternative Payments sent an invoice without an id", api=settings.API_NAME)
    status = _text(raw.get("status"))
    currency = _text(raw.get("currency"))
    row = {
        "id": invoice_id,
        "invoice_number": _text(raw.get("invoice_number")),
        "customer_id": _text(raw.get("customer_id")),
        "currency": currency,
        "status": status,
        "is_archived": is_archived or status == settings.ARCHIVED_STATUS,
        "created_at": parse_timestamp(raw.get("created_at"), f"invoice {invoice_id} created_at"),
        "due_date": parse_date(raw.get("due_date"), f"invoice {invoice_id} due_date"),
        "last_notification_at": parse_timestamp(
            raw.get("last_notification_at"), f"invoice {invoice_id} last_notification_at"
        ),
        "memo": _text(raw.get("memo")),
        "sub_total": _amount(raw.get("sub_total"), f"invoice {invoice_id} sub_total"),
        "total": _amount(raw.get("total"), f"invoice {invoice_id} total"),
    }
    lines: list[dict[str, Any]] = []
    raw_lines = raw.get("line_items") or []
    if not isinstance(raw_lines, list):
        raw_lines = []
    for number, line in enumerate(raw_lines, start=1):
        if not isinstance(line, Mapping):
            continue
        label = f"invoice {invoice_id} line {number}"
        amount = _amount(line.get("amount"), f"{label} amount")
        quantity = _integer(line.get("quantity"), f"{label} quantity")
        line_total = amount * quantity if amount is not None and quantity is not None else None
        lines.append(
            {
                "invoice_id": invoice_id,
                "line_number": number,
                "description": _text(line.get("description")),
                "quantity": quantity,
                "amount": amount,
                "line_total": line_total,
                "currency": currency,
            }
        )
    return row, lines


def invoices_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """``alternative_payments_invoices`` rows as a pyarrow table."""
    return pa.Table.from_pylist(list(rows), schema=INVOICE_SCHEMA)


def line_items_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """``alternative_payments_invoice_line_items`` rows as a pyarrow table."""
    return pa.Table.from_pylist(list(rows), schema=LINE_ITEM_SCHEMA)


def parse_timestamp(value: object, field: str) -> datetime | None:
    """An RFC3339 timestamp as an aware UTC datetime; ``None`` (with a warning) if unreadable."""
    if value is None or value == "":
        return None
    try:
        return to_utc(str(value))
    except ValueError:
        logger.warning("Alternative Payments %s is not a timestamp: %r", field, value)
        return None


def parse_date(value: object, field: str) -> date | None:
    """``YYYY-MM-DD`` (or an RFC3339 timestamp, taken in UTC) as a date."""
    if value is None or value == "":
        return None
    text = str(value)
    try:
        return date.fromisoformat(text) if len(text) == 10 else to_utc(text).date()
    except ValueError:
        logger.warning("Alternative Payments %s is not a date: %r", field, value)
        return None


def _amount(value: object, field: str) -> Decimal | None:
    try:
        return money.parse_amount(value, field=field)
    except ValueError as exc:
        raise ApiError(
            f"Alternative Payments sent an amount that cannot land exactly: {exc}",
            api=settings.API_NAME,
        ) from None


def _integer(value: object, field: str) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        number = Decimal("NaN")
    if number.is_finite() and number == number.to_integral_value():
        return int(number)
    raise ApiError(
        f"Alternative Payments sent a {field} that is not a whole number: {value!r}",
        api=settings.API_NAME,
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
