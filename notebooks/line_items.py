# mypy: allow-untyped-defs, check-untyped-defs

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="Line items")

with app.setup:
    import altair as alt
    import marimo as mo

    from invoice_analysis import (
        NotebookSettings,
        Warehouse,
        chart_values,
        display_rows,
        missing_tables_message,
        month_label,
        percent,
        ranked_options,
        save_chart,
        sum_by,
        with_major_units,
    )

    LINE_KINDS = ("subscription", "proration", "one-off")


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # Line items

    What was sold, from Stripe's line items (`stripe_line_items`, `stripe_line_item_discounts`,
    `stripe_line_item_taxes`): revenue by product and price, prorations, discounts and tax.

    Only lines of issued invoices count (status open, paid or uncollectible). *Gross* is the
    lines' `amount` (quantity × unit price, before discounts); *net* is gross minus discounts.
    Inclusive taxes are part of the amount, exclusive taxes come on top. Amounts are summed in
    exact minor units and shown in each currency's own decimals; never across currencies.
    """)
    return


@app.cell
def _():
    settings = NotebookSettings.resolve(mo.cli_args())
    warehouse = Warehouse(settings)
    _missing = warehouse.missing_tables("stripe_line_items")
    mo.stop(
        bool(_missing),
        mo.callout(
            mo.md(missing_tables_message(warehouse, _missing, "No Stripe line items")),
            kind="warn",
        ),
    )
    mo.md(f"Reading {settings.location}.")
    return settings, warehouse


@app.cell
def _(warehouse):
    products = with_major_units(
        warehouse.query(
            """
            select
                currency,
                coalesce(product_id, '(no product)') as product_id,
                count(*) as lines,
                count(distinct invoice_id) as invoices,
                sum(quantity) as quantity,
                sum(amount) as gross_minor,
                sum(discount_amount) as discounts_minor,
                sum(amount - discount_amount) as net_minor,
                sum(tax_amount) as tax_minor,
                sum(tax_amount - exclusive_tax_amount) as inclusive_tax_minor
            from {{ stripe_line_items }}
            where invoice_status in ('open', 'paid', 'uncollectible')
            group by currency, coalesce(product_id, '(no product)')
            order by currency, sum(amount - discount_amount) desc
            """
        )
    )
    _currencies = ranked_options(products, "currency", "lines")
    currency_picker = mo.ui.dropdown(
        _currencies, value=_currencies[0] if _currencies else None, label="Currency"
    )
    mo.stop(not products, mo.callout("No lines of issued invoices yet.", kind="info"))
    currency_picker
    return currency_picker, products


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## Revenue by product and price
    """)
    return


@app.cell
def _(currency_picker, products, settings):
    _currency = currency_picker.value
    product_revenue = [row for row in products if row["currency"] == _currency]
    product_chart = save_chart(
        alt.Chart(
            alt.Data(values=chart_values(product_revenue)),
            title=f"Net revenue by product, {(_currency or '').upper()}",
        )
        .mark_bar()
        .encode(
            y=alt.Y("product_id:N", sort="-x", title="Product"),
            x=alt.X("net:Q", title=f"Net revenue ({(_currency or '').upper()})"),
            tooltip=[
                alt.Tooltip("product_id:N", title="Product"),
                alt.Tooltip("net_text:N", title="Net"),
                alt.Tooltip("discounts_text:N", title="Discounts"),
                alt.Tooltip("lines:Q", title="Lines"),
            ],
        )
        .properties(width="container", height=max(120, 28 * len(product_revenue))),
        "line_items-revenue_by_product",
        settings,
    )
    mo.vstack(
        [
            product_chart,
            mo.ui.table(
                display_rows(products, ("gross", "discounts", "net", "tax", "inclusive_tax")),
                selection=None,
                page_size=10,
                label="Every product in every currency",
            ),
        ]
    )
    return


