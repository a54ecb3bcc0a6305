"""A stateful fake of the PrepBusiness Billing API (charges and invoices) over real HTTP.

Served under ``/api`` (the API's base URL is ``https://YOUR_DOMAIN/api``):

- ``GET /billing/invoices`` and ``GET /billing/charges``: the ``q`` search filter (below), ``page``
  (1-based, default 1) and ``per_page`` (default 15, at most 100), sorted by ``id`` ascending.
  The envelope is Laravel's flat paginator (``current_page``, ``data``, ``last_page``,
  ``next_page_url``, ``links``, ``total``...). As Laravel does without ``withQueryString()``, the
  page URLs carry only ``page``: a client must build its next request itself. For invoices,
  ``invoice_list_envelope`` switches to the older unpaginated ``{"invoices": [...]}`` ("legacy":
  ``q`` honoured, ``page``/``per_page`` ignored) or to Laravel's resource collection
  ``{data, links, meta}`` ("resource"). ``ignore_page_parameter`` makes every list answer page 1,
  like a misbehaving proxy.
- ``POST /billing/invoices`` (``charge_ids`` optional; omitted or empty gathers every uninvoiced
  charge of the selected merchant), ``POST /billing/invoices/{id}/finalize``,
  ``POST /billing/invoices/{id}/collect``, ``GET /billing/charges/{id}`` and
  ``POST /billing/charges/quick-adjustment`` (``{amount, description}``).

Search (``q``): clauses ``field[$MODIFIER]<op>value`` joined by ``AND`` / ``OR`` (``AND`` binds
tighter; no parentheses). Fields: ``id`` (integer; ``:``, ``>``, ``>=``, ``<``, ``<=``),
``stripe_invoice_id`` (invoices only; ``:``), ``created_at`` (needs ``$DATE``; the same five
operators; value ``YYYY-MM-DD``, quoted or not; compared with the UTC day). Anything else is a 422
with ``errors.q``. A ``q`` longer than 4,000 characters answers 414, as a web server in front of
the API would for a long request line.

Auth: ``Authorization: Bearer <token>`` (or the ``api_token`` query parameter the real API also
accepts). ``tokens`` maps each token to a merchant id, or to ``None`` for the service provider
(the prep center), whose token sees every merchant unless ``X-Selected-Client-Id`` selects one. A
merchant's token must send its own id in that header (400 without it, 403 with another one).
Unknown tokens get 401 ``{"message": "Unauthenticated."}``; unknown or invisible ids 404
``{"message": "No query results for model [...] 7"}``; refused transitions 422 ``{"message"}``;
validation failures 422 ``{"message", "errors": {field: [..]}}``; a body that is not JSON 400.

Invoice statuses modelled: ``Draft`` → (finalize) ``Finalized`` → (collect) ``Paid`` or
``PaymentFailed`` (a failed invoice may be collected again). ``stripe_invoice_id`` and
``stripe_invoice_status`` stay null while a finalized invoice is queued for Stripe; the queue is
worked by :meth:`PrepBusinessApp.process_stripe_queue` (``seed_invoices`` and ``demo_changes``
call it; tests call it when they want the "created on Stripe" step), or at once when
``push_to_stripe_on_finalize`` is set. Collecting an invoice that is still queued creates and
finalizes it on Stripe first, then charges the merchant's card: ``Paid`` (and the Stripe invoice
paid) or, for a merchant whose card declines, ``PaymentFailed`` (the Stripe invoice stays open).
What Stripe's webhooks would tell PrepBusiness is applied before every request
(:meth:`PrepBusinessApp.apply_stripe_updates`): ``stripe_invoice_status`` follows the Stripe
invoice, and an invoice paid on Stripe becomes ``Paid``.

Deliberate mismatches for the reconciliation reports (``deliberate_mismatches``, seeded when
``seed_invoices`` makes at least six invoices):

- ``finalized_never_pushed``: finalized, but stuck in the Stripe queue (no ``stripe_invoice_id``).
- ``stripe_total_differs``: on Stripe with a total 5.00 higher than PrepBusiness's (both paid).
- ``paid_here_open_on_stripe``: ``Paid`` (and ``stripe_invoice_status`` "paid") on PrepBusiness,
  while the Stripe invoice is still open.

Every other finalized invoice is on Stripe with the same total (in minor units), the customer
``cus_prepbiz_<merchant id>`` and metadata ``prepbusiness_invoice_id`` /
``prepbusiness_merchant_id``; every ``Paid`` one is paid there too.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import orjson

from invoice_source import money
from invoice_source.sandbox.links import StripeLink
from invoice_source.sandbox.server import App, Request, Response

DRAFT = "Draft"
FINALIZED = "Finalized"
PAID = "Paid"
PAYMENT_FAILED = "PaymentFailed"
INVOICE_STATUSES = (DRAFT, FINALIZED, PAID, PAYMENT_FAILED)

SERVICE_PROVIDER_TOKEN = "pb_sandbox_provider_token_7d41c9e2"
MERCHANT_HEADER = "x-selected-client-id"
PREP_CENTER_ID = "1"
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 15
MAX_QUERY_LENGTH = 4000
SEED_HISTORY_DAYS = 540
# Older seeded invoices are settled (paid, a few failed); newer ones are in every state.
RECENT_DAYS = 60
INVOICE_MODEL = "App\\Models\\Billing\\Invoice"
CHARGE_MODEL = "App\\Models\\Billing\\Charge"

CHARGE_CATEGORIES = (
    ("InboundShipment", "Inbound shipment receiving"),
    ("OutboundShipment", "Outbound shipment to FBA"),
    ("FbaPrep", "FBA prep and polybagging"),
    ("Labeling", "FNSKU labeling"),
    ("Storage", "Monthly pallet storage"),
    ("Bundling", "Bundle assembly"),
)
MISMATCH_NEVER_PUSHED = "finalized_never_pushed"
MISMATCH_TOTAL_DIFFERS = "stripe_total_differs"
MISMATCH_PAID_ONE_SIDE = "paid_here_open_on_stripe"
STRIPE_TOTAL_OFFSET_MINOR = 500
LIST_CACHE_SIZE = 64
"""Distinct list queries whose matching records are kept until the next change."""


class ObservedRecord:
    """A record that tells its sandbox whenever one of its fields is assigned, so the sandbox's
    list caches stay exact however the record is changed (fields are assigned, never mutated in
    place)."""

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        observer = self.__dict__.get("_observer")
        if observer is not None:
            observer(self)

    def observe(self, observer: Callable[[Any], None]) -> None:
        """Call ``observer(record)`` after every later assignment to a field."""
        object.__setattr__(self, "_observer", observer)


@dataclass
class SandboxMerchant:
    """A merchant (a "team") the prep center bills."""

    id: int
    name: str
    currency: str
    card_declines: bool = False

    @property
    def stripe_customer(self) -> str:
        """The merchant's customer id on Stripe."""
        return f"cus_prepbiz_{self.id}"


