"""Backfills: a window loads without touching the incremental cursor, a history split into windows
is read in parallel and loaded one window at a time, incremental runs carry on from where the
history ends, and a window whose load failed is loaded from what it read on the next run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dlt
import pytest

from invoice_source.ops import BACKFILL_INFIX
from invoice_source.pipeline import (
    SyncFailedError,
    SyncOptions,
    Window,
    backfill_pipeline_name,
    run_sync,
    split_window,
)
from invoice_source.sandbox.server import Request
from tests.ops.conftest import GatedStripeApp, duckdb_query


def day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def created_between(app: GatedStripeApp, start: datetime, end: datetime | None) -> set[str]:
    """Ids of the sandbox's invoices created in ``[start, end)``."""
    low, high = start.timestamp(), end.timestamp() if end else float("inf")
    ids = set()
    for invoice_id in app.invoice_ids():
        invoice = app.get(invoice_id)
        assert invoice is not None
        if low <= invoice["created"] < high:
            ids.add(invoice_id)
    return ids


def stripe_cursor(pipeline: dlt.Pipeline) -> Any:
    resources = pipeline.state.get("sources", {}).get("stripe", {}).get("resources", {})
    return resources.get("stripe_invoices", {}).get("created_cursor")


def reads_of(app: GatedStripeApp, window: Window) -> list[Request]:
    """Invoice list requests whose ``created[gte]`` falls inside ``window``."""
    assert window.start is not None
    low, high = window.start.timestamp(), window.end.timestamp()
    return [
        request
        for request in app.requests_to(r"^/v1/invoices$")
        if low <= int(request.arg("created[gte]") or 0) < high
    ]


def backfill_dirs(state_dir: Path) -> list[str]:
    return [path.name for path in state_dir.iterdir() if BACKFILL_INFIX in path.name]


def test_given_a_window_longer_than_window_days_when_split_then_windows_tile_it_exactly() -> None:
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    end = datetime(2024, 3, 5, tzinfo=timezone.utc)

    windows = split_window(start, end, 30)

    assert [(w.start, w.end) for w in windows] == [
        (start, datetime(2024, 1, 31, tzinfo=timezone.utc)),
        (datetime(2024, 1, 31, tzinfo=timezone.utc), datetime(2024, 3, 1, tzinfo=timezone.utc)),
        (datetime(2024, 3, 1, tzinfo=timezone.utc), end),
    ]


def test_given_parallel_backfill_windows_when_incremental_follows_then_no_gap_and_no_overlap(
    stripe_app: GatedStripeApp, state_dir: Path, duckdb_path: Path
) -> None:
    now = datetime.fromtimestamp(stripe_app.now(), tz=timezone.utc)
    history_start = datetime.combine((now - timedelta(days=400)).date(), datetime.min.time())
    history_start = history_start.replace(tzinfo=timezone.utc)
    history_end = history_start + timedelta(days=300)
    options = SyncOptions(destination=str(duckdb_path), pipelines_dir=str(state_dir))
    backfill = SyncOptions(
        destination=str(duckdb_path),
        pipelines_dir=str(state_dir),
        start_date=day(history_start),
        end_date=day(history_end),
        window_days=100,
        workers=3,
    )

    history = run_sync(["stripe"], backfill)
    cursor_after_history = stripe_cursor(history.pipeline)
    options.start_date = day(history_end)
    incremental = run_sync(["stripe"], options)

    in_history = created_between(stripe_app, history_start, history_end)
    after_history = created_between(stripe_app, history_end, None)
    assert history.sources[0].windows == 3
    assert history.sources[0].rows["stripe_invoices"] == len(in_history)
    assert cursor_after_history is None, "the backfill left the incremental cursor alone"
    assert incremental.sources[0].rows["stripe_invoices"] == len(after_history), "no overlap"
    landed = {row[0] for row in duckdb_query(duckdb_path, "select id from stripe_invoices")}
    assert landed == in_history | after_history, "no gap, nothing from before the history"
    assert duckdb_query(duckdb_path, "select count(*) from stripe_invoices") == [(len(landed),)]
    assert stripe_cursor(incremental.pipeline) is not None
    assert backfill_dirs(state_dir) == [], "loaded windows leave no pipeline behind"
    for table in (
        "stripe_invoice_line_items",
        "stripe_invoice_line_item_discounts",
        "stripe_invoice_line_item_taxes",
    ):
        reported = history.sources[0].rows[table] + incremental.sources[0].rows[table]
        # the placeholders staged for invoices without discounts or taxes are not counted
        assert duckdb_query(duckdb_path, f"select count(*) from {table}") == [(reported,)]


