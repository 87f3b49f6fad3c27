"""Delivery into asyncio: coalesced batches, and C threads that never need the GIL."""

from __future__ import annotations

import asyncio
import time

from tokio_runtime import concurrent_tasks, shared_counter_demo, spawn_background, with_timeout


class CountingLoop(asyncio.SelectorEventLoop):
    """A stdlib loop that counts call_soon_threadsafe calls."""

    threadsafe_calls = 0

    def call_soon_threadsafe(self, *args, **kwargs):
        self.threadsafe_calls += 1
        return super().call_soon_threadsafe(*args, **kwargs)


def test_completions_are_delivered_in_coalesced_batches():
    loop = CountingLoop()
    try:

        async def burst():
            return await asyncio.gather(*(with_timeout(0, 1000) for _ in range(2000)))

        results = loop.run_until_complete(burst())
    finally:
        loop.close()
    assert results == ["Operation completed"] * 2000
    # One call per batch, not per completion (2000 would be one per result).
    assert 1 <= loop.threadsafe_calls <= 50


async def test_native_timers_keep_time_while_python_is_busy():
    ticker = spawn_background(50, 0.01)  # a libev timer: 50 ticks over 0.5 s
    sleeps = concurrent_tasks([f"u{i}" for i in range(4)])  # native timers, 100..250 ms
    counter = shared_counter_demo(10_000)  # increments on worker threads
    spin_until = time.monotonic() + 0.6
    x = 0
    while time.monotonic() < spin_until:  # hold the GIL in pure Python
        x += 1
    # Read from C while this loop never got to run: the ticker kept time.
    assert ticker.progress >= 45
    t0 = time.monotonic()
    assert await sleeps == [f"Fetched: u{i}" for i in range(4)]
    assert await counter == 10_000
    assert await ticker == 50
    # The native side finished during the spin: the results are already queued.
    assert time.monotonic() - t0 < 0.15
