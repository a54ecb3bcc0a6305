"""A stateful fake of Stripe's invoice API (and of the Appgregator proxy in front of it).

Faithful where a connector depends on it: lists newest first with ``limit`` ≤ 100,
``starting_after``/``ending_before`` and ``created`` filters (exact or ``[gt|gte|lt|lte]``); at
most ten lines embedded per invoice with ``has_more`` and the rest from
``/v1/invoices/{id}/lines``; ``invoice.*`` events kept 30 days (by the sandbox clock) with
``data.object`` in the account's default API version; the response shape following the
``Stripe-Version`` header (legacy before 2025-03-31, basil from then on); Stripe's error bodies
and ``Request-Id`` headers; unknown parameters refused.

Scale: seeded invoices are not stored. Each :meth:`StripeApp.seed_invoices` call is a segment
(first index, count, time span) from which an invoice's ``created`` and content are derived on
demand; the only per-invoice memory is one 8-byte sort key ``created << 31 | number`` in an
ascending array, so listing is a bisect plus a page. Invoices created or changed through the API
are kept as models; rendered JSON is cached per (invoice, shape) in a bounded LRU.

The Appgregator proxy is served under ``/stripe/...`` as a passthrough of ``/v1/...`` (its
``invoices-items`` spelling maps to ``invoiceitems``). Every proxy request needs the
``x-api-key`` header and the ``name`` and ``connection_name`` query parameters:

- missing or wrong key: 401 ``{"error": "Unauthorized", "message": "Missing or invalid
  x-api-key header."}``
- missing or unknown name or connection: 400 ``{"error": "Bad Request", "message": "Unknown
  integration name or connection_name."}``
- a path the proxy does not pass on: 404 ``{"error": "Not Found", "message": ...}``

Stripe's own errors (bad ``limit``, unknown id...) come through unchanged. Answers are always in
the 2022-era shape with ``url: "/v1/..."``. With ``appgregator_passes_parameters = False`` the
proxy drops every query parameter but ``limit``, so lists always return the newest page.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import random
import re
import threading
import time
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from invoice_source.sandbox.server import App, Request, Response
from invoice_source.sandbox.stripe_data import (
    CUSTOMER_POOL,
    DAY,
    InvoiceModel,
    LineModel,
    copy_model,
    finish_invoice,
    generate_invoice,
    granularity,
    id_number,
    make_line,
    render_invoice,
    render_line,
    seeded_created,
    stripe_id,
)

BASIL = "2025-03-31"
LEGACY_VERSION = "2022-11-15"
DEFAULT_API_KEY = "sk_test_sandbox_4eC39HqLyjWDarjtT1zdp7dc"
EVENT_RETENTION_SECONDS = 30 * DAY
INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")
# Numbers of invoices and lines created after seeding: above every seeded one, so ids sort after.
ADDED_INVOICE_BASE = 1_000_000_000
ADDED_LINE_BASE = 10**12
ADDED_DISCOUNT_BASE = 2 * 10**12
_NUMBER_BITS = 31
_NUMBER_MASK = (1 << _NUMBER_BITS) - 1
RENDER_CACHE_SIZE = 4_096
MODEL_CACHE_SIZE = 4_096
_LIST_PARAMS = frozenset({"limit", "starting_after", "ending_before", "expand[]"})
_CREATED_PARAMS = frozenset(
    {"created", "created[gt]", "created[gte]", "created[lt]", "created[lte]"}
)
_VERSION_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
_RATE_LIMIT_MESSAGE = (
    "Too many requests hit the API too quickly. We recommend an exponential backoff of your"
    " requests."
)


class StripeError(Exception):
    """A refusal, rendered as Stripe's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code


def _no_such_invoice(invoice_id: str, param: str = "id") -> StripeError:
    return StripeError(
        404, f"No such invoice: '{invoice_id}'", param=param, code="resource_missing"
    )


def _sort_key(created: int, number: int) -> int:
    return (created << _NUMBER_BITS) | number


@dataclass(frozen=True)
class _Segment:
    """One ``seed_invoices`` call: ``count`` invoices from ``first_index`` over ``span`` seconds."""

    first_index: int
    count: int
    start: int
    span: int
    seeded_at: int


@dataclass(frozen=True)
class _Event:
    key: int
    id: str
    type: str
    body: bytes


@dataclass(frozen=True)
class _ListQuery:
    """The paging part of a list request."""

    limit: int
    low: int  # created >= low
    high: int  # created < high
    starting_after: int | None  # sort key of the cursor
    ending_before: int | None


