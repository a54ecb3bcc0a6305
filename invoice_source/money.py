"""Exact money: currency exponents and conversion between integer minor units and major units.

Stripe sends integer minor units; the exponent depends on the currency (JPY 0, USD 2, BHD 3).
PrepBusiness and Alternative Payments send major units as JSON numbers; those are parsed as
``Decimal`` straight from the JSON text (never through float) and kept exact.
The exponent table is the single source: the SQL models read it as the ``currencies`` table.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

# Zero-decimal currencies as Stripe lists them (amounts are whole units).
ZERO_DECIMAL: Final = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)
# Three-decimal currencies (ISO 4217 minor unit 3) that Stripe supports.
THREE_DECIMAL: Final = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
DEFAULT_EXPONENT: Final = 2
# Major-unit amounts (PrepBusiness, Alternative Payments) land as DECIMAL(38, 6): exact, and an
# amount with more than six decimals is refused rather than rounded.
AMOUNT_SCALE: Final = 6
AMOUNT_COLUMN: Final = {"data_type": "decimal", "precision": 38, "scale": AMOUNT_SCALE}


def exponent(currency: str) -> int:
    """Number of decimal places of ``currency`` (ISO code, any case)."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return DEFAULT_EXPONENT


def to_major(amount_minor: int | None, currency: str) -> Decimal | None:
    """Exact major-unit amount of an integer minor-unit amount (``1999, "usd"`` -> ``19.99``)."""
    if amount_minor is None:
        return None
    return Decimal(amount_minor).scaleb(-exponent(currency))


def to_minor(amount_major: Decimal | int | str, currency: str) -> int:
    """Integer minor units of an exact major-unit amount; refuses sub-minor-unit precision."""
    try:
        value = Decimal(str(amount_major))
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {amount_major!r}") from exc
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(
            f"{amount_major} {currency.upper()} has more decimals than the currency allows"
        )
    return int(scaled)


def parse_decimal(value: object) -> Decimal | None:
    """A JSON number or numeric string as an exact ``Decimal`` (``None`` stays ``None``).

    Floats are converted through ``repr`` so ``576.3`` becomes ``Decimal("576.3")``, not the
    binary approximation; clients that can decode with ``Decimal`` directly should do so.
    """
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    try:
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {value!r}") from exc


def parse_amount(value: object, *, field: str = "amount") -> Decimal | None:
    """A major-unit amount as an exact ``Decimal`` fit for ``AMOUNT_COLUMN``.

    Raises ``ValueError`` naming ``field`` for non-numbers and for more than six decimals."""
    try:
        amount = parse_decimal(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
    if amount is None:
        return None
    if not amount.is_finite():
        raise ValueError(f"{field}: not a finite amount: {value!r}")
    exponent_ = amount.as_tuple().exponent
    if isinstance(exponent_, int) and -exponent_ > AMOUNT_SCALE:
        raise ValueError(f"{field}: {value!r} has more than {AMOUNT_SCALE} decimal places")
    return amount


def format_amount(amount: Decimal | None, currency: str) -> str:
    """Human-readable amount with the currency's own number of decimals (``1,234.500 BHD``)."""
    if amount is None:
        return ""
    places = exponent(currency)
    return f"{amount:,.{places}f} {currency.upper()}"


def currency_rows() -> list[dict[str, object]]:
    """Rows of the ``currencies`` table: every currency whose exponent is not the default 2.

    Models join on it with ``coalesce(exponent, 2)``.
    """
    rows: list[dict[str, object]] = [
        {"currency": code.lower(), "exponent": 0} for code in sorted(ZERO_DECIMAL)
    ]
    rows += [{"currency": code.lower(), "exponent": 3} for code in sorted(THREE_DECIMAL)]
    return rows
