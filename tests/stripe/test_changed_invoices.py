"""Invoice events become snapshots one at a time: thirty days of a busy account's changes are
never held together."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from invoice_source.stripe import settings
from invoice_source.stripe.source import StripeInvoiceSync


class EventPages:
    """A client whose ``/v1/events`` gives two pages, newest first, then fails."""

    def __init__(self) -> None:
        self.pages_served = 0

    def iter_invoice_events(self, since: int) -> Iterator[list[dict[str, Any]]]:
        self.pages_served += 1
        yield [
            event("invoice.paid", "in_2", "paid"),
            event("invoice.finalized", "in_2", "open"),
            event("invoice.deleted", "in_1", "draft"),
        ]
        self.pages_served += 1
        yield [event("invoice.created", "in_3", "draft")]
        raise RuntimeError("the third page was asked for")


def event(kind: str, invoice_id: str, status: str) -> dict[str, Any]:
    return {"type": kind, "data": {"object": {"id": invoice_id, "status": status}}}


def sync_over(client: EventPages) -> StripeInvoiceSync:
    return StripeInvoiceSync(
        client,  # type: ignore[arg-type]
        start=None,
        end=None,
        max_workers=1,
        worker_processes=1,
        worker_processes_min_invoices=settings.PROCESS_MIN_INVOICES,
        worker_retire_invoices=0,
        page_size=settings.MAX_PAGE_SIZE,
        created_overlap_seconds=0,
        reread_window_days=1,
        use_events=True,
    )


def test_given_event_pages_when_read_then_each_invoice_comes_once_before_the_next_page() -> None:
    client = EventPages()
    snapshots = sync_over(client)._changed_invoices(since=0)

    first, second = next(snapshots), next(snapshots)

    # the newest event of an invoice is its state; a deletion is marked
    assert first == {"id": "in_2", "status": "paid"}
    assert second == {"id": "in_1", "status": "draft", "deleted": True}
    assert client.pages_served == 1, "the first page's invoices come before the next page"
    assert next(snapshots) == {"id": "in_3", "status": "draft"}
    with pytest.raises(RuntimeError):
        next(snapshots)
