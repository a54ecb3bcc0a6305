"""API versions: Stripe-Version picks the legacy (2022) or the basil (2025-03-31) shape."""

from __future__ import annotations

from typing import Any

import httpx

from invoice_source.sandbox.stripe import StripeApp

BASIL = "2025-03-31.basil"
LEGACY_ONLY_INVOICE_FIELDS = {"paid", "tax", "total_tax_amounts", "discount", "subscription"}
BASIL_ONLY_INVOICE_FIELDS = {"total_taxes", "parent", "total_pretax_credit_amounts"}
LEGACY_ONLY_LINE_FIELDS = {
    "price",
    "type",
    "proration",
    "proration_details",
    "tax_amounts",
    "tax_rates",
    "invoice_item",
    "subscription_item",
    "plan",
}
BASIL_ONLY_LINE_FIELDS = {"pricing", "parent", "taxes", "pretax_credit_amounts", "invoice"}


def taxed_subscription_invoice(app: StripeApp) -> str:
    """A seeded invoice with a subscription line and taxes, so every shape difference shows."""
    for invoice_id in app.invoice_ids():
        invoice = app.get(invoice_id)
        assert invoice is not None
        lines = invoice["lines"]["data"]
        if invoice["total_tax_amounts"] and any(line["type"] == "subscription" for line in lines):
            return invoice_id
    raise AssertionError("no taxed subscription invoice in the seed")


def read(stripe: httpx.Client, invoice_id: str, version: str | None) -> dict[str, Any]:
    headers = {"Stripe-Version": version} if version else {}
    response = stripe.get(f"/invoices/{invoice_id}", headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_given_no_version_header_when_read_then_the_account_default_legacy_shape_answers(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice = read(stripe, taxed_subscription_invoice(app), None)
    line = invoice["lines"]["data"][0]

    assert invoice.keys() >= LEGACY_ONLY_INVOICE_FIELDS
    assert not BASIL_ONLY_INVOICE_FIELDS & invoice.keys()
    assert line.keys() >= LEGACY_ONLY_LINE_FIELDS
    assert not BASIL_ONLY_LINE_FIELDS & line.keys()
    assert line["price"]["object"] == "price"
    assert line["type"] in {"invoiceitem", "subscription"}


def test_given_the_basil_version_when_read_then_lines_carry_pricing_parent_and_taxes(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice_id = taxed_subscription_invoice(app)

    legacy = read(stripe, invoice_id, "2022-11-15")
    basil = read(stripe, invoice_id, BASIL)

    assert basil.keys() >= BASIL_ONLY_INVOICE_FIELDS
    assert not LEGACY_ONLY_INVOICE_FIELDS & basil.keys()
    for old, new in zip(legacy["lines"]["data"], basil["lines"]["data"], strict=True):
        assert not LEGACY_ONLY_LINE_FIELDS & new.keys()
        assert new["id"] == old["id"] and new["amount"] == old["amount"]
        assert new["invoice"] == invoice_id
        assert new["pricing"]["price_details"]["price"] == old["price"]["id"]
        assert new["pricing"]["price_details"]["product"] == old["price"]["product"]
        assert new["pricing"]["unit_amount_decimal"] == old["price"]["unit_amount_decimal"]
        expected_parent = (
            "subscription_item_details" if old["type"] == "subscription" else "invoice_item_details"
        )
        assert new["parent"]["type"] == expected_parent
        details = new["parent"][expected_parent]
        assert details["proration"] == old["proration"]
        assert [t["amount"] for t in new["taxes"]] == [t["amount"] for t in old["tax_amounts"]]
        assert [t["tax_behavior"] == "inclusive" for t in new["taxes"]] == [
            t["inclusive"] for t in old["tax_amounts"]
        ]
        assert [t["tax_rate_details"]["tax_rate"] for t in new["taxes"]] == [
            t["tax_rate"] for t in old["tax_amounts"]
        ]
    assert basil["parent"]["subscription_details"]["subscription"] == legacy["subscription"]
    assert sum(t["amount"] for t in basil["total_taxes"]) == legacy["tax"]
    for key in ("total", "subtotal", "amount_due", "amount_paid", "amount_remaining", "status"):
        assert basil[key] == legacy[key]


def test_given_the_basil_version_when_lines_are_listed_then_they_use_the_basil_shape(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice_id = app.add_invoice(lines=12, status="open")

    lines = stripe.get(
        f"/invoices/{invoice_id}/lines", headers={"Stripe-Version": BASIL}, params={"limit": 100}
    ).json()["data"]

    assert len(lines) == 12
    assert all(line.keys() >= BASIL_ONLY_LINE_FIELDS for line in lines)
    assert all(line["pricing"]["type"] == "price_details" for line in lines)


def test_given_a_basil_account_when_read_without_a_header_then_the_basil_shape_answers(
    stripe: httpx.Client, app: StripeApp
) -> None:
    app.account_api_version = BASIL

    invoice = stripe.get("/invoices", params={"limit": 1}).json()["data"][0]
    response = stripe.get(f"/invoices/{invoice['id']}")

    assert "total_taxes" in invoice and "paid" not in invoice
    assert response.headers["Stripe-Version"] == BASIL


def test_given_a_malformed_version_when_read_then_400_names_the_header(
    stripe: httpx.Client,
) -> None:
    response = stripe.get("/invoices", headers={"Stripe-Version": "latest"})

    assert response.status_code == 400
    assert "Invalid Stripe API version" in response.json()["error"]["message"]
