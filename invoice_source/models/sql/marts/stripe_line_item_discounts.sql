-- Discounts on Stripe line items, one row per discount amount, in minor and major units.
-- requires: stg_stripe__line_item_discounts, currencies
select
    d.invoice_id,
    d.line_item_id,
    d.discount_position,
    d.discount_id,
    d.currency,
    d.amount,
    cast(d.amount as numeric(18, 0)) * coalesce(c.minor_unit, 0.01) as amount_major
from {{ stg_stripe__line_item_discounts }} as d
left join {{ currencies }} as c on c.currency = d.currency
