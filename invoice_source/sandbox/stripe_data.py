"""The Stripe sandbox's data: invoice models generated from a seed, rendered in either API shape.

An invoice is a small :class:`InvoiceModel` (status, customer, lines with their discounts and
taxes). Seeded invoices are rebuilt on demand from ``(seed, index)``, so a sandbox of a million
invoices keeps nothing per invoice but one sort key. :func:`render_invoice` turns a model into
Stripe's JSON in the legacy (before 2025-03-31) or the basil shape.

Amounts are integer minor units and internally consistent: the lines' ``amount`` (quantity × unit
price, before discounts) sum to ``subtotal``; ``total = subtotal − discounts + exclusive tax``;
``amount_due = total``; ``amount_paid`` is ``amount_due`` once paid, else 0; ``amount_remaining =
amount_due − amount_paid``. Three-decimal currencies (BHD, KWD) only use amounts divisible by 10,
as Stripe requires.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, NamedTuple

from invoice_source import money

DAY = 86_400
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_DIGITS = 10
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
ID_TAG = "1Sbx"

# currency -> (weight, typical unit price range in major units)
CURRENCIES: dict[str, tuple[int, tuple[int, int]]] = {
    "usd": (50, (5, 2_500)),
    "eur": (14, (5, 2_000)),
    "gbp": (8, (5, 1_500)),
    "cad": (5, (5, 3_000)),
    "chf": (4, (5, 2_000)),
    "jpy": (7, (500, 300_000)),
    "krw": (4, (5_000, 3_000_000)),
    "bhd": (4, (2, 900)),
    "kwd": (4, (2, 700)),
}
STATUSES = (("paid", 55), ("open", 18), ("draft", 12), ("void", 8), ("uncollectible", 7))
# tax rate id -> (percent, inclusive, display name)
TAX_RATES: dict[str, tuple[Decimal, bool, str]] = {
    "txr_1SbxSalesTax0825": (Decimal("8.25"), False, "Sales tax"),
    "txr_1SbxVat20Inclusv": (Decimal("20"), True, "VAT"),
    "txr_1SbxGst05Exclusv": (Decimal("5"), False, "GST"),
    "txr_1SbxMwst19Inclsv": (Decimal("19"), True, "MwSt."),
}
# coupon id -> percent off
COUPONS: dict[str, int] = {"SBXTEN": 10, "LAUNCH15": 15, "LOYALTY5": 5, "PARTNER25": 25}
PRODUCTS = (
    ("Prep and label", "prod_1SbxPrepLabel0001", False),
    ("Storage per pallet", "prod_1SbxStorage00002", False),
    ("Pro plan", "prod_1SbxProPlan00003", True),
    ("Team seats", "prod_1SbxSeats0000004", True),
    ("Onboarding", "prod_1SbxOnboarding05", False),
    ("API calls", "prod_1SbxApiCalls0006", True),
    ("Support hours", "prod_1SbxSupport00007", False),
    ("Kitting", "prod_1SbxKitting00008", False),
)
METADATA_KEYS = ("order_id", "region", "sales_rep", "po_number", "campaign", "warehouse")
REGIONS = ("us-east", "us-west", "eu-central", "apac", "mena")
# The sandbox account: every seeded invoice is issued by it.
ACCOUNT_NAME = "Sandbox Prep Co."
ACCOUNT_COUNTRY = "US"
CUSTOMER_POOL = 2_500
MAX_LINES_PER_SEEDED_INVOICE = 15


def stripe_id(prefix: str, number: int, tag: str = ID_TAG) -> str:
    """A deterministic Stripe-looking id (``in_1Sbx000000004c``); ids sort like ``number``."""
    value, r0 = divmod(number, 3_844)
    value, r1 = divmod(value, 3_844)
    value, r2 = divmod(value, 3_844)
    value, r3 = divmod(value, 3_844)
    value, r4 = divmod(value, 3_844)
    if value or number < 0:
        raise ValueError(f"{number} does not fit in a sandbox id")
    return f"{prefix}_{tag}{_PAIRS[r4]}{_PAIRS[r3]}{_PAIRS[r2]}{_PAIRS[r1]}{_PAIRS[r0]}"


def id_number(identifier: str, prefix: str, tag: str = ID_TAG) -> int | None:
    """The number :func:`stripe_id` encoded in ``identifier`` (None if not one of ours)."""
    head = f"{prefix}_{tag}"
    if not identifier.startswith(head) or len(identifier) != len(head) + _ID_DIGITS:
        return None
    number = 0
    for char in identifier[len(head) :]:
        position = _ALPHABET.find(char)
        if position < 0:
            return None
        number = number * 62 + position
    return number


def granularity(currency: str) -> int:
    """Smallest amount step Stripe accepts: 10 for three-decimal currencies, else 1."""
    return 10 if money.exponent(currency) == 3 else 1


def round_to(amount: Decimal | int, currency: str) -> int:
    """``amount`` rounded half-up to the currency's step."""
    step = granularity(currency)
    return int((Decimal(amount) / step).quantize(Decimal(1), rounding="ROUND_HALF_UP")) * step


