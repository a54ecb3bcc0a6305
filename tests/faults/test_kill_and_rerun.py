"""``invoice-sync run stripe`` killed with SIGKILL inside each dlt step, then run again.

The killed process gets no chance to clean up. Whatever it left (half-written extract files, a
normalized package never committed, load jobs half done), the next run must end with every
sandbox invoice and line landed exactly once, and at no point may the state a run would
restore from the destination claim more than the destination holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import cast

import pytest
from dlt.common.destination.client import WithStateSync
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.common.pipeline import TPipelineState
from dlt.pipeline.state_sync import load_pipeline_state_from_destination

from invoice_source.pipeline import SyncOptions, make_pipeline
from tests.faults.conftest import Sync
from tests.faults.support import (
    CliRun,
    ScriptedStripeApp,
    StripeSnapshot,
    assert_stripe_landed_exactly,
    has_table,
    make_business_day,
    query,
    stripe_cursor,
)

STAGES = ["extract", "normalize", "load"]


def destination_state(options: SyncOptions) -> TPipelineState | None:
    """The pipeline state dlt would restore from the destination (completed loads only)."""
    pipeline = make_pipeline(options)
    with pipeline.destination_client() as client:
        try:
            return load_pipeline_state_from_destination(
                pipeline.pipeline_name, cast(WithStateSync, client)
            )
        except DestinationUndefinedEntity:
            return None


def start_held_run(
    stage: str, app: ScriptedStripeApp, cli_args: list[str], cwd: Path, *, pages_first: int = 0
) -> tuple[CliRun, str]:
    """Start the CLI and wait until it stands inside ``stage``; returns the run and where.

    Mid-extract means blocked on a list request after ``pages_first`` more pages were read."""
    if stage == "extract":
        app.hold_after_pages = app.pages_served + pages_first
        run = CliRun(cli_args, cwd=cwd)
        run.wait_until(app.held.is_set)
        return run, f"blocked after list page {app.hold_after_pages}"
    run = CliRun(cli_args, cwd=cwd, hold_stage=stage)
    return run, run.wait_until_held()


def assert_state_follows_the_data(
    app: ScriptedStripeApp, options: SyncOptions, db_path: Path
) -> None:
    """Every sandbox invoice the restorable cursor claims as read is in the destination."""
    restorable = destination_state(options)
    if restorable is None:
        return
    cursor = stripe_cursor(restorable)
    assert cursor is not None
    landed = {row[0] for row in query(db_path, "select id from stripe_invoices")}
    claimed = {i for i in app.invoice_ids() if (app.get(i) or {})["created"] <= cursor}
    assert claimed <= landed, "the restorable cursor claims invoices the destination lacks"


@pytest.mark.parametrize("stage", STAGES)
def test_given_a_first_run_killed_mid_stage_when_run_again_then_every_invoice_lands_once(
    stage: str,
    stripe_app: ScriptedStripeApp,
    stripe_env: dict[str, str],
    sync: Sync,
    sync_options: SyncOptions,
    cli_args: list[str],
    duckdb_path: Path,
    tmp_path: Path,
) -> None:
    stripe_app.add_invoice(lines=14, status="open")
    run, where = start_held_run(stage, stripe_app, cli_args, tmp_path, pages_first=2)
    run.kill()
    stripe_app.release.set()
    if stage == "extract":
        assert not has_table(duckdb_path, "stripe_invoices"), f"data landed while {where}"
    assert_state_follows_the_data(stripe_app, sync_options, duckdb_path)

    sync()

    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    newest = StripeSnapshot.of(stripe_app).newest_created
    assert stripe_cursor(make_pipeline(sync_options).state) == newest
    assert stripe_cursor(destination_state(sync_options) or {}) == newest


@pytest.mark.parametrize("stage", STAGES)
def test_given_an_incremental_run_killed_mid_stage_when_run_again_then_changes_land_once(
    stage: str,
    stripe_app: ScriptedStripeApp,
    stripe_env: dict[str, str],
    sync: Sync,
    sync_options: SyncOptions,
    cli_args: list[str],
    duckdb_path: Path,
    tmp_path: Path,
) -> None:
    sync()
    first_cursor = stripe_cursor(make_pipeline(sync_options).state)
    changes = make_business_day(stripe_app)
    run, where = start_held_run(stage, stripe_app, cli_args, tmp_path)
    run.kill()
    stripe_app.release.set()
    restorable = destination_state(sync_options)
    assert restorable is not None
    assert stripe_cursor(restorable) == first_cursor, f"state ran ahead while {where}"
    assert_state_follows_the_data(stripe_app, sync_options, duckdb_path)
    after_the_kill = stripe_app.add_invoice(lines=3, status="open")

    sync()

    assert_stripe_landed_exactly(stripe_app, duckdb_path)
    landed = dict(query(duckdb_path, "select id, status from stripe_invoices"))
    assert landed[changes["paid"]] == "paid"
    assert landed[changes["created_long"]] == "open"
    assert after_the_kill in landed, "the run after the kill only finished the old package"
    newest = StripeSnapshot.of(stripe_app).newest_created
    assert stripe_cursor(destination_state(sync_options) or {}) == newest


def test_given_a_run_killed_mid_load_and_its_state_dir_lost_when_run_again_then_it_converges(
    stripe_app: ScriptedStripeApp,
    stripe_env: dict[str, str],
    sync: Sync,
    sync_options: SyncOptions,
    cli_args: list[str],
    duckdb_path: Path,
    pipelines_dir: Path,
    tmp_path: Path,
) -> None:
    sync()
    make_business_day(stripe_app)
    run, _ = start_held_run("load", stripe_app, cli_args, tmp_path)
    run.kill()
    shutil.rmtree(pipelines_dir)

    sync()

    assert_stripe_landed_exactly(stripe_app, duckdb_path)
