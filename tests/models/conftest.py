"""Fixtures for the models: a pipeline per destination (DuckDB, and PostgreSQL if reachable)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

POSTGRES_URL = "postgresql://postgres:unused@127.0.0.1:5432/test"


@pytest.fixture(params=["duckdb", "postgres"])
def destination_pipeline(
    request: pytest.FixtureRequest, tmp_path: Path, duckdb_path: Path
) -> Iterator[dlt.Pipeline]:
    """A fresh pipeline into DuckDB, or into a throwaway PostgreSQL schema."""
    dataset = "invoices"
    if request.param == "postgres":
        request.getfixturevalue("postgres_available")
        destination: Any = dlt.destinations.postgres(POSTGRES_URL)
        dataset = f"test_models_{uuid.uuid4().hex[:8]}"
    else:
        destination = dlt.destinations.duckdb(str(duckdb_path))
    pipeline = dlt.pipeline(
        pipeline_name=f"models_{request.param}",
        destination=destination,
        dataset_name=dataset,
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    yield pipeline
    if request.param == "postgres":
        with pipeline.sql_client() as client:
            if client.has_dataset():
                client.drop_dataset()


@pytest.fixture
def sql(destination_pipeline: dlt.Pipeline) -> Callable[[str], list[tuple[Any, ...]]]:
    """Run SQL in the pipeline's dataset; ``{{ table }}`` is qualified."""

    def run(text: str) -> list[tuple[Any, ...]]:
        from invoice_source.models import render

        with destination_pipeline.sql_client() as client:
            return [tuple(r) for r in client.execute_sql(render(text, client))]

    return run
