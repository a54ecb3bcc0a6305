"""The invoice state machine over HTTP, Stripe's refusals, and the events each change emits."""

from __future__ import annotations

from typing import Any

import httpx

from invoice_source.sandbox.stripe import StripeApp
from tests.sandbox_stripe.conftest import NOW


def events(stripe: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = stripe.get("/events", params={"limit": 100, **params}).json()[
        "data"
    ]
    return result


def create_draft(stripe: httpx.Client, customer: str = "cus_1Sbx0000000042") -> dict[str, Any]:
    response = stripe.post(
        "/invoices",
        data={"customer": customer, "currency": "eur", "metadata[order_id]": "OR-1"},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def add_item(stripe: httpx.Client, invoice: dict[str, Any], amount: int) -> httpx.Response:
    return stripe.post(
        "/invoiceitems",
        data={"customer": invoice["customer"], "invoice": invoice["id"], "amount": amount},
    )


def test_given_a_draft_created_over_http_when_items_are_added_then_totals_follow_the_lines(
    stripe: httpx.Client,
) -> None:
    draft = create_draft(stripe)

    first = stripe.post(
        "/invoiceitems",
        data={"customer": draft["customer"], "invoice": draft["id"], "amount": 1999},
    )
    second = stripe.post(
        "/invoiceitems",
        data={
            "customer": draft["customer"],
            "invoice": draft["id"],
            "unit_amount": 500,
            "quantity": 3,
            "description": "Pallets",
        },
    )
    invoice = stripe.get(f"/invoices/{draft['id']}").json()

    assert draft["status"] == "draft" and draft["total"] == 0 and draft["lines"]["data"] == []
    assert draft["metadata"] == {"order_id": "OR-1"}
    assert first.json()["object"] == "invoiceitem" and first.json()["amount"] == 1999
    assert second.json()["quantity"] == 3 and second.json()["amount"] == 1500
    assert [line["amount"] for line in invoice["lines"]["data"]] == [1999, 1500]
    assert invoice["lines"]["data"][1]["invoice_item"] == second.json()["id"]
    assert invoice["subtotal"] == invoice["total"] == invoice["amount_due"] == 3499
    assert invoice["currency"] == "eur"


def test_given_a_draft_when_finalized_and_paid_then_status_transitions_and_amounts_follow(
    stripe: httpx.Client,
) -> None:
    draft = create_draft(stripe)
    add_item(stripe, draft, 4200)

    opened = stripe.post(f"/invoices/{draft['id']}/finalize").json()
    paid = stripe.post(f"/invoices/{draft['id']}/pay").json()

    assert opened["status"] == "open"
    assert opened["number"] and opened["status_transitions"]["finalized_at"] == NOW
    assert opened["amount_remaining"] == 4200 and opened["paid"] is False
    assert paid["status"] == "paid" and paid["paid"] is True
    assert paid["amount_paid"] == paid["amount_due"] == 4200
    assert paid["amount_remaining"] == 0
    assert paid["status_transitions"]["paid_at"] == NOW


def test_given_state_changes_when_events_are_listed_then_stripe_event_types_come_newest_first(
    app: StripeApp, stripe: httpx.Client
) -> None:
    draft = create_draft(stripe)
    add_item(stripe, draft, 1000)
    stripe.post(f"/invoices/{draft['id']}/finalize")
    stripe.post(f"/invoices/{draft['id']}/mark_uncollectible")
    stripe.post(f"/invoices/{draft['id']}/void")

    listed = events(stripe)

    assert [event["type"] for event in listed] == [
        "invoice.voided",
        "invoice.marked_uncollectible",
        "invoice.finalized",
        "invoice.updated",
        "invoiceitem.created",
        "invoice.created",
    ]
    ids = [event["id"] for event in listed]
    assert ids == sorted(ids, reverse=True)
    invoice_events = [event for event in listed if event["type"].startswith("invoice.")]
    assert {event["data"]["object"]["id"] for event in invoice_events} == {draft["id"]}
    assert listed[4]["data"]["object"]["invoice"] == draft["id"]
    voided = listed[0]
    assert voided["data"]["object"]["status"] == "void"
    assert voided["data"]["previous_attributes"]["status"] == "uncollectible"
    assert voided["api_version"] == app.account_api_version
    assert "previous_attributes" not in listed[-1]["data"]


def test_given_a_finalize_event_then_previous_attributes_hold_the_old_values(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice_id = app.add_invoice(lines=2)
    app.finalize(invoice_id)

    finalized = events(stripe, type="invoice.finalized")[0]

    previous = finalized["data"]["previous_attributes"]
    assert previous["status"] == "draft"
    assert previous["number"] is None
    assert previous["status_transitions"]["finalized_at"] is None
    assert finalized["data"]["object"]["status_transitions"]["finalized_at"] == NOW


def test_given_a_paid_invoice_when_paid_again_then_400_and_no_event(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice_id = app.add_invoice(lines=1, status="paid")
    before = len(events(stripe))

    response = stripe.post(f"/invoices/{invoice_id}/pay")

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["message"] == "Invoice is already paid."
    assert len(events(stripe)) == before


def test_given_a_draft_when_paid_or_voided_then_400_refuses_the_transition(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice_id = app.add_invoice(lines=1)

    paid = stripe.post(f"/invoices/{invoice_id}/pay")
    voided = stripe.post(f"/invoices/{invoice_id}/void")

    assert paid.status_code == voided.status_code == 400
    assert paid.json()["error"]["message"].startswith("You can only pay an invoice that is open")
    assert "void" in voided.json()["error"]["message"]
    assert app.invoice_status(invoice_id) == "draft"


def test_given_an_open_invoice_when_finalized_again_or_deleted_then_400_invoice_not_editable(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice_id = app.add_invoice(lines=1, status="open")

    finalized = stripe.post(f"/invoices/{invoice_id}/finalize")
    deleted = stripe.delete(f"/invoices/{invoice_id}")
    invoice = app.get(invoice_id)
    assert invoice is not None
    item = add_item(stripe, invoice, 5)

    for response in (finalized, deleted, item):
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invoice_not_editable"
    assert app.invoice_status(invoice_id) == "open"


def test_given_a_draft_when_deleted_then_get_answers_404_and_invoice_deleted_carries_its_state(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice_id = app.add_invoice(lines=3, metadata={"order_id": "OR-9"})
    count = app.count()

    deleted = stripe.delete(f"/invoices/{invoice_id}")
    read = stripe.get(f"/invoices/{invoice_id}")

    assert deleted.json() == {"id": invoice_id, "object": "invoice", "deleted": True}
    assert read.status_code == 404
    assert app.get(invoice_id) is None and app.count() == count - 1
    assert app.invoice_status(invoice_id) == "deleted"
    event = events(stripe, type="invoice.deleted")[0]
    assert event["data"]["object"]["id"] == invoice_id
    assert event["data"]["object"]["status"] == "draft"
    assert event["data"]["object"]["metadata"] == {"order_id": "OR-9"}
    assert event["data"]["object"]["lines"]["total_count"] == 3


def test_given_add_invoice_with_status_paid_then_the_state_machine_is_walked_with_its_events(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice_id = app.add_invoice(lines=2, status="paid")

    types = [event["type"] for event in events(stripe)]
    invoice = app.get(invoice_id)

    assert types == [
        "invoice.payment_succeeded",
        "invoice.paid",
        "invoice.finalized",
        "invoice.created",
    ]
    assert invoice is not None and invoice["status"] == "paid"
    assert invoice["status_transitions"]["finalized_at"] == invoice["status_transitions"]["paid_at"]


def test_given_a_seeded_open_invoice_when_paid_then_its_rendering_changes_but_others_do_not(
    app: StripeApp, stripe: httpx.Client
) -> None:
    opened = [i for i in app.invoice_ids() if app.invoice_status(i) == "open"][:2]
    untouched_before = stripe.get(f"/invoices/{opened[1]}").content
    stripe.get(f"/invoices/{opened[0]}")

    stripe.post(f"/invoices/{opened[0]}/pay")

    assert stripe.get(f"/invoices/{opened[0]}").json()["status"] == "paid"
    assert stripe.get(f"/invoices/{opened[1]}").content == untouched_before


def test_given_the_prepbusiness_link_when_an_invoice_is_pushed_then_it_is_open_now_and_payable(
    app: StripeApp,
) -> None:
    invoice_id = app.create_external_invoice(
        customer="cus_1SbxPrepMerchant",
        currency="usd",
        lines=[
            {"amount": 12_000, "description": "Prep and label", "quantity": 400},
            {"amount": 999, "description": "Storage", "quantity": 3},
        ],
        metadata={"prepbusiness_invoice_id": "77"},
    )
    invoice = app.get(invoice_id)
    assert invoice is not None

    app.pay_invoice(invoice_id)

    assert invoice["status"] == "open" and invoice["created"] == NOW
    assert invoice["customer"] == "cus_1SbxPrepMerchant"
    assert invoice["metadata"] == {"prepbusiness_invoice_id": "77"}
    assert [(line["amount"], line["quantity"]) for line in invoice["lines"]["data"]] == [
        (12_000, 400),
        (999, 3),
    ]
    assert invoice["lines"]["data"][1]["price"]["unit_amount_decimal"] == "333"
    assert invoice["total"] == 12_999
    assert app.invoice_status(invoice_id) == "paid"
