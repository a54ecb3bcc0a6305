"""OAuth2 client credentials for the Alternative Payments API, as an ``httpx.Auth``.

The token is fetched once (HTTP Basic ``client_id:client_secret``, form
``grant_type=client_credentials`` and the optional ``scope``), reused until shortly before it
expires, replaced then or when the API answers 401, and registered with
:mod:`invoice_source.redaction` so it never reaches a log line or an error message.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx

from invoice_source.alternative_payments import settings
from invoice_source.errors import AuthenticationError
from invoice_source.http import ApiClient
from invoice_source.redaction import register_secret

logger = logging.getLogger("invoice_source.alternative_payments")

Clock = Callable[[], float]


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and the clock reading after which it must not be used any more."""

    value: str
    expires_at: float
    refresh_at: float
    scope: str | None = None


class ClientCredentialsAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <token>``, fetching and refreshing the token as needed.

    ``token_client`` sends the token requests (with the shared retries, rate limiter and
    request counting); its ``error_factory`` turns a refused grant into an exception.
    ``clock`` is monotonic seconds; tests pass a fake one to cross an expiry without waiting.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        *,
        token_client: ApiClient,
        token_path: str,
        client_id: str,
        client_secret: str,
        scopes: tuple[str, ...] = (),
        clock: Clock = time.monotonic,
    ) -> None:
        register_secret(client_secret)
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
        register_secret(basic)
        self._basic_header = f"Basic {basic}"
        self._token_client = token_client
        self._token_path = token_path
        self._scopes = scopes
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self.tokens_fetched = 0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send ``request`` with a valid token; on a 401 fetch a new token and send it once more."""
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token.value}"
        response = yield request
        if response.status_code == 401:
            logger.info("Alternative Payments answered 401: fetching a new access token")
            token = self.token(replace=token)
            request.headers["Authorization"] = f"Bearer {token.value}"
            yield request

    def token(self, *, replace: AccessToken | None = None) -> AccessToken:
        """The current token, fetched first when there is none, it is due for refresh, or it
        is ``replace`` (a token the API has just refused)."""
        with self._lock:
            current = self._token
            if (
                current is not None
                and current is not replace
                and self._clock() < current.refresh_at
            ):
                return current
            self._token = self._fetch()
            return self._token

    def _fetch(self) -> AccessToken:
        form: dict[str, str] = {"grant_type": "client_credentials"}
        if self._scopes:
            form["scope"] = " ".join(self._scopes)
        requested_at = self._clock()
        payload = self._token_client.request_json(
            "POST",
            self._token_path,
            data=form,
            headers={"Authorization": self._basic_header, "Accept": "application/json"},
            retry_non_idempotent=True,
        )
        if not isinstance(payload, dict) or not isinstance(payload.get("access_token"), str):
            raise AuthenticationError(
                "Alternative Payments token endpoint answered without an access_token;"
                f" check {settings.CONFIG_SECTION}.base_url points at the API",
                api=settings.API_NAME,
            )
        value = payload["access_token"]
        register_secret(value)
        token_type = str(payload.get("token_type") or "Bearer")
        if token_type.lower() != "bearer":
            logger.warning(
                "Alternative Payments issued a %r token; sending it as Bearer", token_type
            )
        lifetime = _lifetime(payload.get("expires_in"))
        margin = min(settings.TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 10)
        self.tokens_fetched += 1
        logger.info("Fetched an Alternative Payments access token valid for %.0fs", lifetime)
        scope = payload.get("scope")
        return AccessToken(
            value=value,
            expires_at=requested_at + lifetime,
            refresh_at=requested_at + lifetime - margin,
            scope=scope if isinstance(scope, str) else None,
        )


def _lifetime(expires_in: object) -> float:
    try:
        lifetime = float(str(expires_in))
    except ValueError:
        return float(settings.DEFAULT_TOKEN_LIFETIME_SECONDS)
    return lifetime if lifetime > 0 else float(settings.DEFAULT_TOKEN_LIFETIME_SECONDS)
