"""Worker processes start lean: they import neither the parent's main module nor dlt, and
pyarrow in them, as in the ``invoice-sync`` command, uses the system allocator.

Each spawned worker runs its imports again. The main module of a pipeline script or of the CLI
imports dlt, DuckDB and pyarrow (~50-90 MB per worker); dlt alone is ~30 MB a worker never uses;
pyarrow's default pool (mimalloc) keeps freed pages that the system allocator gives back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from invoice_source.memory import ARROW_POOL_VARIABLE
from invoice_source.stripe.processes import _lean_start

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
import pyarrow as pa
from pathlib import Path

Path(os.environ["REPORT"]).write_text(pa.default_memory_pool().backend_name)
"""


def start_worker_from_script(tmp_path: Path, *, lean: bool) -> tuple[bool, str]:
    """Run MAIN_SCRIPT as ``__main__``; whether its spawned worker imported it again, and the
    worker's pyarrow pool."""
    script = tmp_path / "pipeline_script.py"
    script.write_text(MAIN_SCRIPT)
    probe = tmp_path / "worker_probe.py"
    probe.write_text(WORKER_PROBE)
    marker, report = tmp_path / f"imported-{lean}", tmp_path / f"pool-{lean}"
    env = {k: v for k, v in os.environ.items() if k != ARROW_POOL_VARIABLE}
    completed = subprocess.run(
        [sys.executable, str(script)],
        env={
            **env,
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
    return marker.exists(), report.read_text()


def test_given_a_pipeline_script_when_workers_start_then_they_skip_its_imports_and_mimalloc(
    tmp_path: Path,
) -> None:
    imported, pool = start_worker_from_script(tmp_path, lean=False)
    assert imported and pool == "mimalloc", "control: what spawn does by itself"

    assert start_worker_from_script(tmp_path, lean=True) == (False, "system")


def test_given_workers_started_when_done_then_main_module_and_environment_are_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ARROW_POOL_VARIABLE, raising=False)
    main = sys.modules["__main__"]
    before = (getattr(main, "__spec__", None), getattr(main, "__file__", None))
    with _lean_start():
        assert main.__spec__ is None
        assert not hasattr(main, "__file__")
        assert os.environ[ARROW_POOL_VARIABLE] == "system"
    assert (getattr(main, "__spec__", None), getattr(main, "__file__", None)) == before
    assert ARROW_POOL_VARIABLE not in os.environ


def test_given_a_pool_chosen_by_the_user_when_workers_start_then_it_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ARROW_POOL_VARIABLE, "jemalloc")
    with _lean_start():
        assert os.environ[ARROW_POOL_VARIABLE] == "jemalloc"
    assert os.environ[ARROW_POOL_VARIABLE] == "jemalloc"


@pytest.mark.parametrize("module", ["dlt", "duckdb"])
def test_given_a_worker_process_when_it_imports_its_modules_then_module_is_not_loaded(
    module: str,
) -> None:
    probe = f"import sys, invoice_source.stripe.processes; print({module!r} in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "False"


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
