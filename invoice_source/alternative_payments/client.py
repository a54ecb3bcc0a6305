"""Typed HTTP client of the Alternative Payments Invoices API, built on :class:`ApiClient`.

Lists invoices with the API's cursor pagination (``after`` <- ``end_cursor`` until
``has_next_page`` is false) and its server-side filters, and covers the other invoice endpoints
(create, get, archive, restore, payment link, PDF link). Error bodies (``HttpError``: ``code``,
``message``, ``validation_errors``) become exceptions that subclass the project's error classes.
Money is decoded as exact ``Decimal`` (``decimal_json=True``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, TypedDict, cast
from urllib.parse import quote, urlsplit

import httpx

from invoice_source import money
from invoice_source.alternative_payments import settings
from invoice_source.alternative_payments.auth import ClientCredentialsAuth
from invoice_source.errors import (
    ApiError,
    ApiUnavailableError,
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    PaginationError,
)
from invoice_source.http import (
    RETRYABLE_STATUSES,
    ApiClient,
    RateLimiter,
    RetryPolicy,
    Sleep,
    describe_request,
)
from invoice_source.redaction import redact, register_secret

API = settings.API_NAME
_CREDENTIAL_KEYS = (
    f"{settings.CONFIG_SECTION}.client_id and {settings.CONFIG_SECTION}.client_secret"
    " (env SOURCES__ALTERNATIVE_PAYMENTS__CLIENT_ID / __CLIENT_SECRET)"
)


class LineItemPayload(TypedDict, total=False):
    """A line item as the API sends it (``amount`` in major units)."""

    amount: Decimal | int
    description: str | None
    quantity: int | None


class Invoice(TypedDict, total=False):
    """An invoice as the API sends it; amounts are exact ``Decimal`` (or ``int`` when whole)."""

    id: str
    invoice_number: str | None
    customer_id: str | None
    currency: str | None
    status: str | None
    created_at: str | None
    due_date: str | None
    last_notification_at: str | None
    memo: str | None
    sub_total: Decimal | int | None
    total: Decimal | int | None
    line_items: list[LineItemPayload]


@dataclass(frozen=True)
class LineItem:
    """A line of an invoice to create: unit ``amount`` in major units, times ``quantity``."""

    amount: Decimal
    description: str
    quantity: int = 1


@dataclass(frozen=True)
class InvoiceFilters:
    """The server-side filters of ``GET /invoices``; ``None`` leaves a filter out.

    Date-times are sent as RFC3339 in UTC; naive values are taken as UTC."""

    created_at_start: datetime | None = None
    created_at_end: datetime | None = None
    due_date_start: datetime | None = None
    due_date_end: datetime | None = None
    customer_id: str | None = None
    invoice_number: str | None = None
    status: str | None = None

    def to_params(self) -> dict[str, str]:
        """Query parameters for these filters."""
        params: dict[str, str] = {}
        for name in ("created_at_start", "created_at_end", "due_date_start", "due_date_end"):
            value = getattr(self, name)
            if value is not None:
                params[name] = to_rfc3339(value)
        for name in ("customer_id", "invoice_number", "status"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        return params


@dataclass
class InvoicePage:
    """One page of ``GET /invoices``."""

    invoices: list[Invoice]
    start_cursor: str | None
    end_cursor: str | None
    has_next_page: bool
    has_previous_page: bool
    params: dict[str, str] = field(default_factory=dict)


class AlternativePaymentsError(ApiError):
    """An error answered by the Alternative Payments API, with its ``HttpError`` fields."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        api: str = API,
        validation_errors: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, code=code, api=api)
        self.validation_errors: dict[str, str] = dict(validation_errors or {})


class AlternativePaymentsAuthenticationError(AlternativePaymentsError, AuthenticationError):
    """401 (missing, unknown or expired token) or 403 (bad credentials, missing scope)."""


class AlternativePaymentsNotFoundError(AlternativePaymentsError, NotFoundError):
    """404: no such invoice (or route)."""


class AlternativePaymentsValidationError(AlternativePaymentsError, InvalidRequestError):
    """400 or 422: the request was refused; ``validation_errors`` maps field -> problem."""


class AlternativePaymentsUnavailableError(AlternativePaymentsError, ApiUnavailableError):
    """5xx or 429 after every retry."""


