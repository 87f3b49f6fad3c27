"""spawn_background() and TaskHandle: a detached native ticker and its handle."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest
from conftest import wait_for_pending

from tokio_runtime import TaskHandle, get_runtime, spawn_background


async def test_await_gives_the_iterations_and_on_tick_sees_each_in_order():
    seen = []
    handle = spawn_background(20, 0.001, on_tick=seen.append)
    assert isinstance(handle, TaskHandle)
    assert handle.count == 20
    assert await handle == 20
    assert seen == list(range(1, 21))
    assert handle.done() and not handle.cancelled()
    assert handle.progress == 20
    assert "finished" in repr(handle)


async def test_on_tick_runs_on_the_spawning_loop_thread():
    threads = set()
    await spawn_background(5, 0, on_tick=lambda i: threads.add(threading.get_ident()))
    assert threads == {threading.get_ident()}


async def test_zero_iterations_finish_at_once():
    seen = []
    handle = spawn_background(0, 10.0, on_tick=seen.append)
    assert await handle == 0
    assert seen == []


async def test_interval_is_kept():
    t0 = time.monotonic()
    await spawn_background(5, 0.02)
    assert 0.09 <= time.monotonic() - t0 < 2.0


async def test_ticks_iterates_every_iteration_then_ends():
    handle = spawn_background(30, 0.001)
    assert [i async for i in handle.ticks()] == list(range(1, 31))
    # A second iterator, after the end, replays them and ends at once.
    assert [i async for i in handle.ticks()] == list(range(1, 31))


async def test_two_iterators_at_once_each_see_everything():
    handle = spawn_background(15, 0.002)

    async def collect():
        return [i async for i in handle.ticks()]

    a, b = await asyncio.gather(collect(), collect())
    assert a == b == list(range(1, 16))


async def test_cancel_from_the_loop():
    seen = []
    handle = spawn_background(1000, 0.005, on_tick=seen.append)
    await asyncio.sleep(0.05)
    assert handle.cancel() is True
    with pytest.raises(asyncio.CancelledError):
        await handle
    assert handle.done() and handle.cancelled()
    assert handle.cancel() is False
    stopped_at = handle.progress
    assert 1 <= stopped_at < 1000
    await asyncio.sleep(0.05)
    assert handle.progress == stopped_at  # the timer really stopped
    assert seen == list(range(1, len(seen) + 1))
    assert wait_for_pending(0, timeout=1.0) == 0


async def test_cancel_ends_ticks_iteration():
    handle = spawn_background(1000, 0.002)
    got = []

    async def collect():
        async for i in handle.ticks():
            got.append(i)
            if i == 5:
                handle.cancel()

    await asyncio.wait_for(collect(), 5.0)
    assert got[:5] == [1, 2, 3, 4, 5]
    assert handle.cancelled()


async def test_cancel_and_progress_from_another_thread():
    handle = spawn_background(10_000, 0.001)
    seen_progress = []

    def other():
        time.sleep(0.05)
        seen_progress.append(handle.progress)
        handle.cancel()

    t = threading.Thread(target=other)
    t.start()
    with pytest.raises(asyncio.CancelledError):
        await handle
    t.join()
    assert seen_progress[0] >= 1
    assert handle.cancelled()


async def test_awaiting_is_shielded_the_task_is_detached():
    handle = spawn_background(10, 0.01)
    waiter = asyncio.ensure_future(_await(handle))
    await asyncio.sleep(0.02)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # The background task itself runs on.
    assert not handle.cancelled()
    assert await handle == 10


async def _await(handle):
    return await handle


async def test_on_tick_exception_is_reported_and_the_task_goes_on():
    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda loop, ctx: reported.append(ctx))

    def tick(i):
        if i == 2:
            raise ValueError("tick 2")

    try:
        assert await spawn_background(4, 0.001, on_tick=tick) == 4
    finally:
        loop.set_exception_handler(None)
    assert len(reported) == 1
    assert isinstance(reported[0]["exception"], ValueError)


async def test_progress_counts_while_the_loop_is_busy():
    handle = spawn_background(50, 0.01)
    spin_until = time.monotonic() + 0.6
    while time.monotonic() < spin_until:
        pass  # hold the GIL in pure Python: nothing is delivered meanwhile
    assert handle.progress >= 45
    assert await handle == 50


def test_spawning_loop_closes_first():
    """The task is cancelled in C once its loop is found closed."""
    seen = []

    async def start():
        return spawn_background(10_000, 0.002, on_tick=seen.append)

    loop = asyncio.new_event_loop()
    handle = loop.run_until_complete(start())
    loop.run_until_complete(asyncio.sleep(0.03))
    loop.close()
    ticks_at_close = len(seen)
    deadline = time.monotonic() + 2.0
    while not handle.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handle.done() and handle.cancelled()
    stopped = handle.progress
    time.sleep(0.05)
    assert handle.progress == stopped < 10_000
    assert len(seen) == ticks_at_close  # nothing delivered to the closed loop
    assert wait_for_pending(0, timeout=1.0) == 0


def test_shutdown_cancels_background_tasks():
    rt_ = get_runtime()
    from tokio_runtime import Runtime

    rt = Runtime(worker_threads=1)

    async def main():
        handle = rt.spawn_background(10_000, 0.001)
        await asyncio.sleep(0.02)
        rt.shutdown()
        with pytest.raises(asyncio.CancelledError):
            await handle
        return handle

    handle = asyncio.run(main())
    assert handle.cancelled()
    assert rt.stats()["pending"] == 0
    assert rt_.stats()["running"]


@pytest.mark.parametrize(
    ("count", "interval", "on_tick", "error"),
    [
        (-1, 0.1, None, ValueError),
        (2**63, 0.1, None, ValueError),
        (1.5, 0.1, None, TypeError),
        ("3", 0.1, None, TypeError),
        (None, 0.1, None, TypeError),
        (True, 0.1, None, TypeError),
        (3, -0.1, None, ValueError),
        (3, math.nan, None, ValueError),
        (3, math.inf, None, ValueError),
        (3, "0.1", None, TypeError),
        (3, 0.1, "print", TypeError),
        (3, 0.1, 42, TypeError),
    ],
)
async def test_bad_input_raises_at_call_time(count, interval, on_tick, error):
    with pytest.raises(error):
        spawn_background(count, interval, on_tick)
    assert await spawn_background(1, 0) == 1  # still works


def test_needs_a_running_loop():
    with pytest.raises(RuntimeError, match="no running event loop"):
        spawn_background(1, 0.1)


async def test_ticks_on_another_loop_is_refused():
    handle = spawn_background(3, 0.001)

    def other_loop():
        async def consume():
            return [i async for i in handle.ticks()]

        return asyncio.run(consume())

    with pytest.raises(RuntimeError, match="loop that spawned"):
        await asyncio.get_running_loop().run_in_executor(None, other_loop)
    assert await handle == 3
