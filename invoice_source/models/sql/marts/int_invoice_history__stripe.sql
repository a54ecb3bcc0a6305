-- Stripe invoices in the shape of invoice_history (major units from the currency exponent).
-- requires: stg_stripe__invoices, currencies
select
    'stripe' as source,
    i.invoice_id as source_invoice_id,
    i.invoice_number,
    i.customer_id,
    case
        when i.status in ('draft', 'open', 'paid', 'void', 'uncollectible') then i.status
        else 'unknown'
    end as status,
    i.status as source_status,
    i.currency,
    cast(i.subtotal * coalesce(c.minor_unit, 0.01) as numeric(38, 6)) as subtotal,
    cast(i.tax_amount * coalesce(c.minor_unit, 0.01) as numeric(38, 6)) as tax,
    cast(i.total * coalesce(c.minor_unit, 0.01) as numeric(38, 6)) as total,
    cast(i.amount_paid * coalesce(c.minor_unit, 0.01) as numeric(38, 6)) as amount_paid,
    cast(i.amount_remaining * coalesce(c.minor_unit, 0.01) as numeric(38, 6)) as amount_due,
    i.created_at,
    i.finalized_at,
    i.paid_at,
    i.due_at,
    i.is_deleted,
    false as is_archived
from {{ stg_stripe__invoices }} as i
left join {{ currencies }} as c on c.currency = i.currency
