"""TableBatch turns rows into Arrow every ROWS_INVOICES invoices (Python rows pin memory) and
hands dlt one table per name per batch."""

from __future__ import annotations

from typing import Any

from invoice_source.stripe import settings
from invoice_source.stripe.batch import ROWS_INVOICES, TableBatch


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

    assert sorted(tables) == [settings.TABLE_LINE_ITEMS, settings.TABLE_INVOICES]
    invoice_ids = tables[settings.TABLE_INVOICES].column("id").to_pylist()
    assert invoice_ids == [f"in_{n:05d}" for n in range(count)]
    assert tables[settings.TABLE_LINE_ITEMS].column("amount").to_pylist() == list(range(count))
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
