"""Secret redaction: every secret the connector is given is registered here and masked in logs.

Clients call :func:`register_secret` for API keys, tokens and client secrets; a logging filter
installed on the root handlers masks them in every log record, and :func:`redact` is used when
building exception messages. Links that open or pay an invoice without a login (hosted invoice
pages, PDF downloads, signed or tokenised URLs) are secrets in logs too: they are recognised by
pattern (:data:`LINK_PATTERNS`, plus any a source adds with :func:`register_link_pattern`), so
the thousands of them a sync reads need not be registered one by one. They still land in the
destination, where they are data.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
_MIN_SECRET_LENGTH = 6
_secrets: set[str] = set()
_lock = threading.Lock()

_URL = re.compile(r"""https?://[^\s"'<>\\]+""")
LINK_PATTERNS: tuple[str, ...] = (
    # Stripe's hosted invoice pages, invoice PDFs and files
    r"^https?://(?:invoice|pay|files)\.stripe\.com/",
    # signed or tokenised URLs (S3/GCS presigned, HMAC-signed, token in the query)
    r"(?i)[?&](?:signature|sig|token|access_token|api_token|api_key|key|"
    r"x-amz-signature|x-goog-signature)=",
    # payment pages and PDF downloads
    r"(?i)/pay/|/pdf(?:$|[/?])",
)
_link_patterns: list[re.Pattern[str]] = [re.compile(pattern) for pattern in LINK_PATTERNS]


def register_secret(value: str | None) -> None:
    """Remember a secret so that it is masked wherever it would be logged or raised."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def register_link_pattern(pattern: str) -> None:
    """Treat URLs matching the regex ``pattern`` as secret links (masked in logs and errors)."""
    compiled = re.compile(pattern)
    with _lock:
        if all(existing.pattern != compiled.pattern for existing in _link_patterns):
            _link_patterns.append(compiled)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***`` and every secret link
    cut to its origin (``https://pay.stripe.com/***``)."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL.sub(_mask_link, text)
    return text


def _mask_link(match: re.Match[str]) -> str:
    text = match.group(0)
    url = text.rstrip(".,;:!?)]}")  # punctuation after a link is the sentence's, not the link's
    with _lock:
        patterns = list(_link_patterns)
    if not any(pattern.search(url) for pattern in patterns):
        return text
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0]}/{MASK}{text[len(url) :]}"


class RedactingFilter(logging.Filter):
    """A logging filter that masks registered secrets in the formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = redact(str(exc))
            if text != str(exc):
                record.exc_info = None
                record.exc_text = None
                record.msg = f"{record.msg} ({type(exc).__name__}: {text})"
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Attach the redacting filter to every handler of the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    for name in ("invoice_source", "dlt"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
