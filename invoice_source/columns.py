"""Typed column specs and a column-wise builder from row dicts to pyarrow tables.

A source declares each table once as a list of :class:`Column` (name and kind); the same spec
gives the pyarrow schema of the tables it yields and the dlt column hints of the destination
table, so the two never drift apart. Keys a spec does not know (a field the API added) are kept
as extra columns, typed by inference, so nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal

import orjson
import pyarrow as pa

from invoice_source.money import AMOUNT_SCALE

Kind = Literal["text", "bigint", "bool", "timestamp", "json", "double", "decimal"]

logger = logging.getLogger("invoice_source.columns")

_ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
    "double": pa.float64(),
    "decimal": pa.decimal128(38, AMOUNT_SCALE),
}


@dataclass(frozen=True)
class Column:
    """One destination column: its name, kind, and whether it may be null."""

    name: str
    kind: Kind
    nullable: bool = True
    description: str = ""

    def hint(self) -> dict[str, Any]:
        """The dlt column hint for this column."""
        hint: dict[str, Any] = {"data_type": self.kind, "nullable": self.nullable}
        if self.kind == "decimal":
            hint.update(precision=38, scale=AMOUNT_SCALE)
        if self.kind == "timestamp":
            hint["timezone"] = True
        if self.description:
            hint["description"] = self.description
        return hint


def column_hints(columns: Sequence[Column]) -> dict[str, dict[str, Any]]:
    """dlt ``columns`` hints for a table spec."""
    return {column.name: column.hint() for column in columns}


def to_json(value: Any) -> str | None:
    """A nested value as a JSON string (``None`` stays ``None``)."""
    if value is None:
        return None
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _infer_kind(value: Any) -> Kind:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, str):
        return "text"
    return "json"


class TableBuilder:
    """Collects rows column by column and turns them into one typed pyarrow table.

    Timestamp columns take unix seconds (int) or ``datetime`` objects (naive ones are UTC);
    json columns take any JSON-able value and are stored as JSON text.
    """

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = list(columns)
        self._known = {column.name for column in columns}
        self._data: dict[str, list[Any]] = {column.name: [] for column in columns}
        self._extra: dict[str, list[Any]] = {}
        self._extra_kinds: dict[str, Kind] = {}
        self.row_count = 0

    def add(self, row: dict[str, Any]) -> None:
        """Append one row; unknown keys become extra columns."""
        for name, values in self._data.items():
            values.append(row.get(name))
        for key, value in row.items():
            if key in self._known:
                continue
            if key not in self._extra:
                self._extra[key] = [None] * self.row_count
            if value is not None and key not in self._extra_kinds:
                self._extra_kinds[key] = _infer_kind(value)
            self._extra[key].append(value)
        self.row_count += 1
        for values in self._extra.values():
            if len(values) < self.row_count:
                values.append(None)

    def extend(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append many rows."""
        for row in rows:
            self.add(row)

    def take_arrow(self) -> pa.Table:
        """The collected rows as a pyarrow table, and a builder emptied of rows. The kinds of
        extra columns carry over, so later tables type them as earlier ones did."""
        table = self.to_arrow()
        self._data = {column.name: [] for column in self.columns}
        self._extra = {name: [] for name in self._extra}
        self.row_count = 0
        return table

    def to_arrow(self) -> pa.Table:
        """The collected rows as a pyarrow table with the spec's types; an extra column with no
        value yet is typed null, which joins any type."""
        arrays: list[pa.Array] = []
        fields: list[pa.Field] = []
        for column in self.columns:
            values = self._data[column.name]
            variants: dict[Kind, list[Any]] = {}
            try:
                array = _to_array(values, column.kind)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                values, variants = _split_variants(values, column.kind)
                array = _to_array(values, column.kind)
            arrays.append(array)
            fields.append(pa.field(column.name, _ARROW_TYPES[column.kind], column.nullable))
            for kind, odd in variants.items():
                logger.warning(
                    "column %s: %d value(s) of another type landed in %s__v_%s",
                    column.name,
                    sum(v is not None for v in odd),
                    column.name,
                    kind,
                )
                arrays.append(_to_array(odd, kind))
                fields.append(pa.field(f"{column.name}__v_{kind}", _ARROW_TYPES[kind]))
        for name, values in self._extra.items():
            known = self._extra_kinds.get(name)
            if known is None:
                arrays.append(pa.nulls(len(values)))
                fields.append(pa.field(name, pa.null()))
                continue
            if any(v is not None and _infer_kind(v) != known for v in values):
                known = self._extra_kinds[name] = "json"
            arrays.append(_to_array(values, known))
            fields.append(pa.field(name, _ARROW_TYPES[known]))
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def null_columns_as_text(table: pa.Table) -> pa.Table:
    """``table`` with its null-typed columns (no value seen yet) as text: dlt cannot type a
    null column, and a text column of nulls is what a later value of any kind can turn into."""
    for index, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            column = pa.nulls(table.num_rows, pa.string())
            table = table.set_column(index, pa.field(field.name, pa.string()), column)
    return table


_ACCEPTS: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "bigint": (int,),
    "bool": (bool,),
    "double": (int, float),
    "decimal": (Decimal, int),
    "timestamp": (int, datetime),
}


def _fits(value: Any, kind: Kind) -> bool:
    if value is None or kind == "json":
        return True
    if isinstance(value, bool) and kind != "bool":
        return False
    return isinstance(value, _ACCEPTS[kind])


def _split_variants(values: list[Any], kind: Kind) -> tuple[list[Any], dict[Kind, list[Any]]]:
    """Values that fit ``kind`` stay; others move to variant columns by their own kind (as dlt
    names them: ``<column>__v_<kind>``), so a type change upstream loses nothing. Only called
    when a column fails to convert, so the common path checks no value twice."""
    kept: list[Any] = []
    variants: dict[Kind, list[Any]] = {}
    for index, value in enumerate(values):
        if _fits(value, kind):
            kept.append(value)
            continue
        kept.append(None)
        odd_kind = _infer_kind(value)
        variants.setdefault(odd_kind, [None] * len(values))[index] = value
    return kept, variants


def _to_array(values: list[Any], kind: Kind) -> pa.Array:
    if kind == "timestamp":
        micros = [_epoch_micros(v) for v in values]
        return pa.array(micros, pa.int64()).cast(_ARROW_TYPES["timestamp"])
    if kind == "json":
        return pa.array([to_json(v) for v in values], pa.string())
    return pa.array(values, _ARROW_TYPES[kind])


def _epoch_micros(value: Any) -> int | None:
    """Microseconds since the epoch of unix seconds or an aware ``datetime``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return int(value) * 1_000_000


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
