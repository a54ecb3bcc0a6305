-- One row per Alternative Payments invoice line (lines have no id of their own).
-- requires: alternative_payments_invoice_line_items
select
    l.invoice_id,
    l.line_number,
    l.description,
    l.quantity,
    l.amount,
    l.line_total,
    lower(l.currency) as currency
from {{ alternative_payments_invoice_line_items }} as l
