"""Fixtures for the PrepBusiness source: a seeded sandbox over real HTTP, a fake Stripe link,
clients and a dlt pipeline into DuckDB."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import dlt
import pytest

from invoice_source.prepbusiness import PrepBusinessClient, prepbusiness_source
from invoice_source.sandbox.prepbusiness import PrepBusinessApp
from invoice_source.sandbox.server import SandboxServer

SEEDED_INVOICES = 150
TABLE = "prepbusiness_invoices"


class FakeStripe:
    """A StripeLink that records what the PrepBusiness sandbox pushes to Stripe."""

    def __init__(self) -> None:
        self.invoices: dict[str, dict[str, Any]] = {}
        self._numbers = itertools.count(1)

    def create_external_invoice(
        self,
        *,
        customer: str,
        currency: str,
        lines: list[dict[str, object]],
        metadata: dict[str, str],
        finalize: bool = True,
    ) -> str:
        """Record the invoice (total: the sum of its lines' minor units); return its id."""
        invoice_id = f"in_fake{next(self._numbers):06d}"
        self.invoices[invoice_id] = {
            "customer": customer,
            "currency": currency,
            "lines": lines,
            "total": sum(int(str(line["amount"])) for line in lines),
            "metadata": metadata,
            "status": "open" if finalize else "draft",
        }
        return invoice_id

    def pay_invoice(self, invoice_id: str) -> None:
        """open -> paid (anything else is a sandbox bug)."""
        assert self.invoices[invoice_id]["status"] == "open", "paid an invoice that is not open"
        self.invoices[invoice_id]["status"] = "paid"

    def invoice_status(self, invoice_id: str) -> str:
        """The recorded status."""
        return str(self.invoices[invoice_id]["status"])


@pytest.fixture
def fake_stripe() -> FakeStripe:
    """The Stripe side, recorded."""
    return FakeStripe()


@pytest.fixture
def pb_app(fake_stripe: FakeStripe) -> PrepBusinessApp:
    """A PrepBusiness sandbox seeded with 150 invoices of four merchants."""
    app = PrepBusinessApp(seed=11, stripe=fake_stripe)
    app.seed_invoices(SEEDED_INVOICES)
    return app


@pytest.fixture
def pb_server(pb_app: PrepBusinessApp) -> Iterator[SandboxServer]:
    """The sandbox on a loopback port; fails the test on any route the API does not have."""
    server = SandboxServer(pb_app).start()
    yield server
    server.stop()
    assert pb_app.unmatched == [], f"requests to routes PrepBusiness lacks: {pb_app.unmatched}"


@pytest.fixture
def base_url(pb_server: SandboxServer) -> str:
    """The API base URL (``.../api``)."""
    return f"{pb_server.url}/api"


@pytest.fixture
def pb_env(
    pb_app: PrepBusinessApp, pb_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """``[sources.prepbusiness]`` pointed at the sandbox with the service provider's token."""
    env = pb_app.env(pb_server.url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def make_client(
    pb_app: PrepBusinessApp, base_url: str, recorded_sleeps: list[float]
) -> Iterator[Callable[..., PrepBusinessClient]]:
    """Build clients: ``make_client(merchant_id=None, token=None)`` (default: the provider)."""
    clients: list[PrepBusinessClient] = []

    def make(merchant_id: int | None = None, token: str | None = None) -> PrepBusinessClient:
        if token is None:
            token = (
                pb_app.service_provider_token
                if merchant_id is None
                else pb_app.merchant_token(merchant_id)
            )
        client = PrepBusinessClient(
            base_url=base_url, token=token, merchant_id=merchant_id, requests_per_second=0
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def sync(pipeline: dlt.Pipeline, pb_env: dict[str, str]) -> Callable[..., Any]:
    """Run the PrepBusiness source once (kwargs go to ``prepbusiness_source``)."""

    def run(**kwargs: Any) -> Any:
        return pipeline.run(prepbusiness_source(**kwargs))

    return run