class TaxAmount(NamedTuple):
    """One tax on a line."""

    tax_rate: str
    amount: int
    inclusive: bool
    taxable_amount: int


@dataclass(slots=True)
class LineModel:
    """One invoice line; ``amount`` is quantity × unit price before discounts and taxes."""

    id: str
    description: str
    amount: int
    quantity: int
    unit_amount_decimal: str
    price_id: str
    product_id: str
    is_subscription: bool
    is_proration: bool
    invoice_item_id: str | None
    subscription_item_id: str | None
    period_start: int
    period_end: int
    price_created: int
    discounts: list[tuple[str, int]] = field(default_factory=list)  # (discount id, amount)
    taxes: list[TaxAmount] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def discount_total(self) -> int:
        """Sum of this line's discount amounts."""
        return sum(amount for _, amount in self.discounts)

    @property
    def unit_amount(self) -> int | None:
        """The integer unit amount, or None when the unit price has a fraction of a minor unit."""
        value = Decimal(self.unit_amount_decimal)
        return int(value) if value == value.to_integral_value() else None


@dataclass(slots=True)
class InvoiceModel:
    """The state of one invoice."""

    id: str
    created: int
    customer: str
    customer_number: int
    currency: str
    status: str
    collection_method: str
    lines: list[LineModel]
    metadata: dict[str, str]
    number: str | None
    description: str | None
    subscription_id: str | None
    days_until_due: int | None
    auto_advance: bool
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    marked_uncollectible_at: int | None = None
    invoice_discounts: list[str] = field(default_factory=list)
    discount_coupons: dict[str, str] = field(default_factory=dict)  # discount id -> coupon id

    @property
    def subtotal(self) -> int:
        """Sum of line amounts."""
        return sum(line.amount for line in self.lines)

    @property
    def discount_total(self) -> int:
        """Every discount amount, line-level and invoice-level."""
        return sum(line.discount_total for line in self.lines)

    @property
    def exclusive_tax(self) -> int:
        """Tax added on top of the discounted amounts."""
        return sum(t.amount for line in self.lines for t in line.taxes if not t.inclusive)

    @property
    def inclusive_tax(self) -> int:
        """Tax already contained in the amounts."""
        return sum(t.amount for line in self.lines for t in line.taxes if t.inclusive)

    @property
    def total(self) -> int:
        """subtotal − discounts + exclusive tax."""
        return self.subtotal - self.discount_total + self.exclusive_tax

    @property
    def amount_due(self) -> int:
        """What the customer owes (no starting balance in the sandbox)."""
        return self.total

    @property
    def amount_paid(self) -> int:
        """The whole amount once paid, else 0."""
        return self.amount_due if self.status == "paid" else 0

    @property
    def due_date(self) -> int | None:
        """Due date of a finalized ``send_invoice`` invoice."""
        if self.collection_method != "send_invoice" or self.days_until_due is None:
            return None
        return (self.finalized_at or self.created) + self.days_until_due * DAY

    def customer_email(self) -> str:
        """The customer's billing email."""
        return f"billing+{self.customer_number}@example.com"


