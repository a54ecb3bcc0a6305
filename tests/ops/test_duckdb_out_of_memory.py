"""DuckDB running out of memory in a load: the error names the setting to raise, nothing that
had loaded is lost, and the next run loads the package that failed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from invoice_source.diagnostics import DUCKDB_OUT_OF_MEMORY_HINT
from tests.ops.conftest import CliResult, GatedStripeApp


def landed_invoice_ids(duckdb_path: Path) -> set[str]:
    with duckdb.connect(str(duckdb_path), read_only=True) as db:
        return {row[0] for row in db.sql("SELECT id FROM invoices.stripe_invoices").fetchall()}


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
        tight.setenv("DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"memory_limit": "1MB"}')
        failed = cli(*run)

    errors = [line for line in failed.err.splitlines() if line.startswith("invoice-sync: error:")]
    assert failed.code == 1
    assert len(errors) == 1, failed.err
    assert "Out of Memory" in errors[0], "DuckDB's own words are kept"
    assert errors[0].endswith(DUCKDB_OUT_OF_MEMORY_HINT)
    assert (
        "memory_limit" in errors[0]
        and "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG" in errors[0]
    )
    assert landed_invoice_ids(duckdb_path) == set(stripe_app.invoice_ids()), "nothing was lost"

    rerun = cli(*run)

    assert rerun.code == 0, rerun.err
    assert landed_invoice_ids(duckdb_path) == set(stripe_app.invoice_ids())
