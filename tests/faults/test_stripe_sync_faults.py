"""Faults during whole Stripe syncs, the way ``invoice-sync run stripe`` runs them.

A sync that meets transient faults still lands every invoice and line exactly once; one that
meets a fault retrying cannot fix (an API that keeps failing, an empty page claiming more, a
cursor that loops) stops with a clear error, loads nothing of that run and leaves the cursor
where it was, so the next run fills the gap.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from invoice_source.errors import ApiUnavailableError, PaginationError
from invoice_source.pipeline import SyncFailedError, SyncOptions, make_pipeline
from invoice_source.sandbox.server import Fault
from tests.faults.conftest import Sync
from tests.faults.support import (
    INVOICE_LIST,
    ScriptedStripeApp,
    assert_stripe_landed_exactly,
    has_table,
    list_page_body,
    make_business_day,
    query,
    rotate_faults,
    stripe_cursor,
    sync_error,
)

LIST = rf"^{INVOICE_LIST}$"
LINES = r"^/v1/invoices/[^/]+/lines$"


def local_state(options: SyncOptions) -> dict[str, object]:
    return dict(make_pipeline(options).state)


def test_given_every_transient_fault_during_a_sync_then_every_invoice_and_line_lands_once(
    stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path, recorded_sleeps: list[float]
) -> None:
    now = stripe_app.now()
    long_invoices = [
        stripe_app.add_invoice(lines=25, status="open", created=now - days * 86_400)
        for days in (3, 90, 180, 270, 360, 450, 540, 630)
    ]
    faults = [
        Fault("status", 429, retry_after="1", path_pattern=LIST),
        Fault("status", 429, path_pattern=LINES),
        *(Fault("status", status, path_pattern=LIST) for status in (500, 502, 503)),
        *(Fault("status", status, path_pattern=LINES) for status in (500, 503)),
        *(Fault(kind, path_pattern=LIST) for kind in ("reset", "truncate", "not_json")),
        *(Fault(kind, path_pattern=LINES) for kind in ("reset", "truncate", "not_json")),
    ]
    rotate_faults(stripe_app, faults)

    result = sync()

    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    assert stripe_app.pending_faults == [], "the sync ended before meeting every fault"
    assert len(recorded_sleeps) >= len(faults), "every fault costs a retry"
    answered_by_fault_alone = sum(fault.kind in ("status", "reset") for fault in faults)
    assert result.sources[0].requests == len(stripe_app.requests) + answered_by_fault_alone
    for invoice_id in long_invoices:
        assert query(
            duckdb_path,
            f"select line_count from stripe_invoices where id = '{invoice_id}'",
        ) == [(25,)]


def test_given_an_incremental_run_failing_after_reading_events_then_next_run_fills_the_gap(
    stripe_app: ScriptedStripeApp,
    sync: Sync,
    sync_options: SyncOptions,
    duckdb_path: Path,
) -> None:
    sync()
    state_before = local_state(sync_options)
    statuses_before = dict(query(duckdb_path, "select id, status from stripe_invoices"))
    changes = make_business_day(stripe_app)
    stripe_app.inject_status(503, times=1_000, path_pattern=LIST)

    with pytest.raises(SyncFailedError) as failure:
        sync()

    assert "GET /v1/invoices" in str(sync_error(failure.value, ApiUnavailableError))
    assert stripe_app.requests_to(r"^/v1/events$"), "the failing run read the events first"
    assert dict(query(duckdb_path, "select id, status from stripe_invoices")) == statuses_before
    state_after = local_state(sync_options)
    assert stripe_cursor(state_after) == stripe_cursor(state_before)
    assert state_after["sources"] == state_before["sources"]

    stripe_app.clear_faults()
    sync()

    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    landed = dict(query(duckdb_path, "select id, status from stripe_invoices"))
    assert landed[changes["paid"]] == "paid"
    assert landed[changes["created_long"]] == "open"


def test_given_an_empty_page_claiming_more_when_synced_then_a_pagination_error_not_a_loop(
    stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path
) -> None:
    empty = list_page_body([], has_more=True)
    stripe_app.before_page[1] = lambda: stripe_app.inject_status(
        200, times=1_000, path_pattern=LIST, body=empty
    )

    with pytest.raises(SyncFailedError) as failure:
        sync()

    error = sync_error(failure.value, PaginationError)
    assert "empty page with has_more=true" in str(error)
    assert "\n" not in str(error)
    assert stripe_app.pages_served < 10
    assert not has_table(duckdb_path, "stripe_invoices")


def test_given_an_empty_line_page_claiming_more_when_synced_then_a_pagination_error(
    stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path
) -> None:
    invoice_id = stripe_app.add_invoice(lines=25, status="open")
    lines_path = rf"^/v1/invoices/{invoice_id}/lines$"
    stripe_app.inject_status(
        200, times=1_000, path_pattern=lines_path, body=list_page_body([], has_more=True)
    )

    with pytest.raises(SyncFailedError) as failure:
        sync()

    error = sync_error(failure.value, PaginationError)
    assert f"invoices/{invoice_id}/lines" in str(error)
    assert not has_table(duckdb_path, "stripe_invoices")


def test_given_a_list_repeating_its_cursor_when_synced_then_a_pagination_error_not_a_loop(
    stripe_app: ScriptedStripeApp,
    sync: Sync,
    duckdb_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__STRIPE__MAX_WORKERS", "1")
    monkeypatch.setenv("SOURCES__STRIPE__WORKER_PROCESSES", "1")
    newest = [stripe_app.get(i) for i in list(reversed(stripe_app.invoice_ids()))[:20]]
    same_page = list_page_body([invoice for invoice in newest if invoice], has_more=True)
    stripe_app.before_page[1] = lambda: stripe_app.inject_status(
        200, times=1_000, path_pattern=LIST, body=same_page
    )

    with pytest.raises(SyncFailedError) as failure:
        sync()

    error = sync_error(failure.value, PaginationError)
    assert "same page twice" in str(error)
    assert stripe_app.pages_served == 1
    assert not has_table(duckdb_path, "stripe_invoices")


def test_given_runtime_retry_settings_when_the_api_keeps_failing_then_they_bound_the_retries(
    stripe_app: ScriptedStripeApp,
    sync: Sync,
    recorded_sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "2")
    stripe_app.inject_status(429, times=1_000, retry_after="0.01", path_pattern=LIST)

    with pytest.raises(SyncFailedError):
        sync()

    attempts = 1_000 - stripe_app.pending_faults[0].times
    assert attempts == 2, "runtime.request_max_attempts was not honoured"
    assert recorded_sleeps[:1] == [0.01], "the wait did not go through the replaceable sleep"
