-- One row per Stripe line item, whatever the API version of the raw row.
-- requires: stripe_invoice_line_items
select
    l.id as line_item_id,
    l.invoice_id,
    l.line_number,
    lower(l.currency) as currency,
    l.description,
    l.quantity,
    l.amount,
    coalesce(l.discount_amount, 0) as discount_amount,
    coalesce(l.tax_amount, 0) as tax_amount,
    coalesce(l.exclusive_tax_amount, 0) as exclusive_tax_amount,
    coalesce(
        l.unit_amount,
        cast(cast(l.unit_amount_decimal as numeric(38, 12)) as bigint)
    ) as unit_amount,
    l.unit_amount_decimal,
    l.period_start as period_start_at,
    l.period_end as period_end_at,
    l.price_id,
    l.product_id,
    l.line_type,
    coalesce(l.is_proration, false) as is_proration,
    coalesce(l.discountable, false) as is_discountable,
    l.invoice_item_id,
    l.subscription_id,
    l.subscription_item_id,
    l.metadata,
    l.api_shape
from {{ stripe_invoice_line_items }} as l
