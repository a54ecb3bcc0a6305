"""Long histories read by worker processes, so decoding and row building use every core.

One Python process decodes JSON and builds rows on one core at a time (the GIL), however many
threads wait on the network. For a first load or a backfill of a long history the reader runs
in ``processes`` worker processes instead: each runs a :class:`ConcurrentInvoiceReader` over a
``created`` range, turns pages into the four tables with :class:`TableBatch`, and sends them to
the parent as Arrow IPC. A worker that finds more pages while another worker is idle hands it
the older half of its range (:class:`_IdleWorkers`), as threads do within one process.

The parent stays in charge: it holds the only task list, re-emits the workers' log records
through its own loggers (masked like every other line), adds their requests to
``http.REQUEST_TOTALS``, re-raises a worker's error as its own, and stops the workers when the
read ends or fails. Every worker spaces its requests through one shared rate limiter, so the
configured rate and a 429's pause hold across processes. Workers die with the parent (on Linux
the kernel kills them at once; elsewhere they notice within a poll), so a killed run leaves no
reader behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from invoice_source import http
from invoice_source.errors import InvoiceSyncError
from invoice_source.memory import system_allocator_environment
from invoice_source.redaction import redact
from invoice_source.stripe.batch import ArrowPieces, TableBatch
from invoice_source.stripe.client import CreatedWindow, StripeClient
from invoice_source.stripe.reader import ConcurrentInvoiceReader

logger = logging.getLogger("invoice_source.stripe")

# How often a waiting parent checks that its workers are alive, and a worker that its parent is.
_POLL_SECONDS = 0.5
_STOP_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1
# What ``spawn`` reads to import the parent's main module again in a child.
_MAIN_ORIGIN = ("__spec__", "__file__")


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to read ranges on its own: picklable, secrets included."""

    client_kwargs: dict[str, Any] = field(repr=False)  # the API key among them
    threads: int
    page_size: int
    synced_at: int
    batch_invoices: int  # invoices per message a worker sends (small: the queue holds several)
    log_level: int
    yield_invoices: int  # invoices per table the parent hands to dlt


@dataclass
class ProcessReadResult:
    """What a finished process read found besides its tables."""

    newest_created: int | None = None
    invoices: int = 0


class ProcessInvoiceReader:
    """Reads a ``created`` range in ``processes`` worker processes, yielding finished tables."""

    def __init__(self, client: StripeClient, spec: WorkerSpec, *, processes: int) -> None:
        self.client = client
        self.spec = spec
        self.processes = max(1, processes)
        self.result = ProcessReadResult()

    def read(
        self, window: CreatedWindow, exclude_ids: frozenset[str] = frozenset()
    ) -> Iterator[tuple[str, pa.Table]]:
        """Yield ``(table name, table)`` pairs for every invoice of ``window`` less
        ``exclude_ids``; ``self.result`` holds the newest ``created`` once the read is done."""
        context = multiprocessing.get_context("spawn")
        tasks: Any = context.Queue()
        results: Any = context.Queue(maxsize=self.processes * 4)
        idle: Any = context.Value("i", self.processes - 1)
        next_slot: Any = context.Value("d", 0.0)
        workers = [
            context.Process(
                target=_work,
                args=(self.spec, next_slot, tasks, results, idle, os.getpid()),
                name=f"stripe-reader-{number}",
                daemon=True,
            )
            for number in range(self.processes)
        ]
        pending = 1
        gathered = ArrowPieces()
        try:
            with _lean_start():
                for worker in workers:
                    worker.start()
            tasks.put((window, exclude_ids))
            while pending:
                try:
                    message = results.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    _check_alive(workers)
                    continue
                kind = message[0]
                if kind == "tables":
                    _, tables, requests = message
                    self._count(requests)
                    for name, payload in tables:
                        gathered.add(name, pa.ipc.open_stream(payload).read_all())
                    if gathered.invoices >= self.spec.yield_invoices:
                        yield from gathered.take()
                elif kind == "split":
                    tasks.put((message[1], message[2]))
                    pending += 1
                elif kind == "done":
                    _, newest, invoices, requests = message
                    self._count(requests)
                    self._record(newest, invoices)
                    pending -= 1
                    with idle.get_lock():
                        idle.value += 1
                elif kind == "log":
                    record: logging.LogRecord = message[1]
                    target = logging.getLogger(record.name)
                    if target.isEnabledFor(record.levelno):
                        target.handle(record)
                elif kind == "error":
                    _, error, requests = message
                    self._count(requests)
                    raise error
            yield from gathered.take()
        finally:
            _stop(workers, tasks, results, finished=pending == 0)

    def _count(self, requests: int) -> None:
        if requests:
            self.client.http.add_requests(requests)

    def _record(self, newest: int | None, invoices: int) -> None:
        self.result.invoices += invoices
        if newest is not None:
            current = self.result.newest_created
            self.result.newest_created = newest if current is None else max(current, newest)


