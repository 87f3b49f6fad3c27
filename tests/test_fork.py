"""A forked child gets a fresh, working runtime; the parent is unaffected."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import textwrap

import pytest

from tokio_runtime import channel_demo, shared_counter_demo
from tokio_runtime._default import get_runtime

# Python 3.12+ warns about fork() in any multi-threaded process; forking with
# the runtime's threads alive is exactly what these tests are about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


async def _work(n):
    return await shared_counter_demo(n), await channel_demo(2)


def _child_job(n):
    return asyncio.run(_work(n))


def test_bare_os_fork_child_builds_a_fresh_runtime():
    assert asyncio.run(_work(3)) == (3, ["Message 0", "Message 1"])
    parent_rt = get_runtime()
    pid = os.fork()
    if pid == 0:  # child: must not touch the parent's (thread-less) runtime
        code = 3
        try:
            result = asyncio.run(_work(50))
            fresh = get_runtime() is not parent_rt
            code = 0 if result == (50, ["Message 0", "Message 1"]) and fresh else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert get_runtime() is parent_rt
    assert asyncio.run(_work(4)) == (4, ["Message 0", "Message 1"])


def test_multiprocessing_fork_pool():
    asyncio.run(_work(1))  # the parent's runtime is running when the pool forks
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.map(_child_job, [10, 20, 30, 40])
    assert results == [(n, ["Message 0", "Message 1"]) for n in (10, 20, 30, 40)]
    assert asyncio.run(_work(5)) == (5, ["Message 0", "Message 1"])


FORK_EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys, warnings
    import tokio_runtime as tr

    # Python 3.12+ warns about fork() in any multi-threaded process.
    warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)

    async def work(n):
        await tr.spawn_background_task(100, 1)
        tr.channel_demo(1000)  # left in flight
        return await tr.shared_counter_demo(n)

    assert asyncio.run(work(5)) == 5
    pid = os.fork()
    if pid == 0:
        # The child exits normally: atexit runs, must skip the parent's
        # runtime and shut down its own.
        assert asyncio.run(work(7)) == 7
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print("child exit code", os.waitstatus_to_exitcode(status))
    """
)


def test_forked_child_exits_cleanly_through_atexit():
    proc = subprocess.run(
        [sys.executable, "-c", FORK_EXIT_SCRIPT], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert "child exit code 0" in proc.stdout
    assert proc.stderr == ""
