"""Long histories read by worker processes, so decoding and row building use every core.

One Python process decodes JSON and builds rows on one core at a time (the GIL), however many
threads wait on the network. For a first load or a backfill of a long history the reader runs
in ``processes`` worker processes instead: each runs a :class:`ConcurrentInvoiceReader` over a
``created`` range, turns pages into rows of the four tables with :class:`RowBatch`, and sends
them to the parent as pickled plain Python columns, which the parent turns into Arrow (a worker
imports no pyarrow and no dlt: :mod:`invoice_source.stripe.worker`). A worker that finds more pages
while another worker is idle hands it the older half of its range, as threads do within one
process.

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
import logging
import multiprocessing
import os
import pickle
import queue
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from invoice_source.errors import InvoiceSyncError
from invoice_source.stripe.client import CreatedWindow, StripeClient
from invoice_source.stripe.tables import ArrowPieces
from invoice_source.stripe.worker import POLL_SECONDS, WorkerSpec, work

logger = logging.getLogger("invoice_source.stripe")

_STOP_SECONDS = 5.0
# What ``spawn`` reads to import the parent's main module again in a child.
_MAIN_ORIGIN = ("__spec__", "__file__")


@dataclass
class ProcessReadResult:
    """What a finished process read found besides its tables."""

    newest_created: int | None = None
    invoices: int = 0
    workers_started: int = 0


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
        workers: list[Any] = []

        def start_worker() -> None:
            worker = context.Process(
                target=work,
                args=(self.spec, next_slot, tasks, results, idle, os.getpid()),
                name=f"stripe-reader-{self.result.workers_started}",
                daemon=True,
            )
            with _lean_start():
                worker.start()
            workers.append(worker)
            self.result.workers_started += 1

        pending = 1
        gathered = ArrowPieces()
        try:
            for _ in range(self.processes):
                start_worker()
            tasks.put((window, exclude_ids))
            while pending:
                try:
                    message = results.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    _check_alive(workers)
                    continue
                kind = message[0]
                if kind == "columns":
                    _, columns, requests = message
                    self._count(requests)
                    gathered.add_all(pickle.loads(columns))  # from our own worker
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
                elif kind == "retired":  # a fresh process takes over what it gave back
                    _, name, gave_back = message
                    _retire(workers, name)
                    logger.info("Stripe: worker process %s retired; a fresh one takes over", name)
                    if gave_back:  # the new worker is busy at once, not idle
                        with idle.get_lock():
                            idle.value -= 1
                    start_worker()
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
    :mod:`invoice_source.stripe.worker`), and the main module of a pipeline script or of the CLI
    imports dlt, DuckDB and the rest: 50-90 MB per worker for nothing. Its spec and path are
    hidden while the workers start (``start`` reads them once, synchronously).
    """
    main = sys.modules.get("__main__")
    hidden: dict[str, Any] = {}
    if main is not None:
        hidden = {name: main.__dict__.pop(name) for name in _MAIN_ORIGIN if name in main.__dict__}
        main.__spec__ = None
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(hidden)


def _retire(workers: list[Any], name: str) -> None:
    """Let the worker called ``name``, which has given its work back, exit."""
    worker = next(worker for worker in workers if worker.name == name)
    worker.join(timeout=_STOP_SECONDS)
    if worker.is_alive():
        worker.terminate()
    workers.remove(worker)


def _check_alive(workers: list[Any]) -> None:
    for worker in workers:
        if worker.exitcode not in (None, 0):  # 0: retired, its message on the way
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