DEFAULT_MERCHANTS = (
    SandboxMerchant(11, "Acme Outdoor", "USD"),
    SandboxMerchant(12, "Brightside Pets", "USD"),
    SandboxMerchant(13, "Cedar & Pine Home", "CAD"),
    SandboxMerchant(14, "Dune Supply Co", "USD", card_declines=True),
)


def default_tokens() -> dict[str, str | None]:
    """The service provider's token (all merchants) and one token per default merchant."""
    tokens: dict[str, str | None] = {SERVICE_PROVIDER_TOKEN: None}
    for merchant in DEFAULT_MERCHANTS:
        tokens[f"pb_sandbox_merchant_{merchant.id}_token_3f8a"] = str(merchant.id)
    return tokens


@dataclass
class SandboxCharge(ObservedRecord):
    """One billable charge."""

    id: int
    merchant_id: int
    created_at: datetime
    category: str
    description: str
    currency: str
    amount: Decimal
    is_void: bool = False
    invoice_id: int | None = None


@dataclass
class SandboxInvoice(ObservedRecord):
    """One invoice and what the sandbox needs to remember about its life on Stripe."""

    id: int
    merchant_id: int
    created_at: datetime
    currency: str
    description: str
    charge_ids: list[int]
    total: Decimal
    status: str = DRAFT
    stripe_invoice_id: str | None = None
    stripe_invoice_status: str | None = None
    held_from_stripe: bool = False
    stripe_amount_offset: int = 0


