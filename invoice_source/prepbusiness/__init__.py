"""The PrepBusiness invoices source: every invoice of a prep center's merchants, kept current.

One resource, ``prepbusiness_invoices``, merged on ``id``: one row per invoice with the merchant
it bills (``merchant_id``), its exact ``total`` (decimal, major units) and ``currency``, its
``status`` and the Stripe invoice it became (``stripe_invoice_id``, ``stripe_invoice_status``), so
it reconciles with ``stripe_invoices`` in the same dataset.

New invoices are read with the server-side filter ``q=created_at$DATE>="<day>"`` (day
granularity) from a cursor kept in dlt resource state, re-reading the cursor's day and
``overlap_days`` before it; the merge absorbs the overlap. Invoices change after they are loaded
(Draft → Finalized → on Stripe → Paid or PaymentFailed) and the API has no ``updated_at``: the
ids of loaded invoices that are not yet final are kept in state and re-read every run with
``q=id:1 OR id:2 ...``, the first batch OR-ed into the new-invoice query, so a run with up to 75
open invoices and a few new ones costs one request. See README.md for the request costs.
State is kept per merchant scope (``merchant_id`` or all merchants).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from invoice_source import money
from invoice_source.arrow import null_columns_as_text, table_from_columns
from invoice_source.columns import Column, TableBuilder, column_hints
from invoice_source.errors import ApiError, ConfigurationError
from invoice_source.prepbusiness import settings
from invoice_source.prepbusiness.client import (
    ChargeNotFoundError,
    IdBatch,
    Invoice,
    InvoiceAlreadyFinalizedError,
    InvoiceAlreadyPaidError,
    InvoiceNotFinalizedError,
    InvoiceNotFoundError,
    InvoiceStateError,
    NoChargesToInvoiceError,
    PrepBusinessClient,
    PrepBusinessValidationError,
    all_of,
    created_on_or_after,
    created_on_or_before,
    id_batches,
    parse_timestamp,
)
from invoice_source.windows import parse_window

__all__ = [
    "ChargeNotFoundError",
    "Invoice",
    "InvoiceAlreadyFinalizedError",
    "InvoiceAlreadyPaidError",
    "InvoiceNotFinalizedError",
    "InvoiceNotFoundError",
    "InvoiceStateError",
    "NoChargesToInvoiceError",
    "PrepBusinessClient",
    "PrepBusinessValidationError",
    "prepbusiness_source",
]

logger = logging.getLogger("invoice_source.prepbusiness")

# Rows gathered before a table is handed to dlt.
BATCH_ROWS = 5000
ALL_MERCHANTS = "all"
RowFilter = Callable[[dict[str, Any]], bool]

INVOICE_COLUMNS: list[Column] = [
    Column("id", "bigint", nullable=False, description="PrepBusiness invoice id"),
    Column(
        "merchant_id",
        "text",
        description="The merchant billed: chargee_id, else the X-Selected-Client-Id sent",
    ),
    Column("created_at", "timestamp"),
    Column("status", "text", description="As the API sends it: Draft, Finalized, Paid, ..."),
    Column("currency", "text", description="ISO code as the API sends it (upper case)"),
    Column("total", "decimal", description="Total in major units, exact"),
    Column("description", "text"),
    Column("stripe_invoice_id", "text", description="The Stripe invoice (in_...), once created"),
    Column("stripe_invoice_status", "text", description="Its Stripe status as PrepBusiness knows"),
    Column("charger_id", "text"),
    Column("charger_type", "text"),
    Column("chargee_id", "text"),
    Column("chargee_type", "text"),
    Column("synced_at", "timestamp", nullable=False, description="When this row was read"),
]
_TEXT_COLUMNS = tuple(c.name for c in INVOICE_COLUMNS if c.kind == "text")


def invoice_columns() -> dict[str, dict[str, Any]]:
    """dlt column hints of ``prepbusiness_invoices`` (``total`` as ``money.AMOUNT_COLUMN``)."""
    hints = column_hints(INVOICE_COLUMNS)
    hints["total"].update(money.AMOUNT_COLUMN)
    return hints


@dlt.source(name="prepbusiness", max_table_nesting=0)
def prepbusiness_source(
    base_url: str = dlt.config.value,
    token: str = dlt.secrets.value,
    merchant_id: str | None = None,
    start_date: str | datetime | None = None,
    end_date: str | datetime | None = None,
    page_size: int = settings.DEFAULT_PAGE_SIZE,
    requests_per_second: float | None = settings.DEFAULT_REQUESTS_PER_SECOND,
    overlap_days: int = settings.DEFAULT_OVERLAP_DAYS,
    track_open_invoices: bool = True,
) -> DltResource:
    """PrepBusiness invoices, configured under ``[sources.prepbusiness]``.

    Without ``end_date`` a run is incremental (from the saved cursor, or ``start_date`` on the
    first run, or everything); with it, a backfill of ``[start_date, end_date)`` that leaves the
    cursor alone. ``merchant_id`` is sent as ``X-Selected-Client-Id``; without it a service
    provider's token loads every merchant's invoices.
    """
    start, end = parse_window(start_date, end_date, section="sources.prepbusiness")
    if not 1 <= page_size <= settings.MAX_PAGE_SIZE:
        raise ConfigurationError(
            f"sources.prepbusiness.page_size must be between 1 and {settings.MAX_PAGE_SIZE},"
            f" not {page_size}"
        )
    if overlap_days < 0:
        raise ConfigurationError(
            f"sources.prepbusiness.overlap_days must be 0 or more, not {overlap_days}"
        )
    client = PrepBusinessClient(
        base_url=base_url,
        token=token,
        merchant_id=merchant_id,
        requests_per_second=requests_per_second,
    )
    sync = PrepBusinessInvoiceSync(
        client,
        start=start,
        end=end,
        page_size=page_size,
        overlap_days=overlap_days,
        track_open_invoices=track_open_invoices,
    )

    def prepbusiness_invoices() -> Iterator[pa.Table]:
        yield from sync.run()

    return dlt.resource(
        prepbusiness_invoices,
        name=settings.TABLE_INVOICES,
        write_disposition="merge",
        primary_key="id",
        columns=invoice_columns(),
        file_format="parquet",
    )


def is_final(row: dict[str, Any]) -> bool:
    """Whether an invoice is in a state that is not expected to change any more."""
    status = str(row.get("status") or "").lower()
    stripe_status = row.get("stripe_invoice_status")
    return status in settings.FINAL_STATUSES and (
        stripe_status is None or str(stripe_status).lower() in settings.FINAL_STRIPE_STATUSES
    )


def invoice_row(
    raw: dict[str, Any], *, selected_merchant: str | None, synced_at: datetime
) -> dict[str, Any]:
    """One ``prepbusiness_invoices`` row: the API's fields as they come (unknown ones included),
    typed, plus ``merchant_id`` and ``synced_at``."""
    row = dict(raw)
    try:
        row["id"] = int(raw["id"])
        row["created_at"] = parse_timestamp(raw.get("created_at"))
        row["total"] = money.parse_amount(raw.get("total"), field="total")
    except (TypeError, ValueError) as exc:
        raise ApiError(
            f"PrepBusiness sent invoice {raw.get('id')!r} with a value the connector cannot load"
            f" exactly: {exc}",
            api="prepbusiness",
        ) from None
    for name in _TEXT_COLUMNS:
        if row.get(name) is not None:
            row[name] = str(row[name])
    chargee = raw.get("chargee_id")
    row["merchant_id"] = str(chargee) if chargee not in (None, "") else selected_merchant
    row["synced_at"] = synced_at
    return row


class PrepBusinessInvoiceSync:
    """One run of the ``prepbusiness_invoices`` resource."""

    def __init__(
        self,
        client: PrepBusinessClient,
        *,
        start: datetime | None,
        end: datetime | None,
        page_size: int,
        overlap_days: int,
        track_open_invoices: bool,
    ) -> None:
        self.client = client
        self.start = start
        self.end = end
        self.page_size = page_size
        self.overlap = timedelta(days=overlap_days)
        self.track_open_invoices = track_open_invoices
        self.scope_key = client.merchant_id or ALL_MERCHANTS
        self._synced_at = datetime.now(timezone.utc)
        self._builder = TableBuilder(INVOICE_COLUMNS)
        self._seen: dict[int, bool] = {}  # id -> final
        self._newest: datetime | None = None
        self._outside = 0

    @property
    def is_backfill(self) -> bool:
        """A run with an end date loads a window and leaves the cursor alone."""
        return self.end is not None

    def run(self) -> Iterator[pa.Table]:
        """The resource generator: yields pyarrow tables of invoices."""
        state = dlt.current.resource_state()
        scope: dict[str, Any] = state.setdefault("scopes", {}).setdefault(self.scope_key, {})
        requests_before = self.client.request_count
        self._synced_at = datetime.now(timezone.utc)
        try:
            if self.is_backfill:
                yield from self._backfill()
            else:
                yield from self._incremental(scope)
            yield from self._flush()
        finally:
            self.client.close()
        if self._outside:
            logger.warning(
                "PrepBusiness: the API sent %d invoice(s) outside what the q filter asked for"
                " (does it ignore q?); they were left out",
                self._outside,
            )
        self._save_tracking(scope)
        if not self.is_backfill and self._newest is not None:
            cursor = parse_timestamp(scope.get("created_at_cursor"))
            if cursor is None or self._newest > cursor:
                scope["created_at_cursor"] = self._newest.isoformat()
        logger.info(
            "PrepBusiness (%s): %d invoices in %d requests",
            self.scope_key,
            len(self._seen),
            self.client.request_count - requests_before,
        )

    def _incremental(self, scope: dict[str, Any]) -> Iterator[pa.Table]:
        cursor = parse_timestamp(scope.get("created_at_cursor"))
        tracked = [int(i) for i in scope.get("open_invoice_ids", [])]
        since = cursor or self.start
        if since is None:
            logger.info("PrepBusiness: first run, reading every invoice")
            yield from self._read(None, lambda row: True)
            return
        from_day = (since - self.overlap).date()
        exact_start = self.start if cursor is None else None
        tracked = tracked if self.track_open_invoices else []
        batches = id_batches(
            tracked,
            lead_clause=created_on_or_after(from_day),
            max_ids=self.page_size,
        )
        logger.info(
            "PrepBusiness: invoices created from %s, plus %d open invoice(s) in %d query(ies)",
            from_day.isoformat(),
            len(tracked),
            len(batches),
        )
        for index, batch in enumerate(batches):
            yield from self._read(
                batch.q, self._wanted(batch, from_day if index == 0 else None, exact_start)
            )

    def _backfill(self) -> Iterator[pa.Table]:
        clauses = []
        if self.start is not None:
            clauses.append(created_on_or_after((self.start - self.overlap).date()))
        assert self.end is not None
        last_day = (self.end + self.overlap).date()
        clauses.append(created_on_or_before(last_day))
        first_day = (self.start - self.overlap).date() if self.start is not None else None
        start, end = self.start, self.end
        logger.info("PrepBusiness backfill of created_at in [%s, %s)", start, end)

        def wanted(row: dict[str, Any]) -> bool:
            created = row["created_at"]
            if created is None:
                return False
            if not _day_between(created.date(), first_day, last_day):
                self._outside += 1
                return False
            return (start is None or created >= start) and created < end

        yield from self._read(all_of(clauses), wanted)

    def _wanted(
        self, batch: IdBatch, from_day: date | None, exact_start: datetime | None
    ) -> RowFilter:
        ids = set(batch.ids)

        def wanted(row: dict[str, Any]) -> bool:
            if row["id"] in ids:
                return True
            created = row["created_at"]
            if from_day is None or (created is not None and created.date() < from_day):
                self._outside += 1
                return False
            return exact_start is None or created is None or created >= exact_start

        return wanted

    def _read(self, q: str | None, wanted: RowFilter) -> Iterator[pa.Table]:
        for page in self.client.iter_invoice_pages(q, per_page=self.page_size):
            for raw in page:
                row = invoice_row(
                    raw, selected_merchant=self.client.merchant_id, synced_at=self._synced_at
                )
                if row["id"] in self._seen or not wanted(row):
                    continue
                self._seen[row["id"]] = is_final(row)
                created = row["created_at"]
                if created is not None and (self._newest is None or created > self._newest):
                    self._newest = created
                self._builder.add(row)
            if self._builder.row_count >= BATCH_ROWS:
                yield from self._flush()

    def _flush(self) -> Iterator[pa.Table]:
        if self._builder.row_count:
            yield null_columns_as_text(table_from_columns(self._builder.take_columns()))

    def _save_tracking(self, scope: dict[str, Any]) -> None:
        """Keep the ids of loaded invoices that may still change; forget the final ones and the
        tracked ones the API no longer returns."""
        previous = [int(i) for i in scope.get("open_invoice_ids", [])]
        open_ids = {i for i, final in self._seen.items() if not final}
        if self.is_backfill or not self.track_open_invoices:
            open_ids |= {i for i in previous if i not in self._seen}
        else:
            gone = [i for i in previous if i not in self._seen]
            if gone:
                logger.warning(
                    "PrepBusiness: %d tracked invoice(s) were not returned any more (deleted, or"
                    " not visible to this token); no longer tracking them: %s",
                    len(gone),
                    _preview(gone),
                )
        scope["open_invoice_ids"] = sorted(open_ids)


def _day_between(day: date, first: date | None, last: date) -> bool:
    return (first is None or day >= first) and day <= last


def _preview(ids: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown if len(ids) <= limit else f"{shown}, ..."
