"""What one sandbox may ask of another: PrepBusiness pushes finalized invoices to Stripe."""

from __future__ import annotations

from typing import Protocol


class StripeLink(Protocol):
    """What the PrepBusiness sandbox uses of the Stripe sandbox (``StripeApp`` implements it)."""

    def create_external_invoice(
        self,
        *,
        customer: str,
        currency: str,
        lines: list[dict[str, object]],
        metadata: dict[str, str],
        finalize: bool = True,
    ) -> str:
        """Create an invoice (lines: ``amount`` in integer minor units, ``description``,
        ``quantity``), finalize it when asked, and return its ``in_...`` id."""
        ...

    def pay_invoice(self, invoice_id: str) -> None:
        """Mark an open invoice paid (emitting Stripe's events)."""
        ...

    def invoice_status(self, invoice_id: str) -> str:
        """The invoice's current status (``draft``, ``open``, ``paid``, ``void``, ...)."""
        ...
