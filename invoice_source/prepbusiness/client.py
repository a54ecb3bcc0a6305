"""HTTP for the PrepBusiness Billing API: invoice and charge lists, and the billing write side.

Built on :class:`invoice_source.http.ApiClient` (retries honouring ``Retry-After``, a rate limiter,
request counting) with JSON decoded as exact ``Decimal`` (``total`` and ``amount`` never pass
through float). Auth is ``Authorization: Bearer <token>``, never the ``api_token`` query parameter
the API also accepts (it would put the secret in URLs and logs). ``merchant_id`` is sent as
``X-Selected-Client-Id`` on every request.

Lists are read page by page with ``page``/``per_page`` built by the client (Laravel's
``next_page_url`` drops every parameter but ``page``, so it is never followed). Three envelopes
are accepted: Laravel's flat paginator (``current_page``, ``data``, ``last_page``...), its
resource collection (``data`` plus ``meta.current_page``/``meta.last_page``) and the older
unpaginated ``{"invoices": [...]}``. A server that ignores ``page`` (a page number that does not
match, or the same rows twice) stops the read with a :class:`PaginationError` rather than a loop.

Errors come as Laravel bodies (``{"message", "errors"?}``) and map to ``invoice_source.errors``
classes; the write methods narrow them further (:class:`InvoiceAlreadyFinalizedError`,
:class:`InvoiceNotFinalizedError`, :class:`InvoiceAlreadyPaidError`,
:class:`InvoiceNotFoundError`, :class:`NoChargesToInvoiceError`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import httpx
import orjson

from invoice_source.errors import (
    ApiError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    PaginationError,
)
from invoice_source.http import ApiClient, RateLimiter, RetryPolicy, Sleep, error_for_status
from invoice_source.money import parse_amount
from invoice_source.prepbusiness import settings
from invoice_source.redaction import redact, register_secret

logger = logging.getLogger("invoice_source.prepbusiness")

API = "prepbusiness"
TOKEN_HINT = "Check sources.prepbusiness.token (env SOURCES__PREPBUSINESS__TOKEN)."
MERCHANT_HINT = (
    "Check sources.prepbusiness.merchant_id (env SOURCES__PREPBUSINESS__MERCHANT_ID, sent as"
    " X-Selected-Client-Id): a merchant's token needs its own merchant id, and creating invoices"
    " from uninvoiced charges or quick adjustments needs one."
)
BASE_URL_HINT = (
    "Check sources.prepbusiness.base_url (env SOURCES__PREPBUSINESS__BASE_URL); it ends in /api,"
    " e.g. https://YOUR_DOMAIN/api."
)


# ---------------------------------------------------------------------- errors
class PrepBusinessValidationError(InvalidRequestError):
    """The API refused a request body or parameter (422 with an ``errors`` map)."""

    def __init__(self, message: str, *, errors: dict[str, list[str]], status_code: int) -> None:
        super().__init__(message, status_code=status_code, code="validation", api=API)
        self.errors = errors


class InvoiceNotFoundError(NotFoundError):
    """No invoice with that id is visible to this token (and merchant)."""


class ChargeNotFoundError(NotFoundError):
    """No charge with that id is visible to this token (and merchant)."""


class InvoiceStateError(InvalidRequestError):
    """The invoice's state does not allow the transition asked for (422)."""


class InvoiceAlreadyFinalizedError(InvoiceStateError):
    """Finalize was asked for an invoice that is no longer a draft."""


class InvoiceNotFinalizedError(InvoiceStateError):
    """Collect was asked for a draft: it must be finalized first."""


class InvoiceAlreadyPaidError(InvoiceStateError):
    """Collect was asked for an invoice that is already paid."""


class NoChargesToInvoiceError(InvalidRequestError):
    """An invoice was asked for, but the merchant has no uninvoiced charges."""


