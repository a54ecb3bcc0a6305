"""A stateful fake of Stripe's invoice API (and of the Appgregator proxy in front of it).

Faithful where the connector depends on it: lists newest first with ``limit`` ≤ 100,
``starting_after``/``ending_before`` and ``created[gt|gte|lt|lte]``; at most ten lines embedded
with ``has_more`` and the rest from ``/v1/invoices/{id}/lines``; ``invoice.*`` events kept 30 days
with ``data.object`` in the account's default API version; the response shape following the
``Stripe-Version`` header (legacy before 2025-03-31, basil from then on); Stripe's error bodies.

The Appgregator proxy is served under ``/stripe/...`` as a passthrough of ``/v1/...``: it needs an
``x-api-key`` header plus ``name`` and ``connection_name`` query parameters on every request
(a missing or wrong key answers 401 ``{"error": "Unauthorized"}``, missing or wrong names 400
``{"error": "Unknown integration or connection"}``) and always answers in the 2022-era shape.
With ``appgregator_passes_parameters = False`` it drops every parameter but ``limit``.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from invoice_source.sandbox.server import App, Request, Response
from invoice_source.sandbox.stripe_data import (
    InvoiceModel,
    LineModel,
    copy_model,
    generate_invoice,
    make_line,
    render_invoice,
    render_line,
    stripe_id,
)

BASIL = "2025-03-31"
EVENT_RETENTION_SECONDS = 30 * 86_400
DEFAULT_API_KEY = "sk_test_sandbox_4eC39HqLyjWDarjtT1zdp7dc"
_LIST_PARAMS = {"limit", "starting_after", "ending_before", "expand[]"}
_CREATED_PARAMS = {"created", "created[gt]", "created[gte]", "created[lt]", "created[lte]"}
_ADDED_NUMBER_BASE = 10**9


class StripeError(Exception):
    """Raised by handlers; rendered as Stripe's error body."""

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
        self.status, self.message, self.kind, self.param, self.code = (
            status,
            message,
            kind,
            param,
            code,
        )


