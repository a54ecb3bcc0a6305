"""Long Stripe histories read by worker processes, under the faults the thread path survives.

``worker_processes_min_invoices=0`` sends every window behind the first page to the worker
processes, so a small sandbox exercises the path a first load of years of history takes: every
invoice and line must land once, requests are counted across processes, a worker's error stops
the run with the error the run would have raised itself, and a killed run leaves no worker
behind.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest

from invoice_source.errors import AuthenticationError
from invoice_source.pipeline import SyncFailedError, SyncOptions, make_pipeline
from invoice_source.sandbox.server import Fault
from tests.faults.conftest import Sync
from tests.faults.support import (
    INVOICE_LIST,
    CliRun,
    ScriptedStripeApp,
    assert_stripe_landed_exactly,
    has_table,
    rotate_faults,
    stripe_cursor,
    sync_error,
)

LIST = rf"^{INVOICE_LIST}$"
LINES = r"^/v1/invoices/[^/]+/lines$"
PROCESS_LOG = "worker processes"
# well below the sandbox's 30 s hold, which would free a blocked worker to notice by itself
ORPHAN_TIMEOUT_SECONDS = 5.0


@pytest.fixture(autouse=True)
def processes_for_every_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two worker processes for any window behind the first page, however small."""
    monkeypatch.setenv("SOURCES__STRIPE__WORKER_PROCESSES", "2")
    monkeypatch.setenv("SOURCES__STRIPE__WORKER_PROCESSES_MIN_INVOICES", "0")


def long_invoices(app: ScriptedStripeApp) -> list[str]:
    """Invoices with more than ten lines spread over the seeded history."""
    now = app.now()
    return [
        app.add_invoice(lines=25, status="open", created=now - days * 86_400)
        for days in (3, 120, 240, 360, 480, 600)
    ]


# multiprocessing starts this helper with the first queue of a process that spawns and keeps it
# for that process's life: in-process runs share the test process's, started by whichever test
# of a pytest worker reads with processes first (so carrying that test's environment)
RESOURCE_TRACKER = b"multiprocessing.resource_tracker"


def processes_of(data_dir: str) -> list[int]:
    """Pids of live processes whose environment names ``data_dir`` (this test's runs only),
    multiprocessing's resource tracker left out."""
    marker = f"DLT_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            command = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ.split(b"\0") and state != "Z" and RESOURCE_TRACKER not in command:
            found.append(int(entry.name))
    return found


def test_given_a_long_history_when_read_by_worker_processes_then_every_invoice_and_line_lands_once(
    stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path, stripe_log: list[str]
) -> None:
    long_invoices(stripe_app)
    stripe_app.reset_log()

    result = sync()

    assert any(PROCESS_LOG in message for message in stripe_log), stripe_log
    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    assert result.sources[0].requests == len(stripe_app.requests), (
        "requests made in the worker processes were not counted"
    )
    newest = max((stripe_app.get(i) or {})["created"] for i in stripe_app.invoice_ids())
    assert stripe_cursor(dict(result.pipeline.state)) == newest


def test_given_workers_retiring_every_few_pages_when_a_history_is_read_then_fresh_ones_finish_it(
    stripe_app: ScriptedStripeApp,
    sync: Sync,
    duckdb_path: Path,
    stripe_log: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__STRIPE__WORKER_RETIRE_INVOICES", "30")
    long_invoices(stripe_app)
    stripe_app.reset_log()

    result = sync()

    retired = [message for message in stripe_log if "retired" in message]
    assert len(retired) >= 2, stripe_log
    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    trace = result.pipeline.last_trace
    assert trace is not None and trace.last_normalize_info is not None
    extracted = trace.last_normalize_info.row_counts["stripe_invoices"]
    assert extracted == len(stripe_app.invoice_ids()), "an invoice given back was read twice"
    assert result.sources[0].requests == len(stripe_app.requests)


def test_given_the_cli_log_levels_when_workers_read_then_only_invoice_source_records_come_back(
    stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path
) -> None:
    """Like the CLI: root at WARNING, ``invoice_source`` at INFO; httpx's INFO line per request
    must stay in the workers, as it stays silent in the run's own process."""
    long_invoices(stripe_app)
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    root, ours = logging.getLogger(), logging.getLogger("invoice_source")
    handler, levels = Collect(logging.NOTSET), (root.level, ours.level)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    ours.setLevel(logging.INFO)
    try:
        sync()
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])

    assert any(PROCESS_LOG in record.getMessage() for record in seen)
    noisy = [r.name for r in seen if not r.name.startswith("invoice_source") and r.levelno < 30]
    assert noisy == [], f"records below WARNING from other loggers came back: {noisy[:5]}"
    assert_stripe_landed_exactly(stripe_app, duckdb_path)


