"""Fixtures of the fault suite: a small scriptable Stripe sandbox on loopback, the env pointing
the Stripe source at it, recorded retry waits, and a sync through the same path as the CLI."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from invoice_source.pipeline import SyncOptions, SyncResult, run_sync
from invoice_source.sandbox.server import SandboxServer
from tests.faults.support import ScriptedStripeApp

SEEDED_INVOICES = 120
# Small pages so a small account spans several of them (and the reader splits its window).
PAGE_SIZE = 20

Sync = Callable[..., SyncResult]


@pytest.fixture
def stripe_app() -> ScriptedStripeApp:
    """A Stripe sandbox seeded with ``SEEDED_INVOICES`` invoices over the last two years."""
    app = ScriptedStripeApp(seed=23)
    app.seed_invoices(SEEDED_INVOICES)
    return app


@pytest.fixture
def stripe_server(stripe_app: ScriptedStripeApp) -> Iterator[SandboxServer]:
    """The sandbox on a loopback port; fails the test on a route Stripe does not have."""
    server = SandboxServer(stripe_app).start()
    try:
        yield server
    finally:
        stripe_app.release.set()
        server.stop()
    assert stripe_app.unmatched == [], f"routes Stripe does not have: {stripe_app.unmatched}"


@pytest.fixture
def stripe_env(
    stripe_app: ScriptedStripeApp, stripe_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """``[sources.stripe]`` pointed at the sandbox through env vars, no client-side rate limit."""
    env = stripe_app.env(stripe_server.url)
    env["SOURCES__STRIPE__REQUESTS_PER_SECOND"] = "0"
    env["SOURCES__STRIPE__PAGE_SIZE"] = str(PAGE_SIZE)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def pipelines_dir(tmp_path: Path) -> Path:
    """Where dlt keeps the pipeline's state and load packages."""
    return tmp_path / "pipelines"


@pytest.fixture
def sync_options(duckdb_path: Path, pipelines_dir: Path) -> SyncOptions:
    """Load into the test's DuckDB file, state in the test's pipelines dir."""
    return SyncOptions(destination=str(duckdb_path), pipelines_dir=str(pipelines_dir))


@pytest.fixture
def sync(
    stripe_env: dict[str, str], sync_options: SyncOptions, recorded_sleeps: list[float]
) -> Sync:
    """Run the Stripe source once, the way ``invoice-sync run stripe`` does."""

    def run(*sources: str) -> SyncResult:
        return run_sync(list(sources) or ["stripe"], sync_options)

    return run


@pytest.fixture
def cli_args(duckdb_path: Path, pipelines_dir: Path) -> list[str]:
    """``invoice-sync run stripe`` into the test's DuckDB file and pipelines dir."""
    return [
        "run",
        "stripe",
        "--destination",
        str(duckdb_path),
        "--pipelines-dir",
        str(pipelines_dir),
        "--no-models",
    ]


@pytest.fixture
def stripe_log(log_messages: Callable[[str, int], list[str]]) -> list[str]:
    """Messages of the ``invoice_source.stripe`` logger at INFO and above, worker ones included."""
    return log_messages("invoice_source.stripe", logging.INFO)