def _error_class(status: int) -> type[AlternativePaymentsError]:
    if status in (401, 403):
        return AlternativePaymentsAuthenticationError
    if status == 404:
        return AlternativePaymentsNotFoundError
    if status in (400, 409, 422):
        return AlternativePaymentsValidationError
    if status in RETRYABLE_STATUSES or status >= 500:
        return AlternativePaymentsUnavailableError
    return AlternativePaymentsError


def parse_http_error(response: httpx.Response) -> tuple[str | None, str | None, dict[str, str]]:
    """``code``, ``message`` and ``validation_errors`` of an ``HttpError`` body (what is there)."""
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip()[:200] if response.content else ""
        return None, text or None, {}
    code = body.get("code")
    message = body.get("message") or body.get("error_description") or body.get("error")
    raw_errors = body.get("validation_errors")
    validation_errors: dict[str, str] = {}
    if isinstance(raw_errors, dict):
        validation_errors = {str(key): str(value) for key, value in raw_errors.items()}
    elif isinstance(raw_errors, list):
        validation_errors = {str(index): str(value) for index, value in enumerate(raw_errors)}
    return (
        str(code) if code is not None else None,
        str(message) if message is not None else None,
        validation_errors,
    )


def api_error(response: httpx.Response) -> AlternativePaymentsError:
    """The exception for an error answer of the invoices endpoints."""
    status = response.status_code
    code, message, validation_errors = parse_http_error(response)
    text = f"Alternative Payments API answered {status}"
    if code:
        text += f" {code}"
    text += f" for {describe_request(response.request)}"
    if message:
        text += f": {message}"
    if validation_errors:
        details = "; ".join(f"{key}: {value}" for key, value in sorted(validation_errors.items()))
        text += f" ({details})"
    if status == 401:
        text += f". The access token was refused after a refresh; check {_CREDENTIAL_KEYS}"
    elif status == 403:
        text += (
            f". The token lacks a scope this call needs; set {settings.CONFIG_SECTION}.scopes"
            " (e.g. 'read write') or leave it empty to get every scope the client may have"
        )
    cls = _error_class(status)
    return cls(
        redact(text),
        status_code=status,
        code=code,
        api=API,
        validation_errors={key: redact(value) for key, value in validation_errors.items()},
    )


def token_error(response: httpx.Response) -> AlternativePaymentsError:
    """The exception for a refused token request: it names the settings to fix."""
    status = response.status_code
    code, message, _ = parse_http_error(response)
    detail = f"{status} {code}" if code else str(status)
    if message:
        detail += f": {message}"
    if status in (400, 401, 403):
        text = (
            f"Alternative Payments refused the client credentials ({detail}); check"
            f" {_CREDENTIAL_KEYS}, {settings.CONFIG_SECTION}.scopes, and that"
            f" {settings.CONFIG_SECTION}.base_url is the environment the client belongs to"
            " (demo and production credentials do not cross)"
        )
        return AlternativePaymentsAuthenticationError(
            redact(text), status_code=status, code=code, api=API
        )
    text = f"Alternative Payments token endpoint answered {detail}"
    return _error_class(status)(redact(text), status_code=status, code=code, api=API)


