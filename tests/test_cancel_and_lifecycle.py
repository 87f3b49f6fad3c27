"""Cancellation reaches native children; closed loops, threads and exit are safe."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import wait_for_pending
from helpers import native_threads

from tokio_runtime import (
    channel_demo,
    concurrent_tasks,
    shared_counter_demo,
    spawn_background_task,
    with_timeout,
)
from tokio_runtime._default import get_runtime


def stats():
    return get_runtime().stats()


# ---- cancellation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "native_ops"),
    [
        # 40 native sleeps under one gather; the last would take 2.05 s
        (lambda: concurrent_tasks([f"u{i}" for i in range(40)]), {40}),
        # producer + consumer tasks; the producer is in a native 10 ms sleep,
        # or between two (its record just delivered), when the cancel lands
        (lambda: channel_demo(300), {0, 1}),
        (lambda: with_timeout(5000, 10000), {1}),
    ],
    ids=["concurrent_tasks", "channel_demo", "with_timeout"],
)
async def test_cancel_stops_native_children_at_once(make, native_ops):
    before = stats()["cancelled"]
    fut = make()
    await asyncio.sleep(0.05)
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
    # The children would run for seconds; cancelled, they are gone at once.
    assert wait_for_pending(0, timeout=1.0) == 0
    assert stats()["cancelled"] - before in native_ops


async def test_cancel_shared_counter_with_work_in_flight():
    before = stats()["cancelled"]
    for _ in range(5):
        fut = shared_counter_demo(200_000)
        await asyncio.sleep(0.001 * _)  # cancel before, during and after the timers fire
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
    assert wait_for_pending(0, timeout=5.0) == 0
    s = stats()
    assert before < s["cancelled"] <= before + 5


async def test_cancel_through_a_task_and_wait_for():
    task = asyncio.ensure_future(channel_demo(500))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(asyncio.TimeoutError):  # TimeoutError since 3.11
        await asyncio.wait_for(concurrent_tasks(["a"] * 30), timeout=0.05)
    assert wait_for_pending(0, timeout=1.0) == 0


async def test_cancel_vs_complete_race_is_quiet():
    """Cancel operations at about the moment they finish: no noise, no leak."""
    loop = asyncio.get_running_loop()
    errors = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        for round_ in range(20):
            futs = [with_timeout(0, 1000) for _ in range(200)]
            if round_ % 2:
                await asyncio.sleep(0)
            for f in futs[::2]:
                f.cancel()
            results = await asyncio.gather(*futs, return_exceptions=True)
            for r in results:
                assert r == "Operation completed" or isinstance(r, asyncio.CancelledError)
    finally:
        loop.set_exception_handler(None)
    assert errors == []
    assert wait_for_pending(0) == 0


async def test_gather_cancellation_cancels_every_native_op():
    gathered = asyncio.gather(
        channel_demo(400), concurrent_tasks(["x"] * 50), with_timeout(9000, 9000)
    )
    await asyncio.sleep(0.03)
    gathered.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gathered
    assert wait_for_pending(0, timeout=1.0) == 0


# ---- closed loops, several loops, several threads ---------------------------------


def test_results_for_a_closed_loop_are_dropped_quietly(capfd):
    async def leave_work_behind():
        for _ in range(100):
            with_timeout(100, 1000)
            channel_demo(50)
        await spawn_background_task(100, 5)

    asyncio.run(leave_work_behind())  # closes the loop with all of it in flight
    assert wait_for_pending(0, timeout=2.0) == 0
    out, err = capfd.readouterr()
    assert err == ""
    assert "Event loop is closed" not in out
    # The runtime keeps serving the next loop.
    assert asyncio.run(_counter(5)) == 5


async def _counter(n):
    return await shared_counter_demo(n)


async def _mixed_workload(i):
    results = await asyncio.gather(
        shared_counter_demo(100 + i),
        channel_demo(3),
        with_timeout(10, 500),
        concurrent_tasks([f"t{i}"]),
    )
    assert results == [
        100 + i,
        ["Message 0", "Message 1", "Message 2"],
        "Operation completed",
        [f"Fetched: t{i}"],
    ]
    with pytest.raises(TimeoutError):
        await with_timeout(500, 10)
    return i


def test_several_loops_in_several_threads():
    results = {}
    errors = []

    def run(i):
        try:
            results[i] = asyncio.run(_mixed_workload(i))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert results == {i: i for i in range(8)}


def test_uvloop_and_asyncio_loops_side_by_side():
    import uvloop

    out = []

    def run(factory):
        loop = factory()
        try:
            out.append(loop.run_until_complete(_mixed_workload(1)))
        finally:
            loop.close()

    threads = [
        threading.Thread(target=run, args=(f,))
        for f in (asyncio.new_event_loop, uvloop.new_event_loop) * 2
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert out == [1, 1, 1, 1]


def test_runtime_threads_are_named():
    rt = get_runtime()
    names = set(native_threads(""))
    expected = {f"{rt.thread_name}-{n}"[:15] for n in range(rt.worker_threads + 2)}
    assert expected <= names


# ---- interpreter exit -------------------------------------------------------------

EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import tokio_runtime as tr

    async def main():
        await tr.spawn_background_task(1000, 1)
        keep = [tr.channel_demo(500), tr.concurrent_tasks(["a"] * 100),
                tr.shared_counter_demo(200_000), tr.with_timeout(60_000, 60_000)]
        await asyncio.sleep(0.02)
        print("exiting", flush=True)
        if sys.argv[1] == "sys.exit":
            sys.exit(0)
        return keep

    if sys.argv[1] == "no-await":
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())   # loop left open, work in flight
    else:
        asyncio.run(main())
    """
)