def make_line(
    rng: random.Random,
    *,
    number: int,
    currency: str,
    created: int,
    subscription_id: str | None,
    amount: int | None = None,
    quantity: int | None = None,
    description: str | None = None,
) -> LineModel:
    """A line with realistic variety, or with the ``amount`` (line total) and quantity given."""
    low, high = CURRENCIES.get(currency, (1, (5, 2_000)))[1]
    product_name, product_id, recurring = PRODUCTS[rng.randrange(len(PRODUCTS))]
    is_subscription = amount is None and subscription_id is not None and recurring
    is_proration = is_subscription and rng.random() < 0.12
    qty = quantity if quantity is not None else rng.choice((1, 1, 1, 1, 2, 3, 5, 10, 25))
    if amount is None:
        unit_major = Decimal(rng.randint(low * 100, high * 100)) / 100
        unit = round_to(unit_major.scaleb(money.exponent(currency)), currency)
        unit = max(unit, granularity(currency))
        line_amount = unit * qty
        unit_decimal = str(unit)
    else:
        line_amount = amount
        unit_decimal = _decimal_text(Decimal(amount) / qty)
    if description is None:
        description = f"{qty} × {product_name}"
        if is_proration:
            description = f"Remaining time on {qty} × {product_name}"
    return LineModel(
        id=stripe_id("il", number),
        description=description,
        amount=line_amount,
        quantity=qty,
        unit_amount_decimal=unit_decimal,
        price_id=stripe_id("price", number),
        product_id=product_id,
        is_subscription=is_subscription,
        is_proration=is_proration,
        invoice_item_id=None if is_subscription else stripe_id("ii", number),
        subscription_item_id=stripe_id("si", number % 5_003 + 1) if is_subscription else None,
        period_start=created - (30 * DAY if is_subscription else 0),
        period_end=created,
        price_created=created - 180 * DAY,
    )


def _decimal_text(value: Decimal) -> str:
    """Stripe's ``unit_amount_decimal`` text: at most 12 decimals, no trailing zeros."""
    text = f"{value.quantize(Decimal('1.000000000000')):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def apply_discount(
    invoice: InvoiceModel, lines: list[LineModel], discount_id: str, coupon: str
) -> None:
    """Apply a percent-off coupon to the discountable ``lines`` (after earlier discounts)."""
    invoice.discount_coupons[discount_id] = coupon
    percent = COUPONS[coupon]
    for line in lines:
        if line.is_proration:
            continue
        base = line.amount - line.discount_total
        amount = round_to(Decimal(base * percent) / 100, invoice.currency)
        if amount:
            line.discounts.append((discount_id, amount))


def apply_tax(line: LineModel, rate_id: str, currency: str) -> None:
    """Tax ``line`` at ``rate_id`` on its discounted amount (inclusive or exclusive)."""
    percent, inclusive, _ = TAX_RATES[rate_id]
    base = line.amount - line.discount_total
    if inclusive:
        amount = round_to(Decimal(base) * percent / (100 + percent), currency)
        taxable = base - amount
    else:
        taxable = base
        amount = round_to(Decimal(base) * percent / 100, currency)
    line.taxes.append(TaxAmount(rate_id, amount, inclusive, taxable))


def finish_invoice(invoice: InvoiceModel, rng: random.Random, *, discount_number: int) -> None:
    """Add line and invoice discounts and taxes to a freshly built invoice (random variety)."""
    for position, line in enumerate(invoice.lines):
        if not line.is_proration and rng.random() < 0.12:
            coupon = list(COUPONS)[rng.randrange(len(COUPONS))]
            apply_discount(invoice, [line], stripe_id("di", discount_number + position), coupon)
    if rng.random() < 0.1:
        discount_id = stripe_id("di", discount_number + MAX_LINES_PER_SEEDED_INVOICE)
        coupon = list(COUPONS)[rng.randrange(len(COUPONS))]
        invoice.invoice_discounts.append(discount_id)
        apply_discount(invoice, invoice.lines, discount_id, coupon)
    if rng.random() < 0.55:
        rate_id = list(TAX_RATES)[rng.randrange(len(TAX_RATES))]
        for line in invoice.lines:
            if rng.random() < 0.9:
                apply_tax(line, rate_id, invoice.currency)


