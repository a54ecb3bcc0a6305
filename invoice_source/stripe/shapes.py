"""Stripe invoices and line items, of either API shape, as rows of the landed tables.

Before 2025-03-31 (basil) a line carries ``price``, ``type``, ``proration`` and ``tax_amounts``;
from basil on it carries ``pricing.price_details``, ``parent`` and ``taxes``. Both land in the
same columns: ``price_id`` comes from ``price.id`` or ``pricing.price_details.price``,
``is_proration`` from ``proration`` or ``parent.*.proration``, and so on. Nested objects are kept
as JSON columns so nothing the API sent is lost; fields the spec does not know become extra
columns (see :mod:`invoice_source.columns`).
"""

from __future__ import annotations

from typing import Any

from invoice_source.columns import Column

Row = dict[str, Any]

# set on the placeholder rows of :func:`no_rows_marker`, never stored (dlt's hard_delete hint)
MARKER_COLUMN = "is_no_rows_marker"
MARKER = Column(
    MARKER_COLUMN,
    "bool",
    description="Never stored (always null): true only on the placeholder row staged for an"
    " invoice read with no rows in this table, which clears the rows it had",
    hard_delete=True,
)

_TEXT = (
    "object account_country account_name billing_reason collection_method currency"
    " customer customer_email customer_name customer_phone customer_tax_exempt customer_account"
    " default_payment_method default_source description footer hosted_invoice_url invoice_pdf"
    " number on_behalf_of receipt_number statement_descriptor status subscription charge"
    " payment_intent application latest_revision test_clock quote"
).split()
_BIGINT = (
    "amount_due amount_overpaid amount_paid amount_paid_off_stripe amount_remaining"
    " amount_shipping attempt_count ending_balance post_payment_credit_notes_amount"
    " pre_payment_credit_notes_amount starting_balance subtotal subtotal_excluding_tax tax total"
    " total_excluding_tax application_fee_amount"
).split()
_BOOL = "attempted auto_advance livemode paid paid_out_of_band".split()
_TIMESTAMP = (
    "created due_date effective_at next_payment_attempt period_start period_end"
    " webhooks_delivered_at automatically_finalizes_at"
).split()
_TRANSITIONS = ("finalized_at", "paid_at", "voided_at", "marked_uncollectible_at")
_JSON = (
    "account_tax_ids automatic_tax custom_fields customer_address customer_shipping"
    " customer_tax_ids default_tax_rates discount discounts from_invoice issuer"
    " last_finalization_error metadata parent payment_settings payments rendering"
    " rendering_options shipping_cost shipping_details status_details threshold_reason"
    " total_discount_amounts total_pretax_credit_amounts total_taxes total_tax_amounts"
    " transfer_data subscription_details"
).split()
# Fields that hold an id or, when expanded, the object itself.
_EXPANDABLE = {
    "customer",
    "default_payment_method",
    "default_source",
    "on_behalf_of",
    "subscription",
    "charge",
    "payment_intent",
    "application",
    "latest_revision",
    "test_clock",
    "quote",
}
# Never landed: a client secret for confirming payments in a browser.
_DROPPED = {"lines", "status_transitions", "deleted", "confirmation_secret"}

INVOICE_COLUMNS: list[Column] = [
    Column("id", "text", nullable=False, description="Stripe invoice id (in_...)"),
    *[Column(name, "text") for name in _TEXT],
    *[Column(name, "bigint") for name in _BIGINT],
    *[Column(name, "bool") for name in _BOOL],
    *[Column(name, "timestamp") for name in _TIMESTAMP],
    *[Column(name, "timestamp", description=f"status_transitions.{name}") for name in _TRANSITIONS],
    *[Column(name, "json") for name in _JSON],
    Column("tax_amount", "bigint", description="Sum of invoice-level tax amounts, either shape"),
    Column("discount_amount", "bigint", description="Sum of total_discount_amounts"),
    Column("line_count", "bigint", description="Line items landed for this invoice"),
    Column("is_deleted", "bool", nullable=False, description="Draft deleted in Stripe"),
    Column("api_shape", "text", description="'legacy' (before 2025-03-31) or 'basil'"),
    Column("synced_at", "timestamp", nullable=False, description="When this row was read"),
]

