"""The plain reference loops the connector is measured against, one per API.

What a competent engineer writes in an afternoon: one httpx client paging sequentially, JSON
decoding (orjson; exact ``Decimal`` for the APIs that send money in major units), every line
item fetched (Stripe: ``GET /v1/invoices/{id}/lines`` when the embedded list has more; Alternative
Payments: archived invoices listed too), rows turned into pyarrow tables every
``BATCH_INVOICES`` invoices and inserted into DuckDB. Nested objects are stored as JSON text,
exact amounts as text; other column types are inferred by pyarrow. No retries, no rate limit,
no incremental state: a floor for the work any loader has to do, not a connector.

``python -m benchmarks.reference_loop --api stripe --duckdb PATH`` reads the sandbox's URL and
credentials from the ``SOURCES__<API>__*`` env vars and prints its result as a ``BENCH_RESULT``
line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pyarrow as pa

from benchmarks.child import emit_result
from invoice_source.redaction import register_secret
from invoice_source.stripe.settings import DEFAULT_API_VERSION

BATCH_INVOICES = 1000
PAGE_SIZE = 100
Row = dict[str, Any]


@dataclass
class ReferenceResult:
    """What one reference run did."""

    invoices: int = 0
    lines: int = 0
    requests: int = 0
    seconds: float = 0.0
    routes: dict[str, int] = field(default_factory=dict)
    http_seconds: float = 0.0
    insert_seconds: float = 0.0


def to_arrow(rows: list[Row]) -> pa.Table:
    """Rows as a pyarrow table: the union of their keys, each column's type inferred."""
    names = list(dict.fromkeys(key for row in rows for key in row))
    return pa.table({name: _array([row.get(name) for row in rows]) for name in names})


def _array(values: list[Any]) -> pa.Array:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    return array.cast(pa.string()) if pa.types.is_null(array.type) else array


def flat(value: Any) -> Any:
    """Scalars as they are, exact decimals as text, objects and lists as JSON text."""
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, default=str).decode()
    if isinstance(value, Decimal):
        return str(value)
    return value


class DuckDBSink:
    """Inserts batches of rows into DuckDB tables, creating them and their new columns."""

    def __init__(self, path: Path) -> None:
        self.connection = duckdb.connect(str(path))
        self._columns: dict[str, set[str]] = {}
        self.seconds = 0.0

    def insert(self, table: str, rows: list[Row]) -> None:
        """Append ``rows`` to ``table``, matching columns by name."""
        if not rows:
            return
        started = time.perf_counter()
        try:
            self._insert(table, rows)
        finally:
            self.seconds += time.perf_counter() - started

    def _insert(self, table: str, rows: list[Row]) -> None:
        batch = to_arrow(rows)
        self.connection.register("batch", batch)
        try:
            known = self._columns.get(table)
            if known is None:
                self.connection.execute(f'CREATE TABLE "{table}" AS SELECT * FROM batch')
                self._columns[table] = set(batch.column_names)
                return
            for name in batch.column_names:
                if name not in known:
                    kind = self.connection.execute(
                        f'DESCRIBE SELECT "{name}" FROM batch'
                    ).fetchone()
                    assert kind is not None
                    self.connection.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {kind[1]}')
                    known.add(name)
            self.connection.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM batch')
        finally:
            self.connection.unregister("batch")

    def checkpoint(self) -> None:
        """Write everything to the database file."""
        started = time.perf_counter()
        self.connection.execute("CHECKPOINT")
        self.seconds += time.perf_counter() - started

    def count(self, table: str) -> int:
        """Rows in ``table`` (0 when it was never created)."""
        if table not in self._columns:
            return 0
        row = self.connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.connection.close()


def exact_json(body: bytes) -> Any:
    """JSON with fractional numbers as exact ``Decimal`` (money in major units)."""
    return json.loads(body, parse_float=Decimal)