def seeded_created(index: int, offset: int, count: int, start: int, span: int, seed: int) -> int:
    """``created`` of the ``offset``-th of ``count`` invoices spread over ``[start, start+span)``.

    Each invoice gets its own slot with a deterministic jitter inside it, so ``created`` grows
    with ``offset`` (and ids grow with ``index``): a batch is already sorted.
    """
    slot_start = (offset * span) // count
    width = ((offset + 1) * span) // count - slot_start
    jitter = (index * 2_654_435_761 + seed * 40_503) % width if width > 1 else 0
    return start + slot_start + jitter


def generate_invoice(seed: int, index: int, created: int, now: int) -> InvoiceModel:
    """Seeded invoice number ``index`` (a pure function of its arguments)."""
    rng = random.Random(seed * 1_000_003 + index)
    currency = rng.choices(list(CURRENCIES), [weight for weight, _ in CURRENCIES.values()])[0]
    status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
    if rng.random() < 0.05:
        line_count = rng.randint(11, MAX_LINES_PER_SEEDED_INVOICE)
    else:
        line_count = rng.randint(1, 10)
    subscription_id = stripe_id("sub", rng.randint(1, 4_000)) if rng.random() < 0.45 else None
    collection = "send_invoice" if rng.random() < 0.35 else "charge_automatically"
    customer_number = rng.randint(1, CUSTOMER_POOL)
    first_line = index * (MAX_LINES_PER_SEEDED_INVOICE + 1)
    lines = [
        make_line(
            rng,
            number=first_line + position,
            currency=currency,
            created=created,
            subscription_id=subscription_id,
        )
        for position in range(line_count)
    ]
    metadata: dict[str, str] = {}
    for key in METADATA_KEYS:
        if rng.random() < 0.25:
            metadata[key] = (
                rng.choice(REGIONS)
                if key == "region"
                else f"{key[:2].upper()}-{rng.randint(1, 99_999)}"
            )
    invoice = InvoiceModel(
        id=stripe_id("in", index),
        created=created,
        customer=stripe_id("cus", customer_number),
        customer_number=customer_number,
        currency=currency,
        status="draft",
        collection_method=collection,
        lines=lines,
        metadata=metadata,
        number=None,
        description=rng.choice((None, None, "Thanks for your business.", "Monthly services")),
        subscription_id=subscription_id,
        days_until_due=rng.choice((14, 30, 45)) if collection == "send_invoice" else None,
        auto_advance=False,
    )
    finish_invoice(invoice, rng, discount_number=first_line)
    if status == "draft":
        return invoice
    invoice.number = f"SBX{customer_number:05d}-{index:06d}"
    invoice.status = "open"
    invoice.finalized_at = min(created + 3_600, now)
    invoice.auto_advance = True
    if status == "paid":
        invoice.status = "paid"
        invoice.auto_advance = False
        invoice.paid_at = min(invoice.finalized_at + rng.randint(60, 20 * DAY), now)
    elif status == "void":
        invoice.status = "void"
        invoice.auto_advance = False
        invoice.voided_at = min(invoice.finalized_at + rng.randint(DAY, 10 * DAY), now)
    elif status == "uncollectible":
        invoice.status = "uncollectible"
        invoice.auto_advance = False
        invoice.marked_uncollectible_at = min(invoice.finalized_at + 45 * DAY, now)
    return invoice


