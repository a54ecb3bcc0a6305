"""Columns (:class:`invoice_source.columns.ColumnValues`) as typed pyarrow tables.

A value that does not fit its column's kind (a type change upstream) is not lost: it moves to a
variant column named as dlt names them, ``<column>__v_<kind>``, and the log says so. The common
path converts each column once; only a column that fails to convert is checked value by value.

So every column of such a table has its spec's Arrow type, and the only hint it contradicts is
``json``: JSON columns are Arrow text. dlt keeps the hint (the destination parses the text) and
warns about the difference for every table it is given, ~380 warnings in a first load of 100k
Stripe invoices. A source names its resources to :func:`expect_json_as_text`, which drops that
warning for those resources alone, in the command and in a pipeline script alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from invoice_source.columns import ColumnValues, Kind, infer_kind, to_json
from invoice_source.money import AMOUNT_SCALE

logger = logging.getLogger("invoice_source.columns")

# dlt's warning, per Arrow item, that the item's column types differ from its resource's hints.
_HINTS_DIFFER = "when merging arrow schema with dlt schema, several column hints were different"

ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
    "double": pa.float64(),
    "decimal": pa.decimal128(38, AMOUNT_SCALE),
}
_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)
# What a prepared column accepts: timestamps arrive as microseconds (int), JSON as text.
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "bigint": (int,),
    "bool": (bool,),
    "double": (int, float),
    "decimal": (Decimal, int),
    "timestamp": (int,),
}


def table_from_columns(columns: Sequence[ColumnValues]) -> pa.Table:
    """A pyarrow table of ``columns`` with their kinds' types; a column with no kind (no value
    seen yet) is typed null, which joins any type."""
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for column in columns:
        if column.kind is None:
            arrays.append(pa.nulls(len(column.values)))
            fields.append(pa.field(column.name, pa.null()))
            continue
        values = column.values
        variants: dict[Kind, list[Any]] = {}
        try:
            array = _prepared_array(values, column.kind)
        except _CONVERSION_ERRORS:
            values, variants = _split_variants(values, column.kind)
            array = _prepared_array(values, column.kind)
        arrays.append(array)
        fields.append(pa.field(column.name, ARROW_TYPES[column.kind], column.nullable))
        for kind, odd in variants.items():
            logger.warning(
                "column %s: %d value(s) of another type landed in %s__v_%s",
                column.name,
                sum(v is not None for v in odd),
                column.name,
                kind,
            )
            arrays.append(_raw_array(odd, kind))
            fields.append(pa.field(f"{column.name}__v_{kind}", ARROW_TYPES[kind]))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def null_columns_as_text(table: pa.Table) -> pa.Table:
    """``table`` with its null-typed columns (no value seen yet) as text: dlt cannot type a
    null column, and a text column of nulls is what a later value of any kind can turn into."""
    for index, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            column = pa.nulls(table.num_rows, pa.string())
            table = table.set_column(index, pa.field(field.name, pa.string()), column)
    return table


def _prepared_array(values: list[Any], kind: Kind) -> pa.Array:
    if kind == "timestamp":
        return pa.array(values, pa.int64()).cast(ARROW_TYPES["timestamp"])
    return pa.array(values, ARROW_TYPES[kind])


def _raw_array(values: list[Any], kind: Kind) -> pa.Array:
    """A variant column from values as the API sent them (``infer_kind`` never says
    timestamp)."""
    if kind == "json":
        return pa.array([to_json(v) for v in values], pa.string())
    return pa.array(values, ARROW_TYPES[kind])


def _fits(value: Any, kind: Kind) -> bool:
    if value is None or kind == "json":
        return True
    if isinstance(value, bool) and kind != "bool":
        return False
    return isinstance(value, _ACCEPTS[kind])


def _split_variants(values: list[Any], kind: Kind) -> tuple[list[Any], dict[Kind, list[Any]]]:
    """Values that fit ``kind`` stay; others move to variant columns by their own kind."""
    kept: list[Any] = []
    variants: dict[Kind, list[Any]] = {}
    for index, value in enumerate(values):
        if _fits(value, kind):
            kept.append(value)
            continue
        kept.append(None)
        variants.setdefault(infer_kind(value), [None] * len(values))[index] = value
    return kept, variants


class _JsonAsTextWarnings(logging.Filter):
    """Drops dlt's "column hints were different" warning for the resources named to it."""

    def __init__(self) -> None:
        super().__init__()
        self.resources: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _HINTS_DIFFER not in message:
            return True
        resource = message.removeprefix("In resource: ").split(",", 1)[0]
        return resource not in self.resources


_JSON_AS_TEXT_WARNINGS = _JsonAsTextWarnings()


def expect_json_as_text(*resource_names: str) -> None:
    """Tell dlt's log that these resources yield tables of :func:`table_from_columns`, whose
    JSON columns are text under a ``json`` hint by design: dlt's warning about it is dropped for
    them (and only them)."""
    _JSON_AS_TEXT_WARNINGS.resources.update(resource_names)
    dlt_logger = logging.getLogger("dlt")
    if _JSON_AS_TEXT_WARNINGS not in dlt_logger.filters:
        dlt_logger.addFilter(_JSON_AS_TEXT_WARNINGS)
