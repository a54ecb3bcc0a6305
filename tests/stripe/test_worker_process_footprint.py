"""Worker processes start lean: they import neither the parent's main module nor dlt, DuckDB,
pyarrow or httpx's command line; pyarrow in the ``invoice-sync`` command uses the system allocator.

Each spawned worker runs its imports again. The main module of a pipeline script or of the CLI
imports dlt, DuckDB and pyarrow (~50-90 MB per worker); dlt alone is ~30 MB a worker never uses,
pyarrow ~55 MB. pyarrow's default pool (mimalloc) keeps freed pages that the system allocator
gives back.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from invoice_source.memory import ARROW_POOL_VARIABLE
from invoice_source.stripe.processes import _lean_start, work

MAIN_SCRIPT = """
import multiprocessing
import os
import runpy
from pathlib import Path

if __name__ != "__main__":  # imported again in a spawned child, as __mp_main__
    Path(os.environ["MARKER"]).write_text("imported")
else:
    from invoice_source.stripe.processes import _lean_start

    worker = multiprocessing.get_context("spawn").Process(
        target=runpy.run_path, args=(os.environ["PROBE"],)
    )
    if os.environ["LEAN"] == "1":
        with _lean_start():
            worker.start()
    else:
        worker.start()
    worker.join()
    raise SystemExit(worker.exitcode)
"""

WORKER_PROBE = """
import os
from pathlib import Path

Path(os.environ["REPORT"]).write_text("ran")
"""


def start_worker_from_script(tmp_path: Path, *, lean: bool) -> bool:
    """Run MAIN_SCRIPT as ``__main__``; whether its spawned worker imported it again."""
    script = tmp_path / "pipeline_script.py"
    script.write_text(MAIN_SCRIPT)
    probe = tmp_path / "worker_probe.py"
    probe.write_text(WORKER_PROBE)
    marker, report = tmp_path / f"imported-{lean}", tmp_path / f"ran-{lean}"
    completed = subprocess.run(
        [sys.executable, str(script)],
        env={
            **os.environ,
            "MARKER": str(marker),
            "PROBE": str(probe),
            "REPORT": str(report),
            "LEAN": "1" if lean else "0",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert report.read_text() == "ran"
    return marker.exists()


def test_given_a_pipeline_script_when_workers_start_then_they_skip_its_imports(
    tmp_path: Path,
) -> None:
    assert start_worker_from_script(tmp_path, lean=False), "control: what spawn does by itself"

    assert not start_worker_from_script(tmp_path, lean=True)


def test_given_workers_started_when_done_then_the_main_module_is_as_before() -> None:
    main = sys.modules["__main__"]
    before = (getattr(main, "__spec__", None), getattr(main, "__file__", None))
    with _lean_start():
        assert main.__spec__ is None
        assert not hasattr(main, "__file__")
    assert (getattr(main, "__spec__", None), getattr(main, "__file__", None)) == before


@pytest.mark.parametrize("module", ["dlt", "duckdb", "pyarrow"])
def test_given_a_worker_process_when_it_imports_its_target_then_module_is_not_loaded(
    module: str,
) -> None:
    target = work.__module__  # what a spawned worker imports to find its target
    probe = f"import sys, {target}; print({module!r} in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "False"


CLI_PROBE = """
import sys
from pathlib import Path

import invoice_source.stripe.worker  # first, as when a worker unpickles its target
import httpx

loaded = [name for name in ("httpx._main", "click", "rich", "pygments") if sys.modules.get(name)]
Path(REPORT).write_text(" ".join(loaded) + "|" + str(callable(httpx.main)))
"""


def test_given_a_worker_process_when_it_imports_its_target_then_httpx_command_line_is_not_loaded(
    tmp_path: Path,
) -> None:
    probe, report = tmp_path / "cli_probe.py", tmp_path / "report"
    probe.write_text(CLI_PROBE)
    control = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, invoice_source.stripe.worker; print('httpx._main' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert control.stdout.strip() == "True", "control: the run's own process keeps httpx whole"

    worker = multiprocessing.get_context("spawn").Process(
        target=runpy.run_path, args=(str(probe),), kwargs={"init_globals": {"REPORT": str(report)}}
    )
    with _lean_start():
        worker.start()
    worker.join(timeout=60)

    assert worker.exitcode == 0
    assert report.read_text() == "|True"  # nothing of the command line; httpx.main a stub


COMMAND_PROBE = """
import sys
import types

cli = types.ModuleType("invoice_source.cli")  # stands in for the CLI: reports the pool it gets
cli.main = lambda: print(__import__("pyarrow").default_memory_pool().backend_name) or 0
sys.modules["invoice_source.cli"] = cli
from invoice_source.__main__ import main

sys.exit(main())
"""


@pytest.mark.parametrize(("chosen", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_given_the_invoice_sync_command_when_it_starts_then_arrow_uses_the_system_allocator(
    chosen: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != ARROW_POOL_VARIABLE}
    if chosen is not None:  # the user's own choice wins
        env[ARROW_POOL_VARIABLE] = chosen
    completed = subprocess.run(
        [sys.executable, "-c", COMMAND_PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert completed.stdout.strip() == expected


MAPPED_BLOCK_PROBE = """
import ctypes
import sys

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    from invoice_source.memory import keep_large_blocks_mapped

    keep_large_blocks_mapped()
elif sys.argv[1] == "worker":  # a worker told to stop at once: what it set up stays
    import multiprocessing
    import os
    import queue

    from invoice_source.http import RetryPolicy
    from invoice_source.stripe.worker import WorkerSpec, work

    spec = WorkerSpec(
        client_kwargs={
            "api_key": "sk_test_probe", "requests_per_second": 0, "retry": RetryPolicy()
        },
        threads=1, page_size=100, synced_at=0, log_level=30, yield_invoices=500,
    )
    tasks = queue.Queue()
    tasks.put(None)
    work(spec, multiprocessing.Value("d", 0.0), tasks, queue.Queue(), None, os.getppid())
first = bytearray(1 << 20)  # a response body's size
del first  # glibc now raises its mmap threshold past 1 MiB, unless it was set
mapped_before = libc.mallinfo2().hblkhd
second = bytearray(1 << 20)
print(libc.mallinfo2().hblkhd - mapped_before >= 1 << 20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")
@pytest.mark.parametrize(
    ("setting", "mapped"), [("default", "False"), ("keep", "True"), ("worker", "True")]
)
def test_given_a_freed_large_block_when_the_next_is_allocated_then_a_worker_maps_it_of_its_own(
    setting: str, mapped: str
) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", MAPPED_BLOCK_PROBE, setting],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert completed.stdout.strip() == mapped
