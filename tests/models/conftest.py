"""Fixtures for the models: a pipeline per destination (DuckDB, and PostgreSQL if reachable)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

from invoice_source.destinations import duckdb_destination
from tests.conftest import POSTGRES_URL, require_postgres


@pytest.fixture(params=["duckdb", "postgres"])
def destination_pipeline(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dlt.Pipeline]:
    """A fresh pipeline into DuckDB, or into a throwaway PostgreSQL schema."""
    if request.param == "postgres":
        require_postgres()
    pipeline = models_pipeline(request.param, tmp_path)
    yield pipeline
    drop_postgres_dataset(pipeline, request.param)


def models_pipeline(backend: str, folder: Path) -> dlt.Pipeline:
    """A pipeline into the DuckDB file ``folder/warehouse.duckdb`` (the connector's own DuckDB
    destination), or into a new PostgreSQL schema."""
    dataset = "invoices"
    if backend == "postgres":
        destination: Any = dlt.destinations.postgres(POSTGRES_URL)
        dataset = f"test_models_{uuid.uuid4().hex[:8]}"
    else:
        destination = duckdb_destination(str(folder / "warehouse.duckdb"))
    return dlt.pipeline(
        pipeline_name=f"models_{backend}",
        destination=destination,
        dataset_name=dataset,
        pipelines_dir=str(folder / "pipelines"),
    )


def drop_postgres_dataset(pipeline: dlt.Pipeline, backend: str) -> None:
    """Drop the throwaway PostgreSQL schema a test made."""
    if backend == "postgres":
        with pipeline.sql_client() as client:
            if client.has_dataset():
                client.drop_dataset()


@pytest.fixture
def sql(destination_pipeline: dlt.Pipeline) -> Callable[[str], list[tuple[Any, ...]]]:
    """Run SQL in the pipeline's dataset; ``{{ table }}`` is qualified."""

    def run(text: str) -> list[tuple[Any, ...]]:
        from invoice_source.models import render

        with destination_pipeline.sql_client() as client:
            return [tuple(r) for r in client.execute_sql(render(text, client)) or []]

    return run
