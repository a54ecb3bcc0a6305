-- PrepBusiness invoices in the shape of invoice_history (PrepBusiness sends only a total).
-- requires: stg_prepbusiness__invoices
select
    'prepbusiness' as source,
    i.invoice_id as source_invoice_id,
    cast(null as varchar(64)) as invoice_number,
    i.merchant_id as customer_id,
    case lower(i.status)
        when 'draft' then 'draft'
        when 'finalized' then 'open'
        when 'paymentfailed' then 'open'
        when 'paid' then 'paid'
        else 'unknown'
    end as status,
    i.status as source_status,
    i.currency,
    cast(i.total as numeric(38, 6)) as subtotal,
    cast(null as numeric(38, 6)) as tax,
    cast(i.total as numeric(38, 6)) as total,
    cast(case when lower(i.status) = 'paid' then i.total else 0 end as numeric(38, 6))
        as amount_paid,
    cast(case when lower(i.status) = 'paid' then 0 else i.total end as numeric(38, 6))
        as amount_due,
    i.created_at,
    cast(null as timestamp with time zone) as finalized_at,
    cast(null as timestamp with time zone) as paid_at,
    cast(null as timestamp with time zone) as due_at,
    false as is_deleted,
    false as is_archived
from {{ stg_prepbusiness__invoices }} as i
