"""``invoice-sync run stripe`` end to end: summary, exit codes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from invoice_source.cli import main
from invoice_source.sandbox.stripe import StripeApp


def run_cli(args: list[str], tmp_path: Path) -> int:
    return main([*args, "--pipelines-dir", str(tmp_path / "state")])


def test_given_the_sandbox_when_run_stripe_then_a_summary_and_exit_zero(
    stripe_app: StripeApp,
    stripe_env: dict[str, str],
    tmp_path: Path,
    duckdb_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run_cli(["run", "stripe", "--destination", str(duckdb_path)], tmp_path)

    out = capsys.readouterr().out
    assert code == 0
    assert "stripe_invoices" in out and "requests" in out
    assert out.strip().splitlines()[-1].startswith("invoice-sync: ok:")
    with duckdb.connect(str(duckdb_path)) as db:
        landed = db.sql("select count(*) from invoices.stripe_invoices").fetchone()
        modelled = db.sql("select count(*) from invoices.invoice_history").fetchone()
    assert landed == (stripe_app.count(),)
    assert modelled == (stripe_app.count(),)


def test_given_a_bad_key_when_run_stripe_then_one_line_error_and_exit_one(
    stripe_env: dict[str, str],
    tmp_path: Path,
    duckdb_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", "sk_test_wrong_wrong_wrong_1234")

    code = run_cli(["run", "stripe", "--destination", str(duckdb_path)], tmp_path)

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("invoice-sync: error: Stripe API 401")
    assert "Traceback" not in err
    assert "sk_test_wrong_wrong_wrong_1234" not in err


def test_given_an_unknown_source_when_run_then_the_error_names_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["run", "paypal"], tmp_path)

    err = capsys.readouterr().err
    assert code == 1
    assert "unknown source 'paypal'" in err and "alternative-payments" in err
