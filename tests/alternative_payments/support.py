"""Helpers shared by the Alternative Payments tests (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import dlt

from invoice_source.sandbox.alternative_payments import AlternativePaymentsApp
from invoice_source.sandbox.server import SandboxServer

SEEDED_INVOICES = 240
CLOCK_START = 1_768_478_400.0  # 2026-01-15T12:00:00Z
DATASET = "invoices"
PIPELINE_NAME = "alternative_payments_test"


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, start: float = CLOCK_START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


class SleepRecorder:
    """A fake ``sleep`` that records the delays it was asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_pipeline(duckdb_path: Path) -> dlt.Pipeline:
    """The test pipeline writing to ``duckdb_path``."""
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        destination=dlt.destinations.duckdb(str(duckdb_path)),
        dataset_name=DATASET,
    )


def list_requests(app: AlternativePaymentsApp) -> list[dict[str, str]]:
    """Query parameters of every ``GET /invoices`` the sandbox received, in order."""
    return [dict(request.query) for request in app.requests_to(r"^/invoices$", "GET")]


class QuickStopServer(SandboxServer):
    """``SandboxServer`` polling for shutdown every 10 ms instead of 500 ms, so each test's
    teardown does not wait half a second."""

    def start(self) -> QuickStopServer:
        """Start serving in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"{self.app.name}-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self
