"""Seeded data: deterministic, realistic variety, internally consistent amounts, flat memory."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from typing import Any

import httpx
import pytest

from invoice_source import money
from invoice_source.sandbox.stripe import StripeApp
from tests.sandbox_stripe.conftest import NOW, SEEDED_INVOICES


def every_invoice(app: StripeApp, stripe: httpx.Client) -> list[dict[str, Any]]:
    """Every seeded invoice with all of its lines (the ones past ten read from /lines)."""
    invoices = []
    for invoice_id in app.invoice_ids():
        invoice = app.get(invoice_id)
        assert invoice is not None
        if invoice["lines"]["has_more"]:
            invoice["lines"]["data"] = stripe.get(
                f"/invoices/{invoice_id}/lines", params={"limit": 100}
            ).json()["data"]
        invoices.append(invoice)
    return invoices


@pytest.fixture
def seeded(app: StripeApp, stripe: httpx.Client) -> list[dict[str, Any]]:
    return every_invoice(app, stripe)


def test_given_the_same_seed_and_clock_when_read_then_the_bytes_are_identical(
    app: StripeApp, stripe: httpx.Client
) -> None:
    twin = StripeApp(seed=7, clock=lambda: NOW)
    twin.seed_invoices(SEEDED_INVOICES)
    other = StripeApp(seed=8, clock=lambda: NOW)
    other.seed_invoices(SEEDED_INVOICES)
    page = stripe.get("/invoices", params={"limit": 100}).content

    assert twin.invoice_ids() == app.invoice_ids()
    assert [twin.get(i) for i in twin.invoice_ids()[:50]] == [
        app.get(i) for i in app.invoice_ids()[:50]
    ]
    assert stripe.get("/invoices", params={"limit": 100}).content == page
    assert [other.get(i) for i in other.invoice_ids()[:50]] != [
        app.get(i) for i in app.invoice_ids()[:50]
    ]


def assert_amounts_consistent(invoice: dict[str, Any]) -> None:
    """Stripe's amount identities hold for one invoice (all of its lines included)."""
    lines = invoice["lines"]["data"]
    assert len(lines) == invoice["lines"]["total_count"], invoice["id"]
    discounts = sum(d["amount"] for d in invoice["total_discount_amounts"])
    exclusive = sum(t["amount"] for t in invoice["total_tax_amounts"] if not t["inclusive"])
    all_tax = sum(t["amount"] for t in invoice["total_tax_amounts"])
    assert sum(line["amount"] for line in lines) == invoice["subtotal"], invoice["id"]
    assert invoice["total"] == invoice["subtotal"] - discounts + exclusive, invoice["id"]
    assert invoice["total_excluding_tax"] == invoice["total"] - all_tax
    assert invoice["tax"] == (all_tax if invoice["total_tax_amounts"] else None)
    assert invoice["amount_due"] == invoice["total"]
    assert invoice["amount_remaining"] == invoice["amount_due"] - invoice["amount_paid"]
    if invoice["status"] == "paid":
        assert invoice["amount_paid"] == invoice["amount_due"] and invoice["paid"] is True
        assert invoice["amount_remaining"] == 0
    else:
        assert invoice["amount_paid"] == 0 and invoice["paid"] is False
    for line in lines:
        line_discounts = sum(d["amount"] for d in line["discount_amounts"])
        assert 0 <= line_discounts <= line["amount"]
        if line["price"]["unit_amount"] is not None:
            assert line["price"]["unit_amount"] * line["quantity"] == line["amount"]
        for tax in line["tax_amounts"]:
            if tax["inclusive"]:
                assert tax["taxable_amount"] + tax["amount"] == line["amount"] - line_discounts
            else:
                assert tax["taxable_amount"] == line["amount"] - line_discounts
    assert sum(d["amount"] for line in lines for d in line["discount_amounts"]) == discounts


def test_given_every_seeded_invoice_then_its_amounts_are_consistent(
    seeded: list[dict[str, Any]],
) -> None:
    for invoice in seeded:
        assert_amounts_consistent(invoice)


def test_given_a_day_of_demo_changes_then_every_invoice_still_adds_up(
    app: StripeApp, stripe: httpx.Client
) -> None:
    app.demo_changes()

    invoices = every_invoice(app, stripe)

    assert len(invoices) == SEEDED_INVOICES - 3 + 40
    for invoice in invoices:
        assert_amounts_consistent(invoice)


def test_given_every_seeded_invoice_then_status_transitions_match_its_status(
    seeded: list[dict[str, Any]],
) -> None:
    stamp_of_status = {
        "paid": "paid_at",
        "void": "voided_at",
        "uncollectible": "marked_uncollectible_at",
    }
    for invoice in seeded:
        transitions = invoice["status_transitions"]
        if invoice["status"] == "draft":
            assert set(transitions.values()) == {None} and invoice["number"] is None
            continue
        assert invoice["number"]
        assert invoice["created"] <= transitions["finalized_at"] <= NOW
        set_stamps = {key for key, value in transitions.items() if value is not None}
        expected = {"finalized_at"} | (
            {stamp_of_status[invoice["status"]]} if invoice["status"] in stamp_of_status else set()
        )
        assert set_stamps == expected, invoice["id"]
        assert all(transitions["finalized_at"] <= transitions[key] <= NOW for key in set_stamps)
        if invoice["collection_method"] == "send_invoice":
            assert invoice["due_date"] > transitions["finalized_at"]
        else:
            assert invoice["due_date"] is None


