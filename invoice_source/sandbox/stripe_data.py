"""The Stripe sandbox's data: invoice models generated from a seed, rendered in either API shape.

An invoice is a small :class:`InvoiceModel` (amounts, lines, status); seeded invoices are built on
demand from ``(seed, index)`` so a sandbox of a million invoices keeps only their keys in memory.
:func:`render_invoice` turns a model into Stripe's JSON in the legacy (before 2025-03-31) or
basil shape; amounts are consistent (lines sum to the subtotal; total = subtotal − discounts +
exclusive tax; amount_remaining = amount_due − amount_paid).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# currency -> (weight, unit amount range in minor units)
CURRENCIES: dict[str, tuple[int, tuple[int, int]]] = {
    "usd": (50, (500, 250_000)),
    "eur": (14, (500, 200_000)),
    "gbp": (8, (500, 150_000)),
    "cad": (5, (500, 200_000)),
    "chf": (4, (500, 200_000)),
    "jpy": (7, (500, 300_000)),
    "krw": (4, (5_000, 3_000_000)),
    "bhd": (4, (1_000, 900_000)),
    "kwd": (4, (1_000, 900_000)),
}
STATUSES = (("paid", 55), ("open", 18), ("draft", 12), ("void", 8), ("uncollectible", 7))
TAX_RATES = {
    "txr_1SandboxSalesTax08": (8.0, False, "Sales tax"),
    "txr_1SandboxVat20Incl": (20.0, True, "VAT"),
    "txr_1SandboxGst05Excl": (5.0, False, "GST"),
}
COUPONS = ("di_1SandboxTenPercent", "di_1SandboxLaunch15", "di_1SandboxLoyalty5")
COUPON_PERCENT = {"di_1SandboxTenPercent": 10, "di_1SandboxLaunch15": 15, "di_1SandboxLoyalty5": 5}
PRODUCTS = (
    ("Prep and label", "prod_1SbxPrepLabel"),
    ("Storage per pallet", "prod_1SbxStorage"),
    ("Pro plan", "prod_1SbxProPlan"),
    ("Team seats", "prod_1SbxSeats"),
    ("Onboarding", "prod_1SbxOnboarding"),
    ("API calls", "prod_1SbxApiCalls"),
    ("Support hours", "prod_1SbxSupport"),
)
HOSTED_URL = "https://invoice.stripe.com/i/sandbox"
PDF_URL = "https://pay.stripe.com/invoice/sandbox"
METADATA_KEYS = ("order_id", "region", "sales_rep", "po_number", "campaign")


def stripe_id(prefix: str, number: int, tag: str = "1Sbx") -> str:
    """A deterministic Stripe-looking id (``in_1Sbx000000004cX``), sortable by ``number``."""
    digits = ""
    value = number
    for _ in range(10):
        value, rest = divmod(value, 62)
        digits = _ALPHABET[rest] + digits
    return f"{prefix}_{tag}{digits}"


@dataclass
class LineModel:
    """One invoice line: amounts in minor units plus its discounts and taxes."""

    id: str
    description: str
    unit_amount: int
    quantity: int
    price_id: str
    product_id: str
    is_subscription: bool
    is_proration: bool
    invoice_item_id: str | None
    subscription_item_id: str | None
    period_start: int
    period_end: int
    discounts: list[tuple[str, int]] = field(default_factory=list)
    taxes: list[tuple[str, int, bool, int]] = field(
        default_factory=list
    )  # rate, amount, incl, base
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def amount(self) -> int:
        """Line amount before discounts."""
        return self.unit_amount * self.quantity


@dataclass
class InvoiceModel:
    """The state of one invoice."""

    id: str
    created: int
    customer: str
    customer_email: str
    currency: str
    status: str
    collection_method: str
    lines: list[LineModel]
    metadata: dict[str, str]
    number: str | None
    description: str | None
    subscription_id: str | None
    days_until_due: int | None
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    marked_uncollectible_at: int | None = None
    deleted: bool = False

    @property
    def subtotal(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def discount_total(self) -> int:
        return sum(amount for line in self.lines for _, amount in line.discounts)

    @property
    def exclusive_tax(self) -> int:
        return sum(t[1] for line in self.lines for t in line.taxes if not t[2])

    @property
    def inclusive_tax(self) -> int:
        return sum(t[1] for line in self.lines for t in line.taxes if t[2])

    @property
    def total(self) -> int:
        return self.subtotal - self.discount_total + self.exclusive_tax

    @property
    def amount_paid(self) -> int:
        return self.total if self.status == "paid" else 0

    @property
    def due_date(self) -> int | None:
        if self.collection_method != "send_invoice" or self.days_until_due is None:
            return None
        return (self.finalized_at or self.created) + self.days_until_due * 86_400


def make_line(
    rng: random.Random,
    *,
    number: int,
    currency: str,
    created: int,
    subscription_id: str | None,
    unit_amount: int | None = None,
    quantity: int | None = None,
    description: str | None = None,
    with_extras: bool = True,
) -> LineModel:
    """A line with realistic variety (or the amounts given)."""
    low, high = CURRENCIES.get(currency, (1, (500, 200_000)))[1]
    product_name, product_id = PRODUCTS[rng.randrange(len(PRODUCTS))]
    is_subscription = subscription_id is not None and rng.random() < 0.6
    is_proration = is_subscription and rng.random() < 0.1
    unit = unit_amount if unit_amount is not None else rng.randint(low, high) // 10 * 10
    qty = quantity if quantity is not None else rng.choice((1, 1, 1, 2, 3, 5, 10))
    line = LineModel(
        id=stripe_id("il", number),
        description=description if description is not None else f"{product_name} × {qty}",
        unit_amount=unit,
        quantity=qty,
        price_id=stripe_id("price", number % 997 + 1),
        product_id=product_id,
        is_subscription=is_subscription,
        is_proration=is_proration,
        invoice_item_id=None if is_subscription else stripe_id("ii", number),
        subscription_item_id=stripe_id("si", number % 5003 + 1) if is_subscription else None,
        period_start=created - (30 * 86_400 if is_subscription else 0),
        period_end=created,
    )
    if with_extras:
        if rng.random() < 0.2:
            coupon = COUPONS[rng.randrange(len(COUPONS))]
            line.discounts.append((coupon, line.amount * COUPON_PERCENT[coupon] // 100))
        if rng.random() < 0.5:
            rate_id = list(TAX_RATES)[rng.randrange(len(TAX_RATES))]
            apply_tax(line, rate_id)
        if rng.random() < 0.3:
            line.metadata = {"sku": f"SKU-{rng.randint(1000, 9999)}"}
    return line


def apply_tax(line: LineModel, rate_id: str) -> None:
    """Add a tax of ``rate_id`` computed on the discounted line amount."""
    percent, inclusive, _ = TAX_RATES[rate_id]
    base = line.amount - sum(amount for _, amount in line.discounts)
    if inclusive:
        taxable = round(base / (1 + percent / 100))
        amount = base - taxable
    else:
        taxable = base
        amount = round(base * percent / 100)
    line.taxes.append((rate_id, amount, inclusive, taxable))


def generate_invoice(seed: int, index: int, created: int, now: int) -> InvoiceModel:
    """The seeded invoice number ``index`` (deterministic in ``seed`` and ``index``)."""
    rng = random.Random(seed * 1_000_003 + index)
    currency = rng.choices(list(CURRENCIES), [w for w, _ in CURRENCIES.values()])[0]
    status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
    n_lines = rng.randint(11, 30) if rng.random() < 0.05 else rng.randint(1, 10)
    subscription_id = stripe_id("sub", rng.randint(1, 4000)) if rng.random() < 0.5 else None
    collection = "send_invoice" if rng.random() < 0.35 else "charge_automatically"
    customer_number = rng.randint(1, 2500)
    lines = [
        make_line(
            rng,
            number=index * 40 + position,
            currency=currency,
            created=created,
            subscription_id=subscription_id,
        )
        for position in range(n_lines)
    ]
    metadata = {key: f"{key}-{rng.randint(1, 9999)}" for key in METADATA_KEYS if rng.random() < 0.3}
    invoice = InvoiceModel(
        id=stripe_id("in", index),
        created=created,
        customer=stripe_id("cus", customer_number),
        customer_email=f"billing+{customer_number}@example.com",
        currency=currency,
        status="draft",
        collection_method=collection,
        lines=lines,
        metadata=metadata,
        number=None,
        description=rng.choice((None, "Thanks for your business", "Monthly services")),
        subscription_id=subscription_id,
        days_until_due=30 if collection == "send_invoice" else None,
    )
    if status != "draft":
        invoice.number = f"SBX-{index:06d}"
        invoice.finalized_at = min(created + 3600, now)
        invoice.status = "open"
    if status == "paid":
        invoice.status, invoice.paid_at = "paid", min(created + rng.randint(1, 20) * 86_400, now)
    elif status == "void":
        invoice.status, invoice.voided_at = "void", min(created + 5 * 86_400, now)
    elif status == "uncollectible":
        invoice.status = "uncollectible"
        invoice.marked_uncollectible_at = min(created + 45 * 86_400, now)
    return invoice


def copy_model(model: InvoiceModel) -> InvoiceModel:
    """A deep enough copy to mutate without touching a cached original."""
    return replace(
        model,
        lines=[
            replace(line, discounts=list(line.discounts), taxes=list(line.taxes))
            for line in model.lines
        ],
        metadata=dict(model.metadata),
    )


def render_line(line: LineModel, invoice: InvoiceModel, *, legacy: bool) -> dict[str, Any]:
    """A line item in Stripe's JSON, legacy or basil shape."""
    base: dict[str, Any] = {
        "id": line.id,
        "object": "line_item",
        "amount": line.amount,
        "currency": invoice.currency,
        "description": line.description,
        "discount_amounts": [{"amount": a, "discount": d} for d, a in line.discounts],
        "discountable": not line.is_proration,
        "discounts": [d for d, _ in line.discounts],
        "livemode": False,
        "metadata": dict(line.metadata),
        "period": {"end": line.period_end, "start": line.period_start},
        "quantity": line.quantity,
        "subscription": invoice.subscription_id if line.is_subscription else None,
    }
    if legacy:
        base.update(
            {
                "amount_excluding_tax": line.amount - sum(t[1] for t in line.taxes if t[2]),
                "invoice_item": line.invoice_item_id,
                "plan": None,
                "price": {
                    "id": line.price_id,
                    "object": "price",
                    "active": True,
                    "billing_scheme": "per_unit",
                    "created": invoice.created - 86_400 * 90,
                    "currency": invoice.currency,
                    "livemode": False,
                    "lookup_key": None,
                    "metadata": {},
                    "nickname": None,
                    "product": line.product_id,
                    "recurring": {"interval": "month", "interval_count": 1}
                    if line.is_subscription
                    else None,
                    "tax_behavior": "unspecified",
                    "type": "recurring" if line.is_subscription else "one_time",
                    "unit_amount": line.unit_amount,
                    "unit_amount_decimal": str(line.unit_amount),
                },
                "proration": line.is_proration,
                "proration_details": {"credited_items": None},
                "subscription_item": line.subscription_item_id,
                "tax_amounts": [
                    {
                        "amount": amount,
                        "inclusive": incl,
                        "tax_rate": rate,
                        "taxability_reason": "standard_rated",
                        "taxable_amount": taxable,
                    }
                    for rate, amount, incl, taxable in line.taxes
                ],
                "tax_rates": [],
                "type": "subscription" if line.is_subscription else "invoiceitem",
                "unit_amount_excluding_tax": str(line.unit_amount),
            }
        )
        return base
    item_details = {
        "invoice_item": line.invoice_item_id,
        "proration": line.is_proration,
        "proration_details": {"credited_items": None},
        "subscription": invoice.subscription_id if line.is_subscription else None,
    }
    if line.is_subscription:
        parent: dict[str, Any] = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                **item_details,
                "subscription_item": line.subscription_item_id,
            },
        }
    else:
        parent = {
            "type": "invoice_item_details",
            "invoice_item_details": item_details,
            "subscription_item_details": None,
        }
    base.update(
        {
            "invoice": invoice.id,
            "parent": parent,
            "pretax_credit_amounts": [
                {"amount": a, "credit_balance_transaction": None, "discount": d, "type": "discount"}
                for d, a in line.discounts
            ],
            "pricing": {
                "type": "price_details",
                "price_details": {"price": line.price_id, "product": line.product_id},
                "unit_amount_decimal": str(line.unit_amount),
            },
            "quantity_decimal": str(line.quantity),
            "subtotal": line.amount,
            "taxes": [
                {
                    "amount": amount,
                    "tax_behavior": "inclusive" if incl else "exclusive",
                    "tax_rate_details": {"tax_rate": rate},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": taxable,
                    "type": "tax_rate_details",
                }
                for rate, amount, incl, taxable in line.taxes
            ],
        }
    )
    return base


