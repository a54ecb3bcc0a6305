"""Stripe models and the Stripe reconciliation report on known fixture invoices.

Three invoices with hand-computed expectations: a JPY invoice (zero-decimal) in the basil shape,
a BHD invoice (three decimals) in the legacy shape, and a USD invoice that does not add up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import dlt
import pytest

from invoice_source.models import run_models
from invoice_source.models.reports import REPORTS, format_report, read_report
from invoice_source.models.testing import check_models
from invoice_source.stripe.source import tagged_tables, with_table_hints
from invoice_source.stripe.tables import TableBatch

SQL = Callable[[str], list[tuple[Any, ...]]]
CREATED = 1_767_225_600  # 2026-01-01T00:00:00Z


def basil_line(
    line_id: str, amount: int, *, tax: int = 0, inclusive: bool = False
) -> dict[str, Any]:
    taxes = []
    if tax:
        taxes = [
            {
                "amount": tax,
                "tax_behavior": "inclusive" if inclusive else "exclusive",
                "tax_rate_details": {"tax_rate": "txr_1"},
                "taxable_amount": amount,
                "taxability_reason": "standard_rated",
                "type": "tax_rate_details",
            }
        ]
    return {
        "id": line_id,
        "object": "line_item",
        "amount": amount,
        "currency": "jpy",
        "quantity": 1,
        "period": {"start": CREATED, "end": CREATED},
        "pricing": {
            "type": "price_details",
            "unit_amount_decimal": str(amount),
            "price_details": {"price": "price_jp", "product": "prod_tea"},
        },
        "parent": {
            "type": "invoice_item_details",
            "invoice_item_details": {"invoice_item": "ii_1", "proration": False},
        },
        "taxes": taxes,
        "discount_amounts": [],
    }


def legacy_line(line_id: str, amount: int, currency: str, *, discount: int = 0) -> dict[str, Any]:
    return {
        "id": line_id,
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "quantity": 1,
        "period": {"start": CREATED, "end": CREATED},
        "price": {"id": "price_legacy", "product": "prod_dates", "unit_amount": amount},
        "type": "invoiceitem",
        "proration": True,
        "tax_amounts": [],
        "discount_amounts": [{"amount": discount, "discount": "di_1"}] if discount else [],
    }


def invoice(
    invoice_id: str, currency: str, lines: list[dict[str, Any]], **amounts: Any
) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "object": "invoice",
        "created": CREATED,
        "currency": currency,
        "customer": "cus_1",
        "lines": {"object": "list", "data": lines, "has_more": False},
        "status_transitions": {"finalized_at": CREATED, "paid_at": None},
        **amounts,
    }


FIXTURE = [
    invoice(
        "in_jpy",
        "jpy",
        [basil_line("il_jpy_1", 1500, tax=120)],
        status="open",
        subtotal=1500,
        total=1620,
        amount_due=1620,
        amount_paid=0,
        amount_remaining=1620,
        total_taxes=[{"amount": 120, "tax_behavior": "exclusive"}],
    ),
    invoice(
        "in_bhd",
        "bhd",
        [legacy_line("il_bhd_1", 12345, "bhd", discount=345)],
        status="paid",
        subtotal=12345,
        total=12000,
        amount_due=12000,
        amount_paid=12000,
        amount_remaining=0,
        paid=True,
        total_tax_amounts=[],
        total_discount_amounts=[{"amount": 345, "discount": "di_1"}],
    ),
    invoice(
        "in_bad",
        "usd",
        [legacy_line("il_bad_1", 900, "usd")],
        status="paid",
        subtotal=1000,
        total=1000,
        amount_due=1000,
        amount_paid=0,
        amount_remaining=1000,
        paid=True,
        total_tax_amounts=[],
    ),
]


@pytest.fixture
def loaded(destination_pipeline: dlt.Pipeline) -> Iterator[dlt.Pipeline]:
    """The fixture invoices landed through the Stripe source's own tables and hints, modelled."""

    def fixture_invoices() -> Iterator[Any]:
        batch = TableBatch(CREATED)
        for item in FIXTURE:
            batch.add_invoice(item, item["lines"]["data"])
        yield from tagged_tables(batch.take_tables())

    resource = with_table_hints(dlt.resource(fixture_invoices, name="stripe_invoices"))
    destination_pipeline.run(resource)
    run_models(destination_pipeline)
    yield destination_pipeline