class CountingGetter:
    """GET and decode JSON, counting requests; any error status stops the loop."""

    def __init__(self, client: httpx.Client, decode: Callable[[bytes], Any] = orjson.loads) -> None:
        self.client = client
        self.decode = decode
        self.requests = 0
        self.routes: dict[str, int] = {}
        self.seconds = 0.0

    def count(self, route: str) -> None:
        """Count one request to ``route``."""
        self.requests += 1
        self.routes[route] = self.routes.get(route, 0) + 1

    def __call__(self, path: str, params: Mapping[str, Any], route: str) -> Any:
        self.count(route)
        started = time.perf_counter()
        response = self.client.get(path, params=params)
        response.raise_for_status()
        body = self.decode(response.content)
        self.seconds += time.perf_counter() - started
        return body


def stripe_pages(get: CountingGetter) -> Iterator[tuple[list[Row], list[Row]]]:
    """Invoice rows and line rows, page by page, every line item included."""
    starting_after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if starting_after:
            params["starting_after"] = starting_after
        page = get("invoices", params, "GET /v1/invoices")
        invoice_rows: list[Row] = []
        line_rows: list[Row] = []
        for invoice in page["data"]:
            embedded = invoice.get("lines") or {}
            lines = list(embedded.get("data") or [])
            more = bool(embedded.get("has_more"))
            while more:
                rest = get(
                    f"invoices/{invoice['id']}/lines",
                    {"limit": PAGE_SIZE, "starting_after": lines[-1]["id"]},
                    "GET /v1/invoices/{id}/lines",
                )
                lines.extend(rest["data"])
                more = bool(rest["has_more"]) and bool(rest["data"])
            invoice_rows.append({k: flat(v) for k, v in invoice.items() if k != "lines"})
            line_rows.extend(
                {"invoice_id": invoice["id"], **{k: flat(v) for k, v in line.items()}}
                for line in lines
            )
        yield invoice_rows, line_rows
        if not page["has_more"] or not page["data"]:
            return
        starting_after = page["data"][-1]["id"]


def stripe_reference(env: Mapping[str, str], duckdb_path: Path) -> ReferenceResult:
    """Load every Stripe invoice and line item from ``SOURCES__STRIPE__BASE_URL``."""
    api_key = env["SOURCES__STRIPE__API_KEY"]
    register_secret(api_key)
    headers = {"Authorization": f"Bearer {api_key}", "Stripe-Version": DEFAULT_API_VERSION}
    base_url = env["SOURCES__STRIPE__BASE_URL"].rstrip("/") + "/"
    with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as client:
        return load_pages(CountingGetter(client), stripe_pages, duckdb_path, "stripe")


def load_pages(
    get: CountingGetter,
    pages: Callable[[CountingGetter], Iterator[tuple[list[Row], list[Row]]]],
    duckdb_path: Path,
    prefix: str,
) -> ReferenceResult:
    """Drive ``pages`` into DuckDB tables ``<prefix>_invoices`` and ``<prefix>_lines``."""
    started = time.perf_counter()
    sink = DuckDBSink(duckdb_path)
    invoices_table, lines_table = f"{prefix}_invoices", f"{prefix}_lines"
    invoice_rows: list[Row] = []
    line_rows: list[Row] = []
    try:
        for page_invoices, page_lines in pages(get):
            invoice_rows.extend(page_invoices)
            line_rows.extend(page_lines)
            if len(invoice_rows) >= BATCH_INVOICES:
                sink.insert(invoices_table, invoice_rows)
                sink.insert(lines_table, line_rows)
                invoice_rows, line_rows = [], []
        sink.insert(invoices_table, invoice_rows)
        sink.insert(lines_table, line_rows)
        sink.checkpoint()
        return ReferenceResult(
            invoices=sink.count(invoices_table),
            lines=sink.count(lines_table),
            requests=get.requests,
            seconds=time.perf_counter() - started,
            routes=dict(get.routes),
            http_seconds=get.seconds,
            insert_seconds=sink.seconds,
        )
    finally:
        sink.close()