@app.cell
def _(currency_picker, warehouse):
    top_prices = with_major_units(
        warehouse.query(
            """
            select
                currency,
                coalesce(product_id, '(no product)') as product_id,
                coalesce(price_id, '(no price)') as price_id,
                count(*) as lines,
                sum(quantity) as quantity,
                min(unit_amount) as lowest_unit_amount_minor,
                max(unit_amount) as highest_unit_amount_minor,
                sum(amount - discount_amount) as net_minor
            from {{ stripe_line_items }}
            where invoice_status in ('open', 'paid', 'uncollectible') and currency = %s
            group by 1, 2, 3
            order by sum(amount - discount_amount) desc, price_id
            limit 20
            """,
            currency_picker.value,
        )
    )
    mo.ui.table(
        display_rows(top_prices, ("lowest_unit_amount", "highest_unit_amount", "net")),
        selection=None,
        label=f"The 20 prices with the most net revenue, {(currency_picker.value or '').upper()}",
    )
    return


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## Prorations

    Net revenue per month by kind of line: subscription lines, prorations (a plan changed in
    the middle of a period; credits are negative) and one-off invoice items.
    """)
    return


@app.cell
def _(warehouse):
    line_kinds = with_major_units(
        warehouse.query(
            """
            select
                date_trunc('month', invoice_created_at) as month_start,
                currency,
                case
                    when is_proration then 'proration'
                    when line_type = 'subscription' then 'subscription'
                    else 'one-off'
                end as line_kind,
                count(*) as lines,
                count(distinct invoice_id) as invoices,
                sum(amount - discount_amount) as net_minor
            from {{ stripe_line_items }}
            where invoice_status in ('open', 'paid', 'uncollectible')
            group by 1, 2, 3
            order by 1, 2, 3
            """
        )
    )
    for _row in line_kinds:
        _row["month"] = month_label(_row.pop("month_start"))
    _by_currency = {
        row["currency"]: row for row in sum_by(line_kinds, ["currency"], ["lines", "net"])
    }
    proration_summary = [
        {
            "currency": row["currency"],
            "proration_lines": row["lines"],
            "proration_net": row["net"],
            "share_of_net": percent(row["net"], _by_currency[row["currency"]]["net"]),
        }
        for row in sum_by(
            [row for row in line_kinds if row["line_kind"] == "proration"],
            ["currency"],
            ["lines", "net"],
        )
    ]
    mo.ui.table(
        display_rows(proration_summary, ("proration_net",)),
        selection=None,
        label="Prorations per currency",
    )
    return (line_kinds,)


@app.cell
def _(currency_picker, line_kinds, settings):
    _currency = currency_picker.value
    _rows = [row for row in line_kinds if row["currency"] == _currency]
    line_kinds_chart = save_chart(
        alt.Chart(
            alt.Data(values=chart_values(_rows)),
            title=f"Net revenue per month by kind of line, {(_currency or '').upper()}",
        )
        .mark_bar()
        .encode(
            x=alt.X("month:O", title="Month the invoice was created"),
            y=alt.Y("net:Q", title=f"Net ({(_currency or '').upper()})"),
            color=alt.Color("line_kind:N", sort=list(LINE_KINDS), title="Kind of line"),
            tooltip=[
                alt.Tooltip("month:O", title="Month"),
                alt.Tooltip("line_kind:N", title="Kind"),
                alt.Tooltip("net_text:N", title="Net"),
                alt.Tooltip("lines:Q", title="Lines"),
            ],
        )
        .properties(width="container", height=260),
        "line_items-prorations_per_month",
        settings,
    )
    line_kinds_chart
    return


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## Discounts

    Discount rate: discounts as a share of the gross amount of discountable lines.
    """)
    return


@app.cell
def _(warehouse):
    monthly_discounts = with_major_units(
        warehouse.query(
            """
            select
                date_trunc('month', invoice_created_at) as month_start,
                currency,
                count(*) as lines,
                sum(case when discount_amount <> 0 then 1 else 0 end) as discounted_lines,
                sum(case when is_discountable then amount else 0 end) as discountable_minor,
                sum(discount_amount) as discounts_minor
            from {{ stripe_line_items }}
            where invoice_status in ('open', 'paid', 'uncollectible')
            group by 1, 2
            order by 1, 2
            """
        )
    )
    for _row in monthly_discounts:
        _row["month"] = month_label(_row.pop("month_start"))
    discount_summary = sum_by(
        monthly_discounts,
        ["currency"],
        ["lines", "discounted_lines", "discountable", "discounts"],
    )
    for _row in discount_summary:
        _row["discount_rate"] = percent(_row["discounts"], _row["discountable"])
    mo.ui.table(
        display_rows(
            sorted(discount_summary, key=lambda row: -row["lines"]),
            ("discountable", "discounts"),
        ),
        selection=None,
        label="Discounts per currency",
    )
    return (monthly_discounts,)


@app.cell
def _(currency_picker, monthly_discounts, settings):
    _currency = currency_picker.value
    _rows = [
        {
            **row,
            "discount_rate": float(row["discounts"] / row["discountable"])
            if row["discountable"]
            else 0.0,
        }
        for row in monthly_discounts
        if row["currency"] == _currency
    ]
    _base = alt.Chart(
        alt.Data(values=chart_values(_rows)),
        title=f"Discounts per month, {(_currency or '').upper()}",
    ).encode(x=alt.X("month:O", title="Month the invoice was created"))
    discounts_chart = save_chart(
        alt.layer(
            _base.mark_bar(color="#7c3aed").encode(
                y=alt.Y("discounts:Q", title=f"Discounts ({(_currency or '').upper()})"),
                tooltip=[
                    alt.Tooltip("month:O", title="Month"),
                    alt.Tooltip("discounts_text:N", title="Discounts"),
                    alt.Tooltip("discounted_lines:Q", title="Discounted lines"),
                    alt.Tooltip("discount_rate:Q", title="Discount rate", format=".2%"),
                ],
            ),
            _base.mark_line(color="#f59e0b", point=alt.OverlayMarkDef(color="#f59e0b")).encode(
                y=alt.Y(
                    "discount_rate:Q",
                    title="Discount rate",
                    axis=alt.Axis(format="%", titleColor="#f59e0b"),
                )
            ),
        )
        .resolve_scale(y="independent")
        .properties(width="container", height=240),
        "line_items-discounts_per_month",
        settings,
    )
    discounts_chart
    return


