"""Concurrent ``Runtime.shutdown()`` calls: every caller returns only after
the runtime's threads are joined (issue 14, item 5).

Several threads (one of them running an asyncio or uvloop loop with an
operation pending) call ``shutdown()`` at the same moment, many times over.
When any of them returns, no thread named ``{thread_name}-{n}`` may be left
in the process (``/proc/self/task/*/comm``).  The dispatcher is a Python
thread: ``Thread.join()`` returns when it has finished running Python, a few
microseconds before its OS thread is gone from ``/proc``, so for it the test
asks ``threading`` whether it still runs.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
import uvloop

import tokio_runtime as tr

FACTORIES = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
REPETITIONS = 100
CALLERS = 4  # three plain threads and one loop thread
NAME = "cshut"
DISPATCHER = f"{NAME}-3"  # worker_threads=2: loop -0, workers -1 -2, dispatcher -3


def runtime_threads(prefix: str = NAME + "-") -> list[str]:
    """Names of this process's threads starting with ``prefix``."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        if name.startswith(prefix):
            names.append(name)
    if DISPATCHER in names and not any(t.name == DISPATCHER for t in threading.enumerate()):
        names.remove(DISPATCHER)  # joined: only its OS thread is still ending
    return names


def one_round(flavour: str, rep: int) -> list[tuple[int, str, list[str]]]:
    """Shut one runtime down from ``CALLERS`` threads at once; return the late calls."""
    assert runtime_threads() == []
    rt = tr.Runtime(worker_threads=2, thread_name=NAME)
    start = threading.Barrier(CALLERS)
    late: list[tuple[int, str, list[str]]] = []
    errors: list[BaseException] = []

    def call(who: str) -> None:
        start.wait()
        rt.shutdown()
        left = runtime_threads()
        if left:
            late.append((rep, who, left))

    def plain(who: str) -> None:
        try:
            call(who)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def on_a_loop() -> None:
        async def main() -> None:
            pending = rt.sleep(1000)
            call("loop")
            with pytest.raises(asyncio.CancelledError):
                await pending  # shutdown cancels it on this (running) loop

        loop = FACTORIES[flavour]()
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            errors.append(exc)
        finally:
            loop.close()

    threads = [threading.Thread(target=plain, args=(f"thread {i}",)) for i in range(CALLERS - 1)]
    threads.append(threading.Thread(target=on_a_loop))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert not errors, errors
    return late


@pytest.mark.parametrize("flavour", sorted(FACTORIES))
def test_concurrent_shutdown_calls_all_return_after_the_threads_are_joined(flavour):
    late = [call for rep in range(REPETITIONS) for call in one_round(flavour, rep)]
    assert not late, f"{len(late)} shutdown() calls returned with threads left: {late[:5]}"
