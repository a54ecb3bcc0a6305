"""The four Stripe tables as pyarrow tables, in batches worth handing to dlt."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from invoice_source.arrow import null_columns_as_text, table_from_columns
from invoice_source.stripe import settings
from invoice_source.stripe.batch import Piece, RowBatch
from invoice_source.stripe.client import Invoice
from invoice_source.stripe.reader import InvoicePage

# Invoices gathered before a batch of tables is handed on: few enough dlt items (dlt checks every
# item's schema), small enough that the run's own process holds little on top of dlt's own
# buffer (dlt writes parquet every 5,000 rows, whatever the item size): 500 instead of 2,000 was
# ~10 MB less at the same speed.
BATCH_INVOICES = 500


class TableBatch:
    """A :class:`RowBatch` whose pieces become Arrow as soon as they are cut."""

    def __init__(self, synced_at: int) -> None:
        self.synced_at = synced_at
        self.rows = RowBatch(synced_at)
        self.pieces = ArrowPieces()

    @property
    def invoice_count(self) -> int:
        """Invoices gathered since the batch was last taken."""
        return self.pieces.invoices + self.rows.invoice_count

    def add_page(self, page: InvoicePage) -> None:
        """Add a page of invoices; lines come from ``page.lines`` or the embedded list."""
        self.rows.add_page(page)
        self.pieces.add_all(self.rows.take_pieces(all_rows=False))

    def add_invoice(self, invoice: Invoice, lines: list[dict[str, Any]] | None) -> None:
        """Add one invoice; ``lines=None`` leaves its landed lines as they are (deleted)."""
        self.rows.add_invoice(invoice, lines)
        self.pieces.add_all(self.rows.take_pieces(all_rows=False))

    def take_tables(self) -> list[tuple[str, pa.Table]]:
        """The gathered rows as ``(table name, pyarrow table)`` pairs (empty tables left out),
        and a fresh batch."""
        self.pieces.add_all(self.rows.take_pieces())
        return list(self.pieces.take())


class ArrowPieces:
    """Pieces as Arrow tables, gathered per table name and handed on joined: dlt checks the
    hints of every item it is given (~20 ms each), so fewer, larger tables cost less."""

    def __init__(self) -> None:
        self._tables: dict[str, list[pa.Table]] = {}
        self.invoices = 0

    def add_all(self, pieces: Iterable[Piece]) -> None:
        """Convert and keep ``pieces``."""
        for name, columns in pieces:
            table = table_from_columns(columns)
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
