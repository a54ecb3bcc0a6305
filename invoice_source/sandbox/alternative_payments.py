"""A stateful fake of the Alternative Payments Invoices API, served over real HTTP by the sandbox.

What it does, and so what the connector can rely on being tested against:

- ``POST /oauth/token``: OAuth2 client credentials (HTTP Basic ``client_id:client_secret``, or the
  two in the form body; form ``grant_type=client_credentials``; optional space-separated
  ``scope``). Answers ``{access_token, expires_in, token_type: "Bearer", scope}``. Bad
  credentials get 403 ``invalid_client``, an unknown scope 400 ``invalid_scope``. Tokens expire
  after ``token_lifetime_seconds`` by the injectable ``clock``.
- Every invoice endpoint wants a bearer token: missing or unknown -> 401 ``unauthorized`` /
  ``invalid_token``, expired -> 401 ``token_expired``; reads need scope ``read`` or
  ``invoices:read``, writes ``write`` or ``invoices:write``, else 403 ``insufficient_scope``.
- ``GET /invoices``: newest first (``created_at`` then ``id``, descending). Keyset cursors,
  opaque (base64 of a binary key, like the vendor's), so pages stay stable while new invoices
  arrive; ``after`` <- ``end_cursor``, ``before`` <- ``start_cursor``. ``limit`` 1..100 (default
  100). Filters ``created_at_start`` (inclusive) / ``created_at_end`` (exclusive), due-date
  range likewise, ``customer_id``, ``invoice_number``, ``status``; a malformed one is a 400 with
  ``validation_errors``. Archived invoices are left out unless ``status=archived`` is asked for.
- ``POST /invoices`` (201, 422 with ``validation_errors``), ``GET /invoices/{id}`` (archived
  invoices come back with status ``archived``), ``DELETE /invoices/{id}`` archives,
  ``POST /invoices/{id}/restore`` puts back the status it had; both answer 422 when the invoice
  is not in the right state. ``/payment-link`` and signed, expiring ``/pdf-link`` URLs (served
  at ``/invoices/{id}/pdf`` and ``/pay/{id}``).
- Errors use the vendor's ``HttpError`` body: ``{"code", "message", "validation_errors"}``.

Money is sent as JSON numbers in major units (``sub_total``, ``total``, line ``amount``), written
from exact decimals. ``sub_total`` is the sum of ``amount * quantity`` over the lines and
``total`` equals it, except for the one invoice in ``deliberate_mismatches["total_mismatch"]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import orjson

from invoice_source.sandbox.server import App, Request, Response

READ_SCOPES = frozenset({"read", "invoices:read"})
WRITE_SCOPES = frozenset({"write", "invoices:write"})
ALL_SCOPES = frozenset({*READ_SCOPES, *WRITE_SCOPES})

STATUSES = ("draft", "open", "processing", "overdue", "paid", "void", "archived")
"""The sandbox's status values. ``processing`` (a payment in flight) stands in for a value the
connector does not know in advance."""
UNPAID_STATUSES = frozenset({"open", "overdue"})
MAX_LIMIT = 100
DEFAULT_LIMIT = 100
PDF_LINK_LIFETIME_SECONDS = 300

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_CURSOR_PREFIX = b"\x81\xa1k\xc4"
_DESCRIPTIONS = (
    "Pallet storage",
    "FBA prep: labeling",
    "FBA prep: poly bagging",
    "Bundling",
    "Inbound receiving",
    "Outbound shipment",
    "Kitting",
    "Returns processing",
    "Consulting hours",
    "Monthly platform fee",
    "Freight surcharge",
    "Inspection",
)
_MEMOS = (None, None, "Net 30", "Thank you for your business", "PO 4471", "Quarterly retainer")


@dataclass
class SandboxInvoice:
    """One invoice of the sandbox's state."""

    id: str
    invoice_number: str
    customer_id: str
    currency: str
    status: str
    created_at: datetime
    due_date: date
    line_items: list[dict[str, Any]]
    sub_total: Decimal
    total: Decimal
    last_notification_at: datetime | None = None
    memo: str | None = None
    exclude_from_autopay: bool = False
    status_before_archive: str | None = None

    @property
    def sort_key(self) -> tuple[int, str]:
        """Position in the list: ``created_at`` (microseconds) then ``id``."""
        return _micros(self.created_at), self.id

    def to_json(self) -> dict[str, Any]:
        """The API's JSON shape; amounts are exact JSON numbers."""
        return {
            "id": self.id,
            "invoice_number": self.invoice_number,
            "customer_id": self.customer_id,
            "currency": self.currency,
            "status": self.status,
            "created_at": _rfc3339(self.created_at),
            "due_date": self.due_date.isoformat(),
            "last_notification_at": (
                _rfc3339(self.last_notification_at) if self.last_notification_at else None
            ),
            "memo": self.memo,
            "sub_total": _number(self.sub_total),
            "total": _number(self.total),
            "line_items": [
                {
                    "amount": _number(line["amount"]),
                    "description": line["description"],
                    "quantity": line["quantity"],
                }
                for line in self.line_items
            ],
        }


