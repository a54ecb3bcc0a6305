-- Alternative Payments invoices to act on, one row per failed check:
--   overdue                  past its due date and still open (not paid, void or archived)
--   total_vs_sub_total       total differs from sub_total (the API has no tax or discount fields)
--   sub_total_vs_line_items  sub_total differs from the sum of its lines (amount x quantity)
-- Amounts are exact decimals in major units.
-- requires: stg_alternative_payments__invoices, stg_alternative_payments__invoice_line_items
with lines as (
    select invoice_id, sum(line_total) as line_total
    from {{ stg_alternative_payments__invoice_line_items }}
    group by invoice_id
),
invoices as (
    select i.*, coalesce(l.line_total, 0) as line_total
    from {{ stg_alternative_payments__invoices }} as i
    left join lines as l on l.invoice_id = i.invoice_id
    where not i.is_archived
),
checks as (
    select
        invoice_id, customer_id, currency, status, due_date, 'overdue' as check_name,
        total as expected_amount, cast(0 as numeric(38, 6)) as actual_amount
    from invoices
    where status in ('open', 'overdue') and due_date < current_date
    union all
    select
        invoice_id, customer_id, currency, status, due_date, 'total_vs_sub_total',
        sub_total, total
    from invoices
    where total <> sub_total
    union all
    select
        invoice_id, customer_id, currency, status, due_date, 'sub_total_vs_line_items',
        sub_total, line_total
    from invoices
    where line_total <> sub_total
)
select
    'alternative_payments_reconciliation' as report,
    check_name,
    invoice_id,
    customer_id,
    status,
    currency,
    due_date,
    cast(expected_amount as numeric(38, 6)) as expected_amount_major,
    cast(actual_amount as numeric(38, 6)) as actual_amount_major,
    cast(actual_amount - expected_amount as numeric(38, 6)) as difference_major
from checks
