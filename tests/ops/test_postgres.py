"""PostgreSQL for real: all three sources land and are queried, the models and reports give what
they give on DuckDB, and a run killed with SIGKILL while loading is resumed without loss or
duplicates."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
import psycopg2
import pytest

from invoice_source.models import run_models
from invoice_source.models.reports import REPORTS, read_report
from invoice_source.pipeline import SyncOptions, SyncResult, run_sync
from invoice_source.sandbox import SandboxSet
from tests.ops.conftest import POSTGRES_URL, CliProcess, CliResult, pg_query

pytestmark = pytest.mark.postgres

HISTORY_BY_SOURCE = (
    "select source, currency, status, count(*), sum(total), sum(amount_due)"
    " from {table} group by 1, 2, 3 order by 1, 2, 3"
)


def landed_ids(dataset: str, table: str, where: str = "true") -> list[Any]:
    return [row[0] for row in pg_query(f'select id from "{dataset}".{table} where {where}')]


def assert_sandboxes_landed_exactly(sandboxes: SandboxSet, dataset: str) -> None:
    """Every invoice of every sandbox landed once, with the status it has now."""
    stripe_ids = landed_ids(dataset, "stripe_invoices", "not is_deleted")
    assert sorted(stripe_ids) == sorted(sandboxes.stripe.invoice_ids())
    assert len(landed_ids(dataset, "stripe_invoices")) == len(
        set(landed_ids(dataset, "stripe_invoices"))
    )
    statuses = dict(pg_query(f'select id, status from "{dataset}".stripe_invoices'))
    assert all(statuses[i] == sandboxes.stripe.invoice_status(i) for i in stripe_ids)
    lines = pg_query(
        "select count(*), count(distinct (invoice_id, id))"
        f' from "{dataset}".stripe_invoice_line_items where invoice_id in'
        f' (select id from "{dataset}".stripe_invoices where not is_deleted)'
    )
    expected_lines = sum(sandboxes.stripe.line_count(i) for i in stripe_ids)
    assert lines == [(expected_lines, expected_lines)]
    prep_ids = landed_ids(dataset, "prepbusiness_invoices")
    assert sorted(prep_ids) == sorted(sandboxes.prepbusiness.invoice_ids())
    ap_ids = landed_ids(dataset, "alternative_payments_invoices")
    assert sorted(ap_ids) == sorted(sandboxes.alternative_payments.invoices)


def data_file_formats(result: SyncResult) -> set[str]:
    """File formats of the jobs that loaded source tables (dlt's own tables left out)."""
    formats: set[str] = set()
    for source in result.sources:
        assert source.load_info is not None
        for package in source.load_info.load_packages:
            for job in package.jobs["completed_jobs"]:
                info = job.job_file_info
                if not info.table_name.startswith("_dlt") and info.file_format != "sql":
                    formats.add(info.file_format)
    return formats


def test_given_all_three_sources_when_loaded_into_postgres_and_duckdb_then_models_agree(
    sandboxes: SandboxSet, pg_dataset: str, duckdb_path: Path, state_dir: Path
) -> None:
    on_postgres = run_sync(
        ["all"],
        SyncOptions(destination="postgres", dataset=pg_dataset, pipelines_dir=str(state_dir)),
    )
    on_duckdb = run_sync(
        ["all"], SyncOptions(destination=str(duckdb_path), pipelines_dir=str(state_dir / "duck"))
    )
    built_postgres = run_models(on_postgres.pipeline)
    built_duckdb = run_models(on_duckdb.pipeline)

    assert_sandboxes_landed_exactly(sandboxes, pg_dataset)
    assert data_file_formats(on_postgres) == {"csv"}, "arrow tables reach PostgreSQL as csv"
    assert data_file_formats(on_duckdb) == {"parquet"}
    assert built_postgres.built == built_duckdb.built and not built_postgres.skipped
    for model in built_postgres.built:
        assert count(on_postgres.pipeline, model) == count(on_duckdb.pipeline, model), model
    history_pg = rows(on_postgres.pipeline, HISTORY_BY_SOURCE, "invoice_history")
    assert history_pg == rows(on_duckdb.pipeline, HISTORY_BY_SOURCE, "invoice_history")
    assert {row[0] for row in history_pg} == {"stripe", "prepbusiness", "alternative_payments"}
    for report in REPORTS:
        assert read_report(on_postgres.pipeline, report).counts() == (
            read_report(on_duckdb.pipeline, report).counts()
        ), report.name


def count(pipeline: dlt.Pipeline, table: str) -> int:
    return int(rows(pipeline, "select count(*) from {table}", table)[0][0])


def rows(pipeline: dlt.Pipeline, sql: str, table: str) -> list[tuple[Any, ...]]:
    with pipeline.sql_client() as client:
        query = sql.format(table=client.make_qualified_table_name(table))
        return [tuple(row) for row in client.execute_sql(query) or []]


def waiting_on_lock(dataset: str) -> bool:
    """Whether a backend is blocked on a lock while working on ``dataset``."""
    found = pg_query(
        "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
        f" and query like '%{dataset}%'"
    )
    return bool(found[0][0])


def test_given_a_run_killed_while_loading_into_postgres_when_run_again_then_nothing_lost_or_doubled(
    sandboxes: SandboxSet,
    pg_dataset: str,
    state_dir: Path,
    spawn: Callable[..., CliProcess],
    cli: Callable[..., CliResult],
) -> None:
    args = [
        "run", "all", "--destination", "postgres", "--dataset", pg_dataset,
        "--pipelines-dir", str(state_dir), "--no-models",
    ]  # fmt: skip
    assert cli(*args).code == 0
    sandboxes.apply_demo_changes()
    blocker = psycopg2.connect(POSTGRES_URL)
    try:
        with blocker.cursor() as cursor:
            cursor.execute(f'lock table "{pg_dataset}".stripe_invoices in access exclusive mode')
        killed = spawn(*args)
        killed.wait_until(lambda: waiting_on_lock(pg_dataset), "the merge into stripe_invoices")
        pending = dlt.attach("invoice_sync", pipelines_dir=str(state_dir))
        assert pending.list_normalized_load_packages(), "the package is half loaded"
        killed.kill()
    finally:
        blocker.rollback()
        blocker.close()
    _wait_for_orphans(pg_dataset)

    resumed = cli(*args)

    assert resumed.code == 0, resumed.err
    assert "resumed 1 interrupted load package(s)" in resumed.out.strip().splitlines()[-1]
    assert_sandboxes_landed_exactly(sandboxes, pg_dataset)
    again = cli(*args)
    assert again.code == 0 and "resumed" not in again.out
    assert_sandboxes_landed_exactly(sandboxes, pg_dataset)


def _wait_for_orphans(dataset: str) -> None:
    """Let the killed client's server backend notice it is gone and roll back."""
    deadline = time.monotonic() + 10
    while waiting_on_lock(dataset) and time.monotonic() < deadline:
        time.sleep(0.05)
