"""Listing invoices: newest first, cursors both ways, created filters, status/customer filters."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from invoice_source.sandbox.stripe import StripeApp
from tests.sandbox_stripe.conftest import DAY, NOW, SEEDED_INVOICES


def list_all(stripe: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every invoice of a list, following ``starting_after``."""
    invoices: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 100, **params}
    while True:
        page = stripe.get("/invoices", params=query).json()
        invoices.extend(page["data"])
        if not page["has_more"]:
            return invoices
        query["starting_after"] = page["data"][-1]["id"]


def sort_keys(invoices: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(invoice["created"], invoice["id"]) for invoice in invoices]


def test_given_a_seeded_account_when_listed_then_pages_are_newest_first_and_complete(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoices = list_all(stripe)

    keys = sort_keys(invoices)
    assert keys == sorted(keys, reverse=True)
    assert len({invoice["id"] for invoice in invoices}) == SEEDED_INVOICES == app.count()
    assert all(NOW - 730 * DAY <= created < NOW - DAY for created, _ in keys)


def test_given_no_limit_when_listed_then_ten_invoices_and_the_list_envelope(
    stripe: httpx.Client,
) -> None:
    page = stripe.get("/invoices").json()

    assert page["object"] == "list"
    assert page["url"] == "/v1/invoices"
    assert page["has_more"] is True
    assert len(page["data"]) == 10
    assert {invoice["object"] for invoice in page["data"]} == {"invoice"}


def test_given_ending_before_when_paging_back_then_the_previous_pages_return_in_the_same_order(
    stripe: httpx.Client,
) -> None:
    forward = list_all(stripe, limit=25)
    cursor = forward[60]["id"]

    back = stripe.get("/invoices", params={"limit": 25, "ending_before": cursor}).json()
    further_back = stripe.get(
        "/invoices", params={"limit": 25, "ending_before": back["data"][0]["id"]}
    ).json()
    first = stripe.get(
        "/invoices", params={"limit": 25, "ending_before": further_back["data"][0]["id"]}
    ).json()

    assert [i["id"] for i in back["data"]] == [i["id"] for i in forward[35:60]]
    assert back["has_more"] is True
    assert [i["id"] for i in further_back["data"]] == [i["id"] for i in forward[10:35]]
    assert [i["id"] for i in first["data"]] == [i["id"] for i in forward[:10]]
    assert first["has_more"] is False


def test_given_created_bounds_when_listed_then_only_invoices_inside_them_return(
    stripe: httpx.Client,
) -> None:
    everything = list_all(stripe)
    low, high = everything[300]["created"], everything[100]["created"]

    inclusive = list_all(stripe, **{"created[gte]": low, "created[lte]": high})
    exclusive = list_all(stripe, **{"created[gt]": low, "created[lt]": high})
    exact = stripe.get("/invoices", params={"created": low}).json()["data"]

    assert {i["id"] for i in inclusive} == {
        i["id"] for i in everything if low <= i["created"] <= high
    }
    assert len(inclusive) == 201
    assert {i["id"] for i in exclusive} == {
        i["id"] for i in everything if low < i["created"] < high
    }
    assert [i["id"] for i in exact] == [everything[300]["id"]]


def test_given_a_created_window_and_a_cursor_when_paged_then_the_window_still_applies(
    stripe: httpx.Client,
) -> None:
    everything = list_all(stripe)
    window = {"created[gte]": everything[150]["created"], "created[lt]": everything[49]["created"]}

    paged = list_all(stripe, limit=7, **window)

    assert [i["id"] for i in paged] == [i["id"] for i in everything[50:151]]


def test_given_status_and_customer_filters_when_listed_then_only_matching_invoices_return(
    app: StripeApp, stripe: httpx.Client
) -> None:
    paid = list_all(stripe, status="paid")
    customer = paid[0]["customer"]
    for_customer = list_all(stripe, customer=customer)

    assert paid and {i["status"] for i in paid} == {"paid"}
    expected_paid = [i for i in app.invoice_ids() if app.invoice_status(i) == "paid"]
    assert len(paid) == len(expected_paid)
    assert for_customer and {i["customer"] for i in for_customer} == {customer}


def test_given_new_invoices_when_listed_then_they_come_first_with_ids_after_the_seeded_ones(
    app: StripeApp, stripe: httpx.Client
) -> None:
    newest_seeded = stripe.get("/invoices", params={"limit": 1}).json()["data"][0]
    added = [app.add_invoice(lines=2, status="open") for _ in range(3)]

    page = stripe.get("/invoices", params={"limit": 4}).json()["data"]

    assert [i["id"] for i in page] == [*reversed(added), newest_seeded["id"]]
    assert all(invoice_id > newest_seeded["id"] for invoice_id in added)
    assert {i["created"] for i in page[:3]} == {NOW}


def test_given_a_deleted_draft_when_listed_then_it_is_omitted(
    app: StripeApp, stripe: httpx.Client
) -> None:
    draft = app.add_invoice(lines=1)
    app.delete_draft(draft)

    ids = {invoice["id"] for invoice in list_all(stripe)}

    assert draft not in ids
    assert len(ids) == app.count() == SEEDED_INVOICES


def test_given_concurrent_readers_while_invoices_change_then_every_page_is_whole(
    app: StripeApp, stripe: httpx.Client
) -> None:
    def read_window(days_back: int) -> list[tuple[int, int, int, list[dict[str, Any]]]]:
        low, high = NOW - (days_back + 60) * DAY, NOW - days_back * DAY
        window = {"created[gte]": low, "created[lt]": high}
        pages = []
        for _ in range(5):
            response = stripe.get("/invoices", params={"limit": 20, **window})
            body = response.json() if response.status_code == 200 else {}
            pages.append((response.status_code, low, high, body.get("data") or []))
        return pages

    with ThreadPoolExecutor(max_workers=4) as pool:
        readers = [pool.submit(read_window, days) for days in range(0, 720, 60)]
        changes = app.demo_changes()
        pages = [page for reader in readers for page in reader.result()]

    assert len(pages) == 60
    for status, low, high, invoices in pages:
        assert status == 200
        created = [invoice["created"] for invoice in invoices]
        # a whole page: at most the limit, newest first, inside its window, no invoice twice
        assert len(invoices) <= 20
        assert created == sorted(created, reverse=True)
        assert all(low <= when < high for when in created)
        assert len({invoice["id"] for invoice in invoices}) == len(invoices)
    assert any(invoices for *_, invoices in pages)
    assert changes["created"] == 40
    assert len({i["id"] for i in list_all(stripe)}) == app.count()
