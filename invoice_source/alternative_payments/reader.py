"""What one run reads from Alternative Payments, and the state it keeps between runs.

The API has no ``updated_at`` and no events, so an incremental run is made of passes:

1. **new**: ``GET /invoices`` with ``created_at_start`` = saved cursor minus a short lookback
   (first run: ``start_date``, or everything). The cursor becomes the newest ``created_at`` seen.
2. **open re-list**: for each status that can still change (``draft``, ``open``, ``overdue``,
   and any status the API sent that is not known to be final), ``GET /invoices?status=...``
   for invoices created before the pass-1 window. Catches edits, new totals, due dates passing.
3. **archived re-list**: ``GET /invoices?status=archived`` (the plain list leaves archived
   invoices out), landing them with ``is_archived`` true.
4. **by id**: every invoice the state tracks as open or archived that none of the passes
   returned has left its set (paid, voided, archived, restored): ``GET /invoices/{id}`` each.

The state tracks, per filter scope, the cursor and the ids of invoices last seen open or
archived. A backfill (``end_date`` given) reads passes 1 and 3 within ``[start, end)`` and
leaves the cursor alone.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from invoice_source.alternative_payments import settings
from invoice_source.alternative_payments.client import (
    AlternativePaymentsClient,
    Invoice,
    InvoiceFilters,
    to_rfc3339,
    to_utc,
)
from invoice_source.alternative_payments.rows import InvoiceBatch, invoice_rows
from invoice_source.errors import InvalidRequestError, NotFoundError, PaginationError

logger = logging.getLogger("invoice_source.alternative_payments")

# One second of slack when checking rows against the requested window (precision differences).
_WINDOW_SLACK = timedelta(seconds=1)


@dataclass(frozen=True)
class ScopeFilters:
    """The user's optional server-side filters; each combination keeps its own cursor."""

    status: str | None = None
    customer_id: str | None = None
    invoice_number: str | None = None
    due_date_start: datetime | None = None
    due_date_end: datetime | None = None

    @property
    def key(self) -> str:
        """The state key of this combination (``all`` without filters)."""
        parts = [
            f"{name}={value if isinstance(value, str) else to_rfc3339(value)}"
            for name, value in (
                ("status", self.status),
                ("customer_id", self.customer_id),
                ("invoice_number", self.invoice_number),
                ("due_date_start", self.due_date_start),
                ("due_date_end", self.due_date_end),
            )
            if value is not None
        ]
        return "&".join(parts) or "all"

    def listing(
        self,
        *,
        status: str | None = None,
        created_at_start: datetime | None = None,
        created_at_end: datetime | None = None,
    ) -> InvoiceFilters:
        """API filters for one pass: these filters plus a status and a creation window."""
        return InvoiceFilters(
            created_at_start=created_at_start,
            created_at_end=created_at_end,
            due_date_start=self.due_date_start,
            due_date_end=self.due_date_end,
            customer_id=self.customer_id,
            invoice_number=self.invoice_number,
            status=status if status is not None else self.status,
        )


@dataclass
class ReadSummary:
    """What a run read: rows per pass, requests, the cursor before and after (logged at the end)."""

    rows: Counter[str]
    requests: int = 0
    cursor_before: str | None = None
    cursor_after: str | None = None


