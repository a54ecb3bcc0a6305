-- Alternative Payments invoices in the shape of invoice_history (money already in major units).
-- requires: stg_alternative_payments__invoices
select
    'alternative_payments' as source,
    i.invoice_id as source_invoice_id,
    i.invoice_number,
    i.customer_id,
    case
        when i.status in ('draft', 'open', 'paid', 'void', 'uncollectible') then i.status
        when i.status = 'overdue' then 'open'
        when i.status = 'archived' then 'void'
        else 'unknown'
    end as status,
    i.status as source_status,
    i.currency,
    cast(i.sub_total as numeric(38, 6)) as subtotal,
    cast(i.total - i.sub_total as numeric(38, 6)) as tax,
    cast(i.total as numeric(38, 6)) as total,
    cast(case when i.status = 'paid' then i.total else 0 end as numeric(38, 6)) as amount_paid,
    cast(case when i.status = 'paid' then 0 else i.total end as numeric(38, 6)) as amount_due,
    i.created_at,
    cast(null as timestamp with time zone) as finalized_at,
    cast(null as timestamp with time zone) as paid_at,
    cast(i.due_date as timestamp with time zone) as due_at,
    false as is_deleted,
    i.is_archived
from {{ stg_alternative_payments__invoices }} as i
