"""The notebooks' shared module: where settings come from, money in each currency's decimals,
aging buckets and chart data."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from invoice_analysis import (
    NotebookSettings,
    aging_bucket,
    chart_values,
    check_explanations,
    display_rows,
    percent,
    sum_by,
    with_major_units,
)

from invoice_source.errors import ConfigurationError


@pytest.fixture
def duckdb_file(tmp_path: Path) -> Path:
    path = tmp_path / "analyst.duckdb"
    path.write_bytes(b"")
    return path


def test_given_a_duckdb_argument_when_resolved_then_it_wins_over_the_env_var(
    duckdb_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.duckdb"
    other.write_bytes(b"")
    monkeypatch.setenv("INVOICE_SYNC__DUCKDB", str(other))

    settings = NotebookSettings.resolve({"duckdb": str(duckdb_file)})

    assert settings.duckdb_path == duckdb_file.resolve()
    assert settings.destination is None
    assert settings.dataset == "invoices"


def test_given_only_dlt_config_env_vars_when_resolved_then_they_are_used(
    duckdb_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVOICE_SYNC__DUCKDB", str(duckdb_file))
    monkeypatch.setenv("INVOICE_SYNC__DATASET", "billing")
    monkeypatch.setenv("INVOICE_SYNC__AS_OF", "2026-03-31")
    monkeypatch.setenv("INVOICE_SYNC__CHARTS_DIR", str(tmp_path / "charts"))

    settings = NotebookSettings.resolve({})

    assert settings.duckdb_path == duckdb_file.resolve()
    assert settings.dataset == "billing"
    assert settings.as_of == dt.date(2026, 3, 31)
    assert settings.charts_dir == (tmp_path / "charts").resolve()


def test_given_a_relative_duckdb_path_when_resolved_then_it_is_found_from_the_working_dir(
    duckdb_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(duckdb_file.parent)

    settings = NotebookSettings.resolve({"duckdb": duckdb_file.name})

    assert settings.duckdb_path == duckdb_file.resolve()


def test_given_a_destination_when_resolved_then_no_duckdb_file_is_needed() -> None:
    settings = NotebookSettings.resolve({"destination": "postgres", "dataset": "invoices_prod"})

    assert settings.duckdb_path is None
    assert settings.destination == "postgres"
    assert settings.location == "destination `postgres`, dataset `invoices_prod`"


def test_given_a_duckdb_file_as_destination_when_resolved_then_it_is_read_as_duckdb(
    duckdb_file: Path,
) -> None:
    settings = NotebookSettings.resolve({"destination": str(duckdb_file)})

    assert settings.destination is None
    assert settings.duckdb_path == duckdb_file.resolve()


def test_given_no_duckdb_file_when_resolved_then_the_error_says_how_to_get_one(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigurationError) as error:
        NotebookSettings.resolve({"duckdb": str(tmp_path / "missing.duckdb")})

    assert "make demo" in str(error.value)
    assert "INVOICE_SYNC__DUCKDB" in str(error.value)


def test_given_an_as_of_that_is_not_a_date_when_resolved_then_the_key_is_named(
    duckdb_file: Path,
) -> None:
    with pytest.raises(ConfigurationError, match="INVOICE_SYNC__AS_OF"):
        NotebookSettings.resolve({"duckdb": str(duckdb_file), "as-of": "last tuesday"})


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (-1, "not yet due"),
        (0, "0–30"),
        (30, "0–30"),
        (31, "31–60"),
        (60, "31–60"),
        (61, "61–90"),
        (90, "61–90"),
        (91, "90+"),
        (400, "90+"),
    ],
)
def test_given_days_past_due_when_bucketed_then_the_bucket_bounds_are_inclusive(
    days: int, bucket: str
) -> None:
    assert aging_bucket(days) == bucket


def test_given_minor_unit_sums_when_converted_then_each_currency_keeps_its_own_decimals() -> None:
    rows = [
        {"currency": "jpy", "net_minor": 123_456},
        {"currency": "usd", "net_minor": 123_456},
        {"currency": "bhd", "net_minor": 123_450},
    ]

    converted = with_major_units(rows)

    assert [row["net"] for row in converted] == [
        Decimal("123456"),
        Decimal("1234.56"),
        Decimal("123.450"),
    ]
    assert [display_rows([row], ("net",))[0]["net"] for row in converted] == [
        "123,456 JPY",
        "1,234.56 USD",
        "123.450 BHD",
    ]


def test_given_decimal_amounts_when_summed_by_group_then_the_sum_is_exact() -> None:
    rows = [{"currency": "usd", "amount": Decimal("0.10")} for _ in range(10)]
    rows.append({"currency": "eur", "amount": Decimal("0.20")})

    totals = sum_by(rows, ["currency"], ["amount"])

    assert totals == [
        {"currency": "usd", "amount": Decimal("1.00")},
        {"currency": "eur", "amount": Decimal("0.20")},
    ]
    assert percent(Decimal("1"), Decimal("3")) == "33.33 %"
    assert percent(Decimal("1"), Decimal("0")) == ""


def test_given_money_rows_when_turned_into_chart_data_then_tooltips_carry_the_exact_amount() -> (
    None
):
    values = chart_values(
        [
            {
                "month": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                "currency": "kwd",
                "amount": Decimal("1234.565"),
            }
        ]
    )

    assert values == [
        {
            "month": "2026-01-01T00:00:00+00:00",
            "currency": "kwd",
            "amount": 1234.565,
            "amount_text": "1,234.565 KWD",
        }
    ]


def test_given_the_stripe_report_model_when_read_then_each_check_has_its_meaning() -> None:
    explanations = check_explanations("rpt_stripe_reconciliation")

    assert set(explanations) == {
        "line_sum_vs_subtotal",
        "total_formula",
        "remaining_formula",
        "paid_without_payment",
    }
    assert explanations["total_formula"] == (
        "subtotal - discounts + exclusive tax differs from total"
    )
