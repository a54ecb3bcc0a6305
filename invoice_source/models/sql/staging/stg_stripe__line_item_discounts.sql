-- One row per discount amount on a Stripe line item.
-- requires: stripe_invoice_line_item_discounts
select
    d.invoice_id,
    d.line_item_id,
    d.position as discount_position,
    d.discount_id,
    lower(d.currency) as currency,
    d.amount
from {{ stripe_invoice_line_item_discounts }} as d
