"""The ``alternative_payments`` dlt source against the sandbox, landed in DuckDB: full and
incremental loads, change detection, server-side filters, backfills, tokens and errors."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dlt.common.pipeline import LoadInfo
from dlt.pipeline.exceptions import PipelineStepFailed

from invoice_source.alternative_payments import alternative_payments_source
from invoice_source.errors import AuthenticationError, ConfigurationError
from invoice_source.redaction import install_log_redaction
from invoice_source.sandbox.alternative_payments import AlternativePaymentsApp, SandboxInvoice
from invoice_source.sandbox.server import Request, Response, SandboxServer
from tests.alternative_payments.support import FakeClock, list_requests, make_pipeline

RunSource = Callable[..., LoadInfo]
Query = Callable[..., list[tuple[Any, ...]]]


def landed_invoices(query: Query) -> dict[str, tuple[str, bool, Decimal, Decimal]]:
    rows = query(
        "select id, status, is_archived, sub_total, total from alternative_payments_invoices"
    )
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


def expected_invoices(app: AlternativePaymentsApp) -> dict[str, tuple[str, bool, Decimal, Decimal]]:
    return {
        invoice.id: (invoice.status, invoice.status == "archived", invoice.sub_total, invoice.total)
        for invoice in app.invoices.values()
    }


def landed_lines(query: Query) -> dict[tuple[str, int], tuple[Decimal, int, Decimal, str]]:
    rows = query(
        "select invoice_id, line_number, amount, quantity, line_total, description"
        " from alternative_payments_invoice_line_items"
    )
    return {(row[0], row[1]): (row[2], row[3], row[4], row[5]) for row in rows}


def expected_lines(
    invoices: list[SandboxInvoice],
) -> dict[tuple[str, int], tuple[Decimal, int, Decimal, str]]:
    return {
        (invoice.id, number): (
            line["amount"],
            line["quantity"],
            line["amount"] * line["quantity"],
            line["description"],
        )
        for invoice in invoices
        for number, line in enumerate(invoice.line_items, start=1)
    }


def saved_state(duckdb_path: Path) -> dict[str, Any]:
    state = make_pipeline(duckdb_path).state["sources"]["alternative_payments"]
    return dict(state["resources"]["alternative_payments_invoices"])


def test_given_many_pages_when_fully_loaded_then_every_invoice_and_line_lands_exactly(
    run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query
) -> None:
    page_size = 20

    run_source(page_size=page_size)

    visible = len(ap_app.visible_invoices())
    archived = len(ap_app.invoices) - visible
    requests = list_requests(ap_app)
    assert len(requests) == math.ceil(visible / page_size) + math.ceil(archived / page_size) > 10
    assert all(request["limit"] == str(page_size) for request in requests)
    assert landed_invoices(query) == expected_invoices(ap_app)
    assert landed_lines(query) == expected_lines(list(ap_app.invoices.values()))
    assert len(ap_app.requests_to(r"^/oauth/token$")) == 1


def test_given_loaded_tables_then_money_is_decimal_times_are_typed_and_ids_carried(
    run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query
) -> None:
    run_source()

    invoice_types: dict[str, str] = dict(
        query(
            "select column_name, data_type from information_schema.columns"
            " where table_name = 'alternative_payments_invoices'"
        )
    )
    line_types: dict[str, str] = dict(
        query(
            "select column_name, data_type from information_schema.columns"
            " where table_name = 'alternative_payments_invoice_line_items'"
        )
    )
    assert invoice_types["total"] == invoice_types["sub_total"] == "DECIMAL(38,6)"
    assert invoice_types["created_at"] == "TIMESTAMP WITH TIME ZONE"
    assert invoice_types["last_notification_at"] == "TIMESTAMP WITH TIME ZONE"
    assert invoice_types["due_date"] == "DATE"
    assert invoice_types["is_archived"] == "BOOLEAN"
    assert line_types["amount"] == line_types["line_total"] == "DECIMAL(38,6)"
    assert line_types["quantity"] == line_types["line_number"] == "BIGINT"
    sample = next(iter(ap_app.invoices.values()))
    created_at, due_date = query(
        "select created_at, due_date from alternative_payments_invoices where id = ?", sample.id
    )[0]
    assert created_at == sample.created_at
    assert due_date == sample.due_date


def test_given_deliberate_total_mismatch_when_loaded_then_exactly_that_invoice_disagrees_in_sql(
    run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query
) -> None:
    run_source()

    mismatched = query(
        "select i.id, i.total - sum(l.line_total) from alternative_payments_invoices i"
        " join alternative_payments_invoice_line_items l on l.invoice_id = i.id"
        " group by i.id, i.total having i.total <> sum(l.line_total)"
    )

    assert mismatched == [(ap_app.deliberate_mismatches["total_mismatch"], Decimal("25"))]


def test_given_new_invoices_between_runs_when_reloaded_then_only_the_new_window_is_listed(
    run_source: RunSource,
    ap_app: AlternativePaymentsApp,
    query: Query,
    clock: FakeClock,
    duckdb_path: Path,
) -> None:
    run_source(page_size=50)
    newest_seeded = max(invoice.created_at for invoice in ap_app.visible_invoices())
    first_cursor = saved_state(duckdb_path)["scopes"]["all"]["cursor"]
    clock.advance(3600)
    new = [
        ap_app.create_invoice(
            customer_id="cus_late",
            line_items=[{"amount": "19.99", "description": "Late line", "quantity": 2}],
        )
        for _ in range(3)
    ]
    ap_app.reset_log()

    run_source(page_size=50)

    new_window = list_requests(ap_app)[0]
    lookback_start = datetime.fromtimestamp(newest_seeded.timestamp() - 300, tz=timezone.utc)
    assert first_cursor == newest_seeded.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert new_window == {
        "created_at_start": lookback_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "limit": "50",
    }
    rows = landed_invoices(query)
    assert {invoice.id for invoice in new} <= set(rows)
    assert rows == expected_invoices(ap_app)
    assert landed_lines(query) == expected_lines(list(ap_app.invoices.values()))
    assert saved_state(duckdb_path)["scopes"]["all"]["cursor"] == "2026-01-15T13:00:00Z"


def test_given_second_run_without_changes_then_it_costs_one_page_per_watched_set_and_no_gets(
    run_source: RunSource, ap_app: AlternativePaymentsApp
) -> None:
    run_source()
    ap_app.reset_log()

    run_source()

    statuses = [request.get("status") for request in list_requests(ap_app)]
    assert statuses == [None, "draft", "open", "overdue", "processing", "archived"]
    assert ap_app.requests_to(r"^/invoices/", "GET") == []
    assert len(ap_app.requests) == 1 + len(statuses)


def test_given_token_expiring_mid_paging_when_loaded_then_refetched_and_every_page_lands(
    run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query, clock: FakeClock
) -> None:
    ap_app.token_lifetime_seconds = 600
    dispatch = ap_app.dispatch

    def dispatch_advancing_clock(request: Request) -> Response:
        if request.path == "/invoices":
            clock.advance(250)
        return dispatch(request)

    ap_app.dispatch = dispatch_advancing_clock  # type: ignore[method-assign]

    run_source(page_size=20)

    tokens = len(ap_app.requests_to(r"^/oauth/token$"))
    visible = len(ap_app.visible_invoices())
    pages = math.ceil(visible / 20) + math.ceil((len(ap_app.invoices) - visible) / 20)
    assert tokens >= 4
    assert len(list_requests(ap_app)) == pages + (tokens - 1)
    assert landed_invoices(query) == expected_invoices(ap_app)
    assert landed_lines(query) == expected_lines(list(ap_app.invoices.values()))


def test_given_archive_then_restore_when_synced_then_flag_is_set_then_cleared_and_rows_kept(
    run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query
) -> None:
    run_source()
    open_invoice = next(i for i in ap_app.visible_invoices() if i.status == "open")
    paid_invoice = next(i for i in ap_app.visible_invoices() if i.status == "paid")
    lines_before = landed_lines(query)

    ap_app.archive(open_invoice.id)
    ap_app.archive(paid_invoice.id)
    ap_app.reset_log()
    run_source()
    archived_rows = landed_invoices(query)
    gets_after_archive = len(ap_app.requests_to(r"^/invoices/", "GET"))

    ap_app.restore(open_invoice.id)
    ap_app.restore(paid_invoice.id)
    ap_app.reset_log()
    run_source()
    restored_rows = landed_invoices(query)

    assert archived_rows[open_invoice.id][:2] == ("archived", True)
    assert archived_rows[paid_invoice.id][:2] == ("archived", True)
    assert gets_after_archive == 0
    assert restored_rows[open_invoice.id][:2] == ("open", False)
    assert restored_rows[paid_invoice.id][:2] == ("paid", False)
    assert [request.path for request in ap_app.requests_to(r"^/invoices/", "GET")] == [
        f"/invoices/{paid_invoice.id}"
    ]
    assert landed_lines(query) == lines_before
    assert restored_rows == expected_invoices(ap_app)


def test_given_payment_edit_and_due_date_passing_when_resynced_then_status_totals_lines_update(
    run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query
) -> None:
    run_source()
    candidates = [i for i in ap_app.visible_invoices() if i.status == "open"]
    candidates = [i for i in candidates if i.id not in ap_app.deliberate_mismatches.values()]
    paid, overdue = candidates[0], candidates[1]
    edited = next(i for i in candidates[2:] if len(i.line_items) > 1)
    ap_app.pay(paid.id)
    ap_app.set_status(overdue.id, "overdue")
    ap_app.set_line_items(edited.id, [{"amount": "10.05", "description": "Only", "quantity": 3}])
    ap_app.reset_log()

    run_source()

    rows = landed_invoices(query)
    assert rows[paid.id][0] == "paid"
    assert rows[overdue.id][0] == "overdue"
    assert rows[edited.id][2:] == (Decimal("30.15"), Decimal("30.15"))
    edited_lines = query(
        "select line_number, amount, quantity, line_total"
        " from alternative_payments_invoice_line_items where invoice_id = ?",
        edited.id,
    )
    assert edited_lines == [(1, Decimal("10.05"), 3, Decimal("30.15"))]
    assert [r.path for r in ap_app.requests_to(r"^/invoices/", "GET")] == [f"/invoices/{paid.id}"]
    assert rows == expected_invoices(ap_app)


def test_given_demo_changes_when_resynced_then_the_dataset_matches_the_api_again(
    run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query, clock: FakeClock
) -> None:
    run_source()
    clock.advance(86400)

    changes = ap_app.demo_changes()
    run_source()

    assert changes["invoices_created"] > 0
    assert landed_invoices(query) == expected_invoices(ap_app)
    assert landed_lines(query) == expected_lines(list(ap_app.invoices.values()))


def test_given_status_the_api_cannot_filter_when_resynced_then_read_by_id_and_kept_as_sent(
    run_source: RunSource,
    ap_app: AlternativePaymentsApp,
    query: Query,
    duckdb_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_source()
    target = next(i for i in ap_app.visible_invoices() if i.status == "open")
    ap_app.set_status(target.id, "partially_paid")
    run_source()
    ap_app.set_line_items(target.id, [{"amount": "1.00", "description": "Rest", "quantity": 1}])
    ap_app.reset_log()

    run_source()

    assert landed_invoices(query)[target.id][0] == "partially_paid"
    assert landed_invoices(query)[target.id][3] == Decimal("1")
    assert "partially_paid" in saved_state(duckdb_path)["watch_statuses"]
    assert "refused status=partially_paid as a filter" in caplog.text
    assert [r.path for r in ap_app.requests_to(r"^/invoices/", "GET")] == [f"/invoices/{target.id}"]


def test_given_seeded_processing_status_when_loaded_then_kept_and_relisted_next_run(
    run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query, duckdb_path: Path
) -> None:
    processing = {i.id for i in ap_app.invoices.values() if i.status == "processing"}

    run_source()

    landed = {
        row[0]
        for row in query("select id from alternative_payments_invoices where status = 'processing'")
    }
    assert processing and landed == processing
    assert saved_state(duckdb_path)["watch_statuses"] == ["processing"]
    tracked = saved_state(duckdb_path)["scopes"]["all"]["tracked"]
    assert {i for i, status in tracked.items() if status == "processing"} == processing


FILTERS: dict[str, Callable[[AlternativePaymentsApp], tuple[dict[str, Any], Any]]] = {
    "status": lambda app: ({"status": "paid"}, lambda i: i.status == "paid"),
    "customer_id": lambda app: (
        {"customer_id": app.visible_invoices()[0].customer_id},
        lambda i: i.customer_id == app.visible_invoices()[0].customer_id,
    ),
    "invoice_number": lambda app: (
        {"invoice_number": "INV-000010"},
        lambda i: i.invoice_number == "INV-000010",
    ),
    "due_date": lambda app: (
        {"due_date_start": "2025-10-01", "due_date_end": "2025-12-01T00:00:00Z"},
        lambda i: date(2025, 10, 1) <= i.due_date < date(2025, 12, 1),
    ),
}
FILTER_PARAMS = {
    "status": {"status": "paid"},
    "invoice_number": {"invoice_number": "INV-000010"},
    "due_date": {
        "due_date_start": "2025-10-01T00:00:00Z",
        "due_date_end": "2025-12-01T00:00:00Z",
    },
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_given_filter_when_loaded_then_applied_server_side_and_only_matching_rows_land(
    name: str, run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query
) -> None:
    source_args, matches = FILTERS[name](ap_app)
    expected = [i for i in ap_app.invoices.values() if matches(i)]
    page_size = 10

    run_source(page_size=page_size, **source_args)

    requests = list_requests(ap_app)
    sent = FILTER_PARAMS.get(name, source_args)
    assert expected
    assert all(request.items() >= sent.items() for request in requests)
    if name == "status":
        assert len(requests) == math.ceil(len(expected) / page_size)
    else:
        visible = [i for i in expected if i.status != "archived"]
        archived = [i for i in expected if i.status == "archived"]
        assert len(requests) == max(1, math.ceil(len(visible) / page_size)) + max(
            1, math.ceil(len(archived) / page_size)
        )
    assert set(landed_invoices(query)) == {i.id for i in expected}
    assert landed_lines(query) == expected_lines(expected)


def test_given_filtered_run_when_unfiltered_run_follows_then_each_keeps_its_own_cursor(
    run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query, duckdb_path: Path
) -> None:
    run_source(status="paid")

    run_source()

    scopes = saved_state(duckdb_path)["scopes"]
    assert set(scopes) == {"status=paid", "all"}
    assert landed_invoices(query) == expected_invoices(ap_app)


def test_given_backfill_window_when_loaded_then_mapped_to_created_at_filters_and_cursor_untouched(
    run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query, duckdb_path: Path
) -> None:
    run_source(start_date="2025-12-01")
    cursor = saved_state(duckdb_path)["scopes"]["all"]["cursor"]
    window_start = datetime(2025, 6, 1, tzinfo=timezone.utc)
    window_end = datetime(2025, 9, 1, tzinfo=timezone.utc)
    ap_app.reset_log()

    run_source(start_date="2025-06-01", end_date=datetime(2025, 9, 1))

    requests = list_requests(ap_app)
    assert {(r["created_at_start"], r["created_at_end"]) for r in requests} == {
        ("2025-06-01T00:00:00Z", "2025-09-01T00:00:00Z")
    }
    assert [r.get("status") for r in requests][-1] == "archived"
    in_window = {
        i.id for i in ap_app.invoices.values() if window_start <= i.created_at < window_end
    }
    since_first_start = {
        i.id
        for i in ap_app.invoices.values()
        if i.created_at >= datetime(2025, 12, 1, tzinfo=timezone.utc)
    }
    assert in_window
    assert set(landed_invoices(query)) == in_window | since_first_start
    assert saved_state(duckdb_path)["scopes"]["all"]["cursor"] == cursor


def test_given_first_run_with_start_date_then_only_invoices_created_since_land(
    run_source: RunSource, ap_app: AlternativePaymentsApp, query: Query
) -> None:
    start = datetime(2025, 11, 1, tzinfo=timezone.utc)

    run_source(start_date="2025-11-01")

    assert {r["created_at_start"] for r in list_requests(ap_app)} == {"2025-11-01T00:00:00Z"}
    assert set(landed_invoices(query)) == {
        i.id for i in ap_app.invoices.values() if i.created_at >= start
    }


def test_given_bad_credentials_when_run_then_clear_authentication_error_and_nothing_loaded(
    run_source: RunSource, ap_app: AlternativePaymentsApp, duckdb_path: Path
) -> None:
    with pytest.raises(PipelineStepFailed) as caught:
        run_source(client_secret="wrong-secret-xyz")

    causes = []
    error: BaseException | None = caught.value
    while error is not None:
        causes.append(error)
        error = error.__cause__ or error.__context__
    auth_errors = [e for e in causes if isinstance(e, AuthenticationError)]
    assert auth_errors
    assert "sources.alternative_payments.client_id" in str(auth_errors[0])
    assert all("wrong-secret-xyz" not in str(e) for e in causes)
    assert ap_app.requests_to(r"^/invoices") == []
    if duckdb_path.exists():
        import duckdb

        with duckdb.connect(str(duckdb_path), read_only=True) as connection:
            tables = connection.execute(
                "select table_name from information_schema.tables"
                " where table_name like 'alternative_payments%'"
            ).fetchall()
        assert tables == []
    assert "alternative_payments" not in make_pipeline(duckdb_path).state.get("sources", {})


def test_given_sandbox_env_when_source_reads_config_then_it_loads_and_keeps_the_secret_out(
    ap_app: AlternativePaymentsApp,
    ap_server: SandboxServer,
    duckdb_path: Path,
    query: Query,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    for key, value in ap_app.env(ap_server.url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SOURCES__ALTERNATIVE_PAYMENTS__REQUESTS_PER_SECOND", "0")
    monkeypatch.setenv("SOURCES__ALTERNATIVE_PAYMENTS__SCOPES", "invoices:read")
    pipeline = make_pipeline(duckdb_path)

    info = pipeline.run(alternative_payments_source())

    assert landed_invoices(query) == expected_invoices(ap_app)
    assert ("scope", "invoices:read") in ap_app.requests_to(r"^/oauth/token$")[0].form()
    token = (ap_app.requests_to(r"^/invoices$")[0].header("authorization") or "").split()[-1]
    assert pipeline.last_trace is not None
    for secret in (ap_app.client_secret, token):
        assert secret not in caplog.text
        assert secret not in str(info)
        assert secret not in str(pipeline.last_trace.asdict())


def test_given_unparseable_start_date_when_source_built_then_configuration_error_names_key(
    ap_server: SandboxServer, ap_app: AlternativePaymentsApp
) -> None:
    with pytest.raises(ConfigurationError, match=r"sources\.alternative_payments\.start_date"):
        alternative_payments_source(
            base_url=ap_server.url,
            client_id=ap_app.client_id,
            client_secret=ap_app.client_secret,
            start_date="last tuesday",
        )
