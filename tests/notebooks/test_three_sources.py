"""The notebooks on the whole demo: the three sandboxes loaded by ``invoice-sync demo``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.notebooks.conftest import NOTEBOOKS, RunNotebook, command, run_script

SOURCES = {"stripe", "prepbusiness", "alternative_payments"}


@pytest.fixture(scope="module")
def three_source_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``invoice-sync demo`` with a small Stripe sandbox, run in a scratch folder."""
    folder = tmp_path_factory.mktemp("three-sources")
    path = folder / "demo.duckdb"
    result = run_script(
        command("invoice-sync"),
        "demo",
        "--duckdb",
        str(path),
        "--stripe-invoices",
        "300",
        "--quiet",
        cwd=folder,
        scratch=folder,
        env={"DLT_DATA_DIR": str(folder / "dlt-home")},
    )
    assert result.returncode == 0, result.stderr
    return path


@pytest.mark.slow
def test_given_the_three_source_demo_when_every_notebook_runs_then_each_source_shows_up(
    three_source_demo: Path, run_notebook: RunNotebook, tmp_path: Path
) -> None:
    charts = tmp_path / "charts"
    results = {
        name: run_notebook(name, "--duckdb", str(three_source_demo), "--charts-dir", str(charts))[1]
        for name in NOTEBOOKS
    }

    assert {row["source"] for row in results["invoice_history"]["sources"]} == SOURCES
    assert {row["source"] for row in results["invoice_history"]["monthly"]} == SOURCES
    assert {row["source"] for row in results["receivables"]["open_invoices"]} >= {
        "stripe",
        "alternative_payments",
    }
    reports = results["reconciliation"]["report_results"]
    assert all(result.available for result in reports.values())
    assert results["reconciliation"]["check_counts"], "the demo plants mismatches"
    assert results["reconciliation"]["related_invoices"], "the drill-down finds the invoice"
    assert len(list(charts.glob("*.png"))) == 9
