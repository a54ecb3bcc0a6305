"""What the benchmark needs to know about each API: its sandbox, its source and its tables.

The sandboxes and sources are imported by name when used, so an API whose source or sandbox is
not written yet only fails (and is reported as skipped) when it is benchmarked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from invoice_source.pipeline import SOURCES
from invoice_source.sandbox.server import App


def load(reference: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass(frozen=True)
class ApiBenchmark:
    """One API under benchmark."""

    name: str
    title: str
    app_class: str
    invoices_table: str
    line_items_table: str | None
    """``None`` when the API has no line items."""
    count_rows: Callable[[App], tuple[int, int]]
    """Invoices and line items the sandbox holds, i.e. what a full load must land."""
    default_requests_per_second: float
    """The source's own default rate limit (0: none)."""
    concurrent: bool
    """Whether the source takes ``max_workers`` (otherwise it reads one request at a time)."""
    default_invoices: int
    default_latency_invoices: int

    @property
    def source_function(self) -> str:
        """``module:function`` of the API's dlt source, as :func:`run_sync` imports it."""
        return SOURCES[self.name]

    def make_app(self, seed: int) -> App:
        """A fresh, unseeded sandbox app."""
        app: App = load(self.app_class)(seed=seed)
        return app

    def workers(self, requested: int) -> int:
        """Requests the source has in flight at most."""
        return requested if self.concurrent else 1

    def source_overrides(
        self, *, workers: int, requests_per_second: float | None
    ) -> dict[str, Any]:
        """Arguments for the dlt source on top of the ``SOURCES__<API>__*`` env vars.

        ``requests_per_second`` 0 means no client-side limit and ``None`` the source's default
        (passed explicitly: some sandboxes' env switch the limit off).
        """
        overrides: dict[str, Any] = {
            "requests_per_second": (
                self.default_requests_per_second
                if requests_per_second is None
                else requests_per_second
            )
        }
        if self.concurrent:
            overrides["max_workers"] = workers
        return overrides

    def effective_requests_per_second(self, requests_per_second: float | None) -> float | None:
        """The client-side limit a run has (``None``: unlimited)."""
        rate = (
            self.default_requests_per_second if requests_per_second is None else requests_per_second
        )
        return rate or None

    def available(self) -> str | None:
        """Why this API cannot be benchmarked yet (``None`` when it can)."""
        for reference in (self.app_class, self.source_function):
            try:
                load(reference)
            except (ImportError, AttributeError) as exc:
                return f"{reference} is not importable ({type(exc).__name__}: {exc})"
        return None


def _stripe_rows(app: App) -> tuple[int, int]:
    from invoice_source.sandbox.stripe import StripeApp

    assert isinstance(app, StripeApp)
    invoice_ids = app.invoice_ids()
    return len(invoice_ids), sum(app.line_count(invoice_id) for invoice_id in invoice_ids)


def _prepbusiness_rows(app: App) -> tuple[int, int]:
    from invoice_source.sandbox.prepbusiness import PrepBusinessApp

    assert isinstance(app, PrepBusinessApp)
    return app.count(), 0


def _alternative_payments_rows(app: App) -> tuple[int, int]:
    from invoice_source.sandbox.alternative_payments import AlternativePaymentsApp

    assert isinstance(app, AlternativePaymentsApp)
    invoices = list(app.invoices.values())
    return len(invoices), sum(len(invoice.line_items) for invoice in invoices)


def _stripe() -> ApiBenchmark:
    from invoice_source.stripe import settings

    return ApiBenchmark(
        name="stripe",
        title="Stripe",
        app_class="invoice_source.sandbox.stripe:StripeApp",
        invoices_table=settings.TABLE_INVOICES,
        line_items_table=settings.TABLE_LINE_ITEMS,
        count_rows=_stripe_rows,
        # the sandbox's key is a test-mode key
        default_requests_per_second=settings.TEST_REQUESTS_PER_SECOND,
        concurrent=True,
        default_invoices=20_000,
        default_latency_invoices=2_000,
    )


def _prepbusiness() -> ApiBenchmark:
    from invoice_source.prepbusiness import settings

    return ApiBenchmark(
        name="prepbusiness",
        title="PrepBusiness",
        app_class="invoice_source.sandbox.prepbusiness:PrepBusinessApp",
        invoices_table=settings.TABLE_INVOICES,
        line_items_table=None,
        count_rows=_prepbusiness_rows,
        default_requests_per_second=settings.DEFAULT_REQUESTS_PER_SECOND,
        concurrent=False,
        default_invoices=10_000,
        default_latency_invoices=1_000,
    )


def _alternative_payments() -> ApiBenchmark:
    from invoice_source.alternative_payments import settings

    return ApiBenchmark(
        name="alternative_payments",
        title="Alternative Payments",
        app_class="invoice_source.sandbox.alternative_payments:AlternativePaymentsApp",
        invoices_table=settings.INVOICES_TABLE,
        line_items_table=settings.LINE_ITEMS_TABLE,
        count_rows=_alternative_payments_rows,
        default_requests_per_second=settings.DEFAULT_REQUESTS_PER_SECOND,
        concurrent=False,
        default_invoices=20_000,
        default_latency_invoices=2_000,
    )


def _registry() -> dict[str, ApiBenchmark]:
    apis: dict[str, ApiBenchmark] = {}
    for factory in (_stripe, _prepbusiness, _alternative_payments):
        try:
            api = factory()
        except ImportError:
            continue
        apis[api.name] = api
    return apis


API_NAMES = ("stripe", "prepbusiness", "alternative_payments")
APIS: dict[str, ApiBenchmark] = _registry()
"""The APIs whose settings module imports; :meth:`ApiBenchmark.available` checks the rest."""
