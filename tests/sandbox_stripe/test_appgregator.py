"""The Appgregator proxy: x-api-key plus name/connection_name, 2022 shape, parameter dropping."""

from __future__ import annotations

import httpx

from invoice_source.sandbox.server import SandboxServer
from invoice_source.sandbox.stripe import StripeApp


def test_given_the_proxy_credentials_when_listing_with_a_trailing_slash_then_stripe_lists_answer(
    app: StripeApp, appgregator: httpx.Client
) -> None:
    response = appgregator.get("/invoices/", params={"limit": 3})

    body = response.json()
    assert response.status_code == 200
    assert body["object"] == "list" and body["url"] == "/v1/invoices"
    assert len(body["data"]) == 3 and body["has_more"] is True
    assert app.requests[-1].path == "/stripe/invoices/"


def test_given_a_basil_version_header_through_the_proxy_then_the_2022_shape_still_answers(
    appgregator: httpx.Client,
) -> None:
    invoice = appgregator.get(
        "/invoices", params={"limit": 1}, headers={"Stripe-Version": "2025-03-31.basil"}
    ).json()["data"][0]

    assert "paid" in invoice and "total_taxes" not in invoice
    assert "price" in invoice["lines"]["data"][0]


def test_given_no_or_a_wrong_api_key_when_calling_the_proxy_then_401(
    app: StripeApp, server: SandboxServer
) -> None:
    params = {"name": app.appgregator_name, "connection_name": app.appgregator_connection_name}

    missing = httpx.get(f"{server.url}/stripe/invoices", params=params)
    wrong = httpx.get(f"{server.url}/stripe/invoices", params=params, headers={"x-api-key": "nope"})
    stripe_key = httpx.get(
        f"{server.url}/stripe/invoices",
        params=params,
        headers={"Authorization": f"Bearer {app.api_key}"},
    )

    for response in (missing, wrong, stripe_key):
        assert response.status_code == 401
        assert response.json()["error"] == "Unauthorized"


def test_given_a_missing_or_wrong_connection_when_calling_the_proxy_then_400(
    app: StripeApp, server: SandboxServer
) -> None:
    headers = {"x-api-key": app.appgregator_api_key}

    no_names = httpx.get(f"{server.url}/stripe/invoices", headers=headers)
    wrong_connection = httpx.get(
        f"{server.url}/stripe/invoices",
        headers=headers,
        params={"name": app.appgregator_name, "connection_name": "stripe-other"},
    )

    for response in (no_names, wrong_connection):
        assert response.status_code == 400
        assert response.json()["error"] == "Bad Request"


def test_given_a_passing_proxy_when_paging_with_cursors_and_created_then_they_apply(
    appgregator: httpx.Client,
) -> None:
    first = appgregator.get("/invoices", params={"limit": 5}).json()["data"]

    second = appgregator.get(
        "/invoices", params={"limit": 5, "starting_after": first[-1]["id"]}
    ).json()["data"]
    windowed = appgregator.get(
        "/invoices", params={"limit": 100, "created[lt]": first[-1]["created"]}
    ).json()["data"]

    assert {i["id"] for i in first}.isdisjoint(i["id"] for i in second)
    assert all(i["created"] < first[-1]["created"] for i in windowed)


def test_given_a_parameter_dropping_proxy_when_paging_then_the_newest_page_comes_back(
    app: StripeApp, appgregator: httpx.Client
) -> None:
    app.appgregator_passes_parameters = False
    first = appgregator.get("/invoices", params={"limit": 5}).json()["data"]

    again = appgregator.get(
        "/invoices", params={"limit": 5, "starting_after": first[-1]["id"]}
    ).json()["data"]
    windowed = appgregator.get(
        "/invoices", params={"limit": 5, "created[lt]": first[-1]["created"]}
    ).json()["data"]

    assert [i["id"] for i in again] == [i["id"] for i in first]
    assert [i["id"] for i in windowed] == [i["id"] for i in first]
    assert len(first) == 5, "limit is still passed on"


def test_given_the_proxy_when_reading_lines_and_events_and_creating_then_it_passes_through(
    app: StripeApp, appgregator: httpx.Client
) -> None:
    created = appgregator.post("/invoices/", data={"customer": "cus_1Sbx00000000Ab"}).json()
    item = appgregator.post(
        "/invoices-items/",
        data={"customer": "cus_1Sbx00000000Ab", "invoice": created["id"], "amount": 2000},
    ).json()
    app.add_line(created["id"], 300)

    lines = appgregator.get(f"/invoices/{created['id']}/lines").json()
    listed_events = appgregator.get("/events", params={"type": "invoice.*"}).json()["data"]

    assert created["status"] == "draft" and created["object"] == "invoice"
    assert item["object"] == "invoiceitem"
    assert [line["amount"] for line in lines["data"]] == [2000, 300]
    assert lines["data"][0]["type"] == "invoiceitem"
    assert listed_events[-1]["type"] == "invoice.created"


def test_given_an_unknown_id_through_the_proxy_then_stripe_error_passes_through(
    appgregator: httpx.Client,
) -> None:
    response = appgregator.get("/invoices/in_nope")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


def test_given_the_sandbox_when_asked_for_env_then_both_transports_are_described(
    app: StripeApp,
) -> None:
    direct = app.env("http://127.0.0.1:9")
    proxied = app.appgregator_env("http://127.0.0.1:9")

    assert direct == {
        "SOURCES__STRIPE__BASE_URL": "http://127.0.0.1:9/v1",
        "SOURCES__STRIPE__API_KEY": app.api_key,
    }
    assert proxied == {
        "SOURCES__STRIPE__TRANSPORT": "appgregator",
        "SOURCES__STRIPE__BASE_URL": "http://127.0.0.1:9/stripe",
        "SOURCES__STRIPE__API_KEY": app.appgregator_api_key,
        "SOURCES__STRIPE__APPGREGATOR_NAME": app.appgregator_name,
        "SOURCES__STRIPE__APPGREGATOR_CONNECTION_NAME": app.appgregator_connection_name,
    }
