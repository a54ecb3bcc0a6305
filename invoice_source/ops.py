"""Operations: one run at a time per pipeline state, a record of every run, and the status view.

- :class:`RunLock` is an exclusive, non-blocking lock file beside the pipeline's working folder
  (``<pipelines_dir>/<pipeline_name>.lock``). The kernel releases it when the holding process
  exits, however it exits, so a run killed with SIGKILL never blocks the next one; the file only
  keeps the holder's pid, host and start time so a refused run can say who holds it.
- :func:`record_source_run` keeps, per source, the last successful incremental run, the last
  backfill and the last failure in the pipeline's *local* dlt state (never synced to the
  destination, never part of the cursors).
- :func:`read_status` and :func:`format_status` are ``invoice-sync status``: cursors from dlt
  resource state, the run records, pending load packages and whether a run holds the lock.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import dlt

from invoice_source.errors import InvoiceSyncError
from invoice_source.redaction import redact

RUNS_STATE_KEY = "invoice_sync_runs"
# a resource's state under this key: rows per table its last run staged but the merge does not
# store (placeholders that clear an invoice's child rows), left out of the rows a run reports
PLACEHOLDER_ROWS_KEY = "placeholder_rows"
"""Key of the run records in the pipeline's local state."""
LOCK_SUFFIX = ".lock"
BACKFILL_INFIX = "__backfill__"
"""Backfill windows run as pipelines named ``<pipeline>__backfill__<source>__<window>``."""
# unix seconds between 2001 and 2096: a cursor value in this range is shown as a date
_EPOCH_LOW, _EPOCH_HIGH = 1_000_000_000, 4_000_000_000
# a state dict with more keys than this (ids tracked for changes) is shown as a count
_MAX_CURSOR_KEYS = 8


