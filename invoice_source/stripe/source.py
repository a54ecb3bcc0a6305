"""The Stripe invoices source: every invoice, every line item, every later change.

One resource, ``stripe_invoices``, writes four tables:

- ``stripe_invoices``: one row per invoice, merged on ``id``; deleted drafts stay, flagged
  ``is_deleted``.
- ``stripe_invoice_line_items``: one row per line item (all of them, not only the ten Stripe
  embeds), keyed by ``(invoice_id, id)``.
- ``stripe_invoice_line_item_discounts`` and ``stripe_invoice_line_item_taxes``: the lines' own
  lists, one row per entry.

Child tables are written with merge strategy ``delete-insert`` on ``merge_key="invoice_id"``, so
an invoice read again replaces its lines (a line removed from a draft disappears); an invoice
with no rows in a child table stages a placeholder there that clears its old rows and is never
stored (:func:`~invoice_source.stripe.shapes.no_rows_marker`).

New invoices are read by ``created`` with server-side ``created[gte|lt]`` filters, from a cursor
kept in dlt resource state (re-reading ``created_overlap_seconds`` before it; the merge absorbs
the overlap). Changes to invoices already loaded come from ``invoice.*`` events since the last
run; when the last run is older than Stripe keeps events (30 days), or events cannot be read,
invoices created within ``reread_window_days`` are read again instead, and the log says so.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.sources import DltResource

from invoice_source.arrow import expect_json_as_text
from invoice_source.columns import column_hints
from invoice_source.errors import AuthenticationError, ConfigurationError, NotFoundError
from invoice_source.memory import release_free_memory
from invoice_source.ops import PLACEHOLDER_ROWS_KEY
from invoice_source.stripe import settings
from invoice_source.stripe.batch import CHILD_KEYS, CHILD_TABLES
from invoice_source.stripe.client import CreatedWindow, Invoice, StripeClient
from invoice_source.stripe.processes import ProcessInvoiceReader
from invoice_source.stripe.reader import ConcurrentInvoiceReader, InvoicePage, as_page
from invoice_source.stripe.shapes import INVOICE_COLUMNS, MARKER_COLUMN
from invoice_source.stripe.tables import BATCH_INVOICES, TableBatch
from invoice_source.stripe.worker import WorkerSpec
from invoice_source.windows import parse_window

__all__ = ["stripe_source", "tagged_tables", "with_table_hints"]

logger = logging.getLogger("invoice_source.stripe")


# section: dlt takes a source's config section from its module's name, which is "source" here;
# the keys stay under [sources.stripe] (env SOURCES__STRIPE__*).
@dlt.source(name="stripe", section="stripe", max_table_nesting=0)
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
    worker_processes: int = settings.DEFAULT_WORKER_PROCESSES,
    worker_processes_min_invoices: int = settings.PROCESS_MIN_INVOICES,
    worker_retire_invoices: int = settings.WORKER_RETIRE_INVOICES,
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
    ``appgregator_connection_name`` on every request). A window estimated to hold at least
    ``worker_processes_min_invoices`` invoices is read by ``worker_processes`` processes
    (``max_workers`` threads shared among them), each replaced by a fresh process after
    ``worker_retire_invoices`` invoices (0: never); ``worker_processes=1`` keeps every read in
    the run's own process.
    """
    if not 1 <= page_size <= settings.MAX_PAGE_SIZE:
        raise ConfigurationError(
            f"sources.stripe.page_size must be between 1 and {settings.MAX_PAGE_SIZE} (Stripe's"
            f" largest list limit), not {page_size}"
        )
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
        worker_processes=worker_processes,
        worker_processes_min_invoices=worker_processes_min_invoices,
        worker_retire_invoices=worker_retire_invoices,
        page_size=page_size,
        created_overlap_seconds=created_overlap_seconds,
        reread_window_days=reread_window_days,
        use_events=use_events,
    )

    def stripe_invoices() -> Iterator[Any]:
        yield from sync.run()

    expect_json_as_text(settings.TABLE_INVOICES)
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
        worker_processes: int,
        worker_processes_min_invoices: int,
        worker_retire_invoices: int,
        page_size: int,
        created_overlap_seconds: int,
        reread_window_days: int,
        use_events: bool,
    ) -> None:
        self.client = client
        self.start = start
        self.end = end
        self.max_workers = max_workers
        self.worker_processes = worker_processes
        self.worker_processes_min_invoices = worker_processes_min_invoices
        self.worker_retire_invoices = worker_retire_invoices
        self.page_size = page_size
        self.overlap = created_overlap_seconds
        self.reread_seconds = reread_window_days * 86_400
        self.use_events = use_events
        self.placeholder_rows: Counter[str] = Counter()

    def _tagged(self, tables: Iterable[tuple[str, pa.Table]]) -> Iterator[Any]:
        """:func:`tagged_tables`, counting the placeholder rows among them."""
        for name, table in tables:
            if MARKER_COLUMN in table.column_names:
                self.placeholder_rows[name] += pc.sum(table.column(MARKER_COLUMN)).as_py() or 0
            yield from tagged_tables([(name, table)])

    @property
    def is_backfill(self) -> bool:
        """A run with an end date loads a window and leaves the cursor alone."""
        return self.end is not None

    def run(self) -> Iterator[Any]:
        """The resource generator: yields pyarrow tables tagged with their table names.

        The resource state's ``placeholder_rows`` says how many of the rows this run staged per
        table were :func:`~invoice_source.stripe.shapes.no_rows_marker` rows, which the merge
        does not store (:func:`invoice_source.pipeline.run_sync` leaves them out of its counts).
        """
        state = dlt.current.resource_state()
        started_at = int(time.time())
        batch = TableBatch(started_at)
        self.placeholder_rows.clear()
        try:
            if self.is_backfill:
                window = CreatedWindow(self.start or settings.STRIPE_EPOCH, self.end)
                logger.info("Stripe backfill of created in %s", _describe(window))
                yield from self._read_new(window, batch)
                yield from self._tagged(batch.take_tables())
                state[PLACEHOLDER_ROWS_KEY] = dict(self.placeholder_rows)
                return
            cursor: int | None = state.get("created_cursor")
            if cursor is None:
                window = CreatedWindow(self.start or settings.STRIPE_EPOCH, started_at + 1)
            else:
                window = CreatedWindow(max(cursor - self.overlap, 0), started_at + 1)
                yield from self._read_changes(state, window, batch, started_at)
            newest = yield from self._read_new(window, batch)
            yield from self._tagged(batch.take_tables())
            state["created_cursor"] = max(filter(None, (cursor, newest)), default=None)
            state["events_cursor"] = started_at
            state["last_run_at"] = started_at
            state[PLACEHOLDER_ROWS_KEY] = dict(self.placeholder_rows)
        finally:
            self.client.close()
            del batch
            release_free_memory()

    def _read_new(
        self, window: CreatedWindow, batch: TableBatch
    ) -> Generator[Any, None, int | None]:
        """Every invoice created in ``window``; returns the newest ``created`` seen.

        With worker processes allowed, the newest page is read first: when the density of its
        ``created`` values promises a long history behind it, the rest of the window goes to
        :class:`ProcessInvoiceReader`; otherwise (an incremental run, a small account) threads
        in this process read it, with no process started.
        """
        exclude_ids: frozenset[str] = frozenset()
        newest: int | None = None
        # a daemonic process (e.g. under some schedulers' executors) may not start children
        if self.worker_processes > 1 and not multiprocessing.current_process().daemon:
            first = self._first_page(window)
            batch.add_page(first)
            newest = _newest(first.invoices, newest)
            if len(first.invoices) < self.page_size:
                return newest
            oldest = int(first.invoices[-1]["created"])
            exclude_ids = frozenset(
                inv["id"] for inv in first.invoices if int(inv["created"]) == oldest
            )
            window = CreatedWindow(window.start, oldest + 1)
            if self._long_history(first.invoices, window):
                yield from self._tagged(batch.take_tables())
                processes = ProcessInvoiceReader(
                    self.client, self._worker_spec(batch.synced_at), processes=self.worker_processes
                )
                logger.info(
                    "Stripe: reading invoices created in %s with %d worker processes",
                    _describe(window),
                    self.worker_processes,
                )
                yield from self._tagged(processes.read(window, exclude_ids))
                return max(filter(None, (newest, processes.result.newest_created)), default=None)
        reader = ConcurrentInvoiceReader(
            self.client, max_workers=self.max_workers, page_size=self.page_size, prepare=as_page
        )
        for page in reader.read(window, exclude_ids):
            newest = _newest(page.invoices, newest)
            batch.add_page(page)
            if batch.invoice_count >= BATCH_INVOICES:
                yield from self._tagged(batch.take_tables())
        return newest

    def _first_page(self, window: CreatedWindow) -> InvoicePage:
        """The newest page of ``window``, every line included (one request, plus ``/lines``)."""
        pages = self.client.iter_invoice_pages(window, page_size=self.page_size)
        try:
            invoices = next(pages, [])
        finally:
            pages.close()
        page = InvoicePage(invoices)
        more = [invoice for invoice in invoices if (invoice.get("lines") or {}).get("has_more")]
        if more:
            with ThreadPoolExecutor(self.max_workers, thread_name_prefix="stripe-lines") as pool:
                for invoice, lines in zip(
                    more, pool.map(self.client.complete_lines, more), strict=True
                ):
                    page.lines[invoice["id"]] = lines
        return page

    def _long_history(self, newest_page: list[Invoice], rest: CreatedWindow) -> bool:
        """Whether ``rest`` (the window behind ``newest_page``) holds at least
        ``worker_processes_min_invoices`` invoices, judged by the page's density and one probe.

        At the page's density that many invoices reach back to ``reach``; a ``limit=1`` request
        then asks whether any invoice is older than that. Extrapolating alone would call any
        dense first page a long history: a first load's window starts in 2011.
        """
        newest, oldest = int(newest_page[0]["created"]), int(newest_page[-1]["created"])
        per_second = len(newest_page) / max(1, newest - oldest + 1)
        reach = oldest - int(self.worker_processes_min_invoices / per_second)
        start = settings.STRIPE_EPOCH if rest.start is None else rest.start
        if reach <= start:
            return False
        probe = self.client.iter_invoice_pages(CreatedWindow(start, reach), page_size=1)
        try:
            return bool(next(probe, []))
        finally:
            probe.close()

    def _worker_spec(self, synced_at: int) -> WorkerSpec:
        return WorkerSpec(
            client_kwargs=self.client.rebuild_kwargs,
            threads=max(1, self.max_workers // self.worker_processes),
            page_size=self.page_size,
            synced_at=synced_at,
            yield_invoices=BATCH_INVOICES,
            log_level=logging.getLogger("invoice_source").getEffectiveLevel(),
            retire_invoices=max(0, self.worker_retire_invoices),
        )

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
            snapshots = self._changed_invoices(events_cursor - self.overlap)
            changed = 0
            while True:
                try:
                    invoice = next(snapshots, None)
                except (AuthenticationError, NotFoundError) as exc:
                    reason = f"events could not be read ({exc})"
                    break
                if invoice is None:
                    logger.info("Stripe: %d invoices changed since the last run", changed)
                    return
                changed += 1
                deleted = bool(invoice.get("deleted"))
                if not deleted and window.contains(int(invoice["created"])):
                    continue  # the new-invoice window reads its current state anyway
                lines = None if deleted else self.client.complete_lines(invoice)
                batch.add_invoice(invoice, lines)
                if batch.invoice_count >= BATCH_INVOICES:
                    yield from self._tagged(batch.take_tables())
        reread = CreatedWindow(max(started_at - self.reread_seconds, 0), window.start)
        logger.warning(
            "Stripe: cannot use invoice events (%s); re-reading invoices created in %s to catch"
            " changes. Changes to older invoices are only caught by a backfill.",
            reason,
            _describe(reread),
        )
        if reread.start is not None and reread.end is not None and reread.start < reread.end:
            yield from self._read_new(reread, batch)

    def _changed_invoices(self, since: int) -> Iterator[Invoice]:
        """The newest snapshot of every invoice named by an ``invoice.*`` event since ``since``,
        one at a time as the event pages arrive (only the ids seen are kept: thirty days of a
        busy account's snapshots would not fit in memory).

        Events list newest first, so the first event seen for an invoice is its latest state;
        ``invoice.deleted`` snapshots are marked ``deleted``.
        """
        seen: set[str] = set()
        for page in self.client.iter_invoice_events(max(since, 0)):
            for event in page:
                invoice = (event.get("data") or {}).get("object") or {}
                invoice_id = invoice.get("id")
                if not invoice_id or invoice_id in seen:
                    continue
                seen.add(invoice_id)
                if event.get("type") == "invoice.deleted":
                    invoice = {**invoice, "deleted": True}
                yield invoice


def tagged_tables(tables: Iterable[tuple[str, pa.Table]]) -> Iterator[Any]:
    """``(table name, pyarrow table)`` pairs as dlt items tagged with their table names."""
    for name, table in tables:
        yield dlt.mark.with_table_name(table, name)


def _newest(invoices: list[Invoice], newest: int | None) -> int | None:
    for invoice in invoices:
        created = int(invoice["created"])
        newest = created if newest is None else max(newest, created)
    return newest


def _describe(window: CreatedWindow) -> str:
    def fmt(ts: int | None) -> str:
        return "…" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))

    return f"[{fmt(window.start)}, {fmt(window.end)})"
