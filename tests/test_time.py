"""sleep() and timeout(): native timers, deadlines, and what cancellation does."""

from __future__ import annotations

import asyncio
import math
import time
import warnings

import pytest
from conftest import wait_for_pending

import tokio_runtime
from tokio_runtime import Channel, Runtime, get_runtime, sleep, timeout

BAD_SECONDS = [
    (-1, ValueError),
    (-0.001, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (-math.inf, ValueError),
    (1e10, ValueError),
    (10**30, ValueError),
    ("1", TypeError),
    (None, TypeError),
    (True, TypeError),
    ([1], TypeError),
]


def pending() -> int:
    return get_runtime().stats()["pending"]


# ---- sleep ----------------------------------------------------------------------


async def test_sleep_returns_result_after_the_delay():
    t0 = time.monotonic()
    assert await sleep(0.05) is None
    assert await sleep(0.01, result="done") == "done"
    obj = object()
    assert await sleep(0, obj) is obj
    assert time.monotonic() - t0 >= 0.055


async def test_sleep_returns_a_future_of_the_running_loop():
    fut = sleep(0)
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is asyncio.get_running_loop()
    await fut


async def test_sleeps_run_concurrently():
    t0 = time.monotonic()
    results = await asyncio.gather(*(sleep(0.1, i) for i in range(100)))
    assert results == list(range(100))
    assert time.monotonic() - t0 < 1.0  # one at a time would take 10 s


async def test_sleep_accepts_ints_floats_and_real_numbers():
    import fractions

    await sleep(0)
    await sleep(0.0)
    await sleep(fractions.Fraction(1, 1000))


@pytest.mark.parametrize(("value", "error"), BAD_SECONDS)
async def test_sleep_rejects_bad_seconds_at_call_time(value, error):
    with pytest.raises(error):
        sleep(value)
    assert await sleep(0, "still works") == "still works"


def test_sleep_needs_a_running_loop():
    with pytest.raises(RuntimeError, match="no running event loop"):
        sleep(0.1)


async def test_cancelling_a_sleep_stops_the_native_timer():
    fut = sleep(30)
    await asyncio.sleep(0.01)
    assert pending() >= 1
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
    assert wait_for_pending(0, timeout=1.0) == 0


# ---- timeout ----------------------------------------------------------------------


async def test_timeout_returns_the_result_when_in_time():
    assert await timeout(1.0, sleep(0.01, "fast")) == "fast"

    async def work():
        await asyncio.sleep(0.01)
        return 42

    assert await timeout(1.0, work()) == 42
    # A plain asyncio future works too.
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.01, fut.set_result, "future")
    assert await timeout(1.0, fut) == "future"


async def test_timeout_leaves_no_native_timer_behind_on_success():
    for _ in range(50):
        await timeout(60.0, sleep(0))
    # The deadlines (60 s each) were stopped in C, not left to run out.
    assert wait_for_pending(0, timeout=1.0) == 0


async def test_timeout_raises_builtin_timeout_error():
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await timeout(0.05, asyncio.sleep(10))
    assert 0.04 <= time.monotonic() - t0 < 2.0


async def test_timeout_cancels_a_native_sleep_in_c():
    before = get_runtime().stats()["cancelled"]
    with pytest.raises(TimeoutError):
        await timeout(0.02, sleep(60))
    # The 60 s timer is stopped in C: pending is back to 0 at once.
    assert wait_for_pending(0, timeout=1.0) == 0
    assert get_runtime().stats()["cancelled"] >= before + 1


async def test_timeout_cancels_and_awaits_the_inner_coroutine():
    events = []

    async def inner():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            events.append("cancelled")
            await asyncio.sleep(0.01)  # cleanup that takes a moment
            events.append("cleaned up")
            raise

    with pytest.raises(TimeoutError):
        await timeout(0.02, inner())
    assert events == ["cancelled", "cleaned up"]


async def test_timeout_around_channel_recv_never_swallows_an_item():
    ch: Channel[int] = Channel(4)
    with pytest.raises(TimeoutError):
        await timeout(0.01, ch.recv())
    ch.try_send(1)
    assert await timeout(1.0, ch.recv()) == 1


