"""Destinations by configuration: ``destination_type`` picks one without ``--destination``, a local
filesystem lake gets parquet files, and a file format the destination cannot take is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dlt
import pyarrow.parquet as pq
import pytest

from invoice_source.destinations import DUCKDB_SETTINGS
from invoice_source.pipeline import resolve_destination
from tests.ops.conftest import CliResult, GatedStripeApp, duckdb_setting_as_shown


def test_given_destination_type_filesystem_in_config_when_run_then_parquet_files_land_in_the_lake(
    stripe_app: GatedStripeApp,
    cli: Callable[..., CliResult],
    state_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lake = tmp_path / "lake"
    monkeypatch.setenv("DESTINATION_TYPE", "filesystem")
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", lake.as_uri())

    result = cli("run", "stripe", "--pipelines-dir", str(state_dir))

    assert result.code == 0, result.err
    files = sorted((lake / "invoices" / "stripe_invoices").glob("*.parquet"))
    assert files, "stripe_invoices landed as parquet"
    ids = [
        i for path in files for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()
    ]
    assert sorted(ids) == sorted(stripe_app.invoice_ids())
    assert "dlt appends instead of merging" in result.err, "the lake's limits are said"
    assert not (tmp_path / "invoice_sync.duckdb").exists(), "no DuckDB file was made instead"


def test_given_a_file_format_the_destination_cannot_load_when_run_then_it_is_refused_by_name(
    stripe_app: GatedStripeApp,
    cli: Callable[..., CliResult],
    state_dir: Path,
    duckdb_path: Path,
) -> None:
    result = cli(
        "run", "stripe", "--destination", str(duckdb_path), "--loader-file-format", "csv",
        "--pipelines-dir", str(state_dir),
    )  # fmt: skip

    assert result.code == 1
    assert "--loader-file-format 'csv' is not supported by duckdb" in result.err
    assert "parquet" in result.err, "the error lists what the destination takes"
    assert stripe_app.requests == [], "nothing was read before the refusal"


def test_given_postgres_without_credentials_when_run_then_one_line_names_every_missing_key(
    stripe_app: GatedStripeApp, cli: Callable[..., CliResult], state_dir: Path
) -> None:
    result = cli("run", "stripe", "--destination", "postgres", "--pipelines-dir", str(state_dir))

    errors = [line for line in result.err.splitlines() if line.startswith("invoice-sync: error:")]
    assert result.code == 1
    assert len(errors) == 1
    for key in ("database", "username", "password", "host"):
        assert f"destination.postgres.credentials.{key}" in errors[0]
    assert "connection string in DESTINATION__POSTGRES__CREDENTIALS" in errors[0]
    assert stripe_app.requests == [], "the destination is checked before any invoice is read"


def test_given_a_duckdb_file_when_loaded_then_one_thread_no_order_a_memory_limit_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG", '{"preserve_insertion_order": true}'
    )
    pipeline = dlt.pipeline(
        pipeline_name="duckdb_settings",
        destination=resolve_destination(str(tmp_path / "settings.duckdb")),
        dataset_name="invoices",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    pipeline.run([{"id": 1}], table_name="probe")

    with pipeline.sql_client() as client:
        rows = client.execute_sql(
            "SELECT current_setting('threads'), current_setting('preserve_insertion_order'),"
            " current_setting('memory_limit')"
        )
    assert rows is not None
    threads, preserve_order, memory_limit = rows[0]
    assert (threads, DUCKDB_SETTINGS["threads"]) == (1, 1)
    assert preserve_order is True, "a key set in dlt config wins over the default"
    assert memory_limit == duckdb_setting_as_shown("memory_limit", DUCKDB_SETTINGS["memory_limit"])
