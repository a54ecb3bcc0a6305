"""The DuckDB destination's merge: one row per key, and a deduplication that spills to disk
under DuckDB's ``memory_limit`` instead of holding every staged row (dlt's ``ROW_NUMBER()``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest

from tests.ops.conftest import duckdb_pipeline, duckdb_setting_as_shown, pipeline_rows

PADDING = "x" * 400


def test_given_an_invoice_and_a_line_staged_twice_when_merged_then_one_row_per_key_lands(
    tmp_path: Path,
) -> None:
    @dlt.resource(name="invoices", write_disposition="merge", primary_key="id")
    def invoices() -> Iterator[Any]:
        yield [{"id": "in_1", "status": "open"}, {"id": "in_2", "status": "paid"}]
        yield {"id": "in_1", "status": "open"}  # an exact copy, as a re-run copy job stages it

    @dlt.resource(
        name="lines",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key=["invoice_id", "id"],
        merge_key="invoice_id",
    )
    def lines() -> Iterator[Any]:
        yield [{"invoice_id": "in_1", "id": "il_1", "amount": 5}] * 2
        yield {"invoice_id": "in_1", "id": "il_2", "amount": 7}

    pipeline = duckdb_pipeline(tmp_path, "twice")
    pipeline.run([invoices(), lines()])
    pipeline.run([invoices(), lines()])

    assert pipeline_rows(pipeline, "SELECT id, status FROM invoices ORDER BY id") == [
        ("in_1", "open"),
        ("in_2", "paid"),
    ]
    assert pipeline_rows(pipeline, "SELECT invoice_id, id, amount FROM lines ORDER BY id") == [
        ("in_1", "il_1", 5),
        ("in_1", "il_2", 7),
    ]


def test_given_staged_rows_and_copies_beyond_the_memory_limit_when_merged_then_each_lands_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"memory_limit": "24MB"}'
    )
    rows_per_table, tables = 10_000, 12  # ~50 MB of text staged, twice the limit

    @dlt.resource(name="lines", write_disposition="merge", primary_key=["invoice_id", "id"])
    def lines() -> Iterator[pa.Table]:
        for part in [*range(tables), 0]:  # part 0 staged twice: its copies must not land
            ids = [f"il_{part}_{n}" for n in range(rows_per_table)]
            yield pa.table(
                {
                    "invoice_id": [f"in_{part}"] * rows_per_table,
                    "id": ids,
                    "description": [PADDING + line_id for line_id in ids],
                }
            )

    pipeline = duckdb_pipeline(tmp_path, "spill")
    pipeline.run(lines())

    assert pipeline_rows(pipeline, "SELECT current_setting('memory_limit')") == [
        (duckdb_setting_as_shown("memory_limit", "24MB"),)
    ]
    assert pipeline_rows(pipeline, "SELECT count(*), count(DISTINCT id) FROM lines") == [
        (rows_per_table * tables, rows_per_table * tables)
    ]


def test_given_lines_keyed_by_invoice_and_id_when_an_invoice_is_reread_then_its_lines_are_replaced(
    tmp_path: Path,
) -> None:
    def lines_resource(rows: list[dict[str, Any]]) -> Any:
        return dlt.resource(
            rows,
            name="lines",
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            primary_key=["invoice_id", "id"],
            merge_key="invoice_id",
        )

    pipeline = duckdb_pipeline(tmp_path, "replace")
    pipeline.run(
        lines_resource(
            [
                {"invoice_id": "in_1", "id": "il_1", "amount": 5},
                {"invoice_id": "in_1", "id": "il_2", "amount": 7},
                {"invoice_id": "in_2", "id": "il_3", "amount": 9},
            ]
        )
    )
    pipeline.run(lines_resource([{"invoice_id": "in_1", "id": "il_2", "amount": 8}]))

    assert pipeline_rows(pipeline, "SELECT invoice_id, id, amount FROM lines ORDER BY id") == [
        ("in_1", "il_2", 8),
        ("in_2", "il_3", 9),
    ]
    package = pipeline.list_completed_load_packages()[-1]
    merge_sql = "".join(
        path.read_text()
        for path in Path(pipeline.get_load_package_info(package).package_path).rglob("lines.*.sql")
    )
    delete = next(line for line in merge_sql.splitlines() if line.startswith("DELETE"))
    assert " OR " not in delete, "the delete is a hash join on the merge key, not an OR per line"


def test_given_a_column_named_rowid_when_merged_then_one_row_per_key_still_lands(
    tmp_path: Path,
) -> None:
    rows = [
        {"id": 1, "rowid": None, "note": "a"},
        {"id": 2, "rowid": 7, "note": "b"},
        {"id": 3, "rowid": 7, "note": "c"},
        {"id": 4, "rowid": 0, "note": "d"},
        {"id": 4, "rowid": 0, "note": "d"},
    ]
    pipeline = duckdb_pipeline(tmp_path, "rowid")
    pipeline.run(dlt.resource(rows, name="notes", write_disposition="merge", primary_key="id"))

    assert pipeline_rows(pipeline, "SELECT id, rowid, note FROM notes ORDER BY id") == [
        (1, None, "a"),
        (2, 7, "b"),
        (3, 7, "c"),
        (4, 0, "d"),
    ]
