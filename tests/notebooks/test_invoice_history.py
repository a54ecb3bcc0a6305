"""Invoice history: invoices and invoiced amounts per month by source, currency and status, and a
customer's history, checked against the Stripe invoices as they landed."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import marimo as mo

from invoice_source.money import to_major
from tests.notebooks.conftest import RunNotebook, query_duckdb

ISSUED = "('open', 'paid', 'uncollectible')"


def pickers(currency: str) -> dict:
    return {
        "source_picker": mo.ui.dropdown(["all sources", "stripe"], value="all sources"),
        "currency_picker": mo.ui.dropdown([currency], value=currency),
    }


def landed_invoiced_per_month(path: Path, currency: str) -> dict[str, Decimal | None]:
    """Issued Stripe invoices' totals per month created, straight from the landed table."""
    rows = query_duckdb(
        path,
        "select strftime(created, '%Y-%m'), sum(total) from invoices.stripe_invoices"
        f" where currency = ? and status in {ISSUED} and not is_deleted group by 1",
        currency,
    )
    return {month: to_major(int(total), currency) for month, total in rows}


def test_given_landed_stripe_invoices_when_history_runs_then_invoiced_per_month_matches(
    run_notebook: RunNotebook, demo_duckdb: Path
) -> None:
    _, defs = run_notebook("invoice_history", "--duckdb", str(demo_duckdb))

    currency = defs["currency_picker"].value
    assert currency == "usd"  # the currency with the most invoices in the sandbox
    charted = {row["month"]: row["invoiced"] for row in defs["revenue_per_month"]}
    assert charted == landed_invoiced_per_month(demo_duckdb, currency)
    assert {row["source"] for row in defs["revenue_per_month"]} == {"stripe"}
    spec = defs["revenue_chart"].to_dict()
    assert len(spec["data"]["values"]) == len(charted)


def test_given_zero_decimal_yen_when_charted_then_amounts_are_whole_yen(
    run_notebook: RunNotebook, demo_duckdb: Path
) -> None:
    _, defs = run_notebook("invoice_history", "--duckdb", str(demo_duckdb), defs=pickers("jpy"))

    invoiced = {row["month"]: row["invoiced"] for row in defs["revenue_per_month"]}
    assert invoiced == landed_invoiced_per_month(demo_duckdb, "jpy")
    assert all(amount == amount.to_integral_value() for amount in invoiced.values())
    values = defs["revenue_chart"].to_dict()["data"]["values"]
    assert all(value["invoiced_text"].endswith(" JPY") for value in values)
    assert all("." not in value["invoiced_text"] for value in values)


def test_given_every_status_when_counted_per_month_then_every_live_invoice_is_counted_once(
    run_notebook: RunNotebook, demo_duckdb: Path
) -> None:
    _, defs = run_notebook("invoice_history", "--duckdb", str(demo_duckdb))

    per_status: dict[str, int] = defaultdict(int)
    for row in defs["invoices_per_month"]:
        per_status[row["status"]] += row["invoices"]
    landed = query_duckdb(
        demo_duckdb,
        "select status, count(*) from invoices.stripe_invoices where not is_deleted group by 1",
    )
    assert dict(per_status) == dict(landed)
    assert set(per_status) >= {"draft", "open", "paid", "void", "uncollectible"}


def test_given_the_busiest_customer_when_history_runs_then_all_their_invoices_are_listed(
    run_notebook: RunNotebook, demo_duckdb: Path
) -> None:
    _, defs = run_notebook("invoice_history", "--duckdb", str(demo_duckdb))

    customer = defs["customer_input"].value
    assert customer == defs["top_customers"][0]["customer_id"]
    landed = query_duckdb(
        demo_duckdb,
        "select id, currency, status, total, is_deleted from invoices.stripe_invoices"
        " where customer = ?",
        customer,
    )
    assert {row["source_invoice_id"] for row in defs["customer_invoices"]} == {
        row[0] for row in landed
    }
    invoiced: dict[str, Decimal] = defaultdict(Decimal)
    for _, currency, status, total, deleted in landed:
        if status in ("open", "paid", "uncollectible") and not deleted:
            invoiced[currency] += to_major(int(total), currency) or Decimal(0)
    assert {line["currency"]: line["invoiced"] for line in defs["customer_summary"]} == {
        currency: invoiced.get(currency, Decimal(0))
        for currency in {row[1] for row in landed if not row[4]}
    }
