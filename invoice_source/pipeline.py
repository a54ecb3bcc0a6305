"""Compose sources, a dlt pipeline and a destination; run them and summarise what landed.

The CLI, the ``pipelines/`` scripts, the demo and the benchmarks all go through
:func:`run_sync`, so a load behaves the same however it is started:

- One run at a time per pipeline state: :class:`~invoice_source.ops.RunLock` refuses a second
  concurrent run at once (:class:`~invoice_source.ops.RunLockedError`).
- Load packages left by an interrupted run are loaded first (nothing is lost, nothing doubled:
  every table is merged), then each source runs.
- Without ``end_date`` a source runs incrementally from its cursor. With ``end_date`` it is a
  backfill of ``[start_date, end_date)``: the window (optionally split into ``window_days``
  pieces, extracted by up to ``workers`` threads) runs under pipelines of its own named
  ``<pipeline>__backfill__<source>__<window>``, loaded one after another into the same dataset,
  so the incremental pipeline's state is never touched and a DuckDB file never sees two writers.
- A failing source does not stop the others; :class:`SyncFailedError` carries what did load.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.sources import DltSource

from invoice_source import http
from invoice_source.destinations import duckdb_destination
from invoice_source.diagnostics import describe_config_error, describe_failure
from invoice_source.errors import ConfigurationError, InvoiceSyncError
from invoice_source.ops import (
    BACKFILL_INFIX,
    PLACEHOLDER_ROWS_KEY,
    RunLock,
    default_pipelines_dir,
    lock_path,
    record_source_run,
)
from invoice_source.redaction import redact, register_secret
from invoice_source.windows import parse_instant

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
    # a backfill (end_date set) split into windows of this many days
    window_days: float | None = None
    # backfill windows extracted at the same time (loads stay one after another)
    workers: int = 1
    # None: dlt picks per destination (parquet where supported, csv on PostgreSQL, ...)
    loader_file_format: str | None = None
    # "delta" or "iceberg" for a filesystem lake where merges must replace rows
    table_format: str | None = None


@dataclass
class SourceResult:
    """What one source's run did."""

    source: str
    rows: dict[str, int]
    requests: int
    seconds: float
    load_info: LoadInfo | None = None
    mode: str = "incremental"
    window: tuple[str | None, str | None] | None = None
    windows: int = 0
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the source loaded without error."""
        return self.error is None


@dataclass
class SyncResult:
    """What a whole run did, source by source."""

    sources: list[SourceResult]
    pipeline: dlt.Pipeline
    resumed_packages: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        """Rows loaded across every source and table."""
        return sum(sum(r.rows.values()) for r in self.sources)

    @property
    def failures(self) -> list[SourceResult]:
        """The sources that failed."""
        return [r for r in self.sources if not r.ok]

    @property
    def ok(self) -> bool:
        """Whether every source loaded."""
        return not self.failures


class SyncFailedError(InvoiceSyncError):
    """One or more sources failed; the others were loaded (``result`` says which)."""

    def __init__(self, result: SyncResult) -> None:
        self.result = result
        parts = [f"{r.source}: {describe_failure(r.error, r.source)}" for r in result.failures]
        super().__init__("; ".join(parts))


def configured_destination(pipeline_name: str) -> str | None:
    """The destination named in dlt config: ``destination_type`` at the top level, or under
    ``[<pipeline_name>]`` (env ``DESTINATION_TYPE`` / ``INVOICE_SYNC__DESTINATION_TYPE``)."""
    for key in (f"{pipeline_name}.destination_type", "destination_type"):
        value: Any = dlt.config.get(key)
        if value:
            return str(value)
    return None


def resolve_destination(destination: Any, pipeline_name: str = DEFAULT_PIPELINE_NAME) -> Any:
    """A dlt destination: the given one, else ``destination_type`` from config, else the local
    ``invoice_sync.duckdb`` file; ``duckdb`` and ``*.duckdb`` paths mean a DuckDB file."""
    if destination is None:
        destination = configured_destination(pipeline_name)
    if destination is None or destination == "duckdb":
        return duckdb_destination(DEFAULT_DUCKDB_FILE)
    if isinstance(destination, str) and destination.endswith(".duckdb"):
        return duckdb_destination(destination)
    return destination


def make_pipeline(options: SyncOptions) -> dlt.Pipeline:
    """The dlt pipeline for ``options`` (state lives in ``pipelines_dir``)."""
    kwargs: dict[str, Any] = {}
    if options.pipelines_dir:
        kwargs["pipelines_dir"] = options.pipelines_dir
    try:
        return dlt.pipeline(
            pipeline_name=options.pipeline_name,
            destination=resolve_destination(options.destination, options.pipeline_name),
            dataset_name=options.dataset,
            **kwargs,
        )
    except Exception as exc:  # dlt raises several types for an unknown destination
        problem = describe_config_error(exc)
        if problem is not None:
            raise ConfigurationError(problem) from None
        from dlt.common.destination.exceptions import UnknownDestinationModule

        named = options.destination or configured_destination(options.pipeline_name)
        if isinstance(exc, UnknownDestinationModule):
            raise ConfigurationError(
                f"unknown destination {named!r} (--destination or destination_type): use"
                " duckdb, a .duckdb file path, postgres, bigquery, snowflake, motherduck,"
                " databricks, filesystem or another dlt destination"
            ) from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigurationError(
            redact(f"cannot use destination {named!r} (--destination): {first}")
        ) from None


def run_sync(names: Sequence[str], options: SyncOptions) -> SyncResult:
    """Load each named source into the destination, one after another.

    Refuses to start while another run holds the same pipeline state (``RunLockedError``);
    raises :class:`SyncFailedError` after the run when any source failed.
    """
    selected = source_names(names)
    check_options(options)
    pipelines_dir = options.pipelines_dir or default_pipelines_dir()
    started = time.perf_counter()
    lock = RunLock(
        lock_path(pipelines_dir, options.pipeline_name),
        description=f"pipeline {options.pipeline_name!r} in {pipelines_dir}",
    )
    with lock:
        pipeline = make_pipeline(options)
        credentials = destination_credentials(pipeline)
        results: list[SourceResult] = []
        resumed: list[str] = []
        try:
            resumed = finish_pending(pipeline)
        except Exception as exc:
            # the destination is not taking the old packages; no source can load before it does
            mode = "backfill" if options.end_date is not None else "incremental"
            results = [_failed(name, exc, mode) for name in selected]
        else:
            for name in selected:
                if options.end_date is not None:
                    result = run_backfill(pipeline, name, options, credentials=credentials)
                else:
                    result = run_incremental(pipeline, name, options)
                results.append(result)
                log_source_result(result)
        for result in results:
            _record(pipeline, result)
    sync_result = SyncResult(results, pipeline, resumed, time.perf_counter() - started)
    if not sync_result.ok:
        raise SyncFailedError(sync_result)
    return sync_result


def check_options(options: SyncOptions) -> None:
    """Refuse option combinations that cannot mean what the user wants."""
    if options.end_date is None and (options.window_days or options.workers > 1):
        raise ConfigurationError(
            "--window-days and --workers split a backfill: give --end-date (and --start-date)"
        )
    if options.end_date is not None and options.full_refresh:
        raise ConfigurationError(
            "--full-refresh drops and reloads whole sources; it cannot be combined with"
            " --end-date (a backfill merges one window into what is there)"
        )
    if options.window_days is not None and options.window_days <= 0:
        raise ConfigurationError("--window-days must be positive")
    if options.window_days and options.start_date is None:
        raise ConfigurationError("--window-days needs --start-date: windows start from it")
    if options.workers < 1:
        raise ConfigurationError("--workers must be at least 1")


def finish_pending(pipeline: dlt.Pipeline) -> list[str]:
    """Normalize and load packages an interrupted run left behind; returns their load ids."""
    if not pipeline.has_pending_data:
        return []
    pending = [
        *pipeline.list_extracted_load_packages(),
        *pipeline.list_normalized_load_packages(),
    ]
    logger.warning(
        "resuming %d load package(s) left by an interrupted run: %s",
        len(pending),
        ", ".join(pending),
    )
    pipeline.run()
    return pending


def run_incremental(pipeline: dlt.Pipeline, name: str, options: SyncOptions) -> SourceResult:
    """Run source ``name`` from its saved cursor (or reload it with ``full_refresh``)."""
    mode = "full_refresh" if options.full_refresh else "incremental"
    api = SOURCE_APIS[name]
    requests_before = http.REQUEST_TOTALS[api]
    started = time.perf_counter()
    try:
        finish_pending(pipeline)  # a failed load of an earlier source would swallow this run
        source = build_source(name, **_overrides(name, options, options.start_date, None))
        kwargs = run_kwargs(pipeline, options, name)
        if options.full_refresh:
            kwargs["refresh"] = "drop_sources"
        load_info = pipeline.run(source, **kwargs)
    except Exception as exc:
        logger.debug("%s failed", name, exc_info=True)
        return _failed(name, exc, mode, http.REQUEST_TOTALS[api] - requests_before, started)
    return SourceResult(
        source=name,
        rows=_rows_loaded(pipeline),
        requests=http.REQUEST_TOTALS[api] - requests_before,
        seconds=time.perf_counter() - started,
        load_info=load_info,
        mode=mode,
    )


@dataclass(frozen=True)
class Window:
    """A backfill window ``[start, end)``; ``start=None`` means from the source's beginning."""

    start: datetime | None
    end: datetime

    def label(self) -> tuple[str | None, str]:
        """The window as ISO strings."""
        return (_iso(self.start) if self.start else None, _iso(self.end))

    def slug(self) -> str:
        """The window as it appears in a pipeline name."""
        start = self.start.strftime("%Y%m%dT%H%M%S") if self.start else "beginning"
        return f"{start}_{self.end.strftime('%Y%m%dT%H%M%S')}"


