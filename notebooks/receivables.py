# mypy: allow-untyped-defs, check-untyped-defs

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="Receivables")

with app.setup:
    from collections import defaultdict
    from decimal import Decimal
    from typing import Any

    import altair as alt
    import marimo as mo

    from invoice_analysis import (
        AGING_BUCKETS,
        AGING_COLORS,
        NotebookSettings,
        Warehouse,
        aging_bucket,
        chart_values,
        display_rows,
        missing_tables_message,
        money,
        percent,
        ranked_options,
        save_chart,
        sum_by,
    )

    AGE_BY_DUE_DATE = "days past due"
    AGE_BY_ISSUE_DATE = "days since issued"


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # Receivables

    What customers still owe, from every source (`invoice_history`): open and overdue amounts per
    currency, aging buckets (0–30, 31–60, 61–90, 90+ days) and the customers most overdue.

    - **Open**: status `open` with an amount due (Alternative Payments' `overdue` is open too);
      deleted and archived invoices are left out. Uncollectible invoices (written off, still
      owed) can be included below.
    - **Due date**: the invoice's due date; an invoice without one (Stripe's
      `charge_automatically`) is due when it was finalized, else when it was created.
    - **Overdue**: due before the *as of* day. An invoice due that very day is in the 0–30
      bucket but not overdue yet. Days are counted in UTC.
    - **As of** (default today): the day ages are counted to; invoices created after it are
      left out. Statuses are those of the last load, so an earlier day is not a snapshot of
      what was owed then.
    """)
    return


@app.cell
def _():
    settings = NotebookSettings.resolve(mo.cli_args())
    warehouse = Warehouse(settings)
    _missing = warehouse.missing_tables("invoice_history")
    mo.stop(
        bool(_missing),
        mo.callout(
            mo.md(missing_tables_message(warehouse, _missing, "No invoice history")),
            kind="warn",
        ),
    )
    mo.md(f"Reading {settings.location}.")
    return settings, warehouse


@app.cell
def _(settings):
    as_of_picker = mo.ui.date(value=settings.as_of, label="As of")
    include_uncollectible = mo.ui.checkbox(value=False, label="Include uncollectible invoices")
    age_by = mo.ui.radio(
        [AGE_BY_DUE_DATE, AGE_BY_ISSUE_DATE], value=AGE_BY_DUE_DATE, label="Age by", inline=True
    )
    mo.hstack([as_of_picker, include_uncollectible, age_by], justify="start")
    return age_by, as_of_picker, include_uncollectible


@app.cell
def _(age_by, as_of_picker, include_uncollectible, warehouse):
    open_invoices = warehouse.query(
        """
        with receivable as (
            select
                source,
                source_invoice_id,
                invoice_number,
                customer_id,
                status,
                currency,
                amount_due,
                created_at,
                coalesce(due_at, finalized_at, created_at) as due_on,
                coalesce(finalized_at, created_at) as issued_on
            from {{ invoice_history }}
            where (status = 'open' or (%s and status = 'uncollectible'))
                and amount_due > 0
                and not coalesce(is_deleted, false)
                and not coalesce(is_archived, false)
                and cast(created_at as date) <= cast(%s as date)
        )
        select
            receivable.*,
            cast(%s as date) - cast(due_on as date) as days_past_due,
            cast(%s as date) - cast(issued_on as date) as days_since_issued
        from receivable
        order by currency, due_on, source, source_invoice_id
        """,
        bool(include_uncollectible.value),
        as_of_picker.value,
        as_of_picker.value,
        as_of_picker.value,
    )
    for _row in open_invoices:
        _row["is_overdue"] = _row["days_past_due"] > 0
        _age = (
            _row["days_past_due"] if age_by.value == AGE_BY_DUE_DATE else _row["days_since_issued"]
        )
        _row["aging_bucket"] = aging_bucket(_age)
    return (open_invoices,)


@app.cell
def _(open_invoices):
    _oldest_due: dict[str, Any] = {}
    for _row in open_invoices:
        _oldest_due[_row["currency"]] = min(
            _oldest_due.get(_row["currency"], _row["due_on"]), _row["due_on"]
        )
    receivables_by_currency = sorted(
        sum_by(
            (
                {
                    "currency": row["currency"],
                    "open_invoices": 1,
                    "open_amount": row["amount_due"],
                    "overdue_invoices": 1 if row["is_overdue"] else 0,
                    "overdue_amount": row["amount_due"] if row["is_overdue"] else Decimal(0),
                }
                for row in open_invoices
            ),
            ["currency"],
            ["open_invoices", "open_amount", "overdue_invoices", "overdue_amount"],
        ),
        key=lambda line: (-line["open_invoices"], line["currency"]),
    )
    for _line in receivables_by_currency:
        _line["overdue_share"] = percent(_line["overdue_amount"], _line["open_amount"])
        _line["oldest_due_on"] = _oldest_due[_line["currency"]]
    mo.stop(
        not open_invoices,
        mo.callout("Nothing is owed: no open invoices with an amount due.", kind="success"),
    )
    mo.vstack(
        [
            mo.md("## Open and overdue, per currency"),
            mo.ui.table(
                display_rows(receivables_by_currency, ("open_amount", "overdue_amount")),
                selection=None,
            ),
        ]
    )
    return


@app.cell
def _(open_invoices):
    aging = sorted(
        sum_by(
            (
                {
                    "currency": row["currency"],
                    "aging_bucket": row["aging_bucket"],
                    "invoices": 1,
                    "amount_due": row["amount_due"],
                }
                for row in open_invoices
            ),
            ["currency", "aging_bucket"],
            ["invoices", "amount_due"],
        ),
        key=lambda cell: (cell["currency"], AGING_BUCKETS.index(cell["aging_bucket"])),
    )
    _currencies = sorted({cell["currency"] for cell in aging})
    _pivot = []
    for _currency in _currencies:
        _line: dict[str, str] = {"currency": _currency}
        for _bucket in AGING_BUCKETS:
            _amount = next(
                (
                    cell["amount_due"]
                    for cell in aging
                    if cell["currency"] == _currency and cell["aging_bucket"] == _bucket
                ),
                None,
            )
            _line[_bucket] = money(_amount, _currency)
        _pivot.append(_line)
    mo.vstack([mo.md("## Aging, per currency"), mo.ui.table(_pivot, selection=None)])
    return


@app.cell
def _(open_invoices):
    _currencies = ranked_options(
        [{"currency": row["currency"], "count": 1} for row in open_invoices], "currency", "count"
    )
    currency_picker = mo.ui.dropdown(
        _currencies, value=_currencies[0] if _currencies else None, label="Currency"
    )
    top_count = mo.ui.slider(5, 50, step=5, value=10, label="Customers shown", show_value=True)
    mo.hstack([currency_picker, top_count], justify="start")
    return currency_picker, top_count


@app.cell
def _(currency_picker, open_invoices, settings):
    _currency = currency_picker.value
    _amounts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for _row in open_invoices:
        if _row["currency"] == _currency:
            _amounts[(_row["aging_bucket"], _row["source"])] += _row["amount_due"]
    aging_chart_rows = [
        {"aging_bucket": bucket, "source": source, "currency": _currency, "amount_due": amount}
        for (bucket, source), amount in sorted(
            _amounts.items(), key=lambda item: (AGING_BUCKETS.index(item[0][0]), item[0][1])
        )
    ]
    aging_chart = save_chart(
        alt.Chart(
            alt.Data(values=chart_values(aging_chart_rows)),
            title=f"Open amounts by age, {(_currency or '').upper()}",
        )
        .mark_bar()
        .encode(
            x=alt.X(
                "aging_bucket:O",
                sort=list(AGING_BUCKETS),
                title="Age (days)",
                axis=alt.Axis(labelAngle=0),
            ),
            y=alt.Y("amount_due:Q", title=f"Amount due ({(_currency or '').upper()})"),
            color=alt.Color("source:N", title="Source"),
            tooltip=[
                alt.Tooltip("aging_bucket:O", title="Age"),
                alt.Tooltip("source:N", title="Source"),
                alt.Tooltip("amount_due_text:N", title="Amount due"),
            ],
        )
        .properties(width="container", height=260),
        "receivables-aging",
        settings,
    )
    aging_chart
    return


@app.cell
def _(currency_picker, open_invoices, settings, top_count):
    _currency = currency_picker.value
    _overdue = [
        {**row, "customer_id": row["customer_id"] or "(no customer)"}
        for row in open_invoices
        if row["currency"] == _currency and row["is_overdue"]
    ]
    _most_days: dict[str, int] = {}
    for _row in _overdue:
        _most_days[_row["customer_id"]] = max(
            _most_days.get(_row["customer_id"], 0), _row["days_past_due"]
        )
    top_overdue_customers = sorted(
        sum_by(
            (
                {
                    "customer_id": row["customer_id"],
                    "currency": _currency,
                    "overdue_invoices": 1,
                    "overdue_amount": row["amount_due"],
                }
                for row in _overdue
            ),
            ["customer_id", "currency"],
            ["overdue_invoices", "overdue_amount"],
        ),
        key=lambda line: (-line["overdue_amount"], line["customer_id"]),
    )[: top_count.value]
    for _line in top_overdue_customers:
        _line["most_days_past_due"] = _most_days[_line["customer_id"]]
    _shown = [line["customer_id"] for line in top_overdue_customers]
    _chart_rows = [
        {**row, "bucket_rank": AGING_BUCKETS.index(row["aging_bucket"])}
        for row in sum_by(
            (row for row in _overdue if row["customer_id"] in _shown),
            ["customer_id", "aging_bucket", "currency"],
            ["amount_due"],
        )
    ]
    top_customers_chart = save_chart(
        alt.Chart(
            alt.Data(values=chart_values(_chart_rows)),
            title=f"Most overdue customers, {(_currency or '').upper()}",
        )
        .mark_bar()
        .encode(
            y=alt.Y("customer_id:N", sort=_shown, title="Customer"),
            x=alt.X("amount_due:Q", title=f"Overdue ({(_currency or '').upper()})"),
            color=alt.Color(
                "aging_bucket:N",
                title="Age (days)",
                scale=alt.Scale(domain=list(AGING_BUCKETS), range=list(AGING_COLORS)),
            ),
            order=alt.Order("bucket_rank:Q"),
            tooltip=[
                alt.Tooltip("customer_id:N", title="Customer"),
                alt.Tooltip("aging_bucket:O", title="Age"),
                alt.Tooltip("amount_due_text:N", title="Overdue"),
            ],
        )
        .properties(width="container", height=max(120, 22 * len(_shown))),
        "receivables-top_overdue_customers",
        settings,
    )
    mo.vstack(
        [
            mo.md("## Most overdue customers"),
            top_customers_chart,
            mo.ui.table(display_rows(top_overdue_customers, ("overdue_amount",)), selection=None),
        ]
    )
    return


@app.cell
def _(currency_picker, open_invoices):
    _overdue = sorted(
        (
            row
            for row in open_invoices
            if row["currency"] == currency_picker.value and row["is_overdue"]
        ),
        key=lambda row: (-row["days_past_due"], row["source_invoice_id"]),
    )
    mo.vstack(
        [
            mo.md(f"## Overdue invoices, {(currency_picker.value or '').upper()}"),
            mo.ui.table(
                display_rows(
                    [
                        {
                            "customer_id": row["customer_id"],
                            "source": row["source"],
                            "source_invoice_id": row["source_invoice_id"],
                            "invoice_number": row["invoice_number"],
                            "status": row["status"],
                            "currency": row["currency"],
                            "amount_due": row["amount_due"],
                            "due_on": row["due_on"],
                            "days_past_due": row["days_past_due"],
                            "aging_bucket": row["aging_bucket"],
                        }
                        for row in _overdue
                    ],
                    ("amount_due",),
                ),
                selection=None,
                page_size=15,
            ),
        ]
    )
    return


if __name__ == "__main__":
    app.run()
