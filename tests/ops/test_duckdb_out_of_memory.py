"""DuckDB running out of memory in a load: the error names the setting to raise, nothing that
had loaded is lost, and the next run loads the package that failed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import dlt
import duckdb
import pytest

from invoice_source.diagnostics import DUCKDB_OUT_OF_MEMORY_HINT, describe_failure
from invoice_source.pipeline import DEFAULT_PIPELINE_NAME
from tests.ops.conftest import CliResult, GatedStripeApp


def landed_invoice_ids(duckdb_path: Path) -> set[str]:
    with duckdb.connect(str(duckdb_path), read_only=True) as db:
        return {row[0] for row in db.sql("SELECT id FROM invoices.stripe_invoices").fetchall()}


def pending_packages(state_dir: Path) -> list[str]:
    pipeline = dlt.attach(pipeline_name=DEFAULT_PIPELINE_NAME, pipelines_dir=str(state_dir))
    return list(pipeline.list_normalized_load_packages())


def test_given_a_duckdb_memory_limit_too_small_when_loaded_then_the_error_names_it_and_keeps_all(
    stripe_app: GatedStripeApp,
    cli: Callable[..., CliResult],
    state_dir: Path,
    duckdb_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = ("run", "stripe", "--destination", str(duckdb_path), "--pipelines-dir", str(state_dir))
    assert cli(*run).code == 0
    with monkeypatch.context() as tight:
        tight.setenv("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"memory_limit": "8MB"}')
        tight.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")  # give up at once, not after dlt's five
        failed = cli(*run)

    errors = [line for line in failed.err.splitlines() if line.startswith("invoice-sync: error:")]
    assert failed.code == 1
    assert len(errors) == 1, failed.err
    assert re.search(r"block of size .* MiB used\)|Out of Memory", errors[0]), "DuckDB's words"
    assert errors[0].endswith(DUCKDB_OUT_OF_MEMORY_HINT)
    assert (
        "memory_limit" in errors[0]
        and "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG" in errors[0]
    )
    assert landed_invoice_ids(duckdb_path) == set(stripe_app.invoice_ids()), "nothing was lost"
    assert pending_packages(state_dir), "the package that failed waits for the next run"

    rerun = cli(*run)

    assert rerun.code == 0, rerun.err
    assert pending_packages(state_dir) == []
    assert landed_invoice_ids(duckdb_path) == set(stripe_app.invoice_ids())


def test_given_a_commit_out_of_memory_when_described_then_the_setting_is_named() -> None:
    # DuckDB raises this form when the memory runs out while a transaction commits
    error = duckdb.TransactionException(
        "TransactionContext Error: Failed to commit: could not allocate block of size 256.0 KiB"
        " (7.4 MiB/7.6 MiB used)"
    )

    line = describe_failure(error)

    assert line.startswith("TransactionException: TransactionContext Error: Failed to commit")
    assert line.endswith(DUCKDB_OUT_OF_MEMORY_HINT)
    assert not describe_failure(duckdb.CatalogException("Table x does not exist")).endswith(
        DUCKDB_OUT_OF_MEMORY_HINT
    )
