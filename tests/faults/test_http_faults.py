"""Transport faults against the Stripe sandbox over real HTTP, one at a time, at the client.

What the shared HTTP layer promises: a transient fault (429, 5xx, reset, read timeout, a
truncated or non-JSON body) is retried with backoff, honouring ``Retry-After``; a fault that
retrying cannot fix (4xx, a refused certificate, a POST that may have been applied) is a clear
error at once; the number of attempts is bounded; and the page finally returned is the real one.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from invoice_source.errors import (
    ApiUnavailableError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
)
from invoice_source.http import ApiClient, RetryPolicy
from invoice_source.sandbox.server import Fault, SandboxServer
from invoice_source.stripe.client import CreatedWindow, StripeClient
from tests.faults.support import INVOICE_LIST, ScriptedStripeApp

MAX_ATTEMPTS = 4
RETRY = RetryPolicy(max_attempts=MAX_ATTEMPTS, backoff_factor=0.5, max_delay=60)
WHOLE_HISTORY = CreatedWindow(None, None)
LIST = rf"^{INVOICE_LIST}$"


def make_client(
    app: ScriptedStripeApp, base_url: str, *, timeout: float = 5.0, api_key: str | None = None
) -> StripeClient:
    return StripeClient(
        api_key=api_key or app.api_key,
        base_url=f"{base_url}/v1",
        requests_per_second=0,
        retry=RETRY,
        timeout=timeout,
    )


@pytest.fixture
def client(
    stripe_app: ScriptedStripeApp, stripe_server: SandboxServer, recorded_sleeps: list[float]
) -> Iterator[StripeClient]:
    """A Stripe client on the sandbox with four attempts per request and fake sleeps."""
    with_client = make_client(stripe_app, stripe_server.url)
    yield with_client
    with_client.close()


def first_page(client: StripeClient) -> list[str]:
    """Ids of the newest page of invoices."""
    page = next(iter(client.iter_invoice_pages(WHOLE_HISTORY, page_size=20)))
    return [invoice["id"] for invoice in page]


def newest_ids(app: ScriptedStripeApp, count: int = 20) -> list[str]:
    return list(reversed(app.invoice_ids()))[:count]


def test_given_a_429_with_retry_after_when_listing_then_the_wait_is_what_the_api_asked(
    stripe_app: ScriptedStripeApp, client: StripeClient, recorded_sleeps: list[float]
) -> None:
    stripe_app.inject_status(429, retry_after="7", path_pattern=LIST)

    ids = first_page(client)

    assert ids == newest_ids(stripe_app)
    assert recorded_sleeps[0] == 7.0
    assert client.request_count == 2


def test_given_429s_without_retry_after_when_listing_then_backoff_grows_exponentially(
    stripe_app: ScriptedStripeApp, client: StripeClient, recorded_sleeps: list[float]
) -> None:
    stripe_app.inject_status(429, times=3, path_pattern=LIST)

    ids = first_page(client)

    assert ids == newest_ids(stripe_app)
    assert len(recorded_sleeps) == 3
    for attempt, slept in enumerate(recorded_sleeps, start=1):
        base = RETRY.backoff_factor * 2 ** (attempt - 1)
        assert base <= slept <= base * 1.1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_given_a_server_error_when_listing_then_it_is_retried_and_the_real_page_returned(
    status: int,
    stripe_app: ScriptedStripeApp,
    client: StripeClient,
    recorded_sleeps: list[float],
) -> None:
    stripe_app.inject_status(status, path_pattern=LIST)

    ids = first_page(client)

    assert ids == newest_ids(stripe_app)
    assert client.request_count == 2
    assert len(recorded_sleeps) == 1


@pytest.mark.parametrize("kind", ["reset", "truncate", "not_json"])
def test_given_a_broken_answer_when_listing_then_it_is_retried_and_the_real_page_returned(
    kind: str, stripe_app: ScriptedStripeApp, client: StripeClient, recorded_sleeps: list[float]
) -> None:
    stripe_app.inject(Fault(kind, path_pattern=LIST))

    ids = first_page(client)

    assert ids == newest_ids(stripe_app)
    assert client.request_count == 2
    assert len(recorded_sleeps) == 1


def test_given_a_stalled_answer_when_listing_then_the_read_times_out_and_is_retried(
    stripe_app: ScriptedStripeApp,
    stripe_server: SandboxServer,
    recorded_sleeps: list[float],
) -> None:
    stripe_app.inject(Fault("stall", seconds=3.0, path_pattern=LIST))

    with closing(make_client(stripe_app, stripe_server.url, timeout=0.3)) as stalled:
        ids = first_page(stalled)

    assert ids == newest_ids(stripe_app)
    assert stalled.request_count == 2


def test_given_an_api_that_keeps_failing_when_listing_then_a_clear_error_after_bounded_attempts(
    stripe_app: ScriptedStripeApp, client: StripeClient, recorded_sleeps: list[float]
) -> None:
    stripe_app.inject_status(503, times=100, path_pattern=LIST)

    with pytest.raises(ApiUnavailableError, match=r"Stripe API 503 .* GET /v1/invoices"):
        first_page(client)

    assert client.request_count == MAX_ATTEMPTS
    assert len(recorded_sleeps) == MAX_ATTEMPTS - 1


def test_given_bodies_that_are_never_json_when_listing_then_a_clear_error_naming_base_url(
    stripe_app: ScriptedStripeApp, client: StripeClient
) -> None:
    stripe_app.inject(Fault("not_json", times=100, path_pattern=LIST))

    with pytest.raises(ApiUnavailableError, match=r"not JSON.*sources\.stripe\.base_url"):
        first_page(client)

    assert client.request_count == MAX_ATTEMPTS


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, InvalidRequestError), (401, AuthenticationError), (404, NotFoundError)],
)
def test_given_a_client_error_when_listing_then_it_is_raised_at_once_without_retrying(
    status: int,
    error: type[Exception],
    stripe_app: ScriptedStripeApp,
    client: StripeClient,
    recorded_sleeps: list[float],
) -> None:
    stripe_app.inject_status(status, path_pattern=LIST)

    with pytest.raises(error, match=rf"Stripe API {status}"):
        first_page(client)

    assert client.request_count == 1
    assert recorded_sleeps == []


def test_given_a_500_on_a_post_when_creating_then_it_is_not_repeated(
    stripe_app: ScriptedStripeApp, stripe_server: SandboxServer, recorded_sleeps: list[float]
) -> None:
    stripe_app.inject_status(500, path_pattern=LIST)
    api = ApiClient(
        f"{stripe_server.url}/v1",
        api="stripe",
        headers={"Authorization": f"Bearer {stripe_app.api_key}"},
        retry=RETRY,
    )

    with api, pytest.raises(ApiUnavailableError):
        api.request("POST", "invoices", data={"customer": "cus_faults"})

    assert api.request_count == 1
    assert recorded_sleeps == []


def test_given_a_429_on_a_post_when_creating_then_it_is_retried_and_applied_once(
    stripe_app: ScriptedStripeApp, stripe_server: SandboxServer, recorded_sleeps: list[float]
) -> None:
    stripe_app.inject_status(429, retry_after="1", path_pattern=LIST)
    before = stripe_app.count()
    api = ApiClient(
        f"{stripe_server.url}/v1",
        api="stripe",
        headers={"Authorization": f"Bearer {stripe_app.api_key}"},
        retry=RETRY,
    )

    with api:
        created = api.request_json("POST", "invoices", data={"customer": "cus_faults"})

    assert created["id"] in stripe_app.invoice_ids()
    assert stripe_app.count() == before + 1
    assert api.request_count == 2


def test_given_nothing_listening_at_base_url_when_listing_then_the_error_names_base_url(
    stripe_app: ScriptedStripeApp, recorded_sleeps: list[float]
) -> None:
    closed_port_url = "http://127.0.0.1:9"

    with (
        closing(make_client(stripe_app, closed_port_url)) as unreachable,
        pytest.raises(ApiUnavailableError) as failure,
    ):
        first_page(unreachable)

    message = str(failure.value)
    assert "http://127.0.0.1:9/v1/invoices" in message
    assert f"after {MAX_ATTEMPTS} attempt(s)" in message
    assert "sources.stripe.base_url" in message


@pytest.fixture
def self_signed(tmp_path: Path) -> Path:
    """A self-signed certificate and key for 127.0.0.1 (PEM, both in one file)."""
    if shutil.which("openssl") is None:
        message = "openssl is not installed: cannot make a self-signed certificate"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: the TLS tests must run)")
        pytest.skip(message)
    pem = tmp_path / "sandbox.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(pem), "-out", str(pem),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return pem


@pytest.fixture
def tls_server(stripe_app: ScriptedStripeApp, self_signed: Path) -> Iterator[SandboxServer]:
    """The Stripe sandbox served over HTTPS with the self-signed certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(self_signed)
    server = SandboxServer(stripe_app, ssl_context=context).start()
    yield server
    server.stop()


def test_given_an_untrusted_certificate_when_listing_then_refused_at_once_naming_base_url(
    stripe_app: ScriptedStripeApp,
    tls_server: SandboxServer,
    recorded_sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    with (
        closing(make_client(stripe_app, tls_server.url)) as untrusting,
        pytest.raises(ApiUnavailableError) as failure,
    ):
        first_page(untrusting)

    assert "certificate" in str(failure.value)
    assert "sources.stripe.base_url" in str(failure.value)
    assert recorded_sleeps == [], "a certificate failure was retried"
    assert stripe_app.requests_to(LIST) == [], "a request went out over an unverified channel"


def test_given_the_certificate_trusted_through_ssl_cert_file_when_listing_then_it_works(
    stripe_app: ScriptedStripeApp,
    tls_server: SandboxServer,
    self_signed: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(self_signed))

    with closing(make_client(stripe_app, tls_server.url)) as trusting:
        ids = first_page(trusting)

    assert ids == newest_ids(stripe_app)