class InvoiceReader:
    """Runs the passes for one source run and updates the state dict it is given.

    ``state`` is the dlt resource state of ``alternative_payments_invoices``; it is only written
    after every pass has been read, so a failed run leaves it as it was.
    """

    def __init__(
        self,
        client: AlternativePaymentsClient,
        *,
        filters: ScopeFilters,
        state: MutableMapping[str, Any],
        page_size: int = settings.DEFAULT_PAGE_SIZE,
        lookback: timedelta = timedelta(seconds=settings.CURSOR_LOOKBACK_SECONDS),
    ) -> None:
        self.client = client
        self.filters = filters
        self.state = state
        self.page_size = page_size
        self.lookback = lookback
        self.summary = ReadSummary(rows=Counter())
        self._seen: set[str] = set()
        self._tracked_updates: dict[str, str | None] = {}
        self._new_statuses: set[str] = set()

    def incremental(self, start: datetime | None) -> Iterator[InvoiceBatch]:
        """Passes 1-4 from the saved cursor (or ``start`` on the first run); advances it."""
        scope = self._scope()
        floor = _parse_state_time(scope.get("floor")) or start
        cursor = _parse_state_time(scope.get("cursor"))
        self.summary.cursor_before = scope.get("cursor")
        window_start = cursor - self.lookback if cursor is not None else floor
        if floor is not None and window_start is not None and window_start < floor:
            window_start = floor
        newest: datetime | None = None
        for batch in self._pass("new", self.filters.listing(created_at_start=window_start)):
            newest = _max_time(newest, *(row["created_at"] for row in batch.invoices))
            yield batch
        if cursor is not None:
            yield from self._relist_open(floor, window_start)
        if self.filters.status is None:
            archived = self.filters.listing(status=settings.ARCHIVED_STATUS, created_at_start=floor)
            yield from self._pass("archived", archived, is_archived=True)
        yield from self._departed(scope)
        self._commit(scope, cursor=_max_time(cursor, newest), floor=floor)

    def backfill(self, start: datetime | None, end: datetime) -> Iterator[InvoiceBatch]:
        """Invoices created in ``[start, end)``, archived ones included; the cursor is untouched."""
        scope = self._scope()
        self.summary.cursor_before = scope.get("cursor")
        window = self.filters.listing(created_at_start=start, created_at_end=end)
        yield from self._pass("backfill", window)
        if self.filters.status is None:
            archived = replace(window, status=settings.ARCHIVED_STATUS)
            yield from self._pass("archived", archived, is_archived=True)
        self._commit(scope, cursor=_parse_state_time(scope.get("cursor")), floor=None)

    # ------------------------------------------------------------------ passes

    def _pass(
        self, name: str, filters: InvoiceFilters, *, is_archived: bool = False
    ) -> Iterator[InvoiceBatch]:
        before = self.client.request_count
        for page in self.client.iter_invoice_pages(filters, page_size=self.page_size):
            _check_window(page.invoices, filters)
            batch = self._batch(page.invoices, is_archived=is_archived, pass_name=name)
            if batch.invoices:
                yield batch
        self.summary.requests += self.client.request_count - before

    def _relist_open(
        self, floor: datetime | None, window_start: datetime | None
    ) -> Iterator[InvoiceBatch]:
        if self.filters.status is not None:
            if self.filters.status in settings.FINAL_STATUSES:
                return
            statuses = [self.filters.status]
        else:
            statuses = self._watched_statuses()
        for status in statuses:
            listing = self.filters.listing(
                status=status, created_at_start=floor, created_at_end=window_start
            )
            try:
                yield from self._pass(
                    "open", listing, is_archived=status == settings.ARCHIVED_STATUS
                )
            except InvalidRequestError as exc:
                logger.warning(
                    "Alternative Payments refused status=%s as a filter (%s); invoices with"
                    " that status are re-read one by one instead",
                    status,
                    exc,
                )

    def _departed(self, scope: MutableMapping[str, Any]) -> Iterator[InvoiceBatch]:
        tracked: dict[str, str] = scope.get("tracked") or {}
        missing = sorted(invoice_id for invoice_id in tracked if invoice_id not in self._seen)
        before = self.client.request_count
        for invoice_id in missing:
            try:
                invoice = self.client.get_invoice(invoice_id)
            except NotFoundError:
                logger.warning(
                    "Alternative Payments invoice %s is gone (404); its rows are kept as they"
                    " were last loaded and it is no longer watched",
                    invoice_id,
                )
                self._tracked_updates[invoice_id] = None
                continue
            batch = self._batch([invoice], is_archived=False, pass_name="by_id")
            if batch.invoices:
                yield batch
        self.summary.requests += self.client.request_count - before

    def _batch(self, invoices: list[Invoice], *, is_archived: bool, pass_name: str) -> InvoiceBatch:
        batch = InvoiceBatch()
        for raw in invoices:
            row, lines = invoice_rows(raw, is_archived=is_archived)
            if row["id"] in self._seen:
                continue
            self._seen.add(row["id"])
            batch.add(row, lines)
            self._track(row)
            self.summary.rows[pass_name] += 1
        return batch

    # ------------------------------------------------------------------ state

    def _scope(self) -> MutableMapping[str, Any]:
        scopes = self.state.setdefault("scopes", {})
        return scopes.get(self.filters.key) or {}

    def _watched_statuses(self) -> list[str]:
        discovered = [
            status
            for status in self.state.get("watch_statuses") or []
            if status not in settings.OPEN_STATUSES
        ]
        return [*settings.OPEN_STATUSES, *discovered]

    def _track(self, row: dict[str, Any]) -> None:
        status = row["status"]
        scope_status = self.filters.status
        if scope_status is not None and status != scope_status:
            self._tracked_updates[row["id"]] = None
        elif row["is_archived"]:
            self._tracked_updates[row["id"]] = settings.ARCHIVED_STATUS
        elif status in settings.FINAL_STATUSES:
            self._tracked_updates[row["id"]] = None
        else:
            self._tracked_updates[row["id"]] = status or "unknown"
            if status and status not in settings.KNOWN_STATUSES:
                self._new_statuses.add(status)

    def _commit(
        self,
        scope: MutableMapping[str, Any],
        *,
        cursor: datetime | None,
        floor: datetime | None,
    ) -> None:
        tracked: dict[str, str] = dict(scope.get("tracked") or {})
        for invoice_id, status in self._tracked_updates.items():
            if status is None:
                tracked.pop(invoice_id, None)
            else:
                tracked[invoice_id] = status
        updated: dict[str, Any] = {**scope, "tracked": tracked}
        if cursor is not None:
            updated["cursor"] = to_rfc3339(cursor)
        if floor is not None and "floor" not in scope:
            updated["floor"] = to_rfc3339(floor)
        self.state.setdefault("scopes", {})[self.filters.key] = updated
        known = list(self.state.get("watch_statuses") or [])
        for status in sorted(self._new_statuses - set(known)):
            logger.info(
                "Alternative Payments sent status %r: it is now watched like 'open'", status
            )
            known.append(status)
        if known:
            self.state["watch_statuses"] = known
        self.summary.cursor_after = updated.get("cursor")
        logger.info(
            "Alternative Payments read %d invoices (%s) in %d requests; cursor %s -> %s",
            sum(self.summary.rows.values()),
            ", ".join(f"{name} {count}" for name, count in sorted(self.summary.rows.items())),
            self.summary.requests,
            self.summary.cursor_before,
            self.summary.cursor_after,
        )


def _check_window(invoices: list[Invoice], filters: InvoiceFilters) -> None:
    """Stop when rows fall outside the requested ``created_at`` window: the API ignored it."""
    start, end = filters.created_at_start, filters.created_at_end
    if start is None and end is None:
        return
    for raw in invoices:
        text = raw.get("created_at")
        if not text:
            continue
        try:
            created_at = to_utc(str(text))
        except ValueError:
            continue
        too_early = start is not None and created_at < to_utc(start) - _WINDOW_SLACK
        too_late = end is not None and created_at > to_utc(end) + _WINDOW_SLACK
        if too_early or too_late:
            raise PaginationError(
                f"Alternative Payments returned invoice {raw.get('id')} created {text}, outside"
                f" the requested window {filters.to_params()}; the created_at filters seem to be"
                " ignored, so the run stops rather than load a wrong window",
                api=settings.API_NAME,
            )


def _parse_state_time(value: object) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return to_utc(value)
    return to_utc(str(value))


def _max_time(*values: datetime | None) -> datetime | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None
