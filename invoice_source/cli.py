"""The ``invoice-sync`` command: run, demo, sandbox, report, status.

Thin by design: every command calls :mod:`invoice_source.pipeline` (or the sandbox, models,
reports and ops modules). Errors end as one line on stderr and a non-zero exit code, never a
traceback. Exit codes, for schedulers: 0 every source loaded, 1 something failed (the sources
that could load did), 2 bad usage, 75 refused because another run holds the same pipeline state,
130 interrupted. The last line of every ``run`` says ``invoice-sync: ok: ...`` or
``invoice-sync: failed: ...``; with ``--log-format json`` a ``run_finished`` record follows it.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from invoice_source.diagnostics import describe_failure
from invoice_source.ops import RunLockedError
from invoice_source.pipeline import (
    DEFAULT_DATASET,
    DEFAULT_DUCKDB_FILE,
    DEFAULT_PIPELINE_NAME,
    SOURCES,
    SyncFailedError,
    SyncOptions,
    SyncResult,
    make_pipeline,
    run_sync,
)
from invoice_source.redaction import install_log_redaction, redact

logger = logging.getLogger("invoice_source.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``invoice-sync`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.verbose)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except KeyboardInterrupt:
        say_error("invoice-sync: interrupted", status="interrupted", exit_code=EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except RunLockedError as exc:
        line = f"invoice-sync: refused: {redact(str(exc))}"
        say_error(line, status="refused", exit_code=EXIT_LOCKED)
        return EXIT_LOCKED
    except Exception as exc:
        say_error(f"invoice-sync: error: {describe_error(exc)}", status="error", exit_code=1)
        if args.verbose:
            logger.exception("details")
        return EXIT_FAILED


def json_logs() -> bool:
    """Whether stderr carries JSON log records (``--log-format json``)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def say_error(line: str, **fields: Any) -> None:
    """An error line on stderr: as it is, or as one JSON ``run_finished`` record in JSON mode
    (so every stderr line stays parseable)."""
    if json_logs():
        logger.error(line, extra={"event": "run_finished", **fields})
    else:
        print(line, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="invoice-sync",
        description="Sync Stripe, PrepBusiness and Alternative Payments invoices with dlt.",
    )
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="load one or more sources (or 'all')")
    run.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="stripe, prepbusiness, alternative-payments, all",
    )
    add_destination_args(run)
    run.add_argument("--start-date", help="load invoices created from this date (YYYY-MM-DD)")
    run.add_argument(
        "--end-date",
        help="backfill up to this date (exclusive); leaves the incremental state alone",
    )
    run.add_argument(
        "--window-days",
        type=float,
        default=None,
        help="split a backfill (--start-date/--end-date) into windows of this many days",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="backfill windows read at the same time (they are loaded one after another)",
    )
    run.add_argument(
        "--full-refresh", action="store_true", help="drop the sources' tables and state, reload"
    )
    run.add_argument(
        "--loader-file-format",
        default=None,
        help="dlt loader file format (parquet, csv, insert_values, jsonl); default: the best"
        " one the destination supports",
    )
    run.add_argument(
        "--table-format",
        default=None,
        help="delta or iceberg: table format on a filesystem lake (merges instead of appends)",
    )
    run.add_argument("--no-models", action="store_true", help="skip the SQL models after loading")
    run.set_defaults(handler=command_run)

    status = commands.add_parser(
        "status", help="per source: last successful run, rows, cursors, time since"
    )
    add_destination_args(status, destination_default=None)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=command_status)

    demo = commands.add_parser("demo", help="load the sandboxes twice, with changes in between")
    demo.add_argument("--duckdb", default=DEFAULT_DUCKDB_FILE, help="DuckDB file to (re)create")
    demo.add_argument("--stripe-invoices", type=int, default=2000)
    demo.add_argument("--quiet", action="store_true", help="print only the final summary")
    demo.set_defaults(handler=command_demo)

    report = commands.add_parser("report", help="print a reconciliation report (or 'list')")
    report.add_argument("name", help="report name, or 'list' / 'all'")
    add_destination_args(report)
    report.add_argument("--csv", default=None, help="also write the offending rows to this CSV")
    report.add_argument("--limit", type=int, default=20, help="rows to print per report")
    report.set_defaults(handler=command_report)

    sandbox = commands.add_parser("sandbox", help="serve the three sandboxes until interrupted")
    sandbox.add_argument("--stripe-invoices", type=int, default=2000)
    sandbox.add_argument("--seed", type=int, default=7)
    sandbox.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    sandbox.set_defaults(handler=command_sandbox)
    return parser


