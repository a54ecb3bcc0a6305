-- One row per tax amount on a Stripe line item (tax_amounts before basil, taxes after).
-- requires: stripe_invoice_line_item_taxes
select
    t.invoice_id,
    t.line_item_id,
    t.position as tax_position,
    t.tax_rate_id,
    lower(t.currency) as currency,
    t.amount,
    t.taxable_amount,
    coalesce(t.is_inclusive, false) as is_inclusive,
    t.taxability_reason
from {{ stripe_invoice_line_item_taxes }} as t
