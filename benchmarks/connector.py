"""One connector run, measured from inside its own process.

``python -m benchmarks.connector --api stripe --duckdb PATH --pipelines-dir DIR --workers 4
[--requests-per-second R] [--duckdb-setting memory_limit=256MB] [--profile FILE]`` loads the
API's source into the DuckDB file through :func:`invoice_source.pipeline.run_sync`, the path
the CLI, the pipeline scripts and the demo take (run lock, pending packages, the destination's
file format, the run record), the source configured from the ``SOURCES__<API>__*`` env vars the
sandbox gave. It prints a ``BENCH_RESULT`` line: wall time of the run, requests sent (the HTTP
layer's ``REQUEST_TOTALS``), rows per table and rows this run loaded, the time and peak memory
of each dlt step (extract, normalize, load; the resident memory of the process and its worker
processes summed, sampled every 20 ms from ``/proc``), the peak of their proportional set size
(PSS: shared pages split among the processes that map them, sampled every second where
``/proc/<pid>/smaps_rollup`` exists), the peak of their anonymous memory summed, and the
process's peak resident memory.
Running it again on the same files is an incremental run.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dlt

from benchmarks.apis import APIS
from benchmarks.child import emit_result
from invoice_source.destinations import duckdb_destination
from invoice_source.http import REQUEST_TOTALS
from invoice_source.ops import read_run_records
from invoice_source.pipeline import SyncOptions, run_sync

PIPELINE_DATASET = "invoices"
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATM = Path("/proc/self/statm")


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (worker processes included) that runs a program of
    its own.

    A child between ``fork`` (or ``vfork``, which CPython's subprocess and multiprocessing use on
    Linux) and ``exec`` still maps its parent's pages, and ``/proc`` reports the parent's
    resident memory for it too: summing it would count the parent twice for that moment (seen:
    a 205 MB run's process and its ``vfork`` child sampled at 414 MB). Such a child still has
    its parent's command line; it is left out until it has exec'd.
    """
    found: list[int] = []
    pids = [root]
    while pids:
        pid = pids.pop()
        found.append(pid)
        try:
            own = _cmdline(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                children = [int(child) for child in (task / "children").read_text().split()]
                pids += [child for child in children if _cmdline(child) != own]
        except (OSError, ValueError):  # the process ended while we looked
            continue
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # ended: nothing of it to count
        return b""


def tree_memory_mb(pids: list[int]) -> tuple[float, float]:
    """Resident and anonymous memory of ``pids`` summed, in MB: one process's ``ru_maxrss``
    would hide what its workers hold.

    Resident counts the pages the processes share (libraries) once per process; anonymous
    (resident less file-backed and shared, ``statm``'s second field less its third) is the
    memory the code itself allocates, which does not move with the page cache's state.
    """
    resident_pages = anonymous_pages = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/statm").read_text().split()
            resident, shared = int(fields[1]), int(fields[2])
        except (OSError, ValueError, IndexError):
            continue
        resident_pages += resident
        anonymous_pages += resident - shared
    return resident_pages * _PAGE_SIZE / 2**20, anonymous_pages * _PAGE_SIZE / 2**20


def tree_pss_mb(pids: list[int]) -> float:
    """Proportional set size of ``pids`` summed, in MB: each shared page counts once in all,
    split among the processes that map it."""
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    break
        except (OSError, ValueError, IndexError):
            continue
    return total_kb / 1024


class RssSampler:
    """Samples the resident memory of this process and its descendants in a background thread."""

    def __init__(self, interval: float = 0.02, tree_every: int = 12, pss_every: int = 50) -> None:
        self.interval = interval
        # What a sample costs, measured in a process of 20 threads: statm of three processes
        # ~20 us, the walk of the process tree ~430 us, smaps_rollup ~4 ms per process (the
        # kernel walks its page tables). At 20 ms each, walk and PSS took ~8 % of a core from
        # a run whose two cores are busy; the tree changes when a worker starts (every 25,000
        # invoices), so it is walked every 250 ms and PSS read every second.
        self.tree_every = tree_every
        self.pss_every = pss_every
        self.samples: list[tuple[float, float]] = []
        self.peak_anonymous = 0.0
        self.peak_pss: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        """Start sampling (a no-op where ``/proc/self/statm`` does not exist)."""
        if _STATM.exists():
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        pid = os.getpid()
        read_pss = Path(f"/proc/{pid}/smaps_rollup").exists()
        count = 0
        pids = [pid]
        while not self._stop.is_set():
            if count % self.tree_every == 0:
                pids = process_tree(pid)
            resident, anonymous = tree_memory_mb(pids)
            self.samples.append((time.time(), resident))
            self.peak_anonymous = max(self.peak_anonymous, anonymous)
            if read_pss and count % self.pss_every == 0:
                pss = tree_pss_mb(pids)
                self.peak_pss = pss if self.peak_pss is None else max(self.peak_pss, pss)
            count += 1
            self._stop.wait(self.interval)

    @property
    def peak(self) -> float:
        """Highest sample of the whole run, in MB (0 without samples)."""
        return max((mb for _, mb in self.samples), default=0.0)

    def peak_between(self, start: float, end: float) -> float | None:
        """Highest sample taken between two ``time.time()`` instants, in MB."""
        inside = [mb for at, mb in self.samples if start <= at <= end]
        return max(inside) if inside else None


def table_counts(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Rows in every data table of the pipeline's schema."""
    counts: dict[str, int] = {}
    with pipeline.sql_client() as client:
        for table in pipeline.default_schema.data_table_names():
            rows = client.execute_sql(f'SELECT count(*) FROM "{table}"')
            counts[table] = int(rows[0][0]) if rows else 0
    return counts


def step_figures(pipeline: dlt.Pipeline, sampler: RssSampler) -> dict[str, dict[str, Any]]:
    """Seconds and peak memory of each dlt step of the pipeline's last run."""
    steps: dict[str, dict[str, Any]] = {}
    trace = pipeline.last_trace
    if trace is None:
        return steps
    for step in trace.steps:
        if step.started_at is None or step.finished_at is None or step.step == "run":
            continue
        start, end = step.started_at.timestamp(), step.finished_at.timestamp()
        steps[step.step] = {"seconds": end - start, "peak_rss_mb": sampler.peak_between(start, end)}
    return steps


def duckdb_settings(pairs: list[str]) -> dict[str, Any] | None:
    """``KEY=VALUE`` strings as DuckDB global settings (``None`` when there are none)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise SystemExit(f"--duckdb-setting wants KEY=VALUE, not {pair!r}")
        settings[key.strip()] = value.strip()
    return settings or None


def main(argv: list[str] | None = None) -> int:
    """Run the connector once and print its result."""
    parser = argparse.ArgumentParser(description="One measured connector run.")
    parser.add_argument("--api", choices=sorted(APIS), default="stripe")
    parser.add_argument("--duckdb", type=Path, required=True)
    parser.add_argument("--pipelines-dir", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--requests-per-second",
        type=float,
        default=None,
        help="client-side rate limit; 0 means none; omitted means the source's default",
    )
    parser.add_argument(
        "--duckdb-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a DuckDB setting for the load, e.g. memory_limit=256MB (repeatable)",
    )
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    args = parser.parse_args(argv)
    api = APIS[args.api]
    sampler = RssSampler().start()
    overrides = duckdb_settings(args.duckdb_setting)
    if overrides:  # through dlt config, as a user would override DUCKDB_SETTINGS
        os.environ["DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"] = json.dumps(overrides)
    options = SyncOptions(
        destination=duckdb_destination(str(args.duckdb)),
        dataset=PIPELINE_DATASET,
        pipeline_name=f"bench_{api.name}",
        pipelines_dir=str(args.pipelines_dir),
        source_overrides={
            api.name: api.source_overrides(
                workers=args.workers, requests_per_second=args.requests_per_second
            )
        },
    )
    requests_before = sum(REQUEST_TOTALS.values())
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    synced = run_sync([api.name], options)
    pipeline = synced.pipeline
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    sampler.stop()
    if profiler is not None:
        profiler.dump_stats(str(args.profile))
    emit_result(
        {
            "seconds": seconds,
            "requests": sum(REQUEST_TOTALS.values()) - requests_before,
            "tables": table_counts(pipeline),
            # as the run reports them: placeholder rows, never stored, left out
            "rows_loaded": synced.sources[0].rows,
            "invoices_table": api.invoices_table,
            "line_items_table": api.line_items_table,
            "steps": step_figures(pipeline, sampler),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "tree_peak_rss_mb": sampler.peak,
            "tree_peak_pss_mb": sampler.peak_pss,
            "tree_peak_anonymous_mb": sampler.peak_anonymous,
            # what `invoice-sync status` will show for this run
            "run_record": read_run_records(pipeline).get("last_success", {}).get(api.name),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