def copy_model(model: InvoiceModel) -> InvoiceModel:
    """A copy safe to mutate without touching the original (or a cached one)."""
    return replace(
        model,
        lines=[
            replace(
                line,
                discounts=list(line.discounts),
                taxes=list(line.taxes),
                metadata=dict(line.metadata),
            )
            for line in model.lines
        ],
        metadata=dict(model.metadata),
        invoice_discounts=list(model.invoice_discounts),
        discount_coupons=dict(model.discount_coupons),
    )


def render_line(line: LineModel, invoice: InvoiceModel, *, legacy: bool) -> dict[str, Any]:
    """A line item in Stripe's JSON, legacy or basil shape."""
    line_level = [d for d, _ in line.discounts if d not in invoice.invoice_discounts]
    body: dict[str, Any] = {
        "id": line.id,
        "object": "line_item",
        "amount": line.amount,
        "currency": invoice.currency,
        "description": line.description,
        "discount_amounts": [{"amount": a, "discount": d} for d, a in line.discounts],
        "discountable": not line.is_proration,
        "discounts": line_level,
        "livemode": False,
        "metadata": dict(line.metadata),
        "period": {"end": line.period_end, "start": line.period_start},
        "quantity": line.quantity,
        "subscription": invoice.subscription_id if line.is_subscription else None,
    }
    if legacy:
        body.update(
            {
                "amount_excluding_tax": line.amount
                - sum(t.amount for t in line.taxes if t.inclusive),
                "invoice_item": line.invoice_item_id,
                "plan": _plan(line, invoice) if line.is_subscription else None,
                "price": _price(line, invoice),
                "proration": line.is_proration,
                "proration_details": {"credited_items": None},
                "subscription_item": line.subscription_item_id,
                "tax_amounts": [
                    {
                        "amount": tax.amount,
                        "inclusive": tax.inclusive,
                        "tax_rate": tax.tax_rate,
                        "taxability_reason": "standard_rated",
                        "taxable_amount": tax.taxable_amount,
                    }
                    for tax in line.taxes
                ],
                "tax_rates": [],
                "type": "subscription" if line.is_subscription else "invoiceitem",
                "unit_amount_excluding_tax": _decimal_text(
                    Decimal(line.amount - sum(t.amount for t in line.taxes if t.inclusive))
                    / line.quantity
                ),
            }
        )
        return body
    details: dict[str, Any] = {
        "invoice_item": line.invoice_item_id,
        "proration": line.is_proration,
        "proration_details": {"credited_items": None},
        "subscription": invoice.subscription_id if line.is_subscription else None,
    }
    if line.is_subscription:
        parent: dict[str, Any] = {
            "invoice_item_details": None,
            "subscription_item_details": {
                **details,
                "subscription_item": line.subscription_item_id,
            },
            "type": "subscription_item_details",
        }
    else:
        parent = {
            "invoice_item_details": details,
            "subscription_item_details": None,
            "type": "invoice_item_details",
        }
    body.update(
        {
            "invoice": invoice.id,
            "parent": parent,
            "pretax_credit_amounts": [
                {
                    "amount": amount,
                    "credit_balance_transaction": None,
                    "discount": discount,
                    "type": "discount",
                }
                for discount, amount in line.discounts
            ],
            "pricing": {
                "price_details": {"price": line.price_id, "product": line.product_id},
                "type": "price_details",
                "unit_amount_decimal": line.unit_amount_decimal,
            },
            "quantity_decimal": str(line.quantity),
            "subtotal": line.amount,
            "taxes": [
                {
                    "amount": tax.amount,
                    "tax_behavior": "inclusive" if tax.inclusive else "exclusive",
                    "tax_rate_details": {"tax_rate": tax.tax_rate},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": tax.taxable_amount,
                    "type": "tax_rate_details",
                }
                for tax in line.taxes
            ],
        }
    )
    return body


def _price(line: LineModel, invoice: InvoiceModel) -> dict[str, Any]:
    return {
        "id": line.price_id,
        "object": "price",
        "active": not line.invoice_item_id,
        "billing_scheme": "per_unit",
        "created": line.price_created,
        "currency": invoice.currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": line.product_id,
        "recurring": _recurring() if line.is_subscription else None,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if line.is_subscription else "one_time",
        "unit_amount": line.unit_amount,
        "unit_amount_decimal": line.unit_amount_decimal,
    }