def prepbusiness_pages(get: CountingGetter) -> Iterator[tuple[list[Row], list[Row]]]:
    """Invoice rows, page by page (``page``/``per_page``, Laravel's flat paginator)."""
    page = 1
    while True:
        body = get(
            "billing/invoices", {"page": page, "per_page": PAGE_SIZE}, "GET /api/billing/invoices"
        )
        invoices = body.get("data") if "data" in body else body.get("invoices")
        yield [{k: flat(v) for k, v in invoice.items()} for invoice in invoices or []], []
        last_page = body.get("last_page")
        if not invoices or last_page is None or page >= int(last_page):
            return
        page += 1


def prepbusiness_reference(env: Mapping[str, str], duckdb_path: Path) -> ReferenceResult:
    """Load every PrepBusiness invoice from ``SOURCES__PREPBUSINESS__BASE_URL``."""
    token = env["SOURCES__PREPBUSINESS__TOKEN"]
    register_secret(token)
    base_url = env["SOURCES__PREPBUSINESS__BASE_URL"].rstrip("/") + "/"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as client:
        getter = CountingGetter(client, exact_json)
        return load_pages(getter, prepbusiness_pages, duckdb_path, "prepbusiness")


def alternative_payments_pages(get: CountingGetter) -> Iterator[tuple[list[Row], list[Row]]]:
    """Invoice and line rows, page by page; archived invoices are listed separately."""
    for status in (None, "archived"):
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            if status:
                params["status"] = status
            if after:
                params["after"] = after
            body = get("invoices", params, "GET /invoices")
            invoices = body["data"]
            yield (
                [{k: flat(v) for k, v in inv.items() if k != "line_items"} for inv in invoices],
                [
                    {
                        "invoice_id": inv["id"],
                        "position": position,
                        **{k: flat(v) for k, v in line.items()},
                    }
                    for inv in invoices
                    for position, line in enumerate(inv.get("line_items") or [], start=1)
                ],
            )
            if not body.get("has_next_page") or not invoices:
                break
            after = body["end_cursor"]


def alternative_payments_reference(env: Mapping[str, str], duckdb_path: Path) -> ReferenceResult:
    """Load every Alternative Payments invoice and line (archived ones too)."""
    client_id = env["SOURCES__ALTERNATIVE_PAYMENTS__CLIENT_ID"]
    client_secret = env["SOURCES__ALTERNATIVE_PAYMENTS__CLIENT_SECRET"]
    register_secret(client_secret)
    base_url = env["SOURCES__ALTERNATIVE_PAYMENTS__BASE_URL"].rstrip("/") + "/"
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        getter = CountingGetter(client, exact_json)
        getter.count("POST /oauth/token")
        response = client.post(
            "oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, client_secret),
        )
        response.raise_for_status()
        token = response.json()["access_token"]
        register_secret(token)
        client.headers["Authorization"] = f"Bearer {token}"
        return load_pages(getter, alternative_payments_pages, duckdb_path, "alternative_payments")


REFERENCES: dict[str, Callable[[Mapping[str, str], Path], ReferenceResult]] = {
    "stripe": stripe_reference,
    "prepbusiness": prepbusiness_reference,
    "alternative_payments": alternative_payments_reference,
}


def main(argv: list[str] | None = None) -> int:
    """Run one reference load and print its result."""
    parser = argparse.ArgumentParser(description="The plain reference loop.")
    parser.add_argument("--api", choices=sorted(REFERENCES), default="stripe")
    parser.add_argument("--duckdb", type=Path, required=True, help="a DuckDB file to create")
    args = parser.parse_args(argv)
    result = REFERENCES[args.api](os.environ, args.duckdb)
    emit_result(
        {
            "invoices": result.invoices,
            "lines": result.lines,
            "requests": result.requests,
            "routes": result.routes,
            "seconds": result.seconds,
            "http_seconds": result.http_seconds,
            "insert_seconds": result.insert_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
