"""The notebooks on a warehouse: the same invoices loaded into DuckDB and PostgreSQL give the same
numbers, the warehouse read through dlt's SQL client with credentials from dlt config."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dlt
import pytest

from invoice_source.models import run_models
from invoice_source.pipeline import SyncOptions, run_sync
from invoice_source.sandbox.server import SandboxServer
from invoice_source.sandbox.stripe import StripeApp
from tests.conftest import POSTGRES_URL, isolate_environment, require_postgres
from tests.notebooks.conftest import RunNotebook

# per notebook, the results compared between the two engines
COMPARED = {
    "invoice_history": ("monthly", "sources", "customer_invoices"),
    "receivables": ("open_invoices", "receivables_by_currency", "aging"),
    "line_items": ("products", "line_kinds", "discount_summary", "tax_summary", "top_prices"),
}


@pytest.fixture(scope="module")
def loaded_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """One Stripe sandbox loaded into a DuckDB file and into a throwaway PostgreSQL schema."""
    require_postgres()
    folder = tmp_path_factory.mktemp("notebooks-warehouse")
    app = StripeApp(seed=21)
    app.seed_invoices(120)
    duckdb_path = folder / "same.duckdb"
    schema = f"test_notebooks_{uuid.uuid4().hex[:8]}"
    postgres = dlt.destinations.postgres(POSTGRES_URL)
    server = SandboxServer(app).start()
    with pytest.MonkeyPatch.context() as env:
        # module-scoped: the autouse isolation has not run yet, so isolate here
        home = folder / "dlt-home"
        home.mkdir()
        isolate_environment(env, home)
        try:
            for key, value in app.env(server.url).items():
                env.setenv(key, value)
            env.setenv("SOURCES__STRIPE__REQUESTS_PER_SECOND", "0")
            for name, destination, dataset in (
                ("duckdb", str(duckdb_path), "invoices"),
                ("postgres", postgres, schema),
            ):
                options = SyncOptions(
                    destination=destination,
                    dataset=dataset,
                    pipeline_name=f"notebooks_{name}",
                    pipelines_dir=str(folder / "pipelines"),
                )
                run_models(run_sync(["stripe"], options).pipeline)
        finally:
            server.stop()
    assert app.unmatched == []
    yield duckdb_path, schema
    pipeline = dlt.pipeline(
        pipeline_name="notebooks_cleanup",
        destination=postgres,
        dataset_name=schema,
        pipelines_dir=str(folder / "pipelines"),
    )
    with pipeline.sql_client() as client:
        if client.has_dataset():
            client.drop_dataset()


@pytest.fixture
def same_invoices_in_duckdb_and_postgres(
    loaded_once: tuple[Path, str], postgres_available: None, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str]:
    """The loaded DuckDB file and PostgreSQL schema, with the PostgreSQL credentials in dlt's
    config (``DESTINATION__POSTGRES__CREDENTIALS``) as an analyst would set them."""
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
    return loaded_once


def comparable(rows: Sequence[Mapping[str, Any]]) -> list[tuple[tuple[str, str], ...]]:
    """Rows in a fixed order, values as text (1.50 and 1.500000 are the same amount)."""

    def text(value: Any) -> str:
        return format(value.normalize(), "f") if hasattr(value, "normalize") else str(value)

    return sorted(tuple(sorted((key, text(value)) for key, value in row.items())) for row in rows)


@pytest.mark.postgres
@pytest.mark.parametrize("notebook", sorted(COMPARED))
def test_given_the_same_invoices_in_postgres_when_a_notebook_runs_then_it_matches_duckdb(
    notebook: str,
    same_invoices_in_duckdb_and_postgres: tuple[Path, str],
    run_notebook: RunNotebook,
) -> None:
    duckdb_path, schema = same_invoices_in_duckdb_and_postgres

    _, on_duckdb = run_notebook(notebook, "--duckdb", str(duckdb_path))
    _, on_postgres = run_notebook(notebook, "--destination", "postgres", "--dataset", schema)

    assert on_postgres["settings"].location == f"destination `postgres`, dataset `{schema}`"
    for name in COMPARED[notebook]:
        assert on_duckdb[name], f"{notebook}: {name} is empty"
        assert comparable(on_postgres[name]) == comparable(on_duckdb[name]), name


@pytest.mark.postgres
def test_given_a_postgres_dataset_when_reconciled_then_the_stripe_report_is_read_there(
    same_invoices_in_duckdb_and_postgres: tuple[Path, str], run_notebook: RunNotebook
) -> None:
    _, schema = same_invoices_in_duckdb_and_postgres

    _, defs = run_notebook("reconciliation", "--destination", "postgres", "--dataset", schema)

    assert defs["report_results"]["stripe"].available
    assert not defs["report_results"]["prepbusiness-stripe"].available