def _recurring() -> dict[str, Any]:
    return {
        "aggregate_usage": None,
        "interval": "month",
        "interval_count": 1,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


def _plan(line: LineModel, invoice: InvoiceModel) -> dict[str, Any]:
    return {
        "id": line.price_id,
        "object": "plan",
        "active": True,
        "aggregate_usage": None,
        "amount": line.unit_amount,
        "amount_decimal": line.unit_amount_decimal,
        "billing_scheme": "per_unit",
        "created": line.price_created,
        "currency": invoice.currency,
        "interval": "month",
        "interval_count": 1,
        "livemode": False,
        "metadata": {},
        "nickname": None,
        "product": line.product_id,
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


def _discount_object(invoice: InvoiceModel, discount_id: str) -> dict[str, Any]:
    coupon = invoice.discount_coupons[discount_id]
    return {
        "id": discount_id,
        "object": "discount",
        "checkout_session": None,
        "coupon": {
            "id": coupon,
            "object": "coupon",
            "amount_off": None,
            "created": invoice.created - 365 * DAY,
            "currency": None,
            "duration": "once",
            "duration_in_months": None,
            "livemode": False,
            "max_redemptions": None,
            "metadata": {},
            "name": f"{COUPONS[coupon]}% off",
            "percent_off": float(COUPONS[coupon]),
            "redeem_by": None,
            "times_redeemed": 1,
            "valid": True,
        },
        "customer": invoice.customer,
        "end": None,
        "invoice": invoice.id,
        "invoice_item": None,
        "promotion_code": None,
        "start": invoice.created,
        "subscription": None,
    }


def render_invoice(
    invoice: InvoiceModel, *, legacy: bool, embedded_lines: int = 10
) -> dict[str, Any]:
    """An invoice in Stripe's JSON with up to ``embedded_lines`` lines embedded."""
    taxes_by_rate: dict[tuple[str, bool], list[int]] = {}
    discounts_by_id: dict[str, int] = {}
    subtotal = inclusive_tax = exclusive_tax = discount_total = 0
    for line in invoice.lines:
        subtotal += line.amount
        for tax in line.taxes:
            bucket = taxes_by_rate.setdefault((tax.tax_rate, tax.inclusive), [0, 0])
            bucket[0] += tax.amount
            bucket[1] += tax.taxable_amount
            if tax.inclusive:
                inclusive_tax += tax.amount
            else:
                exclusive_tax += tax.amount
        for discount_id, amount in line.discounts:
            discounts_by_id[discount_id] = discounts_by_id.get(discount_id, 0) + amount
            discount_total += amount
    total = subtotal - discount_total + exclusive_tax
    amount_due = total
    amount_paid = amount_due if invoice.status == "paid" else 0
    finalized = invoice.status != "draft"
    customer_number = invoice.customer_number
    body: dict[str, Any] = {
        "id": invoice.id,
        "object": "invoice",
        "account_country": ACCOUNT_COUNTRY,
        "account_name": ACCOUNT_NAME,
        "account_tax_ids": None,
        "amount_due": amount_due,
        "amount_overpaid": 0,
        "amount_paid": amount_paid,
        "amount_remaining": amount_due - amount_paid,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 1 if invoice.paid_at or invoice.marked_uncollectible_at else 0,
        "attempted": bool(invoice.paid_at or invoice.marked_uncollectible_at),
        "auto_advance": invoice.auto_advance,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": "subscription_cycle" if invoice.subscription_id else "manual",
        "collection_method": invoice.collection_method,
        "created": invoice.created,
        "currency": invoice.currency,
        "custom_fields": None,
        "customer": invoice.customer,
        "customer_address": {
            "city": "Springfield",
            "country": "US",
            "line1": f"{customer_number} Main St",
            "line2": None,
            "postal_code": f"{10_000 + customer_number:05d}",
            "state": "IL",
        },
        "customer_email": invoice.customer_email(),
        "customer_name": f"Customer {customer_number}",
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": invoice.description,
        "discounts": list(invoice.invoice_discounts),
        "due_date": invoice.due_date,
        "effective_at": invoice.finalized_at,
        "ending_balance": 0 if finalized else None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": (
            f"https://invoice.stripe.com/i/acct_1SbxSandbox/test_{invoice.id[3:]}"
            if finalized
            else None
        ),
        "invoice_pdf": (
            f"https://pay.stripe.com/invoice/acct_1SbxSandbox/test_{invoice.id[3:]}/pdf"
            if finalized
            else None
        ),
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": [
                render_line(line, invoice, legacy=legacy) for line in invoice.lines[:embedded_lines]
            ],
            "has_more": len(invoice.lines) > embedded_lines,
            "total_count": len(invoice.lines),
            "url": f"/v1/invoices/{invoice.id}/lines",
        },
        "livemode": False,
        "metadata": dict(invoice.metadata),
        "next_payment_attempt": (
            invoice.finalized_at + 3_600
            if invoice.status == "open"
            and invoice.collection_method == "charge_automatically"
            and invoice.finalized_at
            else None
        ),
        "number": invoice.number,
        "on_behalf_of": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": invoice.created,
        "period_start": invoice.created - (30 * DAY if invoice.subscription_id else 0),
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": {
            "amount_tax_display": None,
            "pdf": {"page_size": "auto"},
            "template": None,
            "template_version": None,
        },
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
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal - inclusive_tax,
        "test_clock": None,
        "total": total,
        "total_discount_amounts": [
            {"amount": amount, "discount": discount_id}
            for discount_id, amount in discounts_by_id.items()
        ],
        "total_excluding_tax": total - exclusive_tax - inclusive_tax,
        "webhooks_delivered_at": invoice.created + 1 if finalized else None,
    }
    if legacy:
        single = invoice.invoice_discounts[0] if len(invoice.invoice_discounts) == 1 else None
        body.update(
            {
                "application_fee_amount": None,
                "charge": stripe_id("ch", id_number(invoice.id, "in") or 0)
                if invoice.status == "paid"
                else None,
                "discount": _discount_object(invoice, single) if single else None,
                "paid": invoice.status == "paid",
                "paid_out_of_band": False,
                "payment_intent": stripe_id("pi", id_number(invoice.id, "in") or 0)
                if finalized and invoice.collection_method == "charge_automatically"
                else None,
                "quote": None,
                "rendering_options": None,
                "subscription": invoice.subscription_id,
                "subscription_proration_date": None,
                "tax": exclusive_tax + inclusive_tax if taxes_by_rate else None,
                "total_tax_amounts": [
                    {
                        "amount": amount,
                        "inclusive": inclusive,
                        "tax_rate": rate,
                        "taxability_reason": "standard_rated",
                        "taxable_amount": taxable,
                    }
                    for (rate, inclusive), (amount, taxable) in taxes_by_rate.items()
                ],
                "transfer_data": None,
            }
        )
        return body
    body.update(
        {
            "amount_paid_off_stripe": 0,
            "confirmation_secret": None,
            "parent": (
                {
                    "quote_details": None,
                    "subscription_details": {
                        "metadata": {},
                        "subscription": invoice.subscription_id,
                    },
                    "type": "subscription_details",
                }
                if invoice.subscription_id
                else None
            ),
            "status_details": None,
            "total_pretax_credit_amounts": [
                {"amount": amount, "discount": discount_id, "type": "discount"}
                for discount_id, amount in discounts_by_id.items()
            ],
            "total_taxes": [
                {
                    "amount": amount,
                    "tax_behavior": "inclusive" if inclusive else "exclusive",
                    "tax_rate_details": {"tax_rate": rate},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": taxable,
                    "type": "tax_rate_details",
                }
                for (rate, inclusive), (amount, taxable) in taxes_by_rate.items()
            ],
        }
    )
    return body
