"""The ``invoice-sync`` command: run, demo, sandbox, report, status.

Thin by design: every command calls :mod:`invoice_source.pipeline` (or the sandbox, models and
reports modules). Errors end as one line on stderr and a non-zero exit code, never a traceback.
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

from invoice_source.errors import find_error
from invoice_source.pipeline import (
    DEFAULT_DATASET,
    DEFAULT_DUCKDB_FILE,
    DEFAULT_PIPELINE_NAME,
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``invoice-sync`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.verbose)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except KeyboardInterrupt:
        print("invoice-sync: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"invoice-sync: error: {describe_error(exc)}", file=sys.stderr)
        if args.verbose:
            logger.exception("details")
        return EXIT_FAILED


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
        "--full-refresh", action="store_true", help="drop the sources' tables and state, reload"
    )
    run.add_argument("--no-models", action="store_true", help="skip the SQL models after loading")
    run.set_defaults(handler=command_run)

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


def add_destination_args(parser: argparse.ArgumentParser) -> None:
    """``--destination``, ``--dataset``, ``--pipelines-dir``, ``--pipeline-name``."""
    parser.add_argument(
        "--destination",
        default=None,
        help="dlt destination name (duckdb, postgres, bigquery, ...) or a .duckdb file path;"
        f" default: {DEFAULT_DUCKDB_FILE}",
    )
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    parser.add_argument("--pipeline-name", default=DEFAULT_PIPELINE_NAME)
    parser.add_argument("--pipelines-dir", default=None, help="where dlt keeps pipeline state")


def configure_logging(log_format: str, verbose: bool) -> None:
    """Log to stderr as text or JSON lines, with secrets masked."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("invoice_source").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("dlt").addFilter(_BenignDltWarnings())
    install_log_redaction()


class _BenignDltWarnings(logging.Filter):
    """Drop dlt's note that our JSON-as-text arrow columns keep their ``json`` hint (by design)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "when merging arrow schema with dlt schema" not in record.getMessage()


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers and schedulers."""

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        return orjson.dumps(payload).decode()


def describe_error(exc: BaseException) -> str:
    """One line naming what went wrong; dlt's wrappers are unwrapped to our own errors."""
    own = find_error(exc)
    if own is not None:
        return redact(str(own))
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return redact(f"{type(exc).__name__}: {first}")


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
    )


def command_run(args: argparse.Namespace) -> int:
    """``invoice-sync run SOURCE...``."""
    options = options_from_args(args)
    result = run_sync(args.sources, options)
    print_summary("run", result)
    if not args.no_models:
        run_models_if_available(result)
    print(f"invoice-sync: ok: {result.total_rows} rows loaded")
    return EXIT_OK


def print_summary(title: str, result: SyncResult) -> None:
    """Rows per table, requests and time per source."""
    print(f"\n== {title} ==")
    print(f"{'source':<22}{'table':<42}{'rows':>10}")
    for source in result.sources:
        for table, rows in sorted(source.rows.items()):
            print(f"{source.source:<22}{table:<42}{rows:>10,}")
        print(
            f"{source.source:<22}{'(' + str(source.requests) + ' requests, '}{source.seconds:.1f}s)"
        )


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