def split_window(start: datetime | None, end: datetime, days: float | None) -> list[Window]:
    """``[start, end)`` cut into consecutive windows of ``days`` (the last one may be shorter)."""
    if start is None or not days:
        return [Window(start, end)]
    step = timedelta(days=days)
    windows: list[Window] = []
    cursor = start
    while cursor < end:
        windows.append(Window(cursor, min(cursor + step, end)))
        cursor += step
    return windows


def backfill_pipeline_name(pipeline_name: str, source: str, window: Window) -> str:
    """The pipeline a backfill window runs under (stable, so a re-run resumes it)."""
    return f"{pipeline_name}{BACKFILL_INFIX}{source}__{window.slug()}"


@dataclass
class _PreparedWindow:
    window: Window
    pipeline: dlt.Pipeline | None = None
    rows: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    error: BaseException | None = None


def run_backfill(
    pipeline: dlt.Pipeline, name: str, options: SyncOptions, *, credentials: Any = None
) -> SourceResult:
    """Backfill source ``name`` over ``[start_date, end_date)`` without touching its cursor.

    Windows are extracted and normalized by up to ``options.workers`` threads, each under its
    own pipeline, then loaded one after another into ``pipeline``'s dataset. A window whose
    load was interrupted is loaded from its pending package on the next run instead of being
    read again; a loaded window's pipeline is dropped.
    """
    api = SOURCE_APIS[name]
    requests_before = http.REQUEST_TOTALS[api]
    started = time.perf_counter()
    try:
        start = _utc(parse_instant(options.start_date, key="--start-date"))
        end = _utc(parse_instant(options.end_date, key="--end-date"))
        if end is None:
            raise ConfigurationError("a backfill needs --end-date")
        if start is not None and end <= start:
            raise ConfigurationError(
                f"--end-date {_iso(end)} is not after --start-date {_iso(start)}"
            )
        windows = split_window(start, end, options.window_days)
    except Exception as exc:
        logger.debug("%s: backfill refused", name, exc_info=True)
        return _failed(name, exc, "backfill", 0, started)
    label = (windows[0].label()[0], windows[-1].label()[1])
    logger.info(
        "%s: backfill of [%s, %s) in %d window(s), %d at a time",
        name,
        label[0] or "the beginning",
        label[1],
        len(windows),
        min(options.workers, len(windows)),
    )
    with ThreadPoolExecutor(max_workers=min(options.workers, len(windows))) as pool:
        prepared = list(
            pool.map(lambda window: _prepare_window(pipeline, name, window, options), windows)
        )
    rows: dict[str, int] = {}
    errors: list[BaseException] = []
    load_info: LoadInfo | None = None
    for item in prepared:
        if item.error is None and item.pipeline is not None:
            try:
                load_info = item.pipeline.load(credentials=credentials)
            except Exception as exc:
                logger.debug("%s: loading window %s failed", name, item.window, exc_info=True)
                item.error = exc
            else:
                _remove_pipeline(item.pipeline)
                for table, count in item.rows.items():
                    rows[table] = rows.get(table, 0) + count
        if item.error is not None:
            errors.append(item.error)
    result = SourceResult(
        source=name,
        rows=rows,
        requests=http.REQUEST_TOTALS[api] - requests_before,
        seconds=time.perf_counter() - started,
        load_info=load_info,
        mode="backfill",
        window=label,
        windows=len(windows),
        error=errors[0] if errors else None,
    )
    if len(errors) > 1:
        logger.warning("%s: %d of %d backfill windows failed", name, len(errors), len(windows))
    return result


