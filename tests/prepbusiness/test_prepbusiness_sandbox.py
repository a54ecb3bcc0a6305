"""The PrepBusiness sandbox: the documented API behaviour, seeding, and the link to Stripe."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta, timezone

import httpx
import pytest

from invoice_source.errors import ApiError
from invoice_source.prepbusiness.client import PrepBusinessClient, PrepBusinessValidationError
from invoice_source.sandbox.prepbusiness import (
    DRAFT,
    FINALIZED,
    MISMATCH_NEVER_PUSHED,
    MISMATCH_PAID_ONE_SIDE,
    MISMATCH_TOTAL_DIFFERS,
    PAID,
    PAYMENT_FAILED,
    PrepBusinessApp,
)
from invoice_source.sandbox.server import serving
from invoice_source.sandbox.stripe import StripeApp

from .conftest import FakeStripe

MakeClient = Callable[..., PrepBusinessClient]


def provider_headers(app: PrepBusinessApp) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.service_provider_token}", "Accept": "application/json"}


def stripe_consistency(app: PrepBusinessApp, stripe: FakeStripe) -> dict[str, list[int]]:
    """PrepBusiness invoices that do not reconcile with Stripe, by what differs."""
    differences: dict[str, list[int]] = {}
    for invoice_id in app.invoice_ids():
        invoice = app.invoices[invoice_id]
        if invoice.status == DRAFT:
            continue
        if invoice.stripe_invoice_id is None:
            differences.setdefault("not_on_stripe", []).append(invoice_id)
            continue
        on_stripe = stripe.invoices[invoice.stripe_invoice_id]
        if on_stripe["total"] != int(invoice.total * 100):
            differences.setdefault("total", []).append(invoice_id)
        if on_stripe["status"] != ("paid" if invoice.status == PAID else "open"):
            differences.setdefault("status", []).append(invoice_id)
    return differences


@pytest.mark.parametrize(
    ("q", "complaint"),
    [
        ("total>100", 'unknown field "total"'),
        ('created_at>="2026-01-01"', "needs the $DATE modifier"),
        ('created_at$DATE>="15/01/2026"', "YYYY-MM-DD"),
        ("stripe_invoice_id>in_1", "only supports the : operator"),
        ("id:abc", "takes an integer"),
        ("id:1 AND", "ends with AND or OR"),
        ("id:1 id:2", "expected AND or OR"),
        ('id$DATE:"2026-01-01"', "does not apply to id"),
    ],
)
def test_given_a_q_outside_the_documented_language_when_listing_then_422_on_q(
    q: str, complaint: str, make_client: MakeClient
) -> None:
    with pytest.raises(PrepBusinessValidationError) as error:
        make_client().list_invoices(q)

    assert error.value.status_code == 422
    assert list(error.value.errors) == ["q"]
    assert complaint in str(error.value)


def test_given_date_clauses_when_listing_then_the_utc_day_decides_inclusively(
    pb_app: PrepBusinessApp, make_client: MakeClient
) -> None:
    first = (pb_app.now() - timedelta(days=200)).date()
    last = (pb_app.now() - timedelta(days=100)).date()

    found = make_client().list_invoices(
        f'created_at$DATE>="{first.isoformat()}" AND created_at$DATE<={last.isoformat()}'
    )

    expected = [
        i
        for i in pb_app.invoice_ids()
        if first <= pb_app.invoices[i].created_at.astimezone(timezone.utc).date() <= last
    ]
    assert expected and [invoice.id for invoice in found] == expected


def test_given_and_and_or_when_listing_then_and_binds_tighter(
    pb_app: PrepBusinessApp, make_client: MakeClient
) -> None:
    ids = pb_app.invoice_ids()
    day = pb_app.invoices[ids[10]].created_at.date().isoformat()

    found = make_client().list_invoices(f'id:{ids[20]} OR id>{ids[5]} AND created_at$DATE<"{day}"')

    assert [invoice.id for invoice in found] == [*ids[6:10], ids[20]]


def test_given_a_stripe_invoice_id_when_searched_then_its_invoice_is_found(
    pb_app: PrepBusinessApp, make_client: MakeClient
) -> None:
    invoice_id = pb_app.invoice_ids(status=PAID)[3]
    stripe_id = pb_app.invoices[invoice_id].stripe_invoice_id

    found = make_client().list_invoices(f'stripe_invoice_id:"{stripe_id}"')

    assert [invoice.id for invoice in found] == [invoice_id]


def test_given_a_very_long_q_when_listing_then_414(make_client: MakeClient) -> None:
    q = " OR ".join(f"id:{n}" for n in range(1, 800))

    with pytest.raises(ApiError) as error:
        make_client().list_invoices(q)

    assert error.value.status_code == 414


def test_given_per_page_over_100_when_listing_then_422_on_per_page(
    pb_app: PrepBusinessApp, base_url: str
) -> None:
    response = httpx.get(
        f"{base_url}/billing/invoices",
        params={"per_page": 500},
        headers=provider_headers(pb_app),
    )

    assert response.status_code == 422
    assert list(response.json()["errors"]) == ["per_page"]


def test_given_a_list_request_when_answered_then_it_is_laravels_flat_paginator(
    pb_app: PrepBusinessApp, base_url: str
) -> None:
    response = httpx.get(
        f"{base_url}/billing/invoices",
        params={"page": 2, "per_page": 20, "q": 'created_at$DATE>="2000-01-01"'},
        headers=provider_headers(pb_app),
    )

    body = response.json()
    assert set(body) == {
        "current_page",
        "data",
        "first_page_url",
        "from",
        "last_page",
        "last_page_url",
        "links",
        "next_page_url",
        "path",
        "per_page",
        "prev_page_url",
        "to",
        "total",
    }
    assert (body["current_page"], body["from"], body["to"]) == (2, 21, 40)
    assert body["total"] == pb_app.count() and body["last_page"] == -(-pb_app.count() // 20)
    assert body["next_page_url"].endswith("/api/billing/invoices?page=3"), "q is not kept"
    assert [link["label"] for link in body["links"]][:3] == ["&laquo; Previous", "1", "2"]
    assert b'"total":' in response.content and b'"total":"' not in response.content


def test_given_the_api_token_parameter_when_listing_then_it_is_accepted_like_the_real_api(
    pb_app: PrepBusinessApp, base_url: str
) -> None:
    response = httpx.get(
        f"{base_url}/billing/invoices", params={"api_token": pb_app.service_provider_token}
    )

    assert response.status_code == 200 and response.json()["total"] == pb_app.count()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"charge_ids": [1,', 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"charge_ids": "1,2"}', 422, "The charge ids field must be an array."),
    ],
)
def test_given_a_bad_body_when_creating_an_invoice_then_laravels_status_and_message(
    body: bytes, status: int, message: str, pb_app: PrepBusinessApp, base_url: str
) -> None:
    response = httpx.post(
        f"{base_url}/billing/invoices",
        content=body,
        headers={**provider_headers(pb_app), "Content-Type": "application/json"},
    )

    assert response.status_code == status
    assert message in response.json()["message"]


def test_given_a_bad_token_when_calling_then_401_unauthenticated(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/billing/invoices/1/finalize", headers={"Authorization": "Bearer nope"}
    )

    assert (response.status_code, response.json()) == (401, {"message": "Unauthenticated."})


def test_given_a_non_numeric_invoice_id_when_finalizing_then_404_model_not_found(
    pb_app: PrepBusinessApp, base_url: str
) -> None:
    response = httpx.post(
        f"{base_url}/billing/invoices/abc/finalize", headers=provider_headers(pb_app)
    )

    assert response.status_code == 404
    assert response.json()["message"].startswith("No query results for model")


def test_given_a_wrong_method_when_calling_then_405(pb_app: PrepBusinessApp, base_url: str) -> None:
    response = httpx.delete(f"{base_url}/billing/invoices", headers=provider_headers(pb_app))

    assert response.status_code == 405


def test_given_a_seeded_sandbox_when_inspected_then_every_state_and_exactly_three_mismatches(
    pb_app: PrepBusinessApp, fake_stripe: FakeStripe
) -> None:
    statuses = {pb_app.invoices[i].status for i in pb_app.invoice_ids()}
    created = [inv.created_at for inv in pb_app.invoices.values()]

    assert statuses == {DRAFT, FINALIZED, PAID, PAYMENT_FAILED}
    assert {inv.merchant_id for inv in pb_app.invoices.values()} == set(pb_app.merchants)
    assert pb_app.now() - min(created) > timedelta(days=500)
    mismatches = pb_app.deliberate_mismatches
    assert stripe_consistency(pb_app, fake_stripe) == {
        "not_on_stripe": [mismatches[MISMATCH_NEVER_PUSHED]],
        "total": [mismatches[MISMATCH_TOTAL_DIFFERS]],
        "status": [mismatches[MISMATCH_PAID_ONE_SIDE]],
    }
    stripe_id = pb_app.invoices[mismatches[MISMATCH_TOTAL_DIFFERS]].stripe_invoice_id
    assert stripe_id is not None
    total = pb_app.invoices[mismatches[MISMATCH_TOTAL_DIFFERS]].total
    assert fake_stripe.invoices[stripe_id]["total"] - int(total * 100) == 500


def test_given_the_same_seed_when_seeded_twice_then_the_same_invoices(
    fake_stripe: FakeStripe,
) -> None:
    def summary(app: PrepBusinessApp) -> list[tuple[object, ...]]:
        return [
            (inv.id, inv.merchant_id, inv.status, inv.total, len(inv.charge_ids))
            for inv in app.invoices.values()
        ]

    first, second = PrepBusinessApp(seed=5), PrepBusinessApp(seed=5)
    first.seed_invoices(40)
    second.seed_invoices(40)

    assert summary(first) == summary(second)
    assert first.deliberate_mismatches == second.deliberate_mismatches


def test_given_a_demo_day_when_applied_then_the_mismatches_survive_and_the_rest_reconciles(
    pb_app: PrepBusinessApp, fake_stripe: FakeStripe
) -> None:
    before = dict(pb_app.deliberate_mismatches)

    changes = pb_app.demo_changes()

    assert changes["pushed_to_stripe"] > 0 and changes["collected_failed"] == 1
    assert pb_app.deliberate_mismatches == before
    differences = stripe_consistency(pb_app, fake_stripe)
    assert differences["not_on_stripe"] == [before[MISMATCH_NEVER_PUSHED]]
    assert differences["total"] == [before[MISMATCH_TOTAL_DIFFERS]]
    failed = [i for i in differences["status"] if pb_app.invoices[i].status != PAID]
    assert failed == [], "only the deliberate one may be paid on one side"


def test_given_the_real_stripe_sandbox_when_billing_then_invoices_reconcile_over_http() -> None:
    stripe = StripeApp(seed=3)
    stripe.seed_invoices(20)
    app = PrepBusinessApp(seed=3, stripe=stripe)
    app.seed_invoices(30)

    with serving(app) as server:
        client = PrepBusinessClient(
            base_url=f"{server.url}/api",
            token=app.merchant_token(12),
            merchant_id=12,
            requests_per_second=0,
        )
        invoice = client.create_invoice()
        client.finalize_invoice(invoice.id)
        paid = client.collect_invoice(invoice.id)
        client.close()

    assert paid.is_paid and paid.stripe_invoice_id is not None
    on_stripe = stripe.get(paid.stripe_invoice_id)
    assert on_stripe is not None and on_stripe["status"] == "paid"
    assert invoice.total is not None and on_stripe["total"] == int(invoice.total * 100)
    assert on_stripe["metadata"]["prepbusiness_invoice_id"] == str(invoice.id)
    never_pushed = app.invoices[app.deliberate_mismatches[MISMATCH_NEVER_PUSHED]]
    assert never_pushed.status == FINALIZED and never_pushed.stripe_invoice_id is None
    one_side = app.invoices[app.deliberate_mismatches[MISMATCH_PAID_ONE_SIDE]]
    assert one_side.stripe_invoice_id is not None
    assert (one_side.status, stripe.invoice_status(one_side.stripe_invoice_id)) == (PAID, "open")
    for invoice_id in app.invoice_ids(status=PAID):
        if invoice_id != app.deliberate_mismatches[MISMATCH_PAID_ONE_SIDE]:
            stripe_id = app.invoices[invoice_id].stripe_invoice_id
            assert stripe_id is not None and stripe.invoice_status(stripe_id) == "paid"
    assert app.unmatched == []
