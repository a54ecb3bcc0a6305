"""Fixtures for the analyst notebooks: demo data built once from the Stripe sandbox, and runners
that execute a notebook top to bottom in this process (``app.run()``) or as a headless script."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
import pytest

from invoice_source.models import run_models
from invoice_source.pipeline import SyncOptions, run_sync
from invoice_source.sandbox.server import SandboxServer
from invoice_source.sandbox.stripe import StripeApp

REPOSITORY_DIR = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPOSITORY_DIR / "notebooks"
NOTEBOOKS = ("invoice_history", "receivables", "line_items", "reconciliation")
SEEDED_INVOICES = 400
ENV_PREFIXES = ("SOURCES__", "DESTINATION__", "INVOICE_SYNC__")

# the notebooks import their shared module from their own folder; so do these tests
if str(NOTEBOOKS_DIR) not in sys.path:
    sys.path.insert(0, str(NOTEBOOKS_DIR))

RunNotebook = Callable[..., tuple[Sequence[Any], Mapping[str, Any]]]


@dataclass(frozen=True)
class DriftedData:
    """A copy of the demo data where some Stripe invoices no longer add up."""

    path: Path
    invoices: dict[str, str]  # check_name -> the invoice that fails it


def load_stripe_sandbox(app: StripeApp, destination: Any, dataset: str, state_dir: Path) -> Any:
    """Serve ``app`` on loopback, load it twice with a day of changes in between (as
    ``invoice-sync demo`` does), build the models; returns the pipeline."""
    server = SandboxServer(app).start()
    try:
        with pytest.MonkeyPatch.context() as env:
            for key, value in app.env(server.url).items():
                env.setenv(key, value)
            env.setenv("SOURCES__STRIPE__REQUESTS_PER_SECOND", "0")
            options = SyncOptions(
                destination=destination,
                dataset=dataset,
                pipeline_name="notebooks_demo",
                pipelines_dir=str(state_dir),
            )
            run_sync(["stripe"], options)
            app.demo_changes()
            result = run_sync(["stripe"], options)
    finally:
        server.stop()
    assert app.unmatched == [], f"requests to routes Stripe does not have: {app.unmatched}"
    run_models(result.pipeline)
    return result.pipeline


@pytest.fixture(scope="session")
def demo_duckdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A DuckDB file with the Stripe sandbox loaded twice and the models built (built once)."""
    folder = tmp_path_factory.mktemp("notebook-demo")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DLT_DATA_DIR", str(folder / "dlt-home"))
        for key in list(os.environ):
            if key.startswith(ENV_PREFIXES):
                env.delenv(key)
        path = folder / "demo.duckdb"
        app = StripeApp(seed=7)
        app.seed_invoices(SEEDED_INVOICES)
        load_stripe_sandbox(app, str(path), "invoices", folder / "pipelines")
    yield path


@pytest.fixture(scope="session")
def drifted_duckdb(demo_duckdb: Path, tmp_path_factory: pytest.TempPathFactory) -> DriftedData:
    """The demo data with three paid Stripe invoices changed after loading, so that each fails
    one reconciliation check, and the models rebuilt."""
    folder = tmp_path_factory.mktemp("notebook-drift")
    path = folder / "drifted.duckdb"
    shutil.copyfile(demo_duckdb, path)
    pipeline = dlt.pipeline(
        pipeline_name="notebooks_drift",
        destination=dlt.destinations.duckdb(str(path)),
        dataset_name="invoices",
        pipelines_dir=str(folder / "pipelines"),
    )
    with pipeline.sql_client() as client:
        invoices = client.make_qualified_table_name("stripe_invoices")
        lines = client.make_qualified_table_name("stripe_invoice_line_items")
        paid = [
            row[0]
            for row in client.execute_sql(
                f"select id from {invoices} where status = 'paid' and not is_deleted"
                f" and id in (select invoice_id from {lines}) order by id limit 3"
            )
            or []
        ]
        subtotal_off, remaining_off, unpaid = paid
        client.execute_sql(
            f"update {invoices} set subtotal = subtotal + 100 where id = %s", subtotal_off
        )
        client.execute_sql(
            f"update {invoices} set amount_remaining = amount_remaining + 5 where id = %s",
            remaining_off,
        )
        client.execute_sql(
            f"update {invoices} set amount_paid = 0, amount_remaining = amount_due where id = %s",
            unpaid,
        )
    run_models(pipeline)
    return DriftedData(
        path,
        {
            "line_sum_vs_subtotal": subtotal_off,
            "total_formula": subtotal_off,
            "remaining_formula": remaining_off,
            "paid_without_payment": unpaid,
        },
    )


@pytest.fixture
def run_notebook(monkeypatch: pytest.MonkeyPatch) -> RunNotebook:
    """Run a notebook top to bottom in this process with command-line ``args``; returns marimo's
    ``(outputs, definitions)``. ``defs`` replaces the variables of whole cells."""

    def run(
        name: str, *args: str, defs: Mapping[str, Any] | None = None
    ) -> tuple[Sequence[Any], Mapping[str, Any]]:
        path = NOTEBOOKS_DIR / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"notebook_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setattr(sys, "argv", [str(path), *args])
        outputs, definitions = module.app.run(defs=dict(defs) if defs else None)
        return outputs, definitions

    return run


def run_script(
    *command: str, scratch: Path, env: Mapping[str, str] | None = None, cwd: Path = REPOSITORY_DIR
) -> subprocess.CompletedProcess:
    """Run a command (from the repository root unless told) as an analyst would; caches
    (``__pycache__``, marimo's ``__marimo__`` session snapshots) go under ``scratch``, not into
    the repository."""
    full_env = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIXES)}
    full_env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    full_env.update(env or {})
    return subprocess.run(
        list(command),
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def python() -> str:
    """The Python of the project's virtualenv (the one running the tests)."""
    return sys.executable


def command(name: str) -> str:
    """A console script of the virtualenv (``marimo``, ``invoice-sync``)."""
    return str(Path(sys.executable).with_name(name))


def query_duckdb(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` run straight on a DuckDB file (an independent check of the notebooks),
    with the session in UTC like the notebooks'."""
    import duckdb

    connection = duckdb.connect(str(path), read_only=True)
    try:
        connection.execute("SET TIME ZONE 'UTC'")
        return [tuple(row) for row in connection.execute(sql, list(params)).fetchall()]
    finally:
        connection.close()