@dataclass
class _Grant:
    client_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass
class _ListQuery:
    limit: int = DEFAULT_LIMIT
    after: tuple[int, str] | None = None
    before: tuple[int, str] | None = None
    filters: dict[str, Any] = field(default_factory=dict)


class AlternativePaymentsApp(App):
    """The Alternative Payments sandbox: tokens, invoices, cursors, filters, archive/restore.

    ``clock`` gives epoch seconds (default ``time.time``); tests pass a fake one to expire
    tokens and signed links without waiting. Seeded data is deterministic for a given ``seed``
    and day: dates are relative to the clock's current day.
    """

    name = "alternative_payments"

    def __init__(
        self,
        *,
        seed: int = 7,
        client_id: str = "ap_client_sandbox",
        client_secret: str = "ap_secret_sandbox_9d8e7f",
        token_lifetime_seconds: int = 3600,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime_seconds = token_lifetime_seconds
        self.allowed_scopes: frozenset[str] = ALL_SCOPES
        self.pdf_link_lifetime_seconds = PDF_LINK_LIFETIME_SECONDS
        self.clock: Callable[[], float] = clock or time.time
        self.invoices: dict[str, SandboxInvoice] = {}
        self.deliberate_mismatches: dict[str, str] = {}
        self.tokens_issued = 0
        self._grants: dict[str, _Grant] = {}
        self._state_lock = threading.RLock()
        self._rng = random.Random(seed)
        self._customers: list[str] = []
        self._invoice_counter = 0
        self._demo_round = 0
        self._signing_key = hashlib.sha256(f"ap-sandbox-pdf-{seed}".encode()).digest()
        self.route("POST", "/oauth/token", self._token)
        self.route("GET", "/invoices", self._list)
        self.route("POST", "/invoices", self._create)
        self.route("GET", "/invoices/(?P<invoice_id>[^/]+)", self._get)
        self.route("DELETE", "/invoices/(?P<invoice_id>[^/]+)", self._archive)
        self.route("POST", "/invoices/(?P<invoice_id>[^/]+)/restore", self._restore)
        self.route("GET", "/invoices/(?P<invoice_id>[^/]+)/payment-link", self._payment_link)
        self.route("GET", "/invoices/(?P<invoice_id>[^/]+)/pdf-link", self._pdf_link)
        self.route("GET", "/invoices/(?P<invoice_id>[^/]+)/pdf", self._pdf)
        self.route("GET", "/pay/(?P<invoice_id>[^/]+)", self._pay_page)

    # ------------------------------------------------------------------ contract

    def env(self, base_url: str) -> dict[str, str]:
        """Environment variables pointing ``alternative_payments_source`` at this sandbox."""
        return {
            "SOURCES__ALTERNATIVE_PAYMENTS__BASE_URL": base_url,
            "SOURCES__ALTERNATIVE_PAYMENTS__CLIENT_ID": self.client_id,
            "SOURCES__ALTERNATIVE_PAYMENTS__CLIENT_SECRET": self.client_secret,
        }

    def seed_invoices(self, n: int) -> None:
        """Add ``n`` invoices created over the past ~18 months, deterministically for the seed.

        Statuses follow the due date: not yet due -> mostly ``open`` (some ``draft``,
        ``processing`` or paid early); past due -> mostly ``paid``, some ``void``, the rest
        ``overdue``; about 3% archived. Lines are 1 to 15 per invoice. The first call also
        plants the deliberate mismatches (see :attr:`deliberate_mismatches`):

        - ``total_mismatch``: the one invoice whose ``total`` is not its ``sub_total`` (the sum
          of ``amount * quantity`` over its lines); it is 25.00 higher.
        - ``overdue_still_open``: an invoice past its due date and unpaid whose status still
          says ``open``; :meth:`overdue_invoice_ids` gives the whole overdue set.
        """
        rng = self._rng
        with self._state_lock:
            today = self.now().date()
            anchor = datetime(today.year, today.month, today.day, tzinfo=timezone.utc)
            if not self._customers:
                self._customers = [
                    f"cus_{rng.getrandbits(48):012x}" for _ in range(max(3, n // 12))
                ]
            offsets = sorted((self._seed_age_seconds(rng) for _ in range(n)), reverse=True)
            created: list[SandboxInvoice] = []
            for offset in offsets:
                created_at = anchor - timedelta(seconds=offset)
                due_date = created_at.date() + timedelta(days=rng.choice((0, 15, 30, 30, 45, 60)))
                invoice = self._new_invoice(
                    customer_id=rng.choice(self._customers),
                    line_items=self._random_lines(rng),
                    created_at=created_at,
                    due_date=due_date,
                    memo=rng.choice(_MEMOS),
                    status=self._seed_status(rng, due_date, today),
                )
                if invoice.status != "draft":
                    invoice.last_notification_at = created_at + timedelta(
                        minutes=rng.randint(5, 600)
                    )
                if rng.random() < 0.03:
                    invoice.status_before_archive = invoice.status
                    invoice.status = "archived"
                created.append(invoice)
            if not self.deliberate_mismatches:
                self._plant_mismatches(created)

    def demo_changes(self) -> dict[str, int]:
        """A day of business: new invoices (some at the same second), some paid, one archived,
        one restored. The deliberate mismatches are left as they are."""
        self._demo_round += 1
        rng = random.Random(self.seed * 1000 + self._demo_round)
        deliberate = set(self.deliberate_mismatches.values())
        with self._state_lock:
            now = self.now().replace(microsecond=0)
            if not self._customers:
                self._customers = [f"cus_{rng.getrandbits(48):012x}" for _ in range(3)]
            created = rng.randint(5, 9)
            for index in range(created):
                self._new_invoice(
                    customer_id=rng.choice(self._customers),
                    line_items=self._random_lines(rng),
                    created_at=now - timedelta(seconds=index // 2),
                    due_date=now.date() + timedelta(days=30),
                    memo=rng.choice(_MEMOS),
                    status="open",
                )
            unpaid = sorted(
                invoice.id
                for invoice in self.invoices.values()
                if invoice.status in UNPAID_STATUSES and invoice.id not in deliberate
            )
            paid = rng.sample(unpaid, min(3, len(unpaid)))
            for invoice_id in paid:
                self.pay(invoice_id)
            archivable = [invoice_id for invoice_id in unpaid if invoice_id not in paid]
            archived_before = sorted(
                invoice.id for invoice in self.invoices.values() if invoice.status == "archived"
            )
            archived = 0
            if archivable:
                self.archive(rng.choice(archivable))
                archived = 1
            restored = 0
            if archived_before:
                self.restore(rng.choice(archived_before))
                restored = 1
        return {
            "invoices_created": created,
            "invoices_paid": len(paid),
            "invoices_archived": archived,
            "invoices_restored": restored,
        }

    # ------------------------------------------------------------------ state helpers

    def now(self) -> datetime:
        """The sandbox's current time (UTC) by its clock."""
        return datetime.fromtimestamp(self.clock(), tz=timezone.utc)

    def overdue_invoice_ids(self, today: date | None = None) -> set[str]:
        """Invoices past their due date and still unpaid (``open`` or ``overdue``), not archived."""
        day = today or self.now().date()
        with self._state_lock:
            return {
                invoice.id
                for invoice in self.invoices.values()
                if invoice.status in UNPAID_STATUSES and invoice.due_date < day
            }

    def visible_invoices(self) -> list[SandboxInvoice]:
        """Invoices a plain ``GET /invoices`` lists (everything not archived)."""
        with self._state_lock:
            return [inv for inv in self.invoices.values() if inv.status != "archived"]

    def create_invoice(
        self,
        *,
        customer_id: str,
        line_items: Iterable[Mapping[str, Any]],
        due_date: date | None = None,
        memo: str | None = None,
        created_at: datetime | None = None,
        status: str = "open",
    ) -> SandboxInvoice:
        """Create an invoice directly in the state (as the vendor's dashboard would)."""
        lines = [
            {
                "amount": Decimal(str(line["amount"])),
                "description": str(line.get("description") or ""),
                "quantity": int(line.get("quantity") or 1),
            }
            for line in line_items
        ]
        with self._state_lock:
            moment = created_at or self.now().replace(microsecond=0)
            return self._new_invoice(
                customer_id=customer_id,
                line_items=lines,
                created_at=moment,
                due_date=due_date or moment.date(),
                memo=memo,
                status=status,
            )

    def pay(self, invoice_id: str) -> None:
        """Mark an invoice paid (a payment arrived)."""
        with self._state_lock:
            self.invoices[invoice_id].status = "paid"

    def set_status(self, invoice_id: str, status: str) -> None:
        """Set any status, including ones the connector does not know."""
        with self._state_lock:
            self.invoices[invoice_id].status = status

    def set_line_items(self, invoice_id: str, line_items: Iterable[Mapping[str, Any]]) -> None:
        """Replace an invoice's lines and recompute its totals (an edit in the dashboard)."""
        with self._state_lock:
            invoice = self.invoices[invoice_id]
            invoice.line_items = [
                {
                    "amount": Decimal(str(line["amount"])),
                    "description": str(line.get("description") or ""),
                    "quantity": int(line.get("quantity") or 1),
                }
                for line in line_items
            ]
            invoice.sub_total = _sum_lines(invoice.line_items)
            invoice.total = invoice.sub_total

    def archive(self, invoice_id: str) -> SandboxInvoice:
        """Archive an invoice, remembering its status for a restore."""
        with self._state_lock:
            invoice = self.invoices[invoice_id]
            if invoice.status != "archived":
                invoice.status_before_archive = invoice.status
                invoice.status = "archived"
            return invoice

    def restore(self, invoice_id: str) -> SandboxInvoice:
        """Restore an archived invoice to the status it had."""
        with self._state_lock:
            invoice = self.invoices[invoice_id]
            if invoice.status == "archived":
                invoice.status = invoice.status_before_archive or "open"
                invoice.status_before_archive = None
            return invoice

    def issue_token(self, scopes: Iterable[str] | None = None) -> str:
        """A valid access token for this sandbox's client (for tests calling it directly)."""
        granted = frozenset(scopes) if scopes is not None else self.allowed_scopes
        token = f"ap_at_{secrets.token_urlsafe(24)}"
        with self._state_lock:
            self._grants[token] = _Grant(
                self.client_id, granted, self.clock() + self.token_lifetime_seconds
            )
            self.tokens_issued += 1
        return token

    # ------------------------------------------------------------------ errors

    def error_response(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        validation_errors: Mapping[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """The vendor's ``HttpError`` body: ``code``, ``message``, ``validation_errors``."""
        body = {
            "code": code or _DEFAULT_CODES.get(status, "error"),
            "message": message,
            "validation_errors": dict(validation_errors or {}),
        }
        return Response.json(body, status, headers)

    # ------------------------------------------------------------------ handlers

    def _token(self, request: Request) -> Response:
        form = dict(request.form())
        client_id, client_secret = _basic_credentials(request.header("authorization"))
        if client_id is None:
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if client_id is None:
            return self.error_response(
                401,
                "Client authentication is required (HTTP Basic client_id:client_secret).",
                code="invalid_client",
                headers={"WWW-Authenticate": 'Basic realm="alternative-payments"'},
            )
        if not (
            hmac.compare_digest(client_id, self.client_id)
            and hmac.compare_digest(client_secret or "", self.client_secret)
        ):
            return self.error_response(403, "Invalid client credentials.", code="invalid_client")
        if form.get("grant_type") != "client_credentials":
            return self.error_response(
                400,
                "grant_type must be client_credentials.",
                code="unsupported_grant_type",
                validation_errors={"grant_type": "must be client_credentials"},
            )
        requested = frozenset((form.get("scope") or "").split())
        unknown = requested - self.allowed_scopes
        if unknown:
            return self.error_response(
                400,
                f"Scope not allowed for this client: {' '.join(sorted(unknown))}.",
                code="invalid_scope",
                validation_errors={"scope": "not allowed for this client"},
            )
        granted = requested or self.allowed_scopes
        token = self.issue_token(granted)
        return Response.json(
            {
                "access_token": token,
                "expires_in": self.token_lifetime_seconds,
                "token_type": "Bearer",
                "scope": " ".join(sorted(granted)),
            }
        )

    def _authorize(self, request: Request, needed: frozenset[str]) -> Response | None:
        header = request.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="alternative-payments"'}
        if scheme.lower() != "bearer" or not token.strip():
            return self.error_response(
                401, "A bearer token is required.", code="unauthorized", headers=challenge
            )
        with self._state_lock:
            grant = self._grants.get(token.strip())
        if grant is None:
            return self.error_response(
                401, "The access token is not valid.", code="invalid_token", headers=challenge
            )
        if self.clock() >= grant.expires_at:
            return self.error_response(
                401, "The access token has expired.", code="token_expired", headers=challenge
            )
        if not grant.scopes & needed:
            return self.error_response(
                403,
                f"This operation requires one of the scopes: {', '.join(sorted(needed))}.",
                code="insufficient_scope",
            )
        return None

    def _list(self, request: Request) -> Response:
        denied = self._authorize(request, READ_SCOPES)
        if denied is not None:
            return denied
        query, errors = _parse_list_query(request)
        if errors:
            return self.error_response(
                400, "Invalid query parameters.", code="bad_request", validation_errors=errors
            )
        with self._state_lock:
            matching = sorted(
                (inv for inv in self.invoices.values() if _matches(inv, query.filters)),
                key=lambda inv: inv.sort_key,
                reverse=True,
            )
            keys = [inv.sort_key for inv in matching]
            if query.after is not None:
                after = query.after
                start = next((i for i, key in enumerate(keys) if key < after), len(keys))
                end = start + query.limit
            elif query.before is not None:
                before = query.before
                end = next((i for i, key in enumerate(keys) if key <= before), len(keys))
                start = max(0, end - query.limit)
            else:
                start, end = 0, query.limit
            page = [inv.to_json() for inv in matching[start:end]]
        page_keys = keys[start:end]
        return Response.json(
            {
                "data": page,
                "start_cursor": _encode_cursor(page_keys[0]) if page_keys else None,
                "end_cursor": _encode_cursor(page_keys[-1]) if page_keys else None,
                "has_next_page": end < len(keys),
                "has_previous_page": start > 0,
            }
        )

    def _create(self, request: Request) -> Response:
        denied = self._authorize(request, WRITE_SCOPES)
        if denied is not None:
            return denied
        try:
            body = json.loads(request.body, parse_float=Decimal) if request.body else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.error_response(
                400, "The request body must be a JSON object.", code="bad_request"
            )
        errors, lines, due_date = _validate_new_invoice(body)
        if errors:
            return self.error_response(
                422, "The invoice is not valid.", code="validation_error", validation_errors=errors
            )
        with self._state_lock:
            moment = self.now().replace(microsecond=0)
            invoice = self._new_invoice(
                customer_id=body["customer_id"],
                line_items=lines,
                created_at=moment,
                due_date=due_date or moment.date(),
                memo=body.get("memo") if isinstance(body.get("memo"), str) else None,
                status="open",
            )
            invoice.exclude_from_autopay = bool(body.get("exclude_from_autopay", False))
            return Response.json(invoice.to_json(), 201)

    def _get(self, request: Request, invoice_id: str) -> Response:
        denied = self._authorize(request, READ_SCOPES)
        if denied is not None:
            return denied
        with self._state_lock:
            invoice = self.invoices.get(unquote(invoice_id))
            if invoice is None:
                return self._not_found(invoice_id)
            return Response.json(invoice.to_json())

    def _archive(self, request: Request, invoice_id: str) -> Response:
        denied = self._authorize(request, WRITE_SCOPES)
        if denied is not None:
            return denied
        with self._state_lock:
            invoice = self.invoices.get(unquote(invoice_id))
            if invoice is None:
                return self._not_found(invoice_id)
            if invoice.status == "archived":
                return self.error_response(
                    422, "The invoice is already archived.", code="invalid_state"
                )
            return Response.json(self.archive(invoice.id).to_json())

    def _restore(self, request: Request, invoice_id: str) -> Response:
        denied = self._authorize(request, WRITE_SCOPES)
        if denied is not None:
            return denied
        with self._state_lock:
            invoice = self.invoices.get(unquote(invoice_id))
            if invoice is None:
                return self._not_found(invoice_id)
            if invoice.status != "archived":
                return self.error_response(
                    422, "The invoice is not archived.", code="invalid_state"
                )
            return Response.json(self.restore(invoice.id).to_json())

    def _payment_link(self, request: Request, invoice_id: str) -> Response:
        denied = self._authorize(request, READ_SCOPES)
        if denied is not None:
            return denied
        with self._state_lock:
            invoice = self.invoices.get(unquote(invoice_id))
            if invoice is None:
                return self._not_found(invoice_id)
            if invoice.status in ("archived", "paid", "void", "draft"):
                return self.error_response(
                    422, f"A {invoice.status} invoice cannot be paid.", code="invalid_state"
                )
        return Response.json({"url": f"{_origin(request)}/pay/{invoice.id}"})

    def _pdf_link(self, request: Request, invoice_id: str) -> Response:
        denied = self._authorize(request, READ_SCOPES)
        if denied is not None:
            return denied
        with self._state_lock:
            invoice = self.invoices.get(unquote(invoice_id))
            if invoice is None:
                return self._not_found(invoice_id)
        expires = int(self.clock()) + self.pdf_link_lifetime_seconds
        signature = self._sign(invoice.id, expires)
        url = (
            f"{_origin(request)}/invoices/{invoice.id}/pdf?expires={expires}&signature={signature}"
        )
        return Response.json({"url": url})

    def _pdf(self, request: Request, invoice_id: str) -> Response:
        invoice_id = unquote(invoice_id)
        expires_text = request.arg("expires") or ""
        signature = request.arg("signature") or ""
        if not expires_text.isdigit() or not hmac.compare_digest(
            signature, self._sign(invoice_id, int(expires_text))
        ):
            return self.error_response(
                403, "The link signature is not valid.", code="invalid_signature"
            )
        if self.clock() >= int(expires_text):
            return self.error_response(403, "The link has expired.", code="link_expired")
        with self._state_lock:
            invoice = self.invoices.get(invoice_id)
            if invoice is None:
                return self._not_found(invoice_id)
            number = invoice.invoice_number
        body = f"%PDF-1.4\n% Alternative Payments sandbox invoice {number}\n%%EOF\n".encode()
        return Response(200, body, {"Content-Type": "application/pdf"})

    def _pay_page(self, request: Request, invoice_id: str) -> Response:
        with self._state_lock:
            invoice = self.invoices.get(unquote(invoice_id))
        if invoice is None:
            return self._not_found(invoice_id)
        html = f"<html><body>Pay invoice {invoice.invoice_number}</body></html>".encode()
        return Response(200, html, {"Content-Type": "text/html"})

    # ------------------------------------------------------------------ internals

    def _not_found(self, invoice_id: str) -> Response:
        return self.error_response(
            404, f"Invoice {unquote(invoice_id)} not found.", code="not_found"
        )

    def _sign(self, invoice_id: str, expires: int) -> str:
        message = f"{invoice_id}:{expires}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    def _new_invoice(
        self,
        *,
        customer_id: str,
        line_items: list[dict[str, Any]],
        created_at: datetime,
        due_date: date,
        memo: str | None,
        status: str,
    ) -> SandboxInvoice:
        self._invoice_counter += 1
        invoice_id = f"inv_{self._rng.getrandbits(64):016x}"
        sub_total = _sum_lines(line_items)
        invoice = SandboxInvoice(
            id=invoice_id,
            invoice_number=f"INV-{self._invoice_counter:06d}",
            customer_id=customer_id,
            currency="USD",
            status=status,
            created_at=created_at,
            due_date=due_date,
            line_items=line_items,
            sub_total=sub_total,
            total=sub_total,
            memo=memo,
        )
        self.invoices[invoice_id] = invoice
        return invoice

    @staticmethod
    def _random_lines(rng: random.Random) -> list[dict[str, Any]]:
        count = rng.choices((1, 2, 3, 4, 6, 9, 12, 15), weights=(30, 20, 15, 10, 8, 7, 6, 4))[0]
        lines = []
        for _ in range(count):
            cents = rng.randint(250, 480000)
            if rng.random() < 0.2:
                cents -= cents % 100
            lines.append(
                {
                    "amount": Decimal(cents).scaleb(-2),
                    "description": rng.choice(_DESCRIPTIONS),
                    "quantity": rng.choice((1, 1, 1, 2, 3, 5, 10, 12)),
                }
            )
        return lines

    @staticmethod
    def _seed_age_seconds(rng: random.Random) -> int:
        # A quarter of the invoices fall in the last 45 days, so open ones are not rare.
        longest = 45 if rng.random() < 0.25 else 540
        return rng.randint(3600, longest * 86400)

    @staticmethod
    def _seed_status(rng: random.Random, due_date: date, today: date) -> str:
        roll = rng.random()
        if due_date >= today:
            if roll < 0.70:
                return "open"
            if roll < 0.80:
                return "draft"
            if roll < 0.86:
                return "processing"
            return "paid"
        if roll < 0.82:
            return "paid"
        if roll < 0.88:
            return "void"
        return "overdue"

    def _plant_mismatches(self, created: list[SandboxInvoice]) -> None:
        ordered = sorted(created, key=lambda inv: inv.invoice_number)
        total_candidates = [inv for inv in ordered if inv.status in ("paid", "open")]
        if total_candidates:
            target = total_candidates[len(total_candidates) // 2]
            target.total = target.sub_total + Decimal("25.00")
            self.deliberate_mismatches["total_mismatch"] = target.id
        overdue = [
            inv
            for inv in ordered
            if inv.status == "overdue"
            and inv.id != self.deliberate_mismatches.get("total_mismatch")
        ]
        if overdue:
            target = overdue[len(overdue) // 2]
            target.status = "open"
            self.deliberate_mismatches["overdue_still_open"] = target.id


_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def _micros(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _rfc3339(moment: datetime) -> str:
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def _number(amount: Decimal) -> orjson.Fragment:
    """An exact JSON number for ``amount`` (trailing zeros dropped: ``12.50`` -> ``12.5``)."""
    return orjson.Fragment(format(amount.normalize(), "f"))


def _sum_lines(lines: Iterable[Mapping[str, Any]]) -> Decimal:
    return sum((line["amount"] * line["quantity"] for line in lines), Decimal("0"))


def _encode_cursor(key: tuple[int, str]) -> str:
    payload = struct.pack(">q", key[0]) + key[1].encode()
    raw = _CURSOR_PREFIX + bytes([len(payload)]) + payload
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str] | None:
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    head = len(_CURSOR_PREFIX) + 1
    if (
        not raw.startswith(_CURSOR_PREFIX)
        or len(raw) < head + 8
        or raw[head - 1] != len(raw) - head
    ):
        return None
    (micros,) = struct.unpack(">q", raw[head : head + 8])
    try:
        return micros, raw[head + 8 :].decode()
    except UnicodeDecodeError:
        return None


def _parse_moment(text: str) -> datetime | None:
    if not _RFC3339.match(text):
        return None
    normalized = text.replace("z", "Z").replace("Z", "+00:00").replace("t", "T").replace(" ", "T")
    try:
        return datetime.fromisoformat(normalized).astimezone(timezone.utc)
    except ValueError:
        return None


def _parse_list_query(request: Request) -> tuple[_ListQuery, dict[str, str]]:
    query = _ListQuery()
    errors: dict[str, str] = {}
    limit_text = request.arg("limit")
    if limit_text is not None:
        if limit_text.isdigit() and 1 <= int(limit_text) <= MAX_LIMIT:
            query.limit = int(limit_text)
        else:
            errors["limit"] = f"must be an integer between 1 and {MAX_LIMIT}"
    for name in ("after", "before"):
        text = request.arg(name)
        if text:
            key = _decode_cursor(text)
            if key is None:
                errors[name] = "is not a valid cursor"
            setattr(query, name, key)
    if query.after is not None and query.before is not None:
        errors["before"] = "cannot be combined with after"
    for name in ("created_at_start", "created_at_end", "due_date_start", "due_date_end"):
        text = request.arg(name)
        if text:
            moment = _parse_moment(text)
            if moment is None:
                errors[name] = "must be an RFC3339 date-time, e.g. 2025-01-31T00:00:00Z"
            query.filters[name] = moment
    for name in ("customer_id", "invoice_number"):
        text = request.arg(name)
        if text:
            query.filters[name] = text
    status = request.arg("status")
    if status:
        if status not in STATUSES:
            errors["status"] = f"must be one of {', '.join(STATUSES)}"
        query.filters["status"] = status
    return query, errors


def _matches(invoice: SandboxInvoice, filters: Mapping[str, Any]) -> bool:
    status = filters.get("status")
    if status is None and invoice.status == "archived":
        return False
    if status is not None and invoice.status != status:
        return False
    for name in ("customer_id", "invoice_number"):
        if name in filters and getattr(invoice, name) != filters[name]:
            return False
    start, end = filters.get("created_at_start"), filters.get("created_at_end")
    if start is not None and invoice.created_at < start:
        return False
    if end is not None and invoice.created_at >= end:
        return False
    due = datetime(
        invoice.due_date.year, invoice.due_date.month, invoice.due_date.day, tzinfo=timezone.utc
    )
    due_start, due_end = filters.get("due_date_start"), filters.get("due_date_end")
    if due_start is not None and due < due_start:
        return False
    return not (due_end is not None and due >= due_end)


def _validate_new_invoice(
    body: Mapping[str, Any],
) -> tuple[dict[str, str], list[dict[str, Any]], date | None]:
    errors: dict[str, str] = {}
    customer_id = body.get("customer_id")
    if not isinstance(customer_id, str) or not customer_id.strip():
        errors["customer_id"] = "is required"
    currency = body.get("currency", "USD")
    if currency != "USD":
        errors["currency"] = "only USD is supported"
    due_date: date | None = None
    raw_due = body.get("due_date")
    if raw_due is not None:
        try:
            due_date = date.fromisoformat(raw_due) if isinstance(raw_due, str) else None
        except ValueError:
            due_date = None
        if due_date is None or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(raw_due)):
            errors["due_date"] = "must be a date in YYYY-MM-DD format"
    autopay = body.get("exclude_from_autopay")
    if autopay is not None and not isinstance(autopay, bool):
        errors["exclude_from_autopay"] = "must be a boolean"
    raw_lines = body.get("line_items")
    lines: list[dict[str, Any]] = []
    if not isinstance(raw_lines, list) or not raw_lines:
        errors["line_items"] = "at least one line item is required"
        raw_lines = []
    for index, raw in enumerate(raw_lines):
        prefix = f"line_items[{index}]"
        if not isinstance(raw, dict):
            errors[prefix] = "must be an object"
            continue
        amount = raw.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)):
            errors[f"{prefix}.amount"] = "must be a number"
        elif amount <= 0:
            errors[f"{prefix}.amount"] = "must be greater than 0"
        elif Decimal(amount) != Decimal(amount).quantize(Decimal("0.01")):
            errors[f"{prefix}.amount"] = "must have at most 2 decimal places"
        quantity = raw.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            errors[f"{prefix}.quantity"] = "must be a positive integer"
        description = raw.get("description")
        if not isinstance(description, str) or not description.strip():
            errors[f"{prefix}.description"] = "is required"
        if isinstance(amount, (int, Decimal)) and not any(key.startswith(prefix) for key in errors):
            lines.append(
                {"amount": Decimal(amount), "description": description, "quantity": quantity}
            )
    return errors, lines, due_date


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header:
        return None, None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, ValueError):
        return None, None
    client_id, sep, client_secret = decoded.partition(":")
    return (client_id, client_secret) if sep else (None, None)


def _origin(request: Request) -> str:
    return f"http://{request.header('host') or '127.0.0.1'}"
