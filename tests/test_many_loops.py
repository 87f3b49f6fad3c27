"""Eight threads, each with its own event loop, 10,000 mixed operations each,
all at once on the default runtime: every result is the right one.

Half the loops are stdlib asyncio, half uvloop.  Besides per-loop work
(sleeps, timeouts, a private channel, the seed functions) the loops share a
channel, whose items must each arrive exactly once somewhere, and a mutex,
whose holders must never overlap.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

from conftest import LOOP_FACTORIES, wait_for_pending
from helpers import JOIN, Noise, Worker, stats, wait_until

import tokio_runtime as tr

THREADS = 8
OPS_PER_THREAD = 10_000
BATCH = 250  # operations gathered at once
SHARED_PER_BATCH = 10  # items each loop sends into, and takes from, the shared channel


def test_eight_loops_in_eight_threads_at_once():
    shared: tr.Channel[tuple[int, int]] = tr.Channel(64)
    lock = tr.Mutex()
    holders = [0]
    overlaps = []
    start = threading.Barrier(THREADS)

    async def locked_step(t):
        async with lock:
            holders[0] += 1
            if holders[0] != 1:
                overlaps.append(t)
            await tr.sleep(0)  # hold it across a native round trip
            holders[0] -= 1
        return "locked"

    async def run(t):
        rng = random.Random(t)
        own: tr.Channel[int] = tr.Channel(8)
        received = []
        done = 0
        seq = 0
        while done < OPS_PER_THREAD:
            calls, expected = [], []

            def add(aw, want, calls=calls, expected=expected):
                calls.append(aw)
                expected.append(want)

            for i in range(BATCH - 2 * SHARED_PER_BATCH):
                k = rng.randrange(10)
                v = (t, seq, i)
                if k < 3:
                    add(tr.sleep(0, v), v)
                elif k == 3:
                    add(tr.sleep(rng.choice((1e-5, 1e-4, 1e-3)), v), v)
                elif k == 4:
                    add(tr.timeout(5, tr.sleep(0, v)), v)
                elif k == 5:
                    add(tr.timeout(0, tr.sleep(5)), TimeoutError)
                elif k == 6:
                    add(own.send(v), None)
                    add(own.recv(), v)  # FIFO, one loop: its own item back
                elif k == 7:
                    add(locked_step(t), "locked")
                elif k == 8:
                    add(tr.with_timeout(0, 10), "Operation completed")
                else:
                    n = rng.randrange(1, 50)
                    add(tr.shared_counter_demo(n), n)
            for j in range(SHARED_PER_BATCH):
                add(shared.send((t, seq * SHARED_PER_BATCH + j)), None)
                add(shared.recv(), "shared")
            seq += 1
            results = await asyncio.gather(*calls, return_exceptions=True)
            for got, want in zip(results, expected):
                if want is TimeoutError:
                    assert isinstance(got, TimeoutError), got
                elif want == "shared":
                    assert isinstance(got, tuple), got
                    received.append(got)
                else:
                    assert got == want, (got, want)
            done += len(calls)
        assert await tr.channel_demo(3) == ["Message 0", "Message 1", "Message 2"]
        return done + 1, received

    def thread_main(t, noise):
        loop = list(LOOP_FACTORIES.values())[t % 2]()
        loop.set_exception_handler(noise.handler)
        try:
            start.wait(JOIN)
            return loop.run_until_complete(run(t))
        finally:
            loop.close()

    with Noise() as noise:
        workers = [Worker(thread_main, t, noise, name=f"loop-{t}") for t in range(THREADS)]
        t0 = time.monotonic()
        for w in workers:
            w.start()
        outcomes = [w.finish(120) for w in workers]
        elapsed = time.monotonic() - t0
    assert noise.errors == []
    total = sum(done for done, _ in outcomes)
    assert all(done >= OPS_PER_THREAD for done, _ in outcomes)
    # The shared channel: every item sent by any loop arrived exactly once.
    received = sorted(item for _, got in outcomes for item in got)
    sent_per_thread = len(received) // THREADS
    assert received == sorted((t, k) for t in range(THREADS) for k in range(sent_per_thread))
    assert len(shared) == 0
    assert overlaps == []
    assert not lock.locked()
    assert wait_for_pending(0) == 0
    # Records for the closed loops' ports are dropped by the sweep, which
    # frees the last op structs.
    wait_until(lambda: stats()["waiters"] == stats()["live_ops"] == 0, what="every op struct freed")
    print(f"{total} operations on {THREADS} loops in {elapsed:.2f} s ({total / elapsed:,.0f}/s)")