def _narrow(error: ApiError, cls: type[ApiError], message: str) -> ApiError:
    """``error`` re-raised as ``cls`` with a clearer message (status and code kept)."""
    return cls(redact(message), status_code=error.status_code, code=error.code, api=API)


def _laravel_body(response: httpx.Response) -> tuple[str, dict[str, list[str]] | None]:
    """The ``message`` and ``errors`` of a Laravel error body (or the text of any other body)."""
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return " ".join(response.text[:200].split()) or "no message", None
    message = str(body.get("message") or "no message")
    errors = body.get("errors")
    if isinstance(errors, dict):
        return message, {
            str(key): [str(m) for m in (value if isinstance(value, list) else [value])]
            for key, value in errors.items()
        }
    return message, None


def prepbusiness_error(response: httpx.Response) -> ApiError:
    """Build an exception from a Laravel error body, with a hint naming the setting to fix."""
    message, errors = _laravel_body(response)
    request = response.request
    text = (
        f"PrepBusiness API {response.status_code} on {request.method} {request.url.path}: {message}"
    )
    if errors:
        details = "; ".join(f"{key}: {' '.join(values)}" for key, values in errors.items())
        text = f"{text} ({details})"
    status = response.status_code
    if status == 401:
        text = f"{text} {TOKEN_HINT}"
    elif status == 403 or (status == 400 and "x-selected-client-id" in message.lower()):
        text = f"{text} {MERCHANT_HINT}"
    elif (
        status == 404
        and request.method == "GET"
        and request.url.path.rstrip("/").endswith(("/billing/invoices", "/billing/charges"))
    ):
        text = f"{text} {BASE_URL_HINT}"
    if errors is not None and status in (400, 422):
        return PrepBusinessValidationError(redact(text), errors=errors, status_code=status)
    return error_for_status(status, text, api=API)


