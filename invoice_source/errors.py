"""The exceptions invoice-sync raises: one base class, so the CLI can print one clear line."""

from __future__ import annotations

from typing import Any


class InvoiceSyncError(Exception):
    """Base of every error invoice-sync raises on purpose; its message is safe to print."""


class ConfigurationError(InvoiceSyncError):
    """A setting is missing or wrong; the message names the key to fix."""


class ApiError(InvoiceSyncError):
    """An API answered with an error status that retrying will not fix."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        api: str = "",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.api = api


class AuthenticationError(ApiError):
    """The credentials were refused (401/403)."""


class NotFoundError(ApiError):
    """The resource does not exist (404)."""


class InvalidRequestError(ApiError):
    """The request was refused as invalid (400/409/422), e.g. a refused state transition."""


class ApiUnavailableError(ApiError):
    """The API kept failing (5xx, 429, resets, timeouts, broken bodies) after every retry."""


class PaginationError(ApiError):
    """The API paged in a way that would lose or repeat data (repeated cursor, ignored filter)."""


def find_error(exc: BaseException, kind: type[InvoiceSyncError] = InvoiceSyncError) -> Any:
    """The first ``kind`` error in ``exc``'s chain (dlt wraps source errors in its own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        current = current.__cause__ or current.__context__ or getattr(current, "exception", None)
    return None
