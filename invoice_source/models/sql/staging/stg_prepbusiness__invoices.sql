-- One row per PrepBusiness invoice (a prep center's invoice to a merchant). Money in exact major units.
-- requires: prepbusiness_invoices
select
    cast(i.id as varchar(32)) as invoice_id,
    i.merchant_id,
    i.status,
    lower(i.currency) as currency,
    i.total,
    i.created_at,
    i.description,
    i.stripe_invoice_id,
    i.stripe_invoice_status,
    i.synced_at
from {{ prepbusiness_invoices }} as i
