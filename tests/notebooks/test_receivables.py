"""Receivables: open and overdue amounts per currency, aging buckets and the most overdue
customers, on hand-made invoices whose ages are known, and on the Stripe sandbox's invoices."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import marimo as mo
import pytest

from invoice_source.money import to_major
from tests.notebooks.conftest import RunNotebook, query_duckdb

AS_OF = dt.date(2026, 3, 31)
UTC = dt.timezone.utc
COLUMNS = (
    "source, source_invoice_id, customer_id, status, source_status, currency, total,"
    " amount_paid, amount_due, created_at, finalized_at, due_at, is_deleted, is_archived"
)


def at(day: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=UTC) if day else None


def invoice(
    source: str,
    invoice_id: str,
    customer: str,
    currency: str,
    amount_due: str,
    *,
    status: str = "open",
    created: str = "2025-11-01",
    finalized: str | None = None,
    due: str | None = None,
    deleted: bool = False,
    archived: bool = False,
) -> tuple[Any, ...]:
    due_amount = Decimal(amount_due)
    return (
        source,
        invoice_id,
        customer,
        status,
        status,
        currency,
        due_amount,
        Decimal(0),
        due_amount,
        at(created),
        at(finalized),
        at(due),
        deleted,
        archived,
    )


# Ages as of 2026-03-31 (days past due):
INVOICES = [
    invoice("stripe", "in_due_today", "cus_B", "usd", "100.00", due="2026-03-31"),  # 0
    # no due date: due when finalized, 45 days ago
    invoice("stripe", "in_no_due_date", "cus_A", "usd", "250.50", finalized="2026-02-14"),
    invoice("alternative_payments", "ap_120", "cus_A", "usd", "1000.00", due="2025-12-01"),
    invoice("prepbusiness", "pb_not_due", "m_7", "bhd", "12.345", due="2026-04-10"),  # -10
    invoice("prepbusiness", "pb_75", "m_7", "bhd", "7.005", due="2026-01-15"),  # 75
    invoice(
        "stripe",
        "in_uncollectible",
        "cus_C",
        "jpy",
        "5000",
        status="uncollectible",
        due="2026-01-01",
    ),  # 89
    invoice("stripe", "in_paid", "cus_A", "usd", "0", status="paid", due="2026-01-01"),
    invoice("stripe", "in_deleted", "cus_A", "usd", "40.00", due="2026-01-01", deleted=True),
    invoice(
        "alternative_payments",
        "ap_archived",
        "cus_A",
        "usd",
        "60.00",
        status="void",
        due="2026-01-01",
        archived=True,
    ),
    invoice("stripe", "in_void", "cus_A", "usd", "70.00", status="void", due="2026-01-01"),
    invoice("stripe", "in_future", "cus_A", "usd", "80.00", created="2026-04-02", due="2026-04-01"),
]


@pytest.fixture
def receivables_duckdb(tmp_path: Path) -> Path:
    """A DuckDB file whose ``invoices.invoice_history`` holds the invoices above."""
    path = tmp_path / "receivables.duckdb"
    connection = duckdb.connect(str(path))
    connection.execute("create schema invoices")
    connection.execute(
        "create table invoices.invoice_history (source varchar, source_invoice_id varchar,"
        " invoice_number varchar, customer_id varchar, status varchar, source_status varchar,"
        " currency varchar, subtotal decimal(38, 6), tax decimal(38, 6), total decimal(38, 6),"
        " amount_paid decimal(38, 6), amount_due decimal(38, 6),"
        " created_at timestamp with time zone, finalized_at timestamp with time zone,"
        " paid_at timestamp with time zone, due_at timestamp with time zone,"
        " is_deleted boolean, is_archived boolean)"
    )
    connection.executemany(
        f"insert into invoices.invoice_history ({COLUMNS})"
        " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        INVOICES,
    )
    connection.close()
    return path


def controls(*, include_uncollectible: bool = False, age_by: str = "days past due") -> dict:
    """The notebook's controls, set as an analyst would set them."""
    return {
        "as_of_picker": mo.ui.date(value=AS_OF),
        "include_uncollectible": mo.ui.checkbox(value=include_uncollectible),
        "age_by": mo.ui.radio(["days past due", "days since issued"], value=age_by),
    }


def by_key(rows: list[Mapping[str, Any]], *keys: str) -> dict[Any, Mapping[str, Any]]:
    return {tuple(row[k] for k in keys) if len(keys) > 1 else row[keys[0]]: row for row in rows}


def test_given_open_invoices_when_aged_then_each_lands_in_the_bucket_of_its_days_past_due(
    run_notebook: RunNotebook, receivables_duckdb: Path
) -> None:
    _, defs = run_notebook(
        "receivables", "--duckdb", str(receivables_duckdb), "--as-of", "2026-03-31"
    )

    ages = {
        row["source_invoice_id"]: (row["days_past_due"], row["aging_bucket"])
        for row in defs["open_invoices"]
    }
    assert ages == {
        "in_due_today": (0, "0–30"),
        "in_no_due_date": (45, "31–60"),
        "ap_120": (120, "90+"),
        "pb_not_due": (-10, "not yet due"),
        "pb_75": (75, "61–90"),
    }
    aging = by_key(defs["aging"], "currency", "aging_bucket")
    assert {key: row["amount_due"] for key, row in aging.items()} == {
        ("bhd", "not yet due"): Decimal("12.345"),
        ("bhd", "61–90"): Decimal("7.005"),
        ("usd", "0–30"): Decimal("100.00"),
        ("usd", "31–60"): Decimal("250.50"),
        ("usd", "90+"): Decimal("1000.00"),
    }