def test_given_jpy_and_bhd_invoices_when_modelled_then_major_units_follow_the_currency_exponent(
    loaded: dlt.Pipeline, sql: SQL
) -> None:
    rows = sql(
        "select line_item_id, currency, currency_exponent, amount, amount_major,"
        " discount_amount_major, tax_amount_major from {{ stripe_line_items }} order by 1"
    )
    assert rows == [
        ("il_bad_1", "usd", 2, 900, Decimal("9.00"), Decimal("0.00"), Decimal("0.00")),
        ("il_bhd_1", "bhd", 3, 12345, Decimal("12.345"), Decimal("0.345"), Decimal("0.000")),
        ("il_jpy_1", "jpy", 0, 1500, Decimal("1500"), Decimal("0"), Decimal("120")),
    ]


def test_given_both_api_shapes_when_modelled_then_price_product_and_proration_are_filled(
    loaded: dlt.Pipeline, sql: SQL
) -> None:
    rows = sql(
        "select line_item_id, price_id, product_id, line_type, is_proration, api_shape"
        " from {{ stripe_line_items }} order by 1"
    )
    assert rows == [
        ("il_bad_1", "price_legacy", "prod_dates", "invoiceitem", True, "legacy"),
        ("il_bhd_1", "price_legacy", "prod_dates", "invoiceitem", True, "legacy"),
        ("il_jpy_1", "price_jp", "prod_tea", "invoiceitem", False, "basil"),
    ]


def test_given_three_stripe_invoices_when_modelled_then_invoice_history_has_them_in_major_units(
    loaded: dlt.Pipeline, sql: SQL
) -> None:
    rows = sql(
        "select source, source_invoice_id, status, currency, subtotal, tax, total, amount_paid,"
        " amount_due from {{ invoice_history }} order by 2"
    )
    assert rows == [
        (
            "stripe",
            "in_bad",
            "paid",
            "usd",
            Decimal("10"),
            Decimal("0"),
            Decimal("10"),
            Decimal("0"),
            Decimal("10"),
        ),
        (
            "stripe",
            "in_bhd",
            "paid",
            "bhd",
            Decimal("12.345"),
            Decimal("0"),
            Decimal("12"),
            Decimal("12"),
            Decimal("0"),
        ),
        (
            "stripe",
            "in_jpy",
            "open",
            "jpy",
            Decimal("1500"),
            Decimal("120"),
            Decimal("1620"),
            Decimal("0"),
            Decimal("1620"),
        ),
    ]


def test_given_an_invoice_that_does_not_add_up_when_reconciled_then_exactly_its_checks_fail(
    loaded: dlt.Pipeline, sql: SQL
) -> None:
    rows = sql(
        "select check_name, invoice_id, expected_amount, actual_amount, difference"
        " from {{ rpt_stripe_reconciliation }} order by 1"
    )
    assert rows == [
        ("line_sum_vs_subtotal", "in_bad", 1000, 900, -100),
        ("paid_without_payment", "in_bad", 1000, 0, -1000),
    ]


def test_given_modelled_data_when_integrity_checked_then_keys_are_unique_and_columns_documented(
    loaded: dlt.Pipeline,
) -> None:
    assert check_models(loaded) == []


def test_given_a_model_row_twice_when_integrity_checked_then_the_repeated_key_is_reported(
    loaded: dlt.Pipeline, sql: SQL
) -> None:
    sql(
        "insert into {{ stripe_line_items }} select * from {{ stripe_line_items }}"
        " where line_item_id = 'il_jpy_1'"
    )
    assert check_models(loaded) == [
        "stripe_line_items: 1 rows repeat a key (invoice_id, line_item_id)",
        "stripe_line_items: 4 rows but stg_stripe__invoice_line_items has 3",
    ]


def test_given_a_report_when_printed_then_money_uses_the_currency_decimals(
    loaded: dlt.Pipeline,
) -> None:
    text = format_report(read_report(loaded, REPORTS[0]))

    assert "line_sum_vs_subtotal" in text and "paid_without_payment" in text
    assert "10.00 USD" in text and "9.00 USD" in text
