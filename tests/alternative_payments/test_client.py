"""The Alternative Payments client against the sandbox: OAuth2 token handling, the invoice
endpoints, typed errors from ``HttpError`` bodies, retries and pagination guards."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest

from invoice_source.alternative_payments import settings
from invoice_source.alternative_payments.client import (
    AlternativePaymentsAuthenticationError,
    AlternativePaymentsClient,
    AlternativePaymentsNotFoundError,
    AlternativePaymentsUnavailableError,
    AlternativePaymentsValidationError,
    InvoiceFilters,
    LineItem,
    json_amount,
)
from invoice_source.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    PaginationError,
)
from invoice_source.redaction import install_log_redaction
from invoice_source.sandbox.alternative_payments import AlternativePaymentsApp
from tests.alternative_payments.support import FakeClock, SleepRecorder

MakeClient = Callable[..., AlternativePaymentsClient]


def token_requests(app: AlternativePaymentsApp) -> int:
    return len(app.requests_to(r"^/oauth/token$", "POST"))


def bearer_tokens(app: AlternativePaymentsApp) -> set[str]:
    headers = [request.header("authorization") or "" for request in app.requests]
    return {header[len("Bearer ") :] for header in headers if header.startswith("Bearer ")}


def test_given_line_items_when_invoice_created_then_sent_exactly_and_totals_come_back_exact(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    client = make_client()

    invoice = client.create_invoice(
        customer_id="cus_new",
        line_items=[
            LineItem(Decimal("0.10"), "Labels", 3),
            LineItem(Decimal("1234.56"), "Storage"),
        ],
        due_date="2026-02-14",
        exclude_from_autopay=True,
    )

    sent = ap_app.requests_to(r"^/invoices$", "POST")[0].body
    assert b'"amount":0.1,' in sent
    assert b'"amount":1234.56,' in sent
    assert invoice["total"] == invoice["sub_total"] == Decimal("1234.86")
    assert isinstance(invoice["total"], Decimal)
    assert invoice["due_date"] == "2026-02-14"
    assert invoice["status"] == "open"
    assert [line["quantity"] for line in invoice["line_items"]] == [3, 1]
    assert ap_app.invoices[invoice["id"]].exclude_from_autopay is True


def test_given_invoice_when_archived_fetched_and_restored_then_each_answer_shows_its_state(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    client = make_client()
    target = next(i for i in ap_app.visible_invoices() if i.status == "open")

    archived = client.archive_invoice(target.id)
    fetched = client.get_invoice(target.id)
    restored = client.restore_invoice(target.id)

    assert archived["status"] == fetched["status"] == "archived"
    assert restored["status"] == "open"
    assert client.get_invoice(target.id)["total"] == target.total


def test_given_open_invoice_when_links_requested_then_payment_and_signed_pdf_urls_work(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    client = make_client()
    target = next(i for i in ap_app.visible_invoices() if i.status == "open")

    payment_url = client.payment_link(target.id)
    pdf_url = client.pdf_link(target.id)

    assert payment_url.endswith(f"/pay/{target.id}")
    assert "signature=" in pdf_url
    assert httpx.get(pdf_url).content.startswith(b"%PDF")


def test_given_unknown_invoice_when_fetched_then_not_found_error_from_http_error_body(
    make_client: MakeClient,
) -> None:
    client = make_client()

    with pytest.raises(AlternativePaymentsNotFoundError) as caught:
        client.get_invoice("inv_missing")

    assert isinstance(caught.value, NotFoundError)
    assert caught.value.status_code == 404
    assert caught.value.code == "not_found"
    assert "Invoice inv_missing not found." in str(caught.value)
    assert "GET /invoices/inv_missing" in str(caught.value)


def test_given_invalid_invoice_when_created_then_validation_error_carries_field_messages(
    make_client: MakeClient,
) -> None:
    client = make_client()

    with pytest.raises(AlternativePaymentsValidationError) as caught:
        client.create_invoice(customer_id="", line_items=[], currency="EUR")

    assert isinstance(caught.value, InvalidRequestError)
    assert caught.value.status_code == 422
    assert caught.value.validation_errors == {
        "customer_id": "is required",
        "currency": "only USD is supported",
        "line_items": "at least one line item is required",
    }
    assert "currency: only USD is supported" in str(caught.value)


def test_given_already_archived_invoice_when_archived_again_then_422_invalid_state(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    client = make_client()
    archived = next(i for i in ap_app.invoices.values() if i.status == "archived")

    with pytest.raises(AlternativePaymentsValidationError) as caught:
        client.archive_invoice(archived.id)

    assert caught.value.code == "invalid_state"


def test_given_read_scope_only_when_archiving_then_403_names_the_scopes_setting(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    client = make_client(scopes=("read",))
    target = ap_app.visible_invoices()[0]

    with pytest.raises(AlternativePaymentsAuthenticationError) as caught:
        client.archive_invoice(target.id)

    assert caught.value.code == "insufficient_scope"
    assert f"{settings.CONFIG_SECTION}.scopes" in str(caught.value)
    assert ap_app.requests_to(r"^/oauth/token$")[0].form() == [
        ("grant_type", "client_credentials"),
        ("scope", "read"),
    ]
    assert ap_app.invoices[target.id].status != "archived"


def test_given_bad_credentials_when_listing_then_clear_error_without_secret_and_no_retry(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    client = make_client(client_secret="wrong-secret-123")

    with pytest.raises(AuthenticationError) as caught:
        client.list_invoices()

    message = str(caught.value)
    assert caught.value.status_code == 403
    assert "refused the client credentials (403 invalid_client" in message
    assert "sources.alternative_payments.client_id" in message
    assert "wrong-secret-123" not in message
    assert token_requests(ap_app) == 1
    assert ap_app.requests_to(r"^/invoices") == []


def test_given_many_calls_when_token_still_valid_then_it_is_fetched_once(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    client = make_client(page_size=20)

    invoices = list(client.iter_invoices())
    client.get_invoice(invoices[0]["id"])

    assert token_requests(ap_app) == 1
    assert len(bearer_tokens(ap_app)) == 1
    assert client.request_count == 1 + math.ceil(len(ap_app.visible_invoices()) / 20) + 1


def test_given_token_near_expiry_by_client_clock_when_calling_then_refreshed_before_any_401(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    client_clock = FakeClock(start=0.0)
    client = make_client(clock=client_clock)
    client.list_invoices(limit=1)

    client_clock.advance(ap_app.token_lifetime_seconds - 59)
    client.list_invoices(limit=1)

    assert token_requests(ap_app) == 2
    assert len(ap_app.requests_to(r"^/invoices$")) == 2
    assert len(bearer_tokens(ap_app)) == 2


def test_given_token_expired_by_server_clock_when_calling_then_refetched_on_401_and_retried(
    make_client: MakeClient, ap_app: AlternativePaymentsApp, clock: FakeClock
) -> None:
    client = make_client()
    client.list_invoices(limit=1)

    clock.advance(ap_app.token_lifetime_seconds)
    page = client.list_invoices(limit=1)

    assert len(page.invoices) == 1
    assert token_requests(ap_app) == 2
    assert len(ap_app.requests_to(r"^/invoices$")) == 3
    assert client.auth.tokens_fetched == 2


def test_given_tokens_and_secret_when_calls_logged_and_failing_then_none_appears_anywhere(
    make_client: MakeClient,
    ap_app: AlternativePaymentsApp,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    client = make_client()
    client.list_invoices(limit=1)
    clock.advance(ap_app.token_lifetime_seconds)
    client.list_invoices(limit=1)
    with pytest.raises(NotFoundError) as caught:
        client.get_invoice("inv_missing")

    secrets = {ap_app.client_secret, *bearer_tokens(ap_app)}
    auth_headers = {r.header("authorization") for r in ap_app.requests_to("/oauth/token")}
    assert len(secrets) == 3
    logged = caplog.text + str(caught.value)
    assert "Fetched an Alternative Payments access token" in caplog.text
    for secret in secrets | {header.split()[-1] for header in auth_headers if header}:
        assert secret not in logged


def test_given_429_with_retry_after_when_listing_then_that_wait_is_honoured(
    make_client: MakeClient, ap_app: AlternativePaymentsApp, sleep: SleepRecorder
) -> None:
    client = make_client()
    ap_app.inject_status(429, retry_after="7", path_pattern=r"^/invoices$")

    page = client.list_invoices(limit=5)

    assert len(page.invoices) == 5
    assert sleep.delays[0] == 7.0
    assert client.retry_count == 1
    assert client.request_count == 1 + 2


def test_given_500_on_every_attempt_when_fetching_then_unavailable_error_after_retries(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    client = make_client()
    target = ap_app.visible_invoices()[0]
    ap_app.inject_status(500, times=3, path_pattern=r"^/invoices/")

    with pytest.raises(AlternativePaymentsUnavailableError) as caught:
        client.get_invoice(target.id)

    assert caught.value.status_code == 500
    assert client.request_count == 1 + 3


def test_given_api_repeating_a_cursor_when_paging_then_pagination_error_not_a_loop(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    client = make_client()
    body = b'{"data":[],"end_cursor":"gaFrxAA","has_next_page":true}'
    ap_app.inject_status(200, times=2, path_pattern=r"^/invoices$", body=body)

    with pytest.raises(PaginationError, match="same end_cursor twice"):
        list(client.iter_invoice_pages())


def test_given_next_page_without_cursor_when_paging_then_pagination_error(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    client = make_client()
    ap_app.inject_status(200, path_pattern=r"^/invoices$", body=b'{"data":[],"has_next_page":true}')

    with pytest.raises(PaginationError, match="no end_cursor"):
        list(client.iter_invoice_pages())


def test_given_filters_when_listing_then_sent_as_rfc3339_query_parameters(
    make_client: MakeClient, ap_app: AlternativePaymentsApp
) -> None:
    from datetime import datetime, timezone

    client = make_client()

    client.list_invoices(
        InvoiceFilters(
            created_at_start=datetime(2025, 1, 1),
            created_at_end=datetime(2025, 2, 1, 12, 30, tzinfo=timezone.utc),
            customer_id="cus_1",
            status="open",
        ),
        limit=10,
    )

    assert dict(ap_app.requests_to(r"^/invoices$")[0].query) == {
        "created_at_start": "2025-01-01T00:00:00Z",
        "created_at_end": "2025-02-01T12:30:00Z",
        "customer_id": "cus_1",
        "status": "open",
        "limit": "10",
    }


def test_given_default_settings_then_requests_are_spaced_below_five_per_second() -> None:
    client = AlternativePaymentsClient("https://example.invalid", "id", "secret-value")

    assert client.rate_limiter.interval > 1 / 5
    client.close()


def test_given_amount_when_encoded_for_json_then_exact_or_refused() -> None:
    assert json_amount(Decimal("0.10")) == 0.1
    assert json_amount(Decimal("1500.00")) == 1500
    with pytest.raises(ValueError, match="too many digits"):
        json_amount(Decimal("12345678901234.567891"))
    with pytest.raises(ValueError, match="more than 6 decimal places"):
        json_amount(Decimal("1.0000001"))


def test_given_base_url_without_scheme_when_client_built_then_configuration_error_names_key() -> (
    None
):
    with pytest.raises(ConfigurationError, match=r"sources\.alternative_payments\.base_url"):
        AlternativePaymentsClient("public-api.alternativepayments.io", "id", "secret-value")