def test_given_paid_void_deleted_archived_or_later_invoices_then_none_is_receivable(
    run_notebook: RunNotebook, receivables_duckdb: Path
) -> None:
    _, defs = run_notebook(
        "receivables", "--duckdb", str(receivables_duckdb), "--as-of", "2026-03-31"
    )

    listed = {row["source_invoice_id"] for row in defs["open_invoices"]}
    assert not listed & {
        "in_paid",
        "in_deleted",
        "ap_archived",
        "in_void",
        "in_future",
        "in_uncollectible",
    }
    # and the receivable ones are all there (an empty list would pass the line above)
    assert listed == {"in_due_today", "in_no_due_date", "ap_120", "pb_not_due", "pb_75"}


def test_given_several_currencies_when_totalled_then_open_and_overdue_stay_per_currency(
    run_notebook: RunNotebook, receivables_duckdb: Path
) -> None:
    _, defs = run_notebook(
        "receivables", "--duckdb", str(receivables_duckdb), "--as-of", "2026-03-31"
    )

    totals = by_key(defs["receivables_by_currency"], "currency")
    assert set(totals) == {"usd", "bhd"}
    assert (totals["usd"]["open_invoices"], totals["usd"]["open_amount"]) == (3, Decimal("1350.50"))
    # due today is not overdue yet
    assert (totals["usd"]["overdue_invoices"], totals["usd"]["overdue_amount"]) == (
        2,
        Decimal("1250.50"),
    )
    assert totals["usd"]["overdue_share"] == "92.60 %"
    assert (totals["bhd"]["open_amount"], totals["bhd"]["overdue_amount"]) == (
        Decimal("19.350"),
        Decimal("7.005"),
    )


def test_given_a_customer_overdue_in_two_sources_then_it_tops_the_overdue_customers(
    run_notebook: RunNotebook, receivables_duckdb: Path
) -> None:
    _, defs = run_notebook(
        "receivables", "--duckdb", str(receivables_duckdb), "--as-of", "2026-03-31"
    )

    assert defs["currency_picker"].value == "usd"  # the currency with the most open invoices
    assert defs["top_overdue_customers"] == [
        {
            "customer_id": "cus_A",
            "currency": "usd",
            "overdue_invoices": 2,
            "overdue_amount": Decimal("1250.50"),
            "most_days_past_due": 120,
        }
    ]
    chart = defs["top_customers_chart"].to_dict()
    assert {value["customer_id"] for value in chart["data"]["values"]} == {"cus_A"}


def test_given_uncollectible_included_when_aged_then_written_off_invoices_count_as_owed(
    run_notebook: RunNotebook, receivables_duckdb: Path
) -> None:
    _, defs = run_notebook(
        "receivables",
        "--duckdb",
        str(receivables_duckdb),
        defs=controls(include_uncollectible=True),
    )

    totals = by_key(defs["receivables_by_currency"], "currency")
    assert totals["jpy"]["overdue_amount"] == Decimal("5000")
    assert totals["jpy"]["open_amount"] == Decimal("5000")


def test_given_age_by_issue_date_when_aged_then_buckets_follow_days_since_issued(
    run_notebook: RunNotebook, receivables_duckdb: Path
) -> None:
    _, defs = run_notebook(
        "receivables",
        "--duckdb",
        str(receivables_duckdb),
        defs=controls(age_by="days since issued"),
    )

    buckets = {row["source_invoice_id"]: row["aging_bucket"] for row in defs["open_invoices"]}
    # created 2025-11-01 (150 days before), except the one finalized on 2026-02-14 (45 days)
    assert buckets == {
        "in_due_today": "90+",
        "in_no_due_date": "31–60",
        "ap_120": "90+",
        "pb_not_due": "90+",
        "pb_75": "90+",
    }


def test_given_the_stripe_sandbox_when_receivables_run_then_open_amounts_match_landed_invoices(
    run_notebook: RunNotebook, demo_duckdb: Path
) -> None:
    _, defs = run_notebook("receivables", "--duckdb", str(demo_duckdb))

    landed = query_duckdb(
        demo_duckdb,
        "select currency, count(*), sum(amount_remaining) from invoices.stripe_invoices"
        " where status = 'open' and not is_deleted and amount_remaining > 0 group by currency",
    )
    expected = {
        currency: (count, to_major(int(total), currency)) for currency, count, total in landed
    }
    assert expected, "the sandbox has open invoices"
    assert {
        row["currency"]: (row["open_invoices"], row["open_amount"])
        for row in defs["receivables_by_currency"]
    } == expected
    assert defs["aging_chart"].to_dict()["data"]["values"], "the aging chart has data"
