"""The fault suite against the PrepBusiness and Alternative Payments sources.

The same promises as for Stripe, through each API's own paging (Laravel pages, opaque cursors)
and change tracking (open invoices re-read, archived ones re-listed): transient faults cost
only retries, a fault that retrying cannot fix stops the run cleanly and the next run fills the
gap, a paging loop is refused, changes while paging and a killed run converge on the next run,
and wrong settings end in one line naming the key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from invoice_source.errors import ApiUnavailableError, PaginationError
from invoice_source.pipeline import SyncFailedError, SyncOptions, make_pipeline, run_sync
from invoice_source.sandbox.server import Fault, SandboxServer
from tests.faults.support import (
    CliRun,
    Scripted,
    ScriptedAlternativePaymentsApp,
    ScriptedPrepBusinessApp,
    has_table,
    query,
    rotate_faults,
    run_cli,
    sync_error,
)

PAGE_SIZE = 10
SOURCES = ["prepbusiness", "alternative_payments"]

Landed = dict[Any, tuple[Any, ...]]


@dataclass
class SourceCase:
    """One source under test: its sandbox and how to compare it with what landed."""

    name: str
    app: Scripted
    table: str
    expected: Callable[[], Landed]
    landed: Callable[[Path], Landed]

    @property
    def list_pattern(self) -> str:
        return rf"^{self.app.list_path}$"

    def change(self) -> None:
        """A day of business in the sandbox."""
        changes = self.app.demo_changes()  # type: ignore[attr-defined]
        assert any(changes.values())

    def assert_landed_exactly(self, db_path: Path) -> None:
        """Every sandbox invoice landed once, as the sandbox has it now (lines included)."""
        ids = [row[0] for row in query(db_path, f"select id from {self.table}")]
        assert len(ids) == len(set(ids)), "an invoice landed twice"
        assert self.landed(db_path) == self.expected()


def prepbusiness_case() -> SourceCase:
    app = ScriptedPrepBusinessApp(seed=41)
    app.seed_invoices(45)

    def expected() -> Landed:
        rendered = (app.invoice(invoice_id) for invoice_id in app.invoices)
        return {
            invoice["id"]: (invoice["status"], invoice["stripe_invoice_status"])
            for invoice in rendered
        }

    def landed(db_path: Path) -> Landed:
        rows = query(db_path, "select id, status, stripe_invoice_status from prepbusiness_invoices")
        return {row[0]: row[1:] for row in rows}

    return SourceCase("prepbusiness", app, "prepbusiness_invoices", expected, landed)


def alternative_payments_case() -> SourceCase:
    app = ScriptedAlternativePaymentsApp(seed=41)
    app.seed_invoices(45)

    def expected() -> Landed:
        return {
            invoice.id: (invoice.status, invoice.status == "archived", len(invoice.line_items))
            for invoice in app.invoices.values()
        }

    def landed(db_path: Path) -> Landed:
        rows = query(
            db_path,
            "select i.id, i.status, i.is_archived, count(l.line_number),"
            " count(distinct l.line_number) from alternative_payments_invoices i"
            " left join alternative_payments_invoice_line_items l on l.invoice_id = i.id"
            " group by all",
        )
        assert all(row[3] == row[4] for row in rows), "a line item landed twice"
        return {row[0]: row[1:4] for row in rows}

    return SourceCase(
        "alternative_payments", app, "alternative_payments_invoices", expected, landed
    )


@pytest.fixture(params=SOURCES)
def case(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, recorded_sleeps: list[float]
) -> Iterator[SourceCase]:
    """A seeded sandbox of the source, served, with ``[sources.<name>]`` pointing at it."""
    built = prepbusiness_case() if request.param == "prepbusiness" else alternative_payments_case()
    server = SandboxServer(built.app).start()
    env: dict[str, str] = built.app.env(server.url)  # type: ignore[attr-defined]
    section = f"SOURCES__{built.name.upper()}"
    env[f"{section}__PAGE_SIZE"] = str(PAGE_SIZE)
    env[f"{section}__REQUESTS_PER_SECOND"] = "0"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        yield built
    finally:
        built.app.release.set()
        server.stop()
    assert built.app.unmatched == [], f"routes the API does not have: {built.app.unmatched}"


@pytest.fixture
def sync(case: SourceCase, sync_options: SyncOptions) -> Callable[[], Any]:
    """Run the case's source once, the way ``invoice-sync run <source>`` does."""
    return lambda: run_sync([case.name], sync_options)


def source_state(case: SourceCase, options: SyncOptions) -> Any:
    return make_pipeline(options).state.get("sources", {}).get(case.name)


def test_given_transient_faults_during_a_sync_then_every_invoice_lands_once(
    case: SourceCase, sync: Callable[[], Any], duckdb_path: Path
) -> None:
    faults = [
        Fault("status", 429, retry_after="0", path_pattern=case.list_pattern),
        Fault("status", 503, path_pattern=case.list_pattern),
        Fault("reset", path_pattern=case.list_pattern),
        Fault("not_json", path_pattern=case.list_pattern),
    ]
    rotate_faults(case.app, faults)

    sync()

    case.assert_landed_exactly(duckdb_path)
    assert case.app.pending_faults == [], "the sync ended before meeting every fault"