LINE_ITEM_COLUMNS: list[Column] = [
    Column("invoice_id", "text", nullable=False),
    Column("id", "text", nullable=False, description="Line item id (il_...)"),
    Column("line_number", "bigint", nullable=False, description="1-based position on the invoice"),
    Column("object", "text"),
    Column("amount", "bigint", description="Minor units of the currency, before discounts"),
    Column("currency", "text"),
    Column("description", "text"),
    Column("discountable", "bool"),
    Column("livemode", "bool"),
    Column("quantity", "bigint"),
    Column("quantity_decimal", "text"),
    Column("subtotal", "bigint"),
    Column("amount_excluding_tax", "bigint"),
    Column("unit_amount_excluding_tax", "text"),
    Column("period_start", "timestamp"),
    Column("period_end", "timestamp"),
    Column("price_id", "text", description="price.id or pricing.price_details.price"),
    Column("product_id", "text", description="price.product or pricing.price_details.product"),
    Column("unit_amount", "bigint", description="price.unit_amount (legacy shape only)"),
    Column("unit_amount_decimal", "text", description="Exact unit amount in minor units"),
    Column("line_type", "text", description="'invoiceitem' or 'subscription'"),
    Column("is_proration", "bool"),
    Column("invoice_item_id", "text"),
    Column("subscription_id", "text"),
    Column("subscription_item_id", "text"),
    Column("discount_amount", "bigint", description="Sum of the line's discount amounts"),
    Column("tax_amount", "bigint", description="Sum of the line's tax amounts"),
    Column("exclusive_tax_amount", "bigint", description="Sum of taxes not included in amount"),
    Column("metadata", "json"),
    Column("discounts", "json"),
    Column("price", "json"),
    Column("pricing", "json"),
    Column("parent", "json"),
    Column("proration_details", "json"),
    Column("tax_rates", "json"),
    Column("pretax_credit_amounts", "json"),
    Column("api_shape", "text"),
    MARKER,
]

LINE_DISCOUNT_COLUMNS: list[Column] = [
    Column("invoice_id", "text", nullable=False),
    Column("line_item_id", "text", nullable=False),
    Column("position", "bigint", nullable=False),
    Column("discount_id", "text"),
    Column("amount", "bigint"),
    Column("currency", "text"),
    MARKER,
]

LINE_TAX_COLUMNS: list[Column] = [
    Column("invoice_id", "text", nullable=False),
    Column("line_item_id", "text", nullable=False),
    Column("position", "bigint", nullable=False),
    Column("tax_rate_id", "text"),
    Column("amount", "bigint"),
    Column("currency", "text"),
    Column("is_inclusive", "bool"),
    Column("taxable_amount", "bigint"),
    Column("taxability_reason", "text"),
    Column("tax_type", "text"),
    MARKER,
]


def _ref(value: Any) -> Any:
    """The id of an expandable field, whether it came expanded or not."""
    return value.get("id") if isinstance(value, dict) else value


def invoice_row(invoice: dict[str, Any], *, line_count: int | None, synced_at: int) -> Row:
    """One ``stripe_invoices`` row from an invoice object of either API shape."""
    row: Row = {}
    for key, value in invoice.items():
        if key in _DROPPED:
            continue
        row[key] = _ref(value) if key in _EXPANDABLE else value
    transitions = invoice.get("status_transitions") or {}
    for name in _TRANSITIONS:
        row[name] = transitions.get(name)
    row["tax_amount"] = _invoice_tax(invoice)
    row["discount_amount"] = sum(
        d.get("amount") or 0 for d in invoice.get("total_discount_amounts") or []
    )
    row["line_count"] = line_count
    row["is_deleted"] = bool(invoice.get("deleted"))
    row["api_shape"] = "legacy" if "paid" in invoice or "total_tax_amounts" in invoice else "basil"
    row["synced_at"] = synced_at
    return row


def _invoice_tax(invoice: dict[str, Any]) -> int | None:
    if invoice.get("total_taxes") is not None:
        return sum(t.get("amount") or 0 for t in invoice["total_taxes"])
    if invoice.get("total_tax_amounts") is not None:
        return sum(t.get("amount") or 0 for t in invoice["total_tax_amounts"])
    tax = invoice.get("tax")
    return int(tax) if tax is not None else None


def line_rows(
    invoice_id: str, currency: str | None, lines: list[dict[str, Any]]
) -> tuple[list[Row], list[Row], list[Row]]:
    """Rows for line items, their discounts and their taxes, from lines of either shape.

    A table the invoice has no rows in gets one :func:`no_rows_marker` instead: the tables are
    merged ``delete-insert`` by ``invoice_id`` over what is staged, so without it a draft that
    lost its last line (or a line its last tax) would keep the rows landed before.
    """
    line_items: list[Row] = []
    discounts: list[Row] = []
    taxes: list[Row] = []
    for number, line in enumerate(lines, start=1):
        row, line_discounts, line_taxes = _line(invoice_id, currency, number, line)
        line_items.append(row)
        discounts.extend(line_discounts)
        taxes.extend(line_taxes)
    if not line_items:
        line_items.append({**no_rows_marker(invoice_id), "id": "", "line_number": 0})
    for rows in (discounts, taxes):
        if not rows:
            rows.append({**no_rows_marker(invoice_id), "line_item_id": "", "position": 0})
    return line_items, discounts, taxes


