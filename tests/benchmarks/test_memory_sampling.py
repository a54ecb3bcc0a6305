"""What the benchmark counts as the connector's memory: its process and the programs below it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.connector import process_tree, tree_memory_mb

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").exists(), reason="reads the process tree from Linux's /proc"
)


def test_given_a_child_that_has_exec_d_when_the_tree_is_read_then_it_counts() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        assert child.pid in process_tree(os.getpid())
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()


def test_given_a_child_forked_and_not_exec_d_when_read_then_its_parent_counts_once() -> None:
    # Between fork and exec a child maps its parent's pages and /proc reports the parent's
    # resident memory for it as well; counting it would double the run's figure for that moment.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child waits, never exec'ing, until the parent has looked
        os.close(write_end)
        os.read(read_end, 1)
        os._exit(0)
    os.close(read_end)
    try:
        tree = process_tree(os.getpid())
        assert os.getpid() in tree
        assert pid not in tree
    finally:
        os.close(write_end)
        os.waitpid(pid, 0)


def test_given_a_child_holding_allocated_memory_when_summed_then_it_counts_as_anonymous() -> None:
    # 64 MB the child allocates and touches: its own memory, whatever the page cache holds
    code = "import sys; block = bytearray(64 * 2**20); sys.stdout.write('ready\\n');"
    code += " sys.stdout.flush(); sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=-1, stdout=-1)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        resident, anonymous = tree_memory_mb([child.pid])
        alone_resident, alone_anonymous = tree_memory_mb([os.getpid()])
        both_resident, both_anonymous = tree_memory_mb([os.getpid(), child.pid])
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    assert 64 <= anonymous < resident
    assert both_anonymous >= alone_anonymous + 64
    assert both_resident >= alone_resident + resident - 4  # this process may have shrunk a little
