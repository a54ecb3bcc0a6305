"""The PrepBusiness source against the PrepBusiness sandbox over real HTTP, into DuckDB."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from invoice_source.errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    PaginationError,
    find_error,
)
from invoice_source.prepbusiness import PrepBusinessClient, prepbusiness_source, settings
from invoice_source.prepbusiness.client import created_on_or_after
from invoice_source.sandbox.prepbusiness import (
    DRAFT,
    FINALIZED,
    PAID,
    PAYMENT_FAILED,
    PrepBusinessApp,
)

from .conftest import SEEDED_INVOICES, TABLE, FakeStripe

Query = Callable[[str], list[tuple[Any, ...]]]
Sync = Callable[..., Any]
MakeClient = Callable[..., PrepBusinessClient]
LIST_PATH = r"^/api/billing/invoices$"


def scalar(query: Query, sql: str) -> Any:
    return query(sql)[0][0]


def list_requests(app: PrepBusinessApp) -> list[Any]:
    return app.requests_to(LIST_PATH, "GET")


def scope_state(pipeline: dlt.Pipeline, scope: str = "all") -> dict[str, Any]:
    resources = pipeline.state.get("sources", {}).get("prepbusiness", {}).get("resources", {})
    state: dict[str, Any] = resources.get(TABLE, {}).get("scopes", {}).get(scope, {})
    return state


def old_invoice(app: PrepBusinessApp, status: str, *, older_than_days: int = 7) -> int:
    cutoff = app.now() - timedelta(days=older_than_days)
    for invoice_id in app.invoice_ids(status=status):
        if app.invoices[invoice_id].created_at < cutoff:
            return invoice_id
    raise AssertionError(f"the seeded sandbox has no {status} invoice older than the overlap")


def landed(query: Query, invoice_id: int) -> dict[str, Any]:
    columns = ("status", "stripe_invoice_id", "stripe_invoice_status", "total", "merchant_id")
    row = query(f"select {', '.join(columns)} from {TABLE} where id = {invoice_id}")
    assert len(row) == 1, f"invoice {invoice_id} landed {len(row)} times"
    return dict(zip(columns, row[0], strict=True))


def test_given_more_invoices_than_a_page_when_first_synced_then_every_invoice_lands_once(
    pb_app: PrepBusinessApp, sync: Sync, query: Query
) -> None:
    sync(page_size=25)

    assert scalar(query, f"select count(*) from {TABLE}") == pb_app.count()
    assert scalar(query, f"select count(distinct id) from {TABLE}") == pb_app.count()
    requests = list_requests(pb_app)
    assert [r.arg("page") for r in requests] == [
        str(n) for n in range(1, math.ceil(SEEDED_INVOICES / 25) + 1)
    ]
    assert all(r.arg("per_page") == "25" for r in requests)
    assert all(r.header("authorization") and r.arg("api_token") is None for r in requests)


def test_given_a_full_load_when_synced_then_columns_are_typed_and_totals_exact(
    pb_app: PrepBusinessApp, sync: Sync, query: Query
) -> None:
    sync()

    columns = "select column_name, data_type from information_schema.columns"
    types: dict[str, str] = dict(query(f"{columns} where table_name = '{TABLE}'"))
    assert types["total"] == "DECIMAL(38,6)"
    assert types["created_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["id"] == "BIGINT"
    expected = sum((pb_app.invoices[i].total for i in pb_app.invoice_ids()), Decimal(0))
    assert scalar(query, f"select sum(total) from {TABLE}") == expected
    invoice_id = pb_app.invoice_ids()[0]
    created = scalar(query, f"select created_at from {TABLE} where id = {invoice_id}")
    assert created == pb_app.invoices[invoice_id].created_at
    assert scalar(query, f"select currency from {TABLE} where id = {invoice_id}") == (
        pb_app.invoices[invoice_id].currency
    )


def test_given_a_total_float_cannot_hold_when_synced_then_it_lands_to_the_cent(
    pb_app: PrepBusinessApp, sync: Sync, query: Query
) -> None:
    amount = Decimal("98765432109876543.21")
    assert Decimal(float(amount)) != amount
    charge_id = pb_app.add_charge(11, amount, description="Warehouse buyout")
    invoice_id = pb_app.create_invoice(11, [charge_id])

    sync()

    assert scalar(query, f"select total from {TABLE} where id = {invoice_id}") == amount


def test_given_a_total_with_more_than_six_decimals_when_synced_then_refused_not_rounded(
    pb_app: PrepBusinessApp, sync: Sync, pipeline: dlt.Pipeline
) -> None:
    charge_id = pb_app.add_charge(12, Decimal("0.1234567"), description="Per-unit fee")
    invoice_id = pb_app.create_invoice(12, [charge_id])

    with pytest.raises(PipelineStepFailed) as failure:
        sync()

    error = find_error(failure.value, ApiError)
    assert error is not None
    assert f"invoice {invoice_id}" in str(error) and "more than 6 decimal places" in str(error)
    with pipeline.sql_client() as client:
        assert not client.has_dataset()


def test_given_new_invoices_after_a_load_when_synced_again_then_only_the_cursor_day_is_reread(
    pb_app: PrepBusinessApp, sync: Sync, query: Query, pipeline: dlt.Pipeline
) -> None:
    sync()
    cursor = datetime.fromisoformat(scope_state(pipeline)["created_at_cursor"])
    newest = max(inv.created_at for inv in pb_app.invoices.values())
    assert cursor == newest
    pb_app.advance_clock(3 * 86_400)
    new_ids = []
    for merchant_id in (11, 12, 13):
        pb_app.add_charge(merchant_id, "42.50", description="Returns processing")
        new_ids.append(pb_app.create_invoice(merchant_id))
    pb_app.reset_log()

    sync()

    requests = list_requests(pb_app)
    assert len(requests) == 1
    day = (cursor - timedelta(days=settings.DEFAULT_OVERLAP_DAYS)).date()
    assert (requests[0].arg("q") or "").startswith(created_on_or_after(day))
    assert scalar(query, f"select count(*) from {TABLE}") == pb_app.count()
    assert {r[0] for r in query(f"select id from {TABLE}")} >= set(new_ids)
    assert datetime.fromisoformat(scope_state(pipeline)["created_at_cursor"]) == (
        pb_app.invoices[new_ids[-1]].created_at
    )


def test_given_old_invoices_changing_after_load_when_synced_then_caught_in_one_request(
    pb_app: PrepBusinessApp,
    sync: Sync,
    query: Query,
    pipeline: dlt.Pipeline,
    make_client: MakeClient,
) -> None:
    sync()
    draft_id = old_invoice(pb_app, DRAFT)
    failed_id = old_invoice(pb_app, PAYMENT_FAILED, older_than_days=90)
    tracked = scope_state(pipeline)["open_invoice_ids"]
    assert draft_id in tracked and failed_id in tracked
    pb_app.set_card_declines(pb_app.invoices[failed_id].merchant_id, False)
    client = make_client()
    client.finalize_invoice(draft_id)
    pb_app.process_stripe_queue()
    client.collect_invoice(failed_id)
    pb_app.reset_log()

    sync()

    requests = list_requests(pb_app)
    assert len(requests) == 1, [r.arg("q") for r in requests]
    assert f"id:{draft_id}" in (requests[0].arg("q") or "")
    assert landed(query, draft_id)["status"] == FINALIZED
    assert landed(query, draft_id)["stripe_invoice_status"] == "open"
    assert (
        landed(query, draft_id)["stripe_invoice_id"] == pb_app.invoices[draft_id].stripe_invoice_id
    )
    assert landed(query, failed_id)["status"] == PAID
    assert landed(query, failed_id)["stripe_invoice_status"] == "paid"
    assert failed_id not in scope_state(pipeline)["open_invoice_ids"]
    assert draft_id in scope_state(pipeline)["open_invoice_ids"]
    assert scalar(query, f"select count(*) from {TABLE}") == pb_app.count()


def test_given_more_open_invoices_than_a_query_holds_when_synced_then_ids_are_batched(
    pb_app: PrepBusinessApp, sync: Sync, query: Query, pipeline: dlt.Pipeline
) -> None:
    long_ago = pb_app.now() - timedelta(days=200)
    for n in range(130):
        charge_id = pb_app.add_charge(12, "19.99", created_at=long_ago + timedelta(minutes=n))
        pb_app.create_invoice(12, [charge_id], created_at=long_ago + timedelta(minutes=n))
    sync()
    tracked = scope_state(pipeline)["open_invoice_ids"]
    assert len(tracked) > settings.MAX_PAGE_SIZE
    last_draft = max(tracked)
    pb_app.finalize(last_draft)
    pb_app.reset_log()

    sync()

    requests = list_requests(pb_app)
    assert len(requests) == 2, "75 ids with the new-invoice clause, then the other 55"
    queries = [r.arg("q") or "" for r in requests]
    assert all(len(q) <= settings.MAX_QUERY_CHARS for q in queries)
    asked = [
        int(clause[3:]) for q in queries for clause in q.split(" OR ") if clause.startswith("id:")
    ]
    assert sorted(asked) == sorted(tracked)
    assert landed(query, last_draft)["status"] == FINALIZED


def test_given_a_declining_card_when_synced_then_payment_failed_stays_tracked(
    pb_app: PrepBusinessApp,
    sync: Sync,
    query: Query,
    pipeline: dlt.Pipeline,
    make_client: MakeClient,
) -> None:
    merchant = make_client(14)
    merchant.create_quick_adjustment("125.00", "Rush labeling")
    invoice = merchant.create_invoice()
    merchant.finalize_invoice(invoice.id)
    collected = merchant.collect_invoice(invoice.id)

    sync()

    assert not collected.is_paid and collected.status == PAYMENT_FAILED
    assert landed(query, invoice.id)["status"] == PAYMENT_FAILED
    assert landed(query, invoice.id)["stripe_invoice_status"] == "open"
    assert invoice.id in scope_state(pipeline)["open_invoice_ids"]


def test_given_create_finalize_collect_through_the_client_when_synced_then_each_step_lands(
    pb_app: PrepBusinessApp,
    fake_stripe: FakeStripe,
    sync: Sync,
    query: Query,
    make_client: MakeClient,
) -> None:
    client = make_client(11)
    charge = client.create_quick_adjustment(Decimal("310.45"), "Pallet relabel")
    uninvoiced = pb_app.uninvoiced_charge_ids(11)
    expected_total = sum((pb_app.charges[c].amount for c in uninvoiced), Decimal(0))

    draft = client.create_invoice()
    sync()
    assert charge.id in pb_app.invoices[draft.id].charge_ids
    assert draft.total == expected_total and draft.is_draft
    assert landed(query, draft.id) == {
        "status": DRAFT,
        "stripe_invoice_id": None,
        "stripe_invoice_status": None,
        "total": expected_total,
        "merchant_id": "11",
    }

    client.finalize_invoice(draft.id)
    sync()
    assert landed(query, draft.id)["status"] == FINALIZED
    assert landed(query, draft.id)["stripe_invoice_id"] is None, "queued, not yet on Stripe"

    pb_app.process_stripe_queue()
    sync()
    stripe_id = landed(query, draft.id)["stripe_invoice_id"]
    assert stripe_id in fake_stripe.invoices
    assert landed(query, draft.id)["stripe_invoice_status"] == "open"

    paid = client.collect_invoice(draft.id)
    sync()
    assert paid.is_paid
    assert landed(query, draft.id)["status"] == PAID
    assert landed(query, draft.id)["stripe_invoice_status"] == "paid"
    assert fake_stripe.invoices[stripe_id]["status"] == "paid"
    assert fake_stripe.invoices[stripe_id]["total"] == int(expected_total * 100)
    assert fake_stripe.invoices[stripe_id]["metadata"]["prepbusiness_invoice_id"] == str(draft.id)


def test_given_a_demo_day_when_synced_again_then_every_row_matches_the_api(
    pb_app: PrepBusinessApp, sync: Sync, query: Query
) -> None:
    sync()
    changes = pb_app.demo_changes()
    pb_app.reset_log()

    sync()

    assert changes["invoices_created"] > 0 and changes["finalized"] > 0
    assert changes["collected_paid"] > 0 and changes["collected_failed"] > 0
    assert len(list_requests(pb_app)) == 1
    rows = query(f"select id, status, stripe_invoice_id, stripe_invoice_status, total from {TABLE}")
    expected = {
        i: (inv["status"], inv["stripe_invoice_id"], inv["stripe_invoice_status"], inv["total"])
        for i in pb_app.invoice_ids()
        for inv in [pb_app.invoice(i)]
    }
    assert {row[0]: row[1:] for row in rows} == expected


@pytest.mark.parametrize("envelope", ["legacy", "resource"])
def test_given_another_list_envelope_when_synced_then_loads_and_changes_are_caught(
    envelope: str, pb_app: PrepBusinessApp, sync: Sync, query: Query
) -> None:
    pb_app.invoice_list_envelope = envelope
    sync(page_size=40)
    assert scalar(query, f"select count(*) from {TABLE}") == pb_app.count()
    pages = 1 if envelope == "legacy" else math.ceil(pb_app.count() / 40)
    assert len(list_requests(pb_app)) == pages
    draft_id = old_invoice(pb_app, DRAFT)
    pb_app.finalize(draft_id)

    sync()

    assert landed(query, draft_id)["status"] == FINALIZED


def test_given_a_backfill_window_when_synced_then_only_that_window_lands_and_the_cursor_stays(
    pb_app: PrepBusinessApp, sync: Sync, query: Query, pipeline: dlt.Pipeline
) -> None:
    start = pb_app.now() - timedelta(days=300)
    end = pb_app.now() - timedelta(days=100)
    expected = {i for i, inv in pb_app.invoices.items() if start <= inv.created_at < end}

    sync(start_date=start.isoformat(), end_date=end.isoformat())

    assert expected
    assert {r[0] for r in query(f"select id from {TABLE}")} == expected
    assert "created_at_cursor" not in scope_state(pipeline)
    q = list_requests(pb_app)[0].arg("q") or ""
    assert 'created_at$DATE>="' in q and 'created_at$DATE<="' in q


def test_given_a_start_date_when_first_synced_then_older_invoices_stay_out(
    pb_app: PrepBusinessApp, sync: Sync, query: Query, pipeline: dlt.Pipeline
) -> None:
    start = pb_app.now() - timedelta(days=30)

    sync(start_date=start.isoformat())

    expected = {i for i, inv in pb_app.invoices.items() if inv.created_at >= start}
    assert expected and {r[0] for r in query(f"select id from {TABLE}")} == expected
    assert "created_at_cursor" in scope_state(pipeline)


def test_given_the_providers_token_without_a_merchant_when_synced_then_each_row_has_its_merchant(
    pb_app: PrepBusinessApp, sync: Sync, query: Query
) -> None:
    sync()

    by_merchant: dict[str, int] = dict(
        query(f"select merchant_id, count(*) from {TABLE} group by 1")
    )
    assert by_merchant == {str(m): pb_app.count(m) for m in pb_app.merchants}
    assert all(r.header("x-selected-client-id") is None for r in pb_app.requests)


def test_given_two_merchant_tokens_when_synced_into_one_dataset_then_they_stay_apart(
    pb_app: PrepBusinessApp,
    pb_env: dict[str, str],
    pipeline: dlt.Pipeline,
    query: Query,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for merchant_id in (11, 12):
        monkeypatch.setenv("SOURCES__PREPBUSINESS__TOKEN", pb_app.merchant_token(merchant_id))
        monkeypatch.setenv("SOURCES__PREPBUSINESS__MERCHANT_ID", str(merchant_id))
        pb_app.reset_log()
        pipeline.run(prepbusiness_source())
        requests = list_requests(pb_app)
        assert all(r.header("x-selected-client-id") == str(merchant_id) for r in requests)
        assert requests[0].arg("q") is None, "a merchant's first run must not use another's cursor"

    by_merchant: dict[str, int] = dict(
        query(f"select merchant_id, count(*) from {TABLE} group by 1")
    )
    assert by_merchant == {"11": pb_app.count(11), "12": pb_app.count(12)}
    assert scope_state(pipeline, "11")["created_at_cursor"]
    assert scope_state(pipeline, "12")["created_at_cursor"]
    assert not set(scope_state(pipeline, "11")["open_invoice_ids"]) & set(
        scope_state(pipeline, "12")["open_invoice_ids"]
    )


def test_given_a_merchant_token_with_another_merchants_id_when_synced_then_a_clear_403(
    pb_app: PrepBusinessApp,
    pb_env: dict[str, str],
    pipeline: dlt.Pipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__PREPBUSINESS__TOKEN", pb_app.merchant_token(11))
    monkeypatch.setenv("SOURCES__PREPBUSINESS__MERCHANT_ID", "12")

    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(prepbusiness_source())

    error = find_error(failure.value, AuthenticationError)
    assert error is not None and error.status_code == 403
    assert "sources.prepbusiness.merchant_id" in str(error)


def test_given_a_bad_token_when_synced_then_a_clear_error_and_nothing_loaded(
    pb_env: dict[str, str], sync: Sync, pipeline: dlt.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_token = "pb_not_the_right_token_1234"
    monkeypatch.setenv("SOURCES__PREPBUSINESS__TOKEN", bad_token)

    with pytest.raises(PipelineStepFailed) as failure:
        sync()

    error = find_error(failure.value, AuthenticationError)
    assert error is not None
    assert "401" in str(error) and "Unauthenticated." in str(error)
    assert "SOURCES__PREPBUSINESS__TOKEN" in str(error)
    assert bad_token not in str(failure.value)
    with pipeline.sql_client() as client:
        assert not client.has_dataset()


def test_given_a_429_with_retry_after_when_synced_then_it_is_waited_out(
    pb_app: PrepBusinessApp, sync: Sync, query: Query, recorded_sleeps: list[float]
) -> None:
    pb_app.inject_status(429, retry_after="3", path_pattern=LIST_PATH)

    sync()

    assert 3.0 in recorded_sleeps
    assert scalar(query, f"select count(*) from {TABLE}") == pb_app.count()


def test_given_an_api_that_ignores_page_when_synced_then_a_clear_error_not_a_loop(
    pb_app: PrepBusinessApp, sync: Sync, pipeline: dlt.Pipeline
) -> None:
    pb_app.ignore_page_parameter = True

    with pytest.raises(PipelineStepFailed) as failure:
        sync(page_size=25)

    assert find_error(failure.value, PaginationError) is not None
    assert len(list_requests(pb_app)) == 2
    with pipeline.sql_client() as client:
        assert not client.has_dataset()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_date": "2026-02-01", "end_date": "2026-01-01"}, "is not after start_date"),
        ({"page_size": 500}, "page_size must be between 1 and 100"),
        ({"start_date": "last tuesday"}, "is not a date"),
    ],
)
def test_given_bad_settings_when_the_source_is_built_then_a_clear_configuration_error(
    kwargs: dict[str, Any], message: str, pb_env: dict[str, str]
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        prepbusiness_source(**kwargs)


def test_given_the_sandbox_env_when_read_then_it_points_at_the_api_prefix(
    pb_app: PrepBusinessApp,
) -> None:
    env = pb_app.env("http://127.0.0.1:9")

    assert env["SOURCES__PREPBUSINESS__BASE_URL"] == "http://127.0.0.1:9/api"
    assert env["SOURCES__PREPBUSINESS__TOKEN"] == pb_app.service_provider_token


def test_given_rows_loaded_when_synced_then_synced_at_is_set(sync: Sync, query: Query) -> None:
    before = datetime.now(timezone.utc)

    sync()

    oldest, newest = query(f"select min(synced_at), max(synced_at) from {TABLE}")[0]
    assert oldest == newest and before - timedelta(seconds=5) <= oldest
