"""Secrets and secret links never leave the connector except to the API they belong to.

Two whole ``invoice-sync run all`` runs against the three sandboxes, with known credentials, a
client secret planted in Stripe's data, retried faults, debug logs from us and from dlt, then a
run where every source fails (a wrong token, a wrong client secret, an error body echoing the
API key and a signed link). Every credential that went over the wire is then looked for in
every log line and error, the dlt trace and state, every file dlt kept, and every text column
of the destination; invoice PDF and payment links, which are data in the destination, must
not be in any log line, error or trace.
"""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from dlt.pipeline.state_sync import decompress_state

from invoice_source.redaction import MASK, redact
from invoice_source.sandbox.alternative_payments import AlternativePaymentsApp
from invoice_source.sandbox.prepbusiness import PrepBusinessApp
from invoice_source.sandbox.server import App, Fault, SandboxServer
from tests.faults.support import CliRun, ScriptedStripeApp

STRIPE_KEY = "sk_test_h8KnownStripeKey_51Hx3mQz9"
PLANTED_CLIENT_SECRET = "pi_3Qh8Known_secret_Zx81LmNo77"
ECHOED_LINK = "https://invoice.stripe.com/i/acct_1SbxSandbox/test_EchoedLink0001"
WRONG_PREPBUSINESS_TOKEN = "pb_wrong_token_3c2b1a0f9e8d"
WRONG_AP_SECRET = "ap_wrong_secret_7a6b5c4d3e2f"
STRIPE_LIST = r"^/v1/invoices$"
PREPBUSINESS_LIST = r"^/api/billing/invoices$"
AP_LIST = r"^/invoices$"


@dataclass
class Sandboxes:
    """The three sandboxes, served, with the env pointing every source at them."""

    stripe: ScriptedStripeApp
    prepbusiness: PrepBusinessApp
    alternative_payments: AlternativePaymentsApp
    env: dict[str, str] = field(default_factory=dict)

    @property
    def apps(self) -> list[App]:
        return [self.stripe, self.prepbusiness, self.alternative_payments]


@pytest.fixture
def sandboxes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandboxes]:
    stripe = ScriptedStripeApp(seed=31, api_key=STRIPE_KEY)
    stripe.seed_invoices(60)
    prepbusiness = PrepBusinessApp(seed=31, stripe=stripe)
    prepbusiness.seed_invoices(20)
    alternative_payments = AlternativePaymentsApp(seed=31)
    alternative_payments.seed_invoices(30)
    found = Sandboxes(stripe, prepbusiness, alternative_payments)
    servers = [SandboxServer(app).start() for app in found.apps]
    for app, server in zip(found.apps, servers, strict=True):
        found.env.update(app.env(server.url))  # type: ignore[attr-defined]
    found.env.update(
        SOURCES__STRIPE__REQUESTS_PER_SECOND="0",
        SOURCES__ALTERNATIVE_PAYMENTS__REQUESTS_PER_SECOND="0",
        RUNTIME__LOG_LEVEL="DEBUG",
        RUNTIME__REQUEST_BACKOFF_FACTOR="0.01",
    )
    for key, value in found.env.items():
        monkeypatch.setenv(key, value)
    yield found
    for server in servers:
        server.stop()


def plant_client_secret(invoice: dict[str, Any]) -> None:
    invoice["confirmation_secret"] = {
        "client_secret": PLANTED_CLIENT_SECRET,
        "type": "payment_intent",
    }


def sent_credentials(apps: list[App]) -> set[str]:
    """Every credential the sandboxes received: bearer tokens, API keys, Basic auth parts."""
    found: set[str] = set()
    for app in apps:
        for request in app.requests:
            for name in ("authorization", "x-api-key"):
                value = request.header(name) or ""
                scheme, _, credential = value.partition(" ")
                credential = credential if scheme.lower() in ("bearer", "basic") else value
                if not credential:
                    continue
                found.add(credential)
                if scheme.lower() == "basic":
                    found.update(base64.b64decode(credential).decode().split(":", 1))
    return found


def kept_files_text(pipelines_dir: Path) -> dict[str, str]:
    """Every file dlt keeps (state, schemas, trace, load packages), decompressed, by path."""
    texts: dict[str, str] = {}
    for path in pipelines_dir.rglob("*"):
        if not path.is_file() or path.suffix == ".parquet":
            continue  # parquet data files are what the destination holds; checked there
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        texts[str(path)] = raw.decode("utf-8", errors="replace")
    return texts


def destination_text(db_path: Path) -> str:
    """Every text value of every table in the destination, pipeline state decoded."""
    chunks: list[str] = []
    with duckdb.connect(str(db_path), read_only=True) as db:
        columns = db.execute(
            "select table_schema, table_name, column_name from information_schema.columns"
            " where data_type in ('VARCHAR', 'JSON')"
        ).fetchall()
        for schema, table, column in columns:
            values = db.execute(f'select "{column}" from "{schema}"."{table}"').fetchall()
            chunks += [str(value) for (value,) in values if value is not None]
        states = db.execute('select "state" from "invoices"."_dlt_pipeline_state"').fetchall()
        chunks += [orjson.dumps(decompress_state(state)).decode() for (state,) in states]
    return "\n".join(chunks)