def _prepare_window(
    pipeline: dlt.Pipeline, name: str, window: Window, options: SyncOptions
) -> _PreparedWindow:
    """Extract and normalize one window under its own pipeline (runs in a worker thread)."""
    item = _PreparedWindow(window)
    try:
        window_pipeline = dlt.pipeline(
            pipeline_name=backfill_pipeline_name(options.pipeline_name, name, window),
            destination=pipeline.destination,
            staging=pipeline.staging,
            dataset_name=pipeline.dataset_name,
            pipelines_dir=pipeline.pipelines_dir,
        )
        # a window pipeline is new and never restores state from the destination: its source
        # keeps no cursor, and the threads must not open a DuckDB file at the same time
        window_pipeline.config.restore_from_destination = False
        item.pipeline = window_pipeline
        if window_pipeline.has_pending_data:
            logger.warning(
                "%s: window %s was read by an earlier, interrupted run; loading what it read",
                name,
                window.label(),
            )
            item.resumed = True
            if window_pipeline.list_extracted_load_packages():
                window_pipeline.normalize()
            item.rows = _rows_loaded(window_pipeline)
            return item
        start, end = window.label()
        source = build_source(name, **_overrides(name, options, start or options.start_date, end))
        window_pipeline.extract(source, **run_kwargs(pipeline, options, name))
        window_pipeline.normalize()
        item.rows = _rows_loaded(window_pipeline)
    except Exception as exc:
        logger.debug("%s: window %s failed", name, window.label(), exc_info=True)
        item.error = exc
    return item