class StripeApp(App):
    """The Stripe sandbox: state, seeded data and HTTP routes."""

    name = "stripe"

    def __init__(
        self,
        *,
        seed: int = 7,
        api_key: str = DEFAULT_API_KEY,
        appgregator_api_key: str = "ag_sandbox_key_7f3a9c",
        appgregator_name: str = "invoice-sync",
        appgregator_connection_name: str = "stripe-sandbox",
        account_api_version: str = "2022-11-15",
        clock: Callable[[], int] | None = None,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.api_key = api_key
        self.appgregator_api_key = appgregator_api_key
        self.appgregator_name = appgregator_name
        self.appgregator_connection_name = appgregator_connection_name
        self.account_api_version = account_api_version
        self._clock = clock or (lambda: int(time.time()))
        self._clock_offset = 0
        self.events_available = True
        self.appgregator_passes_parameters = True
        self.max_limit = 100
        self._state_lock = threading.RLock()
        self._keys: list[tuple[int, str]] = []  # (created, id), ascending
        self._seeded: dict[str, tuple[int, int]] = {}  # id -> (index, created)
        self._models: dict[str, InvoiceModel] = {}  # invoices created or changed since seeding
        self._deleted: set[str] = set()
        self._events: list[dict[str, Any]] = []
        self._event_numbers = itertools.count(1)
        self._numbers = itertools.count(_ADDED_NUMBER_BASE)
        self._cache: OrderedDict[tuple[str, bool], InvoiceModel] = OrderedDict()
        self._request_ids = itertools.count(1)
        self._seeded_at = self.now()
        self._routes_for("/v1")
        self.route("GET", r"/stripe/(?P<rest>.*)", self._proxy)
        self.route("POST", r"/stripe/(?P<rest>.*)", self._proxy)
        self.route("DELETE", r"/stripe/(?P<rest>.*)", self._proxy)

    # ----------------------------------------------------------------- clock and config
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

    # ----------------------------------------------------------------- seeding and state
    def seed_invoices(self, n: int, *, start: int | None = None, end: int | None = None) -> None:
        """Add ``n`` deterministic invoices created over ``[start, end)`` (default: 2 years)."""
        now = self.now()
        self._seeded_at = now
        start = now - 730 * 86_400 if start is None else start
        end = now - 86_400 if end is None else end
        span = max(1, end - start)
        offset = len(self._seeded)
        new_keys = []
        for i in range(n):
            index = offset + i + 1
            created = start + (i * span) // max(1, n)
            invoice_id = stripe_id("in", index)
            self._seeded[invoice_id] = (index, created)
            new_keys.append((created, invoice_id))
        with self._state_lock:
            self._keys = sorted(self._keys + new_keys)

    def _model(self, invoice_id: str) -> InvoiceModel | None:
        if invoice_id in self._deleted:
            return None
        model = self._models.get(invoice_id)
        if model is not None:
            return model
        seeded = self._seeded.get(invoice_id)
        if seeded is None:
            return None
        key = (invoice_id, False)
        cached = self._cache.get(key)
        if cached is None:
            cached = generate_invoice(self.seed, seeded[0], seeded[1], self._seeded_at)
            with self._state_lock:
                self._cache[key] = cached
                if len(self._cache) > 5000:
                    self._cache.popitem(last=False)
        return cached

    def _mutable(self, invoice_id: str) -> InvoiceModel:
        with self._state_lock:
            model = self._model(invoice_id)
            if model is None:
                raise StripeError(
                    404, f"No such invoice: '{invoice_id}'", param="id", code="resource_missing"
                )
            if invoice_id not in self._models:
                model = copy_model(model)
                self._models[invoice_id] = model
            return model

    def get(self, invoice_id: str) -> dict[str, Any] | None:
        """The invoice as the account's default API version renders it (None when deleted)."""
        model = self._model(invoice_id)
        if model is None:
            return None
        return render_invoice(model, legacy=self._is_legacy(self.account_api_version))

    def invoice_ids(self) -> list[str]:
        """Ids of every invoice that is not deleted, oldest first."""
        return [invoice_id for _, invoice_id in self._keys if invoice_id not in self._deleted]

    def line_count(self, invoice_id: str) -> int:
        """Number of lines of an invoice."""
        model = self._model(invoice_id)
        return 0 if model is None else len(model.lines)

    def count(self) -> int:
        """Invoices that are not deleted."""
        return len(self._keys) - len(self._deleted)

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
    ) -> str:
        """Create an invoice (walking the state machine to ``status``) and return its id."""
        import random

        number = next(self._numbers)
        rng = random.Random(self.seed * 7919 + number)
        created = self.now() if created is None else created
        if isinstance(lines, int):
            line_models = [
                make_line(
                    rng,
                    number=next(self._numbers),
                    currency=currency,
                    created=created,
                    subscription_id=None,
                )
                for _ in range(lines)
            ]
        else:
            line_models = [
                make_line(
                    rng,
                    number=next(self._numbers),
                    currency=currency,
                    created=created,
                    subscription_id=None,
                    unit_amount=int(spec["amount"]),  # type: ignore[call-overload]
                    quantity=1,
                    description=str(spec.get("description", "")),
                    with_extras=False,
                )
                for spec in lines
            ]
            for line, spec in zip(line_models, lines, strict=True):
                quantity = int(spec.get("quantity", 1))  # type: ignore[call-overload]
                if quantity > 1 and line.unit_amount % quantity == 0:
                    line.unit_amount //= quantity
                    line.quantity = quantity
        invoice_id = stripe_id("in", number)
        model = InvoiceModel(
            id=invoice_id,
            created=created,
            customer=customer or stripe_id("cus", rng.randint(1, 2500)),
            customer_email="billing@example.com",
            currency=currency.lower(),
            status="draft",
            collection_method=collection_method,
            lines=line_models,
            metadata=dict(metadata or {}),
            number=None,
            description=None,
            subscription_id=None,
            days_until_due=30 if collection_method == "send_invoice" else None,
        )
        with self._state_lock:
            self._models[invoice_id] = model
            bisect.insort(self._keys, (created, invoice_id))
        self._emit("invoice.created", model)
        if status in ("open", "paid", "void", "uncollectible"):
            self.finalize(invoice_id)
        if status == "paid":
            self.pay(invoice_id)
        elif status == "void":
            self.void(invoice_id)
        elif status == "uncollectible":
            self.mark_uncollectible(invoice_id)
        return invoice_id

    def finalize(self, invoice_id: str) -> None:
        """draft -> open."""
        with self._state_lock:
            model = self._mutable(invoice_id)
            if model.status != "draft":
                raise StripeError(
                    400,
                    "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                    code="invoice_not_editable",
                )
            previous = {"status": "draft", "number": None}
            model.status, model.finalized_at = "open", self.now()
            model.number = model.number or f"SBX-{invoice_id[-6:]}"
        self._emit("invoice.finalized", model, previous)

    def pay(self, invoice_id: str) -> None:
        """open (or uncollectible) -> paid."""
        with self._state_lock:
            model = self._mutable(invoice_id)
            if model.status not in ("open", "uncollectible"):
                raise StripeError(
                    400,
                    f"Invoice is already {model.status}."
                    if model.status in ("paid", "void")
                    else "You can only pay an invoice that is open or uncollectible.",
                    code="invoice_unexpected_status",
                )
            previous = {"status": model.status, "amount_paid": 0}
            model.status, model.paid_at = "paid", self.now()
        self._emit("invoice.paid", model, previous)
        self._emit("invoice.payment_succeeded", model, previous)

    def void(self, invoice_id: str) -> None:
        """open/uncollectible -> void."""
        with self._state_lock:
            model = self._mutable(invoice_id)
            if model.status not in ("open", "uncollectible"):
                raise StripeError(
                    400,
                    "You can only void an open or uncollectible invoice.",
                    code="invoice_unexpected_status",
                )
            previous = {"status": model.status}
            model.status, model.voided_at = "void", self.now()
        self._emit("invoice.voided", model, previous)

    def mark_uncollectible(self, invoice_id: str) -> None:
        """open -> uncollectible."""
        with self._state_lock:
            model = self._mutable(invoice_id)
            if model.status != "open":
                raise StripeError(
                    400,
                    "You can only mark an open invoice as uncollectible.",
                    code="invoice_unexpected_status",
                )
            previous = {"status": "open"}
            model.status, model.marked_uncollectible_at = "uncollectible", self.now()
        self._emit("invoice.marked_uncollectible", model, previous)

    def delete_draft(self, invoice_id: str) -> None:
        """Delete a draft; it disappears from lists and GET answers 404."""
        with self._state_lock:
            model = self._mutable(invoice_id)
            if model.status != "draft":
                raise StripeError(
                    400, "You can only delete draft invoices.", code="invoice_not_editable"
                )
            self._deleted.add(invoice_id)
        self._emit("invoice.deleted", model)

    def add_line(
        self, invoice_id: str, amount: int, description: str = "", quantity: int = 1
    ) -> str:
        """Add a line to a draft invoice; returns the line id."""
        import random

        with self._state_lock:
            model = self._mutable(invoice_id)
            if model.status != "draft":
                raise StripeError(
                    400,
                    "You can only add invoice items to draft invoices.",
                    code="invoice_not_editable",
                )
            previous = {"subtotal": model.subtotal, "total": model.total}
            line = make_line(
                random.Random(amount),
                number=next(self._numbers),
                currency=model.currency,
                created=self.now(),
                subscription_id=None,
                unit_amount=amount,
                quantity=quantity,
                description=description,
                with_extras=False,
            )
            model.lines.append(line)
        self._emit("invoice.updated", model, previous)
        return line.id

    # PrepBusiness link (invoice_source.sandbox.links.StripeLink)
    def create_external_invoice(
        self,
        *,
        customer: str,
        currency: str,
        lines: list[dict[str, object]],
        metadata: dict[str, str],
        finalize: bool = True,
    ) -> str:
        """Create an invoice for another system (finalized unless asked otherwise)."""
        return self.add_invoice(
            customer=customer,
            currency=currency,
            lines=lines,
            metadata=metadata,
            status="open" if finalize else "draft",
            collection_method="charge_automatically",
        )

    def pay_invoice(self, invoice_id: str) -> None:
        """Pay an open invoice."""
        self.pay(invoice_id)

    def invoice_status(self, invoice_id: str) -> str:
        """The current status (``deleted`` for a deleted draft)."""
        if invoice_id in self._deleted:
            return "deleted"
        model = self._model(invoice_id)
        if model is None:
            raise KeyError(invoice_id)
        return model.status

    def demo_changes(self) -> dict[str, int]:
        """A day of business: payments, voids, finalizations, deletions and new invoices."""
        counts = {
            "paid": 0,
            "voided": 0,
            "uncollectible": 0,
            "finalized": 0,
            "deleted": 0,
            "lines_added": 0,
            "created": 0,
        }
        by_status: dict[str, list[str]] = {}
        for invoice_id in self.invoice_ids():
            model = self._model(invoice_id)
            if model is not None:
                by_status.setdefault(model.status, []).append(invoice_id)
        opened = by_status.get("open", [])
        drafts = by_status.get("draft", [])
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
            self.add_line(invoice_id, amount=2500, description="Rush handling")
            counts["lines_added"] += 1
        for i in range(40):
            lines = 12 + i % 5 if i % 10 == 0 else 1 + i % 6
            status = ("draft", "open", "paid")[i % 3]
            self.add_invoice(
                lines=lines, status=status, currency=("usd", "eur", "jpy", "bhd")[i % 4]
            )
            counts["created"] += 1
        return counts

    # ----------------------------------------------------------------- events
    def _emit(self, kind: str, model: InvoiceModel, previous: dict[str, Any] | None = None) -> None:
        snapshot = render_invoice(model, legacy=self._is_legacy(self.account_api_version))
        event_number = next(self._event_numbers)
        event = {
            "id": stripe_id("evt", event_number),
            "object": "event",
            "api_version": self.account_api_version,
            "created": self.now(),
            "data": {"object": snapshot, "previous_attributes": previous or {}},
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": f"req_sbx{event_number:08d}", "idempotency_key": None},
            "type": kind,
        }
        with self._state_lock:
            self._events.append(event)

    # ----------------------------------------------------------------- HTTP
    def _routes_for(self, prefix: str) -> None:
        self.route("GET", rf"{prefix}/invoices/?", self._list_invoices)
        self.route("POST", rf"{prefix}/invoices/?", self._create_invoice)
        self.route("GET", rf"{prefix}/invoices/(?P<invoice_id>[^/]+)", self._get_invoice)
        self.route("DELETE", rf"{prefix}/invoices/(?P<invoice_id>[^/]+)", self._delete_invoice)
        self.route("GET", rf"{prefix}/invoices/(?P<invoice_id>[^/]+)/lines", self._list_lines)
        for action in ("finalize", "pay", "void", "mark_uncollectible"):
            self.route(
                "POST", rf"{prefix}/invoices/(?P<invoice_id>[^/]+)/{action}", self._action(action)
            )
        self.route("POST", rf"{prefix}/invoiceitems", self._create_invoice_item)
        self.route("GET", rf"{prefix}/events", self._list_events)

    def error_response(self, status: int, message: str) -> Response:
        kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return self._error(StripeError(status, message, kind=kind))

    def _error(self, error: StripeError) -> Response:
        body: dict[str, Any] = {"type": error.kind, "message": error.message}
        if error.param:
            body["param"] = error.param
        if error.code:
            body["code"] = error.code
            body["doc_url"] = f"https://stripe.com/docs/error-codes/{error.code.replace('_', '-')}"
        headers = self._headers()
        if error.status == 429:
            headers["Stripe-Should-Retry"] = "true"
        return Response.json({"error": body}, error.status, headers)

    def _headers(self) -> dict[str, str]:
        return {
            "Request-Id": f"req_sbx{next(self._request_ids):010d}",
            "Stripe-Version": self.account_api_version,
        }

    def dispatch(self, request: Request) -> Response:
        if not request.path.startswith("/stripe/"):
            failure = self._authenticate(request)
            if failure is not None:
                if self.record_requests:
                    self.requests.append(request)
                return failure
        try:
            return super().dispatch(request)
        except StripeError as error:
            return self._error(error)

    def _authenticate(self, request: Request) -> Response | None:
        header = request.header("authorization") or ""
        key = ""
        if header.lower().startswith("bearer "):
            key = header[7:].strip()
        elif header.lower().startswith("basic "):
            import base64

            try:
                key = base64.b64decode(header[6:]).decode().split(":")[0]
            except ValueError:
                key = ""
        if not key:
            return self._error(
                StripeError(
                    401,
                    "You did not provide an API key. You need to provide your API key in the"
                    " Authorization header, using Bearer auth (e.g. 'Authorization: Bearer"
                    " YOUR_SECRET_KEY').",
                    kind="authentication_error",
                )
            )
        if key != self.api_key:
            return self._error(
                StripeError(
                    401,
                    f"Invalid API Key provided: {key[:8]}{'*' * 12}{key[-4:]}",
                    kind="authentication_error",
                )
            )
        return None

    def _legacy_for(self, request: Request) -> bool:
        if request.path.startswith("/stripe/"):
            return True
        version = request.header("stripe-version") or self.account_api_version
        return self._is_legacy(version)

    @staticmethod
    def _is_legacy(version: str) -> bool:
        return version[:10] < BASIL

    def _proxy(self, request: Request, rest: str) -> Response:
        if request.header("x-api-key") != self.appgregator_api_key:
            return Response.json({"error": "Unauthorized"}, 401)
        if (
            request.arg("name") != self.appgregator_name
            or request.arg("connection_name") != self.appgregator_connection_name
        ):
            return Response.json({"error": "Unknown integration or connection"}, 400)
        query = [(k, v) for k, v in request.query if k not in ("name", "connection_name")]
        if not self.appgregator_passes_parameters:
            query = [(k, v) for k, v in query if k == "limit"]
        inner = Request(
            request.method, f"/v1/{rest}".rstrip("/"), query, request.headers, request.body
        )
        for method, pattern, handler in self._routes:
            match = pattern.match(inner.path)
            if match and method == inner.method and not pattern.pattern.startswith("^/stripe"):
                try:
                    return handler(inner, **match.groupdict())
                except StripeError as error:
                    return self._error(error)
        return Response.json({"error": f"Unknown resource: {rest}"}, 404)

    def _check_params(self, request: Request, allowed: set[str]) -> None:
        for key, _ in request.query:
            if key not in allowed:
                raise StripeError(400, f"Received unknown parameter: {key}", param=key)

    def _limit(self, request: Request) -> int:
        raw = request.arg("limit", "10") or "10"
        try:
            limit = int(raw)
        except ValueError:
            raise StripeError(400, f"Invalid integer: {raw}", param="limit") from None
        if not 1 <= limit <= self.max_limit:
            raise StripeError(
                400,
                f"This value must be less than or equal to {self.max_limit} (it currently is"
                f" '{limit}').",
                param="limit",
            )
        return limit

    def _created_range(self, request: Request) -> tuple[int, int]:
        low, high = -(2**62), 2**62
        for key, value in request.query:
            if key not in _CREATED_PARAMS:
                continue
            try:
                ts = int(value)
            except ValueError:
                raise StripeError(400, f"Invalid integer: {value}", param=key) from None
            if key == "created":
                low, high = max(low, ts), min(high, ts + 1)
            elif key == "created[gt]":
                low = max(low, ts + 1)
            elif key == "created[gte]":
                low = max(low, ts)
            elif key == "created[lt]":
                high = min(high, ts)
            elif key == "created[lte]":
                high = min(high, ts + 1)
        return low, high

    def _page(
        self,
        keys: list[tuple[int, str]],
        request: Request,
        *,
        exists: Callable[[str], bool],
        key_of: Callable[[str], tuple[int, str] | None],
        resource: str,
    ) -> tuple[list[str], bool]:
        """Ids of one newest-first page out of ascending ``keys`` plus ``has_more``."""
        limit = self._limit(request)
        low, high = self._created_range(request)
        lo = bisect.bisect_left(keys, (low, ""))
        hi = bisect.bisect_left(keys, (high, ""))
        after, before = request.arg("starting_after"), request.arg("ending_before")
        if after:
            key = key_of(after)
            if key is None:
                raise StripeError(
                    404,
                    f"No such {resource}: '{after}'",
                    param="starting_after",
                    code="resource_missing",
                )
            hi = min(hi, bisect.bisect_left(keys, key))
        if before:
            key = key_of(before)
            if key is None:
                raise StripeError(
                    404,
                    f"No such {resource}: '{before}'",
                    param="ending_before",
                    code="resource_missing",
                )
            lo = max(lo, bisect.bisect_right(keys, key))
            picked: list[str] = []
            position = lo
            while position < hi and len(picked) <= limit:
                if exists(keys[position][1]):
                    picked.append(keys[position][1])
                position += 1
            has_more = len(picked) > limit
            return list(reversed(picked[:limit])), has_more
        picked = []
        position = hi - 1
        while position >= lo and len(picked) <= limit:
            if exists(keys[position][1]):
                picked.append(keys[position][1])
            position -= 1
        return picked[:limit], len(picked) > limit

    def _list_body(self, url: str, items: list[Any], has_more: bool) -> Response:
        return Response(
            200,
            b'{"object":"list","data":['
            + b",".join(item if isinstance(item, bytes) else orjson.dumps(item) for item in items)
            + b'],"has_more":'
            + (b"true" if has_more else b"false")
            + b',"url":'
            + orjson.dumps(url)
            + b"}",
            {"Content-Type": "application/json", **self._headers()},
        )

    def _list_invoices(self, request: Request) -> Response:
        self._check_params(request, _LIST_PARAMS | _CREATED_PARAMS | {"status", "customer"})
        status, customer = request.arg("status"), request.arg("customer")
        legacy = self._legacy_for(request)

        def exists(invoice_id: str) -> bool:
            if invoice_id in self._deleted:
                return False
            if status is None and customer is None:
                return True
            model = self._model(invoice_id)
            return (
                model is not None
                and (status in (None, model.status))
                and (customer in (None, model.customer))
            )

        with self._state_lock:
            keys = self._keys
        ids, has_more = self._page(
            keys, request, exists=exists, key_of=self._key_of, resource="invoice"
        )
        items = []
        for invoice_id in ids:
            model = self._model(invoice_id)
            if model is not None:
                items.append(render_invoice(model, legacy=legacy))
        return self._list_body("/v1/invoices", items, has_more)

    def _key_of(self, invoice_id: str) -> tuple[int, str] | None:
        model = self._model(invoice_id)
        return None if model is None else (model.created, invoice_id)

    def _get_invoice(self, request: Request, invoice_id: str) -> Response:
        self._check_params(request, {"expand[]"})
        model = self._model(invoice_id)
        if model is None:
            raise StripeError(
                404, f"No such invoice: '{invoice_id}'", param="id", code="resource_missing"
            )
        return Response.json(
            render_invoice(model, legacy=self._legacy_for(request)), 200, self._headers()
        )

    def _list_lines(self, request: Request, invoice_id: str) -> Response:
        self._check_params(request, _LIST_PARAMS)
        model = self._model(invoice_id)
        if model is None:
            raise StripeError(
                404, f"No such invoice: '{invoice_id}'", param="invoice", code="resource_missing"
            )
        limit = self._limit(request)
        lines = model.lines
        ids = [line.id for line in lines]
        start, end = 0, len(lines)
        after, before = request.arg("starting_after"), request.arg("ending_before")
        if after:
            if after not in ids:
                raise StripeError(
                    404,
                    f"No such line item: '{after}'",
                    param="starting_after",
                    code="resource_missing",
                )
            start = ids.index(after) + 1
        if before:
            if before not in ids:
                raise StripeError(
                    404,
                    f"No such line item: '{before}'",
                    param="ending_before",
                    code="resource_missing",
                )
            end = ids.index(before)
            start = max(start, end - limit)
        page: list[LineModel] = lines[start:end][:limit]
        has_more = (start + len(page) < end) if not before else start > 0
        legacy = self._legacy_for(request)
        items = [render_line(line, model, legacy=legacy) for line in page]
        return self._list_body(f"/v1/invoices/{invoice_id}/lines", items, has_more)

    def _list_events(self, request: Request) -> Response:
        if not self.events_available:
            raise StripeError(
                403,
                "The provided key does not have the required permissions for"
                " this endpoint: rak_event_read.",
                kind="permission_error",
            )
        self._check_params(request, _LIST_PARAMS | _CREATED_PARAMS | {"type", "types[]"})
        types = request.args("types[]") + (
            [request.arg("type") or ""] if request.arg("type") else []
        )

        def matches(kind: str) -> bool:
            if not types:
                return True
            return any(kind == t or (t.endswith(".*") and kind.startswith(t[:-1])) for t in types)

        oldest = self.now() - EVENT_RETENTION_SECONDS
        with self._state_lock:
            events = [e for e in self._events if e["created"] >= oldest and matches(e["type"])]
        keys = [(e["created"], e["id"]) for e in events]
        by_id = {e["id"]: e for e in events}
        ids, has_more = self._page(
            keys,
            request,
            exists=lambda _id: True,
            key_of=lambda event_id: (
                (by_id[event_id]["created"], event_id) if event_id in by_id else None
            ),
            resource="event",
        )
        return self._list_body("/v1/events", [by_id[i] for i in ids], has_more)

    def _create_invoice(self, request: Request) -> Response:
        form = dict(request.form())
        customer = form.get("customer")
        if not customer:
            raise StripeError(
                400, "Missing required param: customer.", param="customer", code="parameter_missing"
            )
        metadata = {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")}
        invoice_id = self.add_invoice(
            customer=customer,
            currency=form.get("currency", "usd"),
            lines=0,
            metadata=metadata,
            collection_method=form.get("collection_method", "charge_automatically"),
        )
        return Response.json(self._render(invoice_id, request), 200, self._headers())

    def _render(self, invoice_id: str, request: Request) -> dict[str, Any]:
        model = self._model(invoice_id)
        assert model is not None
        return render_invoice(model, legacy=self._legacy_for(request))

    def _create_invoice_item(self, request: Request) -> Response:
        form = dict(request.form())
        invoice_id = form.get("invoice")
        if not invoice_id:
            raise StripeError(
                400,
                "This sandbox needs an invoice for every invoice item.",
                param="invoice",
                code="parameter_missing",
            )
        try:
            quantity = int(form.get("quantity", "1"))
            amount = (
                int(form["amount"]) if "amount" in form else int(form["unit_amount"]) * quantity
            )
        except (KeyError, ValueError):
            raise StripeError(400, "Missing or invalid amount.", param="amount") from None
        line_id = self.add_line(invoice_id, amount, form.get("description", ""), 1)
        return Response.json(
            {
                "id": line_id.replace("il_", "ii_"),
                "object": "invoiceitem",
                "amount": amount,
                "invoice": invoice_id,
            },
            200,
            self._headers(),
        )

    def _action(self, action: str) -> Callable[..., Response]:
        def handle(request: Request, invoice_id: str) -> Response:
            getattr(self, action)(invoice_id)
            return Response.json(self._render(invoice_id, request), 200, self._headers())

        return handle

    def _delete_invoice(self, request: Request, invoice_id: str) -> Response:
        self.delete_draft(invoice_id)
        return Response.json(
            {"id": invoice_id, "object": "invoice", "deleted": True}, 200, self._headers()
        )
