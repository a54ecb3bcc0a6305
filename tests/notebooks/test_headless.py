"""Every notebook runs headless top to bottom, as a script and through ``marimo export``, and
writes its charts; a missing DuckDB file stops it with a message saying what to do."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.notebooks.conftest import (
    NOTEBOOKS,
    NOTEBOOKS_DIR,
    DriftedData,
    RunNotebook,
    command,
    python,
    run_script,
)

CHARTS = {
    "invoice_history": ["invoices_per_month", "revenue_per_month"],
    "receivables": ["aging", "top_overdue_customers"],
    "line_items": [
        "revenue_by_product",
        "prorations_per_month",
        "discounts_per_month",
        "tax_per_month",
    ],
    "reconciliation": ["checks"],
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_every_notebook_has_its_expected_charts() -> None:
    assert set(CHARTS) == set(NOTEBOOKS)
    assert {path.stem for path in NOTEBOOKS_DIR.glob("*.py")} >= set(NOTEBOOKS)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_given_demo_data_when_a_notebook_runs_as_a_script_then_it_writes_every_chart(
    notebook: str, drifted_duckdb: DriftedData, tmp_path: Path
) -> None:
    charts = tmp_path / "charts"

    result = run_script(
        python(),
        f"notebooks/{notebook}.py",
        "--duckdb",
        str(drifted_duckdb.path),
        "--charts-dir",
        str(charts),
        scratch=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in charts.iterdir()) == sorted(
        f"{notebook}-{chart}.{suffix}"
        for chart in CHARTS[notebook]
        for suffix in ("png", "vl.json")
    )
    for chart in CHARTS[notebook]:
        width, height = png_size(charts / f"{notebook}-{chart}.png")
        assert width >= 600 and height >= 200, (chart, width, height)
        spec = json.loads((charts / f"{notebook}-{chart}.vl.json").read_text())
        layers = spec.get("layer", [spec])
        values = spec.get("data", {}).get("values") or layers[0].get("data", {}).get("values")
        assert values, f"{chart} has no data"


def test_given_settings_in_env_vars_when_a_notebook_runs_then_it_reads_and_writes_there(
    demo_duckdb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_notebook: RunNotebook
) -> None:
    charts = tmp_path / "from-env"
    monkeypatch.setenv("INVOICE_SYNC__DUCKDB", str(demo_duckdb))
    monkeypatch.setenv("INVOICE_SYNC__CHARTS_DIR", str(charts))

    _, defs = run_notebook("receivables")

    assert defs["settings"].duckdb_path == demo_duckdb.resolve()
    assert png_size(charts / "receivables-aging.png")[0] >= 600


def test_given_only_stripe_loaded_when_exported_to_html_then_missing_reports_are_explained(
    demo_duckdb: Path, tmp_path: Path
) -> None:
    page = tmp_path / "reconciliation.html"

    result = run_script(
        command("marimo"),
        "export",
        "html",
        "notebooks/reconciliation.py",
        "-o",
        str(page),
        "--",
        "--duckdb",
        str(demo_duckdb),
        scratch=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    html = page.read_text()
    assert "Report prepbusiness-stripe is not built" in html
    assert "nothing to reconcile" in html


def test_given_no_duckdb_file_when_a_notebook_runs_then_it_fails_saying_how_to_get_one(
    tmp_path: Path,
) -> None:
    result = run_script(
        python(),
        "notebooks/invoice_history.py",
        "--duckdb",
        str(tmp_path / "none.duckdb"),
        scratch=tmp_path,
    )

    assert result.returncode != 0
    assert "no DuckDB file at" in result.stderr
    assert "make demo" in result.stderr


def test_every_notebook_is_a_valid_marimo_file(tmp_path: Path) -> None:
    result = run_script(
        command("marimo"),
        "check",
        "--strict",
        *(f"notebooks/{name}.py" for name in NOTEBOOKS),
        scratch=tmp_path,
    )

    assert result.returncode == 0, result.stdout + result.stderr
