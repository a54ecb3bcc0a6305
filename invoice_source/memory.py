"""Giving memory back to the operating system once a source has read everything.

A read leaves freed memory behind in the allocators' pools: pyarrow's (mimalloc) keeps what its
tables held, and glibc's malloc keeps an arena per reader thread. The process would carry that
into dlt's load step, where DuckDB needs its own; at 100k Stripe invoices it was ~75 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys

import pyarrow as pa

logger = logging.getLogger("invoice_source.memory")


def release_free_memory() -> None:
    """Return freed memory held by pyarrow's pool and, on glibc, by malloc to the system."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim(0)
        except (OSError, AttributeError):  # musl and other libcs have no malloc_trim
            logger.debug("malloc_trim is not available")
