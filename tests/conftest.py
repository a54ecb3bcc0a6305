"""Fixtures every test area shares: an isolated dlt home and a fresh DuckDB file per test."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

from invoice_source import http

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
# trust auth on these machines: the password is never checked
POSTGRES_URL = f"postgresql://postgres:unused@{POSTGRES_HOST}:{POSTGRES_PORT}/test"


@pytest.fixture(autouse=True)
def isolated_dlt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point dlt's data dir (pipelines, state) at a temp folder and drop source env vars."""
    home = tmp_path / "dlt-home"
    home.mkdir()
    isolate_environment(monkeypatch, home)
    yield home


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """The CLI configures the root, ``dlt`` and ``invoice_source`` loggers (a JSON handler,
    redaction filters, levels); put them back so no test inherits another's."""
    loggers = [logging.getLogger(name) for name in ("", "dlt", "invoice_source")]
    saved = [
        (list(logger.handlers), list(logger.filters), logger.level, logger.propagate)
        for logger in loggers
    ]
    yield
    for logger, (handlers, filters, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers, logger.filters = handlers, filters
        logger.setLevel(level)
        logger.propagate = propagate


def isolate_environment(env: pytest.MonkeyPatch, home: Path) -> None:
    """dlt's data dir at ``home``, no source or destination settings from the shell, quiet
    logs, and threads-only Stripe reads (for fixtures of a wider scope too)."""
    env.setenv("DLT_DATA_DIR", str(home))
    for key in list(os.environ):
        if key.startswith(("SOURCES__", "DESTINATION__", "INVOICE_SYNC__")):
            env.delenv(key)
    env.setenv("RUNTIME__LOG_LEVEL", "WARNING")
    # Threads only: spawning worker processes costs ~1 s a run, and the seeded sandboxes' dense
    # years of history would start them on most first loads. The process path and the decision
    # to take it have their own tests (tests/faults/test_stripe_worker_processes.py and
    # test_stripe_process_decision.py set 2).
    env.setenv("SOURCES__STRIPE__WORKER_PROCESSES", "1")


class _CollectMessages(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def log_messages() -> Iterator[Callable[[str, int], list[str]]]:
    """``log_messages(name, level)``: the messages the logger ``name`` handles at ``level`` and
    above from then on (its level is set to ``level``) until the test ends."""
    attached: list[tuple[logging.Logger, logging.Handler, int]] = []

    def collect(name: str, level: int) -> list[str]:
        logger = logging.getLogger(name)
        handler = _CollectMessages(level)
        attached.append((logger, handler, logger.level))
        logger.addHandler(handler)
        logger.setLevel(level)
        return handler.messages

    yield collect
    for logger, handler, level in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def duckdb_path(tmp_path: Path) -> Path:
    """Path of a DuckDB file that does not exist yet."""
    return tmp_path / "warehouse.duckdb"


def postgres_reachable() -> bool:
    """Whether the PostgreSQL server on 127.0.0.1:5432 accepts connections."""
    try:
        with socket.create_connection((POSTGRES_HOST, POSTGRES_PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_available() -> None:
    """Skip when PostgreSQL is unreachable, except under CI=true, where that is a failure."""
    require_postgres()


def require_postgres() -> None:
    """Skip the calling test (or fixture) when PostgreSQL is unreachable; fail under CI=true."""
    if postgres_reachable():
        return
    message = f"PostgreSQL is not reachable on {POSTGRES_HOST}:{POSTGRES_PORT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: PostgreSQL tests must run)")
    pytest.skip(message)


@pytest.fixture
def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every retry wait and rate-limiter pause, recorded instead of slept."""
    sleeps: list[float] = []
    monkeypatch.setattr(http, "default_sleep", sleeps.append)
    return sleeps


@pytest.fixture
def pipeline(duckdb_path: Path, tmp_path: Path) -> dlt.Pipeline:
    """A dlt pipeline into a fresh DuckDB file, dataset ``invoices``."""
    return dlt.pipeline(
        pipeline_name="invoice_sync_test",
        destination=dlt.destinations.duckdb(str(duckdb_path)),
        dataset_name="invoices",
        pipelines_dir=str(tmp_path / "pipelines"),
    )


@pytest.fixture
def query(pipeline: dlt.Pipeline) -> Callable[[str], list[tuple[Any, ...]]]:
    """Run SQL against the pipeline's dataset."""

    def run(sql: str) -> list[tuple[Any, ...]]:
        with pipeline.sql_client() as client:
            return [tuple(row) for row in client.execute_sql(sql) or []]

    return run
