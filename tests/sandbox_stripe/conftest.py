"""Fixtures for the Stripe sandbox tests: a seeded app on a fixed clock, served on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from invoice_source.sandbox.server import App, Fault, Request, Response, SandboxServer, serving
from invoice_source.sandbox.stripe import StripeApp

NOW = 1_750_000_000  # 2025-06-15T15:06:40Z
DAY = 86_400
SEEDED_INVOICES = 400


@pytest.fixture
def app() -> StripeApp:
    """A Stripe sandbox on a fixed clock, seeded with a few hundred invoices."""
    stripe = StripeApp(seed=7, clock=lambda: NOW)
    stripe.seed_invoices(SEEDED_INVOICES)
    return stripe


class Switchboard(App):
    """Hands every request to the app a test plugs in, so one loopback server serves the session.

    (Stopping a server waits out ``serve_forever``'s half-second poll; one per test adds up.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.target: App = App()

    def dispatch(self, request: Request) -> Response:
        return self.target.dispatch(request)

    def take_fault(self, request: Request) -> Fault | None:
        return self.target.take_fault(request)

    def error_response(self, status: int, message: str) -> Response:
        return self.target.error_response(status, message)


@pytest.fixture(scope="session")
def switchboard() -> Iterator[tuple[Switchboard, SandboxServer]]:
    """One real HTTP server on loopback for the whole session."""
    board = Switchboard()
    with serving(board) as running:
        yield board, running


@pytest.fixture
def server(
    app: StripeApp, switchboard: tuple[Switchboard, SandboxServer]
) -> Iterator[SandboxServer]:
    """``app`` served on loopback; fails the test on any route Stripe does not have."""
    board, running = switchboard
    board.target = app
    yield running
    board.target = App()
    assert app.unmatched == [], f"requests to unknown routes: {app.unmatched}"


@pytest.fixture
def stripe(app: StripeApp, server: SandboxServer) -> Iterator[httpx.Client]:
    """An HTTP client for ``/v1`` authenticated with the sandbox's secret key."""
    with httpx.Client(
        base_url=f"{server.url}/v1",
        headers={"Authorization": f"Bearer {app.api_key}"},
        timeout=10,
    ) as client:
        yield client


@pytest.fixture
def appgregator(app: StripeApp, server: SandboxServer) -> Iterator[httpx.Client]:
    """An HTTP client for the Appgregator proxy routes with its key and integration names."""
    with httpx.Client(
        base_url=f"{server.url}/stripe",
        headers={"x-api-key": app.appgregator_api_key},
        params={"name": app.appgregator_name, "connection_name": app.appgregator_connection_name},
        timeout=10,
    ) as client:
        yield client
