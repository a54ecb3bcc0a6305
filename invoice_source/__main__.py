"""The ``invoice-sync`` command (also ``python -m invoice_source``): the CLI, in a process set up
before pyarrow loads (see :mod:`invoice_source.memory`)."""

from __future__ import annotations

import os
import sys

from invoice_source.memory import system_allocator_environment


def main() -> int:
    """Entry point of the ``invoice-sync`` console script."""
    os.environ.update(system_allocator_environment())
    from invoice_source.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
