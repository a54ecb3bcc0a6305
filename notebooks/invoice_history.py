# mypy: allow-untyped-defs, check-untyped-defs

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="Invoice history")

with app.setup:
    from collections import defaultdict
    from decimal import Decimal

    import altair as alt
    import marimo as mo

    from invoice_analysis import (
        STATUS_COLORS,
        STATUS_ORDER,
        NotebookSettings,
        Warehouse,
        chart_values,
        display_rows,
        missing_tables_message,
        money,
        month_label,
        ranked_options,
        save_chart,
        sum_by,
    )

    # Issued invoices are revenue; drafts, voided and deleted invoices are not.
    ISSUED_STATUSES = ("open", "paid", "uncollectible")
    ALL_SOURCES = "all sources"


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # Invoice history

    Every invoice from Stripe, PrepBusiness and Alternative Payments in one shape
    (`invoice_history`): how many invoices and how much was invoiced each month, by source,
    currency and status, and the whole history of one customer.

    *Invoiced* is the `total` of invoices that were issued (status open, paid or uncollectible),
    counted in the month they were created (UTC); drafts, voided and deleted invoices are left
    out. Amounts are never added up across currencies.
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
def _(warehouse):
    sources = warehouse.query(
        """
        select
            source,
            count(*) as invoices,
            count(distinct customer_id) as customers,
            count(distinct currency) as currencies,
            min(created_at) as first_created_at,
            max(created_at) as last_created_at
        from {{ invoice_history }}
        where not coalesce(is_deleted, false)
        group by source
        order by source
        """
    )
    mo.vstack([mo.md("## Sources"), mo.ui.table(display_rows(sources), selection=None)])
    return (sources,)


@app.cell
def _(warehouse):
    monthly = warehouse.query(
        """
        select
            date_trunc('month', created_at) as month_start,
            source,
            currency,
            status,
            count(*) as invoices,
            sum(total) as total,
            sum(amount_paid) as amount_paid,
            sum(amount_due) as amount_due
        from {{ invoice_history }}
        where not coalesce(is_deleted, false)
        group by date_trunc('month', created_at), source, currency, status
        order by 1, 2, 3, 4
        """
    )
    for _row in monthly:
        _row["month"] = month_label(_row.pop("month_start"))
    return (monthly,)


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## Invoices and revenue per month
    """)
    return


@app.cell
def _(monthly, sources):
    source_picker = mo.ui.dropdown(
        [ALL_SOURCES, *[row["source"] for row in sources]],
        value=ALL_SOURCES,
        label="Source (invoice counts)",
    )
    _currencies = ranked_options(monthly, "currency", "invoices")
    currency_picker = mo.ui.dropdown(
        _currencies, value=_currencies[0] if _currencies else None, label="Currency (amounts)"
    )
    mo.hstack([source_picker, currency_picker], justify="start")
    return currency_picker, source_picker


@app.cell
def _(monthly, settings, source_picker):
    _counts: dict[tuple[str, str], int] = defaultdict(int)
    for _row in monthly:
        if source_picker.value in (ALL_SOURCES, _row["source"]):
            _counts[(_row["month"], _row["status"])] += _row["invoices"]
    invoices_per_month = [
        {
            "month": month,
            "status": status,
            "status_rank": STATUS_ORDER.index(status) if status in STATUS_ORDER else 99,
            "invoices": count,
        }
        for (month, status), count in sorted(_counts.items())
    ]
    invoices_chart = save_chart(
        alt.Chart(
            alt.Data(values=invoices_per_month),
            title=f"Invoices created per month by status ({source_picker.value})",
        )
        .mark_bar()
        .encode(
            x=alt.X("month:O", title="Month created"),
            y=alt.Y("invoices:Q", title="Invoices"),
            color=alt.Color(
                "status:N",
                title="Status",
                scale=alt.Scale(domain=list(STATUS_ORDER), range=list(STATUS_COLORS)),
            ),
            order=alt.Order("status_rank:Q"),
            tooltip=["month:O", "status:N", "invoices:Q"],
        )
        .properties(width="container", height=260),
        "invoice_history-invoices_per_month",
        settings,
    )
    invoices_chart
    return


@app.cell
def _(currency_picker, monthly, settings):
    _currency = currency_picker.value
    _invoiced: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for _row in monthly:
        if _row["currency"] == _currency and _row["status"] in ISSUED_STATUSES:
            _invoiced[(_row["month"], _row["source"])] += _row["total"] or Decimal(0)
    revenue_per_month = [
        {"month": month, "source": source, "currency": _currency, "invoiced": amount}
        for (month, source), amount in sorted(_invoiced.items())
    ]
    revenue_chart = save_chart(
        alt.Chart(
            alt.Data(values=chart_values(revenue_per_month)),
            title=f"Invoiced per month by source, {(_currency or '').upper()}",
        )
        .mark_bar()
        .encode(
            x=alt.X("month:O", title="Month created"),
            y=alt.Y("invoiced:Q", title=f"Invoiced ({(_currency or '').upper()})"),
            color=alt.Color("source:N", title="Source"),
            tooltip=[
                alt.Tooltip("month:O", title="Month"),
                alt.Tooltip("source:N", title="Source"),
                alt.Tooltip("invoiced_text:N", title="Invoiced"),
            ],
        )
        .properties(width="container", height=260),
        "invoice_history-revenue_per_month",
        settings,
    )
    revenue_chart
    return


@app.cell
def _(monthly):
    mo.vstack(
        [
            mo.md("Every month by source, currency and status (search or download the table):"),
            mo.ui.table(
                display_rows(
                    [
                        {
                            "month": row["month"],
                            "source": row["source"],
                            "currency": row["currency"],
                            "status": row["status"],
                            "invoices": row["invoices"],
                            "total": row["total"],
                            "amount_paid": row["amount_paid"],
                            "amount_due": row["amount_due"],
                        }
                        for row in reversed(monthly)
                    ],
                    money_columns=("total", "amount_paid", "amount_due"),
                ),
                selection=None,
                page_size=12,
            ),
        ]
    )
    return


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## A customer's history

    Paste a customer id (Stripe `cus_…`, PrepBusiness merchant, Alternative Payments customer);
    it starts on the customer with the most invoices.
    """)
    return