def add_destination_args(
    parser: argparse.ArgumentParser, destination_default: str | None = DEFAULT_DUCKDB_FILE
) -> None:
    """``--destination``, ``--dataset``, ``--pipelines-dir``, ``--pipeline-name``."""
    default_text = (
        f"destination_type from config, else {destination_default}"
        if destination_default
        else "only what the state directory knows"
    )
    parser.add_argument(
        "--destination",
        default=None,
        help="dlt destination name (duckdb, postgres, bigquery, ...) or a .duckdb file path;"
        f" default: {default_text}",
    )
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    parser.add_argument("--pipeline-name", default=DEFAULT_PIPELINE_NAME)
    parser.add_argument("--pipelines-dir", default=None, help="where dlt keeps pipeline state")


def configure_logging(log_format: str, verbose: bool) -> None:
    """Log to stderr as text or JSON lines, with secrets masked; dlt's own logs included."""
    handler = StderrHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("invoice_source").setLevel(logging.DEBUG if verbose else logging.INFO)
    route_dlt_logs()
    logging.captureWarnings(True)  # Python warnings become log records (JSON in JSON mode)
    install_log_redaction()


class StderrHandler(logging.StreamHandler):
    """Writes each record to ``sys.stderr`` as it is when the record is emitted, so a handler
    outliving a redirected stderr (an embedding program, a test capture) never writes to a
    closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        return


class ForwardToRoot(logging.Handler):
    """Hands ``dlt`` log records to the root handlers, so they share our format and redaction.

    dlt gives its logger a handler of its own and turns propagation off when a pipeline starts;
    it reuses the first handler it finds, which is this one, and its ``setFormatter`` is ignored.
    """

    def emit(self, record: logging.LogRecord) -> None:
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        """Keep records unformatted here: the root handlers format them."""
        return


def route_dlt_logs() -> None:
    """Send the ``dlt`` logger's records through the root handlers (idempotent)."""
    dlt_logger = logging.getLogger("dlt")
    forwarders: list[logging.Handler] = [
        h for h in dlt_logger.handlers if isinstance(h, ForwardToRoot)
    ]
    dlt_logger.handlers = forwarders or [ForwardToRoot()]


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers and schedulers.

    Fields passed with ``extra=`` (``event``, ``source``, ``rows`` ...) are added to the object.
    """

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        payload: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            payload["error"] = redact(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
        return redact(orjson.dumps(payload, default=str).decode())


def describe_error(exc: BaseException) -> str:
    """One line naming what went wrong; dlt's wrappers are unwrapped to our own errors, and
    dlt's configuration errors name the key to fix."""
    return describe_failure(exc)


def options_from_args(args: argparse.Namespace) -> SyncOptions:
    """SyncOptions from the shared destination arguments."""
    return SyncOptions(
        destination=args.destination,
        dataset=args.dataset,
        pipeline_name=args.pipeline_name,
        pipelines_dir=args.pipelines_dir,
        start_date=getattr(args, "start_date", None),
        end_date=getattr(args, "end_date", None),
        full_refresh=getattr(args, "full_refresh", False),
        window_days=getattr(args, "window_days", None),
        workers=getattr(args, "workers", 1),
        loader_file_format=getattr(args, "loader_file_format", None),
        table_format=getattr(args, "table_format", None),
    )


