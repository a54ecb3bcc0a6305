"""Bad input to ``invoice-sync run``: each ends in one error line naming the problem and the key
to fix, a non-zero exit code, and nothing half-loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from invoice_source.pipeline import SyncOptions, make_pipeline
from invoice_source.sandbox.server import SandboxServer
from tests.faults.conftest import Sync
from tests.faults.support import (
    CliRun,
    ScriptedStripeApp,
    has_table,
    one_error_line,
    run_cli,
    scalar,
    stripe_cursor,
)


def test_given_a_wrong_api_key_when_run_then_one_line_names_the_key_and_nothing_loads(
    stripe_env: dict[str, str],
    cli_args: list[str],
    duckdb_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong_key = "sk_test_revoked_5f1e2d3c4b5a6978"
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", wrong_key)

    code, error = run_cli(cli_args, capsys)

    assert code != 0
    assert "401" in error and "sources.stripe.api_key" in error
    assert wrong_key not in error and wrong_key[-8:] not in error
    assert not has_table(duckdb_path, "stripe_invoices")


def test_given_a_key_revoked_after_a_good_run_when_run_then_landed_data_and_cursor_stay(
    stripe_app: ScriptedStripeApp,
    sync: Sync,
    sync_options: SyncOptions,
    cli_args: list[str],
    duckdb_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sync()
    cursor = stripe_cursor(make_pipeline(sync_options).state)
    stripe_app.add_invoice(lines=2, status="open")
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", "sk_test_revoked_5f1e2d3c4b5a6978")

    code, error = run_cli(cli_args, capsys)

    assert code != 0 and "401" in error
    assert scalar(duckdb_path, "select count(*) from stripe_invoices") == stripe_app.count() - 1
    assert stripe_cursor(make_pipeline(sync_options).state) == cursor


def test_given_no_api_key_when_run_then_one_line_names_the_key(
    stripe_env: dict[str, str],
    cli_args: list[str],
    duckdb_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("SOURCES__STRIPE__API_KEY")

    code, error = run_cli(cli_args, capsys)

    assert code != 0
    assert "sources.stripe.api_key" in error or "SOURCES__STRIPE__API_KEY" in error
    assert not has_table(duckdb_path, "stripe_invoices")


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("BASE_URL", "http://127.0.0.1:9/v1", "unreachable"),
        ("BASE_URL", "api.stripe.com/v1", "must be an https:// URL"),
        ("BASE_URL", "http://api.stripe.example.invalid/v1", "plain http"),
        ("PAGE_SIZE", "0", "must be between 1 and 100"),
        ("PAGE_SIZE", "200", "must be between 1 and 100"),
    ],
    ids=["nothing-listening", "no-scheme", "plain-http", "page-size-0", "page-size-200"],
)
def test_given_a_stripe_setting_that_cannot_work_when_run_then_one_line_names_the_key(
    setting: str,
    value: str,
    problem: str,
    stripe_env: dict[str, str],
    cli_args: list[str],
    duckdb_path: Path,
    recorded_sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(f"SOURCES__STRIPE__{setting}", value)

    code, error = run_cli(cli_args, capsys)

    assert code != 0
    assert problem in error and f"sources.stripe.{setting.lower()}" in error
    assert not has_table(duckdb_path, "stripe_invoices")


def test_given_a_base_url_with_the_wrong_path_when_run_then_one_line_names_base_url(
    stripe_app: ScriptedStripeApp,
    stripe_server: SandboxServer,
    stripe_env: dict[str, str],
    cli_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SOURCES__STRIPE__BASE_URL", f"{stripe_server.url}/v2")

    code, error = run_cli(cli_args, capsys)
    unknown_routes = list(stripe_app.unmatched)
    stripe_app.reset_log()

    assert code != 0
    assert unknown_routes == ["GET /v2/invoices"]
    assert "404" in error and "sources.stripe.base_url" in error


@pytest.mark.parametrize(
    ("dates", "named"),
    [
        (["--start-date", "2026-02-01", "--end-date", "2026-01-01"], "--start-date"),
        (["--start-date", "yesterday"], "start_date"),
    ],
    ids=["start-after-end", "not-a-date"],
)
def test_given_bad_dates_on_the_command_line_when_run_then_one_line_names_them(
    dates: list[str],
    named: str,
    stripe_env: dict[str, str],
    cli_args: list[str],
    duckdb_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, error = run_cli([*cli_args, *dates], capsys)

    assert code != 0 and named in error
    assert not has_table(duckdb_path, "stripe_invoices")


def test_given_a_start_date_after_the_end_date_in_config_when_run_then_one_line_names_them(
    stripe_env: dict[str, str],
    cli_args: list[str],
    duckdb_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SOURCES__STRIPE__START_DATE", "2026-02-01")
    monkeypatch.setenv("SOURCES__STRIPE__END_DATE", "2026-01-01")

    code, error = run_cli(cli_args, capsys)

    assert code != 0
    assert "sources.stripe" in error and "end_date" in error and "start_date" in error
    assert not has_table(duckdb_path, "stripe_invoices")


def test_given_an_unknown_source_when_run_then_one_line_lists_the_sources(
    cli_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, error = run_cli(["run", "paypal", *cli_args[2:]], capsys)

    assert code != 0
    assert "paypal" in error and "stripe" in error and "alternative-payments" in error


def test_given_an_unknown_destination_when_run_then_one_line_names_the_option(
    stripe_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["run", "stripe", "--destination", "nosuchdb", "--pipelines-dir", str(tmp_path / "p")]

    code, error = run_cli(args, capsys)

    assert code != 0
    assert "nosuchdb" in error and "--destination" in error


def project_with(tmp_path: Path, file: str, text: str) -> Path:
    """A project folder whose ``.dlt/<file>`` holds ``text``."""
    project = tmp_path / "project"
    (project / ".dlt").mkdir(parents=True)
    (project / ".dlt" / file).write_text(text)
    return project


def test_given_a_config_value_of_the_wrong_type_when_run_then_one_line_names_the_key(
    stripe_env: dict[str, str], cli_args: list[str], duckdb_path: Path, tmp_path: Path
) -> None:
    project = project_with(tmp_path, "config.toml", '[sources.stripe]\nmax_workers = "lots"\n')

    code, _, err = CliRun(cli_args, cwd=project).finish()

    assert code != 0
    assert "sources.stripe.max_workers" in one_error_line(err)
    assert not has_table(duckdb_path, "stripe_invoices")


@pytest.mark.parametrize(
    ("file", "text", "named"),
    [
        ("config.toml", "[sources.stripe\npage_size = 10\n", "config.toml"),
        ("secrets.toml", '[sources.stripe]\napi_key = "sk_test_unterminated\n', "secrets.toml"),
    ],
    ids=["config", "secrets"],
)
def test_given_a_malformed_dlt_file_when_run_then_one_line_names_the_file_and_exit_non_zero(
    file: str,
    text: str,
    named: str,
    stripe_env: dict[str, str],
    cli_args: list[str],
    duckdb_path: Path,
    tmp_path: Path,
) -> None:
    code, out, err = CliRun(cli_args, cwd=project_with(tmp_path, file, text)).finish()

    assert code != 0
    error = one_error_line(err)
    assert named in error
    assert "sk_test_unterminated" not in err + out
    assert not has_table(duckdb_path, "stripe_invoices")
