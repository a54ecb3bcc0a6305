"""Concurrent reading of a ``created`` range of Stripe invoices, every line included.

Stripe lists newest first and pages with ``starting_after``, so one range is read sequentially.
To read a long history concurrently, a worker that finds more pages behind its first one splits
the rest of its range in two while there is spare concurrency: it hands the older half to another
worker (a thread here, or, through a :class:`HandOff`, another process) and carries on with the
newer half. The second that the page boundary falls in goes to the newer half, with the ids
already read excluded, so no invoice is read twice or skipped. Invoices with more than ten lines
get the rest from ``/v1/invoices/{id}/lines`` through a second pool of threads while the next
page is already being fetched, so list and line requests overlap; the two pools share
``max_workers`` slots, so that many requests are in flight at most (the client's rate limiter
still spaces every request). Results flow through a bounded queue, so memory stays
flat however long the history.

The thread that read a page also prepares it (``prepare``: in a worker process, turns it into
pickled columns, ~6x smaller than the decoded JSON) before it waits in the queue, and it prepares
a page's invoices that need no more lines before it asks for the next page. A reading thread so
holds one decoded page at a time, and the queue holds prepared pages, not decoded ones.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

from invoice_source.stripe.client import CreatedWindow, Invoice, StripeClient

# A range shorter than this is never split: its pages are read one after another.
MIN_SPLIT_SECONDS = 3600
# Prepared pages waiting for the consumer; each reading thread holds one more while it waits.
# One kept the speed of four (the consumer is what is busy) at less memory.
QUEUED_PAGES = 1


@dataclass
class InvoicePage:
    """A page of invoices, each with its complete list of line items."""

    invoices: list[Invoice]
    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class HandOff(Protocol):
    """Somewhere outside this reader that can take over part of a range."""

    def spare(self) -> bool:
        """Whether a reader is idle there right now."""

    def claim(self, window: CreatedWindow, exclude_ids: frozenset[str]) -> bool:
        """Take ``window`` (less ``exclude_ids``) over if a reader is idle; False leaves it here."""

    def retiring(self) -> bool:
        """Whether this reader should stop and give back what it has not read yet."""

    def give_back(self, window: CreatedWindow, exclude_ids: frozenset[str]) -> None:
        """Take ``window`` (less ``exclude_ids``) over: this reader will not read it."""


Prepared = TypeVar("Prepared")
_DONE = object()
_Pending = tuple[InvoicePage, list[tuple[Invoice, "Future[list[dict[str, Any]]]"]]]


def as_page(page: InvoicePage) -> InvoicePage:
    """``page`` itself: the ``prepare`` of a reader whose consumer wants the pages."""
    return page


class ConcurrentInvoiceReader(Generic[Prepared]):
    """Reads every invoice created in a window with up to ``max_workers`` requests in flight
    (list and line requests together), yielding each (part of a) page as ``prepare`` turns it,
    in the thread that read it."""

    def __init__(
        self,
        client: StripeClient,
        *,
        max_workers: int,
        page_size: int,
        prepare: Callable[[InvoicePage], Prepared],
        hand_off: HandOff | None = None,
    ) -> None:
        self.client = client
        self.max_workers = max(1, max_workers)
        self.page_size = page_size
        self.prepare = prepare
        self.hand_off = hand_off
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUED_PAGES)
        self._lock = threading.Lock()
        self._pending = 0
        self._cancelled = threading.Event()
        # held around every request, list or lines: ``max_workers`` in flight in all, not per pool
        self._in_flight = threading.BoundedSemaphore(self.max_workers)

    def read(
        self, window: CreatedWindow, exclude_ids: frozenset[str] = frozenset()
    ) -> Iterator[Prepared]:
        """Yield the prepared pages of ``window`` without ``exclude_ids``, as workers finish
        them (in no particular order; a listed page may come as two parts)."""
        with (
            ThreadPoolExecutor(self.max_workers, thread_name_prefix="stripe-read") as pool,
            ThreadPoolExecutor(self.max_workers, thread_name_prefix="stripe-lines") as lines,
        ):
            self._pool = pool
            self._lines_pool = lines
            self._submit(window, exclude_ids)
            try:
                while True:
                    item = self._queue.get()
                    if item is _DONE:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield cast(Prepared, item)  # the queue holds prepared pages
            finally:
                self._cancelled.set()
                self._drain()

    def _submit(self, window: CreatedWindow, exclude_ids: frozenset[str]) -> None:
        with self._lock:
            self._pending += 1
        self._pool.submit(self._run, window, exclude_ids)

    def _run(self, window: CreatedWindow, exclude_ids: frozenset[str]) -> None:
        try:
            self._read_window(window, exclude_ids)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
            self._cancelled.set()
        finally:
            with self._lock:
                self._pending -= 1
                finished = self._pending == 0
            if finished:
                self._put(_DONE)

    def _read_window(self, window: CreatedWindow, exclude_ids: frozenset[str]) -> None:
        if self._give_back(window, exclude_ids):
            return
        pages = self.client.iter_invoice_pages(window, page_size=self.page_size)
        boundary: tuple[int, set[str]] | None = None  # oldest created so far, ids read at it
        previous: _Pending | None = None  # a page whose line requests are still in flight
        try:
            while True:
                with self._in_flight:
                    listed = next(pages, None)
                if listed is None:
                    break
                if self._cancelled.is_set():
                    return
                count, oldest = len(listed), int(listed[-1]["created"])
                if boundary is None or boundary[0] != oldest:
                    inherited = (
                        exclude_ids if window.end is not None and oldest == window.end - 1 else ()
                    )
                    boundary = (oldest, set(inherited))
                boundary[1].update(inv["id"] for inv in listed if int(inv["created"]) == oldest)
                ready: list[Invoice] = []
                more: list[Invoice] = []
                for inv in listed:
                    if inv["id"] not in exclude_ids:
                        (more if (inv.get("lines") or {}).get("has_more") else ready).append(inv)
                del listed  # the loop would hold the decoded page through the next request
                current: _Pending = (
                    InvoicePage(more),
                    [(inv, self._lines_pool.submit(self._complete_lines, inv)) for inv in more],
                )
                if ready:
                    self._put(self.prepare(InvoicePage(ready)))
                del ready
                if previous is not None:
                    self._finish(previous)
                previous = current
                if count == self.page_size and self._give_back(
                    CreatedWindow(window.start, oldest + 1), frozenset(boundary[1])
                ):
                    break
                if self._should_split(window, count, oldest):
                    self._split(window, oldest, frozenset(boundary[1]))
                    break
            if previous is not None:
                pending, previous = previous, None
                self._finish(pending)
        finally:
            pages.close()
            if previous is not None:  # left early: an error, or the read was cancelled
                for _, future in previous[1]:
                    future.cancel()

    def _complete_lines(self, invoice: Invoice) -> list[dict[str, Any]]:
        with self._in_flight:
            return self.client.complete_lines(invoice)

    def _finish(self, pending: _Pending) -> None:
        """Wait for a page's line requests, then hand the page on."""
        page, futures = pending
        for invoice, future in futures:
            page.lines[invoice["id"]] = future.result()
        if page.invoices:
            self._put(self.prepare(page))

    def _give_back(self, rest: CreatedWindow, exclude_ids: frozenset[str]) -> bool:
        """Hand ``rest`` to the hand-off when this reader is retiring (the newer pages already
        read stay read: ``exclude_ids`` names those at ``rest``'s last second)."""
        if self.hand_off is None or rest.start is None or not self.hand_off.retiring():
            return False
        self.hand_off.give_back(rest, exclude_ids)
        return True

    def _should_split(self, window: CreatedWindow, count: int, oldest: int) -> bool:
        """Split while a worker is free and the page (``count`` invoices, the oldest created at
        ``oldest``) was full: more pages are likely."""
        if count < self.page_size or window.start is None:
            return False
        if oldest - window.start <= MIN_SPLIT_SECONDS:
            return False
        with self._lock:
            spare = self._pending < self.max_workers
        return spare or (self.hand_off is not None and self.hand_off.spare())

    def _split(self, window: CreatedWindow, oldest: int, seen_at_oldest: frozenset[str]) -> None:
        """Hand the rest of ``window`` (created at or before ``oldest``) to two workers; the
        newer half re-lists the second ``oldest`` without the ids already read in it. The older
        half goes to the hand-off when it has an idle reader."""
        assert window.start is not None
        middle = window.start + (oldest + 1 - window.start) // 2
        self._submit(CreatedWindow(middle, oldest + 1), seen_at_oldest)
        older = CreatedWindow(window.start, middle)
        if self.hand_off is None or not self.hand_off.claim(older, frozenset()):
            self._submit(older, frozenset())

    def _put(self, item: object) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._cancelled.is_set():
                    return

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return
