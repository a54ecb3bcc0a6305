"""The Stripe invoices source: every invoice, every line item, every later change.

One resource, ``stripe_invoices``, writes four tables:

- ``stripe_invoices``: one row per invoice, merged on ``id``; deleted drafts stay, flagged
  ``is_deleted``.
- ``stripe_invoice_line_items``: one row per line item (all of them, not only the ten Stripe
  embeds), keyed by ``(invoice_id, id)``.
- ``stripe_invoice_line_item_discounts`` and ``stripe_invoice_line_item_taxes``: the lines' own
  lists, one row per entry.

Child tables are written with merge strategy ``delete-insert`` on ``merge_key="invoice_id"``, so
an invoice read again replaces its lines (a line removed from a draft disappears).

New invoices are read by ``created`` with server-side ``created[gte|lt]`` filters, from a cursor
kept in dlt resource state (re-reading ``created_overlap_seconds`` before it; the merge absorbs
the overlap). Changes to invoices already loaded come from ``invoice.*`` events since the last
run; when the last run is older than Stripe keeps events (30 days), or events cannot be read,
invoices created within ``reread_window_days`` are read again instead, and the log says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from invoice_source.columns import Column, TableBuilder, column_hints
from invoice_source.errors import AuthenticationError, NotFoundError
from invoice_source.stripe import settings
from invoice_source.stripe.client import CreatedWindow, Invoice, StripeClient
from invoice_source.stripe.reader import ConcurrentInvoiceReader, InvoicePage
from invoice_source.stripe.shapes import (
    INVOICE_COLUMNS,
    LINE_DISCOUNT_COLUMNS,
    LINE_ITEM_COLUMNS,
    LINE_TAX_COLUMNS,
    invoice_row,
    line_rows,
)
from invoice_source.windows import parse_window

__all__ = ["StripeClient", "stripe_source"]

logger = logging.getLogger("invoice_source.stripe")

# Rows gathered before a batch of tables is handed to dlt: big enough for efficient parquet row
# groups, small enough to keep memory flat.
BATCH_INVOICES = 2000

CHILD_TABLES: dict[str, list[Column]] = {
    settings.TABLE_LINE_ITEMS: LINE_ITEM_COLUMNS,
    settings.TABLE_LINE_DISCOUNTS: LINE_DISCOUNT_COLUMNS,
    settings.TABLE_LINE_TAXES: LINE_TAX_COLUMNS,
}
CHILD_KEYS: dict[str, Sequence[str]] = {
    settings.TABLE_LINE_ITEMS: ("invoice_id", "id"),
    settings.TABLE_LINE_DISCOUNTS: ("invoice_id", "line_item_id", "position"),
    settings.TABLE_LINE_TAXES: ("invoice_id", "line_item_id", "position"),
}


@dlt.source(name="stripe", max_table_nesting=0)
def stripe_source(
    api_key: str = dlt.secrets.value,
    base_url: str = settings.DEFAULT_BASE_URL,
    api_version: str = settings.DEFAULT_API_VERSION,
    account: str | None = None,
    transport: str = "stripe",
    appgregator_name: str | None = None,
    appgregator_connection_name: str | None = None,
    start_date: Any = None,
    end_date: Any = None,
    max_workers: int = settings.DEFAULT_MAX_WORKERS,
    requests_per_second: float | None = None,
    page_size: int = settings.MAX_PAGE_SIZE,
    created_overlap_seconds: int = settings.DEFAULT_CREATED_OVERLAP_SECONDS,
    reread_window_days: int = settings.DEFAULT_REREAD_WINDOW_DAYS,
    use_events: bool = True,
) -> DltResource:
    """Stripe invoices and their line items, configured under ``[sources.stripe]``.

    Without ``end_date`` a run is incremental; with it, a backfill of
    ``[start_date, end_date)`` that leaves the saved cursor alone. ``transport="appgregator"``
    reads through the Appgregator proxy (``x-api-key`` plus ``appgregator_name`` and
    ``appgregator_connection_name`` on every request).
    """
    start, end = parse_window(start_date, end_date, section="sources.stripe")
    client = StripeClient(
        api_key=api_key,
        base_url=base_url,
        api_version=api_version,
        account=account,
        transport=transport,
        appgregator_name=appgregator_name,
        appgregator_connection_name=appgregator_connection_name,
        requests_per_second=requests_per_second,
        max_connections=max(4, max_workers * 2),
    )
    sync = StripeInvoiceSync(
        client,
        start=int(start.timestamp()) if start else None,
        end=int(end.timestamp()) if end else None,
        max_workers=max_workers,
        page_size=page_size,
        created_overlap_seconds=created_overlap_seconds,
        reread_window_days=reread_window_days,
        use_events=use_events,
    )

    def stripe_invoices() -> Iterator[Any]:
        yield from sync.run()

    return with_table_hints(dlt.resource(stripe_invoices, name=settings.TABLE_INVOICES))


def with_table_hints(resource: DltResource) -> DltResource:
    """Give each of the four Stripe tables its own hints (keys, merge strategy, column types).

    Hint variants start from the resource's own hints, so the resource itself carries none.
    """
    resource.apply_hints(
        table_name=settings.TABLE_INVOICES,
        write_disposition="merge",
        primary_key="id",
        columns=column_hints(INVOICE_COLUMNS),
        create_table_variant=True,
    )
    for table, columns in CHILD_TABLES.items():
        resource.apply_hints(
            table_name=table,
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            primary_key=list(CHILD_KEYS[table]),
            merge_key="invoice_id",
            columns=column_hints(columns),
            create_table_variant=True,
        )
    return resource


class StripeInvoiceSync:
    """One run of the Stripe resource: changes since the last run, then new invoices."""

    def __init__(
        self,
        client: StripeClient,
        *,
        start: int | None,
        end: int | None,
        max_workers: int,
        page_size: int,
        created_overlap_seconds: int,
        reread_window_days: int,
        use_events: bool,
    ) -> None:
        self.client = client
        self.start = start
        self.end = end
        self.max_workers = max_workers
        self.page_size = page_size
        self.overlap = created_overlap_seconds
        self.reread_seconds = reread_window_days * 86_400
        self.use_events = use_events

    @property
    def is_backfill(self) -> bool:
        """A run with an end date loads a window and leaves the cursor alone."""
        return self.end is not None

    def run(self) -> Iterator[Any]:
        """The resource generator: yields pyarrow tables tagged with their table names."""
        state = dlt.current.resource_state()
        started_at = int(time.time())
        batch = TableBatch(started_at)
        try:
            if self.is_backfill:
                window = CreatedWindow(self.start, self.end)
                logger.info("Stripe backfill of created in %s", _describe(window))
                yield from self._read_new(window, batch)
                yield from batch.flush()
                return
            cursor: int | None = state.get("created_cursor")
            if cursor is None:
                window = CreatedWindow(self.start or settings.STRIPE_EPOCH, started_at + 1)
            else:
                window = CreatedWindow(max(cursor - self.overlap, 0), started_at + 1)
                yield from self._read_changes(state, window, batch, started_at)
            newest = yield from self._read_new(window, batch)
            yield from batch.flush()
            state["created_cursor"] = max(filter(None, (cursor, newest)), default=None)
            state["events_cursor"] = started_at
            state["last_run_at"] = started_at
        finally:
            self.client.close()

    def _read_new(
        self, window: CreatedWindow, batch: TableBatch
    ) -> Generator[Any, None, int | None]:
        """Every invoice created in ``window``; returns the newest ``created`` seen."""
        reader = ConcurrentInvoiceReader(
            self.client, max_workers=self.max_workers, page_size=self.page_size
        )
        newest: int | None = None
        for page in reader.read(window):
            for invoice in page.invoices:
                created = int(invoice["created"])
                newest = created if newest is None else max(newest, created)
            batch.add_page(page)
            if batch.invoice_count >= BATCH_INVOICES:
                yield from batch.flush()
        return newest

    def _read_changes(
        self, state: dict[str, Any], window: CreatedWindow, batch: TableBatch, started_at: int
    ) -> Iterator[Any]:
        """Invoices changed since the last run that the new-invoice window will not re-read."""
        events_cursor: int | None = state.get("events_cursor")
        retention = settings.EVENTS_RETENTION_DAYS * 86_400
        reason = None
        if not self.use_events:
            reason = "sources.stripe.use_events is false"
        elif events_cursor is None:
            reason = "no event cursor saved yet"
        elif started_at - events_cursor > retention - 3600:
            reason = (
                f"the last run was {(started_at - events_cursor) / 86_400:.1f} days ago and"
                f" Stripe keeps events for {settings.EVENTS_RETENTION_DAYS} days"
            )
        if reason is None:
            assert events_cursor is not None
            try:
                snapshots = self._changed_invoices(events_cursor - self.overlap)
            except (AuthenticationError, NotFoundError) as exc:
                reason = f"events could not be read ({exc})"
            else:
                for invoice in snapshots.values():
                    deleted = bool(invoice.get("deleted"))
                    if not deleted and window.contains(int(invoice["created"])):
                        continue  # the new-invoice window reads its current state anyway
                    lines = None if deleted else self.client.complete_lines(invoice)
                    batch.add_invoice(invoice, lines)
                    if batch.invoice_count >= BATCH_INVOICES:
                        yield from batch.flush()
                logger.info("Stripe: %d invoices changed since the last run", len(snapshots))
                return
        reread = CreatedWindow(max(started_at - self.reread_seconds, 0), window.start)
        logger.warning(
            "Stripe: cannot use invoice events (%s); re-reading invoices created in %s to catch"
            " changes. Changes to older invoices are only caught by a backfill.",
            reason,
            _describe(reread),
        )
        if reread.start is not None and reread.end is not None and reread.start < reread.end:
            yield from self._read_new(reread, batch)

    def _changed_invoices(self, since: int) -> dict[str, Invoice]:
        """The newest snapshot of every invoice named by an ``invoice.*`` event since ``since``.

        Events list newest first, so the first event seen for an invoice is its latest state;
        ``invoice.deleted`` snapshots are marked ``deleted``.
        """
        snapshots: dict[str, Invoice] = {}
        for page in self.client.iter_invoice_events(max(since, 0)):
            for event in page:
                invoice = (event.get("data") or {}).get("object") or {}
                invoice_id = invoice.get("id")
                if not invoice_id or invoice_id in snapshots:
                    continue
                if event.get("type") == "invoice.deleted":
                    invoice = {**invoice, "deleted": True}
                snapshots[invoice_id] = invoice
        return snapshots


class TableBatch:
    """Rows of the four tables, gathered until they are worth handing to dlt."""

    def __init__(self, synced_at: int) -> None:
        self.synced_at = synced_at
        self._reset()

    def _reset(self) -> None:
        self.invoices = TableBuilder(INVOICE_COLUMNS)
        self.children = {table: TableBuilder(columns) for table, columns in CHILD_TABLES.items()}
        self.invoice_count = 0

    def add_page(self, page: InvoicePage) -> None:
        """Add a page of invoices; lines come from ``page.lines`` or the embedded list."""
        for invoice in page.invoices:
            lines = page.lines.get(invoice["id"])
            if lines is None:
                lines = list((invoice.get("lines") or {}).get("data") or [])
            self.add_invoice(invoice, lines)

    def add_invoice(self, invoice: Invoice, lines: list[dict[str, Any]] | None) -> None:
        """Add one invoice; ``lines=None`` leaves its landed lines as they are (deleted)."""
        self.invoices.add(
            invoice_row(
                invoice, line_count=None if lines is None else len(lines), synced_at=self.synced_at
            )
        )
        self.invoice_count += 1
        if lines is None:
            return
        items, discounts, taxes = line_rows(invoice["id"], invoice.get("currency"), lines)
        self.children[settings.TABLE_LINE_ITEMS].extend(items)
        self.children[settings.TABLE_LINE_DISCOUNTS].extend(discounts)
        self.children[settings.TABLE_LINE_TAXES].extend(taxes)

    def flush(self) -> Iterator[Any]:
        """Yield the gathered rows as pyarrow tables tagged with their table names."""
        if self.invoice_count == 0:
            return
        tables: list[tuple[str, pa.Table]] = [(settings.TABLE_INVOICES, self.invoices.to_arrow())]
        tables += [(name, builder.to_arrow()) for name, builder in self.children.items()]
        self._reset()
        for name, table in tables:
            if table.num_rows:
                yield dlt.mark.with_table_name(table, name)


def _describe(window: CreatedWindow) -> str:
    def fmt(ts: int | None) -> str:
        return "…" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))

    return f"[{fmt(window.start)}, {fmt(window.end)})"