def command_run(args: argparse.Namespace) -> int:
    """``invoice-sync run SOURCE...``: one summary line and one exit code for the scheduler."""
    options = options_from_args(args)
    try:
        result = run_sync(args.sources, options)
    except SyncFailedError as failed:
        result = failed.result
        for source in result.failures:
            line = f"invoice-sync: error: {describe_failure(source.error, source.source)}"
            if json_logs():
                logger.error(line, extra={"event": "source_failed", "source": source.source})
            else:
                print(line, file=sys.stderr)
        if any(source.ok for source in result.sources):
            print_summary("run", result)
        line = run_summary_line(result)
        if not json_logs():
            print(line, file=sys.stderr)
        log_run_finished("failed", EXIT_FAILED, result=result, line=line)
        return EXIT_FAILED
    print_summary("run", result)
    if not args.no_models:
        try:
            run_models_if_available(result)
        except Exception as exc:
            logger.debug("models failed", exc_info=True)
            line = (
                f"invoice-sync: failed: {result.total_rows:,} rows loaded, but building the SQL"
                f" models failed: {describe_error(exc)} (load only with --no-models)"
            )
            if not json_logs():
                print(line, file=sys.stderr)
            log_run_finished("failed", EXIT_FAILED, result=result, line=line)
            return EXIT_FAILED
    line = run_summary_line(result)
    print(line)
    log_run_finished("ok", EXIT_OK, result=result, line=line)
    return EXIT_OK


def run_summary_line(result: SyncResult) -> str:
    """``invoice-sync: ok: 1,234 rows loaded ...`` or ``invoice-sync: failed: ...``."""
    per_source = ", ".join(
        f"{source.source} {sum(source.rows.values()):,}" for source in result.sources if source.ok
    )
    loaded = f"{result.total_rows:,} rows loaded"
    if per_source:
        loaded += f" ({per_source})"
    resumed = (
        f"; resumed {len(result.resumed_packages)} interrupted load package(s)"
        if result.resumed_packages
        else ""
    )
    if result.ok:
        return f"invoice-sync: ok: {loaded} in {result.seconds:.1f}s{resumed}"
    failed = ", ".join(source.source for source in result.failures)
    return (
        f"invoice-sync: failed: {len(result.failures)} of {len(result.sources)} source(s)"
        f" failed ({failed}); {loaded}{resumed}"
    )


def log_run_finished(
    status: str, exit_code: int, *, result: SyncResult | None = None, line: str = ""
) -> None:
    """One structured ``run_finished`` record, written with ``--log-format json`` only (in text
    mode the summary line on stdout/stderr already says it)."""
    if not json_logs():
        return
    sources: dict[str, Any] = {}
    if result is not None:
        for source in result.sources:
            sources[source.source] = {
                "ok": source.ok,
                "mode": source.mode,
                "rows": sum(source.rows.values()),
                "requests": source.requests,
                "seconds": round(source.seconds, 3),
                "error": None if source.ok else describe_failure(source.error, source.source),
            }
    logger.log(
        logging.INFO if exit_code == EXIT_OK else logging.ERROR,
        line or f"invoice-sync: {status}",
        extra={
            "event": "run_finished",
            "status": status,
            "exit_code": exit_code,
            "rows": result.total_rows if result else 0,
            "seconds": round(result.seconds, 3) if result else 0.0,
            "resumed_packages": len(result.resumed_packages) if result else 0,
            "sources": sources,
        },
    )


def print_summary(title: str, result: SyncResult) -> None:
    """Rows per table, requests and time per source."""
    print(f"\n== {title} ==")
    print(f"{'source':<22}{'table':<42}{'rows':>10}")
    for source in result.sources:
        if not source.ok:
            print(f"{source.source:<22}{'(failed)'}")
            continue
        for table, rows in sorted(source.rows.items()):
            print(f"{source.source:<22}{table:<42}{rows:>10,}")
        print(
            f"{source.source:<22}{'(' + str(source.requests) + ' requests, '}{source.seconds:.1f}s)"
        )
    if result.resumed_packages:
        print(f"(first loaded {len(result.resumed_packages)} package(s) of an interrupted run)")


