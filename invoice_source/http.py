"""The one HTTP layer the three API clients share.

It knows nothing of any one API: it sends requests through httpx, retries what is worth
retrying (429, 5xx, connection resets, timeouts, truncated or non-JSON bodies) with exponential
backoff while honouring ``Retry-After``, spaces requests with a rate limiter shared by all
threads of a client (a 429 pauses every thread), counts requests, and builds error messages with
secrets masked. API-specific error bodies are turned into exceptions by an ``error_factory``
that each client passes in. Credentials never travel unencrypted: a ``base_url`` must be https
(plain http only to loopback, where the sandboxes are), certificates are always verified, and
one that fails verification is an error at once, not a retry.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import orjson

from invoice_source.errors import (
    ApiError,
    ApiUnavailableError,
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
)
from invoice_source.redaction import redact

logger = logging.getLogger("invoice_source.http")

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# The only hosts plain http is allowed to: the sandboxes on this machine.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_totals_lock = threading.Lock()
REQUEST_TOTALS: Counter[str] = Counter()
"""Requests sent per API by every client in this process; the run summary reports deltas."""
ErrorFactory = Callable[[httpx.Response], ApiError]
Sleep = Callable[[float], None]


def default_sleep(seconds: float) -> None:
    """How clients wait between retries unless given another ``sleep`` (tests replace it)."""
    time.sleep(seconds)


def _sleep_by_default(seconds: float) -> None:
    """Calls :func:`default_sleep` as it is at call time, so replacing it reaches every limiter."""
    default_sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; defaults follow dlt's ``[runtime]`` request settings."""

    max_attempts: int = 6
    backoff_factor: float = 0.5
    max_delay: float = 60.0

    @classmethod
    def from_dlt_config(cls) -> RetryPolicy:
        """Read ``runtime.request_max_attempts``, ``request_backoff_factor`` and
        ``request_max_retry_delay`` from dlt config, falling back to the defaults."""
        import dlt

        def read(key: str, default: float) -> float:
            value: Any = dlt.config.get(f"runtime.{key}")
            return default if value is None else float(value)

        return cls(
            max_attempts=int(read("request_max_attempts", cls.max_attempts)),
            backoff_factor=read("request_backoff_factor", cls.backoff_factor),
            max_delay=read("request_max_retry_delay", cls.max_delay),
        )

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based): exponential with a little jitter."""
        base = self.backoff_factor * (2 ** (attempt - 1))
        return float(min(self.max_delay, base * (1 + random.random() * 0.1)))


class RateLimiter:
    """At most ``requests_per_second`` requests in any window of one second, across threads.

    A burst up to the limit goes out at once (a run's first requests, a page's ``/lines``
    requests); after that requests leave as earlier ones age out of the window, so the long-run
    rate is the limit. The window holds ``floor(limit)`` requests and lasts that many intervals:
    for a whole-number limit, no second ever holds more than the limit (how Stripe counts); 2.5
    allows 2 per 0.8 s; below one request per second it stretches (0.5: one per two seconds).
    ``pause(seconds)`` holds every thread back, which is how one 429 slows the whole client
    rather than each thread discovering the limit on its own. Without ``sleep`` it waits with
    :func:`default_sleep`, like the clients' retries.
    """

    def __init__(
        self,
        requests_per_second: float | None,
        *,
        sleep: Sleep | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self.burst = max(1, int(requests_per_second)) if requests_per_second else 0
        self.window = self.burst * self.interval
        self._sleep = sleep or _sleep_by_default
        self._clock = clock
        self._lock = threading.Lock()
        self._sent: deque[float] = deque(maxlen=self.burst or 1)
        self._paused_until = 0.0

    def acquire(self) -> None:
        """Block until this caller may send its request."""
        if not self.burst:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._paused_until)
            if len(self._sent) == self.burst:
                slot = max(slot, self._sent[0] + self.window)
            self._sent.append(slot)
        wait = slot - now
        if wait > 0:
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` from now."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


class SharedRateLimiter(RateLimiter):
    """A :class:`RateLimiter` whose next free slot lives in shared memory, so the worker
    processes of one read space their requests together and a 429 pauses all of them. Requests
    are spaced evenly (no burst): one shared number holds the whole state, and a long history,
    the only read that uses processes, gains nothing from a burst at its start.

    ``next_slot`` is a ``multiprocessing`` ``Value("d")`` made by the parent before it starts the
    workers; ``time.monotonic`` is one clock for every process on the machine.
    """

    def __init__(self, requests_per_second: float | None, next_slot: Any) -> None:
        super().__init__(requests_per_second)
        self._shared = next_slot

    def acquire(self) -> None:
        """Block until this caller may send its request."""
        with self._shared.get_lock():
            now = self._clock()
            slot = max(now, self._shared.value)
            self._shared.value = slot + self.interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every caller in every process back for ``seconds`` from now."""
        with self._shared.get_lock():
            self._shared.value = max(self._shared.value, self._clock() + seconds)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def default_error(response: httpx.Response, api: str) -> ApiError:
    """Map a status code to the matching exception with a short, secret-free message."""
    text = redact(response.text[:300]) if response.content else ""
    message = f"{api} API answered {response.status_code} for {describe_request(response.request)}"
    if text:
        message = f"{message}: {text}"
    return error_for_status(response.status_code, message, api=api)


