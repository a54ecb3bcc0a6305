"""Rows to columns: the builder every source's tables go through."""

from __future__ import annotations

from invoice_source.arrow import table_from_columns
from invoice_source.columns import Column, TableBuilder

SPEC = [
    Column("id", "text", nullable=False),
    Column("created", "timestamp"),
    Column("meta", "json"),
]


def test_given_rows_when_taken_then_each_column_holds_its_prepared_values_in_row_order() -> None:
    builder = TableBuilder(SPEC)
    builder.extend([{"id": "a", "created": 1, "meta": {"b": 2, "a": 1}}, {"id": "b"}])

    columns = {column.name: column.values for column in builder.take_columns()}

    assert columns == {
        "id": ["a", "b"],
        "created": [1_000_000, None],
        "meta": ['{"a":1,"b":2}', None],
    }
    assert builder.row_count == 0


def test_given_an_undeclared_field_when_it_appears_midway_then_earlier_rows_hold_null() -> None:
    builder = TableBuilder(SPEC)
    builder.add({"id": "a"})
    builder.add({"id": "b", "late": 5, "later": "x"})

    columns = builder.take_columns()

    assert [(c.name, c.kind, c.values) for c in columns[3:]] == [
        ("late", "bigint", [None, 5]),
        ("later", "text", [None, "x"]),
    ]


def test_given_an_extra_field_when_the_next_piece_lacks_it_then_the_column_stays_typed() -> None:
    builder = TableBuilder(SPEC)
    builder.add({"id": "a", "late": 5})
    builder.take_columns()
    builder.add({"id": "b"})

    late = builder.take_columns()[3]

    assert (late.name, late.kind, late.values) == ("late", "bigint", [None])
    assert table_from_columns(builder.take_columns()).num_rows == 0


def test_given_an_extra_field_changing_type_in_a_piece_when_taken_then_it_becomes_json() -> None:
    builder = TableBuilder(SPEC)
    builder.add({"id": "a", "late": 5})
    builder.add({"id": "b", "late": {"nested": True}})

    late = builder.take_columns()[3]

    assert (late.kind, late.values) == ("json", ["5", '{"nested":true}'])
