"""One line per error, naming what to fix: the CLI's ``invoice-sync: error: ...`` lines.

Our own errors (:mod:`invoice_source.errors`) are unwrapped from dlt's step wrappers and printed
as they are. dlt's configuration errors become the config key and environment variable to set
(a missing API key, destination credentials, a value of the wrong type, an unreadable
``.dlt/*.toml``); DuckDB running out of memory names its ``memory_limit`` setting. Anything else
is its innermost exception's type and first line. Every line is passed through
:func:`~invoice_source.redaction.redact`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from invoice_source.errors import find_error
from invoice_source.redaction import redact


def describe_failure(error: BaseException | None, source: str | None = None) -> str:
    """One secret-free line for an error (our own errors are unwrapped from dlt's; dlt's
    configuration errors name the key to fix). ``source`` names the source that raised it."""
    if error is None:
        return ""
    own = find_error(error)
    if own is not None:
        return redact(str(own))
    config_problem = describe_config_error(error, source)
    if config_problem is not None:
        return redact(config_problem)
    step = getattr(error, "step", None)
    cause = _innermost(error)
    text = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    message = f"{type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")
    if isinstance(step, str):
        message += f" (dlt step {step})"
    if _is_duckdb_out_of_memory(cause):
        message += DUCKDB_OUT_OF_MEMORY_HINT
    return redact(message)


DUCKDB_OUT_OF_MEMORY_HINT = (
    ": DuckDB's memory_limit is too small for this load; raise it under"
    " [destination.duckdb.credentials] in .dlt/config.toml"
    ' (global_config = { memory_limit = "1GB" }) or in'
    " DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG. What loaded is kept; the next run loads"
    " the rest"
)


# How DuckDB's buffer manager ends every message of memory it could not get: "(7.4 MiB/7.6 MiB
# used)".
_DUCKDB_MEMORY_USED = re.compile(r"\(\d+(?:\.\d+)? [KMGT]?i?B/\d+(?:\.\d+)? [KMGT]?i?B used\)")


def _is_duckdb_out_of_memory(error: BaseException) -> bool:
    """DuckDB's out-of-memory error, or a commit that failed for want of memory (a
    ``TransactionException`` then: "Failed to commit: could not allocate block ...")."""
    import duckdb

    return isinstance(error, duckdb.OutOfMemoryException) or (
        isinstance(error, duckdb.Error) and _DUCKDB_MEMORY_USED.search(str(error)) is not None
    )


def describe_config_error(error: BaseException, source: str | None = None) -> str | None:
    """A missing or unreadable setting, named by its config key and env var (None when
    ``error`` is not a configuration problem)."""
    from dlt.common.configuration.exceptions import (
        ConfigFieldMissingException,
        ConfigValueCannotBeCoercedException,
    )
    from dlt.common.configuration.providers.toml import TomlProviderReadException

    missing = _find(error, ConfigFieldMissingException)
    if missing is not None:
        found = _missing_keys(missing)
        keys = [_describe_key(sections, field) for sections, field in found]
        where = "; ".join(keys) or missing.spec_name
        plural = "s" if len(keys) > 1 else ""
        message = (
            f"missing setting{plural} {where}: put {'them' if plural else 'it'} in"
            " .dlt/secrets.toml or .dlt/config.toml, or set the environment variable"
        )
        credentials = [s for s, _ in found if s and s[-1] == "credentials"]
        if credentials:
            whole = "__".join(credentials[0]).upper()
            message += f"{plural} (or a whole connection string in {whole})"
        return message
    coerced = _find(error, ConfigValueCannotBeCoercedException)
    if coerced is not None:
        sections = ["sources", source] if source else []
        key = ".".join([*sections, coerced.field_name])
        wanted = getattr(coerced.hint, "__name__", str(coerced.hint))
        secret_like = any(w in coerced.field_name for w in ("key", "token", "secret", "password"))
        given = "" if secret_like else f", not {coerced.field_value!r}"
        return f"setting {key} must be a {wanted}{given}"
    unreadable = _find(error, TomlProviderReadException)
    if unreadable is not None:
        reason = str(unreadable).strip().splitlines()[-1]
        return f"cannot read .dlt/{unreadable.file_name}: {reason}"
    return None


def _find(error: BaseException, kind: type[Any]) -> Any:
    """The first ``kind`` exception in ``error``'s chain (dlt wraps what it raises)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        inner = getattr(current, "exception", None)
        if isinstance(inner, BaseException):
            current = inner
        else:
            current = current.__cause__ or current.__context__
    return None


def _missing_keys(missing: Any) -> list[tuple[list[str], str]]:
    """``(sections, field)`` of every field a ``ConfigFieldMissingException`` lists, nested
    configurations (credentials) walked, each at its most specific non-pipeline-scoped key."""
    found: list[tuple[list[str], str]] = []

    def walk(traces: Mapping[str, Any]) -> None:
        for field_name, lookups in traces.items():
            items = [lookups] if hasattr(lookups, "traces") else list(lookups)
            nested = [item for item in items if hasattr(item, "traces")]
            for embedded in nested:  # a configuration inside one (credentials)
                walk(embedded.traces)
            if nested:
                continue
            candidates = [
                list(t.sections)
                for t in items
                if t.provider == "Environment Variables"
                and t.key == "__".join([*t.sections, field_name]).upper()
            ]
            found.append((_best_sections(candidates), field_name))

    walk(missing.traces)
    return found


def _best_sections(candidates: list[list[str]]) -> list[str]:
    """The sections a user would write: ``[sources, stripe]`` rather than the source function's
    own ``[sources, stripe, stripe]``."""
    if not candidates:
        return []
    deduplicated = [c for c in candidates if len(c) < 2 or c[-1] != c[-2]]
    return max(deduplicated or candidates, key=len)


def _describe_key(sections: list[str], field_name: str) -> str:
    dotted = ".".join([*sections, field_name])
    env = "__".join([*sections, field_name]).upper()
    return f"{dotted} (env {env})"


def _innermost(error: BaseException) -> BaseException:
    """The original exception under dlt's wrappers (``PipelineStepFailed`` and the like)."""
    seen = {id(error)}
    current = error
    while True:
        inner = getattr(current, "exception", None) or current.__cause__
        if not isinstance(inner, BaseException) or id(inner) in seen:
            return current
        seen.add(id(inner))
        current = inner
