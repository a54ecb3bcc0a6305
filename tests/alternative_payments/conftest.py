"""Fixtures for the Alternative Payments tests: a seeded sandbox on loopback with a fake clock,
clients and dlt pipelines pointed at it, and DuckDB queries of what landed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dlt.common.pipeline import LoadInfo

from invoice_source.alternative_payments import alternative_payments_source
from invoice_source.alternative_payments.client import AlternativePaymentsClient
from invoice_source.http import RetryPolicy
from invoice_source.sandbox.alternative_payments import AlternativePaymentsApp
from invoice_source.sandbox.server import SandboxServer
from tests.alternative_payments.support import (
    DATASET,
    SEEDED_INVOICES,
    FakeClock,
    QuickStopServer,
    SleepRecorder,
    make_pipeline,
)


@pytest.fixture
def clock() -> FakeClock:
    """The sandbox's clock."""
    return FakeClock()


@pytest.fixture
def ap_app(clock: FakeClock) -> AlternativePaymentsApp:
    """A sandbox seeded with ``SEEDED_INVOICES`` invoices, its clock under test control."""
    app = AlternativePaymentsApp(seed=7, clock=clock)
    app.seed_invoices(SEEDED_INVOICES)
    return app


@pytest.fixture
def ap_server(ap_app: AlternativePaymentsApp) -> Iterator[SandboxServer]:
    """The sandbox served on a loopback port; fails the test if any route was unknown."""
    server = QuickStopServer(ap_app).start()
    try:
        yield server
    finally:
        server.stop()
    assert ap_app.unmatched == []


@pytest.fixture
def sleep() -> SleepRecorder:
    """Fake sleep handed to clients."""
    return SleepRecorder()


@pytest.fixture
def make_client(
    ap_server: SandboxServer, ap_app: AlternativePaymentsApp, sleep: SleepRecorder
) -> Iterator[Callable[..., AlternativePaymentsClient]]:
    """Build clients for the sandbox (no rate limit, fake sleep); closed after the test."""
    clients: list[AlternativePaymentsClient] = []

    def build(**overrides: Any) -> AlternativePaymentsClient:
        options: dict[str, Any] = {
            "requests_per_second": None,
            "sleep": sleep,
            "retry": RetryPolicy(max_attempts=3, backoff_factor=0.01),
        }
        options.update(overrides)
        client = AlternativePaymentsClient(
            options.pop("base_url", ap_server.url),
            options.pop("client_id", ap_app.client_id),
            options.pop("client_secret", ap_app.client_secret),
            **options,
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def run_source(
    ap_server: SandboxServer, ap_app: AlternativePaymentsApp, duckdb_path: Path
) -> Callable[..., LoadInfo]:
    """Run ``alternative_payments_source`` into the test's DuckDB file; the same pipeline (and
    so the same saved state) on every call within a test."""

    def run(**source_args: Any) -> LoadInfo:
        args: dict[str, Any] = {
            "base_url": ap_server.url,
            "client_id": ap_app.client_id,
            "client_secret": ap_app.client_secret,
            "requests_per_second": None,
        }
        args.update(source_args)
        return make_pipeline(duckdb_path).run(alternative_payments_source(**args))

    return run


@pytest.fixture
def query(duckdb_path: Path) -> Callable[..., list[tuple[Any, ...]]]:
    """Run SQL against the landed dataset (tables are unqualified)."""

    def run(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(duckdb_path), read_only=True) as connection:
            connection.execute(f"SET schema = '{DATASET}'")
            return connection.execute(sql, list(params)).fetchall()

    return run