def render_invoice(
    invoice: InvoiceModel, *, legacy: bool, embedded_lines: int = 10
) -> dict[str, Any]:
    """An invoice in Stripe's JSON with up to ``embedded_lines`` lines embedded."""
    amount_due = invoice.total
    amount_paid = invoice.amount_paid
    tax_by_rate: dict[tuple[str, bool], list[int]] = {}
    for line in invoice.lines:
        for rate, amount, incl, taxable in line.taxes:
            bucket = tax_by_rate.setdefault((rate, incl), [0, 0])
            bucket[0] += amount
            bucket[1] += taxable
    discounts_by_coupon: dict[str, int] = {}
    for line in invoice.lines:
        for coupon, amount in line.discounts:
            discounts_by_coupon[coupon] = discounts_by_coupon.get(coupon, 0) + amount
    lines = [render_line(line, invoice, legacy=legacy) for line in invoice.lines[:embedded_lines]]
    finalized = invoice.status != "draft"
    body: dict[str, Any] = {
        "id": invoice.id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Sandbox Prep Co.",
        "account_tax_ids": None,
        "amount_due": amount_due,
        "amount_overpaid": 0,
        "amount_paid": amount_paid,
        "amount_remaining": amount_due - amount_paid,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 1 if invoice.status in ("paid", "uncollectible") else 0,
        "attempted": invoice.status in ("paid", "uncollectible"),
        "auto_advance": invoice.status in ("draft", "open"),
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_reason": "subscription_cycle" if invoice.subscription_id else "manual",
        "collection_method": invoice.collection_method,
        "created": invoice.created,
        "currency": invoice.currency,
        "custom_fields": None,
        "customer": invoice.customer,
        "customer_address": {
            "city": "Springfield",
            "country": "US",
            "line1": "1 Main St",
            "line2": None,
            "postal_code": "12345",
            "state": "IL",
        },
        "customer_email": invoice.customer_email,
        "customer_name": f"Customer {invoice.customer[-4:]}",
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": invoice.description,
        "discounts": sorted(discounts_by_coupon),
        "due_date": invoice.due_date,
        "effective_at": invoice.finalized_at,
        "ending_balance": 0 if finalized else None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/sandbox/{invoice.id}"
        if finalized
        else None,
        "invoice_pdf": f"https://pay.stripe.com/invoice/sandbox/{invoice.id}/pdf"
        if finalized
        else None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": len(invoice.lines) > embedded_lines,
            "total_count": len(invoice.lines),
            "url": f"/v1/invoices/{invoice.id}/lines",
        },
        "livemode": False,
        "metadata": dict(invoice.metadata),
        "next_payment_attempt": None,
        "number": invoice.number,
        "on_behalf_of": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": invoice.created,
        "period_start": invoice.created - (30 * 86_400 if invoice.subscription_id else 0),
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": invoice.status,
        "status_transitions": {
            "finalized_at": invoice.finalized_at,
            "marked_uncollectible_at": invoice.marked_uncollectible_at,
            "paid_at": invoice.paid_at,
            "voided_at": invoice.voided_at,
        },
        "subtotal": invoice.subtotal,
        "subtotal_excluding_tax": invoice.subtotal - invoice.inclusive_tax,
        "test_clock": None,
        "total": invoice.total,
        "total_discount_amounts": [
            {"amount": amount, "discount": coupon}
            for coupon, amount in sorted(discounts_by_coupon.items())
        ],
        "total_excluding_tax": invoice.total - invoice.exclusive_tax - invoice.inclusive_tax,
        "webhooks_delivered_at": invoice.created,
    }
    if legacy:
        body.update(
            {
                "charge": stripe_id("ch", int(invoice.created))
                if invoice.status == "paid"
                else None,
                "discount": None,
                "paid": invoice.status == "paid",
                "paid_out_of_band": False,
                "payment_intent": stripe_id("pi", int(invoice.created)) if finalized else None,
                "quote": None,
                "rendering_options": None,
                "subscription": invoice.subscription_id,
                "tax": invoice.exclusive_tax + invoice.inclusive_tax if tax_by_rate else None,
                "total_tax_amounts": [
                    {
                        "amount": amount,
                        "inclusive": incl,
                        "tax_rate": rate,
                        "taxability_reason": "standard_rated",
                        "taxable_amount": taxable,
                    }
                    for (rate, incl), (amount, taxable) in sorted(tax_by_rate.items())
                ],
                "transfer_data": None,
            }
        )
    else:
        body.update(
            {
                "amount_paid_off_stripe": 0,
                "automatically_finalizes_at": None,
                "parent": {
                    "type": "subscription_details",
                    "quote_details": None,
                    "subscription_details": {
                        "metadata": {},
                        "subscription": invoice.subscription_id,
                    },
                }
                if invoice.subscription_id
                else None,
                "total_pretax_credit_amounts": [
                    {"amount": amount, "discount": coupon, "type": "discount"}
                    for coupon, amount in sorted(discounts_by_coupon.items())
                ],
                "total_taxes": [
                    {
                        "amount": amount,
                        "tax_behavior": "inclusive" if incl else "exclusive",
                        "tax_rate_details": {"tax_rate": rate},
                        "taxability_reason": "standard_rated",
                        "taxable_amount": taxable,
                        "type": "tax_rate_details",
                    }
                    for (rate, incl), (amount, taxable) in sorted(tax_by_rate.items())
                ],
            }
        )
    return body