@pytest.mark.parametrize("mode", ["asyncio.run", "sys.exit", "no-await"])
def test_process_exits_cleanly_with_work_in_flight(mode):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", EXIT_SCRIPT, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for p in procs:
        t0 = time.monotonic()
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert "exiting" in out
        assert "Fatal" not in err and "Traceback" not in err, err
        assert err == ""
        assert time.monotonic() - t0 < 10


def test_module_demo_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "tokio_runtime"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "Spawned background task with 3 iterations" in lines[0]
    assert any("Fetched: " in line for line in lines)
    assert any(line.endswith("-> 10") for line in lines)
    assert any("Operation completed" in line for line in lines)
    assert any(
        "Operation timed out after 100ms (operation would take 200ms)" in line for line in lines
    )
    assert "['Message 0', 'Message 1', 'Message 2', 'Message 3', 'Message 4']" in lines[-1]
    ticks = [line for line in lines if line.startswith("Background task iteration")]
    assert ticks == [f"Background task iteration: {i}/3" for i in (1, 2, 3)]
    assert proc.stderr == ""


ATEXIT_SCRIPT = textwrap.dedent(
    """
    import atexit, asyncio, os, time

    def count_runtime_threads():
        # Registered before tokio_runtime is imported, so it runs after the
        # package's own atexit hook (atexit is last-in, first-out).  Polls a
        # moment: the joined dispatcher's OS thread leaves /proc just after
        # Thread.join returns; an unjoined thread would stay.
        deadline = time.monotonic() + 2.0
        while True:
            names = []
            for tid in os.listdir("/proc/self/task"):
                try:
                    with open(f"/proc/self/task/{tid}/comm") as f:
                        names.append(f.read().strip())
                except OSError:  # exited meanwhile
                    pass
            left = sum(n.startswith("tokio-runtime") for n in names)
            if left == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        print("runtime threads at exit:", left)

    atexit.register(count_runtime_threads)
    import tokio_runtime as tr

    async def main():
        await tr.spawn_background_task(1000, 1)
        tr.shared_counter_demo(100_000)
        await asyncio.sleep(0.01)
        print("runtime threads while running:", sum(
            open(f"/proc/self/task/{t}/comm").read().startswith("tokio-runtime")
            for t in os.listdir("/proc/self/task")))

    asyncio.run(main())
    """
)


def test_atexit_hook_joins_every_native_thread():
    proc = subprocess.run(
        [sys.executable, "-c", ATEXIT_SCRIPT], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    running = get_runtime().worker_threads + 2  # workers + libev loop + dispatcher
    assert f"runtime threads while running: {running}" in proc.stdout
    assert "runtime threads at exit: 0" in proc.stdout
    assert proc.stderr == ""