class StripeApp(App):
    """The Stripe sandbox: state, seeded data and HTTP routes (``/v1/...`` and ``/stripe/...``)."""

    name = "stripe"

    def __init__(
        self,
        *,
        seed: int = 7,
        api_key: str = DEFAULT_API_KEY,
        appgregator_api_key: str = "ag_sandbox_key_7f3a9c",
        appgregator_name: str = "invoice-sync",
        appgregator_connection_name: str = "stripe-sandbox",
        account_api_version: str = LEGACY_VERSION,
        clock: Callable[[], int] | None = None,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.api_key = api_key
        self.appgregator_api_key = appgregator_api_key
        self.appgregator_name = appgregator_name
        self.appgregator_connection_name = appgregator_connection_name
        self.account_api_version = account_api_version
        self.events_available = True
        self.appgregator_passes_parameters = True
        self.max_limit = 100
        self._clock: Callable[[], int] = clock or (lambda: int(time.time()))
        self._clock_offset = 0
        self._state = threading.RLock()
        self._segments: list[_Segment] = []
        self._segment_firsts: list[int] = []
        self._seeded_count = 0
        self._keys = array("q")
        self._models: dict[str, InvoiceModel] = {}
        self._deleted: set[str] = set()
        self._external_ids: set[str] = set()  # created by another system (PrepBusiness)
        self._events: list[_Event] = []
        self._event_keys: list[int] = []
        self._next_invoice = ADDED_INVOICE_BASE
        self._next_line = ADDED_LINE_BASE
        self._next_event = 1
        self._next_request = 1
        self._model_cache: OrderedDict[str, InvoiceModel] = OrderedDict()
        self._render_cache: OrderedDict[tuple[str, bool], bytes] = OrderedDict()
        self._add_routes()

    # ------------------------------------------------------------------ clock and environment
    def now(self) -> int:
        """The sandbox's current time in unix seconds."""
        return self._clock() + self._clock_offset

    def advance_clock(self, seconds: int) -> None:
        """Move the sandbox's now forward (events older than 30 days then expire)."""
        self._clock_offset += seconds

    def env(self, base_url: str) -> dict[str, str]:
        """Env vars pointing the Stripe source at this sandbox."""
        return {
            "SOURCES__STRIPE__BASE_URL": f"{base_url}/v1",
            "SOURCES__STRIPE__API_KEY": self.api_key,
        }

    def appgregator_env(self, base_url: str) -> dict[str, str]:
        """Env vars pointing the Stripe source at this sandbox's Appgregator proxy."""
        return {
            "SOURCES__STRIPE__TRANSPORT": "appgregator",
            "SOURCES__STRIPE__BASE_URL": f"{base_url}/stripe",
            "SOURCES__STRIPE__API_KEY": self.appgregator_api_key,
            "SOURCES__STRIPE__APPGREGATOR_NAME": self.appgregator_name,
            "SOURCES__STRIPE__APPGREGATOR_CONNECTION_NAME": self.appgregator_connection_name,
        }

    # ------------------------------------------------------------------ seeding and lookup
    def seed_invoices(self, n: int, *, start: int | None = None, end: int | None = None) -> None:
        """Add ``n`` deterministic invoices created over ``[start, end)``.

        The default window is now − 730 days .. now − 1 day. Invoices are derived from
        ``(seed, index)`` when read, so this only stores one sort key per invoice.
        """
        if n <= 0:
            return
        now = self.now()
        start = now - 730 * DAY if start is None else start
        end = now - DAY if end is None else end
        span = max(1, end - start)
        with self._state:
            first = self._seeded_count + 1
            if first + n > ADDED_INVOICE_BASE:
                raise ValueError(f"the sandbox seeds at most {ADDED_INVOICE_BASE - 1} invoices")
            segment = _Segment(first, n, start, span, now)
            new_keys = array(
                "q",
                (
                    _sort_key(seeded_created(first + i, i, n, start, span, self.seed), first + i)
                    for i in range(n)
                ),
            )
            if not self._keys or new_keys[0] > self._keys[-1]:
                self._keys.extend(new_keys)
            else:
                self._keys = array("q", sorted([*self._keys, *new_keys]))
            self._segments.append(segment)
            self._segment_firsts.append(first)
            self._seeded_count += n

    def _seeded_invoice(self, number: int) -> InvoiceModel:
        segment = self._segments[bisect.bisect_right(self._segment_firsts, number) - 1]
        offset = number - segment.first_index
        created = seeded_created(
            number, offset, segment.count, segment.start, segment.span, self.seed
        )
        return generate_invoice(self.seed, number, created, segment.seeded_at)

    def _lookup(self, invoice_id: str) -> InvoiceModel | None:
        """The invoice's model, deleted ones included (None if it never existed)."""
        model = self._models.get(invoice_id)
        if model is not None:
            return model
        number = id_number(invoice_id, "in")
        if number is None or not 1 <= number <= self._seeded_count:
            return None
        with self._state:
            cached = self._model_cache.get(invoice_id)
            if cached is not None:
                self._model_cache.move_to_end(invoice_id)
                return cached
        model = self._seeded_invoice(number)
        with self._state:
            self._model_cache[invoice_id] = model
            if len(self._model_cache) > MODEL_CACHE_SIZE:
                self._model_cache.popitem(last=False)
        return model

    def _model(self, invoice_id: str) -> InvoiceModel | None:
        """The live invoice (None when unknown or deleted)."""
        if invoice_id in self._deleted:
            return None
        return self._lookup(invoice_id)

    def _require(self, invoice_id: str, param: str = "id") -> InvoiceModel:
        model = self._model(invoice_id)
        if model is None:
            raise _no_such_invoice(invoice_id, param)
        return model

    def _invoice_key(self, invoice_id: str) -> int | None:
        model = self._lookup(invoice_id)
        number = id_number(invoice_id, "in")
        if model is None or number is None:
            return None
        return _sort_key(model.created, number)

    def _rendered(self, model: InvoiceModel, legacy: bool) -> bytes:
        """The invoice's JSON, from the LRU when fresh (mutations evict under the same lock)."""
        cache_key = (model.id, legacy)
        with self._state:
            body = self._render_cache.get(cache_key)
            if body is not None:
                self._render_cache.move_to_end(cache_key)
                return body
            body = orjson.dumps(render_invoice(model, legacy=legacy))
            self._render_cache[cache_key] = body
            if len(self._render_cache) > RENDER_CACHE_SIZE:
                self._render_cache.popitem(last=False)
            return body

    def _mutable(self, invoice_id: str) -> InvoiceModel:
        """The invoice's own model, copied out of the seed on its first change."""
        model = self._require(invoice_id)
        if invoice_id not in self._models:
            model = copy_model(model)
            self._models[invoice_id] = model
        return model

    def _changed(self, invoice_id: str) -> None:
        self._render_cache.pop((invoice_id, True), None)
        self._render_cache.pop((invoice_id, False), None)

    # ------------------------------------------------------------------ reading state
    def get(self, invoice_id: str) -> dict[str, Any] | None:
        """The invoice as the account's default API version renders it (None when deleted)."""
        model = self._model(invoice_id)
        if model is None:
            return None
        result: dict[str, Any] = orjson.loads(
            self._rendered(model, self._is_legacy(self.account_api_version))
        )
        return result

    def invoice_ids(self) -> list[str]:
        """Ids of every invoice that is not deleted, oldest first."""
        with self._state:
            keys = list(self._keys)
        ids = (stripe_id("in", key & _NUMBER_MASK) for key in keys)
        return [invoice_id for invoice_id in ids if invoice_id not in self._deleted]

    def line_count(self, invoice_id: str) -> int:
        """Number of lines of an invoice (0 when unknown or deleted)."""
        model = self._model(invoice_id)
        return 0 if model is None else len(model.lines)

    def lines_of(self, invoice_id: str) -> list[str]:
        """The ``il_`` ids of an invoice's lines, in order (empty when unknown or deleted)."""
        model = self._model(invoice_id)
        return [] if model is None else [line.id for line in model.lines]

    def count(self) -> int:
        """Invoices that are not deleted."""
        return len(self._keys) - len(self._deleted)

    # ------------------------------------------------------------------ mutations
    def add_invoice(
        self,
        *,
        customer: str | None = None,
        currency: str = "usd",
        lines: int | list[dict[str, object]] = 3,
        status: str = "draft",
        created: int | None = None,
        metadata: dict[str, str] | None = None,
        collection_method: str = "charge_automatically",
        days_until_due: int | None = None,
        description: str | None = None,
    ) -> str:
        """Create an invoice, walk the state machine to ``status`` and return its id.

        ``lines`` is a count of generated lines (with the seed's random discounts and taxes) or
        explicit dicts ``{"amount": <line total in minor units>, "description": ...,
        "quantity": ...}`` taken exactly, without discounts or taxes (``unit_amount`` instead of
        ``amount`` means ``amount = unit_amount × quantity``). Emits Stripe's events.
        """
        if status not in INVOICE_STATUSES:
            raise ValueError(f"unknown invoice status {status!r}")
        currency = currency.lower()
        with self._state:
            number = self._next_invoice
            self._next_invoice += 1
            rng = random.Random(self.seed * 7_919 + number)
            created = self.now() if created is None else created
            customer_number = _customer_number(customer) or rng.randint(1, CUSTOMER_POOL)
            if isinstance(lines, int):
                line_models = [self._new_line(rng, currency, created, None) for _ in range(lines)]
            else:
                line_models = [self._explicit_line(rng, currency, created, spec) for spec in lines]
            invoice_id = stripe_id("in", number)
            model = InvoiceModel(
                id=invoice_id,
                created=created,
                customer=customer or stripe_id("cus", customer_number),
                customer_number=customer_number,
                currency=currency,
                status="draft",
                collection_method=collection_method,
                lines=line_models,
                metadata=dict(metadata or {}),
                number=None,
                description=description,
                subscription_id=None,
                days_until_due=(days_until_due or 30)
                if collection_method == "send_invoice"
                else None,
                auto_advance=False,
            )
            if isinstance(lines, int):
                finish_invoice(model, rng, discount_number=ADDED_DISCOUNT_BASE + number * 16)
            self._models[invoice_id] = model
            key = _sort_key(created, number)
            self._keys.insert(bisect.bisect_left(self._keys, key), key)
            self._emit_invoice("invoice.created", model, None)
        if status != "draft":
            self.finalize(invoice_id)
        if status == "paid":
            self.pay(invoice_id)
        elif status == "void":
            self.void(invoice_id)
        elif status == "uncollectible":
            self.mark_uncollectible(invoice_id)
        return invoice_id

    def _new_line(
        self, rng: random.Random, currency: str, created: int, subscription_id: str | None
    ) -> LineModel:
        number = self._next_line
        self._next_line += 1
        return make_line(
            rng, number=number, currency=currency, created=created, subscription_id=subscription_id
        )

    def _explicit_line(
        self, rng: random.Random, currency: str, created: int, spec: dict[str, object]
    ) -> LineModel:
        quantity = int(str(spec.get("quantity") or 1))
        if "amount" in spec:
            amount = int(str(spec["amount"]))
        elif "unit_amount" in spec:
            amount = int(str(spec["unit_amount"])) * quantity
        else:
            raise ValueError(f"a line needs an amount or unit_amount: {spec!r}")
        if quantity < 1:
            raise ValueError(f"a line's quantity must be at least 1: {spec!r}")
        number = self._next_line
        self._next_line += 1
        return make_line(
            rng,
            number=number,
            currency=currency,
            created=created,
            subscription_id=None,
            amount=amount,
            quantity=quantity,
            description=str(spec.get("description") or ""),
        )

    def finalize(self, invoice_id: str) -> None:
        """draft -> open (numbers the invoice); emits ``invoice.finalized``."""
        with self._state:
            model = self._mutable(invoice_id)
            if model.status != "draft":
                raise StripeError(
                    400,
                    "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                    code="invoice_not_editable",
                )
            before = self._snapshot(model)
            model.status = "open"
            model.finalized_at = self.now()
            model.auto_advance = True
            model.number = model.number or f"SBX{model.customer_number:05d}-{invoice_id[-6:]}"
            self._emit_invoice("invoice.finalized", model, before)

    def pay(self, invoice_id: str) -> None:
        """open or uncollectible -> paid; emits invoice.paid and invoice.payment_succeeded."""
        with self._state:
            model = self._mutable(invoice_id)
            if model.status == "paid":
                raise StripeError(400, "Invoice is already paid.")
            if model.status not in ("open", "uncollectible"):
                raise StripeError(
                    400,
                    "You can only pay an invoice that is open or uncollectible; this invoice is"
                    f" {model.status}.",
                )
            before = self._snapshot(model)
            model.status = "paid"
            model.paid_at = self.now()
            model.auto_advance = False
            self._emit_invoice("invoice.paid", model, before)
            self._emit_invoice("invoice.payment_succeeded", model, before)

    def void(self, invoice_id: str) -> None:
        """open or uncollectible -> void; emits ``invoice.voided``."""
        with self._state:
            model = self._mutable(invoice_id)
            if model.status not in ("open", "uncollectible"):
                raise StripeError(
                    400,
                    "You can only void an invoice that is open or uncollectible; this invoice is"
                    f" {model.status}.",
                )
            before = self._snapshot(model)
            model.status = "void"
            model.voided_at = self.now()
            model.auto_advance = False
            self._emit_invoice("invoice.voided", model, before)

    def mark_uncollectible(self, invoice_id: str) -> None:
        """open -> uncollectible; emits ``invoice.marked_uncollectible``."""
        with self._state:
            model = self._mutable(invoice_id)
            if model.status != "open":
                raise StripeError(
                    400,
                    "You can only mark an invoice that is open as uncollectible; this invoice is"
                    f" {model.status}.",
                )
            before = self._snapshot(model)
            model.status = "uncollectible"
            model.marked_uncollectible_at = self.now()
            model.auto_advance = False
            self._emit_invoice("invoice.marked_uncollectible", model, before)

    def delete_draft(self, invoice_id: str) -> None:
        """Delete a draft: GET then answers 404 and lists omit it; emits ``invoice.deleted``."""
        with self._state:
            model = self._mutable(invoice_id)
            if model.status != "draft":
                raise StripeError(
                    400,
                    f"You can only delete draft invoices. This invoice is {model.status}; void it"
                    " instead.",
                    code="invoice_not_editable",
                )
            self._deleted.add(invoice_id)
            self._changed(invoice_id)
            self._emit_invoice("invoice.deleted", model, None)

    def add_line(
        self, invoice_id: str, amount: int, description: str = "", quantity: int = 1
    ) -> str:
        """Add a line (``amount`` is the line total) to a draft; returns the ``il_`` id.

        Emits ``invoiceitem.created`` and ``invoice.updated`` as Stripe does.
        """
        return self._add_line(invoice_id, amount, description, quantity).id

    def _add_line(self, invoice_id: str, amount: int, description: str, quantity: int) -> LineModel:
        with self._state:
            model = self._editable_draft(invoice_id, "add invoice items to")
            rng = random.Random(self._next_line)
            line = self._explicit_line(
                rng,
                model.currency,
                self.now(),
                {"amount": amount, "description": description, "quantity": quantity},
            )
            before = self._snapshot(model)
            model.lines.append(line)
            self._emit("invoiceitem.created", _invoice_item(line, model, self.now()), None)
            self._emit_invoice("invoice.updated", model, before)
            return line

    def _editable_draft(self, invoice_id: str, action: str) -> InvoiceModel:
        """The draft's own model; Stripe's 400 ``invoice_not_editable`` for any other status."""
        model = self._mutable(invoice_id)
        if model.status != "draft":
            raise StripeError(
                400,
                f"You can only {action} draft invoices. This invoice is {model.status}.",
                param="invoice",
                code="invoice_not_editable",
            )
        return model

    def remove_line(self, invoice_id: str, line_id: str) -> None:
        """Remove a line from a draft (Stripe: deleting its invoice item, or
        ``POST /v1/invoices/{id}/remove_lines``).

        Emits ``invoiceitem.deleted`` and ``invoice.updated`` as Stripe does.
        """
        with self._state:
            model = self._editable_draft(invoice_id, "remove lines from")
            line = next((line for line in model.lines if line.id == line_id), None)
            if line is None:
                raise StripeError(
                    404, f"No such line item: '{line_id}'", param="id", code="resource_missing"
                )
            before = self._snapshot(model)
            model.lines.remove(line)
            self._emit("invoiceitem.deleted", _invoice_item(line, model, self.now()), None)
            self._emit_invoice("invoice.updated", model, before)

    # ------------------------------------------------------------------ PrepBusiness link
    def create_external_invoice(
        self,
        *,
        customer: str,
        currency: str,
        lines: list[dict[str, object]],
        metadata: dict[str, str],
        finalize: bool = True,
    ) -> str:
        """Create an invoice now for another system, finalized unless asked otherwise.

        ``demo_changes`` leaves these alone: their life belongs to the system that made them."""
        invoice_id = self.add_invoice(
            customer=customer,
            currency=currency,
            lines=lines,
            metadata=metadata,
            status="open" if finalize else "draft",
        )
        self._external_ids.add(invoice_id)
        return invoice_id

    def pay_invoice(self, invoice_id: str) -> None:
        """Pay an open invoice."""
        self.pay(invoice_id)

    def invoice_status(self, invoice_id: str) -> str:
        """The invoice's status (``deleted`` for a deleted draft); KeyError when unknown."""
        if invoice_id in self._deleted:
            return "deleted"
        model = self._model(invoice_id)
        if model is None:
            raise KeyError(invoice_id)
        return model.status

    # ------------------------------------------------------------------ demo
    def demo_changes(self) -> dict[str, int]:
        """A day of business on the newest invoices: payments, voids, finalizations, deletions,
        added lines and ~40 new invoices created now (a few with more than ten lines)."""
        wanted_open, wanted_drafts = 27, 15
        opened: list[str] = []
        drafts: list[str] = []
        with self._state:
            keys = list(reversed(self._keys))
        for key in keys:
            if len(opened) >= wanted_open and len(drafts) >= wanted_drafts:
                break
            invoice_id = stripe_id("in", key & _NUMBER_MASK)
            model = self._model(invoice_id)
            if model is None or invoice_id in self._external_ids:
                continue
            if model.status == "open" and len(opened) < wanted_open:
                opened.append(invoice_id)
            elif model.status == "draft" and len(drafts) < wanted_drafts:
                drafts.append(invoice_id)
        counts = {
            "paid": 0,
            "voided": 0,
            "uncollectible": 0,
            "finalized": 0,
            "deleted": 0,
            "lines_added": 0,
            "created": 0,
        }
        for invoice_id in opened[:20]:
            self.pay(invoice_id)
            counts["paid"] += 1
        for invoice_id in opened[20:25]:
            self.void(invoice_id)
            counts["voided"] += 1
        for invoice_id in opened[25:27]:
            self.mark_uncollectible(invoice_id)
            counts["uncollectible"] += 1
        for invoice_id in drafts[:10]:
            self.finalize(invoice_id)
            counts["finalized"] += 1
        for invoice_id in drafts[10:13]:
            self.delete_draft(invoice_id)
            counts["deleted"] += 1
        for invoice_id in drafts[13:15]:
            currency = self._require(invoice_id).currency
            self.add_line(invoice_id, 2_500 * granularity(currency), "Rush handling")
            counts["lines_added"] += 1
        currencies = ("usd", "usd", "eur", "gbp", "jpy", "bhd", "usd", "cad")
        for i in range(40):
            self.add_invoice(
                lines=11 + i % 4 if i % 10 == 0 else 1 + i % 6,
                status=("open", "paid", "draft", "paid")[i % 4],
                currency=currencies[i % len(currencies)],
                collection_method="send_invoice" if i % 3 == 0 else "charge_automatically",
                metadata={"order_id": f"OR-{90_000 + i}"} if i % 2 else None,
            )
            counts["created"] += 1
        return counts

    # ------------------------------------------------------------------ events
    def _snapshot(self, model: InvoiceModel) -> dict[str, Any]:
        return render_invoice(model, legacy=self._is_legacy(self.account_api_version))

    def _emit_invoice(self, kind: str, model: InvoiceModel, before: dict[str, Any] | None) -> None:
        self._changed(model.id)
        after = self._snapshot(model)
        previous = None
        if before is not None:
            previous = {key: value for key, value in before.items() if after.get(key) != value}
        self._emit(kind, after, previous)

    def _emit(
        self, kind: str, data_object: dict[str, Any], previous: dict[str, Any] | None
    ) -> None:
        with self._state:
            number = self._next_event
            self._next_event += 1
            created = self.now()
            event_id = stripe_id("evt", number)
            data: dict[str, Any] = {"object": data_object}
            if previous is not None:
                data["previous_attributes"] = previous
            body = orjson.dumps(
                {
                    "id": event_id,
                    "object": "event",
                    "api_version": self.account_api_version,
                    "created": created,
                    "data": data,
                    "livemode": False,
                    "pending_webhooks": 0,
                    "request": {"id": f"req_sbxevt{number:08d}", "idempotency_key": None},
                    "type": kind,
                }
            )
            key = _sort_key(created, number)
            position = bisect.bisect_right(self._event_keys, key)
            self._event_keys.insert(position, key)
            self._events.insert(position, _Event(key, event_id, kind, body))
            self._expire_events()

    def _expire_events(self) -> None:
        cutoff = bisect.bisect_left(
            self._event_keys, _sort_key(self.now() - EVENT_RETENTION_SECONDS, 0)
        )
        if cutoff:
            del self._event_keys[:cutoff]
            del self._events[:cutoff]

    def event_types(self) -> list[str]:
        """Types of the retained events, oldest first (for tests)."""
        with self._state:
            self._expire_events()
            return [event.type for event in self._events]

    # ------------------------------------------------------------------ HTTP plumbing
    def _add_routes(self) -> None:
        invoice = r"/v1/invoices/(?P<invoice_id>[^/]+)"
        self.route("GET", r"/v1/invoices/?", self._list_invoices)
        self.route("POST", r"/v1/invoices/?", self._create_invoice)
        self.route("GET", invoice, self._get_invoice)
        self.route("DELETE", invoice, self._delete_invoice)
        self.route("GET", rf"{invoice}/lines", self._list_lines)
        for action in ("finalize", "pay", "void", "mark_uncollectible"):
            self.route("POST", rf"{invoice}/{action}", self._action(action))
        self.route("POST", r"/v1/invoiceitems/?", self._create_invoice_item)
        self.route("GET", r"/v1/events/?", self._list_events)
        for method in ("GET", "POST", "DELETE"):
            self.route(method, r"/stripe/(?P<rest>.*)", self._proxy)

    def error_response(self, status: int, message: str) -> Response:
        """Stripe's error body (also used for injected faults and unknown routes)."""
        kinds = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
        kind = kinds.get(status, "api_error" if status >= 500 else "invalid_request_error")
        code = None
        if status == 429:
            message, code = _RATE_LIMIT_MESSAGE, "rate_limit"
        elif status == 404 and message.startswith("Unrecognized request URL"):
            message += (
                " Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
            )
        return self._error(StripeError(status, message, kind=kind, code=code))

    def _error(self, error: StripeError, version: str | None = None) -> Response:
        body: dict[str, Any] = {"type": error.kind, "message": error.message}
        if error.param:
            body["param"] = error.param
        if error.code:
            body["code"] = error.code
            body["doc_url"] = f"https://stripe.com/docs/error-codes/{error.code.replace('_', '-')}"
        body["request_log_url"] = "https://dashboard.stripe.com/test/logs"
        headers = self._headers(version)
        if error.status == 429:
            headers["Stripe-Should-Retry"] = "true"
        return Response.json({"error": body}, error.status, headers)

    def _headers(self, version: str | None = None) -> dict[str, str]:
        with self._state:
            number = self._next_request
            self._next_request += 1
        return {
            "Request-Id": f"req_sbx{number:014d}",
            "Stripe-Version": version or self.account_api_version,
        }

    def _json(self, body: bytes, request: Request) -> Response:
        headers = {"Content-Type": "application/json", **self._headers(self._version(request))}
        return Response(200, body, headers)

    def dispatch(self, request: Request) -> Response:
        """Authenticate ``/v1`` requests, then route; StripeErrors become Stripe's error body."""
        if request.path == "/v1" or request.path.startswith("/v1/"):
            try:
                self._authenticate(request)
            except StripeError as error:
                if self.record_requests:
                    with self._lock:
                        self.requests.append(request)
                return self._error(error)
        try:
            return super().dispatch(request)
        except StripeError as error:
            return self._error(error, self._version(request))

    def _authenticate(self, request: Request) -> None:
        header = request.header("authorization") or ""
        key = ""
        if header.lower().startswith("bearer "):
            key = header[7:].strip()
        elif header.lower().startswith("basic "):
            try:
                key = base64.b64decode(header[6:].strip()).decode().split(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        if not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the"
                " Authorization header, using Bearer auth (e.g. 'Authorization: Bearer"
                " YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details,"
                " or we can help at https://support.stripe.com/.",
                kind="authentication_error",
            )
        if key != self.api_key:
            raise StripeError(
                401,
                f"Invalid API Key provided: {key[:8]}{'*' * max(0, len(key) - 12)}{key[-4:]}",
                kind="authentication_error",
            )
        version = request.header("stripe-version")
        if version is not None and not _VERSION_PATTERN.match(version):
            raise StripeError(
                400,
                f"Invalid Stripe API version: {version}. Versions look like 2022-11-15 or"
                " 2025-03-31.basil.",
                param="Stripe-Version",
            )
        account = request.header("stripe-account")
        if account is not None and not account.startswith("acct_"):
            raise StripeError(
                403,
                f"The provided key '{key[:8]}{'*' * 12}{key[-4:]}' does not have access to"
                f" account '{account}' (or that account does not exist). Application access may"
                " have been revoked.",
                kind="permission_error",
            )

    def _version(self, request: Request) -> str:
        return request.header("stripe-version") or self.account_api_version

    def _legacy_for(self, request: Request) -> bool:
        return self._is_legacy(self._version(request))

    @staticmethod
    def _is_legacy(version: str) -> bool:
        return version[:10] < BASIL

    # ------------------------------------------------------------------ Appgregator proxy
    def _proxy(self, request: Request, rest: str) -> Response:
        if request.header("x-api-key") != self.appgregator_api_key:
            return Response.json(
                {"error": "Unauthorized", "message": "Missing or invalid x-api-key header."}, 401
            )
        if (
            request.arg("name") != self.appgregator_name
            or request.arg("connection_name") != self.appgregator_connection_name
        ):
            return Response.json(
                {"error": "Bad Request", "message": "Unknown integration name or connection_name."},
                400,
            )
        query = [(k, v) for k, v in request.query if k not in ("name", "connection_name")]
        if not self.appgregator_passes_parameters:
            query = [(k, v) for k, v in query if k == "limit"]
        resource = rest.strip("/").replace("invoices-items", "invoiceitems", 1)
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        headers["stripe-version"] = LEGACY_VERSION
        inner = Request(request.method, f"/v1/{resource}", query, headers, request.body)
        for method, pattern, handler in self._routes:
            match = pattern.match(inner.path)
            if match and method == inner.method:
                try:
                    return handler(inner, **match.groupdict())
                except StripeError as error:
                    return self._error(error, LEGACY_VERSION)
        with self._lock:
            self.unmatched.append(f"{request.method} {request.path}")
        return Response.json(
            {"error": "Not Found", "message": f"The proxy has no route for /stripe/{rest}."}, 404
        )

    # ------------------------------------------------------------------ list helpers
    def _check_params(self, pairs: Sequence[tuple[str, str]], allowed: frozenset[str]) -> None:
        for key, _ in pairs:
            if key not in allowed and not (key.startswith("metadata[") and "metadata" in allowed):
                raise StripeError(400, f"Received unknown parameter: {key}", param=key)

    def _list_query(
        self, request: Request, key_of: Callable[[str], int | None], resource: str
    ) -> _ListQuery:
        raw = request.arg("limit") or "10"
        try:
            limit = int(raw)
        except ValueError:
            raise StripeError(400, f"Invalid integer: {raw}", param="limit") from None
        if limit < 1:
            raise StripeError(
                400,
                f"This value must be greater than or equal to 1 (it currently is '{limit}').",
                param="limit",
            )
        if limit > self.max_limit:
            raise StripeError(
                400,
                f"This value must be less than or equal to {self.max_limit} (it currently is"
                f" '{limit}').",
                param="limit",
            )
        low, high = -(2**62), 2**62
        for key, value in request.query:
            if key not in _CREATED_PARAMS:
                continue
            try:
                stamp = int(value)
            except ValueError:
                raise StripeError(400, f"Invalid integer: {value}", param=key) from None
            if key == "created":
                low, high = max(low, stamp), min(high, stamp + 1)
            elif key == "created[gt]":
                low = max(low, stamp + 1)
            elif key == "created[gte]":
                low = max(low, stamp)
            elif key == "created[lt]":
                high = min(high, stamp)
            else:
                high = min(high, stamp + 1)
        cursors: list[int | None] = []
        for param in ("starting_after", "ending_before"):
            cursor = request.arg(param)
            cursor_key = key_of(cursor) if cursor else None
            if cursor and cursor_key is None:
                raise StripeError(
                    404, f"No such {resource}: '{cursor}'", param=param, code="resource_missing"
                )
            cursors.append(cursor_key)
        if cursors[0] is not None and cursors[1] is not None:
            raise StripeError(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
                param="ending_before",
            )
        return _ListQuery(limit, low, high, cursors[0], cursors[1])

    @staticmethod
    def _page(
        keys: Sequence[int], query: _ListQuery, accept: Callable[[int], bool]
    ) -> tuple[list[int], bool]:
        """One newest-first page of ascending ``keys`` (bisect, then walk) and ``has_more``."""
        lo = bisect.bisect_left(keys, _sort_key(max(query.low, 0), 0)) if query.low > 0 else 0
        hi = len(keys)
        if query.high < 2**62:
            hi = bisect.bisect_left(keys, _sort_key(max(query.high, 0), 0))
        picked: list[int] = []
        if query.ending_before is not None:
            position = max(lo, bisect.bisect_right(keys, query.ending_before))
            while position < hi and len(picked) <= query.limit:
                if accept(keys[position]):
                    picked.append(keys[position])
                position += 1
            has_more = len(picked) > query.limit
            return list(reversed(picked[: query.limit])), has_more
        if query.starting_after is not None:
            hi = min(hi, bisect.bisect_left(keys, query.starting_after))
        position = hi - 1
        while position >= lo and len(picked) <= query.limit:
            if accept(keys[position]):
                picked.append(keys[position])
            position -= 1
        return picked[: query.limit], len(picked) > query.limit

    def _list_body(
        self, url: str, items: list[bytes], has_more: bool, request: Request
    ) -> Response:
        body = b"".join(
            (
                b'{"object":"list","data":[',
                b",".join(items),
                b'],"has_more":',
                b"true" if has_more else b"false",
                b',"url":',
                orjson.dumps(url),
                b"}",
            )
        )
        return self._json(body, request)

    # ------------------------------------------------------------------ handlers
    def _list_invoices(self, request: Request) -> Response:
        self._check_params(
            request.query, _LIST_PARAMS | _CREATED_PARAMS | {"status", "customer", "subscription"}
        )
        status = request.arg("status")
        if status is not None and status not in INVOICE_STATUSES:
            raise StripeError(
                400,
                f"Invalid status: must be one of {', '.join(INVOICE_STATUSES)}",
                param="status",
            )
        customer = request.arg("customer")
        subscription = request.arg("subscription")
        filtered = status is not None or customer is not None or subscription is not None
        query = self._list_query(request, self._invoice_key, "invoice")

        def accept(key: int) -> bool:
            invoice_id = stripe_id("in", key & _NUMBER_MASK)
            if invoice_id in self._deleted:
                return False
            if not filtered:
                return True
            model = self._lookup(invoice_id)
            return (
                model is not None
                and status in (None, model.status)
                and customer in (None, model.customer)
                and subscription in (None, model.subscription_id)
            )

        with self._state:
            keys, has_more = self._page(self._keys, query, accept)
            models = [self._lookup(stripe_id("in", key & _NUMBER_MASK)) for key in keys]
        legacy = self._legacy_for(request)
        items = [self._rendered(model, legacy) for model in models if model is not None]
        return self._list_body("/v1/invoices", items, has_more, request)

    def _get_invoice(self, request: Request, invoice_id: str) -> Response:
        self._check_params(request.query, _LIST_PARAMS & {"expand[]"})
        model = self._require(invoice_id)
        return self._json(self._rendered(model, self._legacy_for(request)), request)

    def _list_lines(self, request: Request, invoice_id: str) -> Response:
        self._check_params(request.query, _LIST_PARAMS)
        model = self._require(invoice_id, param="invoice")
        legacy = self._legacy_for(request)
        with self._state:
            lines = list(model.lines)
            positions = {line.id: position for position, line in enumerate(lines)}
            query = self._list_query(request, positions.get, "invoice line item")
            if query.ending_before is not None:
                end = query.ending_before
                start = max(0, end - query.limit)
                has_more = start > 0
            else:
                start = 0 if query.starting_after is None else query.starting_after + 1
                end = min(len(lines), start + query.limit)
                has_more = end < len(lines)
            items = [
                orjson.dumps(render_line(line, model, legacy=legacy)) for line in lines[start:end]
            ]
        return self._list_body(f"/v1/invoices/{invoice_id}/lines", items, has_more, request)

    def _list_events(self, request: Request) -> Response:
        if not self.events_available:
            raise StripeError(
                403,
                "The provided key 'rk_test_****' does not have the required permissions for this"
                " endpoint on account 'acct_1SbxSandbox'. Having the 'rak_event_read' permission"
                " would allow this request to continue.",
                kind="permission_error",
            )
        self._check_params(
            request.query, _LIST_PARAMS | _CREATED_PARAMS | {"type", "types[]", "delivery_success"}
        )
        types = request.args("types[]") + request.args("type")
        for pattern in types:
            if "*" in pattern and not pattern.endswith(".*"):
                raise StripeError(
                    400,
                    f"Invalid event type: {pattern}. Wildcards are only allowed at the end.",
                    param="type",
                )

        def matches(kind: str) -> bool:
            return not types or any(
                kind == pattern or (pattern.endswith(".*") and kind.startswith(pattern[:-1]))
                for pattern in types
            )

        with self._state:
            self._expire_events()
            events = {event.key: event for event in self._events}
            by_id = {event.id: event.key for event in self._events}
            query = self._list_query(request, by_id.get, "event")
            keys, has_more = self._page(
                self._event_keys, query, lambda key: matches(events[key].type)
            )
        return self._list_body("/v1/events", [events[key].body for key in keys], has_more, request)

    def _create_invoice(self, request: Request) -> Response:
        form = request.form()
        self._check_params(
            form,
            frozenset(
                {
                    "customer",
                    "currency",
                    "description",
                    "collection_method",
                    "days_until_due",
                    "auto_advance",
                    "pending_invoice_items_behavior",
                    "expand[]",
                    "metadata",
                }
            ),
        )
        fields = dict(form)
        customer = fields.get("customer")
        if not customer:
            raise StripeError(
                400, "Missing required param: customer.", param="customer", code="parameter_missing"
            )
        if not customer.startswith("cus_"):
            raise StripeError(
                400, f"No such customer: '{customer}'", param="customer", code="resource_missing"
            )
        collection = fields.get("collection_method", "charge_automatically")
        if collection not in ("charge_automatically", "send_invoice"):
            raise StripeError(
                400,
                "Invalid collection_method: must be one of charge_automatically or send_invoice",
                param="collection_method",
            )
        days = fields.get("days_until_due")
        if collection == "send_invoice" and not days:
            raise StripeError(
                400,
                "Missing required param: days_until_due (required when collection_method is"
                " send_invoice).",
                param="days_until_due",
                code="parameter_missing",
            )
        if days is not None and not days.isdigit():
            raise StripeError(400, f"Invalid integer: {days}", param="days_until_due")
        invoice_id = self.add_invoice(
            customer=customer,
            currency=fields.get("currency", "usd"),
            lines=0,
            metadata={k[len("metadata[") : -1]: v for k, v in form if k.startswith("metadata[")},
            collection_method=collection,
            days_until_due=int(days) if days else None,
            description=fields.get("description"),
        )
        return self._json(
            self._rendered(self._require(invoice_id), self._legacy_for(request)), request
        )

    def _create_invoice_item(self, request: Request) -> Response:
        form = request.form()
        self._check_params(
            form,
            frozenset(
                {
                    "customer",
                    "invoice",
                    "amount",
                    "unit_amount",
                    "quantity",
                    "currency",
                    "description",
                    "expand[]",
                    "metadata",
                }
            ),
        )
        fields = dict(form)
        customer = fields.get("customer")
        if not customer:
            raise StripeError(
                400, "Missing required param: customer.", param="customer", code="parameter_missing"
            )
        invoice_id = fields.get("invoice")
        if not invoice_id:
            raise StripeError(
                400,
                "Missing required param: invoice. (The sandbox keeps no pending invoice items:"
                " create the draft invoice first.)",
                param="invoice",
                code="parameter_missing",
            )
        model = self._require(invoice_id, param="invoice")
        if customer != model.customer:
            raise StripeError(
                400,
                f"The invoice {invoice_id} belongs to customer {model.customer}, not {customer}.",
                param="invoice",
            )
        currency = fields.get("currency", model.currency).lower()
        if currency != model.currency:
            raise StripeError(
                400,
                f"The currency of the invoice item ({currency}) must match the currency of the"
                f" invoice ({model.currency}).",
                param="currency",
            )
        try:
            quantity = int(fields.get("quantity", "1"))
            if "amount" in fields:
                amount = int(fields["amount"])
            elif "unit_amount" in fields:
                amount = int(fields["unit_amount"]) * quantity
            else:
                raise StripeError(
                    400,
                    "Missing required param: amount (or unit_amount).",
                    param="amount",
                    code="parameter_missing",
                )
        except ValueError:
            raise StripeError(
                400, "Invalid integer in amount or quantity.", param="amount"
            ) from None
        if quantity < 1:
            raise StripeError(400, "Quantity must be at least 1.", param="quantity")
        line = self._add_line(invoice_id, amount, fields.get("description", ""), quantity)
        with self._state:
            item = _invoice_item(line, self._require(invoice_id), self.now())
        return self._json(orjson.dumps(item), request)

    def _action(self, action: str) -> Callable[..., Response]:
        allowed = {
            "finalize": frozenset({"auto_advance", "expand[]"}),
            "pay": frozenset({"paid_out_of_band", "payment_method", "source", "expand[]"}),
        }.get(action, frozenset({"expand[]"}))

        def handle(request: Request, invoice_id: str) -> Response:
            self._check_params(request.form(), allowed)
            self._require(invoice_id)
            getattr(self, action)(invoice_id)
            model = self._require(invoice_id)
            return self._json(self._rendered(model, self._legacy_for(request)), request)

        return handle

    def _delete_invoice(self, request: Request, invoice_id: str) -> Response:
        self._require(invoice_id)
        self.delete_draft(invoice_id)
        return self._json(
            orjson.dumps({"id": invoice_id, "object": "invoice", "deleted": True}), request
        )


def _customer_number(customer: str | None) -> int | None:
    """The pool number of a sandbox customer id, for its email and name."""
    if customer is None:
        return None
    number = id_number(customer, "cus")
    return number if number is not None else zlib.crc32(customer.encode()) % CUSTOMER_POOL + 1


def _invoice_item(line: LineModel, invoice: InvoiceModel, now: int) -> dict[str, Any]:
    """The ``invoiceitem`` object behind a one-off line."""
    return {
        "id": line.invoice_item_id,
        "object": "invoiceitem",
        "amount": line.amount,
        "currency": invoice.currency,
        "customer": invoice.customer,
        "date": now,
        "description": line.description,
        "discountable": True,
        "discounts": [],
        "invoice": invoice.id,
        "livemode": False,
        "metadata": {},
        "period": {"end": line.period_end, "start": line.period_start},
        "proration": False,
        "quantity": line.quantity,
        "subscription": None,
        "tax_rates": [],
        "test_clock": None,
        "unit_amount": line.unit_amount,
        "unit_amount_decimal": line.unit_amount_decimal,
    }