def to_utc(value: datetime | date | str) -> datetime:
    """A date, datetime or ISO/RFC3339 string as an aware UTC datetime (naive means UTC)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty date")
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        value = datetime.fromisoformat(text)
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def to_rfc3339(value: datetime | date | str) -> str:
    """RFC3339 in UTC with a ``Z``: ``2025-01-31T00:00:00Z`` (microseconds only when set)."""
    moment = to_utc(value)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def json_amount(amount: Decimal | int | str, *, field: str = "amount") -> float | int:
    """``amount`` as a JSON number whose text is exactly the decimal amount.

    httpx encodes JSON with the standard encoder, which has no ``Decimal``; a float is only
    used when its shortest repr is the same decimal number, which is checked (amounts with up
    to 15 significant digits always are), so the number on the wire is exact."""
    value = money.parse_amount(amount, field=field)
    if value is None:
        raise ValueError(f"{field}: an amount is required")
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    if Decimal(repr(as_float)) != value:
        raise ValueError(f"{field}: {amount} has too many digits to send exactly")
    return as_float


def _invoice_path(invoice_id: str, suffix: str = "") -> str:
    if not isinstance(invoice_id, str) or not invoice_id:
        raise ValueError("an invoice id is required")
    return f"invoices/{quote(invoice_id, safe='')}{suffix}"


def _split_token_url(base_url: str, token_url: str | None) -> tuple[str, str]:
    if not token_url:
        return base_url, settings.TOKEN_PATH
    if "://" not in token_url:
        return base_url, token_url.lstrip("/")
    head, _, last = token_url.rstrip("/").rpartition("/")
    return head, last


class AlternativePaymentsClient:
    """The Alternative Payments Invoices API: OAuth2 client credentials, retries honouring
    ``Retry-After``, a rate limiter (default below the API's 5 requests per second) shared with
    the token requests, request counting, exact money and typed errors."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        scopes: Sequence[str] = (),
        token_url: str | None = None,
        requests_per_second: float | None = settings.DEFAULT_REQUESTS_PER_SECOND,
        page_size: int = settings.DEFAULT_PAGE_SIZE,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        sleep: Sleep | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        register_secret(client_secret)
        retry = retry or RetryPolicy.from_dlt_config()
        check_settings(base_url, client_id, client_secret, page_size)
        self.page_size = page_size
        limiter = RateLimiter(requests_per_second or None, sleep=sleep)
        token_base, token_path = _split_token_url(base_url, token_url)
        self._token_api = ApiClient(
            token_base,
            api=API,
            retry=retry,
            rate_limiter=limiter,
            timeout=timeout,
            error_factory=token_error,
            sleep=sleep,
            transport=transport,
        )
        self.auth = ClientCredentialsAuth(
            token_client=self._token_api,
            token_path=token_path,
            client_id=client_id,
            client_secret=client_secret,
            scopes=tuple(scopes),
            clock=clock,
        )
        self._api = ApiClient(
            base_url,
            api=API,
            headers={"Accept": "application/json"},
            auth=self.auth,
            retry=retry,
            rate_limiter=limiter,
            timeout=timeout,
            error_factory=api_error,
            sleep=sleep,
            transport=transport,
            decimal_json=True,
        )

    @property
    def rate_limiter(self) -> RateLimiter:
        """The limiter shared by API and token requests."""
        return self._api.rate_limiter

    @property
    def request_count(self) -> int:
        """Requests sent so far, token requests and retries included."""
        return self._api.request_count + self._token_api.request_count

    @property
    def retry_count(self) -> int:
        """Retries made so far."""
        return self._api.retry_count + self._token_api.retry_count

    def close(self) -> None:
        """Close both connection pools."""
        self._api.close()
        self._token_api.close()

    def __enter__(self) -> AlternativePaymentsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_invoices(
        self,
        filters: InvoiceFilters | None = None,
        *,
        limit: int | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> InvoicePage:
        """One page of ``GET /invoices``."""
        params = (filters or InvoiceFilters()).to_params()
        params["limit"] = str(limit or self.page_size)
        if after:
            params["after"] = after
        if before:
            params["before"] = before
        body = self._api.get_json("invoices", params=params)
        if not isinstance(body, dict) or not isinstance(body.get("data", []), list):
            raise PaginationError(
                "Alternative Payments GET /invoices answered without a 'data' list",
                api=API,
            )
        invoices = [item for item in body.get("data") or [] if isinstance(item, dict)]
        return InvoicePage(
            invoices=cast(list[Invoice], invoices),
            start_cursor=_optional_str(body.get("start_cursor")),
            end_cursor=_optional_str(body.get("end_cursor")),
            has_next_page=bool(body.get("has_next_page")),
            has_previous_page=bool(body.get("has_previous_page")),
            params={key: value for key, value in params.items() if key not in ("after", "before")},
        )

    def iter_invoice_pages(
        self, filters: InvoiceFilters | None = None, *, page_size: int | None = None
    ) -> Iterator[InvoicePage]:
        """Every page for ``filters``, following ``end_cursor`` until ``has_next_page`` is false.

        Raises :class:`PaginationError` when the API repeats a cursor or promises a next page
        without a cursor, rather than looping or stopping early."""
        seen: set[str] = set()
        after: str | None = None
        while True:
            page = self.list_invoices(filters, limit=page_size, after=after)
            yield page
            if not page.has_next_page:
                return
            if not page.end_cursor:
                raise PaginationError(
                    "Alternative Payments said has_next_page but sent no end_cursor"
                    f" (filters {page.params}); stopping rather than loading a partial list",
                    api=API,
                )
            if page.end_cursor in seen:
                raise PaginationError(
                    "Alternative Payments sent the same end_cursor twice"
                    f" (filters {page.params}); stopping rather than looping",
                    api=API,
                )
            seen.add(page.end_cursor)
            after = page.end_cursor

    def iter_invoices(
        self, filters: InvoiceFilters | None = None, *, page_size: int | None = None
    ) -> Iterator[Invoice]:
        """Every invoice for ``filters``, across pages."""
        for page in self.iter_invoice_pages(filters, page_size=page_size):
            yield from page.invoices

    def get_invoice(self, invoice_id: str) -> Invoice:
        """``GET /invoices/{id}``; an archived invoice comes back with its archived status."""
        return self._invoice("GET", _invoice_path(invoice_id))

    def create_invoice(
        self,
        *,
        customer_id: str,
        line_items: Sequence[LineItem],
        due_date: date | str | None = None,
        currency: str = "USD",
        exclude_from_autopay: bool | None = None,
    ) -> Invoice:
        """``POST /invoices`` with line items; returns the created invoice (201)."""
        body: dict[str, Any] = {
            "customer_id": customer_id,
            "currency": currency,
            "line_items": [
                {
                    "amount": json_amount(item.amount, field=f"line_items[{index}].amount"),
                    "description": item.description,
                    "quantity": item.quantity,
                }
                for index, item in enumerate(line_items)
            ],
        }
        if due_date is not None:
            body["due_date"] = due_date.isoformat() if isinstance(due_date, date) else due_date
        if exclude_from_autopay is not None:
            body["exclude_from_autopay"] = exclude_from_autopay
        return self._invoice("POST", "invoices", json=body)

    def archive_invoice(self, invoice_id: str) -> Invoice:
        """``DELETE /invoices/{id}``: archives the invoice and returns it."""
        return self._invoice("DELETE", _invoice_path(invoice_id))

    def restore_invoice(self, invoice_id: str) -> Invoice:
        """``POST /invoices/{id}/restore``: un-archives the invoice and returns it."""
        return self._invoice("POST", _invoice_path(invoice_id, "/restore"))

    def payment_link(self, invoice_id: str) -> str:
        """``GET /invoices/{id}/payment-link``: the URL where the customer pays."""
        return self._url(_invoice_path(invoice_id, "/payment-link"))

    def pdf_link(self, invoice_id: str) -> str:
        """``GET /invoices/{id}/pdf-link``: a signed, expiring PDF URL (registered as a secret:
        it grants access to the document, so it is masked in logs and errors)."""
        url = self._url(_invoice_path(invoice_id, "/pdf-link"))
        register_secret(urlsplit(url).query)
        return url

    def _invoice(self, method: str, path: str, **kwargs: Any) -> Invoice:
        body = self._api.request_json(method, path, **kwargs)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise ApiError(
                f"Alternative Payments {method} /{path} answered without an invoice", api=API
            )
        return cast(Invoice, body)

    def _url(self, path: str) -> str:
        body = self._api.get_json(path)
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            raise ApiError(f"Alternative Payments GET /{path} answered without a url", api=API)
        return url


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def check_settings(base_url: str, client_id: str, client_secret: str, page_size: int) -> None:
    """Raise :class:`ConfigurationError` naming the key when a setting cannot work."""
    section = settings.CONFIG_SECTION
    parts = urlsplit(base_url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"{section}.base_url must be an http(s) URL such as {settings.PRODUCTION_BASE_URL}"
            f" (got {redact(repr(base_url))})"
        )
    if not client_id:
        raise ConfigurationError(f"{section}.client_id is empty")
    if not client_secret:
        raise ConfigurationError(f"{section}.client_secret is empty")
    if not isinstance(page_size, int) or page_size < 1:
        raise ConfigurationError(f"{section}.page_size must be a positive integer")
