"""Schema drift: Stripe adds a field, sends a field with another type, a new line-item shape.

Loads continue and the change shows in the destination (a new column, or the odd values kept
beside the typed column), nothing is dropped silently; a user who wants drift refused instead
says so with ``[sources.stripe] schema_contract`` (dlt's schema contract: ``evolve``,
``freeze``, ``discard_value``, ``discard_row``, per ``tables``/``columns``/``data_type``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from invoice_source.pipeline import SyncFailedError, SyncOptions, make_pipeline
from tests.faults.conftest import Sync
from tests.faults.support import (
    ScriptedStripeApp,
    assert_stripe_landed_exactly,
    columns_of,
    query,
    stripe_cursor,
)


def drift_new_invoices(app: ScriptedStripeApp, change: dict[str, Any]) -> list[str]:
    """Make every listed invoice created from now on carry ``change``; add two of them."""
    since = app.now()

    def rewrite(invoice: dict[str, Any]) -> None:
        if invoice["created"] >= since:
            invoice.update(change)

    app.rewrite_invoice = rewrite
    return [app.add_invoice(lines=2, status="open") for _ in range(2)]


def test_given_a_new_invoice_field_when_synced_then_it_lands_in_new_columns(
    stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path
) -> None:
    sync()
    drifted = drift_new_invoices(
        stripe_app, {"risk_score": 42, "payment_plan": {"installments": 3, "every": "month"}}
    )

    sync()

    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    columns = columns_of(duckdb_path, "stripe_invoices")
    assert "risk_score" in columns and "payment_plan" in columns
    rows = query(
        duckdb_path,
        "select id, risk_score, payment_plan from stripe_invoices where risk_score is not null",
    )
    assert {row[0] for row in rows} == set(drifted)
    assert all(row[1] == 42 and '"installments":3' in str(row[2]) for row in rows)


def test_given_a_new_line_item_shape_when_synced_then_every_line_lands_and_shows_it(
    stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path
) -> None:
    sync()
    since = stripe_app.now()

    def metered_lines(invoice: dict[str, Any]) -> None:
        if invoice["created"] < since:
            return
        for line in invoice["lines"]["data"]:
            line["parent"] = {
                "type": "metered_usage_details",
                "metered_usage_details": {"meter": "mtr_api_calls", "proration": False},
            }
            line["usage"] = {"meter": "mtr_api_calls", "quantity": 1234}

    stripe_app.rewrite_invoice = metered_lines
    drifted = stripe_app.add_invoice(lines=3, status="open")

    sync()

    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    assert "usage" in columns_of(duckdb_path, "stripe_invoice_line_items")
    rows = query(
        duckdb_path,
        f"select line_type, usage from stripe_invoice_line_items where invoice_id = '{drifted}'",
    )
    assert len(rows) == 3
    assert all(row[0] == "metered_usage_details" and "1234" in str(row[1]) for row in rows)


def test_given_a_new_field_changing_type_between_runs_when_synced_then_its_values_are_kept(
    stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path
) -> None:
    sync()
    drift_new_invoices(stripe_app, {"channel": "web"})
    sync()
    drifted = drift_new_invoices(stripe_app, {"channel": 7})

    sync()

    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    kept = query(duckdb_path, f"select channel from stripe_invoices where id = '{drifted[0]}'")
    assert kept == [("7",)]


def test_given_a_known_field_sent_with_another_type_when_synced_then_loads_continue(
    stripe_app: ScriptedStripeApp, sync: Sync, duckdb_path: Path
) -> None:
    sync()
    drifted = drift_new_invoices(stripe_app, {"amount_due": "12.50"})

    sync()

    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    drifted_columns = [
        name for name in columns_of(duckdb_path, "stripe_invoices") if "amount_due" in name
    ]
    values = query(
        duckdb_path,
        f"select {', '.join(drifted_columns)} from stripe_invoices where id = '{drifted[0]}'",
    )
    assert "12.50" in [str(value) for value in values[0]], "the odd value was dropped"


@pytest.mark.parametrize(
    ("contract", "before", "change"),
    [
        ('{"columns": "freeze"}', {}, {"risk_score": 42}),
        ('{"data_type": "freeze"}', {"channel": "web"}, {"channel": 7}),
    ],
)
def test_given_a_frozen_schema_contract_in_config_when_the_api_drifts_then_the_run_is_refused(
    contract: str,
    before: dict[str, Any],
    change: dict[str, Any],
    stripe_app: ScriptedStripeApp,
    sync: Sync,
    sync_options: SyncOptions,
    duckdb_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drift_new_invoices(stripe_app, before)
    sync()
    cursor = stripe_cursor(make_pipeline(sync_options).state)
    monkeypatch.setenv("SOURCES__STRIPE__SCHEMA_CONTRACT", contract)
    drifted = drift_new_invoices(stripe_app, change)

    with pytest.raises(SyncFailedError, match=r"stripe_invoices.*(frozen|contract)"):
        sync()

    landed = {row[0] for row in query(duckdb_path, "select id from stripe_invoices")}
    assert not set(drifted) & landed, "the refused run loaded some of its rows"
    assert stripe_cursor(make_pipeline(sync_options).state) == cursor


def test_given_a_discard_value_contract_in_config_when_a_field_appears_then_only_it_is_dropped(
    stripe_app: ScriptedStripeApp,
    sync: Sync,
    duckdb_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sync()
    monkeypatch.setenv("SOURCES__STRIPE__SCHEMA_CONTRACT", '{"columns": "discard_value"}')
    drift_new_invoices(stripe_app, {"risk_score": 42})

    sync()

    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    assert "risk_score" not in columns_of(duckdb_path, "stripe_invoices")
