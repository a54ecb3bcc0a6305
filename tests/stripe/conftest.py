"""Fixtures for the Stripe source: a seeded Stripe sandbox over real HTTP and a pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dlt
import pytest

from invoice_source.sandbox.server import SandboxServer
from invoice_source.sandbox.stripe import StripeApp
from invoice_source.stripe import stripe_source

SEEDED_INVOICES = 300


@pytest.fixture
def stripe_app() -> StripeApp:
    """A Stripe sandbox seeded with a few hundred invoices."""
    app = StripeApp(seed=11)
    app.seed_invoices(SEEDED_INVOICES)
    return app


@pytest.fixture
def stripe_server(stripe_app: StripeApp) -> Iterator[SandboxServer]:
    """The sandbox served on a loopback port; fails the test on any unknown route."""
    server = SandboxServer(stripe_app).start()
    yield server
    server.stop()
    assert stripe_app.unmatched == [], (
        f"requests to routes Stripe does not have: {stripe_app.unmatched}"
    )


@pytest.fixture
def stripe_env(
    stripe_app: StripeApp, stripe_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Point ``[sources.stripe]`` at the sandbox through env vars; no client-side rate limit."""
    env = stripe_app.env(stripe_server.url)
    env["SOURCES__STRIPE__REQUESTS_PER_SECOND"] = "0"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def sync(pipeline: dlt.Pipeline, stripe_env: dict[str, str]) -> Callable[..., Any]:
    """Run the Stripe source once (kwargs go to ``stripe_source``)."""

    def run(**kwargs: Any) -> Any:
        return pipeline.run(stripe_source(**kwargs))

    return run
