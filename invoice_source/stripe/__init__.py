"""Stripe invoices: every invoice, every line item, every later change.

The dlt source is :func:`invoice_source.stripe.source.stripe_source` (its docstring describes the
tables). This ``__init__`` imports it only when asked for: the worker processes that read long
histories import this package for its client, reader and batch modules, and dlt, which they
never use, would cost each of them ~30 MB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["StripeClient", "TableBatch", "stripe_source", "with_table_hints"]

if TYPE_CHECKING:
    from invoice_source.stripe.client import StripeClient
    from invoice_source.stripe.source import stripe_source, with_table_hints
    from invoice_source.stripe.tables import TableBatch

_HOMES = {
    "StripeClient": "invoice_source.stripe.client",
    "TableBatch": "invoice_source.stripe.tables",
    "stripe_source": "invoice_source.stripe.source",
    "with_table_hints": "invoice_source.stripe.source",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
