"""Measured child processes: each run's result comes back as one JSON line on stdout, and its
peak memory is read from the kernel's accounting of that very process (``os.wait4``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from invoice_source.errors import InvoiceSyncError

RESULT_PREFIX = "BENCH_RESULT "
# ru_maxrss is in kilobytes on Linux and in bytes on macOS.
_MAXRSS_PER_MB = 1024 * 1024 if sys.platform == "darwin" else 1024
REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchmarkError(InvoiceSyncError):
    """A benchmark child failed or answered something unexpected."""


def emit_result(payload: Mapping[str, Any]) -> None:
    """Print a child's result for the parent (the one line it reads)."""
    sys.stdout.write(RESULT_PREFIX + orjson.dumps(payload).decode() + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class ChildRun:
    """What a measured child reported, plus what the parent measured of it."""

    result: dict[str, Any]
    peak_rss_mb: float
    process_seconds: float
    cpu_seconds: float


def run_measured(
    module: str, args: Sequence[str], *, env: Mapping[str, str], log_path: Path
) -> ChildRun:
    """Run ``python -m module args`` to completion; its stderr goes to ``log_path``.

    The peak resident memory is the child's own ``ru_maxrss`` as reported by ``wait4`` for its
    pid, so it covers the child's whole life and nothing else.
    """
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, **env},
            cwd=REPO_ROOT,
        )
        assert process.stdout is not None
        output = process.stdout.read()
        process.stdout.close()
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    lines = [line for line in output.decode().splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode != 0 or not lines:
        raise BenchmarkError(
            f"{module} failed (exit code {process.returncode}); last lines of {log_path}:\n"
            + tail(log_path)
        )
    result: dict[str, Any] = orjson.loads(lines[-1][len(RESULT_PREFIX) :])
    return ChildRun(
        result, usage.ru_maxrss / _MAXRSS_PER_MB, seconds, usage.ru_utime + usage.ru_stime
    )


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
