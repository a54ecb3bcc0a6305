"""Rows of the four Stripe tables, gathered page by page into columns.

Plain Python: Stripe's worker processes gather rows with it and import no pyarrow (~55 MB per
process); the run's own process makes Arrow tables of the columns
(:mod:`invoice_source.stripe.tables`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from invoice_source.columns import Column, ColumnValues, TableBuilder
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

# Invoices kept as Python rows before they become columns: rows keep the parsed JSON alive, and
# Python's allocator keeps the memory of its peak for the rest of the run (freed objects leave
# its 1 MiB arenas partly used), so this bounds what the whole run holds. Columns hold only the
# values (JSON as text) and become Arrow as soon as they reach the run's own process.
ROWS_INVOICES = 50

# One table's rows as columns: what a worker process sends and the run's own process converts.
Piece = tuple[str, list[ColumnValues]]

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


class RowBatch:
    """Rows of the four tables, cut into :data:`Piece` columns every ``ROWS_INVOICES``
    invoices."""

    def __init__(self, synced_at: int) -> None:
        self.synced_at = synced_at
        self.invoices = TableBuilder(INVOICE_COLUMNS)
        self.children = {table: TableBuilder(columns) for table, columns in CHILD_TABLES.items()}
        self.pieces: list[Piece] = []
        self.piece_invoices = 0
        self.row_invoices = 0

    @property
    def invoice_count(self) -> int:
        """Invoices gathered since the pieces were last taken."""
        return self.piece_invoices + self.row_invoices

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
            self._cut()

    def take_pieces(self, *, all_rows: bool = True) -> list[Piece]:
        """The pieces cut so far (with ``all_rows``, the rows not cut yet as well), and a fresh
        batch. Tables without rows are left out."""
        if all_rows:
            self._cut()
        pieces, self.pieces, self.piece_invoices = self.pieces, [], 0
        return pieces

    def _cut(self) -> None:
        if self.row_invoices == 0:
            return
        self.pieces.append((settings.TABLE_INVOICES, self.invoices.take_columns()))
        for name, builder in self.children.items():
            if builder.row_count:
                self.pieces.append((name, builder.take_columns()))
        self.piece_invoices += self.row_invoices
        self.row_invoices = 0
