"""Giving memory back to the operating system once a source has read everything.

A read leaves freed memory behind in the allocators' pools: pyarrow's (mimalloc) keeps what its
tables held, and glibc's malloc keeps an arena per reader thread. The process would carry that
into dlt's load step, where DuckDB needs its own; at 100k Stripe invoices it was ~75 MB.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import sys
from typing import Any

import pyarrow as pa

logger = logging.getLogger("invoice_source.memory")


def release_free_memory() -> None:
    """Return freed memory held by pyarrow's pool and, on glibc, by malloc to the system."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    malloc_trim = _malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where there is none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        logger.debug("malloc_trim is not available")
        return None
