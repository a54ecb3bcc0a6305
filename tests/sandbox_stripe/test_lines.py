"""Line items: at most ten embedded per invoice, the rest paged from /v1/invoices/{id}/lines."""

from __future__ import annotations

import httpx

from invoice_source.sandbox.stripe import StripeApp


def test_given_25_lines_when_the_invoice_is_read_then_ten_are_embedded_with_has_more(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice_id = app.add_invoice(lines=25, status="open")

    lines = stripe.get(f"/invoices/{invoice_id}").json()["lines"]

    assert len(lines["data"]) == 10
    assert lines["has_more"] is True
    assert lines["total_count"] == 25
    assert lines["url"] == f"/v1/invoices/{invoice_id}/lines"


def test_given_25_lines_when_paged_after_the_embedded_ones_then_the_other_15_follow_in_order(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice_id = app.add_invoice(lines=25, status="open")
    embedded = stripe.get(f"/invoices/{invoice_id}").json()["lines"]["data"]
    everything = stripe.get(f"/invoices/{invoice_id}/lines", params={"limit": 100}).json()

    first = stripe.get(
        f"/invoices/{invoice_id}/lines",
        params={"limit": 10, "starting_after": embedded[-1]["id"]},
    ).json()
    second = stripe.get(
        f"/invoices/{invoice_id}/lines",
        params={"limit": 10, "starting_after": first["data"][-1]["id"]},
    ).json()

    all_ids = [line["id"] for line in everything["data"]]
    assert len(all_ids) == len(set(all_ids)) == 25
    assert everything["has_more"] is False
    assert [line["id"] for line in embedded] == all_ids[:10]
    assert [line["id"] for line in first["data"]] == all_ids[10:20]
    assert first["has_more"] is True
    assert [line["id"] for line in second["data"]] == all_ids[20:]
    assert second["has_more"] is False
    assert first["url"] == f"/v1/invoices/{invoice_id}/lines"


def test_given_ending_before_when_paging_lines_back_then_the_preceding_lines_return(
    app: StripeApp, stripe: httpx.Client
) -> None:
    invoice_id = app.add_invoice(lines=25)
    all_ids = [
        line["id"]
        for line in stripe.get(f"/invoices/{invoice_id}/lines", params={"limit": 100}).json()[
            "data"
        ]
    ]

    page = stripe.get(
        f"/invoices/{invoice_id}/lines", params={"limit": 5, "ending_before": all_ids[12]}
    ).json()

    assert [line["id"] for line in page["data"]] == all_ids[7:12]
    assert page["has_more"] is True


def test_given_the_seeded_account_when_read_then_some_invoices_exceed_ten_lines_and_sum_up(
    app: StripeApp, stripe: httpx.Client
) -> None:
    long_ones = [i for i in app.invoice_ids() if app.line_count(i) > 10]
    assert long_ones, "the seed should give about 5% of invoices more than ten lines"
    invoice_id = long_ones[0]

    invoice = stripe.get(f"/invoices/{invoice_id}").json()
    lines = stripe.get(f"/invoices/{invoice_id}/lines", params={"limit": 100}).json()["data"]

    assert invoice["lines"]["has_more"] is True
    assert len(lines) == app.line_count(invoice_id) == invoice["lines"]["total_count"]
    assert sum(line["amount"] for line in lines) == invoice["subtotal"]


def test_given_an_unknown_invoice_when_its_lines_are_listed_then_404_resource_missing(
    stripe: httpx.Client,
) -> None:
    response = stripe.get("/invoices/in_1Sbxdoesnotexist/lines")

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "resource_missing"
    assert error["type"] == "invalid_request_error"