def test_given_a_cursor_when_an_older_window_is_backfilled_then_the_cursor_stays_put(
    stripe_app: GatedStripeApp, state_dir: Path, duckdb_path: Path
) -> None:
    options = SyncOptions(destination=str(duckdb_path), pipelines_dir=str(state_dir))
    first = run_sync(["stripe"], options)
    cursor = stripe_cursor(first.pipeline)
    stripe_app.reset_log()

    backfill = run_sync(
        ["stripe"],
        SyncOptions(**{**vars(options), "start_date": "2000-01-01", "end_date": "2001-01-01"}),
    )
    assert stripe_cursor(backfill.pipeline) == cursor, "the backfill left the cursor alone"
    later = run_sync(["stripe"], options)

    assert stripe_cursor(later.pipeline) == cursor, "nothing new: the cursor is where it was"
    listed = stripe_app.requests_to(r"^/v1/invoices$")
    created_from = [int(r.arg("created[gte]") or 0) for r in listed if r.arg("created[gte]")]
    assert min(created_from) < datetime(2001, 1, 1, tzinfo=timezone.utc).timestamp()
    assert max(created_from) >= cursor - 3600, "the incremental run read from its own cursor"


def test_given_a_window_whose_load_failed_when_backfilled_again_then_it_loads_what_it_read(
    stripe_app: GatedStripeApp,
    state_dir: Path,
    duckdb_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime.fromtimestamp(stripe_app.now(), tz=timezone.utc)
    start = datetime.combine((now - timedelta(days=600)).date(), datetime.min.time())
    start = start.replace(tzinfo=timezone.utc)
    end = start + timedelta(days=400)
    options = SyncOptions(
        destination=str(duckdb_path),
        pipelines_dir=str(state_dir),
        start_date=day(start),
        end_date=day(end),
        window_days=200,
        workers=2,
    )
    failing_window = split_window(start, end, 200)[1]
    failing_name = backfill_pipeline_name("invoice_sync", "stripe", failing_window)
    real_load = dlt.Pipeline.load

    def load_failing_once(self: dlt.Pipeline, *args: Any, **kwargs: Any) -> Any:
        if self.pipeline_name == failing_name:
            raise ConnectionError("destination went away")
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(dlt.Pipeline, "load", load_failing_once)
    with pytest.raises(SyncFailedError, match="destination went away"):
        run_sync(["stripe"], options)
    assert backfill_dirs(state_dir) == [failing_name]
    assert reads_of(stripe_app, failing_window), "the failed window was read the first time"
    monkeypatch.setattr(dlt.Pipeline, "load", real_load)
    stripe_app.reset_log()

    again = run_sync(["stripe"], options)

    assert reads_of(stripe_app, failing_window) == [], "loaded from its package, not read again"
    assert reads_of(stripe_app, split_window(start, end, 200)[0]), "the loaded one was re-read"
    landed = {row[0] for row in duckdb_query(duckdb_path, "select id from stripe_invoices")}
    assert landed == created_between(stripe_app, start, end)
    assert again.ok and backfill_dirs(state_dir) == []


def test_given_window_days_without_an_end_date_when_run_then_it_is_refused(
    state_dir: Path, duckdb_path: Path, cli: Callable[..., Any]
) -> None:
    result = cli(
        "run", "stripe", "--window-days", "30", "--pipelines-dir", str(state_dir),
        "--destination", str(duckdb_path),
    )  # fmt: skip

    assert result.code == 1
    assert "--window-days and --workers split a backfill: give --end-date" in result.err
