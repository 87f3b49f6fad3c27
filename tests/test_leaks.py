"""A million operations leave nothing behind.

100 batches of 10,000 operations (half on a stdlib asyncio loop, half on
uvloop), each batch one ``gather``: native sleeps, timeouts, mutex
acquisitions, channel sends and receives, seed functions, tickers.  After a
warm-up batch, the process's resident memory may grow by less than 20 MiB,
the number of Python objects the collector tracks must not grow with the
operation count, and the native counters (pending operations, live op
structs, waiters, ports) must return to where they started.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

from conftest import LOOP_FACTORIES, wait_for_pending
from helpers import rss_bytes, stats, wait_until

import tokio_runtime as tr
from tokio_runtime._default import get_runtime
from tokio_runtime._runtime import ports_of

BATCHES = 100
PER_BATCH = 10_000
MIB = 1024 * 1024


async def batch(ch, lock, seq):
    """10,000 operations in one gather; checks every result."""
    held = [0]

    async def locked(i):
        async with lock:
            held[0] += 1
            assert held[0] == 1
            held[0] -= 1
        return i

    async def pair(i):
        await ch.send(i)
        return await ch.recv()

    aws, want = [], []
    for i in range(PER_BATCH // 20):
        v = (seq, i)
        aws += [tr.sleep(0, v) for _ in range(14)]
        want += [v] * 14
        aws += [tr.sleep(1e-6, i), tr.timeout(1, tr.sleep(0, i)), locked(i), pair(i)]
        want += [i, i, i, None]  # pair(): FIFO with other pairs, checked below
        aws += [tr.with_timeout(0, 1), tr.spawn_background(1, 0)]
        want += ["Operation completed", 1]
    results = await asyncio.gather(*aws)
    assert len(results) == PER_BATCH
    paired = []
    for got, expected, aw in zip(results, want, aws):
        if expected is None:
            paired.append(got)
        else:
            assert got == expected, (got, expected, aw)
    assert sorted(paired) == list(range(PER_BATCH // 20))
    return len(results)


def settle(loops):
    """Run the loops in turn until every native op is finished and freed.

    An op struct is freed when its final record is drained on its loop, so
    records that came after a loop stopped (a deadline cancelled as its
    timeout returned) wait for that loop to run again.
    """
    deadline = time.monotonic() + 10
    while stats()["live_ops"] or stats()["pending"]:
        assert time.monotonic() < deadline, stats()
        for loop in loops:
            loop.run_until_complete(asyncio.sleep(0.002))


def test_a_million_operations_leave_nothing_behind():
    rt = get_runtime()
    assert wait_for_pending(0) == 0
    before_loops = stats()
    loops = [factory() for factory in LOOP_FACTORIES.values()]
    ch, lock = tr.Channel(64), tr.Mutex()
    try:
        for loop in loops:  # warm-up: ports, free lists, caches
            loop.run_until_complete(batch(ch, lock, -1))
        ports = [weakref.ref(ports_of(rt).by_loop_id[id(loop)]) for loop in loops]
        settle(loops)
        gc.collect()
        base = stats()
        base_rss = rss_bytes()
        base_objects = len(gc.get_objects())
        t0 = time.monotonic()
        done = 0
        for seq in range(BATCHES):
            done += loops[seq % 2].run_until_complete(batch(ch, lock, seq))
        elapsed = time.monotonic() - t0
        assert done == BATCHES * PER_BATCH
        settle(loops)
        gc.collect()
        grown = rss_bytes() - base_rss
        objects = len(gc.get_objects()) - base_objects
        end = stats()
        print(
            f"{done:,} operations in {elapsed:.1f} s ({done / elapsed:,.0f}/s); "
            f"RSS {base_rss / MIB:.1f} -> {(base_rss + grown) / MIB:.1f} MiB; "
            f"tracked objects {objects:+d}"
        )
        assert grown < 20 * MIB
        assert objects < 2000  # one leaked object per operation would be a million
        for key in ("pending", "live_ops", "waiters"):
            assert end[key] == base[key] == 0, (key, base[key], end[key])
        # Earlier tests' closed loops may still be giving their ports back.
        assert end["ports"] <= base["ports"]
        assert end["submitted"] - base["submitted"] >= 0.8 * BATCHES * PER_BATCH
        # The Python side holds nothing either.
        assert all(p.pending == {} and p.woken == set() for p in ports_of(rt).all())
        assert ch._items == {} and len(ch) == 0 and not lock.locked()
    finally:
        for loop in loops:
            loop.close()
    # The closed loops' ports are swept and freed.  (Ports of earlier tests'
    # loops may be freed meanwhile too: the count can only go below.)
    del loops, loop

    def freed():
        gc.collect()
        s = stats()
        return all(p() is None for p in ports) and s["ports"] <= before_loops["ports"]

    wait_until(freed, what="the ports to be freed")
    assert stats()["live_ops"] == 0
