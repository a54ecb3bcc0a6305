-- PrepBusiness invoices against the Stripe invoices they were pushed to, one row per problem:
--   never_created_on_stripe      finalized (or later) on PrepBusiness, no Stripe invoice id
--   stripe_invoice_missing       the Stripe invoice id it names was not found in stripe_invoices
--   stripe_without_prepbusiness  a Stripe invoice created by PrepBusiness (metadata) that no
--                                PrepBusiness invoice points to
--   total_differs                totals differ (PrepBusiness major units vs Stripe minor units)
--   currency_differs             currencies differ
--   paid_on_one_side_only        paid on one side, not on the other
-- requires: stg_prepbusiness__invoices, stg_stripe__invoices, currencies
with stripe as (
    select
        s.invoice_id,
        s.status,
        s.currency,
        s.is_deleted,
        cast(s.total * coalesce(c.minor_unit, 0.01) as numeric(38, 6)) as total_major,
        {{ json_text(s.metadata, prepbusiness_invoice_id) }} as prepbusiness_invoice_id
    from {{ stg_stripe__invoices }} as s
    left join {{ currencies }} as c on c.currency = s.currency
),
pairs as (
    select
        p.invoice_id as prepbusiness_invoice_id,
        p.merchant_id,
        p.status as prepbusiness_status,
        p.currency as prepbusiness_currency,
        p.total as prepbusiness_total,
        p.stripe_invoice_id,
        s.invoice_id as found_stripe_invoice_id,
        s.status as stripe_status,
        s.currency as stripe_currency,
        s.total_major as stripe_total
    from {{ stg_prepbusiness__invoices }} as p
    left join stripe as s on s.invoice_id = p.stripe_invoice_id
),
checks as (
    select 'never_created_on_stripe' as check_name, pairs.*
    from pairs
    where lower(prepbusiness_status) <> 'draft' and stripe_invoice_id is null
    union all
    select 'stripe_invoice_missing', pairs.*
    from pairs
    where stripe_invoice_id is not null and found_stripe_invoice_id is null
    union all
    select 'total_differs', pairs.*
    from pairs
    where found_stripe_invoice_id is not null and prepbusiness_total <> stripe_total
    union all
    select 'currency_differs', pairs.*
    from pairs
    where found_stripe_invoice_id is not null and prepbusiness_currency <> stripe_currency
    union all
    select 'paid_on_one_side_only', pairs.*
    from pairs
    where found_stripe_invoice_id is not null
        and (lower(prepbusiness_status) = 'paid') <> (stripe_status = 'paid')
    union all
    select
        'stripe_without_prepbusiness',
        s.prepbusiness_invoice_id,
        cast(null as varchar(64)),
        cast(null as varchar(64)),
        cast(null as varchar(8)),
        cast(null as numeric(38, 6)),
        s.invoice_id,
        s.invoice_id,
        s.status,
        s.currency,
        s.total_major
    from stripe as s
    where s.prepbusiness_invoice_id is not null
        and not s.is_deleted
        and not exists (
            select 1 from {{ stg_prepbusiness__invoices }} as p
            where p.stripe_invoice_id = s.invoice_id
        )
)
select
    'prepbusiness_stripe_reconciliation' as report,
    check_name,
    coalesce(prepbusiness_invoice_id, '') || '/' || coalesce(stripe_invoice_id, '') as invoice_id,
    prepbusiness_invoice_id,
    stripe_invoice_id,
    merchant_id,
    prepbusiness_status,
    stripe_status,
    coalesce(prepbusiness_currency, stripe_currency) as currency,
    prepbusiness_total as prepbusiness_total_major,
    stripe_total as stripe_total_major
from checks
