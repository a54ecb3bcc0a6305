"""Giving memory back to the operating system: while a source reads, and once it has read
everything.

A Stripe worker process allocates a response body (~0.8 MB for a page of 100 invoices) and the
pickled columns of each page (~0.5 MB) several times a second from four threads. glibc's malloc
serves blocks above its mmap threshold with a mapping of their own, returned on free, but it
raises that threshold to the size of the first such block freed, up to 32 MB: from then on these
blocks come from the heap, and the freed ones leave it fragmented. A worker keeps the threshold
at 128 KiB (:func:`keep_large_blocks_mapped`): ~10 MB less per worker at 25,000 invoices, and
no slower.

A read leaves freed memory behind in the allocators' pools: pyarrow's default (mimalloc) keeps
what its tables held, and glibc's malloc keeps an arena per reader thread. The process would
carry that into dlt's load step, where DuckDB needs its own; at 100k Stripe invoices it was ~75
MB. The ``invoice-sync`` command starts with the system allocator as pyarrow's pool instead,
which returns freed pages as it goes: at 100k Stripe invoices ~25 MB less in the run's own
process, at no measurable cost in speed (Stripe's worker processes import no pyarrow). A library
must not choose its host's allocator, so a pipeline script that calls the sources itself keeps
pyarrow's default unless its environment sets ``ARROW_DEFAULT_MEMORY_POOL=system``.

This module imports nothing heavy: the command's entry point uses it before pyarrow is loaded.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import os
import sys
from typing import Any

logger = logging.getLogger("invoice_source.memory")


# Read once, when pyarrow is imported; ``pa.set_memory_pool`` would not reach the pool that
# Arrow's C++ code (IPC, parquet writing) uses.
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def system_allocator_environment() -> dict[str, str]:
    """Environment variables that make a new process's pyarrow use the system allocator, unless
    the user has chosen a pool already."""
    if ARROW_POOL_VARIABLE in os.environ:
        return {}
    return {ARROW_POOL_VARIABLE: "system"}


def release_free_memory() -> None:
    """Return freed memory held by pyarrow's pool and, on glibc, by malloc to the system."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)


# glibc's M_MMAP_THRESHOLD (malloc.h) and its default value.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def keep_large_blocks_mapped() -> None:
    """On glibc, serve blocks of :data:`MMAP_THRESHOLD_BYTES` and more with mappings of their
    own, returned to the system when freed (setting it stops glibc from raising it). For a
    process of invoice-sync's own: a library must not tune its host's allocator."""
    mallopt = _glibc("mallopt")
    if mallopt is not None and not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        logger.debug("mallopt(M_MMAP_THRESHOLD) was refused")


@functools.cache
def _glibc(name: str) -> Any:
    """glibc's function ``name``, or None where there is none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        logger.debug("%s is not available", name)
        return None