def error_for_status(status: int, message: str, *, api: str, code: str | None = None) -> ApiError:
    """Pick the exception class for an HTTP error status."""
    cls: type[ApiError]
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFoundError
    elif status in (400, 409, 422):
        cls = InvalidRequestError
    elif status in RETRYABLE_STATUSES:
        cls = ApiUnavailableError
    else:
        cls = ApiError
    return cls(redact(message), status_code=status, code=code, api=api)


def describe_request(request: httpx.Request) -> str:
    """``METHOD /path`` of a request, for messages; the query string is left out (it may hold
    filters users don't want in logs, and on some APIs a token)."""
    return f"{request.method} {request.url.path}"


def describe_url(url: httpx.URL) -> str:
    """``scheme://host:port/path`` of a URL, for messages: no user info, no query string."""
    return str(url.copy_with(query=None, fragment=None, userinfo=b""))


def check_base_url(base_url: str, config_section: str) -> httpx.URL:
    """The parsed ``base_url``; refuses anything but https, except plain http to loopback
    (credentials must never cross a network unencrypted)."""
    key = f"{config_section}.base_url"
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"{key} must be an https:// URL such as https://api.example.com, not"
            f" {redact(repr(base_url))}"
        )
    if url.scheme == "http" and url.host not in LOOPBACK_HOSTS:
        raise ConfigurationError(
            f"{key} {describe_url(url)} is plain http: the credentials would cross the network"
            " unencrypted; use https://"
        )
    return url


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The TLS certificate verification failure behind a connection error, if that is what it
    was (retrying cannot fix it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class ApiClient:
    """An httpx client with retries, a rate limiter, request counting and clean errors.

    ``params`` are sent with every request (the Appgregator proxy needs ``name`` and
    ``connection_name`` on each call). ``error_factory`` turns a non-retryable error response
    into an exception whose message comes from the API's own error body. ``config_section``
    (default ``sources.<api>``) is named in errors that a wrong ``base_url`` would cause.
    ``base_url`` must be https (plain http only to loopback, for the sandboxes) and TLS
    certificates are always verified.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        timeout: float = 30.0,
        error_factory: ErrorFactory | None = None,
        sleep: Sleep | None = None,
        max_connections: int = 16,
        transport: httpx.BaseTransport | None = None,
        decimal_json: bool = False,
        config_section: str | None = None,
    ) -> None:
        self.api = api
        self.config_section = config_section or f"sources.{api}"
        check_base_url(base_url, self.config_section)
        self._decode: Callable[[bytes], Any] = (
            (lambda body: json.loads(body, parse_float=Decimal)) if decimal_json else orjson.loads
        )
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter or RateLimiter(None)
        self._sleep = sleep or default_sleep
        self._error_factory = error_factory or (lambda response: default_error(response, api))
        self._default_params = dict(params or {})
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=dict(headers or {}),
            auth=auth,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            follow_redirects=False,
        )
        self._count_lock = threading.Lock()
        self.request_count = 0
        self.retry_count = 0

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_non_idempotent: bool = False,
    ) -> httpx.Response:
        """Send one request, retrying transient failures; raise an :class:`ApiError` otherwise.

        POSTs are only retried on 429 and on connection failures before anything was sent,
        unless ``retry_non_idempotent`` says the call is safe to repeat (e.g. it carries an
        idempotency key).
        """
        merged_params = self._merge_params(params)
        retry_all = method.upper() in ("GET", "HEAD", "DELETE") or retry_non_idempotent
        attempt = 0
        while True:
            attempt += 1
            self.rate_limiter.acquire()
            try:
                response = self._client.request(
                    method,
                    path.lstrip("/"),
                    params=merged_params,
                    json=json,
                    data=data,
                    headers=headers,
                )
                self._count()
            except httpx.TransportError as exc:
                self._count()
                self._raise_for_certificate(exc, path)
                retryable = retry_all or isinstance(exc, httpx.ConnectError)
                if retryable and attempt < self.retry.max_attempts:
                    reason = f"{type(exc).__name__} on {method} {self._url(path).path}"
                    self._wait(attempt, None, reason=reason)
                    continue
                hint = (
                    f"; check {self.config_section}.base_url"
                    if isinstance(exc, httpx.ConnectError)
                    else ""
                )
                raise ApiUnavailableError(
                    redact(
                        f"{self.api} API unreachable at {method} {self._describe(path)} after"
                        f" {attempt} attempt(s): {type(exc).__name__}: {exc}{hint}"
                    ),
                    api=self.api,
                ) from None
            retryable = response.status_code in RETRYABLE_STATUSES and (
                retry_all or response.status_code == 429
            )
            if retryable and attempt < self.retry.max_attempts:
                delay = parse_retry_after(response.headers.get("Retry-After"))
                if response.status_code == 429 and delay is not None:
                    self.rate_limiter.pause(min(delay, self.retry.max_delay))
                self._wait(
                    attempt,
                    delay,
                    reason=f"{response.status_code} on {describe_request(response.request)}",
                )
                continue
            if response.status_code >= 400:
                raise self._error_factory(response)
            return response

    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and decode its JSON body; a broken body on a GET is retried.

        With ``decimal_json`` set on the client, JSON numbers with a fraction decode as exact
        ``Decimal`` (money in major units must never pass through float)."""
        attempt = 0
        while True:
            attempt += 1
            response = self.request(method, path, **kwargs)
            try:
                return self._decode(response.content) if response.content else None
            except ValueError:
                if method.upper() == "GET" and attempt < self.retry.max_attempts:
                    reason = f"non-JSON body from {method} {self._url(path).path}"
                    self._wait(attempt, None, reason=reason)
                    continue
                raise ApiUnavailableError(
                    redact(
                        f"{self.api} API sent a body that is not JSON for {method}"
                        f" {self._describe(path)} (status {response.status_code},"
                        f" {len(response.content)} bytes, after {attempt} attempt(s)); check"
                        f" {self.config_section}.base_url points at the API"
                    ),
                    status_code=response.status_code,
                    api=self.api,
                ) from None

    def get_json(self, path: str, params: Any = None) -> Any:
        """GET ``path`` and return its decoded JSON body."""
        return self.request_json("GET", path, params=params)

    def _merge_params(
        self, params: Mapping[str, Any] | list[tuple[str, Any]] | None
    ) -> list[tuple[str, Any]]:
        merged: list[tuple[str, Any]] = list(self._default_params.items())
        if params is None:
            return merged
        items = params.items() if isinstance(params, Mapping) else params
        merged.extend((key, value) for key, value in items if value is not None)
        return merged

    def _url(self, path: str) -> httpx.URL:
        return self._client.base_url.join(path.lstrip("/"))

    def _describe(self, path: str) -> str:
        return describe_url(self._url(path))

    def _raise_for_certificate(self, exc: httpx.TransportError, path: str) -> None:
        """A certificate that fails verification is not retried, and verification stays on."""
        failure = certificate_error(exc)
        if failure is None:
            return
        raise ApiUnavailableError(
            redact(
                f"{self.api} API at {self._describe(path)} presented a TLS certificate that"
                f" cannot be verified ({failure.verify_message or failure.reason}); certificate"
                f" verification stays on: check {self.config_section}.base_url, or trust a"
                " proxy's CA with SSL_CERT_FILE"
            ),
            api=self.api,
        ) from None

    def _count(self) -> None:
        self.add_requests(1)

    def add_requests(self, count: int) -> None:
        """Count ``count`` requests as this client's (worker processes report theirs here)."""
        with self._count_lock:
            self.request_count += count
        with _totals_lock:
            REQUEST_TOTALS[self.api] += count

    def _wait(self, attempt: int, retry_after: float | None, *, reason: str) -> None:
        delay = retry_after if retry_after is not None else self.retry.backoff(attempt)
        delay = min(delay, self.retry.max_delay)
        with self._count_lock:
            self.retry_count += 1
        logger.warning(
            "%s: retrying in %.2fs (attempt %d of %d)",
            redact(reason),
            delay,
            attempt + 1,
            self.retry.max_attempts,
        )
        if delay > 0:
            self._sleep(delay)
