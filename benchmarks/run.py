"""``make bench``: the connector against a plain reference loop, on each API's sandbox.

For each API (Stripe, PrepBusiness, Alternative Payments), every party in a process of its own:

1. **Throughput** (``--invoices``; Stripe 20,000 by default, no latency): the sandbox is seeded;
   then, ``--rounds`` times (default 3), the reference loop loads everything and the connector
   does a full load into a fresh DuckDB file (no client-side rate limit, like the reference
   loop). Printed per run: invoices/s, line rows/s, requests, wall time, CPU, the sandbox's CPU,
   peak memory, and whether every invoice and line landed; then the median connector ÷
   reference throughput ratio, the figure that holds on a noisy machine.
2. **Incremental run with nothing new** on the last round's pipeline: requests and wall time.
3. **Latency-bound** (``--latency-invoices``, Stripe 2,000 by default, at
   ``--latency-ms-per-request`` 150 ms, with the source's default rate limit): the connector's
   wall time against the bound ``requests × latency ÷ workers`` (and ``requests ÷ rate limit``),
   plus an incremental run under that latency.

Examples::

    python -m benchmarks.run                                      # every API, a few minutes
    python -m benchmarks.run --api stripe --invoices 100000 --latency-invoices 0
    python -m benchmarks.run --api prepbusiness --invoices prepbusiness=20000 --rounds 1
    python -m benchmarks.run --api stripe --invoices 5000 --profile --workdir /tmp/bench
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from benchmarks.apis import API_NAMES, APIS, ApiBenchmark
from benchmarks.child import REPO_ROOT, BenchmarkError, ChildRun, run_measured, tail
from invoice_source.memory import system_allocator_environment

THROUGHPUT_GOAL = 1.0
THROUGHPUT_STRETCH_GOAL = 1.5
PEAK_MEMORY_GOAL_MB = 400.0
LATENCY_BOUND_GOAL = 1.5
INCREMENTAL_MAX_REQUESTS = 3
INCREMENTAL_MAX_SECONDS = 2.0
SANDBOX_EXIT_TIMEOUT = 30.0
CONNECTOR_MODULE = "benchmarks.connector"


class SandboxProcess:
    """A :mod:`benchmarks.serve` child: seeded, serving, answering ``stats``/``expected``."""

    def __init__(
        self, api: ApiBenchmark, *, invoices: int, latency_ms: float, seed: int, log_path: Path
    ) -> None:
        self.log_path = log_path
        args = [f"--api={api.name}", f"--invoices={invoices}", f"--latency-ms={latency_ms}"]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.serve", *args, f"--seed={seed}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=REPO_ROOT,
                text=True,
            )
        ready = self._read()
        self.url: str = ready["url"]
        self.env: dict[str, str] = ready["env"]
        self.seed_seconds: float = ready["seed_seconds"]

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=SANDBOX_EXIT_TIMEOUT)
            raise BenchmarkError(
                f"the sandbox process exited ({self.process.returncode}):\n{tail(self.log_path)}"
            )
        payload: dict[str, Any] = orjson.loads(line)
        return payload

    def ask(self, command: str) -> dict[str, Any]:
        """Send a command, return its JSON answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def stats(self) -> dict[str, Any]:
        """Requests answered so far (``requests``, per ``routes``) and ``cpu_seconds`` used."""
        return self.ask("stats")

    def close(self) -> None:
        """Stop the sandbox process."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=SANDBOX_EXIT_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def request_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Requests answered, and sandbox CPU used, between two ``stats`` snapshots."""
    routes = {
        route: count - before["routes"].get(route, 0)
        for route, count in after["routes"].items()
        if count - before["routes"].get(route, 0)
    }
    return {
        "requests": after["requests"] - before["requests"],
        "routes": routes,
        "cpu_seconds": after["cpu_seconds"] - before["cpu_seconds"],
    }


@dataclass(frozen=True)
class Settings:
    """What one benchmark invocation measures."""

    invoices: dict[str, int]
    latency_ms: float
    workers: int
    requests_per_second: float | None
    latency_invoices: dict[str, int]
    latency_run_ms: float
    latency_requests_per_second: float | None
    latency_workers: int
    reference: bool
    rounds: int
    seed: int
    profile: bool
    duckdb_settings: tuple[str, ...]


