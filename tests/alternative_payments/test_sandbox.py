"""The Alternative Payments sandbox over real HTTP: tokens, scopes, cursors, filters, archive and
restore, signed links, error bodies, and the deliberate mismatches it plants."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

import httpx
import orjson
import pytest

from invoice_source.sandbox.alternative_payments import AlternativePaymentsApp
from invoice_source.sandbox.server import SandboxServer
from tests.alternative_payments.support import SEEDED_INVOICES, FakeClock


@pytest.fixture
def http(ap_server: SandboxServer) -> Iterator[httpx.Client]:
    """A plain httpx client for the sandbox."""
    with httpx.Client(base_url=ap_server.url) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def list_all(http: httpx.Client, token: str, **params: str) -> list[dict[str, object]]:
    invoices: list[dict[str, object]] = []
    after: str | None = None
    while True:
        query = {**params, **({"after": after} if after else {})}
        body = http.get("/invoices", params=query, headers=bearer(token)).json()
        invoices.extend(body["data"])
        if not body["has_next_page"]:
            return invoices
        after = body["end_cursor"]


def test_given_valid_client_credentials_when_token_requested_then_expiring_bearer_token_issued(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=(ap_app.client_id, ap_app.client_secret),
    )

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "read"
    listed = http.get("/invoices", params={"limit": "1"}, headers=bearer(body["access_token"]))
    assert listed.status_code == 200


def test_given_wrong_client_secret_when_token_requested_then_403_invalid_client_http_error(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(ap_app.client_id, "not-the-secret"),
    )

    assert response.status_code == 403
    assert response.json() == {
        "code": "invalid_client",
        "message": "Invalid client credentials.",
        "validation_errors": {},
    }


def test_given_other_grant_type_when_token_requested_then_400_unsupported_grant_type(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    response = http.post(
        "/oauth/token",
        data={"grant_type": "password"},
        auth=(ap_app.client_id, ap_app.client_secret),
    )

    assert response.status_code == 400
    assert response.json()["code"] == "unsupported_grant_type"


def test_given_token_past_its_lifetime_when_invoices_listed_then_401_token_expired(
    http: httpx.Client, ap_app: AlternativePaymentsApp, clock: FakeClock
) -> None:
    token = ap_app.issue_token()
    clock.advance(ap_app.token_lifetime_seconds)

    response = http.get("/invoices", headers=bearer(token))

    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_given_no_token_when_invoices_listed_then_401_unauthorized(http: httpx.Client) -> None:
    response = http.get("/invoices")

    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_given_write_only_token_when_invoices_listed_then_403_insufficient_scope(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    token = ap_app.issue_token({"write"})

    response = http.get("/invoices", headers=bearer(token))

    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


def test_given_read_only_token_when_invoice_archived_then_403_and_invoice_untouched(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    token = ap_app.issue_token({"invoices:read"})
    invoice = ap_app.visible_invoices()[0]

    response = http.delete(f"/invoices/{invoice.id}", headers=bearer(token))

    assert response.status_code == 403
    assert ap_app.invoices[invoice.id].status != "archived"


def test_given_unknown_invoice_when_fetched_then_404_http_error_body(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    response = http.get("/invoices/inv_missing", headers=bearer(ap_app.issue_token()))

    assert response.status_code == 404
    assert response.json() == {
        "code": "not_found",
        "message": "Invoice inv_missing not found.",
        "validation_errors": {},
    }


def test_given_invalid_invoice_when_created_then_422_lists_each_field(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    before = len(ap_app.invoices)

    response = http.post(
        "/invoices",
        json={
            "currency": "EUR",
            "due_date": "31/01/2026",
            "line_items": [{"amount": 10.005, "description": "", "quantity": 0}],
        },
        headers=bearer(ap_app.issue_token()),
    )

    assert response.status_code == 422
    assert response.json()["validation_errors"] == {
        "customer_id": "is required",
        "currency": "only USD is supported",
        "due_date": "must be a date in YYYY-MM-DD format",
        "line_items[0].amount": "must have at most 2 decimal places",
        "line_items[0].description": "is required",
        "line_items[0].quantity": "must be a positive integer",
    }
    assert len(ap_app.invoices) == before


def test_given_line_items_when_invoice_created_then_201_and_amounts_sent_as_exact_numbers(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    response = http.post(
        "/invoices",
        content=b'{"customer_id":"cus_1","line_items":[{"amount":0.10,"description":"a",'
        b'"quantity":3},{"amount":1234.56,"description":"b","quantity":1}]}',
        headers={**bearer(ap_app.issue_token()), "Content-Type": "application/json"},
    )

    assert response.status_code == 201
    assert b'"sub_total":1234.86' in response.content
    assert b'"total":1234.86' in response.content
    assert ap_app.invoices[response.json()["id"]].total == Decimal("1234.86")


def test_given_malformed_filter_when_invoices_listed_then_400_with_validation_errors(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    response = http.get(
        "/invoices",
        params={"created_at_start": "yesterday", "limit": "500", "status": "lost"},
        headers=bearer(ap_app.issue_token()),
    )

    assert response.status_code == 400
    assert set(response.json()["validation_errors"]) == {"created_at_start", "limit", "status"}


def test_given_cursor_when_inspected_then_it_is_opaque_and_a_forged_one_is_refused(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    token = ap_app.issue_token()
    body = http.get("/invoices", params={"limit": "10"}, headers=bearer(token)).json()
    cursor = body["end_cursor"]

    assert not cursor.isdigit()
    assert base64.b64decode(cursor + "=" * (-len(cursor) % 4))[:3] == b"\x81\xa1k"
    forged = http.get("/invoices", params={"after": "10"}, headers=bearer(token))
    assert forged.status_code == 400
    assert forged.json()["validation_errors"] == {"after": "is not a valid cursor"}


def test_given_invoices_arriving_between_pages_when_paging_then_none_repeated_or_skipped(
    http: httpx.Client, ap_app: AlternativePaymentsApp, clock: FakeClock
) -> None:
    token = ap_app.issue_token()
    expected = {invoice.id for invoice in ap_app.visible_invoices()}
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params = {"limit": "25", **({"after": after} if after else {})}
        body = http.get("/invoices", params=params, headers=bearer(token)).json()
        seen.extend(invoice["id"] for invoice in body["data"])
        pages += 1
        clock.advance(1)
        ap_app.create_invoice(
            customer_id="cus_new", line_items=[{"amount": "5.00", "description": "x"}]
        )
        if not body["has_next_page"]:
            break
        after = body["end_cursor"]

    assert len(seen) == len(set(seen))
    assert set(seen) == expected
    assert pages == math.ceil(len(expected) / 25)


def test_given_start_cursor_when_paging_before_then_previous_page_returns(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    token = ap_app.issue_token()
    first = http.get("/invoices", params={"limit": "20"}, headers=bearer(token)).json()
    second = http.get(
        "/invoices", params={"limit": "20", "after": first["end_cursor"]}, headers=bearer(token)
    ).json()

    back = http.get(
        "/invoices", params={"limit": "20", "before": second["start_cursor"]}, headers=bearer(token)
    ).json()

    assert [i["id"] for i in back["data"]] == [i["id"] for i in first["data"]]
    assert second["has_previous_page"] is True
    assert back["has_previous_page"] is False
    assert back["has_next_page"] is True


def test_given_filters_when_listed_then_only_matching_invoices_return(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    token = ap_app.issue_token()
    customer = ap_app.visible_invoices()[0].customer_id
    start, end = date(2025, 9, 1), date(2025, 12, 1)

    listed = list_all(
        http,
        token,
        customer_id=customer,
        status="paid",
        due_date_start=f"{start}T00:00:00Z",
        due_date_end=f"{end}T00:00:00Z",
    )

    expected = {
        invoice.id
        for invoice in ap_app.invoices.values()
        if invoice.customer_id == customer
        and invoice.status == "paid"
        and start <= invoice.due_date < end
    }
    assert expected
    assert {invoice["id"] for invoice in listed} == expected


def test_given_archived_invoice_when_listed_then_only_status_archived_lists_it(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    token = ap_app.issue_token()
    invoice = ap_app.visible_invoices()[0]

    archived = http.delete(f"/invoices/{invoice.id}", headers=bearer(token))

    assert archived.status_code == 200
    assert archived.json()["status"] == "archived"
    assert invoice.id not in {i["id"] for i in list_all(http, token)}
    assert invoice.id in {i["id"] for i in list_all(http, token, status="archived")}
    fetched = http.get(f"/invoices/{invoice.id}", headers=bearer(token)).json()
    assert fetched["status"] == "archived"
    again = http.delete(f"/invoices/{invoice.id}", headers=bearer(token))
    assert again.status_code == 422


def test_given_archived_invoice_when_restored_then_its_previous_status_returns(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    token = ap_app.issue_token()
    invoice = next(i for i in ap_app.visible_invoices() if i.status == "paid")
    http.delete(f"/invoices/{invoice.id}", headers=bearer(token))

    restored = http.post(f"/invoices/{invoice.id}/restore", headers=bearer(token))

    assert restored.status_code == 200
    assert restored.json()["status"] == "paid"
    assert invoice.id in {i["id"] for i in list_all(http, token, status="paid")}
    again = http.post(f"/invoices/{invoice.id}/restore", headers=bearer(token))
    assert again.status_code == 422


def test_given_pdf_link_when_used_then_signed_and_refused_after_expiry_or_tampering(
    http: httpx.Client, ap_app: AlternativePaymentsApp, clock: FakeClock
) -> None:
    token = ap_app.issue_token()
    invoice = ap_app.visible_invoices()[0]
    url = http.get(f"/invoices/{invoice.id}/pdf-link", headers=bearer(token)).json()["url"]

    fresh = httpx.get(url)
    tampered = httpx.get(url[:-4] + "0000")
    clock.advance(ap_app.pdf_link_lifetime_seconds)
    expired = httpx.get(url)

    assert fresh.status_code == 200
    assert fresh.content.startswith(b"%PDF")
    assert tampered.json()["code"] == "invalid_signature"
    assert expired.status_code == 403
    assert expired.json()["code"] == "link_expired"


def test_given_open_invoice_when_payment_link_requested_then_pay_page_url_returned(
    http: httpx.Client, ap_app: AlternativePaymentsApp
) -> None:
    token = ap_app.issue_token()
    invoice = next(i for i in ap_app.visible_invoices() if i.status == "open")
    paid = next(i for i in ap_app.visible_invoices() if i.status == "paid")

    url = http.get(f"/invoices/{invoice.id}/payment-link", headers=bearer(token)).json()["url"]
    refused = http.get(f"/invoices/{paid.id}/payment-link", headers=bearer(token))

    assert url.endswith(f"/pay/{invoice.id}")
    assert invoice.invoice_number.encode() in httpx.get(url).content
    assert refused.status_code == 422


def test_given_same_seed_and_clock_when_seeded_then_invoices_are_identical(
    clock: FakeClock,
) -> None:
    first = AlternativePaymentsApp(seed=11, clock=clock)
    second = AlternativePaymentsApp(seed=11, clock=clock)
    first.seed_invoices(50)
    second.seed_invoices(50)

    assert orjson.dumps([i.to_json() for i in first.invoices.values()]) == orjson.dumps(
        [i.to_json() for i in second.invoices.values()]
    )
    assert first.deliberate_mismatches == second.deliberate_mismatches


def test_given_seeded_sandbox_then_data_spans_18_months_with_realistic_statuses(
    ap_app: AlternativePaymentsApp,
) -> None:
    invoices = list(ap_app.invoices.values())
    today = ap_app.now().date()

    oldest = min(invoice.created_at for invoice in invoices).date()
    assert len(invoices) == SEEDED_INVOICES
    assert today - oldest > timedelta(days=400)
    assert {"draft", "open", "overdue", "paid", "void", "archived", "processing"} <= {
        invoice.status for invoice in invoices
    }
    assert max(len(invoice.line_items) for invoice in invoices) > 10


def test_given_seeded_sandbox_then_exactly_one_total_mismatch_and_known_overdue_set(
    ap_app: AlternativePaymentsApp,
) -> None:
    mismatched = [
        invoice.id
        for invoice in ap_app.invoices.values()
        if invoice.total != sum(line["amount"] * line["quantity"] for line in invoice.line_items)
    ]
    overdue = ap_app.overdue_invoice_ids()
    still_open = ap_app.invoices[ap_app.deliberate_mismatches["overdue_still_open"]]

    assert mismatched == [ap_app.deliberate_mismatches["total_mismatch"]]
    assert still_open.status == "open"
    assert still_open.due_date < ap_app.now().date()
    assert still_open.id in overdue
    assert {i.id for i in ap_app.invoices.values() if i.status == "overdue"} < overdue


def test_given_demo_changes_then_counts_match_the_state_and_mismatches_survive(
    ap_app: AlternativePaymentsApp,
) -> None:
    statuses = {invoice.id: invoice.status for invoice in ap_app.invoices.values()}

    changes = ap_app.demo_changes()

    after = {invoice.id: invoice.status for invoice in ap_app.invoices.values()}
    new = set(after) - set(statuses)
    changed = {i: (statuses[i], after[i]) for i in statuses if statuses[i] != after[i]}
    assert changes["invoices_created"] == len(new) > 0
    assert changes["invoices_paid"] == sum(1 for b, a in changed.values() if a == "paid") > 0
    assert changes["invoices_archived"] == sum(1 for b, a in changed.values() if a == "archived")
    assert changes["invoices_restored"] == sum(1 for b, a in changed.values() if b == "archived")
    assert changes["invoices_archived"] == changes["invoices_restored"] == 1
    deliberate = ap_app.deliberate_mismatches
    assert ap_app.invoices[deliberate["overdue_still_open"]].status == "open"
    assert (
        ap_app.invoices[deliberate["total_mismatch"]].status
        == statuses[deliberate["total_mismatch"]]
    )


def test_given_sandbox_env_then_it_names_the_source_settings(
    ap_app: AlternativePaymentsApp,
) -> None:
    assert ap_app.env("http://127.0.0.1:1") == {
        "SOURCES__ALTERNATIVE_PAYMENTS__BASE_URL": "http://127.0.0.1:1",
        "SOURCES__ALTERNATIVE_PAYMENTS__CLIENT_ID": "ap_client_sandbox",
        "SOURCES__ALTERNATIVE_PAYMENTS__CLIENT_SECRET": "ap_secret_sandbox_9d8e7f",
    }
