"""Line items: revenue by product and price, prorations, discounts and tax, checked against the
Stripe lines as they landed (integer minor units) and the sandbox's tax rates."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from invoice_source.money import to_major
from invoice_source.sandbox.stripe_data import TAX_RATES
from tests.notebooks.conftest import RunNotebook, query_duckdb

ISSUED_LINES = (
    "from invoices.stripe_invoice_line_items as l"
    " join invoices.stripe_invoices as i on i.id = l.invoice_id"
    " where i.status in ('open', 'paid', 'uncollectible')"
)


def test_given_landed_lines_when_line_items_runs_then_product_revenue_matches_in_every_currency(
    run_notebook: RunNotebook, demo_duckdb: Path
) -> None:
    _, defs = run_notebook("line_items", "--duckdb", str(demo_duckdb))

    landed = query_duckdb(
        demo_duckdb,
        "select l.currency, l.product_id, count(*), sum(l.amount), sum(l.discount_amount),"
        f" sum(l.tax_amount) {ISSUED_LINES} group by 1, 2",
    )
    expected = {
        (currency, product): (
            lines,
            to_major(int(gross), currency),
            to_major(int(discounts), currency),
            to_major(int(gross) - int(discounts), currency),
            to_major(int(tax), currency),
        )
        for currency, product, lines, gross, discounts, tax in landed
    }
    assert {
        (row["currency"], row["product_id"]): (
            row["lines"],
            row["gross"],
            row["discounts"],
            row["net"],
            row["tax"],
        )
        for row in defs["products"]
    } == expected
    assert len({currency for currency, _ in expected}) > 3


def test_given_three_decimal_dinars_when_shown_then_amounts_keep_three_decimals(
    run_notebook: RunNotebook, demo_duckdb: Path
) -> None:
    _, defs = run_notebook("line_items", "--duckdb", str(demo_duckdb))

    dinars = [row for row in defs["products"] if row["currency"] == "bhd"]
    assert dinars, "the sandbox bills in BHD"
    assert all(row["net"].as_tuple().exponent == -3 for row in dinars)


def test_given_proration_lines_when_summarised_then_their_count_and_net_match(
    run_notebook: RunNotebook, demo_duckdb: Path
) -> None:
    _, defs = run_notebook("line_items", "--duckdb", str(demo_duckdb))

    landed = query_duckdb(
        demo_duckdb,
        f"select l.currency, count(*), sum(l.amount - l.discount_amount) {ISSUED_LINES}"
        " and l.is_proration group by 1",
    )
    assert landed, "the sandbox has prorations"
    assert {
        row["currency"]: (row["proration_lines"], row["proration_net"])
        for row in defs["proration_summary"]
    } == {currency: (count, to_major(int(net), currency)) for currency, count, net in landed}
    kinds = {row["line_kind"] for row in defs["line_kinds"]}
    assert kinds == {"subscription", "proration", "one-off"}


def test_given_discounted_lines_when_summarised_then_discounts_per_currency_match(
    run_notebook: RunNotebook, demo_duckdb: Path
) -> None:
    _, defs = run_notebook("line_items", "--duckdb", str(demo_duckdb))

    landed = dict(
        query_duckdb(
            demo_duckdb, f"select l.currency, sum(l.discount_amount) {ISSUED_LINES} group by 1"
        )
    )
    assert {row["currency"]: row["discounts"] for row in defs["discount_summary"]} == {
        currency: to_major(int(total), currency) for currency, total in landed.items()
    }
    largest = defs["top_discounts"]
    assert largest and all(row["currency"] == defs["currency_picker"].value for row in largest)
    assert [row["discount"] for row in largest] == sorted(
        (row["discount"] for row in largest), reverse=True
    )


def test_given_the_sandbox_tax_rates_when_summarised_then_effective_rates_match_them(
    run_notebook: RunNotebook, demo_duckdb: Path
) -> None:
    _, defs = run_notebook("line_items", "--duckdb", str(demo_duckdb))

    assert defs["tax_summary"]
    for row in defs["tax_summary"]:
        rate, inclusive, _ = TAX_RATES[row["tax_rate_id"]]
        effective = Decimal(row["effective_rate"].removesuffix(" %"))
        assert row["is_inclusive"] == inclusive
        # each line's tax is rounded to a minor unit, so the effective rate is close, not equal
        assert abs(effective - rate) < Decimal("0.2"), (row["currency"], row["tax_rate_id"])