@app.cell
def _(currency_picker, warehouse):
    mo.stop(not warehouse.has_table("stripe_line_item_discounts"))
    top_discounts = with_major_units(
        warehouse.query(
            """
            select
                d.currency,
                d.discount_id,
                min(l.customer_id) as customer_id,
                count(distinct d.invoice_id) as invoices,
                count(*) as lines,
                sum(d.amount) as discount_minor
            from {{ stripe_line_item_discounts }} as d
            join {{ stripe_line_items }} as l
                on l.invoice_id = d.invoice_id and l.line_item_id = d.line_item_id
            where l.invoice_status in ('open', 'paid', 'uncollectible') and d.currency = %s
            group by d.currency, d.discount_id
            order by sum(d.amount) desc, d.discount_id
            limit 10
            """,
            currency_picker.value,
        )
    )
    mo.ui.table(
        display_rows(top_discounts, ("discount",)),
        selection=None,
        label=f"The 10 largest discounts, {(currency_picker.value or '').upper()}",
    )
    return


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## Tax

    Tax per tax rate: inclusive taxes are contained in the line amounts, exclusive taxes are
    added on top. Effective rate: tax as a share of the taxable amount.
    """)
    return


@app.cell
def _(warehouse):
    mo.stop(
        not warehouse.has_table("stripe_line_item_taxes"),
        mo.callout("No taxes on any line (`stripe_line_item_taxes` is missing).", kind="info"),
    )
    monthly_taxes = with_major_units(
        warehouse.query(
            """
            select
                date_trunc('month', l.invoice_created_at) as month_start,
                t.currency,
                coalesce(t.tax_rate_id, '(no tax rate)') as tax_rate_id,
                t.is_inclusive,
                count(*) as lines,
                sum(t.taxable_amount) as taxable_minor,
                sum(t.amount) as tax_minor
            from {{ stripe_line_item_taxes }} as t
            join {{ stripe_line_items }} as l
                on l.invoice_id = t.invoice_id and l.line_item_id = t.line_item_id
            where l.invoice_status in ('open', 'paid', 'uncollectible')
            group by 1, 2, 3, 4
            order by 1, 2, 3, 4
            """
        )
    )
    for _row in monthly_taxes:
        _row["month"] = month_label(_row.pop("month_start"))
    tax_summary = sorted(
        sum_by(
            monthly_taxes,
            ["currency", "tax_rate_id", "is_inclusive"],
            ["lines", "taxable", "tax"],
        ),
        key=lambda row: (row["currency"], row["tax_rate_id"]),
    )
    for _row in tax_summary:
        _row["effective_rate"] = percent(_row["tax"], _row["taxable"])
    mo.ui.table(
        display_rows(tax_summary, ("taxable", "tax")),
        selection=None,
        label="Tax per currency and tax rate",
    )
    return (monthly_taxes,)


@app.cell
def _(currency_picker, monthly_taxes, settings):
    _currency = currency_picker.value
    _rows = [
        {**row, "kind": "inclusive" if row["is_inclusive"] else "exclusive"}
        for row in monthly_taxes
        if row["currency"] == _currency
    ]
    taxes_chart = save_chart(
        alt.Chart(
            alt.Data(values=chart_values(_rows)),
            title=f"Tax per month by tax rate, {(_currency or '').upper()}",
        )
        .mark_bar()
        .encode(
            x=alt.X("month:O", title="Month the invoice was created"),
            y=alt.Y("tax:Q", title=f"Tax ({(_currency or '').upper()})"),
            color=alt.Color("tax_rate_id:N", title="Tax rate"),
            tooltip=[
                alt.Tooltip("month:O", title="Month"),
                alt.Tooltip("tax_rate_id:N", title="Tax rate"),
                alt.Tooltip("kind:N", title="Inclusive or exclusive"),
                alt.Tooltip("tax_text:N", title="Tax"),
                alt.Tooltip("taxable_text:N", title="Taxable"),
            ],
        )
        .properties(width="container", height=260),
        "line_items-tax_per_month",
        settings,
    )
    taxes_chart
    return


if __name__ == "__main__":
    app.run()
