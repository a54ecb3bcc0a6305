"""One run at a time per pipeline state: a second concurrent run is refused at once with exit 75,
and a run killed with SIGKILL leaves no lock that blocks the next one."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from invoice_source.cli import EXIT_LOCKED
from invoice_source.ops import RunLock, RunLockedError, lock_path
from tests.ops.conftest import CliProcess, CliResult, GatedStripeApp, duckdb_query


def test_given_a_held_lock_when_another_lock_on_the_same_state_is_taken_then_it_names_the_holder(
    tmp_path: Path,
) -> None:
    path = lock_path(tmp_path, "invoice_sync")
    first = RunLock(path).acquire()

    with pytest.raises(RunLockedError) as refused:
        RunLock(path).acquire()

    assert refused.value.holder is not None and refused.value.holder.pid == os.getpid()
    assert f"pid {os.getpid()}" in str(refused.value)
    first.release()
    assert path.read_text() == "", "a released lock leaves no holder behind"
    with RunLock(path) as again:
        assert again.held


def test_given_two_pipeline_names_when_locked_then_they_do_not_block_each_other(
    tmp_path: Path,
) -> None:
    with RunLock(lock_path(tmp_path, "invoice_sync")), RunLock(lock_path(tmp_path, "other")) as b:
        assert b.held


def test_given_a_run_in_progress_when_a_second_run_starts_then_it_is_refused_and_the_first_lands(
    stripe_app: GatedStripeApp,
    spawn: Callable[..., CliProcess],
    cli: Callable[..., CliResult],
    state_dir: Path,
    duckdb_path: Path,
) -> None:
    args = ["run", "stripe", "--destination", str(duckdb_path), "--pipelines-dir", str(state_dir)]
    stripe_app.gate.clear()
    first = spawn(*args)
    first.wait_until(stripe_app.waiting.is_set, "the invoice list")
    requests_before = len(stripe_app.requests)

    second = cli(*args)
    status = cli("status", "--pipelines-dir", str(state_dir))

    assert second.code == EXIT_LOCKED
    assert second.err.startswith("invoice-sync: refused: another invoice-sync run is using")
    assert f"pid {first.pid}" in second.err
    assert len(stripe_app.requests) == requests_before, "the refused run sent no request"
    assert f"running now: pid {first.pid}" in status.out
    stripe_app.gate.set()
    finished = first.finish()
    assert finished.code == 0, finished.err
    landed = duckdb_query(duckdb_path, "select count(*), count(distinct id) from stripe_invoices")
    assert landed == [(stripe_app.count(), stripe_app.count())]
    assert cli(*args).code == 0, "once the first run ended the lock is free again"


def test_given_a_run_killed_with_sigkill_when_run_again_then_the_stale_lock_does_not_block(
    stripe_app: GatedStripeApp,
    spawn: Callable[..., CliProcess],
    cli: Callable[..., CliResult],
    state_dir: Path,
    duckdb_path: Path,
) -> None:
    args = ["run", "stripe", "--destination", str(duckdb_path), "--pipelines-dir", str(state_dir)]
    stripe_app.gate.clear()
    killed = spawn(*args)
    killed.wait_until(stripe_app.waiting.is_set, "the invoice list")
    killed.kill()
    stripe_app.gate.set()

    status = cli("status", "--pipelines-dir", str(state_dir))
    rerun = cli(*args)

    assert f"the last run did not finish (it was killed): pid {killed.pid}" in status.out
    assert rerun.code == 0, rerun.err
    assert rerun.out.strip().splitlines()[-1].startswith("invoice-sync: ok:")
    landed = duckdb_query(duckdb_path, "select count(*), count(distinct id) from stripe_invoices")
    assert landed == [(stripe_app.count(), stripe_app.count())]
