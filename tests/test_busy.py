"""Native timers keep time while the asyncio thread is busy in pure Python.

The loop thread spins for 0.5 s without yielding.  Read from inside the spin,
a 50 x 10 ms ticker's progress climbs to about 50 and a counter demo's native
tasks complete in C (the runtime's ``completed`` counter), while nothing is
delivered to Python (no ``on_tick`` call, no future done) until the loop runs
again.  So the C side never waits for the GIL, nor for the loop.

Sleeps are different by design: the ops one asyncio turn submits reach the
runtime's loop thread together, at the end of the turn (one wake-up instead
of one per op), so sleeps submitted just before the spin start after it.
Their deadlines count from the call, though: overdue by then, they end at
once, in order.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from helpers import stats

import tokio_runtime as tr

SPIN = 0.5


def spin(seconds, probe, every=0.01):
    """Hold the thread in pure Python for ``seconds``; call ``probe()`` every
    ``every`` seconds and return what it gave, with the time since the start."""
    t0 = time.monotonic()
    end = t0 + seconds
    next_probe = t0
    seen = []
    x = 0
    while (now := time.monotonic()) < end:
        x += 1  # pure Python work
        if now >= next_probe:
            seen.append((now - t0, probe()))
            next_probe = now + every
    return seen


@pytest.mark.parametrize("switch_interval", [None, 1.0], ids=["default", "gil-1s"])
async def test_native_timers_keep_time_during_a_python_spin(switch_interval):
    ticks = []
    handle = tr.spawn_background(50, 0.01, on_tick=ticks.append)
    sleeps = [tr.sleep(0.05 * (i + 1), i) for i in range(5)]  # due during the spin
    completed_before = stats()["completed"]
    counter = tr.shared_counter_demo(1_000)  # started at once: 1,000 tasks of 10 ms
    old = sys.getswitchinterval()
    if switch_interval is not None:
        # Other Python threads (the dispatcher) get the GIL only when this one
        # lets it go: the C side must not care.
        sys.setswitchinterval(switch_interval)
    try:
        seen = spin(SPIN, lambda: (handle.progress, stats()["completed"]))
    finally:
        sys.setswitchinterval(old)
    # Inside the spin: the ticker kept time ...
    progress = [p for _, (p, _) in seen]
    print(f"progress during the spin: {progress[::10]} (max {max(progress)})")
    assert max(progress) >= 40, seen[-5:]
    assert progress == sorted(progress)
    # ... from early on, not in one jump at the end
    assert any(p >= 20 for t, (p, _) in seen if t < SPIN * 0.6), seen
    assert len(set(progress)) >= 20
    # ... and the counter demo completed in C.
    assert max(c for _, (_, c) in seen) > completed_before
    # Nothing reached Python while the loop was busy.
    assert ticks == []
    assert not any(f.done() for f in sleeps) and not counter.done()
    # Once the loop runs, everything is delivered, in order; the sleeps were
    # overdue (their deadlines count from the call), so they end at once.
    t0 = time.monotonic()
    assert await asyncio.gather(*sleeps) == list(range(5))
    assert time.monotonic() - t0 < 0.2
    assert await counter == 1_000
    assert await handle == 50
    assert ticks == list(range(1, 51))


def test_progress_keeps_counting_while_another_thread_holds_the_gil():
    """The loop thread is idle but a plain thread spins: progress is read
    from that thread, and the loop still gets every tick afterwards."""

    async def main():
        ticks = []
        handle = tr.spawn_background(50, 0.01, on_tick=ticks.append)
        loop = asyncio.get_running_loop()
        seen = await loop.run_in_executor(None, spin, SPIN, lambda: handle.progress)
        assert max(p for _, p in seen) >= 40, seen[-5:]
        assert await handle == 50
        return ticks

    assert asyncio.run(main()) == list(range(1, 51))
