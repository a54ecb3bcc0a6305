"""Compose sources, a dlt pipeline and a destination; run them and summarise what landed.

The CLI, the ``pipelines/`` scripts, the demo and the benchmarks all go through
:func:`run_sync`, so a load behaves the same however it is started.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.sources import DltSource

from invoice_source import http
from invoice_source.errors import ConfigurationError

logger = logging.getLogger("invoice_source.pipeline")

DEFAULT_PIPELINE_NAME = "invoice_sync"
DEFAULT_DATASET = "invoices"
# Not "invoices.duckdb": DuckDB names the catalog after the file, and a catalog and a schema
# (dataset) both called "invoices" make every "invoices.table" reference ambiguous.
DEFAULT_DUCKDB_FILE = "invoice_sync.duckdb"

# source name -> "module:function" of its dlt source (imported only when used)
SOURCES: dict[str, str] = {
    "stripe": "invoice_source.stripe:stripe_source",
    "prepbusiness": "invoice_source.prepbusiness:prepbusiness_source",
    "alternative_payments": "invoice_source.alternative_payments:alternative_payments_source",
}
# the HTTP client name each source's requests are counted under (http.REQUEST_TOTALS)
SOURCE_APIS: dict[str, str] = {
    "stripe": "stripe",
    "prepbusiness": "prepbusiness",
    "alternative_payments": "alternative_payments",
}


def source_name(name: str) -> str:
    """Canonical source name from what a user typed (``alternative-payments`` is accepted)."""
    canonical = name.strip().lower().replace("-", "_")
    if canonical not in SOURCES:
        known = ", ".join(n.replace("_", "-") for n in SOURCES)
        raise ConfigurationError(f"unknown source {name!r}; choose one of: {known}, all")
    return canonical


def source_names(names: Sequence[str]) -> list[str]:
    """Expand ``all`` and canonicalise a list of source names, keeping their order."""
    result: list[str] = []
    for name in names:
        expanded = list(SOURCES) if name.strip().lower() == "all" else [source_name(name)]
        result += [n for n in expanded if n not in result]
    return result


def build_source(name: str, **overrides: Any) -> DltSource:
    """The dlt source ``name`` with config from ``[sources.<name>]`` plus ``overrides``."""
    module_name, function_name = SOURCES[source_name(name)].split(":")
    factory = getattr(importlib.import_module(module_name), function_name)
    kwargs = {key: value for key, value in overrides.items() if value is not None}
    source: DltSource = factory(**kwargs)
    return source


@dataclass
class SyncOptions:
    """Where and how to load."""

    destination: Any = None
    dataset: str = DEFAULT_DATASET
    pipeline_name: str = DEFAULT_PIPELINE_NAME
    pipelines_dir: str | None = None
    start_date: Any = None
    end_date: Any = None
    full_refresh: bool = False
    source_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class SourceResult:
    """What one source's run did."""

    source: str
    rows: dict[str, int]
    requests: int
    seconds: float
    load_info: LoadInfo | None = None


@dataclass
class SyncResult:
    """What a whole run did, source by source."""

    sources: list[SourceResult]
    pipeline: dlt.Pipeline

    @property
    def total_rows(self) -> int:
        """Rows loaded across every source and table."""
        return sum(sum(r.rows.values()) for r in self.sources)


def resolve_destination(destination: Any) -> Any:
    """A dlt destination: the given one, ``duckdb`` -> the local ``invoices.duckdb`` file."""
    if destination is None or destination == "duckdb":
        return dlt.destinations.duckdb(DEFAULT_DUCKDB_FILE)
    if isinstance(destination, str) and destination.endswith(".duckdb"):
        return dlt.destinations.duckdb(destination)
    return destination


def make_pipeline(options: SyncOptions) -> dlt.Pipeline:
    """The dlt pipeline for ``options`` (state lives in ``pipelines_dir``)."""
    kwargs: dict[str, Any] = {}
    if options.pipelines_dir:
        kwargs["pipelines_dir"] = options.pipelines_dir
    try:
        return dlt.pipeline(
            pipeline_name=options.pipeline_name,
            destination=resolve_destination(options.destination),
            dataset_name=options.dataset,
            **kwargs,
        )
    except Exception as exc:  # dlt raises several types for an unknown destination
        raise ConfigurationError(f"cannot use destination {options.destination!r}: {exc}") from None


def run_sync(names: Sequence[str], options: SyncOptions) -> SyncResult:
    """Load each named source into the destination, one after another."""
    pipeline = make_pipeline(options)
    results: list[SourceResult] = []
    for name in source_names(names):
        overrides = {
            "start_date": options.start_date,
            "end_date": options.end_date,
            **options.source_overrides.get(name, {}),
        }
        source = build_source(name, **overrides)
        api = SOURCE_APIS[name]
        requests_before = http.REQUEST_TOTALS[api]
        started = time.perf_counter()
        if options.full_refresh:
            load_info = pipeline.run(source, refresh="drop_sources")
        else:
            load_info = pipeline.run(source)
        elapsed = time.perf_counter() - started
        rows = _rows_loaded(pipeline)
        results.append(
            SourceResult(
                source=name,
                rows=rows,
                requests=http.REQUEST_TOTALS[api] - requests_before,
                seconds=elapsed,
                load_info=load_info,
            )
        )
        logger.info("%s: %d rows in %.1fs", name, sum(rows.values()), elapsed)
    return SyncResult(results, pipeline)


def _rows_loaded(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Rows per table written by the last normalize step (dlt's own tables left out)."""
    trace = pipeline.last_trace
    if trace is None or trace.last_normalize_info is None:
        return {}
    counts = trace.last_normalize_info.row_counts
    return {table: count for table, count in counts.items() if not table.startswith("_dlt")}