class LaravelError(Exception):
    """Raised by handlers; rendered as a Laravel error body."""

    def __init__(
        self, status: int, message: str, errors: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def validation_error(errors: dict[str, list[str]]) -> LaravelError:
    """A 422 with Laravel's message: the first error plus "(and N more errors)"."""
    messages = [message for field_messages in errors.values() for message in field_messages]
    message = messages[0]
    if len(messages) > 1:
        more = len(messages) - 1
        message += f" (and {more} more error{'s' if more > 1 else ''})"
    return LaravelError(422, message, errors)


class OfflineStripe:
    """A minimal in-memory Stripe for a PrepBusiness sandbox running without the Stripe one."""

    def __init__(self) -> None:
        self.invoices: dict[str, dict[str, Any]] = {}
        self.changes = 0
        """Invoices created or paid through this object so far."""
        self._numbers = itertools.count(1)

    def create_external_invoice(
        self,
        *,
        customer: str,
        currency: str,
        lines: list[dict[str, object]],
        metadata: dict[str, str],
        finalize: bool = True,
    ) -> str:
        """Record an invoice and return an ``in_...`` id."""
        invoice_id = f"in_offline{next(self._numbers):08d}"
        self.invoices[invoice_id] = {
            "customer": customer,
            "currency": currency,
            "total": sum(int(str(line["amount"])) for line in lines),
            "metadata": dict(metadata),
            "status": "open" if finalize else "draft",
        }
        self.changes += 1
        return invoice_id

    def pay_invoice(self, invoice_id: str) -> None:
        """open -> paid."""
        invoice = self.invoices[invoice_id]
        if invoice["status"] != "open":
            raise ValueError(f"invoice {invoice_id} is {invoice['status']}, not open")
        invoice["status"] = "paid"
        self.changes += 1

    def invoice_status(self, invoice_id: str) -> str:
        """The recorded status."""
        return str(self.invoices[invoice_id]["status"])


# ---------------------------------------------------------------------- search (`q`)
@dataclass(frozen=True)
class Clause:
    """One ``field[$MODIFIER]<op>value`` clause of a ``q`` filter."""

    field: str
    op: str
    value: int | str | date

    def matches(self, actual: Any) -> bool:
        """Whether a record's value of ``field`` satisfies the clause."""
        if actual is None:
            return False
        if isinstance(actual, datetime):
            actual = actual.astimezone(timezone.utc).date()
        if self.op == ":":
            return bool(actual == self.value)
        if self.op == ">":
            return bool(actual > self.value)
        if self.op == ">=":
            return bool(actual >= self.value)
        if self.op == "<":
            return bool(actual < self.value)
        return bool(actual <= self.value)


@dataclass(frozen=True)
class SearchQuery:
    """A parsed ``q``: OR of AND-groups of clauses."""

    groups: tuple[tuple[Clause, ...], ...]

    def matches(self, value_of: Callable[[str], Any]) -> bool:
        """Whether the record whose fields ``value_of`` reads matches."""
        if not self.groups:
            return True
        return any(all(c.matches(value_of(c.field)) for c in group) for group in self.groups)


_CLAUSE = re.compile(
    r'^(?P<field>[A-Za-z_]+)(?:\$(?P<modifier>[A-Za-z]+))?(?P<op>>=|<=|:|>|<)(?P<value>"[^"]*"|[^"]+)$'
)
_COMPARISONS = (":", ">", ">=", "<", "<=")


def _query_error(detail: str) -> LaravelError:
    return validation_error({"q": [f"The q filter is invalid: {detail}"]})


def _split_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    current = ""
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
            current += char
        elif char.isspace() and not quoted:
            if current:
                tokens.append(current)
            current = ""
        else:
            current += char
    if quoted:
        raise _query_error("a quoted value is not closed.")
    if current:
        tokens.append(current)
    return tokens


def parse_search(text: str | None, fields: dict[str, str]) -> SearchQuery:
    """Parse ``q``; ``fields`` maps each searchable field to ``integer``, ``string`` or ``date``.

    Raises a 422 :class:`LaravelError` naming what is wrong.
    """
    if text is None or not text.strip():
        return SearchQuery(())
    tokens = _split_tokens(text)
    groups: list[list[Clause]] = [[]]
    expect_clause = True
    for token in tokens:
        if not expect_clause:
            if token == "AND":
                expect_clause = True
                continue
            if token == "OR":
                groups.append([])
                expect_clause = True
                continue
            raise _query_error(f'expected AND or OR before "{token}".')
        groups[-1].append(_parse_clause(token, fields))
        expect_clause = False
    if expect_clause:
        raise _query_error("it ends with AND or OR.")
    return SearchQuery(tuple(tuple(group) for group in groups))


def _parse_clause(token: str, fields: dict[str, str]) -> Clause:
    match = _CLAUSE.match(token)
    if match is None:
        raise _query_error(f'"{token}" is not a clause like id:5 or created_at$DATE>="2026-01-15".')
    name, modifier, op = match["field"], match["modifier"], match["op"]
    value = match["value"].strip('"')
    kind = fields.get(name)
    if kind is None:
        raise _query_error(f'unknown field "{name}" (searchable: {", ".join(fields)}).')
    if kind == "date":
        if modifier != "DATE":
            raise _query_error(f'{name} needs the $DATE modifier, e.g. {name}$DATE>="2026-01-15".')
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise _query_error(f'{name} takes a date as YYYY-MM-DD, not "{value}".') from None
        if len(value) != 10:
            raise _query_error(f'{name} takes a date as YYYY-MM-DD, not "{value}".')
        return Clause(name, op, day)
    if modifier is not None:
        raise _query_error(f"the ${modifier} modifier does not apply to {name}.")
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", value):
            raise _query_error(f'{name} takes an integer, not "{value}".')
        return Clause(name, op, int(value))
    if op != ":":
        raise _query_error(f"{name} only supports the : operator.")
    return Clause(name, op, value)


INVOICE_SEARCH_FIELDS = {"id": "integer", "stripe_invoice_id": "string", "created_at": "date"}
CHARGE_SEARCH_FIELDS = {"id": "integer", "created_at": "date"}

Record = TypeVar("Record", "SandboxInvoice", "SandboxCharge")


def _group_matches(group: tuple[Clause, ...], record: object) -> bool:
    return all(clause.matches(getattr(record, clause.field)) for clause in group)


def matching_ids(records: Mapping[int, Any], search: SearchQuery) -> list[int]:
    """Ids of the records ``search`` matches, ascending. A group holding an ``id:`` clause can
    only match that one record, so it is checked on it alone; the other groups scan them all."""
    if not search.groups:
        return sorted(records)
    found: set[int] = set()
    scanned: list[tuple[Clause, ...]] = []
    for group in search.groups:
        pinned = next((c.value for c in group if c.field == "id" and c.op == ":"), None)
        if not isinstance(pinned, int):
            scanned.append(group)
            continue
        record = records.get(pinned)
        if record is not None and _group_matches(group, record):
            found.add(pinned)
    if scanned:
        found.update(
            key
            for key, record in records.items()
            if key not in found and any(_group_matches(group, record) for group in scanned)
        )
    return sorted(found)


# ---------------------------------------------------------------------- JSON with exact decimals
_DECIMAL_MARK = "__sandbox_decimal__:"
_DECIMAL_NUMBER = re.compile(r"-?[0-9.]+")


def _decimal_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _exact_decimal(value: Any) -> Any:
    """orjson's ``default``: a ``Decimal`` as an exact JSON number (a non-finite one as text)."""
    if isinstance(value, Decimal):
        text = _decimal_text(value)
        if _DECIMAL_NUMBER.fullmatch(text):
            return orjson.Fragment(text)
        return f"{_DECIMAL_MARK}{text}"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_exact(payload: Any) -> bytes:
    """JSON with ``Decimal`` values written as exact JSON numbers (``576.3``), as PHP does."""
    return orjson.dumps(payload, default=_exact_decimal)


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON response whose decimals are exact numbers."""
    return Response(status, dumps_exact(payload), {"Content-Type": "application/json"})


def format_invoice_timestamp(value: datetime) -> str:
    """``2023-08-09T16:38:19.000000Z``, as Laravel serialises ``created_at``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_charge_timestamp(value: datetime) -> str:
    """``2022-12-21 11:00:16``: charges carry no ``T`` and no zone."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Scope:
    """Who is asking: the token's merchant (None: service provider) and the selected merchant."""

    token_merchant: int | None
    merchant: int | None

    def sees(self, merchant_id: int) -> bool:
        """Whether records of ``merchant_id`` are visible."""
        return self.merchant is None or self.merchant == merchant_id


_LARAVEL_STATUS_MESSAGES = {
    401: "Unauthenticated.",
    403: "This action is unauthorized.",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Attempts.",
    500: "Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class PrepBusinessApp(App):
    """The PrepBusiness Billing sandbox: merchants, charges, invoices and the HTTP routes."""

    name = "prepbusiness"

    def __init__(
        self,
        *,
        seed: int = 7,
        stripe: StripeLink | None = None,
        tokens: dict[str, str | None] | None = None,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.stripe: StripeLink = stripe if stripe is not None else OfflineStripe()
        self.tokens: dict[str, str | None] = (
            dict(tokens) if tokens is not None else default_tokens()
        )
        self.merchants: dict[int, SandboxMerchant] = {
            m.id: SandboxMerchant(m.id, m.name, m.currency, m.card_declines)
            for m in DEFAULT_MERCHANTS
        }
        self.invoices: dict[int, SandboxInvoice] = {}
        self.charges: dict[int, SandboxCharge] = {}
        self.deliberate_mismatches: dict[str, int] = {}
        self.invoice_list_envelope = "paginator"
        self.push_to_stripe_on_finalize = False
        self.ignore_page_parameter = False
        self._clock_offset = timedelta()
        self._state = threading.RLock()
        self._next_invoice = itertools.count(1)
        self._next_charge = itertools.count(1)
        self._version = 0
        self._list_cache: dict[tuple[Any, ...], list[Any]] = {}
        self._list_cache_stamp: tuple[int, int, int] | None = None
        self._stripe_unchecked: set[int] = set()
        self._stripe_checkpoint: tuple[int, int, int, int | None] | None = None
        self._add_routes()

    # ------------------------------------------------------------------ clock, tokens, env
    def now(self) -> datetime:
        """The sandbox's current time (UTC, whole seconds as Laravel stores them)."""
        current = datetime.now(timezone.utc) + self._clock_offset
        return current.replace(microsecond=0)

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox's now forward (new records are created later)."""
        self._clock_offset += timedelta(seconds=seconds)

    @property
    def service_provider_token(self) -> str:
        """A token that sees every merchant."""
        for token, merchant in self.tokens.items():
            if merchant is None:
                return token
        raise LookupError("no service-provider token configured")

    def merchant_token(self, merchant_id: int) -> str:
        """The token of one merchant."""
        for token, merchant in self.tokens.items():
            if merchant == str(merchant_id):
                return token
        raise LookupError(f"no token for merchant {merchant_id}")

    def env(self, base_url: str) -> dict[str, str]:
        """Env vars pointing the PrepBusiness source at this sandbox (service-provider token).

        The sandbox has no throttle, so the client-side rate limit is switched off."""
        return {
            "SOURCES__PREPBUSINESS__BASE_URL": f"{base_url}/api",
            "SOURCES__PREPBUSINESS__TOKEN": self.service_provider_token,
            "SOURCES__PREPBUSINESS__REQUESTS_PER_SECOND": "0",
        }

    # ------------------------------------------------------------------ state: reads
    def invoice(self, invoice_id: int) -> dict[str, Any]:
        """An invoice as the API renders it (KeyError when unknown)."""
        with self._state:
            return self._render_invoice(self.invoices[invoice_id])

    def invoice_ids(
        self, *, merchant_id: int | None = None, status: str | None = None
    ) -> list[int]:
        """Invoice ids, ascending, optionally of one merchant and/or one status."""
        with self._state:
            return [
                inv.id
                for inv in sorted(self.invoices.values(), key=lambda i: i.id)
                if (merchant_id is None or inv.merchant_id == merchant_id)
                and (status is None or inv.status == status)
            ]

    def count(self, merchant_id: int | None = None) -> int:
        """Number of invoices (of one merchant)."""
        return len(self.invoice_ids(merchant_id=merchant_id))

    def uninvoiced_charge_ids(self, merchant_id: int) -> list[int]:
        """Charges of a merchant that the next invoice would gather."""
        with self._state:
            return [
                c.id
                for c in sorted(self.charges.values(), key=lambda c: c.id)
                if c.merchant_id == merchant_id and c.invoice_id is None and not c.is_void
            ]

    # ------------------------------------------------------------------ state: writes
    def add_charge(
        self,
        merchant_id: int,
        amount: Decimal | str | int,
        *,
        category: str = "Adjustment",
        description: str = "Quick adjustment",
        created_at: datetime | None = None,
        is_void: bool = False,
    ) -> int:
        """Add an uninvoiced charge to a merchant; returns its id."""
        with self._state:
            merchant = self.merchants[merchant_id]
            charge = SandboxCharge(
                id=next(self._next_charge),
                merchant_id=merchant_id,
                created_at=created_at or self.now(),
                category=category,
                description=description,
                currency=merchant.currency,
                amount=Decimal(str(amount)),
                is_void=is_void,
            )
            self.charges[charge.id] = charge
            charge.observe(self._record_changed)
            self._version += 1
            return charge.id

    def create_invoice(
        self,
        merchant_id: int,
        charge_ids: Iterable[int] | None = None,
        *,
        created_at: datetime | None = None,
    ) -> int:
        """A draft invoice of the given charges (default: every uninvoiced one); returns its id."""
        with self._state:
            ids = list(charge_ids) if charge_ids is not None else []
            ids = ids or self.uninvoiced_charge_ids(merchant_id)
            if not ids:
                raise LaravelError(422, "There are no uninvoiced charges to invoice.")
            charges = [self.charges[charge_id] for charge_id in ids]
            merchant = self.merchants[merchant_id]
            invoice = SandboxInvoice(
                id=next(self._next_invoice),
                merchant_id=merchant_id,
                created_at=created_at or self.now(),
                currency=merchant.currency,
                description=f"{merchant.name}: {len(charges)} charge(s)",
                charge_ids=[c.id for c in charges],
                total=sum((c.amount for c in charges), Decimal(0)),
            )
            for charge in charges:
                charge.invoice_id = invoice.id
            self.invoices[invoice.id] = invoice
            invoice.observe(self._invoice_changed)
            self._invoice_changed(invoice)
            return invoice.id

    def finalize(self, invoice_id: int) -> None:
        """Draft -> Finalized, queued for creation on Stripe (422 unless a draft)."""
        with self._state:
            invoice = self.invoices[invoice_id]
            if invoice.status != DRAFT:
                raise LaravelError(
                    422,
                    f"This invoice has already been finalized (status: {invoice.status}).",
                )
            invoice.status = FINALIZED
            if self.push_to_stripe_on_finalize:
                self._push(invoice)

    def collect(self, invoice_id: int) -> None:
        """Charge the merchant's card for a finalized invoice, creating it on Stripe first if
        still queued: Paid, or PaymentFailed when the card declines (422 for drafts and paid)."""
        with self._state:
            invoice = self.invoices[invoice_id]
            if invoice.status == DRAFT:
                raise LaravelError(
                    422, "The invoice must be finalized before payment can be collected."
                )
            if invoice.status == PAID:
                raise LaravelError(422, "This invoice has already been paid.")
            if invoice.stripe_invoice_id is None:
                invoice.held_from_stripe = False
                self._push(invoice)
            assert invoice.stripe_invoice_id is not None
            stripe_status = self.stripe.invoice_status(invoice.stripe_invoice_id)
            if stripe_status not in ("open", "uncollectible", "paid"):
                raise LaravelError(
                    422,
                    f"The Stripe invoice {invoice.stripe_invoice_id} is {stripe_status} and cannot"
                    " be collected.",
                )
            if self.merchants[invoice.merchant_id].card_declines and stripe_status != "paid":
                invoice.status = PAYMENT_FAILED
                invoice.stripe_invoice_status = stripe_status
                return
            if stripe_status != "paid":
                self.stripe.pay_invoice(invoice.stripe_invoice_id)
                stripe_status = self.stripe.invoice_status(invoice.stripe_invoice_id)
            invoice.status = PAID
            invoice.stripe_invoice_status = stripe_status

    def process_stripe_queue(self) -> int:
        """Create every queued finalized invoice on Stripe (except one held back on purpose);
        returns how many were created."""
        with self._state:
            queued = [
                inv
                for inv in sorted(self.invoices.values(), key=lambda i: i.id)
                if inv.status != DRAFT
                and inv.stripe_invoice_id is None
                and not inv.held_from_stripe
            ]
            for invoice in queued:
                self._push(invoice)
            return len(queued)

    def apply_stripe_updates(self) -> int:
        """What Stripe's webhooks tell PrepBusiness: every pushed invoice's Stripe status is
        mirrored in ``stripe_invoice_status``, and one paid on Stripe becomes ``Paid``. The
        deliberately stale ``paid_here_open_on_stripe`` invoice is left alone. Runs before every
        request and at the start of ``demo_changes``; returns how many invoices changed.

        With the built-in :class:`OfflineStripe`, which counts its changes, only the invoices
        assigned to since the last pass are looked at while Stripe has not changed; any other
        link is asked about every pushed invoice each time."""
        changed = 0
        with self._state:
            stale = self.deliberate_mismatches.get(MISMATCH_PAID_ONE_SIDE)
            checkpoint = self._stripe_state(stale)
            if checkpoint is not None and checkpoint == self._stripe_checkpoint:
                candidates = [
                    self.invoices[i] for i in sorted(self._stripe_unchecked) if i in self.invoices
                ]
            else:
                candidates = list(self.invoices.values())
            for invoice in candidates:
                if invoice.stripe_invoice_id is None or invoice.id == stale:
                    continue
                try:
                    stripe_status = self.stripe.invoice_status(invoice.stripe_invoice_id)
                except KeyError:
                    continue
                status = PAID if stripe_status == "paid" else invoice.status
                if (stripe_status, status) != (invoice.stripe_invoice_status, invoice.status):
                    invoice.stripe_invoice_status, invoice.status = stripe_status, status
                    changed += 1
            self._stripe_unchecked.clear()
            self._stripe_checkpoint = self._stripe_state(stale)
        return changed

    def _stripe_state(self, stale: int | None) -> tuple[int, int, int, int | None] | None:
        """What a pass of :meth:`apply_stripe_updates` depends on besides the invoices' own
        fields, when it is cheap to know (``None``: unknown, check every invoice)."""
        if type(self.stripe) is not OfflineStripe:
            return None
        return id(self.stripe), self.stripe.changes, len(self.invoices), stale

    def _record_changed(self, record: object) -> None:
        self._version += 1

    def _invoice_changed(self, invoice: SandboxInvoice) -> None:
        self._version += 1
        self._stripe_unchecked.add(invoice.id)

    def _matching(
        self, records: Mapping[int, Record], search: SearchQuery, scope: Scope
    ) -> list[Record]:
        """The records ``search`` matches that ``scope`` sees, by ``id``; kept until the next
        change, so paging through one query costs one scan."""
        stamp = (self._version, len(self.invoices), len(self.charges))
        if stamp != self._list_cache_stamp or len(self._list_cache) >= LIST_CACHE_SIZE:
            self._list_cache.clear()
            self._list_cache_stamp = stamp
        key = (records is self.invoices, search, scope.merchant)
        found = self._list_cache.get(key)
        if found is None:
            found = [
                record
                for record in (records[i] for i in matching_ids(records, search))
                if scope.sees(record.merchant_id)
            ]
            self._list_cache[key] = found
        return found

    def set_card_declines(self, merchant_id: int, declines: bool = True) -> None:
        """Make a merchant's card on file decline (or work again)."""
        with self._state:
            self.merchants[merchant_id].card_declines = declines

    def _push(self, invoice: SandboxInvoice) -> None:
        """Create and finalize the invoice on Stripe, one line per charge."""
        lines: list[dict[str, object]] = [
            {
                "amount": money.to_minor(self.charges[charge_id].amount, invoice.currency),
                "description": self.charges[charge_id].description,
                "quantity": 1,
            }
            for charge_id in invoice.charge_ids
        ]
        if invoice.stripe_amount_offset and lines:
            lines[0]["amount"] = int(str(lines[0]["amount"])) + invoice.stripe_amount_offset
        stripe_id = self.stripe.create_external_invoice(
            customer=self.merchants[invoice.merchant_id].stripe_customer,
            currency=invoice.currency.lower(),
            lines=lines,
            metadata={
                "prepbusiness_invoice_id": str(invoice.id),
                "prepbusiness_merchant_id": str(invoice.merchant_id),
            },
            finalize=True,
        )
        invoice.stripe_invoice_id = stripe_id
        invoice.stripe_invoice_status = self.stripe.invoice_status(stripe_id)

    # ------------------------------------------------------------------ seeding and demo
    def seed_invoices(self, n: int) -> None:
        """Add ``n`` deterministic invoices over the past ~18 months, in every state, with their
        charges, the finalized ones on Stripe, the deliberate mismatches (``n >= 6``), and a few
        uninvoiced and void charges per merchant."""
        with self._state:
            rng = random.Random(self.seed * 1_000_003 + len(self.invoices))
            now = self.now()
            start = now - timedelta(days=SEED_HISTORY_DAYS)
            span = (now - timedelta(days=1)) - start
            merchant_ids = sorted(self.merchants)
            roles: dict[int, str] = {}
            if n >= 6 and not self.deliberate_mismatches:
                roles = {
                    n // 3: MISMATCH_TOTAL_DIFFERS,
                    n // 2: MISMATCH_PAID_ONE_SIDE,
                    n - 3: MISMATCH_NEVER_PUSHED,
                }
            for i in range(n):
                created = start + span * i / max(n, 1) + timedelta(seconds=rng.randint(0, 3600))
                created = created.replace(microsecond=0)
                merchant_id = merchant_ids[i % len(merchant_ids)]
                charge_ids = [
                    self._seed_charge(rng, merchant_id, created) for _ in range(rng.randint(1, 6))
                ]
                invoice_id = self.create_invoice(merchant_id, charge_ids, created_at=created)
                role = roles.get(i)
                status = self._seed_status(rng, (now - created).days, role)
                self._seed_state(self.invoices[invoice_id], status, role)
                if role is not None:
                    self.deliberate_mismatches[role] = invoice_id
            for merchant_id in merchant_ids:
                for _ in range(3):
                    self._seed_charge(rng, merchant_id, now - timedelta(hours=rng.randint(2, 60)))
                self._seed_charge(rng, merchant_id, now - timedelta(days=2), is_void=True)

    def _seed_charge(
        self, rng: random.Random, merchant_id: int, before: datetime, *, is_void: bool = False
    ) -> int:
        category, label = CHARGE_CATEGORIES[rng.randrange(len(CHARGE_CATEGORIES))]
        created = before - timedelta(minutes=rng.randint(60, 20 * 24 * 60))
        return self.add_charge(
            merchant_id,
            Decimal(rng.randint(250, 95_000)).scaleb(-2),
            category=category,
            description=f"{label} #{rng.randint(10_000, 99_999)}",
            created_at=created.replace(microsecond=0),
            is_void=is_void,
        )

    @staticmethod
    def _seed_status(rng: random.Random, age_days: int, role: str | None) -> str:
        if role == MISMATCH_NEVER_PUSHED:
            return FINALIZED
        if role is not None:
            return PAID
        draw = rng.random()
        if age_days > RECENT_DAYS:
            return PAID if draw < 0.92 else PAYMENT_FAILED
        if draw < 0.3:
            return DRAFT
        if draw < 0.6:
            return FINALIZED
        return PAID if draw < 0.9 else PAYMENT_FAILED

    def _seed_state(self, invoice: SandboxInvoice, status: str, role: str | None) -> None:
        if status == DRAFT:
            return
        invoice.status = FINALIZED
        if role == MISMATCH_NEVER_PUSHED:
            invoice.held_from_stripe = True
            return
        if role == MISMATCH_TOTAL_DIFFERS:
            invoice.stripe_amount_offset = STRIPE_TOTAL_OFFSET_MINOR
        self._push(invoice)
        assert invoice.stripe_invoice_id is not None
        if status == PAID:
            if role != MISMATCH_PAID_ONE_SIDE:
                self.stripe.pay_invoice(invoice.stripe_invoice_id)
            invoice.stripe_invoice_status = "paid"
        invoice.status = status

    def demo_changes(self) -> dict[str, int]:
        """A day of billing: two new charges and a new draft invoice per merchant; the oldest
        three drafts and the new invoices of the first and last merchant finalized; the oldest
        five collectable finalized invoices and those two new ones collected (the last default
        merchant's card declines; the first's new invoice is still queued, so collecting creates
        it on Stripe first); then the Stripe queue worked. The deliberate mismatches are left
        alone."""
        counts = dict.fromkeys(
            (
                "charges_created",
                "invoices_created",
                "finalized",
                "collected_paid",
                "collected_failed",
                "pushed_to_stripe",
            ),
            0,
        )
        with self._state:
            self.apply_stripe_updates()
            protected = set(self.deliberate_mismatches.values())
            rng = random.Random(self.seed * 7_919 + len(self.invoices))
            merchant_ids = sorted(self.merchants)
            old_drafts = [i for i in self.invoice_ids(status=DRAFT) if i not in protected]
            collectable = [
                i
                for i in self.invoice_ids(status=FINALIZED)
                if i not in protected
                and self.invoices[i].stripe_invoice_status in (None, "open", "uncollectible")
            ]
            new_invoices: dict[int, int] = {}
            for merchant_id in merchant_ids:
                for _ in range(2):
                    self._seed_charge(rng, merchant_id, self.now())
                    counts["charges_created"] += 1
                new_invoices[merchant_id] = self.create_invoice(merchant_id)
                counts["invoices_created"] += 1
            featured = [new_invoices[merchant_ids[0]], new_invoices[merchant_ids[-1]]]
            for invoice_id in old_drafts[:3] + featured:
                self.finalize(invoice_id)
                counts["finalized"] += 1
            for invoice_id in collectable[:5] + featured:
                self.collect(invoice_id)
                paid = self.invoices[invoice_id].status == PAID
                counts["collected_paid" if paid else "collected_failed"] += 1
            counts["pushed_to_stripe"] += self.process_stripe_queue()
        return counts

    # ------------------------------------------------------------------ rendering
    def _render_invoice(self, invoice: SandboxInvoice) -> dict[str, Any]:
        return {
            "id": invoice.id,
            "charger_id": PREP_CENTER_ID,
            "charger_type": "company",
            "chargee_id": str(invoice.merchant_id),
            "chargee_type": "team",
            "created_at": format_invoice_timestamp(invoice.created_at),
            "currency": invoice.currency,
            "status": invoice.status,
            "stripe_invoice_status": invoice.stripe_invoice_status,
            "stripe_invoice_id": invoice.stripe_invoice_id,
            "description": invoice.description,
            "total": invoice.total,
        }

    def _render_charge(self, charge: SandboxCharge) -> dict[str, Any]:
        return {
            "id": charge.id,
            "created_at": format_charge_timestamp(charge.created_at),
            "charger_type": "company",
            "charger_id": PREP_CENTER_ID,
            "chargee_type": "team",
            "chargee_id": str(charge.merchant_id),
            "description": charge.description,
            "category": charge.category,
            "currency": charge.currency,
            "amount": charge.amount,
            "is_void": charge.is_void,
            "is_invoiced": charge.invoice_id is not None,
            "status": "Invoiced" if charge.invoice_id is not None else "Open",
        }

    # ------------------------------------------------------------------ HTTP
    def _add_routes(self) -> None:
        invoice = r"/api/billing/invoices/(?P<invoice>[^/]+)"
        self.route("GET", r"/api/billing/invoices", self._guarded(self._list_invoices))
        self.route("POST", r"/api/billing/invoices", self._guarded(self._create_invoice))
        self.route("POST", rf"{invoice}/finalize", self._guarded(self._finalize_invoice))
        self.route("POST", rf"{invoice}/collect", self._guarded(self._collect_invoice))
        self.route("GET", r"/api/billing/charges", self._guarded(self._list_charges))
        self.route(
            "POST", r"/api/billing/charges/quick-adjustment", self._guarded(self._quick_adjustment)
        )
        self.route(
            "GET", r"/api/billing/charges/(?P<charge>[^/]+)", self._guarded(self._get_charge)
        )

    def error_response(self, status: int, message: str) -> Response:
        """Laravel's ``{"message": ...}`` body (standard texts for injected faults)."""
        if message == "Injected fault.":
            message = _LARAVEL_STATUS_MESSAGES.get(status, message)
        return json_response({"message": message}, status)

    def _error(self, error: LaravelError) -> Response:
        body: dict[str, Any] = {"message": error.message}
        if error.errors is not None:
            body["errors"] = error.errors
        return json_response(body, error.status)

    def _guarded(self, handler: Callable[..., Response]) -> Callable[..., Response]:
        def run(request: Request, **groups: str) -> Response:
            try:
                scope = self._authenticate(request)
                with self._state:
                    self.apply_stripe_updates()
                    return handler(request, scope, **groups)
            except LaravelError as error:
                return self._error(error)

        return run

    def _authenticate(self, request: Request) -> Scope:
        authorization = request.header("authorization") or ""
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        token = token or (request.arg("api_token") or "")
        if not token or token not in self.tokens:
            raise LaravelError(401, "Unauthenticated.")
        token_merchant_text = self.tokens[token]
        token_merchant = int(token_merchant_text) if token_merchant_text is not None else None
        selected = (request.header(MERCHANT_HEADER) or "").strip()
        if not selected:
            if token_merchant is not None:
                raise LaravelError(400, "No client selected: send the X-Selected-Client-Id header.")
            return Scope(None, None)
        if not selected.isdigit() or int(selected) not in self.merchants:
            raise LaravelError(403, "This action is unauthorized.")
        if token_merchant is not None and token_merchant != int(selected):
            raise LaravelError(403, "This action is unauthorized.")
        return Scope(token_merchant, int(selected))

    def _require_merchant(self, scope: Scope) -> int:
        if scope.merchant is None:
            raise LaravelError(
                400,
                "No client selected: send the X-Selected-Client-Id header to choose the merchant.",
            )
        return scope.merchant

    def _visible_invoice(self, scope: Scope, invoice: str) -> SandboxInvoice:
        found = self.invoices.get(int(invoice)) if invoice.isdigit() else None
        if found is None or not scope.sees(found.merchant_id):
            raise LaravelError(404, f"No query results for model [{INVOICE_MODEL}] {invoice}")
        return found

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        if not request.body.strip():
            return {}
        try:
            body = json.loads(request.body, parse_float=Decimal)
        except ValueError:
            raise LaravelError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise LaravelError(400, "The request body must be a JSON object.")
        return body

    @staticmethod
    def _search(request: Request, fields: dict[str, str]) -> SearchQuery:
        text = request.arg("q")
        if text is not None and len(text) > MAX_QUERY_LENGTH:
            raise LaravelError(414, "Request-URI Too Long")
        return parse_search(text, fields)

    def _paginated(
        self,
        request: Request,
        records: Sequence[Record],
        render: Callable[[Record], dict[str, Any]],
        *,
        resource: bool,
    ) -> Response:
        per_page_text = request.arg("per_page")
        per_page = DEFAULT_PER_PAGE
        if per_page_text is not None:
            if not per_page_text.isdigit() or not 1 <= int(per_page_text) <= MAX_PER_PAGE:
                raise validation_error(
                    {"per_page": [f"The per page field must be between 1 and {MAX_PER_PAGE}."]}
                )
            per_page = int(per_page_text)
        page_text = request.arg("page") or "1"
        page = int(page_text) if page_text.isdigit() and int(page_text) >= 1 else 1
        if self.ignore_page_parameter:
            page = 1
        total = len(records)
        last_page = max(1, math.ceil(total / per_page))
        chunk = [render(record) for record in records[(page - 1) * per_page : page * per_page]]
        path = f"http://{request.header('host') or '127.0.0.1'}{request.path}"

        def url(number: int) -> str | None:
            return f"{path}?page={number}" if 1 <= number <= last_page else None

        first = (page - 1) * per_page + 1 if chunk else None
        to = first + len(chunk) - 1 if first is not None else None
        links = [{"url": url(page - 1), "label": "&laquo; Previous", "active": False}]
        links += [
            {"url": url(n), "label": str(n), "active": n == page}
            for n in _page_numbers(page, last_page)
        ]
        links.append({"url": url(page + 1), "label": "Next &raquo;", "active": False})
        if resource:
            return json_response(
                {
                    "data": chunk,
                    "links": {
                        "first": url(1),
                        "last": url(last_page),
                        "prev": url(page - 1),
                        "next": url(page + 1),
                    },
                    "meta": {
                        "current_page": page,
                        "from": first,
                        "last_page": last_page,
                        "links": links,
                        "path": path,
                        "per_page": per_page,
                        "to": to,
                        "total": total,
                    },
                }
            )
        return json_response(
            {
                "current_page": page,
                "data": chunk,
                "first_page_url": url(1),
                "from": first,
                "last_page": last_page,
                "last_page_url": url(last_page),
                "links": links,
                "next_page_url": url(page + 1),
                "path": path,
                "per_page": per_page,
                "prev_page_url": url(page - 1),
                "to": to,
                "total": total,
            }
        )

    def _list_invoices(self, request: Request, scope: Scope) -> Response:
        search = self._search(request, INVOICE_SEARCH_FIELDS)
        invoices = self._matching(self.invoices, search, scope)
        if self.invoice_list_envelope == "legacy":
            return json_response({"invoices": [self._render_invoice(inv) for inv in invoices]})
        return self._paginated(
            request,
            invoices,
            self._render_invoice,
            resource=self.invoice_list_envelope == "resource",
        )

    def _create_invoice(self, request: Request, scope: Scope) -> Response:
        body = self._body(request)
        raw_ids = body.get("charge_ids")
        if raw_ids is not None and not isinstance(raw_ids, list):
            raise validation_error({"charge_ids": ["The charge ids field must be an array."]})
        errors: dict[str, list[str]] = {}
        charge_ids: list[int] = []
        for index, raw in enumerate(raw_ids or []):
            key = f"charge_ids.{index}"
            if isinstance(raw, bool) or not isinstance(raw, int):
                errors[key] = [f"The {key} field must be an integer."]
                continue
            charge = self.charges.get(raw)
            if charge is None or not scope.sees(charge.merchant_id):
                errors[key] = [f"The selected {key} is invalid."]
            elif charge.is_void:
                errors[key] = [f"The charge {raw} is void."]
            elif charge.invoice_id is not None:
                errors[key] = [f"The charge {raw} is already invoiced."]
            elif raw not in charge_ids:
                charge_ids.append(raw)
        if errors:
            raise validation_error(errors)
        if charge_ids:
            merchants = {self.charges[charge_id].merchant_id for charge_id in charge_ids}
            if len(merchants) > 1:
                raise validation_error(
                    {"charge_ids": ["The charges must all belong to the same merchant."]}
                )
            merchant_id = merchants.pop()
        else:
            merchant_id = self._require_merchant(scope)
        invoice_id = self.create_invoice(merchant_id, charge_ids)
        return json_response(
            {"message": "Draft invoice created.", "invoice": self.invoice(invoice_id)}, 201
        )

    def _finalize_invoice(self, request: Request, scope: Scope, invoice: str) -> Response:
        found = self._visible_invoice(scope, invoice)
        self.finalize(found.id)
        return json_response(
            {
                "message": "Invoice finalized and queued for creation on Stripe.",
                "invoice": self._render_invoice(found),
            }
        )

    def _collect_invoice(self, request: Request, scope: Scope, invoice: str) -> Response:
        found = self._visible_invoice(scope, invoice)
        self.collect(found.id)
        message = "Payment collected." if found.status == PAID else "Payment failed: card declined."
        return json_response({"message": message, "invoice": self._render_invoice(found)})

    def _list_charges(self, request: Request, scope: Scope) -> Response:
        search = self._search(request, CHARGE_SEARCH_FIELDS)
        charges = self._matching(self.charges, search, scope)
        return self._paginated(request, charges, self._render_charge, resource=False)

    def _get_charge(self, request: Request, scope: Scope, charge: str) -> Response:
        found = self.charges.get(int(charge)) if charge.isdigit() else None
        if found is None or not scope.sees(found.merchant_id):
            raise LaravelError(404, f"No query results for model [{CHARGE_MODEL}] {charge}")
        return json_response({"data": self._render_charge(found)})

    def _quick_adjustment(self, request: Request, scope: Scope) -> Response:
        body = self._body(request)
        errors: dict[str, list[str]] = {}
        amount = _parse_amount(body.get("amount"), errors)
        description = body.get("description")
        if description is None or description == "":
            errors["description"] = ["The description field is required."]
        elif not isinstance(description, str):
            errors["description"] = ["The description field must be a string."]
        elif len(description) > 255:
            errors["description"] = [
                "The description field must not be greater than 255 characters."
            ]
        if errors:
            raise validation_error(errors)
        merchant_id = self._require_merchant(scope)
        assert amount is not None and isinstance(description, str)
        charge_id = self.add_charge(merchant_id, amount, description=description)
        return json_response(
            {
                "message": "Quick adjustment created.",
                "charge": self._render_charge(self.charges[charge_id]),
            },
            201,
        )


def _parse_amount(value: Any, errors: dict[str, list[str]]) -> Decimal | None:
    if value is None or value == "":
        errors["amount"] = ["The amount field is required."]
        return None
    if isinstance(value, bool):
        errors["amount"] = ["The amount field must be a number."]
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        errors["amount"] = ["The amount field must be a number."]
        return None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or not isinstance(exponent, int):
        errors["amount"] = ["The amount field must be a number."]
        return None
    if -exponent > 2 and amount != amount.quantize(Decimal("0.01")):
        errors["amount"] = ["The amount field must have 0-2 decimal places."]
        return None
    return amount


def _page_numbers(page: int, last_page: int) -> list[int]:
    """The page numbers Laravel's paginator links show (all of them, or a window around
    ``page`` plus both ends when there are many)."""
    if last_page <= 12:
        return list(range(1, last_page + 1))
    shown = {1, 2, last_page - 1, last_page, *range(page - 3, page + 4)}
    return sorted(n for n in shown if 1 <= n <= last_page)
