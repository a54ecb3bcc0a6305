-- Taxes on Stripe line items, one row per tax amount, in minor and major units.
-- requires: stg_stripe__line_item_taxes, currencies
select
    t.invoice_id,
    t.line_item_id,
    t.tax_position,
    t.tax_rate_id,
    t.currency,
    t.is_inclusive,
    t.taxability_reason,
    t.amount,
    cast(t.amount as numeric(18, 0)) * coalesce(c.minor_unit, 0.01) as amount_major,
    t.taxable_amount,
    cast(t.taxable_amount as numeric(18, 0)) * coalesce(c.minor_unit, 0.01)
        as taxable_amount_major
from {{ stg_stripe__line_item_taxes }} as t
left join {{ currencies }} as c on c.currency = t.currency
