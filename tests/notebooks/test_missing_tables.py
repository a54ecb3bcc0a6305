"""A dataset without the tables a notebook reads (nothing loaded yet, or a source that is not
used) gets a message naming the missing tables and how they are built, not a traceback."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.notebooks.conftest import NOTEBOOKS, RunNotebook

NEEDED = {
    "invoice_history": "invoice_history",
    "receivables": "invoice_history",
    "line_items": "stripe_line_items",
}


@pytest.fixture
def empty_dataset(tmp_path: Path) -> Path:
    """A DuckDB file with an empty ``invoices`` schema."""
    path = tmp_path / "empty.duckdb"
    connection = duckdb.connect(str(path))
    connection.execute("create schema invoices")
    connection.close()
    return path


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_given_nothing_loaded_when_a_notebook_runs_then_it_names_what_is_missing(
    notebook: str, empty_dataset: Path, run_notebook: RunNotebook
) -> None:
    outputs, defs = run_notebook(notebook, "--duckdb", str(empty_dataset))

    shown = " ".join(str(getattr(output, "text", output)) for output in outputs)
    assert "invoice-sync run all" in shown
    if notebook == "reconciliation":
        assert not any(result.available for result in defs["report_results"].values())
        assert "Report stripe is not built" in shown
    else:
        assert f"<code>{NEEDED[notebook]}</code>" in shown
        assert not set(defs) & {"monthly", "open_invoices", "products"}, "stopped, not run"
