"""Fixtures for operations: the three sandboxes, a Stripe sandbox that can hold a run still,
the CLI in-process and in a subprocess, and a throwaway PostgreSQL schema."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from invoice_source.cli import main
from invoice_source.sandbox import SandboxSet, SeedSizes
from invoice_source.sandbox.server import Request, Response, SandboxServer
from invoice_source.sandbox.stripe import StripeApp
from tests.conftest import POSTGRES_URL

CLI = Path(sys.executable).with_name("invoice-sync")
WAIT_SECONDS = 30.0
SMALL = SeedSizes(stripe_invoices=120, prepbusiness_invoices=30, alternative_payments_invoices=40)
NO_CLIENT_RATE_LIMITS = {
    "SOURCES__STRIPE__REQUESTS_PER_SECOND": "0",
    "SOURCES__PREPBUSINESS__REQUESTS_PER_SECOND": "0",
    "SOURCES__ALTERNATIVE_PAYMENTS__REQUESTS_PER_SECOND": "0",
}


class GatedStripeApp(StripeApp):
    """The Stripe sandbox whose invoice list can be closed: a run then waits inside extract,
    holding its lock, until the test opens the gate (or kills it)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def dispatch(self, request: Request) -> Response:
        """Hold list requests while the gate is closed."""
        if request.path == "/v1/invoices" and not self.gate.is_set():
            self.waiting.set()
            self.gate.wait(WAIT_SECONDS)
        return super().dispatch(request)


@pytest.fixture
def sandboxes(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxSet]:
    """The three sandboxes, small, seeded and linked; the sources point at them."""
    sandbox_set = SandboxSet(seed=5, sizes=SMALL).start()
    sandbox_set.seed_data()
    for key, value in {**sandbox_set.env(), **NO_CLIENT_RATE_LIMITS}.items():
        monkeypatch.setenv(key, value)
    yield sandbox_set
    sandbox_set.stop()
    for name, app in sandbox_set.apps.items():
        assert app.unmatched == [], f"requests to routes {name} does not have: {app.unmatched}"


@pytest.fixture
def stripe_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedStripeApp]:
    """A gated Stripe sandbox with 150 invoices, served; the Stripe source points at it."""
    app = GatedStripeApp(seed=23)
    app.seed_invoices(150)
    server = SandboxServer(app).start()
    for key, value in {**app.env(server.url), **NO_CLIENT_RATE_LIMITS}.items():
        monkeypatch.setenv(key, value)
    yield app
    app.gate.set()
    server.stop()
    assert app.unmatched == [], f"requests to routes Stripe does not have: {app.unmatched}"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """The pipelines (state) directory runs share."""
    return tmp_path / "state"


@dataclass
class CliResult:
    """Exit code and output of one in-process CLI run."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``invoice-sync`` in this process; returns its exit code and output."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


class CliProcess:
    """``invoice-sync`` in a subprocess, with the test's environment (sandboxes, dlt home)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [str(CLI), *args],
            cwd=cwd,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def wait_until(self, reached: Callable[[], bool], what: str) -> None:
        """Wait until ``reached()``; fail with the CLI's output if it exits first."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not reached():
            if self.process.poll() is not None:
                out, err = self.process.communicate()
                raise AssertionError(f"invoice-sync exited before {what}:\n{out}\n{err}")
            assert time.monotonic() < deadline, f"invoice-sync never reached {what}"
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no atexit, no lock release by the process itself."""
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate()
        assert self.process.returncode == -signal.SIGKILL

    def finish(self) -> CliResult:
        """Wait for the process to end."""
        out, err = self.process.communicate(timeout=WAIT_SECONDS)
        return CliResult(self.process.returncode, out, err)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., CliProcess]]:
    """Start ``invoice-sync`` in a subprocess (killed at teardown if still running)."""
    started: list[CliProcess] = []

    def start(*args: str) -> CliProcess:
        process = CliProcess(list(args), cwd=tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.process.communicate()


@pytest.fixture
def pg_dataset(postgres_available: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A unique PostgreSQL schema for the test, dropped afterwards (with dlt's staging one)."""
    import psycopg2

    dataset = f"test_ops_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
    yield dataset
    with psycopg2.connect(POSTGRES_URL) as connection, connection.cursor() as cursor:
        cursor.execute(f'drop schema if exists "{dataset}" cascade')
        cursor.execute(f'drop schema if exists "{dataset}_staging" cascade')
    connection.close()


def pg_query(sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query on the test PostgreSQL database."""
    import psycopg2

    with psycopg2.connect(POSTGRES_URL) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        rows = [tuple(row) for row in cursor.fetchall()]
    connection.close()
    return rows


def duckdb_query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query on a DuckDB file (dataset ``invoices``)."""
    import duckdb

    with duckdb.connect(str(path), read_only=True) as connection:
        connection.execute("set schema 'invoices'")
        return [tuple(row) for row in connection.sql(sql).fetchall()]


def duckdb_setting_as_shown(name: str, value: str) -> str:
    """How DuckDB reads back ``name`` set to ``value`` (``128MB`` reads ``122.0 MiB``)."""
    with duckdb.connect(config={name: value}) as connection:
        row = connection.execute(f"SELECT current_setting('{name}')").fetchone()
    assert row is not None
    return str(row[0])


def duckdb_pipeline(tmp_path: Path, name: str) -> Any:
    """A pipeline ``name`` loading dataset ``invoices`` into ``<tmp_path>/<name>.duckdb`` through
    invoice-sync's DuckDB destination."""
    import dlt

    from invoice_source.destinations import duckdb_destination

    return dlt.pipeline(
        pipeline_name=name,
        destination=duckdb_destination(str(tmp_path / f"{name}.duckdb")),
        dataset_name="invoices",
        pipelines_dir=str(tmp_path / "pipelines"),
    )


def pipeline_rows(pipeline: Any, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query through the pipeline's SQL client."""
    with pipeline.sql_client() as client:
        return [tuple(row) for row in client.execute_sql(sql) or []]