def links_in(db_path: Path) -> set[str]:
    """The invoice page and PDF links that landed (data, never log material)."""
    with duckdb.connect(str(db_path), read_only=True) as db:
        rows = db.execute(
            "select hosted_invoice_url, invoice_pdf from invoices.stripe_invoices"
        ).fetchall()
    return {link for row in rows for link in row if link}


def run_all(args: list[str], cwd: Path) -> tuple[int, str]:
    code, out, err = CliRun(args, cwd=cwd).finish()
    return code, out + err


def test_given_known_secrets_when_every_source_runs_and_fails_then_none_leaks_anywhere(
    sandboxes: Sandboxes,
    tmp_path: Path,
    duckdb_path: Path,
    pipelines_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandboxes.stripe.rewrite_invoice = plant_client_secret
    for app, path in (
        (sandboxes.stripe, STRIPE_LIST),
        (sandboxes.prepbusiness, PREPBUSINESS_LIST),
        (sandboxes.alternative_payments, AP_LIST),
    ):
        app.inject_status(429, retry_after="0", path_pattern=path)
        app.inject(Fault("reset", path_pattern=path))
    args = ["-v", "run", "all", "--destination", str(duckdb_path)]
    args += ["--pipelines-dir", str(pipelines_dir), "--no-models"]

    ok_code, ok_output = run_all(args, tmp_path)
    sandboxes.stripe.inject_status(
        400,
        times=10,
        path_pattern=STRIPE_LIST,
        body=orjson.dumps(
            {"error": {"message": f"Refused {STRIPE_KEY} for {ECHOED_LINK}", "type": "x"}}
        ),
    )
    monkeypatch.setenv("SOURCES__PREPBUSINESS__TOKEN", WRONG_PREPBUSINESS_TOKEN)
    monkeypatch.setenv("SOURCES__ALTERNATIVE_PAYMENTS__CLIENT_SECRET", WRONG_AP_SECRET)
    failed_code, failed_output = run_all(["--log-format", "json", *args], tmp_path)

    assert ok_code == 0, ok_output
    assert failed_code != 0
    assert "retrying" in ok_output, "the faults were not met: the logs prove nothing"
    assert re.search(r'"level": ?"debug"', failed_output) or "DEBUG" in failed_output
    assert f"for {ECHOED_LINK.split('/i/')[0]}/{MASK}" in failed_output, "echo not masked"
    secrets = sent_credentials(sandboxes.apps) | {
        STRIPE_KEY,
        PLANTED_CLIENT_SECRET,
        WRONG_PREPBUSINESS_TOKEN,
        WRONG_AP_SECRET,
        sandboxes.alternative_payments.client_secret,
        sandboxes.prepbusiness.service_provider_token,
    }
    assert STRIPE_KEY in secrets and any(s.startswith("ap_at_") for s in secrets)
    logs = ok_output + failed_output
    kept = kept_files_text(pipelines_dir)
    assert any(path.endswith("trace.pickle") for path in kept)
    landed = destination_text(duckdb_path)
    for secret in secrets:
        assert secret not in logs, f"a credential ({secret[:6]}…) is in the logs or errors"
        leaked_to = [path for path, text in kept.items() if secret in text]
        assert leaked_to == [], f"a credential ({secret[:6]}…) is in {leaked_to}"
        assert secret not in landed, f"a credential ({secret[:6]}…) landed in the destination"
    links = links_in(duckdb_path) | {ECHOED_LINK}
    assert len(links) > 10
    traces = "".join(text for path, text in kept.items() if path.endswith("trace.pickle"))
    for link in links:
        assert link not in logs, f"a secret link is in the logs or errors: {redact(link)}"
        assert link not in traces, f"a secret link is in the dlt trace: {redact(link)}"


@pytest.mark.parametrize(
    ("text", "kept", "masked"),
    [
        (
            "see https://invoice.stripe.com/i/acct_1/test_YWNjdF8x, then retry",
            "see https://invoice.stripe.com/***, then retry",
            "test_YWNjdF8x",
        ),
        (
            "pdf at https://pay.stripe.com/invoice/acct_1/test_abc/pdf?s=ap",
            "pdf at https://pay.stripe.com/***",
            "test_abc",
        ),
        (
            "GET https://ap.example.com/invoices/inv_1/pdf?expires=1&signature=c2ln failed",
            "GET https://ap.example.com/*** failed",
            "signature=c2ln",
        ),
        ("pay https://ap.example.com/pay/inv_1", "pay https://ap.example.com/***", "inv_1"),
        (
            "stripe API unreachable at GET https://api.stripe.com/v1/invoices",
            "stripe API unreachable at GET https://api.stripe.com/v1/invoices",
            "",
        ),
    ],
    ids=["hosted-page", "stripe-pdf", "signed-pdf", "pay-page", "api-url-kept"],
)
def test_given_a_message_with_a_link_when_redacted_then_only_secret_links_are_cut(
    text: str, kept: str, masked: str
) -> None:
    redacted = redact(text)

    assert redacted == kept
    assert not masked or masked not in redacted


def test_given_the_connector_code_then_nothing_turns_tls_verification_off() -> None:
    package = Path(__file__).parents[2] / "invoice_source"
    switch_off = re.compile(r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False")

    offenders = [
        f"{path.relative_to(package)}:{number}"
        for path in package.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if switch_off.search(line)
    ]

    assert offenders == []
