"""Stateful fakes of the three APIs, speaking real HTTP on loopback.

Each API has an :class:`~invoice_source.sandbox.server.App` subclass holding its state
(``stripe.StripeApp``, ``prepbusiness.PrepBusinessApp``,
``alternative_payments.AlternativePaymentsApp``). :class:`SandboxSet` starts all three on free
ports, seeds them deterministically, links PrepBusiness to Stripe (finalized PrepBusiness
invoices are created in the Stripe sandbox) and gives the environment variables that point the
sources at them. Tests, ``invoice-sync demo`` and ``invoice-sync sandbox`` all use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from invoice_source.sandbox.server import App, SandboxServer

if TYPE_CHECKING:
    from invoice_source.sandbox.alternative_payments import AlternativePaymentsApp
    from invoice_source.sandbox.prepbusiness import PrepBusinessApp
    from invoice_source.sandbox.stripe import StripeApp


@dataclass
class SeedSizes:
    """How much data each sandbox is seeded with."""

    stripe_invoices: int = 2000
    prepbusiness_invoices: int = 120
    alternative_payments_invoices: int = 300


@dataclass
class SandboxSet:
    """The three sandboxes, started together on loopback and linked."""

    seed: int = 7
    sizes: SeedSizes = field(default_factory=SeedSizes)
    host: str = "127.0.0.1"
    stripe: StripeApp = field(init=False)
    prepbusiness: PrepBusinessApp = field(init=False)
    alternative_payments: AlternativePaymentsApp = field(init=False)
    servers: dict[str, SandboxServer] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        from invoice_source.sandbox.alternative_payments import AlternativePaymentsApp
        from invoice_source.sandbox.prepbusiness import PrepBusinessApp
        from invoice_source.sandbox.stripe import StripeApp

        self.stripe = StripeApp(seed=self.seed)
        self.prepbusiness = PrepBusinessApp(seed=self.seed, stripe=self.stripe)
        self.alternative_payments = AlternativePaymentsApp(seed=self.seed)

    @property
    def apps(self) -> dict[str, App]:
        """The apps by source name."""
        return {
            "stripe": self.stripe,
            "prepbusiness": self.prepbusiness,
            "alternative_payments": self.alternative_payments,
        }

    def start(self) -> SandboxSet:
        """Start every server on a free loopback port."""
        for name, app in self.apps.items():
            self.servers[name] = SandboxServer(app, host=self.host).start()
        return self

    def seed_data(self) -> None:
        """Seed every sandbox (PrepBusiness after Stripe: it pushes invoices there)."""
        self.stripe.seed_invoices(self.sizes.stripe_invoices)
        self.prepbusiness.seed_invoices(self.sizes.prepbusiness_invoices)
        self.alternative_payments.seed_invoices(self.sizes.alternative_payments_invoices)

    def apply_demo_changes(self) -> dict[str, dict[str, int]]:
        """Change state the way a day of business would; returns what changed per source."""
        return {name: app.demo_changes() for name, app in self.apps.items()}  # type: ignore[attr-defined]

    def env(self) -> dict[str, str]:
        """Environment variables that point every source at its sandbox."""
        env: dict[str, str] = {}
        for name, app in self.apps.items():
            env.update(app.env(self.servers[name].url))  # type: ignore[attr-defined]
        return env

    def stop(self) -> None:
        """Stop every server."""
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def __enter__(self) -> SandboxSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
