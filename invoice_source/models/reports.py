"""Reconciliation reports: tables built by the models, printed for people and written as CSV.

Each report is a table ``rpt_<name>`` in the dataset with one row per offending invoice and a
``check_name`` saying what is wrong; ``invoice-sync report NAME`` prints the counts per check and
currency and the offending rows, with money formatted in each currency's own decimals.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from invoice_source.errors import ConfigurationError
from invoice_source.models import existing_tables, run_models
from invoice_source.money import format_amount


@dataclass(frozen=True)
class Report:
    """A report: its table and what it checks."""

    name: str
    table: str
    title: str


REPORTS: tuple[Report, ...] = (
    Report(
        "stripe",
        "rpt_stripe_reconciliation",
        "Stripe invoices that do not add up (lines vs subtotal, total formula, remaining, paid)",
    ),
    Report(
        "prepbusiness-stripe",
        "rpt_prepbusiness_stripe_reconciliation",
        "PrepBusiness invoices vs their Stripe invoices",
    ),
    Report(
        "alternative-payments",
        "rpt_alternative_payments_reconciliation",
        "Alternative Payments: overdue invoices and totals that do not add up",
    ),
)


@dataclass
class ReportResult:
    """The rows of one report, as printed."""

    report: Report
    columns: list[str]
    rows: list[tuple[Any, ...]]
    available: bool

    def counts(self) -> dict[str, int]:
        """Offending rows per check."""
        if "check_name" not in self.columns:
            return {}
        index = self.columns.index("check_name")
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row[index]] = counts.get(row[index], 0) + 1
        return counts


def find_report(name: str) -> Report:
    """The report called ``name`` (``stripe``, ``prepbusiness-stripe``, ...)."""
    wanted = name.strip().lower().replace("_", "-")
    for report in REPORTS:
        if wanted in (report.name, report.table.replace("_", "-")):
            return report
    known = ", ".join(r.name for r in REPORTS)
    raise ConfigurationError(f"unknown report {name!r}; choose one of: {known}, all, list")


def read_report(pipeline: Any, report: Report) -> ReportResult:
    """All rows of a report's table (ordered by check and invoice)."""
    with pipeline.sql_client() as client:
        if not client.has_dataset() or report.table not in existing_tables(client):
            return ReportResult(report, [], [], available=False)
        table = client.make_qualified_table_name(report.table)
        with client.execute_query(f"select * from {table} order by 1, 2, 3") as cursor:
            columns = [d[0] for d in cursor.description]
            rows = [tuple(row) for row in cursor.fetchall()]
    return ReportResult(report, columns, rows, available=True)


def format_report(result: ReportResult, limit: int = 20) -> str:
    """A readable table: counts per check, then up to ``limit`` offending rows."""
    lines = [f"== {result.report.name}: {result.report.title} =="]
    if not result.available:
        lines.append("  (not built: the source tables it needs have not been loaded)")
        return "\n".join(lines)
    if not result.rows:
        lines.append("  no problems found")
        return "\n".join(lines)
    for check, count in sorted(result.counts().items()):
        lines.append(f"  {check:<36}{count:>8}")
    shown = [c for c in result.columns if c not in ("report",) and not c.endswith("_amount")]
    currency_index = result.columns.index("currency") if "currency" in result.columns else None
    table_rows = [shown]
    for row in result.rows[:limit]:
        values = dict(zip(result.columns, row, strict=True))
        currency = (
            str(row[currency_index]) if currency_index is not None and row[currency_index] else ""
        )
        table_rows.append([_cell(values[c], c, currency) for c in shown])
    widths = [max(len(r[i]) for r in table_rows) for i in range(len(shown))]
    lines.append("")
    for r in table_rows:
        lines.append(
            "  " + "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True))
        )
    if len(result.rows) > limit:
        lines.append(f"  ... and {len(result.rows) - limit} more (use --csv for all)")
    return "\n".join(lines)


def _cell(value: Any, column: str, currency: str) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal) and currency and column.endswith("_major"):
        return format_amount(value, currency)
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def write_csv(result: ReportResult, path: str) -> None:
    """Every row of a report as CSV (amounts exact, as text)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(result.columns)
        writer.writerows(result.rows)


def report_command(pipeline: Any, name: str, csv_path: str | None, limit: int) -> int:
    """``invoice-sync report NAME|all|list``: build the models, then print (and write CSV)."""
    if name == "list":
        for report in REPORTS:
            print(f"{report.name:<24}{report.title}")
        return 0
    reports = list(REPORTS) if name == "all" else [find_report(name)]
    run_models(pipeline)
    for report in reports:
        result = read_report(pipeline, report)
        print(format_report(result, limit))
        if csv_path and result.available:
            path = (
                csv_path if len(reports) == 1 else csv_path.replace(".csv", f"-{report.name}.csv")
            )
            write_csv(result, path)
            print(f"  wrote {len(result.rows)} rows to {path}")
    return 0


def print_reconciliation_summary(pipeline: Any, limit: int = 10) -> None:
    """Every report, as ``make demo`` ends with."""
    print("\n== reconciliation ==")
    for report in REPORTS:
        print(format_report(read_report(pipeline, report), limit))
