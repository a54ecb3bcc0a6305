"""Helpers of the fault suite: scriptable sandboxes, what landed, what the sandboxes hold, and
the CLI run in a subprocess that a test can kill at a chosen stage."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb
import orjson
import pytest

from invoice_source.cli import main
from invoice_source.errors import InvoiceSyncError, find_error
from invoice_source.sandbox.alternative_payments import AlternativePaymentsApp
from invoice_source.sandbox.prepbusiness import PrepBusinessApp
from invoice_source.sandbox.server import App, Fault, Request, Response
from invoice_source.sandbox.stripe import StripeApp

DATASET = "invoices"
STAGE_HOLD_SCRIPT = Path(__file__).with_name("stage_hold.py")
CLI = Path(sys.executable).with_name("invoice-sync")
HELD_TIMEOUT_SECONDS = 30.0
INVOICE_LIST = "/v1/invoices"
ERROR_PREFIX = "invoice-sync: error: "
LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} [A-Z]+ ")

Rewrite = Callable[[dict[str, Any]], None]
E = TypeVar("E", bound=InvoiceSyncError)


class Scripted(App):
    """Hooks a fault test needs, around the list endpoint ``list_path`` of any sandbox.

    - ``before_page[n]`` runs just before the n-th list page is served (changes while paging);
    - ``hold_after_pages`` makes every list request after that many block until ``release`` is
      set, with ``held`` set as soon as one is blocked (a client killed mid-extract);
    - ``rewrite_invoice`` edits every item of a list page's ``data`` before it is sent (new
      fields, changed types, new line shapes, secrets planted in the data);
    - ``after_request`` runs after every request the sandbox answered itself (not a fault).
    """

    list_path = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.before_page: dict[int, Callable[[], None]] = {}
        self.hold_after_pages: int | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        self.rewrite_invoice: Rewrite | None = None
        self.after_request: Callable[[Request], None] | None = None
        self.pages_served = 0
        self._pages_lock = threading.Lock()

    def dispatch(self, request: Request) -> Response:
        """Run the hooks around the real answer."""
        try:
            return self._dispatch_list(request)
        finally:
            if self.after_request is not None:
                self.after_request(request)

    def _dispatch_list(self, request: Request) -> Response:
        if request.method != "GET" or request.path != self.list_path:
            return super().dispatch(request)
        with self._pages_lock:
            self.pages_served += 1
            page = self.pages_served
        if self.hold_after_pages is not None and page > self.hold_after_pages:
            self.held.set()
            self.release.wait(HELD_TIMEOUT_SECONDS)
        action = self.before_page.pop(page, None)
        if action is not None:
            action()
        response = super().dispatch(request)
        if self.rewrite_invoice is not None and response.status == 200:
            body = orjson.loads(response.body)
            for invoice in body["data"]:
                self.rewrite_invoice(invoice)
            response.body = orjson.dumps(body)
        return response


class ScriptedStripeApp(Scripted, StripeApp):
    """The Stripe sandbox with the fault suite's hooks on ``GET /v1/invoices``."""

    list_path = INVOICE_LIST


class ScriptedPrepBusinessApp(Scripted, PrepBusinessApp):
    """The PrepBusiness sandbox with the fault suite's hooks on ``GET /api/billing/invoices``."""

    list_path = "/api/billing/invoices"


class ScriptedAlternativePaymentsApp(Scripted, AlternativePaymentsApp):
    """The Alternative Payments sandbox with the fault suite's hooks on ``GET /invoices``."""

    list_path = "/invoices"


