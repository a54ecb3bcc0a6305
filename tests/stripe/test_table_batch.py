"""TableBatch turns rows into Arrow every ROWS_INVOICES invoices (Python rows pin memory) and
hands dlt one table per name per batch; RowBatch's columns (what worker processes send) keep
every value, odd types included."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa

from invoice_source.destinations import duckdb_destination
from invoice_source.stripe import settings
from invoice_source.stripe.batch import ROWS_INVOICES, RowBatch
from invoice_source.stripe.shapes import MARKER_COLUMN
from invoice_source.stripe.source import tagged_tables, with_table_hints
from invoice_source.stripe.tables import ArrowPieces, TableBatch


def invoice(number: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"in_{number:05d}", "created": 1_767_225_600 + number, "currency": "eur", **extra}


def line(number: int) -> dict[str, Any]:
    return {"id": f"il_{number:05d}", "amount": number, "currency": "eur"}


def test_given_more_invoices_than_kept_as_rows_when_taken_then_one_table_per_name_has_all() -> None:
    batch = TableBatch(synced_at=1_767_225_600)
    count = ROWS_INVOICES * 2 + 7
    for number in range(count):
        batch.add_invoice(invoice(number), [line(number)])

    assert batch.invoice_count == count
    tables = dict(batch.take_tables())

    assert sorted(tables) == sorted(
        [
            settings.TABLE_INVOICES,
            settings.TABLE_LINE_ITEMS,
            settings.TABLE_LINE_DISCOUNTS,
            settings.TABLE_LINE_TAXES,
        ]
    )
    invoice_ids = tables[settings.TABLE_INVOICES].column("id").to_pylist()
    assert invoice_ids == [f"in_{n:05d}" for n in range(count)]
    assert tables[settings.TABLE_LINE_ITEMS].column("amount").to_pylist() == list(range(count))
    assert tables[settings.TABLE_LINE_ITEMS].column(MARKER_COLUMN).null_count == count
    # lines without discounts or taxes: one placeholder per invoice clears what had landed
    for name in (settings.TABLE_LINE_DISCOUNTS, settings.TABLE_LINE_TAXES):
        assert tables[name].column("invoice_id").to_pylist() == invoice_ids
        assert tables[name].column(MARKER_COLUMN).to_pylist() == [True] * count
    assert batch.invoice_count == 0 and batch.take_tables() == []


def test_given_a_new_api_field_only_after_the_first_rows_when_taken_then_its_column_is_kept() -> (
    None
):
    batch = TableBatch(synced_at=1_767_225_600)
    late = ROWS_INVOICES + 3
    for number in range(late + 2):
        extra = {"rebate_code": f"R{number}"} if number >= late else {}
        batch.add_invoice(invoice(number, **extra), [])

    invoices = dict(batch.take_tables())[settings.TABLE_INVOICES]

    codes = invoices.column("rebate_code").to_pylist()
    assert codes == [None] * late + [f"R{late}", f"R{late + 1}"]


def test_given_a_new_numeric_field_null_for_the_first_invoices_when_loaded_then_it_lands_as_numbers(
    tmp_path: Path,
) -> None:
    nulls = ROWS_INVOICES + 50  # a whole first piece of nulls, then numbers

    def stripe_invoices() -> Iterator[Any]:
        batch = TableBatch(synced_at=1_767_225_600)
        for number in range(nulls + 3):
            batch.add_invoice(invoice(number, rebate_count=None if number < nulls else number), [])
        yield from tagged_tables(batch.take_tables())

    pipeline = dlt.pipeline(
        pipeline_name="late_numbers",
        destination=duckdb_destination(str(tmp_path / "late.duckdb")),
        dataset_name="invoices",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    pipeline.run(with_table_hints(dlt.resource(stripe_invoices, name=settings.TABLE_INVOICES)))

    with pipeline.sql_client() as client:
        rows = client.execute_sql(
            "SELECT count(*), count(rebate_count), sum(rebate_count),"
            " typeof(any_value(rebate_count)) FROM stripe_invoices"
        )
    assert rows == [(nulls + 3, 3, 3 * nulls + 3, "BIGINT")]


def test_given_a_new_field_that_is_always_null_when_taken_then_it_is_kept_as_text() -> None:
    batch = TableBatch(synced_at=1_767_225_600)
    for number in range(ROWS_INVOICES + 1):
        batch.add_invoice(invoice(number, closing_note=None), [])

    invoices = dict(batch.take_tables())[settings.TABLE_INVOICES]

    assert invoices.schema.field("closing_note").type == pa.string()
    assert invoices.column("closing_note").null_count == ROWS_INVOICES + 1


def test_given_a_type_change_when_rows_cross_processes_then_odd_values_land_in_variants() -> None:
    rows = RowBatch(synced_at=1_767_225_600)
    due = [1_767_312_000, "next week", None]
    amounts = [100, "12.50", 300]
    for number in range(3):
        rows.add_invoice(invoice(number, due_date=due[number], amount_due=amounts[number]), [])
    pieces = pickle.loads(pickle.dumps(rows.take_pieces()))  # as a worker process sends them
    gathered = ArrowPieces()

    gathered.add_all(pieces)
    invoices = dict(gathered.take())[settings.TABLE_INVOICES]

    assert invoices.column("amount_due").to_pylist() == [100, None, 300]
    assert invoices.column("amount_due__v_text").to_pylist() == [None, "12.50", None]
    assert invoices.column("due_date").to_pylist() == [
        datetime(2026, 1, 2, tzinfo=timezone.utc),
        None,
        None,
    ]
    assert invoices.column("due_date__v_text").to_pylist() == [None, "next week", None]
    assert invoices.column("synced_at").type == pa.timestamp("us", tz="UTC")
