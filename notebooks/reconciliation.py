# mypy: allow-untyped-defs, check-untyped-defs

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="Reconciliation")

with app.setup:
    from decimal import Decimal

    import altair as alt
    import marimo as mo
    from invoice_source.models.reports import REPORTS, read_report

    from invoice_analysis import (
        NotebookSettings,
        Warehouse,
        check_explanations,
        display_rows,
        major_unit_columns,
        missing_tables_message,
        money,
        save_chart,
    )

    # Where each source's invoices and lines are, once its models are built.
    SOURCE_INVOICES = {
        "stripe": "stg_stripe__invoices",
        "prepbusiness": "stg_prepbusiness__invoices",
        "alternative_payments": "stg_alternative_payments__invoices",
    }
    SOURCE_LINES = {
        "stripe": "stripe_line_items",
        "prepbusiness": "stg_prepbusiness__invoice_line_items",
        "alternative_payments": "stg_alternative_payments__invoice_line_items",
    }
    STRIPE_LINE_COLUMNS = (
        "line_number",
        "description",
        "quantity",
        "currency",
        "unit_amount_major",
        "amount_major",
        "discount_amount_major",
        "tax_amount_major",
        "exclusive_tax_amount",
        "is_proration",
        "product_id",
        "price_id",
    )
    # Columns of a row that are not added up under the lines.
    NOT_ADDED_UP = {
        "line_number",
        "position",
        "quantity",
        "currency_exponent",
        "unit_amount",
        "unit_amount_major",
    }


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # Reconciliation

    The reconciliation reports the models build (`invoice-sync report all` prints the same):
    one row per invoice and failed check. Pick a report, a check and an invoice below to see
    the invoice as every source has it and the lines behind the numbers.
    """)
    return


@app.cell
def _():
    settings = NotebookSettings.resolve(mo.cli_args())
    warehouse = Warehouse(settings)
    report_results = {report.name: read_report(warehouse, report) for report in REPORTS}
    mo.md(f"Reading {settings.location}.")
    return report_results, settings, warehouse


@app.cell
def _(report_results, warehouse):
    _overview = []
    _notes = []
    for _result in report_results.values():
        if not _result.available:
            _state = "not built"
            _notes.append(
                mo.callout(
                    mo.md(
                        missing_tables_message(
                            warehouse,
                            [_result.report.table],
                            f"Report {_result.report.name} is not built",
                        )
                        + " A report is built only when the tables it compares are loaded."
                    ),
                    kind="neutral",
                )
            )
        elif not _result.rows:
            _state = "no problems found"
        else:
            _state = f"{len(_result.rows)} rows to look at"
        _overview.append(
            {
                "report": _result.report.name,
                "table": _result.report.table,
                "checks": _result.report.title,
                "state": _state,
            }
        )
    mo.vstack([mo.md("## Reports"), mo.ui.table(_overview, selection=None), *_notes])
    return


@app.cell
def _(report_results):
    check_counts = []
    for _result in report_results.values():
        if not _result.available:
            continue
        _explanations = check_explanations(_result.report.table)
        _currency_at = _result.columns.index("currency") if "currency" in _result.columns else None
        _counts: dict[tuple[str, str], int] = {}
        for _row in _result.rows:
            _check = _row[_result.columns.index("check_name")]
            _currency = str(_row[_currency_at]) if _currency_at is not None else ""
            _counts[(_check, _currency)] = _counts.get((_check, _currency), 0) + 1
        for (_check, _currency), _count in sorted(_counts.items()):
            check_counts.append(
                {
                    "report": _result.report.name,
                    "check_name": _check,
                    "currency": _currency,
                    "invoices": _count,
                    "meaning": _explanations.get(_check, ""),
                }
            )
    mo.stop(
        not check_counts,
        mo.callout("Every report that is built is clean: nothing to reconcile.", kind="success"),
    )
    mo.ui.table(check_counts, selection=None, label="Offending invoices per check and currency")
    return (check_counts,)


@app.cell
def _(check_counts, settings):
    _per_check: dict[tuple[str, str], int] = {}
    for _row in check_counts:
        _key = (_row["report"], _row["check_name"])
        _per_check[_key] = _per_check.get(_key, 0) + _row["invoices"]
    checks_chart = save_chart(
        alt.Chart(
            alt.Data(
                values=[
                    {"report": report, "check_name": check, "invoices": count}
                    for (report, check), count in _per_check.items()
                ]
            ),
            title="Offending invoices per check",
        )
        .mark_bar()
        .encode(
            y=alt.Y("check_name:N", sort="-x", title="Check"),
            x=alt.X("invoices:Q", title="Invoices"),
            color=alt.Color("report:N", title="Report"),
            tooltip=["report:N", "check_name:N", "invoices:Q"],
        )
        .properties(width="container", height=max(100, 30 * len(_per_check))),
        "reconciliation-checks",
        settings,
    )
    checks_chart
    return


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## Drill down into a mismatch
    """)
    return


@app.cell
def _(report_results):
    _with_rows = [name for name, result in report_results.items() if result.rows]
    report_picker = mo.ui.dropdown(
        _with_rows, value=_with_rows[0] if _with_rows else None, label="Report"
    )
    mo.stop(not _with_rows)
    report_picker
    return (report_picker,)