def _remove_pipeline(pipeline: dlt.Pipeline) -> None:
    """Delete a loaded backfill window's pipeline folder (its data is in the destination)."""
    if pipeline.is_active:
        pipeline.deactivate()
    shutil.rmtree(pipeline.working_dir, ignore_errors=True)


def schema_contract(name: str) -> Any:
    """dlt's schema contract for source ``name`` from ``[sources.<name>] schema_contract``
    (``evolve``/``freeze``/``discard_value``/``discard_row``, or a JSON object per ``tables``,
    ``columns``, ``data_type``); None when not set."""
    key = f"sources.{name}.schema_contract"
    value: Any = dlt.config.get(key)
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigurationError(f"{key} is not valid JSON: {value!r}") from None
    return value or None


def run_kwargs(
    pipeline: dlt.Pipeline, options: SyncOptions, name: str | None = None
) -> dict[str, Any]:
    """``loader_file_format``, ``table_format`` and ``schema_contract`` for ``pipeline.run`` /
    ``extract``, checked against the destination (dlt's own per-destination choice when the
    file format is not given)."""
    kwargs: dict[str, Any] = {}
    contract = schema_contract(name) if name else None
    if contract:
        kwargs["schema_contract"] = contract
    destination = pipeline.destination
    if options.loader_file_format:
        supported = supported_file_formats(destination)
        if options.loader_file_format not in supported:
            raise ConfigurationError(
                f"--loader-file-format {options.loader_file_format!r} is not supported by"
                f" {destination.destination_name}; choose one of: {', '.join(supported)}"
            )
        kwargs["loader_file_format"] = options.loader_file_format
    else:
        chosen = default_file_format(destination)
        if chosen:
            kwargs["loader_file_format"] = chosen
    if options.table_format:
        kwargs["table_format"] = options.table_format
    elif destination.destination_type.endswith(".filesystem"):
        logger.warning(
            "filesystem destination without a table format: dlt appends instead of merging, so"
            " an invoice read again lands twice; use --table-format delta (pip install"
            " 'dlt[deltalake]') for a lake that stays deduplicated"
        )
    return kwargs


def supported_file_formats(destination: Any) -> list[str]:
    """The loader file formats ``destination`` takes here (dlt drops parquet for PostgreSQL
    when its ADBC driver is not installed)."""
    caps = destination.capabilities()
    preferred = caps.preferred_loader_file_format
    supported = list(caps.supported_loader_file_formats or [])
    if caps.loader_file_format_selector is not None:
        probe: Any = {"name": "_invoice_sync_probe", "columns": {}}
        preferred, supported = caps.loader_file_format_selector(
            preferred, supported, table_schema=probe
        )
    return list(supported)


