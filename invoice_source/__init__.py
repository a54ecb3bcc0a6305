"""invoice-sync: dlt sources for Stripe, PrepBusiness and Alternative Payments invoices.

The public face: one dlt source per API. Each is importable without the others' dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["alternative_payments_source", "prepbusiness_source", "stripe_source"]

if TYPE_CHECKING:
    from invoice_source.alternative_payments import alternative_payments_source
    from invoice_source.prepbusiness import prepbusiness_source
    from invoice_source.stripe import stripe_source


def __getattr__(name: str) -> Any:
    if name == "stripe_source":
        from invoice_source.stripe import stripe_source

        return stripe_source
    if name == "prepbusiness_source":
        from invoice_source.prepbusiness import prepbusiness_source

        return prepbusiness_source
    if name == "alternative_payments_source":
        from invoice_source.alternative_payments import alternative_payments_source

        return alternative_payments_source
    raise AttributeError(name)
