"""The pytest plugin (``tokio_runtime.pytest_plugin``, entry point ``pytest11``).

Each scenario runs in its own pytest process (``pytester.runpytest_subprocess``)
with pytest-asyncio, as a user's project would: the plugin is loaded from the
installed package's entry point, not from this repository's conftest.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import tokio_runtime as tr

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"

# What every inner session shares: pytest-asyncio in strict mode (the default
# for projects), warnings as errors, and a helper listing native thread names.
CONFTEST = """
import os

def native_threads(prefix):
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # exited meanwhile
            pass
    return [n for n in names if n.startswith(prefix)]
"""
INI = """
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


@pytest.fixture
def project(pytester):
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    return pytester


def run(pytester, *args):
    return pytester.runpytest_subprocess("-ra", "-p", "no:cacheprovider", *args, timeout=120)


def test_fixture_gives_each_test_a_fresh_runtime_and_shuts_it_down(project):
    project.makepyfile(
        """
        import asyncio
        import time

        import pytest
        from conftest import native_threads

        import tokio_runtime as tr

        seen = []


        @pytest.mark.asyncio
        async def test_operations_on_the_fixture_runtime(tokio_runtime):
            seen.append(tokio_runtime)
            assert isinstance(tokio_runtime, tr.Runtime)
            assert tokio_runtime is not tr.get_runtime()
            assert tokio_runtime.stats()["thread_name"] == "tokio-test"
            assert len(native_threads("tokio-test")) == 4  # loop, 2 workers, dispatcher
            assert await tokio_runtime.sleep(0.01, "done") == "done"
            assert await tokio_runtime.timeout(1.0, tokio_runtime.sleep(0.01, 7)) == 7
            ch = tr.Channel(2, runtime=tokio_runtime)
            consumer = asyncio.ensure_future(ch.recv())
            await asyncio.sleep(0)
            await ch.send("x")
            assert await consumer == "x"
            assert await tokio_runtime.spawn_background(3, 0.005) == 3
            assert tokio_runtime.stats()["pending"] == 0


        @pytest.mark.asyncio
        async def test_a_second_test_gets_another_runtime(tokio_runtime):
            assert seen and tokio_runtime is not seen[0]
            assert seen[0].closed
            seen.append(tokio_runtime)


        def test_every_fixture_runtime_was_shut_down():
            assert len(seen) == 2
            assert all(rt.closed and not rt.stats()["running"] for rt in seen)
            deadline = time.monotonic() + 5
            while native_threads("tokio-test") and time.monotonic() < deadline:
                time.sleep(0.01)  # a joined thread may linger in /proc a moment
            assert native_threads("tokio-test") == []
        """
    )
    result = run(project)
    result.assert_outcomes(passed=3)


def test_a_leaked_operation_fails_the_test_with_a_clear_message(project):
    project.makepyfile(
        """
        import pytest

        runtimes = []


        @pytest.mark.asyncio
        async def test_leaks_a_timer(tokio_runtime):
            runtimes.append(tokio_runtime)
            tokio_runtime.sleep(60)  # neither awaited nor cancelled


        @pytest.mark.asyncio
        async def test_leaks_a_background_task(tokio_runtime):
            runtimes.append(tokio_runtime)
            tokio_runtime.spawn_background(10**6, 0.01)


        def test_leaky_runtimes_were_shut_down_and_their_work_cancelled():
            assert len(runtimes) == 2
            for rt in runtimes:
                assert rt.closed
                stats = rt.stats()
                assert stats["pending"] == 0 and stats["cancelled"] >= 1
        """
    )
    result = run(project)
    result.assert_outcomes(failed=2, passed=1)  # failures of the tests, not teardown errors
    result.stdout.fnmatch_lines(
        [
            "*_ test_leaks_a_timer _*",
            "tokio_runtime: 1 native operation(s) still pending 1 s after the test returned "
            "(leaked: *); runtime counters: submitted=1, completed=0, cancelled=0",
            "*_ test_leaks_a_background_task _*",
            "tokio_runtime: 1 native operation(s) still pending 1 s after the test returned*",
            "FAILED *::test_leaks_a_timer*",
            "FAILED *::test_leaks_a_background_task*",
        ]
    )
    assert "ERROR" not in result.stdout.str()


def test_work_that_finishes_within_the_grace_period_passes(project):
    project.makepyfile(
        """
        import pytest


        @pytest.mark.asyncio
        async def test_not_awaited_but_finishing_soon(tokio_runtime):
            tokio_runtime.spawn_background(3, 0.05)  # done ~0.15 s after the body
            fut = tokio_runtime.sleep(0.2)
            assert not fut.done()
        """
    )
    run(project).assert_outcomes(passed=1)


def test_a_failing_body_is_reported_as_it_is(project):
    project.makepyfile(
        """
        import pytest


        @pytest.mark.asyncio
        async def test_fails(tokio_runtime):
            tokio_runtime.sleep(60)
            assert 1 + 1 == 3, "the body's own failure"
        """
    )
    result = run(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the body's own failure*"])
    assert "still pending" not in result.stdout.str()


def test_sessions_that_do_not_use_the_fixture_never_load_the_native_module(project):
    project.makepyfile(
        """
        import sys


        def test_nothing_native_was_loaded(request):
            assert "tokio_runtime.pytest_plugin" in sys.modules  # from the entry point
            assert request.config.pluginmanager.has_plugin("tokio_runtime")
            assert "tokio_runtime._native" not in sys.modules
            assert "tokio_runtime._runtime" not in sys.modules
        """
    )
    run(project).assert_outcomes(passed=1)


def test_the_package_loads_its_public_names_on_first_use():
    code = (
        "import sys, tokio_runtime as tr\n"
        "assert 'tokio_runtime._native' not in sys.modules\n"
        "lazy = set(tr._SOURCES) - {'_C_API'}\n"
        "assert sorted(lazy) == sorted(set(tr.__all__) - {'get_include'})\n"
        "assert tr.get_include().endswith('include')\n"
        "assert set(tr.__all__) <= set(dir(tr))\n"
        "values = [getattr(tr, name) for name in tr.__all__]\n"
        "assert all(v.__name__ == n for v, n in zip(values, tr.__all__))\n"
        "assert 'tokio_runtime._native' in sys.modules\n"
        "from tokio_runtime import *\n"
        "try:\n"
        "    tr.no_such_name\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "module 'tokio_runtime' has no attribute 'no_such_name'\n"


def test_the_readme_example_passes(project):
    blocks = re.findall(r"```python test_example\.py\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    project.makepyfile(test_example=blocks[0])
    run(project).assert_outcomes(passed=2)


# The plugin is active in this suite too: its fixture's runtime and the default
# runtime (checked after every test by tests/conftest.py) stay apart.
async def test_the_fixture_in_this_suite(tokio_runtime):
    assert tokio_runtime is not tr.get_runtime()
    ch = tr.Channel(1, runtime=tokio_runtime)
    await ch.send(await tokio_runtime.sleep(0.01, "ok"))
    assert await tokio_runtime.timeout(1.0, ch.recv()) == "ok"
