"""PrepBusiness constants: paging, limits, search syntax, statuses and table names."""

from __future__ import annotations

from typing import Final

# The docs: "up to 100 items a call"; the API's own default is 15.
MAX_PAGE_SIZE: Final = 100
DEFAULT_PAGE_SIZE: Final = 100
API_DEFAULT_PAGE_SIZE: Final = 15

# Laravel's default `throttle:api` allows 60 requests a minute per token; stay at it. A 429 with
# Retry-After is honoured anyway (shared HTTP layer), so raising this only risks waiting.
DEFAULT_REQUESTS_PER_SECOND: Final = 1.0

# The `q` filter on created_at has day granularity (and the server's day may not be UTC's): each
# incremental run re-reads the cursor's day and this many days before it.
DEFAULT_OVERLAP_DAYS: Final = 1

# Ids of not-yet-final invoices are re-read with `q=id:1 OR id:2 ...`. A batch is kept under this
# many characters of `q` (about 2.5 kB once URL-encoded: far below the 8 kB request-line limit of
# common web servers) and under one page of results.
MAX_QUERY_CHARS: Final = 1500

MERCHANT_HEADER: Final = "X-Selected-Client-Id"

# Invoice statuses (compared case-insensitively) after which an invoice is not expected to change.
# The docs only show "Draft"; the sandbox models Draft, Finalized, Paid and PaymentFailed.
FINAL_STATUSES: Final = frozenset({"paid", "void", "voided", "canceled", "cancelled"})
# Stripe statuses after which the Stripe invoice no longer changes (`uncollectible` can be paid).
FINAL_STRIPE_STATUSES: Final = frozenset({"paid", "void"})

TABLE_INVOICES: Final = "prepbusiness_invoices"
