"""Worker processes start lean: they import neither the parent's main module nor dlt.

Each spawned worker runs its imports again. The main module of a pipeline script or of the CLI
imports dlt, DuckDB and pyarrow (~50-90 MB per worker); dlt alone is ~30 MB a worker never uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MAIN_SCRIPT = """
import multiprocessing
import os
import time
from pathlib import Path

if __name__ != "__main__":  # imported again in a spawned child, as __mp_main__
    Path(os.environ["MARKER"]).write_text("imported")
else:
    from invoice_source.stripe.processes import _without_main_module

    worker = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    if os.environ["HIDE_MAIN"] == "1":
        with _without_main_module():
            worker.start()
    else:
        worker.start()
    worker.join()
    raise SystemExit(worker.exitcode)
"""


def run_main_script(tmp_path: Path, *, hide_main: bool) -> bool:
    """Run MAIN_SCRIPT as ``__main__``; whether its spawned worker imported it again."""
    script = tmp_path / "pipeline_script.py"
    script.write_text(MAIN_SCRIPT)
    marker = tmp_path / f"imported-{hide_main}"
    completed = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "MARKER": str(marker), "HIDE_MAIN": "1" if hide_main else "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return marker.exists()


def test_given_a_pipeline_script_when_workers_start_then_they_do_not_import_it_again(
    tmp_path: Path,
) -> None:
    assert run_main_script(tmp_path, hide_main=False), "control: spawn imports __main__ again"
    assert not run_main_script(tmp_path, hide_main=True)


def test_given_workers_started_when_done_then_the_main_module_is_as_before() -> None:
    from invoice_source.stripe.processes import _without_main_module

    main = sys.modules["__main__"]
    before = (getattr(main, "__spec__", None), getattr(main, "__file__", None))
    with _without_main_module():
        assert main.__spec__ is None
        assert not hasattr(main, "__file__")
    assert (getattr(main, "__spec__", None), getattr(main, "__file__", None)) == before


@pytest.mark.parametrize("module", ["dlt", "duckdb"])
def test_given_a_worker_process_when_it_imports_its_modules_then_module_is_not_loaded(
    module: str,
) -> None:
    probe = f"import sys, invoice_source.stripe.processes; print({module!r} in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "False"
