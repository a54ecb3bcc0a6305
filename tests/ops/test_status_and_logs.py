"""What an operator sees: ``invoice-sync status`` per source, one exit code and summary line per
run (a failing source does not stop the others), JSON logs, and secrets masked everywhere."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import dlt
import pytest

from invoice_source.cli import configure_logging
from invoice_source.ops import format_time
from invoice_source.pipeline import destination_credentials
from invoice_source.redaction import redact, register_secret
from invoice_source.sandbox import SandboxSet
from tests.ops.conftest import CliResult, duckdb_query


def run_args(state_dir: Path, duckdb_path: Path, *sources: str) -> list[str]:
    return [
        "run", *sources, "--destination", str(duckdb_path), "--pipelines-dir", str(state_dir),
        "--no-models",
    ]  # fmt: skip


def test_given_a_run_of_all_sources_when_status_then_each_shows_last_run_rows_cursors_and_age(
    sandboxes: SandboxSet,
    cli: Callable[..., CliResult],
    state_dir: Path,
    duckdb_path: Path,
) -> None:
    assert cli(*run_args(state_dir, duckdb_path, "all")).code == 0
    state = dlt.attach("invoice_sync", pipelines_dir=str(state_dir)).state["sources"]

    text = cli("status", "--pipelines-dir", str(state_dir)).out
    as_json = json.loads(cli("status", "--pipelines-dir", str(state_dir), "--json").out)

    stripe_cursor = state["stripe"]["resources"]["stripe_invoices"]["created_cursor"]
    assert f"stripe_invoices.created_cursor = {format_time(stripe_cursor)}" in text
    by_source = {entry["source"]: entry for entry in as_json["sources"]}
    landed = {
        "stripe": duckdb_query(duckdb_path, "select count(*) from stripe_invoices")[0][0],
        "prepbusiness": duckdb_query(duckdb_path, "select count(*) from prepbusiness_invoices")[0][
            0
        ],
        "alternative_payments": duckdb_query(
            duckdb_path, "select count(*) from alternative_payments_invoices"
        )[0][0],
    }
    for source, invoices in landed.items():
        entry = by_source[source]
        assert f"{source}: last successful run {entry['last_success_at']}" in text
        assert entry["mode"] == "incremental" and not entry["failing"]
        assert entry["rows_by_table"][f"{source}_invoices"] == invoices
        assert 0 <= entry["seconds_since_success"] < 60
        assert entry["cursors"], f"{source} shows its cursor positions"
    assert as_json["running"] is None and as_json["pending_packages"] == []


def test_given_one_source_failing_when_run_all_then_others_load_and_one_failed_line_exit_one(
    sandboxes: SandboxSet,
    cli: Callable[..., CliResult],
    state_dir: Path,
    duckdb_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong_secret = "ap_secret_wrong_0f1e2d3c4b5a"
    monkeypatch.setenv("SOURCES__ALTERNATIVE_PAYMENTS__CLIENT_SECRET", wrong_secret)

    result = cli(*run_args(state_dir, duckdb_path, "all"))
    status = cli("status", "--pipelines-dir", str(state_dir)).out

    errors = [line for line in result.err.splitlines() if line.startswith("invoice-sync: error:")]
    last_line = result.err.strip().splitlines()[-1]
    assert result.code == 1
    assert len(errors) == 1 and "Alternative Payments" in errors[0], result.err
    assert last_line.startswith(
        "invoice-sync: failed: 1 of 3 source(s) failed (alternative_payments)"
    )
    assert "stripe_invoices" in result.out, "what loaded is still summarised"
    assert duckdb_query(duckdb_path, "select count(*) from prepbusiness_invoices") == [
        (sandboxes.prepbusiness.count(),)
    ]
    assert "alternative_payments: no successful run yet" in status
    assert "LAST RUN FAILED" in status
    assert wrong_secret not in result.out + result.err + status


def test_given_json_logs_when_run_then_every_line_is_json_and_the_last_says_how_it_ended(
    sandboxes: SandboxSet,
    cli: Callable[..., CliResult],
    state_dir: Path,
    duckdb_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ok = cli("--log-format", "json", *run_args(state_dir, duckdb_path, "stripe"))
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", "sk_test_not_the_right_one_4242")
    failed = cli("--log-format", "json", *run_args(state_dir, duckdb_path, "stripe"))

    records = [json.loads(line) for line in ok.err.strip().splitlines()]
    assert ok.code == 0
    finished = records[-1]
    assert finished["event"] == "run_finished" and finished["exit_code"] == 0
    assert finished["rows"] == finished["sources"]["stripe"]["rows"] > 0
    assert any(r.get("event") == "source_finished" and r["source"] == "stripe" for r in records)
    failure = [json.loads(line) for line in failed.err.strip().splitlines()]
    assert failed.code == 1
    assert failure[-1]["status"] == "failed" and failure[-1]["exit_code"] == 1
    assert failure[-1]["sources"]["stripe"]["error"].startswith("Stripe API 401")
    assert any(r.get("event") == "source_failed" for r in failure)
    everything = ok.out + ok.err + failed.out + failed.err
    assert sandboxes.stripe.api_key not in everything
    assert "sk_test_not_the_right_one_4242" not in everything


def test_given_json_logs_when_dlt_logs_a_secret_then_it_is_json_and_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dlt.common import logger as dlt_logger

    secret = "pw-planted-in-a-dlt-log-8812"
    register_secret(secret)
    configure_logging("json", False)
    # what dlt does when a pipeline starts: reuse the first handler and set its own format
    dlt_logger._create_logger("dlt", "INFO", "{asctime}|{message}", "invoice_sync", {})

    logging.getLogger("dlt").warning("connecting with %s", secret)

    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert json.loads(line) == {
        "time": json.loads(line)["time"],
        "level": "warning",
        "logger": "dlt",
        "message": "connecting with ***",
    }


def test_given_postgres_credentials_when_the_pipeline_is_made_then_the_password_is_masked(
    tmp_path: Path,
) -> None:
    password = "pg-password-never-logged-5531"
    pipeline = dlt.pipeline(
        pipeline_name="credentials_probe",
        destination=dlt.destinations.postgres(f"postgresql://loader:{password}@db.invalid/x"),
        dataset_name="invoices",
        pipelines_dir=str(tmp_path / "state"),
    )

    destination_credentials(pipeline)

    assert redact(f"connection to loader:{password}@db.invalid failed") == (
        "connection to loader:***@db.invalid failed"
    )
