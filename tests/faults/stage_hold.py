"""Run the ``invoice-sync`` CLI, holding it still inside one dlt step so a test can SIGKILL it.

``python stage_hold.py STAGE MARKER -- <invoice-sync arguments>``: STAGE is ``normalize``
(after the first batch of files was normalized, before the package is committed) or ``load``
(after the first load jobs completed, before the package is complete). On reaching that point
the process writes MARKER and sleeps until it is killed. Only the hold is added: everything
else is the real ``invoice_source.cli.main``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

HOLD_SECONDS = 600


def hold(marker: Path, detail: str) -> None:
    """Tell the test where the process stands, then wait to be killed."""
    marker.write_text(detail)
    time.sleep(HOLD_SECONDS)


def hold_in_normalize(marker: Path) -> None:
    """Hold after the first files of a package were normalized, before it is committed."""
    from dlt.normalize import normalize

    original = normalize.w_normalize_files

    def normalize_then_hold(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        hold(marker, f"normalized {len(result.file_metrics)} files")
        return result

    normalize.w_normalize_files = normalize_then_hold


def hold_in_load(marker: Path) -> None:
    """Hold once the first load jobs of a package completed, while others are still to run."""
    from dlt.load.load import Load

    original = Load.complete_jobs

    def complete_then_hold(self: Load, load_id: str, jobs: Any, schema: Any) -> Any:
        remaining, finalized, pending = original(self, load_id, jobs, schema)
        if finalized:
            hold(marker, " ".join(job.job_id() for job in finalized))
        return remaining, finalized, pending

    Load.complete_jobs = complete_then_hold  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    """Install the hold for ``argv[0]``, then run the CLI with the arguments after ``--``."""
    stage, marker = argv[0], Path(argv[1])
    cli_args = argv[argv.index("--") + 1 :]
    {"normalize": hold_in_normalize, "load": hold_in_load}[stage](marker)
    from invoice_source.cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
