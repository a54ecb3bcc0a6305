"""HTTP for Stripe invoices: auth, Stripe-Version, Connect accounts, and the Appgregator proxy.

Lists page newest first with ``starting_after``. Every list is guarded against an API (or a
proxy) that ignores a parameter: a page seen twice or rows outside the requested ``created``
window stop the sync with a :class:`PaginationError` instead of looping or loading a partial
history.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from invoice_source.errors import ApiError, ConfigurationError, PaginationError
from invoice_source.http import ApiClient, RateLimiter, RetryPolicy, Sleep, error_for_status
from invoice_source.redaction import redact, register_secret
from invoice_source.stripe import settings

logger = logging.getLogger("invoice_source.stripe")

Invoice = dict[str, Any]


@dataclass(frozen=True)
class CreatedWindow:
    """A half-open range of ``created`` unix seconds: ``start <= created < end``."""

    start: int | None
    end: int | None

    def params(self) -> dict[str, int]:
        """Stripe's ``created[gte]``/``created[lt]`` parameters for this window."""
        params: dict[str, int] = {}
        if self.start is not None:
            params["created[gte]"] = self.start
        if self.end is not None:
            params["created[lt]"] = self.end
        return params

    def contains(self, created: int) -> bool:
        """Whether ``created`` lies inside the window."""
        return (self.start is None or created >= self.start) and (
            self.end is None or created < self.end
        )


def stripe_error(response: httpx.Response) -> ApiError:
    """Build an exception from Stripe's ``{"error": {type, message, param, code}}`` body."""
    try:
        error = orjson.loads(response.content).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    kind = error.get("type") or "error"
    message = error.get("message") or response.text[:200] or "no message"
    param = f" (param: {error['param']})" if error.get("param") else ""
    hint = ""
    if response.status_code == 401:
        hint = " Check sources.stripe.api_key (env SOURCES__STRIPE__API_KEY)."
    elif response.status_code == 404 and "Unrecognized request URL" in message:
        hint = " Check sources.stripe.base_url (env SOURCES__STRIPE__BASE_URL)."
    text = (
        f"Stripe API {response.status_code} {kind} on {response.request.method}"
        f" {response.request.url.path}: {message}{param}.{hint}"
    )
    return error_for_status(response.status_code, text, api="stripe", code=error.get("code"))


