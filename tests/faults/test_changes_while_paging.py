"""Invoices created, changed and deleted in Stripe while a sync is paging through them.

A page already read may go stale and a page still to come may shift; the run may land a
mixture of before and after. What must hold: nothing is lost or doubled, and the next run
converges to exactly what the sandbox holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.conftest import Sync
from tests.faults.support import (
    ScriptedStripeApp,
    assert_stripe_landed_exactly,
    make_business_day,
    query,
)


@pytest.mark.parametrize("run", ["first", "incremental"])
def test_given_invoices_changing_while_a_sync_pages_when_synced_again_then_it_converges(
    run: str, stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path
) -> None:
    pages_first = 1
    if run == "incremental":
        sync()
        stripe_app.add_invoice(lines=2, status="open")
        pages_first = 0  # the incremental run reads the events, then lists new invoices
    changes: dict[str, str] = {}
    stripe_app.before_page[stripe_app.pages_served + pages_first + 1] = lambda: changes.update(
        make_business_day(stripe_app)
    )

    sync()

    assert changes, "the sandbox changed nothing while the run was paging"
    sync()

    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    landed = dict(query(duckdb_path, "select id, status from stripe_invoices"))
    assert landed[changes["paid"]] == "paid"
    assert landed[changes["voided"]] == "void"
    assert landed[changes["finalized"]] == "open"
    assert query(
        duckdb_path, f"select is_deleted from stripe_invoices where id = '{changes['deleted']}'"
    ) == [(True,)]
