-- Stripe line items flattened for analysis: one row per line item, with its invoice's context
-- and money both in exact minor units and in major units from the currency's own exponent.
-- requires: stg_stripe__invoice_line_items, stg_stripe__invoices, currencies
select
    l.line_item_id,
    l.invoice_id,
    l.line_number,
    i.invoice_number,
    i.customer_id,
    i.status as invoice_status,
    i.created_at as invoice_created_at,
    l.currency,
    coalesce(c.exponent, 2) as currency_exponent,
    l.period_start_at,
    l.period_end_at,
    l.quantity,
    l.unit_amount,
    cast(l.unit_amount as numeric(18, 0)) * coalesce(c.minor_unit, 0.01) as unit_amount_major,
    l.amount,
    cast(l.amount as numeric(18, 0)) * coalesce(c.minor_unit, 0.01) as amount_major,
    l.discount_amount,
    cast(l.discount_amount as numeric(18, 0)) * coalesce(c.minor_unit, 0.01)
        as discount_amount_major,
    l.tax_amount,
    cast(l.tax_amount as numeric(18, 0)) * coalesce(c.minor_unit, 0.01) as tax_amount_major,
    l.exclusive_tax_amount,
    l.price_id,
    l.product_id,
    l.line_type,
    l.is_proration,
    l.is_discountable,
    l.subscription_id,
    l.subscription_item_id,
    l.invoice_item_id,
    l.description,
    l.api_shape
from {{ stg_stripe__invoice_line_items }} as l
left join {{ stg_stripe__invoices }} as i on i.invoice_id = l.invoice_id
left join {{ currencies }} as c on c.currency = l.currency
