"""A slow on_tick must not starve its loop (issue 14, item 3).

A ticker whose ``on_tick`` is slower than its interval falls behind; its
backlog is delivered in order, a slice per loop turn, so other callbacks and
Ctrl-C still get their turn.  Public API only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import tokio_runtime as tr


def busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _heartbeat_lateness(seconds: float) -> list[float]:
    late = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await asyncio.sleep(0.01)
        late.append(time.perf_counter() - t0 - 0.01)
    return late


async def _cancel_and_wait(handle):
    handle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handle


async def test_a_slow_on_tick_does_not_starve_a_heartbeat():
    seen = []

    def on_tick(i):
        seen.append(i)
        busy_wait(0.002)  # twice the interval: the ticker falls behind

    handle = tr.spawn_background(10_000, 0.001, on_tick=on_tick)
    late = await _heartbeat_lateness(0.6)
    await _cancel_and_wait(handle)
    # Before: one drain delivered the growing backlog in one callback and
    # the heartbeat was 0.3-2.7 s late (a handful of beats in 0.6 s).
    assert max(late) < 0.1, (len(late), max(late))
    assert len(late) >= 15
    assert seen == list(range(1, len(seen) + 1))
    assert 50 <= len(seen) < handle.progress  # it did fall behind


async def test_a_backlog_is_delivered_in_order_and_then_the_task_ends():
    seen = []
    handle = tr.spawn_background(300, 0.0005, on_tick=lambda i: (seen.append(i), busy_wait(0.001)))
    beats = asyncio.ensure_future(_heartbeat_lateness(0.3))
    got = [i async for i in handle.ticks()]
    assert await handle == 300
    assert got == seen == list(range(1, 301))
    late = await beats
    assert max(late) < 0.1, max(late)


async def test_a_backlog_of_a_blocked_loop_is_spread_over_turns():
    seen = []
    handle = tr.spawn_background(2_000, 0, on_tick=lambda i: (seen.append(i), busy_wait(0.0005)))
    time.sleep(0.2)  # the ticker finishes natively meanwhile: 2,000 iterations queued
    assert handle.progress == 2_000
    t0 = time.perf_counter()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    # A couple of turns later only a slice of the ~1 s backlog was delivered
    # (it was all delivered in the first of them before).
    assert len(seen) < 1_000, (len(seen), time.perf_counter() - t0)
    assert await handle == 2_000
    assert seen == list(range(1, 2_001))


async def test_cancel_stops_on_tick_promptly_despite_a_backlog():
    seen = []
    handle = tr.spawn_background(
        10**6, 0.0001, on_tick=lambda i: (seen.append(i), busy_wait(0.001))
    )
    time.sleep(0.1)  # thousands of iterations queued
    await asyncio.sleep(0.02)
    assert handle.cancel() is True
    stopped_at = len(seen)
    with pytest.raises(asyncio.CancelledError):
        await handle
    assert len(seen) == stopped_at < handle.progress
    assert seen == list(range(1, stopped_at + 1))
    assert [i async for i in handle.ticks()] == seen


async def test_cancel_from_on_tick_stops_the_backlog():
    seen = []
    handle = None

    def on_tick(i):
        seen.append(i)
        if i == 3:
            handle.cancel()

    handle = tr.spawn_background(10**6, 0.0001, on_tick=on_tick)
    time.sleep(0.05)  # a backlog of many iterations, delivered in one slice
    with pytest.raises(asyncio.CancelledError):
        await handle
    assert seen == [1, 2, 3]


async def test_a_long_queue_is_drained_over_several_turns():
    futs = [tr.sleep(0, i) for i in range(5_000)]
    await asyncio.sleep(0)  # submitted: the timers fire at once
    time.sleep(0.2)  # all 5,000 results queue up, their drain is scheduled
    done_then = []
    asyncio.get_running_loop().call_soon(lambda: done_then.append(sum(f.done() for f in futs)))
    assert await asyncio.gather(*futs) == list(range(5_000))
    # The first drain delivered a bounded batch, then let this callback run
    # (before, it delivered all 5,000 in one callback).
    assert done_then and done_then[0] < 5_000


CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    import uvloop
    import tokio_runtime as tr

    if sys.argv[1] == "uvloop":
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    def on_tick(i):
        if i == 1:
            print("ticking", flush=True)
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass

    async def main():
        await tr.spawn_background(10**6, 0.001, on_tick=on_tick)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_ctrl_c_ends_asyncio_run_with_a_slow_on_tick(flavour):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, flavour],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ticking\n"
        time.sleep(0.3)  # a backlog builds up
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("Ctrl-C did not end asyncio.run within 10 s")
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3, err
    assert out == "interrupted\n"
    assert elapsed < 5, elapsed
