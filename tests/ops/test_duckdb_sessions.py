"""The DuckDB destination opens its file once per load package, not once per job, and closes it
when the package is done or a job has failed for good."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pytest
from dlt.destinations.exceptions import DatabaseTerminalException, DatabaseTransientException
from dlt.destinations.impl.duckdb import duck
from dlt.pipeline.exceptions import PipelineStepFailed

from invoice_source.destinations import DuckDbMergeClient
from tests.ops.conftest import duckdb_pipeline


@dlt.resource(name="invoices", write_disposition="merge", primary_key="id")
def invoices(version: int) -> Iterator[pa.Table]:
    yield pa.table({"id": ["in_1", "in_2"], "version": [version, version]})


@dlt.resource(
    name="lines",
    write_disposition={"disposition": "merge", "strategy": "delete-insert"},
    primary_key=["invoice_id", "id"],
    merge_key="invoice_id",
)
def lines(version: int) -> Iterator[pa.Table]:
    yield pa.table({"invoice_id": ["in_1"] * 3, "id": ["il_1", "il_2", "il_3"], "v": [version] * 3})


def opens_by_another_connection(path: Path) -> bool:
    """Whether the file can be opened read-only here, which DuckDB refuses while this process
    holds it open read-write."""
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.ConnectionException:
        return False
    return True


def count_opens(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """A list that gets an entry each time DuckDB opens a database from now on."""
    opened: list[Any] = []
    connect = duckdb.connect

    def recording_connect(*args: Any, **kwargs: Any) -> Any:
        opened.append(args)
        return connect(*args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", recording_connect)
    return opened


def test_given_a_package_of_many_jobs_when_loaded_then_the_file_opens_once_for_them_and_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = duckdb_pipeline(tmp_path, "sessions")
    pipeline.run([invoices(1), lines(1)])  # the tables exist: the next load is merges
    pipeline.extract([invoices(2), lines(2)])
    pipeline.normalize()
    opened = count_opens(monkeypatch)

    info = pipeline.load()

    jobs = info.load_packages[0].jobs["completed_jobs"]
    assert len(jobs) == 4  # two copies into staging, two merges
    assert len(opened) <= 2  # the package's set-up, then one for all its jobs
    assert opens_by_another_connection(tmp_path / "sessions.duckdb")
    with pipeline.sql_client() as client:
        assert client.execute_sql("SELECT DISTINCT version FROM invoices") == [(2,)]
        assert client.execute_sql("SELECT count(*), min(v) FROM lines") == [(3, 2)]


@dlt.resource(name="wide_invoices", write_disposition="merge", primary_key="id")
def wide_invoices(count: int) -> Iterator[pa.Table]:
    yield pa.table(
        {
            "id": [f"in_{i}" for i in range(count)],
            "memo": [os.urandom(64).hex() for _ in range(count)],
        }
    )


def test_given_a_backfill_sized_package_when_loaded_then_each_job_opens_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an open file keeps what each job wrote in DuckDB's memory until it closes: 20k Stripe
    # invoices (18.5 MB of job files) ran out of memory under 96 MB through one open file
    pipeline = duckdb_pipeline(tmp_path, "sessions")
    pipeline.run([invoices(1), lines(1)])
    pipeline.extract([invoices(2), lines(2), wide_invoices(12_000)])  # ~1.6 MB of parquet
    pipeline.normalize()
    opened = count_opens(monkeypatch)

    pipeline.load()

    assert len(opened) >= 5  # the package's set-up, then one per job
    with pipeline.sql_client() as client:
        assert client.execute_sql("SELECT DISTINCT version FROM invoices") == [(2,)]
        assert client.execute_sql("SELECT count(*) FROM wide_invoices") == [(12_000,)]


@pytest.mark.parametrize(
    "job_error",
    [
        DatabaseTerminalException(OSError("No space left on device")),
        DatabaseTransientException(duckdb.OutOfMemoryException("Out of Memory Error")),
    ],
    ids=["failed_for_good", "retried_until_dlt_gave_up"],
)
def test_given_a_load_that_failed_when_its_error_is_handled_then_the_file_closes_and_loads_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, job_error: Exception
) -> None:
    pipeline = duckdb_pipeline(tmp_path, "sessions")
    pipeline.run([invoices(1), lines(1)])

    def fail(self: Any) -> None:
        raise job_error

    with monkeypatch.context() as patched:
        patched.setattr(duck.DuckDbCopyJob, "run", fail)
        patched.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")
        try:
            pipeline.run([invoices(2), lines(2)])
        except PipelineStepFailed:
            failed = True
    assert failed

    assert opens_by_another_connection(tmp_path / "sessions.duckdb")
    assert not pipeline.run().has_failed_jobs  # the package that failed, loaded now
    assert opens_by_another_connection(tmp_path / "sessions.duckdb")
    with pipeline.sql_client() as client:
        assert client.execute_sql("SELECT DISTINCT version FROM invoices") == [(2,)]


def wide_tables(version: int) -> list[Any]:
    """Eight merged tables of 40 text columns, two rows each: ~330 columns with their staging
    copies, the size of the four Stripe tables' ~290."""

    def table(number: int) -> Any:
        @dlt.resource(name=f"wide_{number}", write_disposition="merge", primary_key="id")
        def rows() -> Iterator[pa.Table]:
            columns = {f"field_{c}": [f"v{version}_{c}_{row}" for row in "ab"] for c in range(40)}
            yield pa.table({"id": ["a", "b"], **columns})

        return rows()

    return [table(number) for number in range(8)]


def test_given_tables_with_rows_when_a_small_package_appends_to_all_then_memory_is_freed_per_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Appending to a table with rows takes a 256 KiB block per column until a checkpoint: held
    # for the whole package, the four Stripe tables and their staging copies reached ~84 MB of
    # the 96 MB limit and the package's closing checkpoint failed with a FATAL error.
    pipeline = duckdb_pipeline(tmp_path, "appends")
    pipeline.run(wide_tables(1))
    held_at_close: list[int] = []
    compact = DuckDbMergeClient._empty_staging_and_compact

    def measured(client: DuckDbMergeClient, load_id: str) -> None:
        rows = client.sql_client.execute_sql(
            "SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'"
        )
        held_at_close.append(rows[0][0] if rows else 0)
        compact(client, load_id)

    monkeypatch.setattr(DuckDbMergeClient, "_empty_staging_and_compact", measured)

    with caplog.at_level("WARNING", logger="invoice_source.destinations"):
        pipeline.run(wide_tables(2))

    assert len(held_at_close) == 1
    assert held_at_close[0] < 16 * 2**20, "what the jobs appended was written out job by job"
    assert [r.getMessage() for r in caplog.records if r.name == "invoice_source.destinations"] == []
    with pipeline.sql_client() as client:
        for number in range(8):
            rows = client.execute_sql(f"SELECT field_39 FROM wide_{number} ORDER BY id")
            assert rows == [("v2_39_a",), ("v2_39_b",)]