async def test_outer_cancellation_is_not_turned_into_timeout():
    task = asyncio.ensure_future(timeout(10.0, sleep(10)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_for_pending(0, timeout=1.0) == 0


async def test_inner_result_wins_when_it_swallows_the_deadline_cancel():
    async def stubborn():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "kept"

    assert await timeout(0.01, stubborn()) == "kept"
    # The task is not left half-cancelled: it can go on awaiting.
    await asyncio.sleep(0)
    task = asyncio.current_task()
    assert task is not None
    if hasattr(task, "cancelling"):
        assert task.cancelling() == 0


async def test_inner_exception_propagates():
    async def boom():
        raise KeyError("inner")

    with pytest.raises(KeyError, match="inner"):
        await timeout(1.0, boom())


async def test_nested_timeouts_fire_the_right_one():
    with pytest.raises(TimeoutError):
        await timeout(1.0, timeout(0.01, asyncio.sleep(10)))

    async def outer_fires():
        return await timeout(5.0, asyncio.sleep(10))

    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await timeout(0.02, outer_fires())
    assert time.monotonic() - t0 < 2.0


async def test_many_timeouts_in_flight():
    async def one(i):
        try:
            return await timeout(0.05 if i % 2 else 5.0, sleep(0.01 if i % 2 == 0 else 5.0, i))
        except TimeoutError:
            return -1

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert results == [i if i % 2 == 0 else -1 for i in range(200)]
    assert wait_for_pending(0, timeout=1.0) == 0


@pytest.mark.parametrize(("value", "error"), BAD_SECONDS)
async def test_timeout_rejects_bad_seconds_at_call_time_and_closes_the_coroutine(value, error):
    coro = asyncio.sleep(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would fail here
        with pytest.raises(error):
            timeout(value, coro)
        assert coro.cr_frame is None  # closed


async def test_timeout_rejects_non_awaitables():
    with pytest.raises(TypeError, match="awaitable"):
        timeout(1.0, 42)
    with pytest.raises(TypeError, match="awaitable"):
        timeout(1.0, lambda: None)


def test_timeout_outside_a_task_raises():
    aw = timeout(1.0, asyncio.sleep(0))
    with pytest.raises(RuntimeError):
        aw.send(None)  # driven by hand: no loop, no task
    aw.close()


async def test_module_and_runtime_forms_are_the_same():
    rt = get_runtime()
    assert await rt.sleep(0, 1) == 1
    assert await rt.timeout(1.0, rt.sleep(0, 2)) == 2
    assert tokio_runtime.sleep is sleep


def _voluntary_switches(thread_name: str) -> int:
    import os

    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() != thread_name:
                    continue
            with open(f"/proc/self/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except OSError:  # exited meanwhile
            continue
    return total


async def test_a_burst_of_submissions_wakes_the_runtime_loop_thread_once_per_turn():
    rt = Runtime(worker_threads=1, thread_name="tr-burst")
    try:
        await rt.sleep(0)  # ports and threads set up
        before = _voluntary_switches("tr-burst-0")
        for _ in range(5):
            await asyncio.gather(*[rt.sleep(0) for _ in range(2_000)])
        woke = _voluntary_switches("tr-burst-0") - before
        # One wake-up per turn of the asyncio loop, not per op: 10,000 ops
        # used to cost thousands of wake-ups of the libev thread.
        assert woke < 500, woke
    finally:
        rt.shutdown()


async def test_sleeps_never_end_early_even_when_started_late():
    """A deadline counts from the call: whether the runtime's loop thread was
    busy (firing thousands of other timers) or the asyncio loop did not get
    round to waking it, no sleep ends before its time."""
    delay = 0.05
    elapsed = []

    async def one(i):
        t0 = time.perf_counter()
        await sleep(delay if i % 2 else delay * 2)
        elapsed.append((time.perf_counter() - t0, delay if i % 2 else delay * 2))

    async def busy_start(i):
        x = 0
        for _ in range(2_000):  # hold the loop a moment before each sleep
            x += 1
        await one(i)

    await asyncio.gather(*[busy_start(i) for i in range(3_000)])
    early = [(e, d) for e, d in elapsed if e < d - 50e-6]
    assert not early, f"{len(early)} of {len(elapsed)} sleeps ended early, e.g. {early[:3]}"