def command_status(args: argparse.Namespace) -> int:
    """``invoice-sync status``: per source the last successful run, rows, cursors, time since."""
    import orjson

    from invoice_source.ops import default_pipelines_dir, format_status, read_status, status_as_dict
    from invoice_source.pipeline import resolve_destination

    destination = (
        resolve_destination(args.destination, args.pipeline_name) if args.destination else None
    )
    status = read_status(
        args.pipeline_name,
        args.pipelines_dir or default_pipelines_dir(),
        list(SOURCES),
        destination=destination,
        dataset=args.dataset,
    )
    if args.json:
        print(orjson.dumps(status_as_dict(status), option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_status(status))
    return EXIT_OK


def run_models_if_available(result: SyncResult) -> None:
    """Build the SQL models in the destination once the models package provides them."""
    try:
        from invoice_source.models import run_models
    except ImportError:
        return
    run_models(result.pipeline)


def command_demo(args: argparse.Namespace) -> int:
    """``invoice-sync demo``: sandbox -> load -> changes -> incremental load -> summary."""
    from invoice_source.sandbox import SandboxSet, SeedSizes

    duckdb_file = Path(args.duckdb)
    state_dir = Path(".invoice-sync") / "demo-pipelines"
    for path in (duckdb_file, Path(f"{duckdb_file}.wal")):
        path.unlink(missing_ok=True)
    shutil.rmtree(state_dir, ignore_errors=True)
    options = SyncOptions(
        destination=str(duckdb_file),
        pipeline_name="invoice_sync_demo",
        pipelines_dir=str(state_dir),
    )
    sizes = SeedSizes(stripe_invoices=args.stripe_invoices)
    with SandboxSet(sizes=sizes) as sandboxes:
        sandboxes.seed_data()
        os.environ.update(sandboxes.env())
        first = run_sync(["all"], options)
        if not args.quiet:
            print_summary("first run: full load from the sandboxes", first)
        changes = sandboxes.apply_demo_changes()
        if not args.quiet:
            print("\n== changes made in the sandboxes ==")
            for source, counts in changes.items():
                described = ", ".join(f"{k}: {v}" for k, v in counts.items())
                print(f"{source:<22}{described}")
        second = run_sync(["all"], options)
        print_summary("second run: incremental", second)
        run_models_if_available(second)
    print_landed(second.pipeline)
    print_reconciliation_if_available(second)
    print(f"\ninvoice-sync: demo data is in {duckdb_file} (dataset {options.dataset})")
    return EXIT_OK


def print_landed(pipeline: Any) -> None:
    """Row counts of every data table the pipeline's schemas know."""
    tables = sorted(
        {name for schema in pipeline.schemas.values() for name in schema.data_table_names()}
    )
    print("\n== what landed ==")
    with pipeline.sql_client() as client:
        for table in tables:
            qualified = client.make_qualified_table_name(table)
            try:
                count = client.execute_sql(f"select count(*) from {qualified}")[0][0]
            except Exception:
                continue  # declared in the schema but never created (no rows yet)
            print(f"{table:<50}{count:>10,}")


def print_reconciliation_if_available(result: SyncResult) -> None:
    """The reconciliation summary, once the reports module provides it."""
    try:
        from invoice_source.models.reports import print_reconciliation_summary
    except ImportError:
        return
    print_reconciliation_summary(result.pipeline)


def command_report(args: argparse.Namespace) -> int:
    """``invoice-sync report NAME``: counts and offending rows, money formatted per currency."""
    from invoice_source.models.reports import report_command

    return report_command(make_pipeline(options_from_args(args)), args.name, args.csv, args.limit)


def command_sandbox(args: argparse.Namespace) -> int:
    """``invoice-sync sandbox``: serve the sandboxes and print how to point the sources there."""
    from invoice_source.sandbox import SandboxSet, SeedSizes

    sandboxes = SandboxSet(seed=args.seed, sizes=SeedSizes(stripe_invoices=args.stripe_invoices))
    for app in sandboxes.apps.values():
        app.latency_seconds = args.latency_ms / 1000
        app.record_requests = False
    with sandboxes:
        sandboxes.seed_data()
        print("Sandboxes are serving. Point the sources at them with:")
        for key, value in sandboxes.env().items():
            print(f"export {key}={value}")
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
