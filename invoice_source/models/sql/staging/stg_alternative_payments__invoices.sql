-- One row per Alternative Payments invoice; archived invoices are kept and flagged.
-- requires: alternative_payments_invoices
select
    i.id as invoice_id,
    i.invoice_number,
    i.customer_id,
    lower(i.currency) as currency,
    i.status,
    coalesce(i.is_archived, false) as is_archived,
    i.created_at,
    i.due_date,
    i.last_notification_at,
    i.memo,
    i.sub_total,
    i.total
from {{ alternative_payments_invoices }} as i
