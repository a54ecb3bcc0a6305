"""/v1/events: 30-day retention on the sandbox clock, type filters, paging, restricted keys."""

from __future__ import annotations

from typing import Any

import httpx

from invoice_source.sandbox.stripe import StripeApp
from tests.sandbox_stripe.conftest import DAY, NOW


def event_ids(stripe: httpx.Client, **params: Any) -> list[str]:
    page = stripe.get("/events", params={"limit": 100, **params}).json()
    return [event["id"] for event in page["data"]]


def types_listed(stripe: httpx.Client, **params: Any) -> list[str]:
    return [event["type"] for event in stripe.get("/events", params=params).json()["data"]]


def test_given_events_older_than_30_days_when_listed_then_they_are_gone(
    app: StripeApp, stripe: httpx.Client
) -> None:
    old = app.add_invoice(lines=1)
    app.advance_clock(20 * DAY)
    recent = app.add_invoice(lines=1)
    app.advance_clock(11 * DAY)

    listed = stripe.get("/events").json()["data"]

    assert [event["data"]["object"]["id"] for event in listed] == [recent]
    assert listed[0]["created"] == NOW + 20 * DAY
    assert app.get(old) is not None, "the invoice itself stays; only its event expired"


def test_given_exactly_30_days_when_listed_then_the_event_is_still_kept(
    app: StripeApp, stripe: httpx.Client
) -> None:
    app.add_invoice(lines=1)
    app.advance_clock(30 * DAY)

    assert len(event_ids(stripe)) == 1

    app.advance_clock(1)

    assert event_ids(stripe) == []


def test_given_a_wildcard_type_when_listed_then_only_invoice_events_not_invoiceitem_ones(
    app: StripeApp, stripe: httpx.Client
) -> None:
    draft = app.add_invoice(lines=1)
    app.add_line(draft, 700, "Extra")

    invoice_types = types_listed(stripe, type="invoice.*")
    item_types = types_listed(stripe, type="invoiceitem.*")
    both = types_listed(stripe, **{"types[]": ["invoice.created", "invoiceitem.created"]})

    assert invoice_types == ["invoice.updated", "invoice.created"]
    assert item_types == ["invoiceitem.created"]
    assert both == ["invoiceitem.created", "invoice.created"]


def test_given_many_events_when_paged_both_ways_then_every_event_once_in_order(
    app: StripeApp, stripe: httpx.Client
) -> None:
    for _ in range(12):
        app.add_invoice(lines=1, status="paid")  # 4 events each
    everything = event_ids(stripe)

    forward: list[str] = []
    params: dict[str, Any] = {"limit": 7}
    while True:
        page = stripe.get("/events", params=params).json()
        forward += [event["id"] for event in page["data"]]
        if not page["has_more"]:
            break
        params["starting_after"] = page["data"][-1]["id"]
    back = stripe.get("/events", params={"limit": 5, "ending_before": everything[20]}).json()

    assert len(everything) == 48 and everything == sorted(everything, reverse=True)
    assert forward == everything
    assert [event["id"] for event in back["data"]] == everything[15:20]
    assert back["has_more"] is True


def test_given_a_created_filter_when_listing_events_then_only_events_inside_it(
    app: StripeApp, stripe: httpx.Client
) -> None:
    app.add_invoice(lines=1)
    app.advance_clock(DAY)
    later = app.add_invoice(lines=1)

    listed = stripe.get("/events", params={"created[gte]": NOW + DAY}).json()["data"]

    assert [event["data"]["object"]["id"] for event in listed] == [later]


def test_given_a_basil_request_when_listing_events_then_objects_keep_the_account_version(
    app: StripeApp, stripe: httpx.Client
) -> None:
    app.add_invoice(lines=1)

    event = stripe.get("/events", headers={"Stripe-Version": "2025-03-31.basil"}).json()["data"][0]

    assert event["api_version"] == "2022-11-15"
    assert "paid" in event["data"]["object"]
    assert "price" in event["data"]["object"]["lines"]["data"][0]


def test_given_a_basil_account_when_events_are_emitted_then_objects_are_in_the_basil_shape(
    app: StripeApp, stripe: httpx.Client
) -> None:
    app.account_api_version = "2025-03-31.basil"
    app.add_invoice(lines=1)

    event = stripe.get("/events").json()["data"][0]

    assert event["api_version"] == "2025-03-31.basil"
    assert "total_taxes" in event["data"]["object"] and "paid" not in event["data"]["object"]


def test_given_a_key_without_event_access_when_listing_events_then_403_permission_error(
    app: StripeApp, stripe: httpx.Client
) -> None:
    app.events_available = False

    response = stripe.get("/events", params={"type": "invoice.*"})

    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert stripe.get("/invoices").status_code == 200


def test_given_an_unknown_event_parameter_when_listing_then_400(stripe: httpx.Client) -> None:
    response = stripe.get("/events", params={"object_id": "in_1"})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "object_id"
