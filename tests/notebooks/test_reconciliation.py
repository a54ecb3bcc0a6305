"""Reconciliation: the reports of the models with a drill-down into each mismatch; reports whose
sources are not loaded are said to be missing, not a crash."""

from __future__ import annotations

from pathlib import Path

from invoice_source.money import to_major
from tests.notebooks.conftest import DriftedData, RunNotebook


def test_given_invoices_that_do_not_add_up_when_reconciled_then_each_check_lists_its_invoice(
    run_notebook: RunNotebook, drifted_duckdb: DriftedData
) -> None:
    _, defs = run_notebook("reconciliation", "--duckdb", str(drifted_duckdb.path))

    listed = {(row["check_name"], row["invoices"]) for row in defs["check_counts"]}
    assert listed == {(check, 1) for check in drifted_duckdb.invoices}
    stripe = defs["report_results"]["stripe"]
    checks = stripe.columns.index("check_name"), stripe.columns.index("invoice_id")
    assert {(row[checks[0]], row[checks[1]]) for row in stripe.rows} == set(
        drifted_duckdb.invoices.items()
    )
    meanings = {row["check_name"]: row["meaning"] for row in defs["check_counts"]}
    assert meanings["paid_without_payment"] == "status paid but nothing paid on a non-zero total"
    chart = defs["checks_chart"].to_dict()
    assert {value["check_name"] for value in chart["data"]["values"]} == set(
        drifted_duckdb.invoices
    )


def test_given_a_subtotal_that_differs_from_its_lines_when_drilled_into_then_the_lines_explain_it(
    run_notebook: RunNotebook, drifted_duckdb: DriftedData
) -> None:
    _, defs = run_notebook("reconciliation", "--duckdb", str(drifted_duckdb.path))

    # the first report with rows, its first check and first invoice are picked to start with
    assert defs["check_picker"].value == "line_sum_vs_subtotal"
    invoice_id = drifted_duckdb.invoices["line_sum_vs_subtotal"]
    mismatch = defs["mismatch"]
    assert mismatch["invoice_id"] == invoice_id
    assert mismatch["difference"] == -100  # the subtotal says one unit (100 minor) more
    assert [row["source"] for row in defs["related_invoices"]] == ["stripe"]
    lines = defs["invoice_lines"][invoice_id]
    assert lines
    assert sum(line["amount_major"] for line in lines) == mismatch["actual_amount_major"]
    assert mismatch["expected_amount_major"] - mismatch["actual_amount_major"] == to_major(
        100, mismatch["currency"]
    )


def test_given_only_stripe_loaded_when_reconciled_then_the_other_reports_are_not_built(
    run_notebook: RunNotebook, drifted_duckdb: DriftedData
) -> None:
    outputs, defs = run_notebook("reconciliation", "--duckdb", str(drifted_duckdb.path))

    results = defs["report_results"]
    assert results["stripe"].available
    assert not results["prepbusiness-stripe"].available
    assert not results["alternative-payments"].available
    shown = " ".join(str(getattr(output, "text", output)) for output in outputs)
    assert "Report prepbusiness-stripe is not built" in shown


def test_given_invoices_that_add_up_when_reconciled_then_nothing_is_left_to_reconcile(
    run_notebook: RunNotebook, demo_duckdb: Path
) -> None:
    outputs, defs = run_notebook("reconciliation", "--duckdb", str(demo_duckdb))

    assert defs["report_results"]["stripe"].available
    assert defs["report_results"]["stripe"].rows == []
    assert "checks_chart" not in defs
    shown = " ".join(str(getattr(output, "text", output)) for output in outputs)
    assert "nothing to reconcile" in shown
