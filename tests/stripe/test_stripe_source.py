"""The Stripe source against the Stripe sandbox over real HTTP, into DuckDB."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from invoice_source.errors import AuthenticationError, PaginationError, find_error
from invoice_source.sandbox.stripe import StripeApp

Query = Callable[[str], list[tuple[Any, ...]]]
Sync = Callable[..., Any]
DAY = 86_400


def scalar(query: Query, sql: str) -> Any:
    return query(sql)[0][0]


def expected_line_total(app: StripeApp) -> int:
    return sum(app.line_count(invoice_id) for invoice_id in app.invoice_ids())


def find_invoice(
    app: StripeApp, status: str, *, older_than_days: int = 2, newer_than_days: int = 10_000
) -> str:
    cutoff = time.time() - older_than_days * DAY
    floor = time.time() - newer_than_days * DAY
    for invoice_id in app.invoice_ids():
        invoice = app.get(invoice_id)
        assert invoice is not None
        if invoice["status"] == status and floor < invoice["created"] < cutoff:
            return invoice_id
    raise AssertionError(f"the seeded sandbox has no {status} invoice older than the overlap")


def cursor_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    state: dict[str, Any] = pipeline.state["sources"]["stripe"]["resources"]["stripe_invoices"]
    return state


def test_given_a_seeded_account_when_first_synced_then_every_invoice_and_line_lands(
    stripe_app: StripeApp, sync: Sync, query: Query
) -> None:
    sync()

    assert scalar(query, "select count(*) from stripe_invoices") == stripe_app.count()
    assert scalar(query, "select count(distinct id) from stripe_invoices") == stripe_app.count()
    assert scalar(query, "select count(*) from stripe_invoice_line_items") == expected_line_total(
        stripe_app
    )
    assert scalar(query, "select count(*) from stripe_invoices where line_count is null") == 0


def test_given_more_than_ten_lines_when_synced_then_all_lines_land(
    stripe_app: StripeApp, sync: Sync, query: Query
) -> None:
    invoice_id = stripe_app.add_invoice(lines=25, status="open")

    sync()

    rows = query(
        "select line_number from stripe_invoice_line_items"
        f" where invoice_id = '{invoice_id}' order by line_number"
    )
    assert [row[0] for row in rows] == list(range(1, 26))
    assert stripe_app.requests_to(rf"^/v1/invoices/{invoice_id}/lines$"), "lines were not paged"
    assert scalar(query, f"select line_count from stripe_invoices where id = '{invoice_id}'") == 25


def test_given_nothing_new_when_synced_again_then_at_most_three_requests_and_no_duplicates(
    stripe_app: StripeApp, sync: Sync, query: Query
) -> None:
    sync()
    invoices = scalar(query, "select count(*) from stripe_invoices")
    lines = scalar(query, "select count(*) from stripe_invoice_line_items")
    stripe_app.reset_log()

    sync()

    assert len(stripe_app.requests) <= 3, [r.path for r in stripe_app.requests]
    assert scalar(query, "select count(*) from stripe_invoices") == invoices
    assert scalar(query, "select count(*) from stripe_invoice_line_items") == lines
    assert (
        scalar(
            query,
            "select count(*) - count(distinct invoice_id || id) from stripe_invoice_line_items",
        )
        == 0
    )


def test_given_new_invoices_when_synced_again_then_only_new_ones_are_fetched(
    stripe_app: StripeApp, sync: Sync, query: Query, pipeline: dlt.Pipeline
) -> None:
    sync()
    cursor = cursor_state(pipeline)["created_cursor"]
    new_ids = [stripe_app.add_invoice(lines=3, status="open") for _ in range(5)]
    stripe_app.reset_log()

    sync()

    list_requests = stripe_app.requests_to(r"^/v1/invoices$", "GET")
    assert len(list_requests) == 1
    assert int(list_requests[0].arg("created[gte]") or 0) >= cursor - 3600
    assert scalar(query, "select count(*) from stripe_invoices") == stripe_app.count()
    landed = {row[0] for row in query("select id from stripe_invoices")}
    assert set(new_ids) <= landed


def test_given_a_draft_paid_after_the_first_load_when_synced_then_it_shows_paid(
    stripe_app: StripeApp, sync: Sync, query: Query
) -> None:
    sync()
    draft_id = find_invoice(stripe_app, "draft")
    stripe_app.finalize(draft_id)
    stripe_app.pay(draft_id)

    sync()

    status, paid_at, amount_paid, amount_due = query(
        "select status, paid_at, amount_paid, amount_due from stripe_invoices"
        f" where id = '{draft_id}'"
    )[0]
    assert status == "paid"
    assert paid_at is not None
    assert amount_paid == amount_due


def test_given_void_and_uncollectible_invoices_when_synced_then_statuses_follow(
    stripe_app: StripeApp, sync: Sync, query: Query
) -> None:
    sync()
    open_ids = [
        i for i in stripe_app.invoice_ids() if (stripe_app.get(i) or {}).get("status") == "open"
    ]
    voided, uncollectible = open_ids[0], open_ids[1]
    stripe_app.void(voided)
    stripe_app.mark_uncollectible(uncollectible)

    sync()

    statuses: dict[str, str] = dict(
        query(f"select id, status from stripe_invoices where id in ('{voided}', '{uncollectible}')")
    )
    assert statuses == {voided: "void", uncollectible: "uncollectible"}


def test_given_a_deleted_draft_when_synced_then_its_row_stays_flagged_deleted(
    stripe_app: StripeApp, sync: Sync, query: Query
) -> None:
    sync()
    draft_id = find_invoice(stripe_app, "draft")
    lines_before = scalar(
        query, f"select count(*) from stripe_invoice_line_items where invoice_id = '{draft_id}'"
    )
    stripe_app.delete_draft(draft_id)

    sync()

    assert query(f"select is_deleted from stripe_invoices where id = '{draft_id}'") == [(True,)]
    assert scalar(query, "select count(*) from stripe_invoices where not is_deleted") == (
        stripe_app.count()
    )
    lines_after = scalar(
        query, f"select count(*) from stripe_invoice_line_items where invoice_id = '{draft_id}'"
    )
    assert lines_after == lines_before


def test_given_a_draft_gaining_a_line_when_synced_then_its_lines_are_replaced(
    stripe_app: StripeApp, sync: Sync, query: Query
) -> None:
    sync()
    draft_id = find_invoice(stripe_app, "draft")
    before = stripe_app.line_count(draft_id)
    stripe_app.add_line(draft_id, amount=4200, description="late addition")

    sync()

    rows = query(
        "select count(*), count(distinct id) from stripe_invoice_line_items"
        f" where invoice_id = '{draft_id}'"
    )
    assert rows == [(before + 1, before + 1)]


def test_given_a_draft_losing_every_line_when_synced_then_its_lines_discounts_and_taxes_go(
    stripe_app: StripeApp, sync: Sync, query: Query
) -> None:
    child_tables = (
        "stripe_invoice_line_items",
        "stripe_invoice_line_item_discounts",
        "stripe_invoice_line_item_taxes",
    )
    sync()
    before = {table: scalar(query, f"select count(*) from {table}") for table in child_tables}
    drafts = query(
        "select i.id from stripe_invoices i where i.status = 'draft'"
        " and exists (select 1 from stripe_invoice_line_item_discounts d where d.invoice_id = i.id)"
        " and exists (select 1 from stripe_invoice_line_item_taxes t where t.invoice_id = i.id)"
        " order by i.created limit 1"
    )
    assert drafts, "the seeded sandbox has no draft with both a discount and a tax"
    draft_id = drafts[0][0]
    own = {
        table: scalar(query, f"select count(*) from {table} where invoice_id = '{draft_id}'")
        for table in child_tables
    }
    for line in stripe_app.lines_of(draft_id):
        stripe_app.remove_line(draft_id, line)

    sync()

    for table in child_tables:
        assert query(f"select count(*) from {table} where invoice_id = '{draft_id}'") == [(0,)]
        # the other invoices' rows stay, and the placeholder rows never land
        assert scalar(query, f"select count(*) from {table}") == before[table] - own[table]
        assert query(f"select count(*) from {table} where is_no_rows_marker") == [(0,)]
    assert query(f"select line_count from stripe_invoices where id = '{draft_id}'") == [(0,)]


def test_given_a_429_with_retry_after_when_synced_then_it_is_waited_out(
    stripe_app: StripeApp, sync: Sync, query: Query, recorded_sleeps: list[float]
) -> None:
    stripe_app.inject_status(429, retry_after="2", path_pattern=r"^/v1/invoices$")

    sync()

    assert 2.0 in recorded_sleeps
    assert scalar(query, "select count(*) from stripe_invoices") == stripe_app.count()


def test_given_a_bad_api_key_when_synced_then_a_clear_error_and_nothing_loaded(
    stripe_env: dict[str, str], sync: Sync, pipeline: dlt.Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_key = "sk_test_not_the_right_key_0000"
    monkeypatch.setenv("SOURCES__STRIPE__API_KEY", bad_key)

    with pytest.raises(PipelineStepFailed) as failure:
        sync()

    error = find_error(failure.value, AuthenticationError)
    assert error is not None
    assert "401" in str(error) and "SOURCES__STRIPE__API_KEY" in str(error)
    assert bad_key not in str(failure.value)
    with pipeline.sql_client() as client:
        assert not client.has_dataset()


def test_given_events_unavailable_when_synced_then_a_window_is_reread_and_changes_caught(
    stripe_app: StripeApp, sync: Sync, query: Query, caplog: pytest.LogCaptureFixture
) -> None:
    sync()
    draft_id = find_invoice(stripe_app, "draft", newer_than_days=60)
    stripe_app.finalize(draft_id)
    stripe_app.events_available = False

    with caplog.at_level(logging.WARNING, logger="invoice_source"):
        sync()

    assert "re-reading invoices created in" in caplog.text
    assert query(f"select status from stripe_invoices where id = '{draft_id}'") == [("open",)]


def test_given_a_last_run_older_than_event_retention_when_synced_then_a_window_is_reread(
    stripe_app: StripeApp,
    sync: Sync,
    query: Query,
    pipeline: dlt.Pipeline,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sync()
    with pipeline.managed_state() as state:
        resource_state = state["sources"]["stripe"]["resources"]["stripe_invoices"]
        resource_state["events_cursor"] -= 31 * DAY
    draft_id = find_invoice(stripe_app, "draft", newer_than_days=60)
    stripe_app.finalize(draft_id)
    stripe_app.reset_log()

    with caplog.at_level(logging.WARNING, logger="invoice_source"):
        sync()

    assert "Stripe keeps events for 30 days" in caplog.text
    assert not stripe_app.requests_to(r"^/v1/events$")
    assert query(f"select status from stripe_invoices where id = '{draft_id}'") == [("open",)]


def test_given_legacy_event_snapshots_when_synced_then_both_shapes_fill_the_same_columns(
    stripe_app: StripeApp, sync: Sync, query: Query
) -> None:
    sync()
    draft_id = find_invoice(stripe_app, "draft")
    stripe_app.finalize(draft_id)

    sync()

    shapes: dict[str, int] = dict(
        query("select api_shape, count(*) from stripe_invoice_line_items group by 1")
    )
    assert shapes.get("basil", 0) > 0 and shapes.get("legacy", 0) > 0
    missing = query(
        "select api_shape, count(*) from stripe_invoice_line_items"
        " where price_id is null or product_id is null or line_type is null"
        " or is_proration is null or period_start is null group by 1"
    )
    assert missing == []


def test_given_the_appgregator_proxy_when_synced_then_every_invoice_lands_in_the_legacy_shape(
    stripe_app: StripeApp,
    stripe_server: Any,
    sync: Sync,
    query: Query,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in stripe_app.appgregator_env(stripe_server.url).items():
        monkeypatch.setenv(key, value)

    sync()

    assert scalar(query, "select count(*) from stripe_invoices") == stripe_app.count()
    assert scalar(query, "select count(*) from stripe_invoice_line_items") == expected_line_total(
        stripe_app
    )
    assert query("select distinct api_shape from stripe_invoice_line_items") == [("legacy",)]
    proxied = stripe_app.requests_to(r"^/stripe/")
    assert proxied and all(r.arg("name") and r.arg("connection_name") for r in proxied)
    assert all(r.header("x-api-key") for r in proxied)
    assert not stripe_app.requests_to(r"^/v1/")


def test_given_a_proxy_that_ignores_cursors_when_synced_then_a_clear_error_not_a_loop(
    stripe_app: StripeApp,
    stripe_server: Any,
    sync: Sync,
    pipeline: dlt.Pipeline,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in stripe_app.appgregator_env(stripe_server.url).items():
        monkeypatch.setenv(key, value)
    stripe_app.appgregator_passes_parameters = False

    with pytest.raises(PipelineStepFailed) as failure:
        sync()

    assert find_error(failure.value, PaginationError) is not None
    assert len(stripe_app.requests) < 20
    with pipeline.sql_client() as client:
        assert not client.has_dataset()


def test_given_zero_and_three_decimal_currencies_when_synced_then_minor_units_stay_exact(
    stripe_app: StripeApp, sync: Sync, query: Query
) -> None:
    yen = stripe_app.add_invoice(
        currency="jpy", lines=[{"amount": 1500, "description": "tea", "quantity": 1}], status="open"
    )
    dinar = stripe_app.add_invoice(
        currency="bhd",
        lines=[{"amount": 12345, "description": "dates", "quantity": 1}],
        status="open",
    )

    sync()

    totals: dict[str, int] = dict(
        query(f"select id, subtotal from stripe_invoices where id in ('{yen}', '{dinar}')")
    )
    assert totals == {yen: 1500, dinar: 12345}
    currencies: dict[str, str] = dict(
        query(f"select id, currency from stripe_invoices where id in ('{yen}', '{dinar}')")
    )
    assert currencies == {yen: "jpy", dinar: "bhd"}


def test_given_a_backfill_window_when_synced_then_only_that_window_lands_and_the_cursor_stays(
    stripe_app: StripeApp, sync: Sync, query: Query, pipeline: dlt.Pipeline
) -> None:
    start = int(time.time()) - 400 * DAY
    end = int(time.time()) - 200 * DAY
    expected = sum(
        1
        for invoice_id in stripe_app.invoice_ids()
        if start <= (stripe_app.get(invoice_id) or {})["created"] < end
    )
    start_date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
    end_date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))

    sync(start_date=start_date, end_date=end_date)

    assert expected > 0
    assert scalar(query, "select count(*) from stripe_invoices") == expected
    resources = pipeline.state.get("sources", {}).get("stripe", {}).get("resources", {})
    assert "created_cursor" not in resources.get("stripe_invoices", {})


def test_given_an_end_date_before_the_start_date_when_synced_then_a_clear_error(
    stripe_env: dict[str, str], pipeline: dlt.Pipeline
) -> None:
    from invoice_source.errors import ConfigurationError
    from invoice_source.stripe import stripe_source

    with pytest.raises(ConfigurationError, match=r"end_date .* is not after start_date"):
        stripe_source(start_date="2026-02-01", end_date="2026-01-01")


def test_given_many_invoices_per_second_when_read_concurrently_then_each_lands_exactly_once(
    stripe_app: StripeApp, sync: Sync, query: Query, monkeypatch: pytest.MonkeyPatch
) -> None:
    from invoice_source.stripe import reader

    monkeypatch.setattr(reader, "MIN_SPLIT_SECONDS", 0)
    now = int(time.time())
    stripe_app.seed_invoices(1500, start=now - 3 * DAY, end=now - 3 * DAY + 300)
    stripe_app.reset_log()

    sync(max_workers=4)

    assert scalar(query, "select count(*) from stripe_invoices") == stripe_app.count()
    assert scalar(query, "select count(distinct id) from stripe_invoices") == stripe_app.count()
    windows = {
        (r.arg("created[gte]"), r.arg("created[lt]"))
        for r in stripe_app.requests_to(r"^/v1/invoices$", "GET")
    }
    assert len(windows) > 4, "the range was never split across workers"


def test_given_json_columns_sent_as_arrow_text_when_synced_then_dlt_warns_only_for_others(
    sync: Sync,
    pipeline: dlt.Pipeline,
    query: Query,
    log_messages: Callable[[str, int], list[str]],
) -> None:
    import pyarrow as pa

    messages = log_messages("dlt", logging.WARNING)
    sync()
    others = dlt.resource(
        [pa.table({"id": ["x"], "payload": ['{"a": 1}']})],
        name="not_invoice_sync",
        columns={"payload": {"data_type": "json"}},
    )
    pipeline.extract(others)

    differ = [m for m in messages if "several column hints were different" in m]
    assert differ, "dlt no longer warns when an Arrow column is text under a json hint"
    assert all(m.startswith("In resource: not_invoice_sync,") for m in differ), differ
    assert scalar(query, "select count(*) from stripe_invoices where metadata is not null") > 0