@app.cell
def _(report_picker, report_results):
    picked_report = report_results[report_picker.value]
    picked_rows = [dict(zip(picked_report.columns, row, strict=True)) for row in picked_report.rows]
    _checks = sorted({row["check_name"] for row in picked_rows})
    check_picker = mo.ui.dropdown(_checks, value=_checks[0], label="Check")
    check_picker
    return check_picker, picked_report, picked_rows


@app.cell
def _(check_picker, picked_report, picked_rows):
    _meaning = check_explanations(picked_report.report.table).get(check_picker.value, "")
    check_rows = [row for row in picked_rows if row["check_name"] == check_picker.value]
    _invoices = [str(row["invoice_id"]) for row in check_rows]
    invoice_picker = mo.ui.dropdown(_invoices, value=_invoices[0], label="Invoice", searchable=True)
    mo.vstack(
        [
            mo.md(
                f"**{check_picker.value}**: {_meaning}."
                f" {len(check_rows)} invoice{' fails' if len(check_rows) == 1 else 's fail'} it."
            ),
            invoice_picker,
            mo.ui.table(
                display_rows(check_rows, major_unit_columns(check_rows)),
                selection=None,
                page_size=10,
            ),
        ]
    )
    return check_rows, invoice_picker


@app.cell
def _(check_rows, invoice_picker, warehouse):
    mismatch = next(row for row in check_rows if str(row["invoice_id"]) == invoice_picker.value)
    # every id the row names: `stripe_invoice_id` is a Stripe invoice, a plain `invoice_id` is
    # looked up in every source
    _wanted = {
        (column.removesuffix("_invoice_id") if column != "invoice_id" else None, str(value))
        for column, value in mismatch.items()
        if column.endswith("invoice_id") and value is not None
    }
    related_invoices = [
        row
        for row in warehouse.rows_where(
            "invoice_history",
            "source_invoice_id",
            sorted({invoice_id for _, invoice_id in _wanted}),
            order_by=("source", "source_invoice_id"),
        )
        if (row["source"], row["source_invoice_id"]) in _wanted
        or (None, row["source_invoice_id"]) in _wanted
    ]
    _currency = str(mismatch.get("currency") or "")
    _about = ", ".join(
        [
            f"{column.replace('_', ' ')} {mismatch[column]}"
            for column in mismatch
            if column.endswith("status") and mismatch[column]
        ]
        + [_currency.upper()]
    )
    _figures = [
        f"- {column.removesuffix('_major').replace('_', ' ')}: **{money(value, _currency)}**"
        for column, value in mismatch.items()
        if column.endswith("_major") and _currency
    ]
    mo.vstack(
        [
            mo.md(f"### {mismatch['invoice_id']} ({_about})\n\n" + "\n".join(_figures)),
            mo.md("**The invoice in `invoice_history`** (every source that has this id):"),
            mo.ui.table(
                display_rows(
                    related_invoices, ("subtotal", "tax", "total", "amount_paid", "amount_due")
                ),
                selection=None,
            ),
        ]
    )
    return mismatch, related_invoices


@app.cell
def _(mismatch, related_invoices, warehouse):
    _sections = []
    invoice_lines: dict[str, list[dict]] = {}
    for _invoice in related_invoices:
        _source = _invoice["source"]
        _invoice_id = _invoice["source_invoice_id"]
        _invoice_table = SOURCE_INVOICES.get(_source)
        if _invoice_table and warehouse.has_table(_invoice_table):
            _as_sent = warehouse.rows_where(_invoice_table, "invoice_id", [_invoice_id])
            _sections.append(
                mo.md(
                    f"**{_source} `{_invoice_id}` as loaded** (`{_invoice_table}`"
                    + ("; amounts in integer minor units" if _source == "stripe" else "")
                    + "):"
                )
            )
            _sections.append(mo.ui.table(display_rows(_as_sent), selection=None))
        _line_table = SOURCE_LINES.get(_source)
        if not (_line_table and warehouse.has_table(_line_table)):
            continue
        _lines = warehouse.rows_where(
            _line_table, "invoice_id", [_invoice_id], order_by=("line_number",)
        )
        if _source == "stripe":
            _lines = [{column: line[column] for column in STRIPE_LINE_COLUMNS} for line in _lines]
        invoice_lines[_invoice_id] = _lines
        _sums: dict[str, Decimal] = {
            column: sum((Decimal(line[column] or 0) for line in _lines), Decimal(0))
            for column in (_lines[0] if _lines else {})
            if column not in NOT_ADDED_UP
            and all(
                isinstance(line[column], int | Decimal) and not isinstance(line[column], bool)
                for line in _lines
            )
        }
        _currency = str(_invoice.get("currency") or mismatch.get("currency") or "")
        _sum_text = ", ".join(
            f"{column} {money(total, _currency) if column.endswith('_major') else total}"
            for column, total in _sums.items()
        )
        _sections.append(
            mo.md(
                f"**{len(_lines)} lines of {_source} `{_invoice_id}`** (`{_line_table}`);"
                f" they add up to: {_sum_text or 'nothing'}."
            )
        )
        _sections.append(mo.ui.table(display_rows(_lines), selection=None, page_size=15))
    mo.vstack(_sections or [mo.md("No lines found for this invoice in any source.")])
    return


if __name__ == "__main__":
    app.run()
