"""Concurrent reading of a ``created`` range of Stripe invoices, every line included.

Stripe lists newest first and pages with ``starting_after``, so one range is read sequentially.
To read a long history concurrently, a worker that finds more pages behind its first one splits
the rest of its range in two while there is spare concurrency: it hands the older half to another
worker and carries on with the newer half. The second that the page boundary falls in goes to
the newer half, with the ids already read excluded, so no invoice is read twice or skipped.
Invoices with more than ten lines get the rest from ``/v1/invoices/{id}/lines`` through a second
pool of ``max_workers`` threads, so a page's line requests run side by side (the client's rate
limiter still spaces every request). Results flow through a bounded queue, so memory stays flat
however long the history.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from invoice_source.stripe.client import CreatedWindow, Invoice, StripeClient

# A range shorter than this is never split: its pages are read one after another.
MIN_SPLIT_SECONDS = 3600


@dataclass
class InvoicePage:
    """A page of invoices, each with its complete list of line items."""

    invoices: list[Invoice]
    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


_DONE = object()


class ConcurrentInvoiceReader:
    """Reads every invoice created in a window with up to ``max_workers`` requests in flight."""

    def __init__(self, client: StripeClient, *, max_workers: int, page_size: int) -> None:
        self.client = client
        self.max_workers = max(1, max_workers)
        self.page_size = page_size
        self._queue: queue.Queue[object] = queue.Queue(maxsize=self.max_workers * 2)
        self._lock = threading.Lock()
        self._pending = 0
        self._cancelled = threading.Event()

    def read(self, window: CreatedWindow) -> Iterator[InvoicePage]:
        """Yield pages of ``window`` as workers finish them (in no particular order)."""
        with (
            ThreadPoolExecutor(self.max_workers, thread_name_prefix="stripe-read") as pool,
            ThreadPoolExecutor(self.max_workers, thread_name_prefix="stripe-lines") as lines,
        ):
            self._pool = pool
            self._lines_pool = lines
            self._submit(window, frozenset())
            try:
                while True:
                    item = self._queue.get()
                    if item is _DONE:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    assert isinstance(item, InvoicePage)
                    yield item
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
        pages = self.client.iter_invoice_pages(window, page_size=self.page_size)
        boundary: tuple[int, set[str]] | None = None  # oldest created so far, ids read at it
        for listed in pages:
            if self._cancelled.is_set():
                return
            invoices = [inv for inv in listed if inv["id"] not in exclude_ids]
            page = InvoicePage(invoices)
            more = [inv for inv in invoices if (inv.get("lines") or {}).get("has_more")]
            completed = self._lines_pool.map(self.client.complete_lines, more)
            for invoice, lines in zip(more, completed, strict=True):
                page.lines[invoice["id"]] = lines
            if invoices:
                self._put(page)
            oldest = int(listed[-1]["created"])
            if boundary is None or boundary[0] != oldest:
                inherited = (
                    exclude_ids if window.end is not None and oldest == window.end - 1 else ()
                )
                boundary = (oldest, set(inherited))
            boundary[1].update(inv["id"] for inv in listed if int(inv["created"]) == oldest)
            if self._should_split(window, listed):
                self._split(window, oldest, frozenset(boundary[1]))
                pages.close()
                return

    def _should_split(self, window: CreatedWindow, listed: list[Invoice]) -> bool:
        """Split while a worker is free and the page was full (more pages are likely)."""
        if len(listed) < self.page_size or window.start is None:
            return False
        oldest = int(listed[-1]["created"])
        with self._lock:
            spare = self._pending < self.max_workers
        return spare and oldest - window.start > MIN_SPLIT_SECONDS

    def _split(self, window: CreatedWindow, oldest: int, seen_at_oldest: frozenset[str]) -> None:
        """Hand the rest of ``window`` (created at or before ``oldest``) to two workers; the
        newer half re-lists the second ``oldest`` without the ids already read in it."""
        assert window.start is not None
        middle = window.start + (oldest + 1 - window.start) // 2
        self._submit(CreatedWindow(middle, oldest + 1), seen_at_oldest)
        self._submit(CreatedWindow(window.start, middle), frozenset())

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
