"""Constants of the Alternative Payments Invoices API and of how the connector reads it."""

from __future__ import annotations

from typing import Final

API_NAME: Final = "alternative_payments"
"""Name used for request counting (``http.REQUEST_TOTALS``), errors and the dlt source."""
CONFIG_SECTION: Final = "sources.alternative_payments"

PRODUCTION_BASE_URL: Final = "https://public-api.alternativepayments.io"
DEMO_BASE_URL: Final = "https://public-api.demo.alternativepayments.io"
TOKEN_PATH: Final = "oauth/token"

DEFAULT_PAGE_SIZE: Final = 100
"""``limit`` of ``GET /invoices``; the API's documented default."""
DEFAULT_REQUESTS_PER_SECOND: Final = 4.0
"""The API allows 5 requests per second per key; stay below it."""
CURSOR_LOOKBACK_SECONDS: Final = 300
"""Incremental runs re-read invoices created this long before the saved cursor, so an invoice
committed late with an earlier ``created_at`` is not skipped (re-reads merge harmlessly)."""

DEFAULT_TOKEN_LIFETIME_SECONDS: Final = 3600
"""Assumed when the token endpoint leaves ``expires_in`` out."""
TOKEN_REFRESH_MARGIN_SECONDS: Final = 60.0
"""A token is replaced this long before it expires (at most a tenth of its lifetime)."""

READ_SCOPES: Final = frozenset({"read", "invoices:read"})
WRITE_SCOPES: Final = frozenset({"write", "invoices:write"})

ARCHIVED_STATUS: Final = "archived"
OPEN_STATUSES: Final = ("draft", "open", "overdue")
"""Statuses an invoice can still leave on its own (payment, edits, due date passing)."""
FINAL_STATUSES: Final = frozenset({"paid", "void", "voided", "canceled", "cancelled", "refunded"})
"""Statuses treated as settled: such invoices are not re-read unless they are archived.
Any status outside these and ``archived`` is watched like an open one."""
KNOWN_STATUSES: Final = frozenset({*OPEN_STATUSES, *FINAL_STATUSES, ARCHIVED_STATUS})

INVOICES_TABLE: Final = "alternative_payments_invoices"
LINE_ITEMS_TABLE: Final = "alternative_payments_invoice_line_items"