@app.cell
def _(warehouse):
    top_customers = warehouse.query(
        """
        select customer_id, count(*) as invoices, count(distinct source) as sources
        from {{ invoice_history }}
        where customer_id is not null and not coalesce(is_deleted, false)
        group by customer_id
        order by invoices desc, customer_id
        limit 20
        """
    )
    customer_input = mo.ui.text(
        value=top_customers[0]["customer_id"] if top_customers else "",
        label="Customer id",
        full_width=True,
    )
    mo.vstack(
        [
            customer_input,
            mo.accordion(
                {
                    "Customers with the most invoices": mo.ui.table(
                        top_customers, selection=None, page_size=10
                    )
                }
            ),
        ]
    )
    return (customer_input,)


@app.cell
def _(customer_input, warehouse):
    customer_invoices = warehouse.query(
        """
        select
            created_at,
            source,
            source_invoice_id,
            invoice_number,
            status,
            source_status,
            currency,
            total,
            amount_paid,
            amount_due,
            due_at,
            paid_at,
            is_deleted
        from {{ invoice_history }}
        where customer_id = %s
        order by created_at desc, source_invoice_id
        """,
        customer_input.value.strip(),
    )
    _live = [row for row in customer_invoices if not row["is_deleted"]]
    customer_summary = sorted(
        sum_by(
            (
                {
                    "currency": row["currency"],
                    "invoices": 1,
                    "invoiced": row["total"] if row["status"] in ISSUED_STATUSES else 0,
                    "paid": row["amount_paid"] if row["status"] in ISSUED_STATUSES else 0,
                    "outstanding": row["amount_due"] if row["status"] == "open" else 0,
                }
                for row in _live
            ),
            ["currency"],
            ["invoices", "invoiced", "paid", "outstanding"],
        ),
        key=lambda line: (-line["invoices"], line["currency"]),
    )
    for _line in customer_summary:
        _created = [row["created_at"] for row in _live if row["currency"] == _line["currency"]]
        _line["first_invoice"], _line["last_invoice"] = min(_created), max(_created)
    mo.stop(
        not customer_invoices,
        mo.callout(f"No invoices for customer `{customer_input.value}`.", kind="info"),
    )
    _headline = ", ".join(
        f"{money(line['invoiced'], line['currency'])} invoiced" for line in customer_summary
    )
    mo.vstack(
        [
            mo.md(f"**{customer_input.value}**: {len(customer_invoices)} invoices; {_headline}."),
            mo.ui.table(
                display_rows(customer_summary, ("invoiced", "paid", "outstanding")),
                selection=None,
            ),
            mo.ui.table(
                display_rows(customer_invoices, ("total", "amount_paid", "amount_due")),
                selection=None,
                page_size=10,
            ),
        ]
    )
    return


if __name__ == "__main__":
    app.run()
