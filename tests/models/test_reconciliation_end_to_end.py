"""Three sandboxes loaded, changed, loaded again: the reports find exactly the planted faults."""

from __future__ import annotations

from collections.abc import Iterator

import dlt
import pytest

from invoice_source.models import run_models
from invoice_source.models.reports import REPORTS, read_report
from invoice_source.models.testing import check_models
from invoice_source.pipeline import SOURCES, build_source
from invoice_source.sandbox import SandboxSet, SeedSizes
from tests.conftest import isolate_environment, require_postgres
from tests.models.conftest import drop_postgres_dataset, models_pipeline

SIZES = SeedSizes(stripe_invoices=150, prepbusiness_invoices=40, alternative_payments_invoices=60)
NO_CLIENT_RATE_LIMITS = {
    "SOURCES__STRIPE__REQUESTS_PER_SECOND": "0",
    "SOURCES__ALTERNATIVE_PAYMENTS__REQUESTS_PER_SECOND": "0",
}


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def reconciled_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dlt.Pipeline, SandboxSet]]:
    """The three sandboxes loaded, changed, loaded again and modelled, once per destination:
    the tests only read the reports."""
    if request.param == "postgres":
        require_postgres()
    folder = tmp_path_factory.mktemp(f"reconciled_{request.param}")
    with pytest.MonkeyPatch.context() as env, SandboxSet(seed=5, sizes=SIZES) as sandboxes:
        isolate_environment(env, folder)
        sandboxes.seed_data()
        for key, value in {**sandboxes.env(), **NO_CLIENT_RATE_LIMITS}.items():
            env.setenv(key, value)
        pipeline = models_pipeline(request.param, folder)
        for name in SOURCES:
            pipeline.run(build_source(name))
        sandboxes.apply_demo_changes()
        for name in SOURCES:
            pipeline.run(build_source(name))
        run_models(pipeline)
        yield pipeline, sandboxes
        drop_postgres_dataset(pipeline, request.param)


@pytest.fixture
def reconciled(reconciled_run: tuple[dlt.Pipeline, SandboxSet]) -> dlt.Pipeline:
    return reconciled_run[0]


@pytest.fixture
def sandboxes(reconciled_run: tuple[dlt.Pipeline, SandboxSet]) -> SandboxSet:
    return reconciled_run[1]


def findings(pipeline: dlt.Pipeline, report_name: str) -> set[tuple[str, str]]:
    report = next(r for r in REPORTS if r.name == report_name)
    result = read_report(pipeline, report)
    assert result.available, f"{report.table} was not built"
    check = result.columns.index("check_name")
    key = "prepbusiness_invoice_id" if report_name == "prepbusiness-stripe" else "invoice_id"
    invoice = result.columns.index(key)
    return {(row[check], str(row[invoice])) for row in result.rows}


def test_given_consistent_stripe_data_when_reconciled_then_the_stripe_report_is_empty(
    reconciled: dlt.Pipeline,
) -> None:
    assert findings(reconciled, "stripe") == set()


def test_given_the_planted_prepbusiness_mismatches_when_reconciled_then_exactly_those_are_found(
    reconciled: dlt.Pipeline, sandboxes: SandboxSet
) -> None:
    planted = sandboxes.prepbusiness.deliberate_mismatches

    assert findings(reconciled, "prepbusiness-stripe") == {
        ("never_created_on_stripe", str(planted["finalized_never_pushed"])),
        ("total_differs", str(planted["stripe_total_differs"])),
        ("paid_on_one_side_only", str(planted["paid_here_open_on_stripe"])),
    }


def test_given_overdue_and_mismatched_ap_invoices_when_reconciled_then_exactly_those_are_found(
    reconciled: dlt.Pipeline, sandboxes: SandboxSet
) -> None:
    app = sandboxes.alternative_payments
    expected = {("overdue", invoice_id) for invoice_id in app.overdue_invoice_ids()}
    expected.add(("total_vs_sub_total", app.deliberate_mismatches["total_mismatch"]))

    assert app.deliberate_mismatches["overdue_still_open"] in app.overdue_invoice_ids()
    assert findings(reconciled, "alternative-payments") == expected


def test_given_all_three_sources_when_modelled_then_invoice_history_has_every_invoice_once(
    reconciled: dlt.Pipeline, sandboxes: SandboxSet
) -> None:
    with reconciled.sql_client() as client:
        table = client.make_qualified_table_name("invoice_history")
        sql = f"select source, count(*) from {table} group by source"
        counts = {source: count for source, count in client.execute_sql(sql) or []}

    assert counts == {
        "stripe": sandboxes.stripe.count() + len(sandboxes.stripe._deleted),
        "prepbusiness": len(sandboxes.prepbusiness.invoices),
        "alternative_payments": len(sandboxes.alternative_payments.invoices),
    }
    with reconciled.sql_client() as client:
        rows = client.execute_sql(f"select source, source_invoice_id from {table}") or []
    # counts alone would let a duplicated invoice hide a missing one
    assert len(rows) == len({(source, invoice_id) for source, invoice_id in rows})
    assert {invoice_id for source, invoice_id in rows if source == "stripe"} == {
        *sandboxes.stripe.invoice_ids(),
        *sandboxes.stripe._deleted,
    }
    assert check_models(reconciled) == []