def rotate_faults(app: Scripted, faults: list[Fault]) -> None:
    """Serve ``faults`` one after another: each path's next fault waits until a request of
    that path has been answered normally since its last one, so a request retried after a
    fault is not met by the next (a client gives up after a few in a row; injecting on any
    path's answer once let one list request meet all seven list faults)."""
    queues = {
        pattern: deque(fault for fault in faults if fault.path_pattern == pattern)
        for pattern in {fault.path_pattern for fault in faults}
    }

    def next_faults(request: Request) -> None:
        pending = {fault.path_pattern for fault in app.pending_faults}
        for pattern, queue in queues.items():
            if queue and pattern not in pending and queue[0].matches(request):
                app.inject(queue.popleft())

    app.after_request = next_faults


def sync_error(failure: BaseException, kind: type[E]) -> E:
    """The ``kind`` error behind a failed sync, unwrapped from run_sync's and dlt's errors."""
    causes: list[BaseException] = [failure]
    result = getattr(failure, "result", None)
    if result is not None:
        causes += [source.error for source in result.failures if source.error is not None]
    for cause in causes:
        found = find_error(cause, kind)
        if found is not None:
            return cast(E, found)
    raise AssertionError(f"no {kind.__name__} behind {failure!r}")


def list_page_body(invoices: list[dict[str, Any]], *, has_more: bool) -> bytes:
    """A Stripe list page as ``GET /v1/invoices`` sends it."""
    return orjson.dumps(
        {"object": "list", "data": invoices, "has_more": has_more, "url": INVOICE_LIST}
    )


