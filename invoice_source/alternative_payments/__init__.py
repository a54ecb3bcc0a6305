"""The ``alternative_payments`` dlt source: invoices and their line items from the Alternative
Payments Invoices API.

Tables: ``alternative_payments_invoices`` (merge on ``id``, ``is_archived`` flag) and
``alternative_payments_invoice_line_items`` (a root table, one row per line, merge strategy
``delete-insert`` on ``merge_key="invoice_id"`` so a re-read invoice replaces its lines).
Configured under ``[sources.alternative_payments]``; see README.md in this folder for how
changes are caught and what each run costs in requests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from invoice_source.alternative_payments import settings
from invoice_source.alternative_payments.client import (
    AlternativePaymentsClient,
    AlternativePaymentsError,
    InvoiceFilters,
    LineItem,
    check_settings,
    to_utc,
)
from invoice_source.alternative_payments.reader import InvoiceReader, ScopeFilters
from invoice_source.alternative_payments.rows import (
    INVOICE_COLUMNS,
    LINE_ITEM_COLUMNS,
    InvoiceBatch,
    invoices_table,
    line_items_table,
)
from invoice_source.errors import ConfigurationError
from invoice_source.redaction import register_secret

__all__ = [
    "AlternativePaymentsClient",
    "AlternativePaymentsError",
    "InvoiceFilters",
    "LineItem",
    "alternative_payments_source",
]

BATCHES_RESOURCE = "alternative_payments_invoice_batches"


@dlt.source(name="alternative_payments", max_table_nesting=0)
def alternative_payments_source(
    base_url: str = dlt.config.value,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    scopes: str | Sequence[str] | None = None,
    start_date: str | datetime | None = None,
    end_date: str | datetime | None = None,
    status: str | None = None,
    customer_id: str | None = None,
    invoice_number: str | None = None,
    due_date_start: str | datetime | None = None,
    due_date_end: str | datetime | None = None,
    page_size: int = settings.DEFAULT_PAGE_SIZE,
    requests_per_second: float | None = settings.DEFAULT_REQUESTS_PER_SECOND,
    lookback_seconds: int = settings.CURSOR_LOOKBACK_SECONDS,
    token_url: str | None = None,
) -> Sequence[DltResource]:
    """Alternative Payments invoices and line items.

    Without ``end_date`` a run is incremental by ``created_at`` (first run from ``start_date``,
    or everything) and also re-reads open and archived invoices so status, total, archive and
    restore changes land. With ``end_date`` it is a backfill of ``[start_date, end_date)``
    that leaves the saved cursor untouched. ``status``, ``customer_id``, ``invoice_number`` and
    the due-date range are applied server-side; each combination keeps its own cursor.
    ``scopes`` is space- or comma-separated (empty: every scope the client may have).
    """
    register_secret(client_secret)
    check_settings(base_url, client_id, client_secret, page_size)
    start = _moment("start_date", start_date)
    end = _moment("end_date", end_date)
    if start is not None and end is not None and start >= end:
        raise ConfigurationError(
            f"{settings.CONFIG_SECTION}: start_date {start_date} is not before end_date {end_date}"
        )
    filters = ScopeFilters(
        status=status or None,
        customer_id=customer_id or None,
        invoice_number=invoice_number or None,
        due_date_start=_moment("due_date_start", due_date_start),
        due_date_end=_moment("due_date_end", due_date_end),
    )
    scope_list = _scopes(scopes)
    lookback = timedelta(seconds=max(0, int(lookback_seconds)))

    @dlt.resource(name=BATCHES_RESOURCE, selected=False)
    def invoice_batches() -> Iterator[InvoiceBatch]:
        state = dlt.current.resource_state(settings.INVOICES_TABLE)
        with AlternativePaymentsClient(
            base_url,
            client_id,
            client_secret,
            scopes=scope_list,
            token_url=token_url,
            requests_per_second=requests_per_second,
            page_size=page_size,
        ) as client:
            reader = InvoiceReader(
                client, filters=filters, state=state, page_size=page_size, lookback=lookback
            )
            if end is not None:
                yield from reader.backfill(start, end)
            else:
                yield from reader.incremental(start)

    @dlt.transformer(
        data_from=invoice_batches,
        name=settings.INVOICES_TABLE,
        write_disposition="merge",
        primary_key="id",
        columns=INVOICE_COLUMNS,
        file_format="parquet",
    )
    def invoices(batch: InvoiceBatch) -> Iterator[pa.Table]:
        if batch.invoices:
            yield invoices_table(batch.invoices)

    @dlt.transformer(
        data_from=invoice_batches,
        name=settings.LINE_ITEMS_TABLE,
        write_disposition="merge",
        primary_key=("invoice_id", "line_number"),
        merge_key="invoice_id",
        columns=LINE_ITEM_COLUMNS,
        file_format="parquet",
    )
    def invoice_line_items(batch: InvoiceBatch) -> Iterator[pa.Table]:
        if batch.line_items:
            yield line_items_table(batch.line_items)

    invoices_resource = invoices()
    line_items_resource = invoice_line_items()
    for resource in (invoices_resource, line_items_resource):
        resource.apply_hints(
            write_disposition={"disposition": "merge", "strategy": "delete-insert"}
        )
    return (invoice_batches, invoices_resource, line_items_resource)


def _moment(name: str, value: str | date | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return to_utc(value)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{settings.CONFIG_SECTION}.{name} must be an ISO date or RFC3339 date-time"
            f" (e.g. 2025-01-31 or 2025-01-31T00:00:00Z), got {value!r}"
        ) from None


def _scopes(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if not value:
        return ()
    items: list[str] = [value] if isinstance(value, str) else [str(item) for item in value]
    return tuple(part for item in items for part in item.replace(",", " ").split() if part)
