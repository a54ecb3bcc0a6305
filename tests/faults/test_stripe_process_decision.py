"""When a first Stripe load starts worker processes: a dense newest page alone is not a long
history. The source probes, with one ``limit=1`` request, whether invoices reach back as far as
``worker_processes_min_invoices`` of them would at that page's density."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.conftest import Sync
from tests.faults.support import INVOICE_LIST, ScriptedStripeApp, assert_stripe_landed_exactly

PROCESS_LOG = "worker processes"
BURST_INVOICES = 150  # created within the last hour: a full, dense first page


@pytest.fixture
def stripe_app() -> ScriptedStripeApp:
    """A sandbox whose whole history is one recent billing burst."""
    app = ScriptedStripeApp(seed=31)
    now = app.now()
    for second in range(BURST_INVOICES):
        app.add_invoice(status="open", created=now - 3_600 + second * 20)
    return app


@pytest.fixture(autouse=True)
def processes_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default process settings (the test suite otherwise reads with threads only)."""
    monkeypatch.setenv("SOURCES__STRIPE__WORKER_PROCESSES", "2")
    monkeypatch.setenv("SOURCES__STRIPE__WORKER_PROCESSES_MIN_INVOICES", "20000")


def probes(app: ScriptedStripeApp) -> list[str]:
    """``created[lt]`` of every ``limit=1`` invoice list request."""
    return [
        r.arg("created[lt]") or ""
        for r in app.requests_to(rf"^{INVOICE_LIST}$")
        if r.arg("limit") == "1"
    ]


def test_given_only_a_recent_burst_when_first_loaded_then_one_probe_and_threads_read_it(
    stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path, stripe_log: list[str]
) -> None:
    sync()

    assert len(probes(stripe_app)) == 1, "one limit=1 request asks whether the history is long"
    assert not any(PROCESS_LOG in message for message in stripe_log), stripe_log
    assert_stripe_landed_exactly(stripe_app, duckdb_path)


def test_given_invoices_far_behind_a_dense_page_when_first_loaded_then_processes_read_them(
    stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path, stripe_log: list[str]
) -> None:
    stripe_app.add_invoice(status="paid", lines=25, created=stripe_app.now() - 300 * 86_400)

    sync()

    assert len(probes(stripe_app)) == 1
    assert any(PROCESS_LOG in message for message in stripe_log), stripe_log
    assert_stripe_landed_exactly(stripe_app, duckdb_path)
