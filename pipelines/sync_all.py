"""The scheduled job: load every source (or the ones named), then build the models.

Run it from the folder that holds your ``.dlt/`` configuration, on a timer::

    python pipelines/sync_all.py                                # all sources, default destination
    python pipelines/sync_all.py --destination postgres         # or DESTINATION_TYPE=postgres
    python pipelines/sync_all.py stripe prepbusiness --pipelines-dir /var/lib/invoice-sync

It is ``invoice-sync run`` with a scheduler's defaults: every source when none is named, and
JSON logs when stderr is not a terminal. Exit codes: 0 every source loaded, 1 a source failed
(the others still loaded), 75 another run holds the same pipeline state (try again later).
The last stdout/stderr line is the summary (``invoice-sync: ok: ...`` / ``failed: ...``).

Every run is safe to repeat: tables are merged, cursors only move once a load completed, and
load packages of a killed run are loaded first by the next one. :func:`sync_all` is the same run
for Python callers (Dagster, Prefect, notebooks).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from invoice_source.cli import main as cli_main
from invoice_source.pipeline import DEFAULT_DATASET, SyncOptions, SyncResult, run_sync


def sync_all(
    sources: Sequence[str] = ("all",),
    *,
    destination: Any = None,
    dataset: str = DEFAULT_DATASET,
    pipelines_dir: str | None = None,
    build_models: bool = True,
) -> SyncResult:
    """Load ``sources`` incrementally, then build the SQL models.

    Raises ``SyncFailedError`` when a source failed (its ``result`` says what loaded) and
    ``RunLockedError`` when another run holds the same pipeline state.
    """
    options = SyncOptions(destination=destination, dataset=dataset, pipelines_dir=pipelines_dir)
    result = run_sync(sources, options)
    if build_models:
        from invoice_source.models import run_models

        run_models(result.pipeline)
    return result


def command_line(argv: Sequence[str]) -> list[str]:
    """The ``invoice-sync`` arguments for ``argv``: ``all`` when no source is named, JSON logs
    when stderr is not a terminal (unless ``--log-format`` is given)."""
    args = list(argv)
    if not args or args[0].startswith("-"):
        args.insert(0, "all")
    log_format = "text" if sys.stderr.isatty() else "json"
    if "--log-format" in args:
        at = args.index("--log-format")
        log_format = args[at + 1]
        del args[at : at + 2]
    return ["--log-format", log_format, "run", *args]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job; returns the exit code for the scheduler."""
    return cli_main(command_line(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
