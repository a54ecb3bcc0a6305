"""The concurrent reader prepares pages in the threads that read them, and a thread prepares a
page's invoices that need no more lines before it asks for the next page: what waits in its
queue is prepared pages, and a reading thread holds one decoded page at a time."""

from __future__ import annotations

import pickle
import threading
from collections import Counter
from collections.abc import Generator
from typing import Any

import pytest

from invoice_source.http import RetryPolicy
from invoice_source.sandbox.server import SandboxServer
from invoice_source.sandbox.stripe import StripeApp
from invoice_source.stripe.batch import RowBatch
from invoice_source.stripe.client import CreatedWindow, Invoice, StripeClient
from invoice_source.stripe.reader import ConcurrentInvoiceReader, InvoicePage
from invoice_source.stripe.worker import prepare_page

SYNCED_AT = 1_767_225_600


@pytest.fixture
def client(stripe_app: StripeApp, stripe_server: SandboxServer) -> StripeClient:
    """A client of the seeded sandbox, no client-side rate limit."""
    env = stripe_app.env(stripe_server.url)
    return StripeClient(
        api_key=env["SOURCES__STRIPE__API_KEY"],
        base_url=env["SOURCES__STRIPE__BASE_URL"],
        requests_per_second=0,
        retry=RetryPolicy(),
    )


def test_given_more_than_ten_lines_when_read_then_each_invoice_is_prepared_once_by_a_reader(
    stripe_app: StripeApp, client: StripeClient
) -> None:
    long_ids = {stripe_app.add_invoice(lines=23, status="open") for _ in range(3)}
    prepared_in: Counter[str] = Counter()
    lines_of: dict[str, int] = {}
    lock = threading.Lock()

    def prepare(page: InvoicePage) -> list[str]:
        with lock:
            prepared_in[threading.current_thread().name.split("_")[0]] += 1
            for invoice in page.invoices:
                lines_of[invoice["id"]] = len(page.lines.get(invoice["id"]) or [])
        return [invoice["id"] for invoice in page.invoices]

    reader = ConcurrentInvoiceReader(client, max_workers=4, page_size=25, prepare=prepare)
    read = [invoice_id for ids in reader.read(CreatedWindow(0, None)) for invoice_id in ids]

    assert sorted(read) == sorted(stripe_app.invoice_ids())
    assert set(prepared_in) == {"stripe-read"}
    assert {invoice_id: lines_of[invoice_id] for invoice_id in long_ids} == dict.fromkeys(
        long_ids, 23
    )


def test_given_a_page_when_read_then_its_complete_invoices_are_prepared_before_the_next_request(
    client: StripeClient,
) -> None:
    events: list[tuple[str, int]] = []
    listed = client.iter_invoice_pages

    def recorded_pages(
        window: CreatedWindow, *, page_size: int
    ) -> Generator[list[Invoice], None, None]:
        for number, page in enumerate(listed(window, page_size=page_size)):
            events.append(("listed", number))
            for invoice in page:
                invoice["page_number"] = number
            yield page

    def prepare(page: InvoicePage) -> None:
        events.append(("prepared", page.invoices[0]["page_number"]))

    client.iter_invoice_pages = recorded_pages  # type: ignore[method-assign,assignment]
    reader = ConcurrentInvoiceReader(client, max_workers=1, page_size=20, prepare=prepare)
    list(reader.read(CreatedWindow(None, None)))  # no start: one thread pages it all

    pages = max(number for kind, number in events if kind == "listed") + 1
    assert pages >= 10
    for number in range(1, pages):
        assert events.index(("prepared", number - 1)) < events.index(("listed", number))


def test_given_a_page_when_a_worker_prepares_it_then_its_pickled_columns_are_the_rows_of_the_page(
    client: StripeClient,
) -> None:
    pages = client.iter_invoice_pages(CreatedWindow(0, None), page_size=30)
    invoices: list[dict[str, Any]] = next(pages)
    pages.close()
    page = InvoicePage(invoices)

    prepared = prepare_page(SYNCED_AT, page)
    expected = RowBatch(SYNCED_AT)
    expected.add_page(page)

    assert pickle.loads(prepared.columns) == expected.take_pieces()
    assert prepared.invoices == 30
    assert prepared.newest_created == max(int(invoice["created"]) for invoice in invoices)


def test_given_long_invoices_when_read_then_list_and_line_requests_share_max_workers(
    stripe_app: StripeApp, client: StripeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(12):
        stripe_app.add_invoice(lines=23, status="open")  # each needs a /lines request
    in_flight, most = 0, 0
    lock = threading.Lock()
    get_json = client.http.get_json

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            threading.Event().wait(0.002)  # long enough for the other pool's requests to overlap
            return get_json(*args, **kwargs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(client.http, "get_json", counted)
    reader = ConcurrentInvoiceReader(client, max_workers=2, page_size=5, prepare=lambda p: p)

    pages = list(reader.read(CreatedWindow(0, None)))

    assert sum(len(page.invoices) for page in pages) == stripe_app.count()
    assert most == 2, "two requests at a time, never one pool's two plus the other's"