def test_given_the_seed_then_currencies_statuses_and_line_features_vary_realistically(
    seeded: list[dict[str, Any]],
) -> None:
    currencies = Counter(invoice["currency"] for invoice in seeded)
    statuses = Counter(invoice["status"] for invoice in seeded)
    lines = [line for invoice in seeded for line in invoice["lines"]["data"]]
    line_counts = [invoice["lines"]["total_count"] for invoice in seeded]

    assert set(currencies) == {"usd", "eur", "gbp", "cad", "chf", "jpy", "krw", "bhd", "kwd"}
    assert currencies.most_common(1)[0][0] == "usd"
    assert set(statuses) == {"draft", "open", "paid", "void", "uncollectible"}
    assert min(line_counts) == 1 and max(line_counts) <= 15
    assert 0.01 < sum(count > 10 for count in line_counts) / len(line_counts) < 0.12
    assert any(line["proration"] for line in lines)
    assert {line["type"] for line in lines} == {"subscription", "invoiceitem"}
    assert {t["inclusive"] for line in lines for t in line["tax_amounts"]} == {True, False}
    assert any(line["discounts"] for line in lines), "line-level discounts"
    assert any(invoice["discount"] for invoice in seeded), "invoice-level discounts"
    assert len({frozenset(invoice["metadata"]) for invoice in seeded}) > 5
    assert len({invoice["customer"] for invoice in seeded}) < len(seeded), "customers repeat"
    assert any(invoice["collection_method"] == "send_invoice" for invoice in seeded)


def test_given_the_seed_then_amounts_have_each_currencys_magnitude_and_step(
    seeded: list[dict[str, Any]],
) -> None:
    for invoice in seeded:
        currency = invoice["currency"]
        for line in invoice["lines"]["data"]:
            unit = money.to_major(line["price"]["unit_amount"], currency)
            assert unit is not None
            if currency in ("jpy", "krw"):
                assert unit >= 500, (invoice["id"], unit)
            else:
                assert 2 <= unit <= 3_000, (invoice["id"], unit)
        if money.exponent(currency) == 3:
            amounts = [invoice["total"], *(line["amount"] for line in invoice["lines"]["data"])]
            assert all(amount % 10 == 0 for amount in amounts), invoice["id"]


def test_given_the_seed_then_ids_look_like_stripe_ids(seeded: list[dict[str, Any]]) -> None:
    invoice = next(i for i in seeded if i["lines"]["data"][0]["type"] == "invoiceitem")
    subscription = next(i for i in seeded if i["subscription"])
    line = invoice["lines"]["data"][0]
    subscription_line = next(
        line for line in subscription["lines"]["data"] if line["type"] == "subscription"
    )

    assert invoice["id"].startswith("in_") and invoice["customer"].startswith("cus_")
    assert line["id"].startswith("il_") and line["invoice_item"].startswith("ii_")
    assert line["price"]["id"].startswith("price_")
    assert line["price"]["product"].startswith("prod_")
    assert subscription_line["subscription_item"].startswith("si_")
    assert subscription["subscription"].startswith("sub_")
    taxes = [t for i in seeded for ln in i["lines"]["data"] for t in ln["tax_amounts"]]
    assert all(t["tax_rate"].startswith("txr_") for t in taxes)
    discounts = [d for i in seeded for d in i["total_discount_amounts"]]
    assert discounts and all(d["discount"].startswith("di_") for d in discounts)


def test_given_100k_seeded_invoices_then_memory_stays_small_and_the_oldest_page_lists(
    server: Any,
) -> None:
    big = StripeApp(seed=3, clock=lambda: NOW)
    tracemalloc.start()
    big.seed_invoices(100_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert big.count() == 100_000
    assert peak < 8_000_000, f"seeding 100k invoices peaked at {peak / 1e6:.1f} MB"
    oldest = big.get(big.invoice_ids()[0])
    newest = big.get(big.invoice_ids()[-1])
    assert oldest is not None and newest is not None
    assert oldest["created"] < newest["created"]


def test_given_a_second_seeding_window_then_both_batches_interleave_in_created_order(
    app: StripeApp, stripe: httpx.Client
) -> None:
    app.seed_invoices(50, start=NOW - 400 * 86_400, end=NOW - 300 * 86_400)

    keys: list[tuple[int, str]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = stripe.get("/invoices", params=params).json()
        keys += [(i["created"], i["id"]) for i in page["data"]]
        if not page["has_more"]:
            break
        params["starting_after"] = page["data"][-1]["id"]

    assert len(keys) == SEEDED_INVOICES + 50 == app.count()
    assert keys == sorted(keys, reverse=True)


def test_given_demo_changes_then_a_day_of_business_happens_deterministically(
    app: StripeApp, stripe: httpx.Client
) -> None:
    twin = StripeApp(seed=7, clock=lambda: NOW)
    twin.seed_invoices(SEEDED_INVOICES)
    before = app.count()

    counts = app.demo_changes()

    assert counts == twin.demo_changes()
    assert counts == {
        "paid": 20,
        "voided": 5,
        "uncollectible": 2,
        "finalized": 10,
        "deleted": 3,
        "lines_added": 2,
        "created": 40,
    }
    assert app.count() == before - 3 + 40
    assert app.invoice_ids() == twin.invoice_ids()
    new = stripe.get("/invoices", params={"limit": 40, "created": NOW}).json()["data"]
    assert len(new) == 40 and any(i["lines"]["total_count"] > 10 for i in new)
    types = Counter(app.event_types())
    assert types["invoice.paid"] >= 20 and types["invoice.voided"] == 5
    assert types["invoice.deleted"] == 3 and types["invoice.created"] == 40
