"""Rows of the four Stripe tables, gathered page by page into pyarrow tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from invoice_source.columns import Column, TableBuilder, null_columns_as_text
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

# Invoices gathered before a batch of tables is handed on: few enough dlt items (dlt checks every
# item's schema), small enough that the run's own process holds little on top of dlt's own
# buffer (dlt writes parquet every 5,000 rows, whatever the item size): 500 instead of 2,000 was
# ~10 MB less at the same speed.
BATCH_INVOICES = 500
# Invoices kept as Python rows before they become Arrow: rows keep the parsed JSON alive, and
# Python's allocator keeps the memory of its peak for the rest of the run (freed objects leave
# its 1 MiB arenas partly used), so this bounds what the whole run holds. Arrow pieces are
# compact and are joined into one table per batch.
ROWS_INVOICES = 50

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
    """Rows of the four tables, gathered until they are worth handing to dlt: as Python rows
    for up to ``ROWS_INVOICES`` invoices, then as Arrow pieces."""

    def __init__(self, synced_at: int) -> None:
        self.synced_at = synced_at
        self.pieces = ArrowPieces()
        self.invoices = TableBuilder(INVOICE_COLUMNS)
        self.children = {table: TableBuilder(columns) for table, columns in CHILD_TABLES.items()}
        self.row_invoices = 0

    @property
    def invoice_count(self) -> int:
        """Invoices gathered since the batch was last taken."""
        return self.pieces.invoices + self.row_invoices

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
        self.row_invoices += 1
        if lines is not None:
            items, discounts, taxes = line_rows(invoice["id"], invoice.get("currency"), lines)
            self.children[settings.TABLE_LINE_ITEMS].extend(items)
            self.children[settings.TABLE_LINE_DISCOUNTS].extend(discounts)
            self.children[settings.TABLE_LINE_TAXES].extend(taxes)
        if self.row_invoices >= ROWS_INVOICES:
            self._rows_to_arrow()

    def _rows_to_arrow(self) -> None:
        if self.row_invoices == 0:
            return
        self.pieces.add(settings.TABLE_INVOICES, self.invoices.take_arrow())
        for name, builder in self.children.items():
            self.pieces.add(name, builder.take_arrow())
        self.row_invoices = 0

    def take_tables(self) -> list[tuple[str, pa.Table]]:
        """The gathered rows as ``(table name, pyarrow table)`` pairs (empty tables left out),
        and a fresh batch."""
        self._rows_to_arrow()
        return list(self.pieces.take())


class ArrowPieces:
    """Arrow tables gathered per table name and handed on joined: dlt checks the hints of every
    item it is given (~20 ms each), so fewer, larger tables cost less."""

    def __init__(self) -> None:
        self._tables: dict[str, list[pa.Table]] = {}
        self.invoices = 0

    def add(self, name: str, table: pa.Table) -> None:
        """Keep ``table`` (empty ones are dropped) for ``name``."""
        if name == settings.TABLE_INVOICES:
            self.invoices += table.num_rows
        if table.num_rows:
            self._tables.setdefault(name, []).append(table)

    def take(self) -> Iterator[tuple[str, pa.Table]]:
        """``(name, table)`` per table name, pieces joined, and start over. A column still
        typed null (no piece had a value) becomes text, as dlt cannot type it."""
        tables, self._tables, self.invoices = self._tables, {}, 0
        for name, pieces in tables.items():
            try:
                joined = [pa.concat_tables(pieces, promote_options="default")]
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column changed type between pieces
                joined = pieces
            yield from ((name, null_columns_as_text(table)) for table in joined)
