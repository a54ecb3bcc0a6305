"""Errors in Stripe's own shape: auth, parameters, unknown ids and routes, injected faults."""

from __future__ import annotations

import base64

import httpx

from invoice_source.sandbox.server import SandboxServer
from invoice_source.sandbox.stripe import StripeApp


def test_given_no_api_key_when_listing_then_401_authentication_error(
    server: SandboxServer,
) -> None:
    response = httpx.get(f"{server.url}/v1/invoices")

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["message"].startswith("You did not provide an API key.")
    assert response.headers["Request-Id"].startswith("req_")


def test_given_a_wrong_key_when_listing_then_401_names_only_its_last_four_characters(
    server: SandboxServer,
) -> None:
    wrong = "sk_test_wrongkey0123456789WXYZ"

    response = httpx.get(f"{server.url}/v1/invoices", headers={"Authorization": f"Bearer {wrong}"})

    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert message.startswith("Invalid API Key provided: sk_test_")
    assert message.endswith("WXYZ")
    assert "wrongkey0123456789" not in message


def test_given_basic_auth_with_the_key_as_username_when_listing_then_200(
    app: StripeApp, server: SandboxServer
) -> None:
    token = base64.b64encode(f"{app.api_key}:".encode()).decode()

    response = httpx.get(
        f"{server.url}/v1/invoices",
        headers={"Authorization": f"Basic {token}", "Stripe-Account": "acct_1SbxConnected"},
    )

    assert response.status_code == 200
    assert len(response.json()["data"]) == 10


def test_given_an_unknown_parameter_when_listing_then_400_names_it(stripe: httpx.Client) -> None:
    response = stripe.get("/invoices", params={"page": 2})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error == {
        "type": "invalid_request_error",
        "message": "Received unknown parameter: page",
        "param": "page",
        "request_log_url": error["request_log_url"],
    }


def test_given_a_limit_above_100_or_below_1_when_listing_then_400_on_param_limit(
    stripe: httpx.Client,
) -> None:
    too_big = stripe.get("/invoices", params={"limit": 101})
    too_small = stripe.get("/invoices", params={"limit": 0})
    at_most = stripe.get("/invoices", params={"limit": 100})

    assert too_big.status_code == too_small.status_code == 400
    assert too_big.json()["error"]["param"] == too_small.json()["error"]["param"] == "limit"
    assert "less than or equal to 100" in too_big.json()["error"]["message"]
    assert at_most.status_code == 200 and len(at_most.json()["data"]) == 100


def test_given_a_non_integer_created_bound_when_listing_then_400_names_that_bound(
    stripe: httpx.Client,
) -> None:
    response = stripe.get("/invoices", params={"created[gte]": "yesterday"})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "created[gte]"


def test_given_an_unknown_invoice_id_when_read_then_404_resource_missing_on_param_id(
    stripe: httpx.Client,
) -> None:
    response = stripe.get("/invoices/in_nope")

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "resource_missing"
    assert error["param"] == "id"
    assert error["message"] == "No such invoice: 'in_nope'"


def test_given_an_unknown_cursor_when_listing_then_404_resource_missing_on_the_cursor_param(
    stripe: httpx.Client,
) -> None:
    after = stripe.get("/invoices", params={"starting_after": "in_1Sbxzzzzzzzzzz"})
    before = stripe.get("/invoices", params={"ending_before": "in_nope"})

    assert after.status_code == before.status_code == 404
    assert after.json()["error"]["param"] == "starting_after"
    assert before.json()["error"]["param"] == "ending_before"
    assert after.json()["error"]["code"] == "resource_missing"


def test_given_an_unknown_route_when_requested_then_404_unrecognized_url_and_recorded(
    app: StripeApp, stripe: httpx.Client
) -> None:
    response = stripe.get("/charges_of_the_light_brigade")

    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith(
        "Unrecognized request URL (GET: /v1/charges_of_the_light_brigade)."
    )
    assert app.unmatched == ["GET /v1/charges_of_the_light_brigade"]
    app.unmatched.clear()


def test_given_an_injected_429_when_listing_then_rate_limit_error_with_retry_headers(
    app: StripeApp, stripe: httpx.Client
) -> None:
    app.inject_status(429, retry_after="2", path_pattern=r"^/v1/invoices$")

    limited = stripe.get("/invoices")
    after = stripe.get("/invoices")

    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert limited.headers["Retry-After"] == "2"
    assert limited.headers["Stripe-Should-Retry"] == "true"
    assert after.status_code == 200


def test_given_an_injected_500_when_read_then_api_error_body(
    app: StripeApp, stripe: httpx.Client
) -> None:
    app.inject_status(500)

    response = stripe.get("/invoices")

    assert response.status_code == 500
    assert response.json()["error"]["type"] == "api_error"


def test_given_every_response_then_each_has_its_own_request_id(stripe: httpx.Client) -> None:
    ids = {stripe.get("/invoices", params={"limit": 1}).headers["Request-Id"] for _ in range(3)}

    assert len(ids) == 3
    assert all(request_id.startswith("req_") for request_id in ids)
