"""Rows of the four Stripe tables, gathered page by page into pyarrow tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dlt
import pyarrow as pa

from invoice_source.columns import Column, TableBuilder
from invoice_source.stripe import settings
from invoice_source.stripe.client import Invoice
from invoice_source.stripe.reader import InvoicePage
from invoice_source.stripe.shapes import (
    INVOICE_COLUMNS,
    LINE_DISCOUNT_COLUMNS,
    LINE_ITEM_COLUMNS,
    LINE_TAX_COLUMNS,
    invoice_row,
    line_rows,
)

# Invoices gathered before a batch of tables is handed on: big enough for efficient parquet row
# groups, small enough to keep memory flat.
BATCH_INVOICES = 2000

CHILD_TABLES: dict[str, list[Column]] = {
    settings.TABLE_LINE_ITEMS: LINE_ITEM_COLUMNS,
    settings.TABLE_LINE_DISCOUNTS: LINE_DISCOUNT_COLUMNS,
    settings.TABLE_LINE_TAXES: LINE_TAX_COLUMNS,
}
CHILD_KEYS: dict[str, Sequence[str]] = {
    settings.TABLE_LINE_ITEMS: ("invoice_id", "id"),
    settings.TABLE_LINE_DISCOUNTS: ("invoice_id", "line_item_id", "position"),
    settings.TABLE_LINE_TAXES: ("invoice_id", "line_item_id", "position"),
}


class TableBatch:
    """Rows of the four tables, gathered until they are worth handing to dlt."""

    def __init__(self, synced_at: int) -> None:
        self.synced_at = synced_at
        self._reset()

    def _reset(self) -> None:
        self.invoices = TableBuilder(INVOICE_COLUMNS)
        self.children = {table: TableBuilder(columns) for table, columns in CHILD_TABLES.items()}
        self.invoice_count = 0

    def add_page(self, page: InvoicePage) -> None:
        """Add a page of invoices; lines come from ``page.lines`` or the embedded list."""
        for invoice in page.invoices:
            lines = page.lines.get(invoice["id"])
            if lines is None:
                lines = list((invoice.get("lines") or {}).get("data") or [])
            self.add_invoice(invoice, lines)

    def add_invoice(self, invoice: Invoice, lines: list[dict[str, Any]] | None) -> None:
        """Add one invoice; ``lines=None`` leaves its landed lines as they are (deleted)."""
        self.invoices.add(
            invoice_row(
                invoice, line_count=None if lines is None else len(lines), synced_at=self.synced_at
            )
        )
        self.invoice_count += 1
        if lines is None:
            return
        items, discounts, taxes = line_rows(invoice["id"], invoice.get("currency"), lines)
        self.children[settings.TABLE_LINE_ITEMS].extend(items)
        self.children[settings.TABLE_LINE_DISCOUNTS].extend(discounts)
        self.children[settings.TABLE_LINE_TAXES].extend(taxes)

    def take_tables(self) -> list[tuple[str, pa.Table]]:
        """The gathered rows as ``(table name, pyarrow table)`` pairs (empty tables left out),
        and a fresh batch."""
        if self.invoice_count == 0:
            return []
        tables: list[tuple[str, pa.Table]] = [(settings.TABLE_INVOICES, self.invoices.to_arrow())]
        tables += [(name, builder.to_arrow()) for name, builder in self.children.items()]
        self._reset()
        return [(name, table) for name, table in tables if table.num_rows]

    def flush(self) -> Iterator[Any]:
        """Yield the gathered rows as pyarrow tables tagged with their table names."""
        for name, table in self.take_tables():
            yield dlt.mark.with_table_name(table, name)