class ApiRun:
    """Every measured run of one API, in one work folder."""

    def __init__(self, api: ApiBenchmark, settings: Settings, workdir: Path) -> None:
        self.api = api
        self.settings = settings
        self.workdir = workdir / api.name
        self.workdir.mkdir(parents=True, exist_ok=True)

    def log(self, name: str) -> Path:
        """Path of a child's stderr log."""
        return self.workdir / f"{name}.log"

    def measure(self) -> dict[str, Any]:
        """Run every scenario for this API; returns their figures."""
        s = self.settings
        results: dict[str, Any] = {"api": self.api.name}
        invoices = s.invoices.get(self.api.name, self.api.default_invoices)
        if invoices > 0:
            results["throughput"] = self.scenario(
                "throughput",
                invoices=invoices,
                latency_ms=s.latency_ms,
                workers=s.workers,
                requests_per_second=s.requests_per_second,
                rounds=s.rounds,
                profile=s.profile,
            )
        latency_invoices = s.latency_invoices.get(self.api.name, self.api.default_latency_invoices)
        if latency_invoices > 0 and s.latency_run_ms > 0:
            results["latency"] = self.scenario(
                "latency",
                invoices=latency_invoices,
                latency_ms=s.latency_run_ms,
                workers=s.latency_workers,
                requests_per_second=s.latency_requests_per_second,
                rounds=1,
                profile=False,
            )
        return results

    def scenario(
        self,
        name: str,
        *,
        invoices: int,
        latency_ms: float,
        workers: int,
        requests_per_second: float | None,
        rounds: int,
        profile: bool,
    ) -> dict[str, Any]:
        """One sandbox: ``rounds`` × (reference loop, connector full load into a fresh file),
        then an incremental connector run on the last round's files."""
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        figures: dict[str, Any] = {
            "invoices_seeded": invoices,
            "latency_ms": latency_ms,
            "workers": self.api.workers(workers),
            "requests_per_second": requests_per_second,
            "effective_requests_per_second": self.api.effective_requests_per_second(
                requests_per_second
            ),
            "rounds": [],
        }
        title = f"  {self.api.title} {name}"
        print(f"{title}: seeding {invoices:,} invoices...", flush=True)
        with SandboxProcess(
            self.api,
            invoices=invoices,
            latency_ms=latency_ms,
            seed=self.settings.seed,
            log_path=self.log(f"{name}-sandbox"),
        ) as sandbox:
            figures["seed_seconds"] = sandbox.seed_seconds
            connector_args: list[str] = []
            # the connector runs in the process the invoice-sync command would give it
            connector_env = system_allocator_environment()
            for number in range(1, rounds + 1):
                run_folder = folder / f"round-{number}"
                # a reused --workdir would make the "full load" an incremental run
                shutil.rmtree(run_folder, ignore_errors=True)
                run_folder.mkdir(parents=True)
                measured: dict[str, Any] = {}
                connector_args = [
                    f"--api={self.api.name}",
                    f"--duckdb={run_folder / 'connector.duckdb'}",
                    f"--pipelines-dir={run_folder / 'pipelines'}",
                    f"--workers={workers}",
                    *[f"--duckdb-setting={pair}" for pair in self.settings.duckdb_settings],
                ]
                if requests_per_second is not None:
                    connector_args.append(f"--requests-per-second={requests_per_second}")
                profile_args: list[str] = []
                if profile and number == rounds:
                    figures["profile"] = str(run_folder / "connector.prof")
                    profile_args = [f"--profile={figures['profile']}"]
                # who goes first alternates: the second of a round finds the sandbox's caches
                # filled by the first
                parties = ["reference", "connector"] if number % 2 else ["connector", "reference"]
                for party in parties:
                    if party == "reference" and self.settings.reference:
                        print(f"{title}, round {number}: reference loop...", flush=True)
                        measured["reference"] = self.counted(
                            sandbox,
                            "benchmarks.reference_loop",
                            [
                                f"--api={self.api.name}",
                                f"--duckdb={run_folder / 'reference.duckdb'}",
                            ],
                            log=self.log(f"{name}-reference-{number}"),
                        )
                    elif party == "connector":
                        print(f"{title}, round {number}: connector full load...", flush=True)
                        measured["connector"] = self.counted(
                            sandbox,
                            CONNECTOR_MODULE,
                            [*connector_args, *profile_args],
                            log=self.log(f"{name}-connector-{number}"),
                            env=connector_env,
                        )
                figures["rounds"].append(measured)
            print(f"{title}: connector incremental run...", flush=True)
            figures["incremental"] = self.counted(
                sandbox,
                CONNECTOR_MODULE,
                connector_args,
                log=self.log(f"{name}-incremental"),
                env=connector_env,
            )
            print(f"{title}: counting what the sandbox holds...", flush=True)
            figures["expected"] = sandbox.ask("expected")
        return figures

    def counted(
        self,
        sandbox: SandboxProcess,
        module: str,
        args: list[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run a measured child against ``sandbox`` (its env plus ``env``); its figures plus
        the sandbox's count."""
        before = sandbox.stats()
        child_env = {**sandbox.env, **(env or {})}
        run: ChildRun = run_measured(module, args, env=child_env, log_path=log)
        served = request_delta(before, sandbox.stats())
        return {
            **run.result,
            "process_seconds": run.process_seconds,
            # wait4's ru_maxrss is one process's peak; the connector also sums its worker processes
            "process_peak_rss_mb": max(run.peak_rss_mb, run.result.get("tree_peak_rss_mb", 0.0)),
            "process_cpu_seconds": run.cpu_seconds,
            "served_requests": served["requests"],
            "served_routes": served["routes"],
            "sandbox_cpu_seconds": served["cpu_seconds"],
            "warnings": tail(log, 1000).count("WARNING"),
        }


def loaded(api: ApiBenchmark, run: Mapping[str, Any]) -> tuple[int, int]:
    """Invoices and line rows a reference or connector run left in DuckDB."""
    if "tables" in run:
        tables = run["tables"]
        return tables.get(api.invoices_table, 0), tables.get(api.line_items_table, 0)
    return run["invoices"], run["lines"]


def mark(ok: bool) -> str:
    """``ok`` or ``MISS``."""
    return "ok" if ok else "MISS"


def report(api: ApiBenchmark, results: Mapping[str, Any]) -> list[str]:
    """Markdown lines: the figures of every scenario and the goals they meet or miss."""
    out: list[str] = []
    for name, figures in results.items():
        if name == "api":
            continue
        out += report_scenario(api, name, figures)
    return out


def throughput(api: ApiBenchmark, run: Mapping[str, Any]) -> float:
    """Invoices per second of a run's own timed section."""
    return loaded(api, run)[0] / run["seconds"]


def report_scenario(api: ApiBenchmark, name: str, f: Mapping[str, Any]) -> list[str]:
    """Markdown lines for one scenario."""
    expected_invoices, expected_lines = f["expected"]["invoices"], f["expected"]["lines"]
    rate = f["effective_requests_per_second"]
    rounds: list[dict[str, Any]] = f["rounds"]
    out = [
        "",
        f"### {api.title}, {name}: {f['invoices_seeded']:,} invoices, "
        f"{f['latency_ms']:g} ms per request",
        "",
        f"Sandbox holds {expected_invoices:,} invoices and {expected_lines:,} line items. "
        "Connector: "
        + (f"{f['workers']} workers, " if f["workers"] > 1 else "one request at a time, ")
        + (f"client-side limit {rate:g} req/s." if rate else "no client-side rate limit.")
        + " Wall s is the loop's own time (`run_sync` for the connector); CPU s and peak MB"
        " are the whole child process (the connector's worker processes included, their memory"
        " summed); sandbox CPU s is what serving that run cost.",
        "",
        "| run | invoices/s | line rows/s | requests | wall s | CPU s | sandbox CPU s | peak MB "
        "| invoices | lines | complete |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    ratios: list[float] = []
    all_complete = True  # every connector round landed every invoice and line
    for number, measured in enumerate(rounds, start=1):
        suffix = f", round {number}" if len(rounds) > 1 else ""
        parties = [
            ("reference loop", measured.get("reference")),
            ("connector", measured["connector"]),
        ]
        for label, run in parties:
            if run is None:
                continue
            invoices, lines = loaded(api, run)
            seconds = run["seconds"]
            complete = invoices == expected_invoices and lines == expected_lines
            if label == "connector":
                all_complete = all_complete and complete
            line_rate = f"{lines / seconds:,.0f}" if api.line_items_table else "–"
            out.append(
                f"| {label}{suffix} | {invoices / seconds:,.0f} | {line_rate} "
                f"| {run['served_requests']:,} | {seconds:.1f} | {run['process_cpu_seconds']:.1f} "
                f"| {run['sandbox_cpu_seconds']:.1f} | {run['process_peak_rss_mb']:,.0f} "
                f"| {invoices:,} | {lines:,} | {'yes' if complete else 'NO'} |"
            )
        if "reference" in measured:
            ratios.append(
                throughput(api, measured["connector"]) / throughput(api, measured["reference"])
            )
    out.append("")
    if ratios:
        ratio = statistics.median(ratios)
        each = ", ".join(f"{r:.2f}" for r in ratios)
        out.append(
            f"- throughput, connector ÷ reference: **{ratio:.2f}×**"
            + (f" (median of rounds: {each})" if len(ratios) > 1 else "")
            + f"; goal ≥ {THROUGHPUT_GOAL:g}× with every line: "
            f"{mark(ratio >= THROUGHPUT_GOAL and all_complete)}; stretch "
            f"{THROUGHPUT_STRETCH_GOAL:g}×: "
            f"{mark(ratio >= THROUGHPUT_STRETCH_GOAL and all_complete)}"
        )
    heaviest = max((m["connector"] for m in rounds), key=lambda run: run["process_peak_rss_mb"])
    peak = heaviest["process_peak_rss_mb"]
    out.append(
        f"- connector peak memory: **{peak:,.0f} MB** (goal < {PEAK_MEMORY_GOAL_MB:g} MB: "
        f"{mark(peak < PEAK_MEMORY_GOAL_MB)}); by dlt step (seconds / peak MB): "
        + ", ".join(
            f"{step} {values['seconds']:.1f} s / "
            + (f"{values['peak_rss_mb']:,.0f} MB" if values["peak_rss_mb"] else "? MB")
            for step, values in heaviest["steps"].items()
        )
        + (
            f"; proportional set size (shared library pages counted once, not once per process)"
            f" {heaviest['tree_peak_pss_mb']:,.0f} MB"
            if heaviest.get("tree_peak_pss_mb")
            else ""
        )
        + (
            f"; anonymous memory (without library pages, whose share moves with the page cache)"
            f" {heaviest['tree_peak_anonymous_mb']:,.0f} MB"
            if heaviest.get("tree_peak_anonymous_mb")
            else ""
        )
    )
    if f["latency_ms"] > 0:
        out.append(latency_line(f, rounds[-1]["connector"], rate))
    incremental = f["incremental"]
    inc_requests = incremental["served_requests"]
    inc_seconds = incremental["seconds"]
    reread = incremental.get("rows_loaded", {}).get(api.invoices_table, 0)
    inc_ok = inc_requests <= INCREMENTAL_MAX_REQUESTS and inc_seconds < INCREMENTAL_MAX_SECONDS
    out.append(
        f"- incremental run with nothing new: **{inc_requests} requests, {inc_seconds:.2f} s** "
        f"in `run_sync` ({incremental['process_seconds']:.1f} s with interpreter start and "
        f"imports; invoices re-read: {reread:,}); goal ≤ {INCREMENTAL_MAX_REQUESTS} requests and "
        f"< {INCREMENTAL_MAX_SECONDS:g} s: {mark(inc_ok)}; by dlt step: "
        + ", ".join(f"{step} {v['seconds']:.2f} s" for step, v in incremental["steps"].items())
    )
    for label, run in (("full load", rounds[-1]["connector"]), ("incremental run", incremental)):
        routes = ", ".join(f"{route} × {n:,}" for route, n in sorted(run["served_routes"].items()))
        out.append(f"- connector {label} requests by route: {routes}")
    warnings = rounds[-1]["connector"]["warnings"]
    if warnings:
        out.append(f"- the connector's full load logged {warnings} warnings (see its log)")
    if "profile" in f:
        out.append(f"- cProfile of the connector's main thread: `{f['profile']}`")
    return out


def latency_line(f: Mapping[str, Any], connector: Mapping[str, Any], rate: float | None) -> str:
    """The latency-bound figure: wall time against requests × latency ÷ workers."""
    requests = connector["served_requests"]
    bound = requests * f["latency_ms"] / 1000 / f["workers"]
    floor = (requests - 1) / rate if rate else 0.0
    seconds = connector["seconds"]
    line = (
        f"- latency bound: {requests:,} requests × {f['latency_ms']:g} ms ÷ {f['workers']} "
        f"workers = {bound:.1f} s; the connector took {seconds:.1f} s = "
        f"**{seconds / bound:.2f}× the bound** (goal ≤ {LATENCY_BOUND_GOAL:g}×: "
        f"{mark(seconds <= LATENCY_BOUND_GOAL * bound)})"
    )
    if rate:
        line += (
            f"; the rate limit alone needs ({requests:,} − 1) ÷ {rate:g} req/s = {floor:.1f} s, so "
            f"{seconds / max(bound, floor):.2f}× the larger of the two"
        )
    return line


def profile_summary(path: Path, limit: int = 25) -> str:
    """The top of a cProfile dump, by cumulative time."""
    import io

    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.sort_stats("cumulative").print_stats(limit)
    return buffer.getvalue()


def sizes(values: list[str], flag: str) -> dict[str, int]:
    """Run sizes per API from ``N`` (Stripe) and ``API=N`` values."""
    result: dict[str, int] = {}
    for value in values:
        name, separator, number = value.rpartition("=")
        name = name if separator else "stripe"
        if name not in API_NAMES or not number.strip().isdigit():
            raise SystemExit(f"{flag} wants N or API=N with API one of {API_NAMES}, not {value!r}")
        result[name] = int(number)
    return result


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.run``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark the connector against a plain reference loop on the sandboxes.",
    )
    parser.add_argument(
        "--api", choices=[*API_NAMES, "all"], default="all", help="default: every API"
    )
    parser.add_argument(
        "--invoices",
        action="append",
        default=[],
        metavar="N | API=N",
        help="throughput run size: N for Stripe, API=N for another API, 0 skips it (repeatable;"
        " defaults: "
        + ", ".join(f"{api.name}={api.default_invoices}" for api in APIS.values())
        + ")",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="per-request latency of the throughput run"
    )
    parser.add_argument("--workers", type=int, default=4, help="connector concurrency")
    parser.add_argument(
        "--requests-per-second",
        type=float,
        default=0.0,
        help="connector rate limit in the throughput run; 0 (default) means none, like the "
        "reference loop",
    )
    parser.add_argument(
        "--latency-invoices",
        action="append",
        default=[],
        metavar="N | API=N",
        help="latency run size, like --invoices (defaults: "
        + ", ".join(f"{api.name}={api.default_latency_invoices}" for api in APIS.values())
        + ")",
    )
    parser.add_argument(
        "--latency-ms-per-request", type=float, default=150.0, help="latency of the latency run"
    )
    parser.add_argument(
        "--latency-requests-per-second",
        type=float,
        default=None,
        help="connector rate limit in the latency run; default: the source's own default",
    )
    parser.add_argument("--latency-workers", type=int, default=None, help="default: --workers")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="throughput rounds (reference, then connector, each round); the median ratio is "
        "reported, which is what holds on a noisy machine (default 3)",
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the reference loop")
    parser.add_argument(
        "--duckdb-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a DuckDB setting for the connector's load, e.g. memory_limit=256MB (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="keep DuckDB files and logs")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the connector's throughput run"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    args = build_parser().parse_args(argv)
    settings = Settings(
        invoices=sizes(args.invoices, "--invoices"),
        latency_ms=args.latency_ms,
        workers=args.workers,
        requests_per_second=args.requests_per_second,
        latency_invoices=sizes(args.latency_invoices, "--latency-invoices"),
        latency_run_ms=args.latency_ms_per_request,
        latency_requests_per_second=args.latency_requests_per_second,
        latency_workers=args.latency_workers or args.workers,
        reference=not args.no_reference,
        rounds=max(1, args.rounds),
        seed=args.seed,
        profile=args.profile,
        duckdb_settings=tuple(args.duckdb_setting),
    )
    names = API_NAMES if args.api == "all" else (args.api,)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="invoice-sync-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    all_results: list[dict[str, Any]] = []
    shown_args = sys.argv[1:] if argv is None else argv
    lines = [
        "## Benchmark",
        "",
        f"`python -m benchmarks.run {' '.join(shown_args)}`".replace(" `", "`"),
        "",
        machine_line(),
    ]
    failed = False
    try:
        for name in names:
            api = APIS.get(name)
            missing = api.available() if api else f"invoice_source.{name} is not importable"
            if api is None or missing:
                lines += ["", f"### {name}: skipped, {missing}"]
                continue
            print(f"{api.title}:", flush=True)
            try:
                results = ApiRun(api, settings, workdir).measure()
            except BenchmarkError as exc:
                failed = True
                lines += ["", f"### {api.title}: FAILED", "", str(exc)]
                continue
            all_results.append(results)
            lines += report(api, results)
            profile = results.get("throughput", {}).get("profile")
            if profile:
                print(profile_summary(Path(profile)))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    lines += ["", f"Total benchmark time: {time.perf_counter() - started:.0f} s."]
    print("\n".join(lines))
    if args.json:
        args.json.write_bytes(orjson.dumps(all_results, option=orjson.OPT_INDENT_2))
    return 1 if failed else 0


def machine_line() -> str:
    """Where and with what the figures were measured."""
    import platform
    from importlib.metadata import version

    packages = ", ".join(
        f"{name} {version(name)}" for name in ("dlt", "duckdb", "pyarrow", "httpx")
    )
    return (
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"{packages}."
    )


if __name__ == "__main__":
    sys.exit(main())
