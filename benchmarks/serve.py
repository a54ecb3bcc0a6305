"""Serve one API's sandbox in a process of its own, counting the requests it answers.

``python -m benchmarks.serve --api stripe --invoices 20000 --latency-ms 0`` seeds the sandbox,
serves it on a loopback port and prints one JSON line ``{"url", "env", "invoices",
"seed_seconds"}`` (``env`` points the source at it and holds the sandbox's fake key: it is
meant for the benchmark's children, not for a log). It then answers commands on stdin, one JSON
line each on stdout:

- ``stats``: requests answered so far, in total and per route (ids replaced by ``{id}``),
  and the CPU seconds the sandbox process has used;
- ``expected``: the invoices and line items the sandbox holds (computed on demand; it costs
  about 70 µs per Stripe invoice, so it is asked for after the timed runs);
- ``quit`` (or end of input): stop.

Nagle's algorithm is switched off on the served sockets (``TCP_NODELAY``, what production HTTP
servers do): the stdlib server writes headers and body in two sends, and with Nagle on every
small response (a line-items page, an empty list) waits for the client's delayed ACK, about
40 ms, which would make the benchmark measure the sandbox's TCP stalls instead of the connector.
"""

from __future__ import annotations

import argparse
import re
import resource
import socketserver
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from benchmarks.apis import APIS, ApiBenchmark
from invoice_source.sandbox.server import App, Request, Response, SandboxServer

_ID_SEGMENT = re.compile(r"^(\d+|[a-z]{1,5}_[A-Za-z0-9]{6,}|[A-Za-z0-9_-]{20,}|[0-9a-f-]{32,36})$")


def route_of(method: str, path: str) -> str:
    """``METHOD /path`` with id-like path segments replaced by ``{id}``."""
    segments = ["{id}" if _ID_SEGMENT.match(part) else part for part in path.split("/")]
    return f"{method} {'/'.join(segments)}"


class RequestCounter:
    """Counts the requests an app dispatches, per route, across the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.routes: Counter[str] = Counter()

    def wrap(self, dispatch: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """``dispatch`` counting each request before handling it."""

        def counted(request: Request) -> Response:
            with self._lock:
                self.routes[route_of(request.method, request.path)] += 1
            return dispatch(request)

        return counted

    def snapshot(self) -> dict[str, Any]:
        """Total and per-route counts so far, and the CPU time this process has used."""
        with self._lock:
            routes = dict(self.routes)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "requests": sum(routes.values()),
            "routes": routes,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
        }


def start_sandbox(
    api: ApiBenchmark, *, invoices: int, latency_ms: float, seed: int, port: int = 0
) -> tuple[App, SandboxServer, RequestCounter, float]:
    """Seed and serve ``api``'s sandbox with requests counted; returns the seeding time too."""
    socketserver.StreamRequestHandler.disable_nagle_algorithm = True
    started = time.perf_counter()
    app = api.make_app(seed)
    app.record_requests = False
    app.seed_invoices(invoices)  # type: ignore[attr-defined]
    app.latency_seconds = latency_ms / 1000
    seed_seconds = time.perf_counter() - started
    counter = RequestCounter()
    setattr(app, "dispatch", counter.wrap(app.dispatch))  # noqa: B010 (an instance override)
    server = SandboxServer(app, port=port).start()
    return app, server, counter, seed_seconds


def main(argv: list[str] | None = None) -> int:
    """Serve until ``quit`` or end of input."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api", choices=sorted(APIS), default="stripe")
    parser.add_argument("--invoices", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    api = APIS[args.api]
    app, server, counter, seed_seconds = start_sandbox(
        api, invoices=args.invoices, latency_ms=args.latency_ms, seed=args.seed, port=args.port
    )
    reply(
        {
            "url": server.url,
            "env": app.env(server.url),  # type: ignore[attr-defined]
            "invoices": args.invoices,
            "seed_seconds": seed_seconds,
        }
    )
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                reply(counter.snapshot())
            elif command == "expected":
                started = time.perf_counter()
                invoices, lines = api.count_rows(app)
                reply(
                    {
                        "invoices": invoices,
                        "lines": lines,
                        "seconds": time.perf_counter() - started,
                    }
                )
            elif command == "quit":
                break
            else:
                reply({"error": f"unknown command {command!r}"})
    finally:
        server.stop()
    return 0


def reply(payload: dict[str, Any]) -> None:
    """Write one JSON line to stdout."""
    sys.stdout.write(orjson.dumps(payload).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