def default_file_format(destination: Any) -> str | None:
    """The file format to ask for when the user names none: None (dlt's choice: parquet for
    our arrow tables) where parquet loads, else ``csv`` (PostgreSQL without ADBC), which keeps
    resources that ask for parquet from falling back with a warning per table."""
    supported = supported_file_formats(destination)
    if "parquet" in supported or "csv" not in supported:
        return None
    return "csv"


def destination_credentials(pipeline: dlt.Pipeline) -> Any:
    """The destination's resolved credentials, with their secrets registered for redaction.

    Backfill window pipelines load with these, so credentials configured under the main
    pipeline's section reach them too. None when they cannot be resolved yet (the run then
    fails with dlt's own message naming the missing keys)."""
    try:
        credentials = pipeline.destination_client().config.credentials
    except Exception:
        return None
    register_credentials_secrets(credentials)
    return credentials


def register_credentials_secrets(credentials: Any) -> None:
    """Register every secret field of dlt credentials (passwords, keys, tokens) for redaction."""
    from dlt.common.configuration.specs.base_configuration import (
        BaseConfiguration,
        is_secret_hint,
    )

    if not isinstance(credentials, BaseConfiguration):
        return
    for field_name, hint in credentials.get_resolvable_fields().items():
        value = getattr(credentials, field_name, None)
        if isinstance(value, BaseConfiguration):
            register_credentials_secrets(value)
        elif isinstance(value, str) and is_secret_hint(hint):
            register_secret(value)


def log_source_result(result: SourceResult) -> None:
    """One ``source_finished`` log record; failures only at debug level (the CLI reports them
    as its one-line error, first thing on stderr)."""
    extra = {
        "event": "source_finished",
        "source": result.source,
        "ok": result.ok,
        "mode": result.mode,
        "rows": sum(result.rows.values()),
        "requests": result.requests,
        "seconds": round(result.seconds, 3),
    }
    level = logging.INFO if result.ok else logging.DEBUG
    logger.log(level, "%s: %s", result.source, describe_source_result(result), extra=extra)


def describe_source_result(result: SourceResult) -> str:
    """``1,234 rows in 2.1s (35 requests)`` or ``failed: <reason>``."""
    if not result.ok:
        return f"failed: {describe_failure(result.error, result.source)}"
    text = (
        f"{sum(result.rows.values()):,} rows in {result.seconds:.1f}s ({result.requests} requests)"
    )
    if result.mode == "backfill" and result.window:
        text += f", backfill [{result.window[0] or '…'}, {result.window[1]})"
        text += f" in {result.windows} window(s)"
    return text


def _overrides(name: str, options: SyncOptions, start_date: Any, end_date: Any) -> dict[str, Any]:
    return {
        "start_date": start_date,
        "end_date": end_date,
        **options.source_overrides.get(name, {}),
    }


def _failed(
    name: str,
    exc: BaseException,
    mode: str,
    requests: int = 0,
    started: float | None = None,
) -> SourceResult:
    seconds = time.perf_counter() - started if started is not None else 0.0
    return SourceResult(name, {}, requests, seconds, mode=mode, error=exc)


def _record(pipeline: dlt.Pipeline, result: SourceResult) -> None:
    load_ids: list[str] = list(result.load_info.loads_ids) if result.load_info else []
    try:
        record_source_run(
            pipeline,
            result.source,
            ok=result.ok,
            mode=result.mode,
            rows=result.rows,
            requests=result.requests,
            seconds=result.seconds,
            window=result.window,
            load_ids=load_ids,
            error=None if result.ok else describe_failure(result.error, result.source),
        )
    except Exception:  # a status record must never turn a good run into a failed one
        logger.warning("could not record the run of %s for `status`", result.source, exc_info=True)


def _utc(moment: datetime | None) -> datetime | None:
    """A plain aware UTC ``datetime`` (pendulum's subclass loses its zone in arithmetic)."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment.timestamp(), tz=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rows_loaded(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Rows per table written by the last normalize step (dlt's own tables left out), less the
    placeholder rows the resources say they staged (``PLACEHOLDER_ROWS_KEY``)."""
    trace = pipeline.last_trace
    if trace is None or trace.last_normalize_info is None:
        return {}
    counts = trace.last_normalize_info.row_counts
    placeholders: Counter[str] = Counter()
    for source_state in (pipeline.state.get("sources") or {}).values():
        for resource_state in (source_state.get("resources") or {}).values():
            placeholders.update(resource_state.get(PLACEHOLDER_ROWS_KEY) or {})
    return {
        table: count - placeholders[table]
        for table, count in counts.items()
        if not table.startswith("_dlt")
    }
