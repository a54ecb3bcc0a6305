"""The HTTP machinery all three sandboxes share: routing, real HTTP on loopback, fault injection.

A sandbox is an :class:`App` (routes to handler functions over the API's in-memory state)
served by a :class:`SandboxServer` on a free loopback port in a background thread. Unknown
routes answer 404 and are remembered in ``unmatched`` so tests can fail on them. Faults are
queued with :meth:`App.inject` and consumed by the next matching requests: error statuses with
or without ``Retry-After``, connection resets, stalls past the client's timeout, truncated and
non-JSON bodies, plus a fixed per-request latency for benchmarks.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson


@dataclass
class Request:
    """One request as a handler sees it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        """Last value of query parameter ``name``."""
        values = [value for key, value in self.query if key == name]
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        """Every value of query parameter ``name``."""
        return [value for key, value in self.query if key == name]

    def header(self, name: str) -> str | None:
        """Header value, case-insensitive."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body decoded as JSON (``None`` when empty); raises ``ValueError`` when broken."""
        return orjson.loads(self.body) if self.body else None

    def form(self) -> list[tuple[str, str]]:
        """The body decoded as ``application/x-www-form-urlencoded`` pairs."""
        return parse_qsl(self.body.decode(), keep_blank_values=True)


@dataclass
class Response:
    """What a handler returns."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        """A JSON response."""
        return cls(
            status,
            orjson.dumps(payload),
            {"Content-Type": "application/json", **(headers or {})},
        )


Handler = Callable[..., Response]


@dataclass
class Fault:
    """A fault served instead of (or around) the real answer to matching requests."""

    kind: str  # "status", "reset", "stall", "truncate", "not_json"
    status: int = 500
    retry_after: str | None = None
    times: int = 1
    path_pattern: str | None = None
    body: bytes | None = None
    seconds: float = 0.0

    def matches(self, request: Request) -> bool:
        return self.path_pattern is None or re.search(self.path_pattern, request.path) is not None


class App:
    """Routes plus fault injection; the API-specific sandboxes subclass it."""

    name = "sandbox"

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.unmatched: list[str] = []
        self.latency_seconds = 0.0
        self.record_requests = True

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Register ``handler(request, **groups)`` for ``method`` and a path regex."""
        self._routes.append((method.upper(), re.compile(f"^{pattern}$"), handler))

    def inject(self, fault: Fault) -> None:
        """Queue a fault; it is served to the next ``fault.times`` matching requests."""
        with self._lock:
            self._faults.append(fault)

    def inject_status(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        path_pattern: str | None = None,
        body: bytes | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status``."""
        self.inject(Fault("status", status, retry_after, times, path_pattern, body=body))

    @property
    def pending_faults(self) -> list[Fault]:
        """Queued faults that still have uses left."""
        with self._lock:
            return list(self._faults)

    def clear_faults(self) -> None:
        """Drop every queued fault (the API recovers)."""
        with self._lock:
            self._faults.clear()

    def take_fault(self, request: Request) -> Fault | None:
        """The next queued fault matching ``request``, consuming one of its uses."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(request):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def requests_to(self, pattern: str, method: str | None = None) -> list[Request]:
        """Recorded requests whose path matches the regex ``pattern``."""
        return [
            r
            for r in list(self.requests)
            if re.search(pattern, r.path) and (method is None or r.method == method)
        ]

    def reset_log(self) -> None:
        """Forget recorded requests (state stays)."""
        with self._lock:
            self.requests.clear()
            self.unmatched.clear()

    def error_response(self, status: int, message: str) -> Response:
        """The API's own error body for ``status``; sandboxes override it."""
        return Response.json({"message": message}, status)

    def dispatch(self, request: Request) -> Response:
        """Find the handler for ``request`` and run it."""
        if self.record_requests:
            with self._lock:
                self.requests.append(request)
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                return handler(request, **match.groupdict())
        allowed = [m for m, p, _ in self._routes if p.match(request.path)]
        if allowed:
            return self.error_response(405, f"Method {request.method} not allowed here.")
        with self._lock:
            self.unmatched.append(f"{request.method} {request.path}")
        return self.error_response(
            404, f"Unrecognized request URL ({request.method}: {request.path})."
        )


def _make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # small responses would otherwise wait ~40 ms for a delayed ACK (Nagle)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qsl(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            if app.latency_seconds:
                time.sleep(app.latency_seconds)
            fault = app.take_fault(request)
            if fault is not None and fault.kind == "reset":
                self._reset()
                return
            if fault is not None and fault.kind == "stall":
                time.sleep(fault.seconds)
                self.close_connection = True
                return
            if fault is not None and fault.kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                response = app.error_response(fault.status, "Injected fault.")
                response.headers.update(headers)
                if fault.body is not None:
                    response.body = fault.body
            else:
                try:
                    response = app.dispatch(request)
                except Exception as exc:  # a sandbox bug must not hang the client
                    response = app.error_response(
                        500, f"Sandbox error: {type(exc).__name__}: {exc}"
                    )
            if fault is not None and fault.kind == "not_json":
                response = Response(
                    200, b"<html>502 Bad Gateway</html>", {"Content-Type": "text/html"}
                )
            self._write(response, truncate=fault is not None and fault.kind == "truncate")

        def _write(self, response: Response, *, truncate: bool) -> None:
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if truncate:
                self.wfile.write(response.body[: len(response.body) // 2])
                self.wfile.flush()
                self._reset()
                return
            self.wfile.write(response.body)

        def _reset(self) -> None:
            self.close_connection = True
            try:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                self.connection.close()
            except OSError:
                pass

        do_GET = _serve
        do_POST = _serve
        do_DELETE = _serve
        do_PUT = _serve
        do_PATCH = _serve

    return _Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class SandboxServer:
    """Serves an :class:`App` over real HTTP on a loopback port, in a background thread.

    With ``ssl_context`` (a server-side context holding a certificate) it serves HTTPS, which
    is how tests check that clients verify certificates.
    """

    def __init__(
        self,
        app: App,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self._server = _Server((host, port), _make_handler(app))
        self._scheme = "http"
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:53817``."""
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def start(self) -> SandboxServer:
        """Start serving in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.app.name}-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serving(app: App) -> Iterator[SandboxServer]:
    """Serve ``app`` on a free loopback port for the duration of the block."""
    server = SandboxServer(app).start()
    try:
        yield server
    finally:
        server.stop()