def test_given_an_incremental_run_that_keeps_failing_then_nothing_moves_and_next_run_catches_up(
    case: SourceCase, sync: Callable[[], Any], sync_options: SyncOptions, duckdb_path: Path
) -> None:
    sync()
    state_before = source_state(case, sync_options)
    landed_before = case.landed(duckdb_path)
    case.change()
    case.app.inject_status(503, times=1_000, retry_after="0", path_pattern=case.list_pattern)

    with pytest.raises(SyncFailedError) as failure:
        sync()

    assert sync_error(failure.value, ApiUnavailableError)
    assert case.landed(duckdb_path) == landed_before
    assert source_state(case, sync_options) == state_before

    case.app.clear_faults()
    sync()

    case.assert_landed_exactly(duckdb_path)


def looping_pages(case: SourceCase) -> None:
    """Make the list endpoint answer the same page whatever page or cursor is asked for."""
    if isinstance(case.app, ScriptedPrepBusinessApp):
        case.app.ignore_page_parameter = True
        return
    empty_with_more = orjson.dumps(
        {
            "data": [],
            "end_cursor": "Y3Vyc29yLXRoYXQtbmV2ZXItbW92ZXM",
            "has_next_page": True,
            "has_previous_page": False,
            "start_cursor": None,
        }
    )
    case.app.inject_status(200, times=1_000, path_pattern=case.list_pattern, body=empty_with_more)


def test_given_an_api_that_pages_in_a_loop_when_synced_then_a_pagination_error_not_a_loop(
    case: SourceCase, sync: Callable[[], Any], duckdb_path: Path
) -> None:
    looping_pages(case)

    with pytest.raises(SyncFailedError) as failure:
        sync()

    error = sync_error(failure.value, PaginationError)
    assert "loop" in str(error) and "\n" not in str(error)
    crafted = [fault.times for fault in case.app.pending_faults]
    list_requests = case.app.pages_served + sum(1_000 - times for times in crafted)
    assert list_requests < 5
    assert not has_table(duckdb_path, case.table)


def test_given_invoices_changing_while_a_sync_pages_when_synced_again_then_it_converges(
    case: SourceCase, sync: Callable[[], Any], duckdb_path: Path
) -> None:
    changed: list[str] = []

    def change_on_page_two() -> None:
        case.change()
        changed.append("changed")

    case.app.before_page[2] = change_on_page_two

    sync()

    assert changed, "the sandbox changed nothing while the run was paging"
    sync()

    case.assert_landed_exactly(duckdb_path)


def test_given_a_run_killed_mid_load_when_run_again_then_every_invoice_lands_once(
    case: SourceCase,
    sync: Callable[[], Any],
    duckdb_path: Path,
    pipelines_dir: Path,
    tmp_path: Path,
) -> None:
    sync()
    case.change()
    args = ["run", case.name, "--destination", str(duckdb_path)]
    args += ["--pipelines-dir", str(pipelines_dir), "--no-models"]
    run = CliRun(args, cwd=tmp_path, hold_stage="load")
    run.wait_until_held()
    run.kill()

    sync()

    case.assert_landed_exactly(duckdb_path)


@pytest.mark.parametrize(
    "case",
    [
        "prepbusiness",
        "alternative_payments",
    ],
    indirect=True,
)
def test_given_runtime_retry_settings_when_the_api_keeps_failing_then_they_bound_the_retries(
    case: SourceCase,
    sync: Callable[[], Any],
    recorded_sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "2")
    case.app.inject_status(429, times=1_000, retry_after="0.01", path_pattern=case.list_pattern)

    with pytest.raises(SyncFailedError):
        sync()

    attempts = 1_000 - case.app.pending_faults[0].times
    assert attempts == 2, "runtime.request_max_attempts was not honoured"
    assert recorded_sleeps[:1] == [0.01], "the wait did not go through the replaceable sleep"


CREDENTIALS = {
    "prepbusiness": ("SOURCES__PREPBUSINESS__TOKEN", "sources.prepbusiness.token"),
    "alternative_payments": (
        "SOURCES__ALTERNATIVE_PAYMENTS__CLIENT_SECRET",
        "sources.alternative_payments.client_secret",
    ),
}


def run_args(case: SourceCase, duckdb_path: Path, pipelines_dir: Path) -> list[str]:
    return [
        "run",
        case.name.replace("_", "-"),
        "--destination",
        str(duckdb_path),
        "--pipelines-dir",
        str(pipelines_dir),
        "--no-models",
    ]


def test_given_a_wrong_credential_when_run_then_one_line_names_the_key_and_nothing_loads(
    case: SourceCase,
    duckdb_path: Path,
    pipelines_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env_var, key = CREDENTIALS[case.name]
    wrong = "wrong_credential_4d3c2b1a0f"
    monkeypatch.setenv(env_var, wrong)

    code, error = run_cli(run_args(case, duckdb_path, pipelines_dir), capsys)

    assert code != 0
    assert key in error and wrong not in error
    assert not has_table(duckdb_path, case.table)


def test_given_a_missing_credential_when_run_then_one_line_names_the_key(
    case: SourceCase,
    duckdb_path: Path,
    pipelines_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env_var, key = CREDENTIALS[case.name]
    monkeypatch.delenv(env_var)

    code, error = run_cli(run_args(case, duckdb_path, pipelines_dir), capsys)

    assert code != 0
    assert key in error or env_var in error


@pytest.mark.parametrize("case", ["prepbusiness"], indirect=True)
def test_given_nothing_listening_at_base_url_when_run_then_one_line_names_base_url(
    case: SourceCase,
    duckdb_path: Path,
    pipelines_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(f"SOURCES__{case.name.upper()}__BASE_URL", "http://127.0.0.1:9/api")

    code, error = run_cli(run_args(case, duckdb_path, pipelines_dir), capsys)

    assert code != 0
    assert "unreachable" in error and f"sources.{case.name}.base_url" in error
    assert not has_table(duckdb_path, case.table)