def no_rows_marker(invoice_id: str) -> Row:
    """A placeholder row for an invoice without rows in a child table: staged, it makes the
    merge delete the invoice's landed rows there, and dlt's ``hard_delete`` hint on
    ``is_no_rows_marker`` keeps it out of the table itself."""
    return {"invoice_id": invoice_id, MARKER_COLUMN: True}


_LINE_DIRECT = (
    "id object amount currency description discountable livemode quantity quantity_decimal"
    " subtotal amount_excluding_tax unit_amount_excluding_tax metadata discounts price pricing"
    " parent proration_details tax_rates pretax_credit_amounts"
).split()
_LINE_CONSUMED = {
    *_LINE_DIRECT,
    "period",
    "type",
    "proration",
    "invoice_item",
    "subscription",
    "subscription_item",
    "discount_amounts",
    "tax_amounts",
    "taxes",
    "invoice",
    "plan",
}


def _line(
    invoice_id: str, currency: str | None, number: int, line: dict[str, Any]
) -> tuple[Row, list[Row], list[Row]]:
    is_basil = "pricing" in line or "parent" in line or "taxes" in line
    row: Row = {key: line.get(key) for key in _LINE_DIRECT}
    row["invoice_id"] = invoice_id
    row["line_number"] = number
    row["currency"] = row["currency"] or currency
    row["discounts"] = [_ref(d) for d in line.get("discounts") or []]
    period = line.get("period") or {}
    row["period_start"] = period.get("start")
    row["period_end"] = period.get("end")
    row["api_shape"] = "basil" if is_basil else "legacy"
    if is_basil:
        pricing = line.get("pricing") or {}
        details = pricing.get("price_details") or {}
        parent = line.get("parent") or {}
        parent_type = parent.get("type")
        item = parent.get(parent_type) if parent_type else None
        item = item or {}
        row["price_id"] = _ref(details.get("price"))
        row["product_id"] = details.get("product")
        row["unit_amount_decimal"] = pricing.get("unit_amount_decimal")
        row["line_type"] = {
            "invoice_item_details": "invoiceitem",
            "subscription_item_details": "subscription",
        }.get(parent_type or "", parent_type)
        row["is_proration"] = item.get("proration")
        row["invoice_item_id"] = item.get("invoice_item")
        row["subscription_id"] = _ref(item.get("subscription") or line.get("subscription"))
        row["subscription_item_id"] = item.get("subscription_item")
        tax_list = [
            {
                "amount": t.get("amount"),
                "is_inclusive": t.get("tax_behavior") == "inclusive",
                "tax_rate_id": (t.get("tax_rate_details") or {}).get("tax_rate"),
                "taxable_amount": t.get("taxable_amount"),
                "taxability_reason": t.get("taxability_reason"),
                "tax_type": t.get("type"),
            }
            for t in line.get("taxes") or []
        ]
    else:
        price = line.get("price") or {}
        row["price_id"] = price.get("id")
        row["product_id"] = _ref(price.get("product"))
        row["unit_amount"] = price.get("unit_amount")
        row["unit_amount_decimal"] = price.get("unit_amount_decimal")
        row["line_type"] = line.get("type")
        row["is_proration"] = line.get("proration")
        row["invoice_item_id"] = _ref(line.get("invoice_item"))
        row["subscription_id"] = _ref(line.get("subscription"))
        row["subscription_item_id"] = _ref(line.get("subscription_item"))
        tax_list = [
            {
                "amount": t.get("amount"),
                "is_inclusive": t.get("inclusive"),
                "tax_rate_id": _ref(t.get("tax_rate")),
                "taxable_amount": t.get("taxable_amount"),
                "taxability_reason": t.get("taxability_reason"),
                "tax_type": "tax_rate_details",
            }
            for t in line.get("tax_amounts") or []
        ]
    for key, value in line.items():
        if key not in _LINE_CONSUMED:
            row[key] = value
    line_id = row["id"]
    line_currency = row["currency"]
    discount_rows = [
        {
            "invoice_id": invoice_id,
            "line_item_id": line_id,
            "position": position,
            "discount_id": _ref(d.get("discount")),
            "amount": d.get("amount"),
            "currency": line_currency,
        }
        for position, d in enumerate(line.get("discount_amounts") or [], start=1)
    ]
    tax_rows = [
        {
            "invoice_id": invoice_id,
            "line_item_id": line_id,
            "position": position,
            "currency": line_currency,
            **tax,
        }
        for position, tax in enumerate(tax_list, start=1)
    ]
    row["discount_amount"] = sum(d["amount"] or 0 for d in discount_rows)
    row["tax_amount"] = sum(t["amount"] or 0 for t in tax_rows)
    row["exclusive_tax_amount"] = sum(t["amount"] or 0 for t in tax_rows if not t["is_inclusive"])
    return row, discount_rows, tax_rows