def test_given_transient_faults_in_worker_processes_when_synced_then_every_line_lands_once(
    stripe_app: ScriptedStripeApp,
    sync: Sync,
    duckdb_path: Path,
    stripe_log: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.01")
    long_invoices(stripe_app)
    # the first list page is read in the run's own process; every later fault meets a worker
    stripe_app.before_page[2] = lambda: rotate_faults(
        stripe_app,
        [
            Fault("status", 429, retry_after="0.05", path_pattern=LIST),
            Fault("status", 429, retry_after="0.05", path_pattern=LINES),
            *(Fault("status", status, path_pattern=LIST) for status in (500, 503)),
            *(Fault(kind, path_pattern=LINES) for kind in ("reset", "truncate")),
        ],
    )

    sync()

    assert any(PROCESS_LOG in message for message in stripe_log), stripe_log
    assert stripe_app.pending_faults == [], "not every fault was met"
    assert_stripe_landed_exactly(stripe_app, duckdb_path)


def test_given_a_revoked_key_while_workers_read_when_synced_then_the_auth_error_and_nothing_loaded(
    stripe_app: ScriptedStripeApp,
    sync: Sync,
    duckdb_path: Path,
    sync_options: SyncOptions,
    isolated_dlt: Path,
) -> None:
    long_invoices(stripe_app)
    stripe_app.before_page[3] = lambda: stripe_app.inject_status(
        401, times=1_000, path_pattern=LIST
    )

    with pytest.raises(SyncFailedError) as failure:
        sync()

    error = sync_error(failure.value, AuthenticationError)
    assert "SOURCES__STRIPE__API_KEY" in str(error) or "api_key" in str(error)
    assert not has_table(duckdb_path, "stripe_invoices")
    assert stripe_cursor(dict(make_pipeline(sync_options).state)) is None
    assert processes_of(str(isolated_dlt)) == [], "worker processes outlived the failed read"


def test_given_a_run_killed_while_workers_read_when_run_again_then_no_worker_is_left_and_all_lands(
    stripe_app: ScriptedStripeApp,
    sync: Sync,
    duckdb_path: Path,
    cli_args: list[str],
    tmp_path: Path,
    isolated_dlt: Path,
) -> None:
    long_invoices(stripe_app)
    stripe_app.hold_after_pages = 2  # the run's own first page, then one page in a worker
    run = CliRun(cli_args, cwd=tmp_path)
    run.wait_until(stripe_app.held.is_set)
    assert len(processes_of(str(isolated_dlt))) >= 3, "the run did not start worker processes"

    run.process.send_signal(signal.SIGKILL)
    run.process.wait()  # not its pipes: a surviving worker would hold them open
    deadline = time.monotonic() + ORPHAN_TIMEOUT_SECONDS
    while processes_of(str(isolated_dlt)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(str(isolated_dlt)) == [], "worker processes outlived the killed run"
    run.process.communicate()

    stripe_app.hold_after_pages = None
    stripe_app.release.set()
    sync()
    assert_stripe_landed_exactly(stripe_app, duckdb_path)
