"""The DuckDB destination loads with DuckDB's vacuum off, then empties the staging tables and
compacts once the package is recorded (a vacuum per job rewrote each table's partly filled last
row group, ~1.2 s per Stripe line-item file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest
from dlt.destinations.impl.duckdb import duck

from invoice_source.destinations import VACUUM_SETTING
from tests.ops.conftest import duckdb_pipeline, pipeline_rows

ROWS_PER_FILE = 20_000  # a DuckDB row group holds 122,880


def lines(first: int, files: int) -> Any:
    """Line rows from ``first`` on, one load file (and one copy job) per ``ROWS_PER_FILE``."""

    @dlt.resource(name="lines", write_disposition="merge", primary_key="id")
    def rows() -> Iterator[pa.Table]:
        for part in range(files):
            start = first + part * ROWS_PER_FILE
            ids = range(start, start + ROWS_PER_FILE)
            yield pa.table({"id": [f"il_{n}" for n in ids], "amount": list(ids)})

    return rows()


def row_groups(pipeline: dlt.Pipeline, table: str) -> int:
    return int(
        pipeline_rows(
            pipeline,
            f"SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('invoices.{table}')",
        )[0][0]
    )


def vacuum_setting_in_copy_jobs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that gets DuckDB's vacuum setting as each copy job from now on runs."""
    seen: list[str] = []
    run = duck.DuckDbCopyJob.run

    def recording(job: Any) -> None:
        rows = job._job_client.sql_client.execute_sql(f"SELECT current_setting('{VACUUM_SETTING}')")
        seen.append(str(rows[0][0]))
        run(job)

    monkeypatch.setattr(duck.DuckDbCopyJob, "run", recording)
    return seen


def test_given_several_files_of_a_table_when_loaded_then_no_job_vacuums_and_the_table_is_compacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_WRITER__FILE_MAX_ITEMS", str(ROWS_PER_FILE))
    seen = vacuum_setting_in_copy_jobs(monkeypatch)
    pipeline = duckdb_pipeline(tmp_path, "compaction")

    pipeline.run(lines(0, files=3))
    for run in range(3):  # scheduled runs: each appends a small file and rewrites a few rows
        pipeline.run(lines(ROWS_PER_FILE * (3 + run) - 10, files=1))

    assert len(seen) == 6 and set(seen) == {"0"}
    assert pipeline_rows(pipeline, "SELECT count(*), count(DISTINCT id) FROM lines") == [
        (119_990,) * 2
    ]
    assert row_groups(pipeline, "lines") == 1  # 119,990 rows fit one row group, once vacuumed
    # the merges have read the staged rows: the table stays, emptied
    assert pipeline_rows(pipeline, "SELECT count(*) FROM invoices_staging.lines") == [(0,)]


def test_given_max_vacuum_tasks_in_config_when_loaded_then_the_jobs_keep_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", f'{{"{VACUUM_SETTING}": 7}}'
    )
    seen = vacuum_setting_in_copy_jobs(monkeypatch)
    pipeline = duckdb_pipeline(tmp_path, "compaction")

    pipeline.run(lines(0, files=1))

    assert seen == ["7"]
    assert pipeline_rows(pipeline, "SELECT count(*) FROM lines") == [(ROWS_PER_FILE,)]


def test_given_a_load_when_it_starts_then_the_memory_the_extract_freed_is_given_back_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from invoice_source import destinations

    steps: list[str] = []
    monkeypatch.setattr(destinations, "release_free_memory", lambda: steps.append("released"))
    run = duck.DuckDbCopyJob.run

    def copying(job: Any) -> None:
        steps.append("copied")
        run(job)

    monkeypatch.setattr(duck.DuckDbCopyJob, "run", copying)
    pipeline = duckdb_pipeline(tmp_path, "compaction")

    pipeline.run(lines(0, files=1))

    assert steps[0] == "released" and "copied" in steps
    assert pipeline_rows(pipeline, "SELECT count(*) FROM lines") == [(ROWS_PER_FILE,)]
