"""Delivery into asyncio: coalesced batches, and C threads that never need the GIL."""

from __future__ import annotations

import asyncio
import time

from tokio_runtime import channel_demo, shared_counter_demo, with_timeout


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
    fut = channel_demo(20)  # 20 producer sleeps of 10 ms, timed by libev
    counter = shared_counter_demo(10_000)  # increments on worker threads
    spin_until = time.monotonic() + 0.4
    x = 0
    while time.monotonic() < spin_until:  # hold the GIL in pure Python
        x += 1
    t0 = time.monotonic()
    messages = await fut
    assert await counter == 10_000
    # The native side finished during the spin: the result is already queued.
    assert time.monotonic() - t0 < 0.15
    assert messages == [f"Message {i}" for i in range(20)]
