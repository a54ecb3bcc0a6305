-- Stripe invoices that do not add up, one row per failed check:
--   line_sum_vs_subtotal   sum of line amounts differs from subtotal
--   total_formula          subtotal - discounts + exclusive tax differs from total
--   remaining_formula      amount_due - amount_paid differs from amount_remaining
--   paid_without_payment   status paid but nothing paid on a non-zero total
-- Deleted drafts are left out; amounts in minor units and major units.
-- requires: stg_stripe__invoices, stg_stripe__invoice_line_items, currencies
with lines as (
    select
        invoice_id,
        count(*) as line_rows,
        sum(amount) as line_amount,
        sum(exclusive_tax_amount) as exclusive_tax_amount
    from {{ stg_stripe__invoice_line_items }}
    group by invoice_id
),
invoices as (
    select
        i.*,
        coalesce(l.line_rows, 0) as line_rows,
        coalesce(l.line_amount, 0) as line_amount,
        coalesce(l.exclusive_tax_amount, 0) as exclusive_tax_amount
    from {{ stg_stripe__invoices }} as i
    left join lines as l on l.invoice_id = i.invoice_id
    where not i.is_deleted
),
checks as (
    select
        invoice_id, currency, status, 'line_sum_vs_subtotal' as check_name,
        subtotal as expected_amount, line_amount as actual_amount
    from invoices
    where line_rows = line_count and line_amount <> subtotal
    union all
    select
        invoice_id, currency, status, 'total_formula',
        total, subtotal - discount_amount + exclusive_tax_amount
    from invoices
    where line_rows = line_count and subtotal - discount_amount + exclusive_tax_amount <> total
    union all
    select
        invoice_id, currency, status, 'remaining_formula',
        amount_remaining, amount_due - amount_paid
    from invoices
    where amount_due - amount_paid <> amount_remaining
    union all
    select
        invoice_id, currency, status, 'paid_without_payment',
        total, amount_paid
    from invoices
    where status = 'paid' and amount_paid = 0 and total > 0
)
select
    'stripe_reconciliation' as report,
    k.check_name,
    k.invoice_id,
    k.status,
    k.currency,
    k.expected_amount,
    k.actual_amount,
    k.actual_amount - k.expected_amount as difference,
    cast(k.expected_amount * coalesce(c.minor_unit, 0.01) as numeric(38, 6))
        as expected_amount_major,
    cast(k.actual_amount * coalesce(c.minor_unit, 0.01) as numeric(38, 6))
        as actual_amount_major
from checks as k
left join {{ currencies }} as c on c.currency = k.currency
