"""The benchmark machinery at tiny N: every child runs, counts agree, every row is accounted for.

Not a timing test: the figures are only checked for being present and consistent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks import run
from benchmarks.apis import APIS
from benchmarks.serve import route_of

pytestmark = pytest.mark.slow


def benchmark(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run ``python -m benchmarks.run`` in-process with ``args``; the figures of its one API."""
    results_path = tmp_path / "results.json"
    exit_code = run.main(
        [*args, "--rounds=1", f"--workdir={tmp_path / 'work'}", f"--json={results_path}"]
    )
    assert exit_code == 0
    results: list[dict[str, Any]] = orjson.loads(results_path.read_bytes())
    assert len(results) == 1
    return results[0]


def test_given_stripe_ids_in_a_path_when_routed_then_they_count_as_one_route() -> None:
    assert route_of("GET", "/v1/invoices/in_1Sbx00000005CR/lines") == "GET /v1/invoices/{id}/lines"
    assert route_of("GET", "/v1/invoices") == "GET /v1/invoices"
    assert route_of("GET", "/invoices/42") == "GET /invoices/{id}"


def test_given_sizes_for_several_apis_when_parsed_then_a_bare_number_is_stripe() -> None:
    assert run.sizes(["500", "prepbusiness=20"], "--invoices") == {
        "stripe": 500,
        "prepbusiness": 20,
    }
    with pytest.raises(SystemExit):
        run.sizes(["nosuchapi=3"], "--invoices")


def test_given_a_tiny_stripe_sandbox_when_benchmarked_then_both_loads_land_every_line(
    tmp_path: Path,
) -> None:
    figures = benchmark(
        tmp_path,
        "--api=stripe",
        "--invoices=150",
        "--latency-invoices=40",
        "--latency-ms-per-request=5",
    )
    throughput = figures["throughput"]
    expected = throughput["expected"]
    assert expected["invoices"] == 150
    assert expected["lines"] > 150  # 1 to 15 lines per seeded invoice
    (measured,) = throughput["rounds"]
    reference, connector = measured["reference"], measured["connector"]
    assert (reference["invoices"], reference["lines"]) == (expected["invoices"], expected["lines"])
    assert connector["tables"]["stripe_invoices"] == expected["invoices"]
    assert connector["tables"]["stripe_invoice_line_items"] == expected["lines"]
    # invoices with more than ten lines need /lines requests, in both loops
    assert reference["served_routes"]["GET /v1/invoices/{id}/lines"] > 0
    assert connector["served_routes"]["GET /v1/invoices/{id}/lines"] > 0
    # the sandbox's count of what it answered matches what each client says it sent
    assert reference["served_requests"] == reference["requests"]
    assert connector["served_requests"] == connector["requests"]
    assert connector["process_peak_rss_mb"] > 50
    # shared pages count once in the PSS, once per process in the summed RSS
    assert 50 < connector["tree_peak_pss_mb"] <= connector["process_peak_rss_mb"]
    # anonymous memory leaves the library pages out
    assert 0 < connector["tree_peak_anonymous_mb"] < connector["tree_peak_rss_mb"]
    assert set(connector["steps"]) == {"extract", "normalize", "load"}
    # measured through run_sync, as users run it: the run left its record for `status`
    assert connector["run_record"]["rows"]["stripe_invoices"] == expected["invoices"]
    incremental = throughput["incremental"]
    assert incremental["tables"]["stripe_invoices"] == expected["invoices"]
    assert 1 <= incremental["served_requests"] <= run.INCREMENTAL_MAX_REQUESTS
    latency = figures["latency"]
    assert latency["latency_ms"] == 5
    assert latency["effective_requests_per_second"] == APIS["stripe"].default_requests_per_second
    assert latency["rounds"][0]["connector"]["tables"]["stripe_invoices"] == 40


@pytest.mark.parametrize("api", ["prepbusiness", "alternative_payments"])
def test_given_a_tiny_sandbox_of_another_api_when_benchmarked_then_every_invoice_lands(
    tmp_path: Path, api: str
) -> None:
    assert api in APIS, f"the {api} settings module does not import"
    spec = APIS[api]
    assert spec.available() is None
    figures = benchmark(
        tmp_path, f"--api={api}", f"--invoices={api}=120", f"--latency-invoices={api}=0"
    )
    assert "latency" not in figures
    throughput = figures["throughput"]
    expected = throughput["expected"]
    assert expected["invoices"] == 120
    (measured,) = throughput["rounds"]
    assert measured["reference"]["invoices"] == expected["invoices"]
    assert measured["reference"]["lines"] == expected["lines"]
    tables = measured["connector"]["tables"]
    assert tables[spec.invoices_table] == expected["invoices"]
    if spec.line_items_table:
        assert tables[spec.line_items_table] == expected["lines"]
    assert measured["connector"]["served_requests"] == measured["connector"]["requests"]