@contextlib.contextmanager
def _lean_start() -> Iterator[None]:
    """Start spawned workers without what they do not need.

    ``spawn`` runs the parent's main module again in every child (as ``__mp_main__``) so that
    functions defined there can be found. Workers need nothing from it (their target lives in
    this module), and the main module of a pipeline script or of the CLI imports dlt, DuckDB and
    the rest: 50-90 MB per worker for nothing. Its spec and path are hidden while the workers
    start (``start`` reads them once, synchronously). The workers' environment also gets
    pyarrow's system allocator (see :mod:`invoice_source.memory`).
    """
    main = sys.modules.get("__main__")
    hidden: dict[str, Any] = {}
    if main is not None:
        hidden = {name: main.__dict__.pop(name) for name in _MAIN_ORIGIN if name in main.__dict__}
        main.__spec__ = None
    added = system_allocator_environment()
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(hidden)


def _check_alive(workers: list[Any]) -> None:
    for worker in workers:
        if worker.exitcode is not None:
            raise InvoiceSyncError(
                f"Stripe reader process {worker.name} stopped unexpectedly (exit code"
                f" {worker.exitcode}); nothing of this run was loaded, run again"
            )


def _stop(workers: list[Any], tasks: Any, results: Any, *, finished: bool) -> None:
    """Stop the workers: idle ones are told to, within a few seconds; after an error or an
    abandoned read they are ended at once (what they read is not wanted)."""
    for _ in workers:
        tasks.put(None)
    deadline = time.monotonic() + (_STOP_SECONDS if finished else 0.0)
    while any(worker.is_alive() for worker in workers) and time.monotonic() < deadline:
        # room on the result queue, so a worker blocked sending can see the stop
        with contextlib.suppress(queue.Empty):
            results.get(timeout=0.05)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
        worker.join(timeout=_STOP_SECONDS)
    for channel in (tasks, results):
        channel.cancel_join_thread()
        channel.close()


class _IdleWorkers:
    """A worker's view of the others: hands the older half of a range to an idle one."""

    def __init__(self, outbox: _Outbox, idle: Any) -> None:
        self._outbox = outbox
        self._idle = idle

    def spare(self) -> bool:
        return bool(self._idle.value > 0)

    def claim(self, window: CreatedWindow, exclude_ids: frozenset[str]) -> bool:
        with self._idle.get_lock():
            if self._idle.value <= 0:
                return False
            self._idle.value -= 1
        self._outbox.send(("split", window, exclude_ids))
        return True


class _Outbox:
    """Sends messages to the parent; exits the worker if the parent has gone."""

    def __init__(self, results: Any, parent_pid: int) -> None:
        self._results = results
        self._parent_pid = parent_pid

    def send(self, message: tuple[Any, ...]) -> None:
        while True:
            try:
                self._results.put(message, timeout=_POLL_SECONDS)
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


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _work(
    spec: WorkerSpec, next_slot: Any, tasks: Any, results: Any, idle: Any, parent_pid: int
) -> None:
    """A worker process: read the ranges the parent hands out until it says stop."""
    _die_with_parent()
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
    try:
        while True:
            try:
                task = tasks.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                outbox.exit_if_orphaned()
                continue
            if task is None:
                return
            window, exclude_ids = task
            reader = ConcurrentInvoiceReader(
                client, max_workers=spec.threads, page_size=spec.page_size, hand_off=hand_off
            )
            batch = TableBatch(spec.synced_at)
            newest: int | None = None
            invoices = 0
            for page in reader.read(window, exclude_ids):
                outbox.exit_if_orphaned()
                for invoice in page.invoices:
                    created = int(invoice["created"])
                    newest = created if newest is None else max(newest, created)
                invoices += len(page.invoices)
                batch.add_page(page)
                if batch.invoice_count >= spec.batch_invoices:
                    outbox.send(("tables", _tables_ipc(batch), new_requests()))
            outbox.send(("tables", _tables_ipc(batch), new_requests()))
            outbox.send(("done", newest, invoices, new_requests()))
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


def _tables_ipc(batch: TableBatch) -> list[tuple[str, bytes]]:
    return [(name, _ipc(table)) for name, table in batch.take_tables()]


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives pickling, else an error with its (masked) message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return InvoiceSyncError(redact(f"{type(exc).__name__}: {exc}"))
    return exc
