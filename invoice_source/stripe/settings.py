"""Stripe constants: endpoints, API versions, limits and defaults."""

from __future__ import annotations

from typing import Final

DEFAULT_BASE_URL: Final = "https://api.stripe.com/v1"
APPGREGATOR_BASE_URL: Final = "https://us-central1-appgregator.cloudfunctions.net/stripe"
# The Stripe-Version sent with every request (users may pin another through `api_version`).
DEFAULT_API_VERSION: Final = "2025-03-31.basil"

# 2011-01-01: no Stripe object is older; the first full load reads from here.
STRIPE_EPOCH: Final = 1_293_840_000
MAX_PAGE_SIZE: Final = 100
EVENTS_RETENTION_DAYS: Final = 30
INVOICE_EVENT_TYPE: Final = "invoice.*"

# Stripe allows 100 read requests/s in live mode and 25 in test mode; stay below both.
LIVE_REQUESTS_PER_SECOND: Final = 80.0
TEST_REQUESTS_PER_SECOND: Final = 20.0

DEFAULT_MAX_WORKERS: Final = 4
# Worker processes for long histories (one process decodes on one core at a time); 0 or 1 = none.
DEFAULT_WORKER_PROCESSES: Final = 2
# A window estimated to hold fewer invoices than this is read by threads in the run's own
# process: starting worker processes costs about a second.
PROCESS_MIN_INVOICES: Final = 20_000
# A worker process hands what it has not read to a fresh process after this many invoices:
# Python's allocator fragments through a long read (a worker grows ~20 MB per 50,000 invoices
# after its first few thousand). Starting one costs ~0.3 s.
WORKER_RETIRE_INVOICES: Final = 25_000
# Invoices created within this many seconds before the saved cursor are read again on the next
# run: a cushion against invoices committed late at the boundary; the merge absorbs the overlap.
DEFAULT_CREATED_OVERLAP_SECONDS: Final = 300
# When events cannot be used, invoices created within this many days are re-read for changes.
DEFAULT_REREAD_WINDOW_DAYS: Final = 90

TABLE_INVOICES: Final = "stripe_invoices"
TABLE_LINE_ITEMS: Final = "stripe_invoice_line_items"
TABLE_LINE_DISCOUNTS: Final = "stripe_invoice_line_item_discounts"
TABLE_LINE_TAXES: Final = "stripe_invoice_line_item_taxes"