# ---------------------------------------------------------------------- values
def parse_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime from the API's timestamps.

    Invoices send ``2023-08-09T16:38:19.000000Z``; charges send ``2022-12-21 11:00:16`` (no zone:
    taken as UTC, Laravel's default application timezone).
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not a timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Invoice:
    """A PrepBusiness invoice as the write side returns it; ``raw`` is the API's object."""

    id: int
    status: str | None
    total: Decimal | None
    currency: str | None
    created_at: datetime | None
    merchant_id: str | None
    stripe_invoice_id: str | None
    stripe_invoice_status: str | None
    description: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> Invoice:
        """Parse the API's invoice object (money exact, timestamps UTC)."""
        return cls(
            id=int(raw["id"]),
            status=_text(raw.get("status")),
            total=parse_amount(raw.get("total"), field="total"),
            currency=_text(raw.get("currency")),
            created_at=parse_timestamp(raw.get("created_at")),
            merchant_id=_text(raw.get("chargee_id")),
            stripe_invoice_id=_text(raw.get("stripe_invoice_id")),
            stripe_invoice_status=_text(raw.get("stripe_invoice_status")),
            description=_text(raw.get("description")),
            raw=raw,
        )

    @property
    def is_draft(self) -> bool:
        """Still a draft (its charges may change)."""
        return (self.status or "").lower() == "draft"

    @property
    def is_paid(self) -> bool:
        """Paid on PrepBusiness's side."""
        return (self.status or "").lower() == "paid"


@dataclass(frozen=True)
class Charge:
    """A billable charge; ``raw`` is the API's object."""

    id: int
    amount: Decimal | None
    currency: str | None
    category: str | None
    description: str | None
    status: str | None
    is_void: bool
    is_invoiced: bool
    created_at: datetime | None
    merchant_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> Charge:
        """Parse the API's charge object."""
        return cls(
            id=int(raw["id"]),
            amount=parse_amount(raw.get("amount"), field="amount"),
            currency=_text(raw.get("currency")),
            category=_text(raw.get("category")),
            description=_text(raw.get("description")),
            status=_text(raw.get("status")),
            is_void=bool(raw.get("is_void")),
            is_invoiced=bool(raw.get("is_invoiced")),
            created_at=parse_timestamp(raw.get("created_at")),
            merchant_id=_text(raw.get("chargee_id")),
            raw=raw,
        )


# ---------------------------------------------------------------------- search (`q`)
def created_on_or_after(day: date) -> str:
    """``created_at$DATE>="YYYY-MM-DD"``."""
    return f'created_at$DATE>="{day.isoformat()}"'


def created_on_or_before(day: date) -> str:
    """``created_at$DATE<="YYYY-MM-DD"``."""
    return f'created_at$DATE<="{day.isoformat()}"'


def id_is(invoice_id: int) -> str:
    """``id:N``."""
    return f"id:{int(invoice_id)}"


def any_of(clauses: Iterable[str]) -> str:
    """Clauses joined by ``OR``."""
    return " OR ".join(clauses)


def all_of(clauses: Iterable[str]) -> str:
    """Clauses joined by ``AND``."""
    return " AND ".join(clauses)


@dataclass(frozen=True)
class IdBatch:
    """One ``q`` reading some ids (and, for the first batch of a run, a created_at clause)."""

    q: str
    ids: tuple[int, ...]


def id_batches(
    ids: Sequence[int],
    *,
    lead_clause: str | None = None,
    max_ids: int = settings.MAX_PAGE_SIZE,
    max_chars: int = settings.MAX_QUERY_CHARS,
) -> list[IdBatch]:
    """Split ``ids`` into ``id:1 OR id:2 ...`` queries of at most ``max_ids`` ids and
    ``max_chars`` characters, so each batch fits one page and one URL.

    ``lead_clause`` (if any) is OR-ed into the first query, which then takes a quarter fewer
    ids: the rows the lead clause matches need room on the same page."""
    batches: list[IdBatch] = []
    clauses: list[str] = [lead_clause] if lead_clause else []
    batch_ids: list[int] = []
    length = len(lead_clause) if lead_clause else 0
    cap = max(1, max_ids - max_ids // 4) if lead_clause else max_ids
    for invoice_id in ids:
        clause = id_is(invoice_id)
        added = len(clause) + (4 if clauses else 0)
        if batch_ids and (len(batch_ids) >= cap or length + added > max_chars):
            batches.append(IdBatch(any_of(clauses), tuple(batch_ids)))
            clauses, batch_ids, length, cap = [], [], 0, max_ids
            added = len(clause)
        clauses.append(clause)
        batch_ids.append(int(invoice_id))
        length += added
    if clauses:
        batches.append(IdBatch(any_of(clauses), tuple(batch_ids)))
    return batches


# ---------------------------------------------------------------------- list envelopes
@dataclass(frozen=True)
class ListPage:
    """One page of a list, whatever envelope it came in."""

    rows: list[dict[str, Any]]
    current_page: int | None
    last_page: int | None
    envelope: str

    @property
    def has_more(self) -> bool:
        """Whether a later page exists."""
        if self.current_page is None or self.last_page is None:
            return False
        return self.current_page < self.last_page


def _int_or_none(value: object) -> int | None:
    try:
        return None if value is None else int(str(value))
    except ValueError:
        return None


def parse_list(body: Any, *, legacy_key: str, path: str) -> ListPage:
    """Read any of the accepted list envelopes (see the module docstring)."""
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        meta = body.get("meta")
        if "current_page" in body:
            source, envelope = body, "paginator"
        elif isinstance(meta, dict) and "current_page" in meta:
            source, envelope = meta, "resource"
        else:
            source, envelope = {}, "data"
        return ListPage(
            rows=_rows(body["data"], path),
            current_page=_int_or_none(source.get("current_page")),
            last_page=_int_or_none(source.get("last_page")),
            envelope=envelope,
        )
    if isinstance(body, dict) and isinstance(body.get(legacy_key), list):
        return ListPage(_rows(body[legacy_key], path), None, None, "legacy")
    if isinstance(body, list):
        return ListPage(_rows(body, path), None, None, "bare")
    keys = sorted(body) if isinstance(body, dict) else type(body).__name__
    raise PaginationError(
        f"PrepBusiness list {path} answered in an unknown envelope (keys: {keys}); expected"
        f' Laravel\'s paginator {{"current_page", "data", ...}} or {{"{legacy_key}": [...]}}',
        api=API,
    )


def _rows(items: list[Any], path: str) -> list[dict[str, Any]]:
    rows = [item for item in items if isinstance(item, dict) and item.get("id") is not None]
    if len(rows) != len(items):
        raise PaginationError(
            f"PrepBusiness list {path} sent {len(items) - len(rows)} item(s) without an id",
            api=API,
        )
    return rows


def _unwrap(body: Any, key: str, what: str) -> dict[str, Any]:
    """The object of a single-object answer: ``{key: {...}}``, ``{"data": {...}}`` or bare."""
    if isinstance(body, dict):
        for candidate in (body.get(key), body.get("data")):
            if isinstance(candidate, dict) and candidate.get("id") is not None:
                return candidate
        if body.get("id") is not None:
            return body
    raise ApiError(f"PrepBusiness answered {what} without the {key} object", api=API)


# ---------------------------------------------------------------------- the client
class PrepBusinessClient:
    """Reads invoices and charges, and creates, finalizes and collects invoices."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        merchant_id: str | int | None = None,
        requests_per_second: float | None = settings.DEFAULT_REQUESTS_PER_SECOND,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not token:
            raise ConfigurationError(
                "PrepBusiness token is missing: set sources.prepbusiness.token"
                " (env SOURCES__PREPBUSINESS__TOKEN)"
            )
        if not base_url:
            raise ConfigurationError(
                "PrepBusiness base URL is missing: set sources.prepbusiness.base_url"
                " (env SOURCES__PREPBUSINESS__BASE_URL), e.g. https://YOUR_DOMAIN/api"
            )
        register_secret(token)
        self.merchant_id = None if merchant_id in (None, "") else str(merchant_id).strip()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if self.merchant_id is not None:
            headers[settings.MERCHANT_HEADER] = self.merchant_id
        self.http = ApiClient(
            base_url,
            api=API,
            headers=headers,
            retry=retry or RetryPolicy.from_dlt_config(),
            rate_limiter=RateLimiter(requests_per_second or None),
            timeout=timeout,
            error_factory=prepbusiness_error,
            sleep=sleep,
            transport=transport,
            decimal_json=True,
        )

    @property
    def request_count(self) -> int:
        """Requests sent so far (retries included)."""
        return self.http.request_count

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> PrepBusinessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads
    def iter_invoice_pages(
        self, q: str | None = None, *, per_page: int = settings.DEFAULT_PAGE_SIZE
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of raw invoice objects matching ``q`` (all of them when ``q`` is None)."""
        yield from self._iter_pages("billing/invoices", "invoices", q, per_page)

    def list_invoices(
        self, q: str | None = None, *, per_page: int = settings.DEFAULT_PAGE_SIZE
    ) -> list[Invoice]:
        """Every invoice matching ``q``."""
        return [
            Invoice.from_api(raw)
            for page in self.iter_invoice_pages(q, per_page=per_page)
            for raw in page
        ]

    def find_invoices(self, ids: Sequence[int]) -> list[Invoice]:
        """The invoices with these ids that exist and are visible, via ``q=id:1 OR id:2 ...``."""
        wanted = {int(i) for i in ids}
        found: dict[int, Invoice] = {}
        for batch in id_batches(sorted(wanted)):
            for page in self.iter_invoice_pages(batch.q, per_page=settings.MAX_PAGE_SIZE):
                for raw in page:
                    invoice = Invoice.from_api(raw)
                    if invoice.id in wanted:
                        found[invoice.id] = invoice
        return [found[i] for i in sorted(found)]

    def get_invoice(self, invoice_id: int) -> Invoice:
        """One invoice (the API has no show endpoint: this is ``q=id:N``)."""
        for invoice in self.find_invoices([invoice_id]):
            return invoice
        raise InvoiceNotFoundError(
            f"PrepBusiness invoice {invoice_id} does not exist or is not visible to this token"
            f"{self._merchant_note()}",
            status_code=404,
            api=API,
        )

    def iter_charge_pages(
        self, q: str | None = None, *, per_page: int = settings.DEFAULT_PAGE_SIZE
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of raw charge objects matching ``q``."""
        yield from self._iter_pages("billing/charges", "charges", q, per_page)

    def list_charges(
        self, q: str | None = None, *, per_page: int = settings.DEFAULT_PAGE_SIZE
    ) -> list[Charge]:
        """Every charge matching ``q`` (fields ``id`` and ``created_at$DATE``)."""
        return [
            Charge.from_api(raw)
            for page in self.iter_charge_pages(q, per_page=per_page)
            for raw in page
        ]

    def get_charge(self, charge_id: int) -> Charge:
        """One charge by id."""
        try:
            body = self.http.get_json(f"billing/charges/{int(charge_id)}")
        except NotFoundError as exc:
            raise _narrow(
                exc,
                ChargeNotFoundError,
                f"PrepBusiness charge {charge_id} does not exist or is not visible to this token"
                f"{self._merchant_note()}",
            ) from None
        return Charge.from_api(_unwrap(body, "charge", f"GET billing/charges/{charge_id}"))

    # ------------------------------------------------------------------ writes
    def create_quick_adjustment(self, amount: Decimal | int | str, description: str) -> Charge:
        """Add a charge (``POST /billing/charges/quick-adjustment``) to the selected merchant.

        ``amount`` is in major units, negative for a credit; it is sent as a decimal string so it
        stays exact."""
        exact = parse_amount(amount, field="amount")
        if exact is None:
            raise ValueError("amount is required")
        body = self.http.request_json(
            "POST",
            "billing/charges/quick-adjustment",
            json={"amount": format(exact, "f"), "description": description},
        )
        return Charge.from_api(_unwrap(body, "charge", "POST billing/charges/quick-adjustment"))

    def create_invoice(self, charge_ids: list[int] | None = None) -> Invoice:
        """A draft invoice of ``charge_ids``, or of every uninvoiced charge of the selected
        merchant when None (an empty list means the same, as in the API's docs).

        Raises :class:`NoChargesToInvoiceError` when there is nothing to invoice and
        :class:`PrepBusinessValidationError` for unknown, void or already invoiced charges."""
        payload = None if charge_ids is None else {"charge_ids": [int(i) for i in charge_ids]}
        try:
            body = self.http.request_json("POST", "billing/invoices", json=payload)
        except PrepBusinessValidationError:
            raise
        except InvalidRequestError as exc:
            if exc.status_code != 422:
                raise
            raise _narrow(
                exc,
                NoChargesToInvoiceError,
                f"PrepBusiness has no uninvoiced charges to invoice{self._merchant_note()}: {exc}",
            ) from None
        return Invoice.from_api(_unwrap(body, "invoice", "POST billing/invoices"))

    def finalize_invoice(self, invoice_id: int) -> Invoice:
        """Lock a draft and queue it for creation on Stripe.

        Raises :class:`InvoiceAlreadyFinalizedError` for an invoice that is not a draft any more
        and :class:`InvoiceNotFoundError` for an unknown id."""
        return self._transition(invoice_id, "finalize")

    def collect_invoice(self, invoice_id: int) -> Invoice:
        """Charge the merchant's card for a finalized invoice (creating it on Stripe first when
        still queued). A declined card is not an exception: the invoice comes back with its
        failed status (the sandbox's ``PaymentFailed``), so check :attr:`Invoice.is_paid`.

        Raises :class:`InvoiceNotFinalizedError` for a draft, :class:`InvoiceAlreadyPaidError`
        for a paid invoice and :class:`InvoiceNotFoundError` for an unknown id."""
        return self._transition(invoice_id, "collect")

    def _transition(self, invoice_id: int, action: str) -> Invoice:
        invoice_id = int(invoice_id)
        path = f"billing/invoices/{invoice_id}/{action}"
        try:
            body = self.http.request_json("POST", path)
        except NotFoundError as exc:
            raise _narrow(
                exc,
                InvoiceNotFoundError,
                f"cannot {action} PrepBusiness invoice {invoice_id}: it does not exist or is not"
                f" visible to this token{self._merchant_note()} ({exc})",
            ) from None
        except PrepBusinessValidationError:
            raise
        except InvalidRequestError as exc:
            if exc.status_code != 422:
                raise
            raise self._state_error(exc, invoice_id, action) from None
        return Invoice.from_api(_unwrap(body, "invoice", f"POST {path}"))

    def _state_error(self, exc: InvalidRequestError, invoice_id: int, action: str) -> ApiError:
        """The precise refused-transition error, from the invoice's current status (one extra
        request: the API's messages are not documented, its statuses are)."""
        try:
            status = (self.get_invoice(invoice_id).status or "").lower()
        except ApiError:
            status = ""
        said = f"the API said: {exc}"
        if action == "finalize" and status and status != "draft":
            return _narrow(
                exc,
                InvoiceAlreadyFinalizedError,
                f"PrepBusiness invoice {invoice_id} is already finalized (status {status!r}):"
                f" only drafts can be finalized; {said}",
            )
        if action == "collect" and status == "draft":
            return _narrow(
                exc,
                InvoiceNotFinalizedError,
                f"PrepBusiness invoice {invoice_id} is a draft: finalize it before collecting"
                f" payment; {said}",
            )
        if action == "collect" and status == "paid":
            return _narrow(
                exc,
                InvoiceAlreadyPaidError,
                f"PrepBusiness invoice {invoice_id} is already paid; {said}",
            )
        return _narrow(
            exc,
            InvoiceStateError,
            f"PrepBusiness refused to {action} invoice {invoice_id}"
            f"{f' (status {status!r})' if status else ''}; {said}",
        )

    def _merchant_note(self) -> str:
        return f" (merchant {self.merchant_id})" if self.merchant_id else ""

    def _iter_pages(
        self, path: str, legacy_key: str, q: str | None, per_page: int
    ) -> Iterator[list[dict[str, Any]]]:
        if not 1 <= per_page <= settings.MAX_PAGE_SIZE:
            raise ConfigurationError(
                f"sources.prepbusiness.page_size must be between 1 and {settings.MAX_PAGE_SIZE},"
                f" not {per_page}"
            )
        page = 1
        previous_ids: list[Any] | None = None
        while True:
            body = self.http.get_json(path, params={"q": q, "page": page, "per_page": per_page})
            listing = parse_list(body, legacy_key=legacy_key, path=path)
            if listing.current_page is not None and listing.current_page != page:
                raise PaginationError(
                    f"PrepBusiness list {path} answered page {listing.current_page} when asked"
                    f" for page {page}: the API ignores the page parameter; refusing to loop",
                    api=API,
                )
            ids = [row["id"] for row in listing.rows]
            if ids and ids == previous_ids:
                raise PaginationError(
                    f"PrepBusiness list {path} returned the same rows for pages {page - 1} and"
                    f" {page}; refusing to loop",
                    api=API,
                )
            if listing.rows:
                yield listing.rows
            if not listing.has_more or not listing.rows:
                return
            previous_ids = ids
            page += 1