def query(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` run on the DuckDB file, dataset ``invoices`` first on the search path."""
    with duckdb.connect(str(db_path), read_only=True) as db:
        db.execute(f"set search_path = '{DATASET}'")
        return [tuple(row) for row in db.execute(sql).fetchall()]


def scalar(db_path: Path, sql: str) -> Any:
    """The single value of ``sql``."""
    return query(db_path, sql)[0][0]


def has_table(db_path: Path, table: str) -> bool:
    """Whether the dataset holds ``table`` (False when the file or the dataset does not exist)."""
    if not db_path.exists():
        return False
    with duckdb.connect(str(db_path), read_only=True) as db:
        found = db.execute(
            "select count(*) from information_schema.tables"
            " where table_schema = ? and table_name = ?",
            [DATASET, table],
        ).fetchone()
    return bool(found and found[0])


def columns_of(db_path: Path, table: str) -> dict[str, str]:
    """Column name -> DuckDB type of a landed table."""
    rows = query(
        db_path,
        "select column_name, data_type from information_schema.columns"
        f" where table_schema = '{DATASET}' and table_name = '{table}'",
    )
    return {name: kind for name, kind in rows}


@dataclass(frozen=True)
class StripeSnapshot:
    """What the Stripe sandbox holds: live invoices' statuses and line counts."""

    statuses: dict[str, str]
    line_counts: dict[str, int]
    newest_created: int

    @classmethod
    def of(cls, app: StripeApp) -> StripeSnapshot:
        """Read the sandbox's current state."""
        statuses: dict[str, str] = {}
        newest = 0
        for invoice_id in app.invoice_ids():
            invoice = app.get(invoice_id)
            assert invoice is not None
            statuses[invoice_id] = invoice["status"]
            newest = max(newest, int(invoice["created"]))
        counts = {invoice_id: app.line_count(invoice_id) for invoice_id in statuses}
        return cls(statuses, counts, newest)


def assert_stripe_landed_exactly(app: StripeApp, db_path: Path) -> None:
    """Every live sandbox invoice landed once with its status and every line once; deleted
    drafts are the only other rows, flagged ``is_deleted``."""
    expected = StripeSnapshot.of(app)
    rows = query(db_path, "select id, status, is_deleted from stripe_invoices")
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)), "an invoice landed twice"
    live = {row[0]: row[1] for row in rows if not row[2]}
    assert live == expected.statuses
    lines = query(
        db_path,
        "select invoice_id, count(*), count(distinct id) from stripe_invoice_line_items"
        " group by invoice_id",
    )
    assert all(total == distinct for _, total, distinct in lines), "a line item landed twice"
    landed_counts = {invoice_id: total for invoice_id, total, _ in lines if invoice_id in live}
    expected_counts = {key: count for key, count in expected.line_counts.items() if count}
    assert landed_counts == expected_counts


def stripe_cursor(state: Mapping[str, object]) -> int | None:
    """``created_cursor`` of the Stripe resource in a pipeline state."""
    node: object = state
    for key in ("sources", "stripe", "resources", "stripe_invoices", "created_cursor"):
        node = node.get(key) if isinstance(node, Mapping) else None
    return int(str(node)) if node is not None else None


def make_business_day(app: StripeApp) -> dict[str, str]:
    """Change the sandbox as a day of business would; returns ``what -> invoice id``.

    Touches invoices created long before any overlap window, so only the events (or a re-read)
    can bring the changes: an open invoice paid, another voided, a draft finalized, a draft
    deleted, a draft given one more line, and two new invoices, one with fourteen lines.
    """
    cutoff = app.now() - 2 * 86_400
    by_status: dict[str, list[str]] = {}
    for invoice_id in app.invoice_ids():
        invoice = app.get(invoice_id)
        assert invoice is not None
        if invoice["created"] < cutoff:
            by_status.setdefault(invoice["status"], []).append(invoice_id)
    opened, drafts = by_status["open"], by_status["draft"]
    changes = {
        "paid": opened[0],
        "voided": opened[1],
        "finalized": drafts[0],
        "deleted": drafts[1],
        "line_added": drafts[2],
    }
    app.pay(changes["paid"])
    app.void(changes["voided"])
    app.finalize(changes["finalized"])
    app.delete_draft(changes["deleted"])
    app.add_line(changes["line_added"], amount=4_200, description="late addition")
    changes["created_long"] = app.add_invoice(lines=14, status="open")
    changes["created"] = app.add_invoice(lines=2, status="paid")
    return changes


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``invoice-sync`` in this process; returns the exit code and the one error line."""
    code = main(args)
    return code, one_error_line(capsys.readouterr().err)


def one_error_line(stderr: str) -> str:
    """The error line of ``stderr``, checking it is the only one and nothing spills over it."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, stderr
    stray = [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("invoice-sync: ") and not LOG_LINE.match(line)
    ]
    assert stray == [], f"the error spilled over several lines:\n{stderr}"
    return errors[0][len(ERROR_PREFIX) :]


class CliRun:
    """``invoice-sync`` in a subprocess, optionally held inside a dlt step to be killed there."""

    def __init__(self, args: list[str], *, cwd: Path, hold_stage: str | None = None) -> None:
        self.marker = cwd / f"held-{time.monotonic_ns()}"
        if hold_stage is None:
            command = [str(CLI), *args]
        else:
            command = [sys.executable, str(STAGE_HOLD_SCRIPT), hold_stage, str(self.marker)]
            command += ["--", *args]
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_until(self, reached: Callable[[], bool]) -> None:
        """Wait until ``reached()``; fail with the CLI's output if it exits first."""
        deadline = time.monotonic() + HELD_TIMEOUT_SECONDS
        while not reached():
            if self.process.poll() is not None:
                out, err = self.process.communicate()
                raise AssertionError(
                    f"invoice-sync exited ({self.process.returncode}) before the hold:\n{out}{err}"
                )
            assert time.monotonic() < deadline, "invoice-sync never reached the hold"
            time.sleep(0.02)

    def wait_until_held(self) -> str:
        """Wait for the stage hold; returns what the process had done when it stopped."""
        self.wait_until(self.marker.exists)
        return self.marker.read_text()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no atexit, no flush, like a lost machine."""
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate()
        assert self.process.returncode == -signal.SIGKILL

    def finish(self) -> tuple[int, str, str]:
        """Wait for exit; returns exit code, stdout and stderr."""
        out, err = self.process.communicate(timeout=HELD_TIMEOUT_SECONDS)
        return self.process.returncode, out, err