class StripeClient:
    """Reads invoices, their lines and invoice events from Stripe or the Appgregator proxy."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = settings.DEFAULT_BASE_URL,
        api_version: str = settings.DEFAULT_API_VERSION,
        account: str | None = None,
        transport: str = "stripe",
        appgregator_name: str | None = None,
        appgregator_connection_name: str | None = None,
        requests_per_second: float | None = None,
        max_connections: int = 16,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        if not api_key:
            raise ConfigurationError(
                "Stripe API key is missing: set sources.stripe.api_key"
                " (env SOURCES__STRIPE__API_KEY)"
            )
        register_secret(api_key)
        self.transport = transport
        self.base_url = base_url
        headers: dict[str, str] = {"Accept": "application/json"}
        params: dict[str, str] = {}
        if transport == "appgregator":
            if not appgregator_name or not appgregator_connection_name:
                raise ConfigurationError(
                    "the Appgregator transport needs sources.stripe.appgregator_name and"
                    " sources.stripe.appgregator_connection_name"
                )
            headers["x-api-key"] = api_key
            params = {"name": appgregator_name, "connection_name": appgregator_connection_name}
        elif transport == "stripe":
            headers["Authorization"] = f"Bearer {api_key}"
            headers["Stripe-Version"] = api_version
            if account:
                headers["Stripe-Account"] = account
        else:
            raise ConfigurationError(
                f"sources.stripe.transport must be 'stripe' or 'appgregator', not {transport!r}"
            )
        if requests_per_second is None:
            requests_per_second = (
                settings.LIVE_REQUESTS_PER_SECOND
                if "_live_" in api_key
                else settings.TEST_REQUESTS_PER_SECOND
            )
        retry = retry or RetryPolicy.from_dlt_config()
        self.requests_per_second = requests_per_second or None
        # What builds an equal client in a worker process (no sleep: workers really wait).
        self.rebuild_kwargs: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "api_version": api_version,
            "account": account,
            "transport": transport,
            "appgregator_name": appgregator_name,
            "appgregator_connection_name": appgregator_connection_name,
            "requests_per_second": requests_per_second,
            "max_connections": max_connections,
            "timeout": timeout,
            "retry": retry,
        }
        self.http = ApiClient(
            base_url,
            api="stripe",
            headers=headers,
            params=params,
            retry=retry,
            rate_limiter=rate_limiter or RateLimiter(self.requests_per_second),
            timeout=timeout,
            error_factory=stripe_error,
            max_connections=max_connections,
            sleep=sleep,
        )

    @property
    def request_count(self) -> int:
        """Requests sent so far (retries included)."""
        return self.http.request_count

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def iter_invoice_pages(
        self, window: CreatedWindow, *, page_size: int = settings.MAX_PAGE_SIZE
    ) -> Generator[list[Invoice], None, None]:
        """Pages of invoices created in ``window``, newest first."""
        params: dict[str, Any] = {"limit": min(page_size, settings.MAX_PAGE_SIZE)}
        params.update(window.params())
        for page in self._iter_list("invoices", params):
            outside = [inv["id"] for inv in page if not window.contains(int(inv["created"]))]
            if outside:
                raise PaginationError(
                    f"Stripe list returned invoices outside the requested created window"
                    f" ({outside[0]} and {len(outside) - 1} more): the API or proxy at"
                    f" {self.base_url} ignores created[...] filters; refusing to"
                    " load a partial or duplicated history",
                    api="stripe",
                )
            yield page

    def iter_line_pages(
        self, invoice_id: str, *, starting_after: str | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of an invoice's line items after ``starting_after`` (all of them if None)."""
        params: dict[str, Any] = {"limit": settings.MAX_PAGE_SIZE}
        if starting_after:
            params["starting_after"] = starting_after
        yield from self._iter_list(f"invoices/{invoice_id}/lines", params)

    def complete_lines(self, invoice: Invoice) -> list[dict[str, Any]]:
        """Every line item of ``invoice``: the embedded ones plus all remaining pages."""
        embedded = invoice.get("lines") or {}
        lines: list[dict[str, Any]] = list(embedded.get("data") or [])
        if embedded.get("has_more"):
            after = lines[-1]["id"] if lines else None
            for page in self.iter_line_pages(invoice["id"], starting_after=after):
                lines.extend(page)
        return lines

    def iter_invoice_events(self, created_gte: int) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``invoice.*`` events created at or after ``created_gte``, newest first."""
        params = {
            "limit": settings.MAX_PAGE_SIZE,
            "type": settings.INVOICE_EVENT_TYPE,
            "created[gte]": created_gte,
        }
        yield from self._iter_list("events", params)

    def _iter_list(self, path: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Follow ``starting_after`` through a Stripe list; refuse a list that repeats itself."""
        seen_cursors: set[str] = set()
        starting_after: str | None = params.pop("starting_after", None)
        while True:
            query = dict(params)
            if starting_after:
                query["starting_after"] = starting_after
            body = self.http.get_json(path, params=query)
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise PaginationError(
                    redact(f"Stripe list {path} answered without a data list: {str(body)[:200]}"),
                    api="stripe",
                )
            data: list[dict[str, Any]] = body["data"]
            if data:
                yield data
            if not body.get("has_more"):
                return
            if not data:
                raise PaginationError(
                    f"Stripe list {path} sent an empty page with has_more=true after"
                    f" {starting_after!r}; stopping rather than looping",
                    api="stripe",
                )
            next_cursor = data[-1]["id"]
            if next_cursor in seen_cursors or next_cursor == starting_after:
                raise PaginationError(
                    f"Stripe list {path} returned the same page twice (cursor {next_cursor}):"
                    " the API or proxy ignores starting_after; refusing to loop",
                    api="stripe",
                )
            seen_cursors.add(next_cursor)
            starting_after = next_cursor
