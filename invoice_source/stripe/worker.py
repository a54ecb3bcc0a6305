"""A Stripe worker process: reads the ``created`` ranges its parent hands out and sends the
rows back as columns (see :mod:`invoice_source.stripe.processes`, the parent's side). Each page
becomes pickled columns in the thread that read it (:func:`prepare_page`), so what waits to be
sent is a few hundred KB per page rather than its ~3 MB of decoded JSON.

It imports no pyarrow and no dlt: Python, httpx (without its command line) and orjson, ~27 MB
before it reads anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import pickle
import queue
import signal
import sys
import threading
from dataclasses import dataclass, field
from multiprocessing import current_process, parent_process
from typing import Any

if parent_process() is not None:
    # A worker never runs httpx's command line, and ``httpx._main`` imports click, rich and
    # pygments (~5 MB per process); httpx gives itself a stub ``main`` when it cannot import it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from invoice_source import http
from invoice_source.errors import InvoiceSyncError
from invoice_source.memory import keep_large_blocks_mapped
from invoice_source.redaction import redact
from invoice_source.stripe.batch import RowBatch
from invoice_source.stripe.client import CreatedWindow, StripeClient
from invoice_source.stripe.reader import ConcurrentInvoiceReader, InvoicePage

# How often a waiting worker checks that its parent is alive (the parent polls its workers too).
POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to read ranges on its own: picklable, secrets included."""

    client_kwargs: dict[str, Any] = field(repr=False)  # the API key among them
    threads: int
    page_size: int
    synced_at: int
    log_level: int
    yield_invoices: int  # invoices per table the parent hands to dlt
    # After this many invoices a worker gives back what it has not read and exits, and a fresh
    # process takes over: Python's allocator fragments through a long read (0: never).
    retire_invoices: int = 0


@dataclass(frozen=True)
class PreparedPage:
    """A page (or part of one) as a worker sends it: its rows as pickled :data:`Piece`
    columns, how many invoices it holds and the newest one's ``created``."""

    columns: bytes
    invoices: int
    newest_created: int


def prepare_page(synced_at: int, page: InvoicePage) -> PreparedPage:
    """``page``'s rows of the four tables, pickled."""
    batch = RowBatch(synced_at)
    batch.add_page(page)
    return PreparedPage(
        columns=pickle.dumps(batch.take_pieces(), protocol=pickle.HIGHEST_PROTOCOL),
        invoices=len(page.invoices),
        newest_created=max(int(invoice["created"]) for invoice in page.invoices),
    )


class _IdleWorkers:
    """A worker's view of the others: hands the older half of a range to an idle one, and
    everything it has not read yet to them once this worker retires."""

    def __init__(self, outbox: _Outbox, idle: Any) -> None:
        self._outbox = outbox
        self._idle = idle
        self.retire = threading.Event()
        self.gave_back = False

    def spare(self) -> bool:
        return bool(self._idle.value > 0)

    def claim(self, window: CreatedWindow, exclude_ids: frozenset[str]) -> bool:
        with self._idle.get_lock():
            if self._idle.value <= 0:
                return False
            self._idle.value -= 1
        self._outbox.send(("split", window, exclude_ids))
        return True

    def retiring(self) -> bool:
        return self.retire.is_set()

    def give_back(self, window: CreatedWindow, exclude_ids: frozenset[str]) -> None:
        self.gave_back = True
        self._outbox.send(("split", window, exclude_ids))


class _Outbox:
    """Sends messages to the parent; exits the worker if the parent has gone."""

    def __init__(self, results: Any, parent_pid: int) -> None:
        self._results = results
        self._parent_pid = parent_pid

    def send(self, message: tuple[Any, ...]) -> None:
        while True:
            try:
                self._results.put(message, timeout=POLL_SECONDS)
                return
            except queue.Full:
                self.exit_if_orphaned()

    def exit_if_orphaned(self) -> None:
        if os.getppid() != self._parent_pid:
            os._exit(1)


class _ForwardLogs(logging.Handler):
    """Sends a worker's log records to the parent, message formatted, arguments dropped."""

    def __init__(self, outbox: _Outbox) -> None:
        super().__init__()
        self._outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = record.getMessage()
        record.args = None
        record.exc_info = None
        record.exc_text = None
        self._outbox.send(("log", record))


def work(
    spec: WorkerSpec, next_slot: Any, tasks: Any, results: Any, idle: Any, parent_pid: int
) -> None:
    """A worker process: read the ranges the parent hands out until it says stop, or until it
    has read ``spec.retire_invoices`` and gives the rest back."""
    _die_with_parent()
    keep_large_blocks_mapped()
    outbox = _Outbox(results, parent_pid)
    outbox.exit_if_orphaned()  # the parent may have died before the kernel was told to kill us
    root = logging.getLogger()
    root.handlers[:] = [_ForwardLogs(outbox)]
    root.setLevel(logging.WARNING)  # other libraries' chatter (httpx per request) stays here
    logging.getLogger("invoice_source").setLevel(spec.log_level)
    client = StripeClient(
        **spec.client_kwargs,
        rate_limiter=http.SharedRateLimiter(spec.client_kwargs["requests_per_second"], next_slot),
    )
    reported = 0

    def new_requests() -> int:
        nonlocal reported
        count = client.request_count - reported
        reported += count
        return count

    hand_off = _IdleWorkers(outbox, idle)
    read_here = 0
    try:
        while not hand_off.retiring():
            try:
                task = tasks.get(timeout=POLL_SECONDS)
            except queue.Empty:
                outbox.exit_if_orphaned()
                continue
            if task is None:
                return
            window, exclude_ids = task
            reader = ConcurrentInvoiceReader(
                client,
                max_workers=spec.threads,
                page_size=spec.page_size,
                prepare=functools.partial(prepare_page, spec.synced_at),
                hand_off=hand_off,
            )
            newest: int | None = None
            invoices = 0
            for prepared in reader.read(window, exclude_ids):
                outbox.exit_if_orphaned()
                newest = max(prepared.newest_created, newest or 0)
                invoices += prepared.invoices
                if spec.retire_invoices and read_here + invoices >= spec.retire_invoices:
                    hand_off.retire.set()
                outbox.send(("columns", prepared.columns, new_requests()))
            outbox.send(("done", newest, invoices, new_requests()))
            read_here += invoices
        outbox.send(("retired", current_process().name, hand_off.gave_back))
    except BaseException as exc:  # the parent re-raises it
        outbox.send(("error", _picklable(exc), new_requests()))
    finally:
        client.close()


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker the moment its parent dies (even blocked in a
    request); elsewhere the worker notices at its next poll or send."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives pickling, else an error with its (masked) message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return InvoiceSyncError(redact(f"{type(exc).__name__}: {exc}"))
    return exc