class RunLockedError(InvoiceSyncError):
    """Another run holds the lock of the same pipeline state; this run did not start."""

    def __init__(self, message: str, holder: LockHolder | None = None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a run lock."""

    pid: int
    host: str
    started_at: float
    command: str = ""

    def to_json(self) -> str:
        """The holder as the lock file stores it."""
        return json.dumps(
            {
                "pid": self.pid,
                "host": self.host,
                "started_at": self.started_at,
                "command": self.command,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> LockHolder | None:
        """The holder written in a lock file (None when empty or unreadable)."""
        try:
            data = json.loads(text)
            return cls(
                pid=int(data["pid"]),
                host=str(data.get("host", "")),
                started_at=float(data["started_at"]),
                command=str(data.get("command", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def is_alive(self) -> bool:
        """Whether the holding process still runs (only knowable on this host)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def describe(self, now: float | None = None) -> str:
        """``pid 123 on host, started 2026-01-01T00:00:00Z (4m ago)``."""
        now = time.time() if now is None else now
        return (
            f"pid {self.pid} on {self.host}, started {format_time(self.started_at)}"
            f" ({format_age(now - self.started_at)} ago)"
        )


def lock_path(pipelines_dir: str | os.PathLike[str], pipeline_name: str) -> Path:
    """The lock file of pipeline ``pipeline_name`` in ``pipelines_dir``."""
    return Path(pipelines_dir) / f"{pipeline_name}{LOCK_SUFFIX}"


def default_pipelines_dir() -> str:
    """Where dlt keeps pipeline state when no ``--pipelines-dir`` is given."""
    from dlt.common.pipeline import get_dlt_pipelines_dir

    return get_dlt_pipelines_dir()


class RunLock:
    """An exclusive lock on one pipeline's state, refused at once when another run holds it."""

    def __init__(self, path: str | os.PathLike[str], *, description: str = "") -> None:
        self.path = Path(path)
        self.description = description or f"pipeline state {self.path.with_suffix('')}"
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._file is not None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError` naming the run that holds it."""
        if self._file is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        if not _try_lock(handle):
            holder = self._read(handle)
            handle.close()
            who = holder.describe() if holder else "a process that has not written its pid yet"
            raise RunLockedError(
                f"another invoice-sync run is using {self.description} ({who}); this run was not"
                " started. Runs from the same state directory never overlap: let that run finish,"
                " or give this one another --pipelines-dir or --pipeline-name.",
                holder,
            )
        holder = LockHolder(
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=time.time(),
            command=" ".join(sys.argv[:6]),
        )
        handle.seek(0)
        handle.truncate()
        handle.write(holder.to_json())
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        """Clear the holder and release the lock (a no-op when not held)."""
        handle, self._file = self._file, None
        if handle is None:
            return
        try:
            handle.seek(0)
            handle.truncate()
            handle.flush()
        finally:
            _unlock(handle)
            handle.close()

    def holder(self) -> LockHolder | None:
        """The holder written in the lock file, without taking the lock."""
        try:
            return LockHolder.from_json(self.path.read_text(encoding="utf-8"))
        except OSError:
            return None

    @staticmethod
    def _read(handle: IO[str]) -> LockHolder | None:
        try:
            handle.seek(0)
            return LockHolder.from_json(handle.read())
        except OSError:
            return None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


if sys.platform == "win32":
    import msvcrt

    def _try_lock(handle: IO[str]) -> bool:
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(handle: IO[str]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(handle: IO[str]) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(handle: IO[str]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------- run records
def record_source_run(
    pipeline: dlt.Pipeline,
    source: str,
    *,
    ok: bool,
    mode: str,
    rows: Mapping[str, int] | None = None,
    requests: int = 0,
    seconds: float = 0.0,
    window: Sequence[str | None] | None = None,
    load_ids: Sequence[str] = (),
    error: str | None = None,
    finished_at: float | None = None,
) -> None:
    """Remember how a source's run ended, in the pipeline's local (never synced) dlt state."""
    records = read_run_records(pipeline)
    entry: dict[str, Any] = {
        "finished_at": time.time() if finished_at is None else finished_at,
        "mode": mode,
    }
    if ok:
        entry.update(
            rows=dict(rows or {}),
            requests=requests,
            seconds=round(seconds, 3),
            load_ids=list(load_ids),
        )
        if window is not None:
            entry["window"] = list(window)
        kind = "last_backfill" if mode == "backfill" else "last_success"
        records.setdefault(kind, {})[source] = entry
    else:
        entry["error"] = redact(error or "unknown error")
        records.setdefault("last_failure", {})[source] = entry
    pipeline.set_local_state_val(RUNS_STATE_KEY, records)


def read_run_records(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """The run records kept by :func:`record_source_run` (empty before the first run)."""
    try:
        records = pipeline.get_local_state_val(RUNS_STATE_KEY)
    except KeyError:
        return {}
    return json.loads(json.dumps(records)) if isinstance(records, dict) else {}


# ---------------------------------------------------------------------------------------- status
@dataclass
class SourceStatus:
    """What ``invoice-sync status`` knows about one source."""

    source: str
    cursors: dict[str, Any] = field(default_factory=dict)
    last_success: dict[str, Any] | None = None
    last_backfill: dict[str, Any] | None = None
    last_failure: dict[str, Any] | None = None
    destination_last_load: float | None = None

    @property
    def rows(self) -> int | None:
        """Rows loaded by the last successful run."""
        if not self.last_success:
            return None
        return sum(int(count) for count in self.last_success.get("rows", {}).values())

    @property
    def failing(self) -> bool:
        """Whether the last run of this source failed."""
        if not self.last_failure:
            return False
        success_at = max(
            (self.last_success or {}).get("finished_at", 0.0),
            (self.last_backfill or {}).get("finished_at", 0.0),
        )
        return bool(self.last_failure["finished_at"] >= success_at)


@dataclass
class PipelineStatus:
    """The state of one pipeline, source by source."""

    pipeline_name: str
    pipelines_dir: str
    found: bool
    destination: str | None = None
    dataset: str | None = None
    running: LockHolder | None = None
    interrupted: LockHolder | None = None
    pending_packages: list[str] = field(default_factory=list)
    backfills_pending: list[str] = field(default_factory=list)
    sources: list[SourceStatus] = field(default_factory=list)
    destination_error: str | None = None


def read_status(
    pipeline_name: str,
    pipelines_dir: str,
    source_names: Sequence[str],
    *,
    destination: Any = None,
    dataset: str | None = None,
) -> PipelineStatus:
    """Collect the status of ``pipeline_name``; with a ``destination`` also ask it for the last
    successful load of each source (and restore the state from it when none is kept locally)."""
    status = PipelineStatus(pipeline_name, pipelines_dir, found=False)
    holder = RunLock(lock_path(pipelines_dir, pipeline_name)).holder()
    if holder is not None:
        if holder.is_alive():
            status.running = holder
        else:
            status.interrupted = holder
    status.backfills_pending = _pending_backfills(pipelines_dir, pipeline_name)
    pipeline = _attach(pipeline_name, pipelines_dir, destination, dataset)
    if pipeline is None:
        status.sources = [SourceStatus(name) for name in source_names]
        return status
    status.found = True
    status.destination = _describe_destination(pipeline)
    status.dataset = pipeline.dataset_name
    status.pending_packages = [
        *pipeline.list_extracted_load_packages(),
        *pipeline.list_normalized_load_packages(),
    ]
    records = read_run_records(pipeline)
    sources_state: dict[str, Any] = pipeline.state.get("sources", {})
    for name in source_names:
        status.sources.append(
            SourceStatus(
                source=name,
                cursors=flatten_cursors(sources_state.get(name, {})),
                last_success=records.get("last_success", {}).get(name),
                last_backfill=records.get("last_backfill", {}).get(name),
                last_failure=records.get("last_failure", {}).get(name),
            )
        )
    if destination is not None:
        try:
            loads = last_loads_in_destination(pipeline)
        except Exception as exc:  # status must still print what is known locally
            status.destination_error = redact(f"{type(exc).__name__}: {exc}".splitlines()[0])
        else:
            for source_status in status.sources:
                source_status.destination_last_load = loads.get(source_status.source)
    return status


def _attach(
    pipeline_name: str, pipelines_dir: str, destination: Any, dataset: str | None
) -> dlt.Pipeline | None:
    """The pipeline kept in ``pipelines_dir``; restored from ``destination`` if only it has it."""
    from dlt.pipeline.exceptions import CannotRestorePipelineException

    local = (Path(pipelines_dir) / pipeline_name / "state.json").exists()
    if not local and destination is None:
        return None
    kwargs: dict[str, Any] = {}
    if destination is not None:
        kwargs.update(destination=destination, dataset_name=dataset)
    try:
        return dlt.attach(pipeline_name=pipeline_name, pipelines_dir=pipelines_dir, **kwargs)
    except CannotRestorePipelineException:
        return None


def _describe_destination(pipeline: dlt.Pipeline) -> str | None:
    destination = pipeline.destination
    return None if destination is None else str(destination.destination_name)


def _pending_backfills(pipelines_dir: str, pipeline_name: str) -> list[str]:
    """Backfill window pipelines left with unloaded packages (a re-run loads them)."""
    root = Path(pipelines_dir)
    prefix = f"{pipeline_name}{BACKFILL_INFIX}"
    if not root.is_dir():
        return []
    return sorted(path.name for path in root.iterdir() if path.name.startswith(prefix))


def last_loads_in_destination(pipeline: dlt.Pipeline) -> dict[str, float]:
    """Unix time of the last successful load of each schema (source), from ``_dlt_loads``."""
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return {}
        table = client.make_qualified_table_name("_dlt_loads")
        rows = client.execute_sql(
            f"select schema_name, max(inserted_at) from {table} where status = 0"
            " group by schema_name"
        )
    result: dict[str, float] = {}
    for schema_name, inserted_at in rows or []:
        if isinstance(inserted_at, datetime):
            moment = inserted_at if inserted_at.tzinfo else inserted_at.replace(tzinfo=timezone.utc)
            result[str(schema_name)] = moment.timestamp()
    return result


def flatten_cursors(source_state: Mapping[str, Any]) -> dict[str, Any]:
    """A source's dlt state as ``resource.key -> value`` (scalars only; nested dicts walked)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and len(value) > _MAX_CURSOR_KEYS and prefix:
            flat[prefix] = f"{{{len(value)} entries}}"
        elif isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, (list, tuple)):
            flat[prefix] = f"[{len(value)} items]"
        else:
            flat[prefix] = value

    resources = source_state.get("resources", {})
    walk("", resources)
    for key, value in source_state.items():
        if key != "resources":
            walk(key, value)
    return flat


def format_cursor(value: Any) -> str:
    """A cursor value for people: unix seconds as UTC time, everything else as it is."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)) and _EPOCH_LOW <= value < _EPOCH_HIGH:
        return format_time(float(value))
    return str(value)


def format_time(moment: float) -> str:
    """Unix seconds as ``2026-01-31T12:00:00Z``."""
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_age(seconds: float) -> str:
    """A duration as ``45s``, ``12m``, ``3h 5m`` or ``2d 4h``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def format_status(status: PipelineStatus, now: float | None = None) -> str:
    """``invoice-sync status`` as text: a header, then one block per source."""
    now = time.time() if now is None else now
    lines = list(_header_lines(status, now))
    for source in status.sources:
        lines.append("")
        lines.extend(_source_lines(source, now))
    return "\n".join(lines)


def _header_lines(status: PipelineStatus, now: float) -> Iterator[str]:
    yield f"pipeline {status.pipeline_name} (state in {status.pipelines_dir})"
    if not status.found:
        yield "  no run recorded yet"
    else:
        yield f"  destination: {status.destination or 'unknown'}, dataset: {status.dataset}"
    if status.running is not None:
        yield f"  running now: {status.running.describe(now)}"
    elif status.interrupted is not None:
        yield (
            f"  the last run did not finish (it was killed): {status.interrupted.describe(now)};"
            " the next run resumes it"
        )
    if status.pending_packages:
        yield (
            f"  pending load packages: {len(status.pending_packages)}"
            " (left by an interrupted run; the next run loads them first)"
        )
    if status.backfills_pending:
        yield f"  unfinished backfill windows: {', '.join(status.backfills_pending)}"
    if status.destination_error:
        yield f"  destination not queried: {status.destination_error}"


def _source_lines(source: SourceStatus, now: float) -> Iterator[str]:
    success = source.last_success
    if success:
        finished = float(success["finished_at"])
        yield (
            f"{source.source}: last successful run {format_time(finished)}"
            f" ({format_age(now - finished)} ago), {success.get('mode', 'incremental')}"
        )
        yield (
            f"  rows loaded: {source.rows:,} in {success.get('seconds', 0):.1f}s,"
            f" {success.get('requests', 0):,} requests"
        )
        for table, count in sorted(success.get("rows", {}).items()):
            yield f"    {table:<44}{int(count):>10,}"
    elif source.destination_last_load is not None:
        moment = source.destination_last_load
        yield (
            f"{source.source}: last successful load in the destination {format_time(moment)}"
            f" ({format_age(now - moment)} ago); no run recorded in this state directory"
        )
    else:
        yield f"{source.source}: no successful run yet"
    if source.destination_last_load is not None and success:
        yield f"  last load in the destination: {format_time(source.destination_last_load)}"
    backfill = source.last_backfill
    if backfill:
        finished = float(backfill["finished_at"])
        window = backfill.get("window") or [None, None]
        rows = sum(int(count) for count in backfill.get("rows", {}).values())
        yield (
            f"  last backfill: [{window[0] or 'the beginning'}, {window[1]}),"
            f" {rows:,} rows, {format_time(finished)} ({format_age(now - finished)} ago)"
        )
    if source.failing and source.last_failure:
        failed = float(source.last_failure["finished_at"])
        yield (
            f"  LAST RUN FAILED {format_time(failed)} ({format_age(now - failed)} ago):"
            f" {source.last_failure.get('error', '')}"
        )
    if source.cursors:
        yield "  cursors:"
        for key, value in sorted(source.cursors.items()):
            yield f"    {key} = {format_cursor(value)}"
    else:
        yield "  cursors: none yet (the next incremental run starts from start_date)"


def status_as_dict(status: PipelineStatus, now: float | None = None) -> dict[str, Any]:
    """The status as JSON-able data (``invoice-sync status --json``)."""
    now = time.time() if now is None else now

    def holder(value: LockHolder | None) -> dict[str, Any] | None:
        if value is None:
            return None
        return {"pid": value.pid, "host": value.host, "started_at": format_time(value.started_at)}

    sources = []
    for source in status.sources:
        success = source.last_success or {}
        backfill = source.last_backfill or {}
        finished = success.get("finished_at")
        sources.append(
            {
                "source": source.source,
                "last_success_at": format_time(finished) if finished else None,
                "seconds_since_success": round(now - finished) if finished else None,
                "mode": success.get("mode"),
                "rows": source.rows,
                "rows_by_table": success.get("rows"),
                "last_backfill": {
                    "at": format_time(backfill["finished_at"]),
                    "window": backfill.get("window"),
                    "rows": sum(int(n) for n in backfill.get("rows", {}).values()),
                }
                if backfill
                else None,
                "failing": source.failing,
                "last_failure": source.last_failure
                and {
                    "at": format_time(source.last_failure["finished_at"]),
                    "error": source.last_failure.get("error"),
                },
                "destination_last_load_at": format_time(source.destination_last_load)
                if source.destination_last_load
                else None,
                "cursors": {key: format_cursor(value) for key, value in source.cursors.items()},
            }
        )
    return {
        "pipeline": status.pipeline_name,
        "pipelines_dir": status.pipelines_dir,
        "found": status.found,
        "destination": status.destination,
        "dataset": status.dataset,
        "running": holder(status.running),
        "interrupted": holder(status.interrupted),
        "pending_packages": status.pending_packages,
        "unfinished_backfills": status.backfills_pending,
        "sources": sources,
    }
