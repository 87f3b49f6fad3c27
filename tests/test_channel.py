"""Channel: every guarantee of its docstring, as a user sees it.

Tasks on any loop and plain threads share one bounded FIFO; items come out
in order, each exactly once, whatever is cancelled, closed or shut down.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest
import uvloop
from conftest import wait_for_pending
from helpers import (
    JOIN,
    Worker,
    dying_loop_worker,
    idle,
    loop_worker,
    on_new_loop,
    park_on_a_loop_then_close_it,
    queued_then_wait,
    stats,
    until,
    wait_until,
    with_deadline,
)

import tokio_runtime
from tokio_runtime import (
    Channel,
    ChannelClosed,
    ChannelEmpty,
    ChannelError,
    ChannelFull,
    Runtime,
)
from tokio_runtime._channel import RECV_MANY_CHUNK
from tokio_runtime._default import get_runtime


def drain(ch):
    """Everything queued now, by try_recv."""
    out = []
    while True:
        try:
            out.append(ch.try_recv())
        except (ChannelEmpty, ChannelClosed):
            return out


class Token:
    """An item that can be weakly referenced (to see nobody keeps it)."""

    def __init__(self, n):
        self.n = n


# ---- basics ------------------------------------------------------------------------


def test_exceptions_are_exported_and_share_a_base():
    for exc in (ChannelClosed, ChannelFull, ChannelEmpty):
        assert issubclass(exc, ChannelError)
        assert getattr(tokio_runtime, exc.__name__) is exc
    assert issubclass(ChannelError, Exception)
    assert tokio_runtime.ChannelError is ChannelError
    assert tokio_runtime.Channel is Channel
    assert not issubclass(ChannelClosed, (ChannelFull, ChannelEmpty))


def test_fifo_of_arbitrary_python_objects():
    ch = Channel(10)
    shared = {"same": "object"}
    items = [None, shared, shared, [1, 2], [1, 2], {"a": []}, 0, "", float("nan"), ch]
    for item in items:
        ch.try_send(item)
    assert len(ch) == 10
    out = [ch.try_recv() for _ in items]
    assert all(a is b for a, b in zip(out, items))  # the very same objects
    assert len(ch) == 0
    with pytest.raises(ChannelEmpty):
        ch.try_recv()


def test_state_properties_and_repr():
    ch = Channel(3)
    assert ch.capacity == 3
    assert len(ch) == 0
    assert ch.closed is False
    assert "0/3" in repr(ch) and "closed" not in repr(ch)
    ch.try_send("a")
    ch.try_send("b")
    assert len(ch) == 2
    assert "2/3" in repr(ch)
    ch.close()
    assert ch.closed is True
    assert len(ch) == 2  # queued items stay
    assert "2/3" in repr(ch) and "closed" in repr(ch)
    assert ch.capacity == 3


def test_huge_capacity_is_cheap_and_usable():
    ch = Channel(2**40)
    assert ch.capacity == 2**40
    for i in range(1000):
        ch.try_send(i)
    assert drain(ch) == list(range(1000))


def test_try_send_full_and_try_recv_empty():
    ch = Channel(2)
    with pytest.raises(ChannelEmpty):
        ch.try_recv()
    ch.try_send(1)
    ch.try_send(2)
    with pytest.raises(ChannelFull):
        ch.try_send(3)
    assert len(ch) == 2
    assert ch.try_recv() == 1
    ch.try_send(3)  # room again
    assert drain(ch) == [2, 3]
    with pytest.raises(ChannelEmpty):
        ch.try_recv()


def test_rejected_and_received_items_are_not_kept_alive():
    ch = Channel(1)
    ch.try_send(Token(0))
    rejected = Token(1)
    ref = weakref.ref(rejected)
    with pytest.raises(ChannelFull):
        ch.try_send(rejected)
    del rejected
    gc.collect()
    assert ref() is None  # a failed send does not keep its item

    got = ch.try_recv()
    ref = weakref.ref(got)
    del got
    gc.collect()
    assert ref() is None  # the channel keeps nothing it handed out

    ch.close()
    late = Token(2)
    ref = weakref.ref(late)
    with pytest.raises(ChannelClosed):
        ch.try_send(late)
    del late
    gc.collect()
    assert ref() is None


def test_try_calls_from_plain_threads():
    ch = Channel(1000)
    n_threads, per = 4, 500

    def produce(p):
        for i in range(per):
            while True:
                try:
                    ch.try_send((p, i))
                    break
                except ChannelFull:
                    time.sleep(0)

    def consume():
        got = []
        while len(got) < per * n_threads // 2:
            try:
                got.append(ch.try_recv())
            except ChannelEmpty:
                time.sleep(0)
        return got

    consumers = [Worker(consume) for _ in range(2)]
    producers = [Worker(produce, p) for p in range(n_threads)]
    for w in consumers + producers:
        w.start()
    for w in producers:
        w.finish()
    results = [w.finish() for w in consumers]
    everything = sorted(results[0] + results[1])
    assert everything == sorted((p, i) for p in range(n_threads) for i in range(per))
    for got in results:
        for p in range(n_threads):
            seq = [i for q, i in got if q == p]
            assert seq == sorted(seq)  # per-producer order kept


async def test_try_calls_on_the_loop_thread():
    ch = Channel(2)
    ch.try_send("x")
    ch.try_send("y")
    with pytest.raises(ChannelFull):
        ch.try_send("z")
    assert ch.try_recv() == "x"
    assert ch.try_recv() == "y"
    with pytest.raises(ChannelEmpty):
        ch.try_recv()


# ---- async send / recv / recv_many -----------------------------------------------


async def test_async_send_and_recv_keep_order():
    ch = Channel(4)
    for i in range(4):
        await ch.send(i)
    assert [await ch.recv() for _ in range(4)] == [0, 1, 2, 3]

    async def producer():
        for i in range(200):
            await ch.send(i)

    async def consumer():
        return [await ch.recv() for _ in range(200)]

    _, got = await asyncio.gather(producer(), consumer())
    assert got == list(range(200))
    await idle()


async def test_send_waits_while_full_until_a_recv_frees_room():
    ch = Channel(2)
    await ch.send("a")
    await ch.send("b")
    blocked = asyncio.ensure_future(ch.send("c"))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # backpressure: no room, no progress
    assert len(ch) == 2
    assert stats()["waiters"] >= 1
    assert await ch.recv() == "a"
    await asyncio.wait_for(blocked, JOIN)
    assert drain(ch) == ["b", "c"]
    await idle()


async def test_send_waits_for_room_freed_by_a_thread():
    ch = Channel(1)
    ch.try_send(0)
    senders = [asyncio.ensure_future(ch.send(i)) for i in range(1, 6)]
    await asyncio.sleep(0.02)
    assert not any(s.done() for s in senders)
    got = await asyncio.to_thread(lambda: [ch.recv_blocking(JOIN) for _ in range(5)])
    await asyncio.wait_for(asyncio.gather(*senders), JOIN)
    got += drain(ch)
    # Senders started in order on one loop, so they queue in order.
    assert got == [0, 1, 2, 3, 4, 5]
    await idle()


async def test_recv_waits_while_empty():
    ch = Channel(3)
    waiting = asyncio.ensure_future(ch.recv())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    ch.try_send(None)  # None is an item like any other
    assert await asyncio.wait_for(waiting, JOIN) is None
    await idle()


async def test_recv_woken_by_a_thread():
    ch = Channel(3)
    receivers = [asyncio.ensure_future(ch.recv()) for _ in range(3)]
    await until(lambda: stats()["waiters"] >= 3, what="three waiting receivers")
    w = Worker(lambda: [ch.send_blocking(i, JOIN) for i in range(3)])
    w.start()
    got = await asyncio.wait_for(asyncio.gather(*receivers), JOIN)
    w.finish()
    assert sorted(got) == [0, 1, 2]
    await idle()


async def test_recv_many_takes_oldest_first_up_to_max_items():
    ch = Channel(10)
    for i in range(7):
        ch.try_send(i)
    assert await ch.recv_many(3) == [0, 1, 2]
    assert await ch.recv_many(1) == [3]
    assert await ch.recv_many(100) == [4, 5, 6]  # what is there, no waiting
    assert len(ch) == 0


async def test_recv_many_waits_while_empty_then_returns_what_is_there():
    ch = Channel(10)
    task = asyncio.ensure_future(ch.recv_many(5))
    await asyncio.sleep(0.05)
    assert not task.done()
    ch.try_send("only")
    assert await asyncio.wait_for(task, JOIN) == ["only"]  # not waiting for five

    task = asyncio.ensure_future(ch.recv_many(5))
    await asyncio.sleep(0.02)
    for i in range(3):
        ch.try_send(i)  # all three before the waiter runs
    assert await asyncio.wait_for(task, JOIN) == [0, 1, 2]
    await idle()


async def test_recv_many_beyond_capacity():
    ch = Channel(3)
    for i in range(3):
        ch.try_send(i)
    senders = [asyncio.ensure_future(ch.send(i)) for i in range(3, 6)]
    await asyncio.sleep(0)
    got = await ch.recv_many(10)
    assert 1 <= len(got) <= 10
    assert got == list(range(len(got)))
    await asyncio.wait_for(asyncio.gather(*senders), JOIN)
    rest = []
    while len(got) + len(rest) < 6:
        rest += await ch.recv_many(10)
    assert got + rest == list(range(6))
    await idle()


@pytest.mark.parametrize(
    ("queued", "max_items"),
    [
        (RECV_MANY_CHUNK, RECV_MANY_CHUNK + 1),
        (RECV_MANY_CHUNK + 1, RECV_MANY_CHUNK + 1),
        (2 * RECV_MANY_CHUNK, 10**6),
        (9000, 5000),
        (9000, 2**62),
    ],
)
async def test_recv_many_beyond_one_chunk(queued, max_items):
    ch = Channel(20_000)
    for i in range(queued):
        ch.try_send(i)
    got = await ch.recv_many(max_items)
    assert got == list(range(min(queued, max_items)))
    assert len(ch) == queued - len(got)
    assert drain(ch) == list(range(len(got), queued))


async def test_recv_many_big_request_with_concurrent_thread_producers():
    ch = Channel(5000)
    total = 30_000
    w = Worker(lambda: [ch.send_blocking(i, JOIN) for i in range(total)])
    w.start()
    got = []
    while len(got) < total:
        batch = await ch.recv_many(RECV_MANY_CHUNK * 3)
        assert 1 <= len(batch) <= RECV_MANY_CHUNK * 3
        got += batch
    w.finish()
    assert got == list(range(total))
    await idle()


async def test_async_for_ends_when_closed_and_drained():
    ch = Channel(8)
    for i in range(5):
        await ch.send(i)
    ch.close()
    assert [x async for x in ch] == [0, 1, 2, 3, 4]

    ch = Channel(2)

    async def produce():
        for i in range(50):
            await ch.send(i)
        ch.close()

    producer = asyncio.ensure_future(produce())
    got = [x async for x in ch]
    await producer
    assert got == list(range(50))
    await idle()


# ---- blocking calls ----------------------------------------------------------------


def test_blocking_calls_between_threads():
    ch = Channel(4)
    n = 2000
    w = Worker(lambda: [ch.recv_blocking(JOIN) for _ in range(n)])
    w.start()
    for i in range(n):
        ch.send_blocking(i, JOIN)  # main thread: the sliced wait
    assert w.finish() == list(range(n))


def test_send_blocking_waits_for_room():
    ch = Channel(1)
    ch.send_blocking("first")
    w = Worker(ch.send_blocking, "second", JOIN)
    w.start()
    time.sleep(0.1)
    assert w.is_alive()  # still waiting for room
    assert len(ch) == 1
    assert ch.recv_blocking(JOIN) == "first"
    w.finish()
    assert ch.recv_blocking(JOIN) == "second"


def test_recv_blocking_waits_for_an_item():
    ch = Channel(1)
    w = Worker(ch.recv_blocking, JOIN)
    w.start()
    time.sleep(0.1)
    assert w.is_alive()
    ch.send_blocking([])
    assert w.finish() == []


@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_blocking_timeouts(where):
    ch = Channel(1)
    full = Channel(1)
    full.try_send("x")

    def timed(fn, *args):
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            fn(*args)
        return time.monotonic() - t0

    def run():
        return (
            timed(ch.recv_blocking, 0.2),
            timed(full.send_blocking, "y", 0.2),
            timed(ch.recv_blocking, 0),
            timed(full.send_blocking, "y", 0.0),
        )

    if where == "main thread":
        recv_t, send_t, recv0, send0 = run()
    else:
        w = Worker(run)
        w.start()
        recv_t, send_t, recv0, send0 = w.finish()
    assert 0.19 <= recv_t < 5.0
    assert 0.19 <= send_t < 5.0
    assert recv0 < 5.0 and send0 < 5.0
    assert len(full) == 1 and full.try_recv() == "x"  # the timed-out send queued nothing
    assert len(ch) == 0


def test_timed_out_send_does_not_keep_its_item():
    ch = Channel(1)
    ch.try_send(0)
    item = Token(1)
    ref = weakref.ref(item)
    with pytest.raises(TimeoutError):
        ch.send_blocking(item, 0.01)
    del item
    gc.collect()
    assert ref() is None
    assert drain(ch) == [0]


async def test_blocking_calls_refuse_a_running_loop_thread():
    ch = Channel(2)
    ch.try_send("kept")
    with pytest.raises(RuntimeError):
        ch.send_blocking("nope")
    with pytest.raises(RuntimeError):
        ch.send_blocking("nope", 1.0)
    with pytest.raises(RuntimeError):
        ch.recv_blocking()
    with pytest.raises(RuntimeError):
        ch.recv_blocking(0.5)
    # Nothing was queued or taken; try_* are fine here.
    assert len(ch) == 1
    ch.try_send("more")
    assert ch.try_recv() == "kept"
    assert ch.try_recv() == "more"


def test_blocking_calls_refuse_a_loop_thread_of_another_flavour():
    ch = Channel(1)

    async def main():
        errors = []
        for call in (lambda: ch.send_blocking(1), lambda: ch.recv_blocking(0.1)):
            try:
                call()
            except RuntimeError as exc:
                errors.append(exc)
        return errors

    for factory in (asyncio.new_event_loop, uvloop.new_event_loop):
        assert len(loop_worker(factory, main).finish()) == 2
    assert len(ch) == 0
    # ... and the same thread, its loop closed, may block again.
    w = Worker(lambda: (on_new_loop(asyncio.new_event_loop, main), ch.send_blocking(7, 1.0)))
    w.start()
    w.finish()
    assert ch.try_recv() == 7


# ---- close ---------------------------------------------------------------------------


async def test_close_is_idempotent_and_stops_sends():
    ch = Channel(2)
    await ch.send("queued")
    ch.close()
    ch.close()
    assert ch.closed
    with pytest.raises(ChannelClosed):
        ch.try_send("x")
    with pytest.raises(ChannelClosed):
        await ch.send("x")
    with pytest.raises(ChannelClosed):
        await asyncio.to_thread(ch.send_blocking, "x", 1.0)
    with pytest.raises(ChannelClosed):
        await asyncio.to_thread(ch.send_blocking, "x")
    assert len(ch) == 1
    # receivers get what was queued, then ChannelClosed, in every form
    assert await ch.recv() == "queued"
    with pytest.raises(ChannelClosed):
        await ch.recv()
    with pytest.raises(ChannelClosed):
        await ch.recv_many(5)
    with pytest.raises(ChannelClosed):
        ch.try_recv()
    with pytest.raises(ChannelClosed):
        await asyncio.to_thread(ch.recv_blocking, 1.0)
    with pytest.raises(ChannelClosed):
        await asyncio.to_thread(ch.recv_blocking)
    ch.close()


def test_close_keeps_queued_items_for_every_kind_of_receiver():
    ch = Channel(10)
    for i in range(6):
        ch.try_send(i)
    ch.close()

    async def take_async():
        return [await ch.recv(), *await ch.recv_many(2)]

    assert ch.recv_blocking(1.0) == 0
    assert ch.try_recv() == 1
    assert on_new_loop(asyncio.new_event_loop, take_async) == [2, 3, 4]
    assert ch.recv_blocking() == 5
    with pytest.raises(ChannelClosed):
        ch.recv_blocking()
    with pytest.raises(ChannelClosed):
        ch.try_recv()


def test_full_and_closed_send_says_closed():
    ch = Channel(1)
    ch.try_send(1)
    ch.close()
    with pytest.raises(ChannelClosed):
        ch.try_send(2)
    with pytest.raises(ChannelClosed):
        ch.send_blocking(2, 1.0)


async def test_close_wakes_waiting_receivers():
    ch = Channel(2)
    receivers = [asyncio.ensure_future(ch.recv()) for _ in range(3)]
    many = asyncio.ensure_future(ch.recv_many(4))
    iterating = asyncio.ensure_future(_collect(ch))
    blocked = [Worker(ch.recv_blocking) for _ in range(2)]  # no timeout
    timed = Worker(ch.recv_blocking, 60.0)
    for w in [*blocked, timed]:
        w.start()
    await until(lambda: stats()["waiters"] >= 5, what="five waiting tasks")
    await asyncio.sleep(0.05)  # the threads are blocked by now
    assert not any(t.done() for t in [*receivers, many, iterating])
    ch.close()
    for r in [*receivers, many]:
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(r, JOIN)
    assert await asyncio.wait_for(iterating, JOIN) == []
    for w in [*blocked, timed]:
        w.join(JOIN)
        assert isinstance(w.error, ChannelClosed)
    await idle()


async def _collect(ch):
    return [x async for x in ch]


async def test_close_wakes_waiting_senders_without_queueing_their_items():
    ch = Channel(2)
    ch.try_send("a")
    ch.try_send("b")
    token = Token(-1)
    ref = weakref.ref(token)
    senders = [asyncio.ensure_future(ch.send(i)) for i in range(3)]
    senders.append(asyncio.ensure_future(ch.send(token)))
    del token
    blocked = [Worker(ch.send_blocking, f"t{i}") for i in range(2)]
    timed = Worker(ch.send_blocking, "timed", 60.0)
    for w in [*blocked, timed]:
        w.start()
    await until(lambda: stats()["waiters"] >= 4, what="four waiting senders")
    await asyncio.sleep(0.05)
    ch.close()
    results = await asyncio.wait_for(asyncio.gather(*senders, return_exceptions=True), JOIN)
    assert [type(r) for r in results] == [ChannelClosed] * 4
    for w in [*blocked, timed]:
        w.join(JOIN)
        assert isinstance(w.error, ChannelClosed)
    # The channel keeps exactly its queued items, none of the rejected ones.
    # (Not a weakref check: the finished tasks' tracebacks still hold the
    # send frames, and how long CPython keeps those varies by version.)
    assert len(ch._items) == len(ch) == 2
    assert all(item is not ref() for item in ch._items.values())
    assert drain(ch) == ["a", "b"]  # nothing from the woken senders
    assert ch._items == {}
    await idle()


# ---- multi-producer multi-consumer stress -------------------------------------------


def _check_delivery(per_consumer, producers, per_producer):
    everything = [x for got in per_consumer for x in got]
    assert len(everything) == producers * per_producer, "items lost or duplicated"
    assert set(everything) == {(p, i) for p in range(producers) for i in range(per_producer)}
    for got in per_consumer:
        last = {}
        for p, i in got:
            assert i > last.get(p, -1), f"producer {p} out of order"
            last[p] = i


def test_stress_thread_producers_loop_consumers():
    """4 send_blocking threads, 2 loops (asyncio, uvloop) consuming: 100,000 items."""
    ch = Channel(64)
    producers, per = 4, 25_000

    def produce(p):
        for i in range(per):
            ch.send_blocking((p, i))

    async def consume_iter():
        return [x async for x in ch]

    async def consume_recv():
        got = []
        while True:
            try:
                got.append(await ch.recv())
            except ChannelClosed:
                return got

    consumers = [
        loop_worker(asyncio.new_event_loop, consume_iter),
        loop_worker(uvloop.new_event_loop, consume_recv),
    ]
    threads = [Worker(produce, p) for p in range(producers)]
    for w in threads:
        w.start()
    try:
        for w in threads:
            w.finish()
    finally:
        ch.close()
    results = [w.finish() for w in consumers]
    _check_delivery(results, producers, per)
    assert all(results), "a consumer got nothing: not really concurrent"
    assert wait_for_pending(0) == 0


def test_stress_loop_producers_thread_consumers():
    """2 loops sending with await send, 3 threads with recv_blocking."""
    ch = Channel(64)
    producers, per = 4, 25_000  # two producer tasks on each loop

    async def produce(first):
        async def one(p):
            for i in range(per):
                await ch.send((p, i))

        await asyncio.gather(one(first), one(first + 1))

    def consume():
        got = []
        while True:
            try:
                got.append(ch.recv_blocking())
            except ChannelClosed:
                return got

    consumers = [Worker(consume) for _ in range(3)]
    for w in consumers:
        w.start()
    loops = [
        loop_worker(asyncio.new_event_loop, produce, 0),
        loop_worker(uvloop.new_event_loop, produce, 2),
    ]
    try:
        for w in loops:
            w.finish()
    finally:
        ch.close()
    _check_delivery([w.finish() for w in consumers], producers, per)
    assert wait_for_pending(0) == 0


def test_stress_mixed_producers_and_consumers():
    """Every way in and out at once: blocking, async, try_*, recv_many."""
    ch = Channel(32)
    producers, per = 4, 12_000
    own_producer_done = threading.Event()

    def produce_blocking(p):
        for i in range(per):
            ch.send_blocking((p, i), JOIN)

    def produce_try(p):
        for i in range(per):
            while True:
                try:
                    ch.try_send((p, i))
                    break
                except ChannelFull:
                    time.sleep(0.0001)

    async def produce_async(p):
        for i in range(per):
            await ch.send((p, i))

    def consume_blocking():
        got = []
        while True:
            try:
                got.append(ch.recv_blocking(JOIN))
            except ChannelClosed:
                return got

    async def consume_many():
        got = []
        while True:
            try:
                batch = await ch.recv_many(7)
            except ChannelClosed:
                return got
            assert 1 <= len(batch) <= 7
            got += batch

    async def consume_and_produce(p):
        # One loop both produces (a task) and consumes (async for).
        async def produce():
            await produce_async(p)
            own_producer_done.set()

        prod = asyncio.ensure_future(produce())
        got = [x async for x in ch]
        await prod
        return got

    consumers = [
        Worker(consume_blocking),
        loop_worker(uvloop.new_event_loop, consume_many),
        loop_worker(asyncio.new_event_loop, consume_and_produce, 2),
    ]
    prods = [Worker(produce_blocking, 0), Worker(produce_try, 1)]
    for w in [consumers[0], *prods]:
        w.start()
    prods.append(loop_worker(uvloop.new_event_loop, produce_async, 3))
    try:
        for w in prods:
            w.finish()
        assert own_producer_done.wait(JOIN)
    finally:
        ch.close()
    _check_delivery([w.finish() for w in consumers], producers, per)
    assert wait_for_pending(0) == 0


# ---- cancellation --------------------------------------------------------------------


async def test_cancelled_recv_leaves_its_wake_for_the_next_receiver():
    """Send, then cancel the woken receiver in the same loop iteration."""
    ch = Channel(4)
    for delay in range(6):  # cancel 0..5 loop iterations after the send
        first = asyncio.ensure_future(ch.recv())
        second = asyncio.ensure_future(ch.recv())
        await asyncio.sleep(0)  # both wait, first in line
        ch.try_send(delay)
        for _ in range(delay):
            await asyncio.sleep(0)
        first.cancel()
        (result,) = await asyncio.gather(first, return_exceptions=True)
        if isinstance(result, asyncio.CancelledError):
            assert await asyncio.wait_for(second, JOIN) == delay  # the wake was passed on
        else:
            # first had already taken it; second still waits
            assert result == delay
            assert not second.done()
            ch.try_send("next")
            assert await asyncio.wait_for(second, JOIN) == "next"
        assert len(ch) == 0
    await idle()


async def test_cancelled_recv_takes_nothing_even_when_alone():
    ch = Channel(4)
    for delay in range(6):
        receiver = asyncio.ensure_future(ch.recv_many(3) if delay % 2 else ch.recv())
        await asyncio.sleep(0)
        ch.try_send(delay)
        for _ in range(delay):
            await asyncio.sleep(0)
        if receiver.cancel():
            with pytest.raises(asyncio.CancelledError):
                await receiver
            if not receiver.cancelled():  # pragma: no cover - cancel() said it would be
                pytest.fail("cancelled receiver completed")
            assert ch.try_recv() == delay  # still there for someone else
        else:
            assert receiver.result() in (delay, [delay])
    await idle()


async def test_cancelled_send_on_a_full_channel_queues_nothing():
    ch = Channel(1)
    ch.try_send("old")
    for delay in range(6):
        first = asyncio.ensure_future(ch.send(("first", delay)))
        second = asyncio.ensure_future(ch.send(("second", delay)))
        await asyncio.sleep(0)
        assert ch.try_recv() == "old"  # room for one: first is woken
        for _ in range(delay):
            await asyncio.sleep(0)
        first.cancel()
        (result,) = await asyncio.gather(first, return_exceptions=True)
        if isinstance(result, asyncio.CancelledError):
            # the room was passed on to second; first queued nothing
            await asyncio.wait_for(second, JOIN)
            assert drain(ch) == [("second", delay)]
        else:
            # first was queued before the cancel; second still waits for room
            assert result is None
            assert not second.done()
            assert drain(ch) == [("first", delay)]
            await asyncio.wait_for(second, JOIN)
            assert drain(ch) == [("second", delay)]
        ch.try_send("old")
    await idle()


async def test_recv_cancel_storm_loses_nothing():
    rng = random.Random(20240101)
    ch = Channel(16)
    received = []
    receivers = set()
    cancelled = 0

    async def receive_one_by_one():
        async for item in ch:
            received.append(item)

    async def receive_in_batches():
        while True:
            received.extend(await ch.recv_many(rng.randint(1, 5)))

    def spawn():
        fn = receive_in_batches if rng.random() < 0.3 else receive_one_by_one
        receivers.add(asyncio.ensure_future(fn()))

    def cancel_some(k):
        nonlocal cancelled
        live = [t for t in receivers if not t.done()]
        for victim in rng.sample(live, min(k, len(live))):
            victim.cancel()
            cancelled += 1
            spawn()

    for _ in range(40):
        spawn()
    await asyncio.sleep(0)
    n = 2500
    sent = [("loop", i) for i in range(n)] + [("thread", i) for i in range(n)]
    thread_rng = random.Random(7)

    def send_from_thread():
        for i in range(n):
            ch.send_blocking(("thread", i), JOIN)
            if thread_rng.random() < 0.05:
                time.sleep(0.0002)

    producer = Worker(send_from_thread)
    producer.start()
    for i in range(n):
        await ch.send(("loop", i))
        r = rng.random()
        if r < 0.15:
            cancel_some(1)  # right as the item arrives: same loop iteration
        elif r < 0.25:
            await asyncio.sleep(0)
            cancel_some(rng.randint(1, 4))
        elif r < 0.35:
            await asyncio.sleep(0)
    await asyncio.to_thread(producer.finish)
    # Live receivers are still waiting: every item must reach one of them.
    await until(lambda: len(ch) == 0, what="the channel to be drained")
    await until(lambda: len(received) == len(sent), what="every item received")
    for t in receivers:
        t.cancel()
    await asyncio.gather(*receivers, return_exceptions=True)
    assert len(received) == len(sent)
    assert sorted(received) == sorted(sent)  # exactly once each
    assert cancelled > 100
    await idle()


async def test_cancel_all_receivers_mid_stream_leaves_items_in_the_channel():
    rng = random.Random(99)
    ch = Channel(64)
    received = []

    async def receive():
        async for item in ch:
            received.append(item)
            if rng.random() < 0.5:
                await asyncio.sleep(0)

    for round_ in range(20):
        receivers = [asyncio.ensure_future(receive()) for _ in range(10)]
        await asyncio.sleep(0)
        for i in range(30):
            ch.try_send((round_, i))
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        for t in receivers:
            t.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)
        assert sorted(received + drain(ch)) == [(round_, i) for i in range(30)]
        received.clear()
    await idle()


async def test_send_cancel_storm_never_enqueues_cancelled_items():
    rng = random.Random(4242)
    ch = Channel(4)
    for i in range(4):
        ch.try_send(("pre", i))
    n = 400
    senders = {i: asyncio.ensure_future(ch.send(i)) for i in range(n)}
    await asyncio.sleep(0)
    got_on_loop = []
    stop = threading.Event()
    thread_rng = random.Random(5)

    def consume_in_thread():
        out = []
        while not stop.is_set():
            try:
                out.append(ch.recv_blocking(0.01))
            except TimeoutError:
                continue
            if thread_rng.random() < 0.2:
                time.sleep(0.0005)
        return out

    def cancel_random(k=1):
        waiting = [t for t in senders.values() if not t.done()]
        for t in rng.sample(waiting, min(k, len(waiting))):
            t.cancel()

    consumer = Worker(consume_in_thread)
    consumer.start()
    deadline = time.monotonic() + JOIN
    try:
        while not all(t.done() for t in senders.values()):
            assert time.monotonic() < deadline, "a sender never got the room it waited for"
            try:
                got_on_loop.append(ch.try_recv())
            except ChannelEmpty:
                pass
            else:
                if rng.random() < 0.3:
                    cancel_random()  # a slot was just freed: cancel as the wake goes out
            r = rng.random()
            if r < 0.1:
                cancel_random(rng.randint(1, 3))
            await asyncio.sleep(0 if r < 0.8 else 0.0005)
    finally:
        stop.set()
        got_in_thread = await asyncio.to_thread(consumer.finish)
    everything = got_on_loop + got_in_thread + drain(ch)
    ok = {i for i, t in senders.items() if not t.cancelled()}
    cancelled = {i for i, t in senders.items() if t.cancelled()}
    for i in ok:
        assert senders[i].result() is None
    assert ok and cancelled
    assert sorted(x for x in everything if isinstance(x, int)) == sorted(ok)
    assert sorted(x for x in everything if isinstance(x, tuple)) == [("pre", i) for i in range(4)]
    await idle()


@pytest.mark.parametrize("deadline", ["asyncio.wait_for", "tokio_runtime.timeout"])
async def test_recv_under_tiny_timeouts_is_exactly_once(deadline):
    rng = random.Random(11)
    ch = Channel(8)
    n = 1500
    pause = random.Random(12)

    def produce():
        for i in range(n):
            ch.send_blocking(i, JOIN)
            if pause.random() < 0.02:
                time.sleep(0.0005)

    producer = Worker(produce)
    producer.start()
    got, timeouts = [], 0
    limit = time.monotonic() + JOIN
    while len(got) < n and time.monotonic() < limit:
        t = rng.choice([0, 0, 1e-6, 1e-5, 1e-4, 1e-3])
        try:
            got.append(await with_deadline(deadline, t, ch.recv()))
        except TimeoutError:
            timeouts += 1
    await asyncio.to_thread(producer.finish)
    assert got == list(range(n))  # one receiver: in order, none lost, none twice
    if deadline == "asyncio.wait_for":
        assert timeouts > 0  # a zero timeout always times out there
    # A certain timeout (nothing is sent): it takes nothing sent afterwards.
    assert len(ch) == 0
    with pytest.raises(TimeoutError):
        await with_deadline(deadline, 0.01, ch.recv())
    ch.try_send("after")
    assert await asyncio.wait_for(ch.recv(), JOIN) == "after"
    await idle()


@pytest.mark.parametrize("deadline", ["asyncio.wait_for", "tokio_runtime.timeout"])
async def test_send_under_tiny_timeouts_is_exactly_once(deadline):
    rng = random.Random(13)
    ch = Channel(4)
    n = 1500

    def consume():
        got = []
        for _ in range(n):
            got.append(ch.recv_blocking(JOIN))
        return got

    consumer = Worker(consume)
    consumer.start()
    i, timeouts = 0, 0
    limit = time.monotonic() + JOIN
    while i < n and time.monotonic() < limit:
        t = rng.choice([0, 0, 1e-6, 1e-5, 1e-4, 1e-3])
        try:
            await with_deadline(deadline, t, ch.send(i))
            i += 1
        except TimeoutError:
            timeouts += 1  # not queued: send the same item again
    got = await asyncio.to_thread(consumer.finish)
    assert got == list(range(n))
    if deadline == "asyncio.wait_for":
        assert timeouts > 0  # a zero timeout always times out there
    # A certain timeout (the channel stays full): its item is not queued.
    for k in range(4):
        ch.try_send(k)
    with pytest.raises(TimeoutError):
        await with_deadline(deadline, 0.01, ch.send("late"))
    assert drain(ch) == [0, 1, 2, 3]
    await idle()


# ---- loops that close under a waiter -----------------------------------------------


@pytest.mark.parametrize("dead_flavour", ["asyncio", "uvloop"])
@pytest.mark.parametrize("when", ["before the sweep", "after the sweep"])
def test_item_for_a_receiver_on_a_closed_loop_reaches_another(dead_flavour, when):
    factory = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}[dead_flavour]
    ch = Channel(2)
    base = stats()["waiters"]
    dead = park_on_a_loop_then_close_it(factory, ch.recv)
    if when == "after the sweep":
        wait_until(lambda: stats()["waiters"] == base, what="the sweep to drop the dead waiter")
    queued = threading.Event()
    # 5 s: far more than the 0.25 s sweep interval
    receiver = loop_worker(uvloop.new_event_loop, queued_then_wait, ch.recv, queued, 5.0)
    assert queued.wait(JOIN)
    ch.try_send("for the living")  # first in line (unless swept): the dead waiter
    assert receiver.finish() == "for the living"
    assert not dead.done()
    del dead
    gc.collect()
    assert len(ch) == 0
    ch.try_send("still works")
    assert ch.recv_blocking(1.0) == "still works"
    assert wait_for_pending(0) == 0


def test_room_for_a_sender_on_a_closed_loop_reaches_another():
    ch = Channel(1)
    ch.try_send("old")
    dead = park_on_a_loop_then_close_it(asyncio.new_event_loop, ch.send, "from the dead")
    queued = threading.Event()
    sender = loop_worker(
        asyncio.new_event_loop,
        queued_then_wait,
        lambda: ch.send("from the living"),
        queued,
        5.0,
    )
    assert queued.wait(JOIN)
    assert ch.try_recv() == "old"
    sender.finish()
    assert drain(ch) == ["from the living"]
    del dead
    gc.collect()
    assert wait_for_pending(0) == 0


def test_wake_delivered_to_a_loop_that_then_closes_is_passed_on():
    """The wake's record reached the loop, but the loop closed before the task
    ran: a receiver queued behind it on another loop must still get the item."""
    ch = Channel(2)
    parked = threading.Event()
    sent = threading.Event()
    base = stats()["waiters"]

    dying = dying_loop_worker(ch.recv, parked, sent)
    assert parked.wait(JOIN)

    async def live():
        return await asyncio.wait_for(ch.recv(), 5.0)

    receiver = loop_worker(asyncio.new_event_loop, live)
    wait_until(lambda: stats()["waiters"] == base + 2, what="both receivers waiting")
    ch.try_send("item")  # wakes the first in line: the task on the dying loop
    sent.set()
    dead = dying.finish()
    assert not dead.done()  # kept alive by us, it will never run again
    assert receiver.finish() == "item"
    assert len(ch) == 0
    del dead
    gc.collect()
    assert wait_for_pending(0) == 0


# ---- runtime= ---------------------------------------------------------------------


async def test_channel_bound_to_a_private_runtime():
    rt = Runtime(worker_threads=1, thread_name="chan-test")
    try:
        ch = Channel(1, runtime=rt)
        base = stats()["waiters"]
        waiting = asyncio.ensure_future(ch.recv())
        await until(lambda: rt.stats()["waiters"] == 1, what="a waiter on the private runtime")
        assert stats()["waiters"] == base  # not on the default runtime
        ch.try_send("x")
        assert await asyncio.wait_for(waiting, JOIN) == "x"
        await until(lambda: rt.stats()["pending"] == 0)

        full = Channel(1, runtime=rt)
        full.try_send("kept")
        receiving = asyncio.ensure_future(ch.recv())
        sending = asyncio.ensure_future(full.send("cancelled"))
        await until(lambda: rt.stats()["waiters"] == 2, what="two waiters")

        rt.shutdown()
        # A new wait fails at once ...
        with pytest.raises(RuntimeError):
            await ch.recv()
        # ... and the waiting ones are cancelled.
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(receiving, JOIN)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(sending, JOIN)
        assert receiving.cancelled() and sending.cancelled()
        assert rt.stats()["pending"] == 0
        with pytest.raises(RuntimeError):
            await ch.recv()
        with pytest.raises(RuntimeError):
            await ch.recv_many(3)
        with pytest.raises(RuntimeError):
            await full.send("no room, no wait")
        with pytest.raises(RuntimeError):
            await _collect(ch)

        # Calls that need no wait, and blocking calls, keep working.
        assert full.try_recv() == "kept"  # the cancelled send queued nothing
        with pytest.raises(ChannelEmpty):
            full.try_recv()
        full.try_send(1)
        with pytest.raises(ChannelFull):
            full.try_send(2)
        assert await full.recv() == 1
        await full.send(3)  # room: no wait
        assert await full.recv_many(5) == [3]
        blocked = Worker(full.recv_blocking, JOIN)
        blocked.start()
        await asyncio.sleep(0.05)
        full.try_send(4)
        assert await asyncio.to_thread(blocked.finish) == 4
        await asyncio.to_thread(full.send_blocking, 5, 1.0)
        assert await asyncio.to_thread(full.recv_blocking, 1.0) == 5
        full.close()
        with pytest.raises(ChannelClosed):
            await full.recv()
    finally:
        rt.shutdown()


def test_channel_runtime_is_keyword_only():
    with pytest.raises(TypeError):
        Channel(1, None)  # type: ignore[misc]
    with pytest.raises(TypeError):
        Channel()  # type: ignore[call-arg]


@pytest.mark.parametrize("runtime", ["rt", 42, object(), get_runtime])
async def test_bad_runtime(runtime):
    with pytest.raises(TypeError):
        Channel(1, runtime=runtime)
    ch = Channel(1, runtime=None)  # None: the default runtime
    waiting = asyncio.ensure_future(ch.recv())
    await asyncio.sleep(0)
    ch.try_send("ok")
    assert await asyncio.wait_for(waiting, JOIN) == "ok"


# ---- bad arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (2**40 + 1, ValueError),
        (2**64, ValueError),
        (1.5, TypeError),
        (2.0, TypeError),
        ("3", TypeError),
        (None, TypeError),
        (True, TypeError),
        (False, TypeError),
    ],
)
def test_bad_capacity(capacity, error):
    with pytest.raises(error):
        Channel(capacity)


@pytest.mark.parametrize(
    ("max_items", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError), (None, TypeError)],
)
async def test_bad_max_items(max_items, error):
    ch = Channel(4)
    ch.try_send("a")
    ch.try_send("b")
    with pytest.raises(error):
        ch.recv_many(max_items)  # checked when called, not when awaited
    assert len(ch) == 2  # nothing taken
    assert await ch.recv_many(1) == ["a"]
    assert await ch.recv_many(2) == ["b"]


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (-1, ValueError),
        (-0.001, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        ("1", TypeError),
        (True, TypeError),
        ([1], TypeError),
    ],
)
def test_bad_timeout(timeout, error):
    ch = Channel(1)
    with pytest.raises(error):
        ch.recv_blocking(timeout)
    with pytest.raises(error):
        ch.send_blocking("x", timeout)
    assert len(ch) == 0  # the refused send queued nothing
    ch.try_send("y")
    with pytest.raises(error):
        ch.send_blocking("x", timeout)  # full: refused before any wait
    with pytest.raises(error):
        ch.recv_blocking(timeout)
    assert len(ch) == 1  # nothing taken either
    # Still a working channel.
    assert ch.recv_blocking(1) == "y"
    ch.send_blocking("z", 0.5)
    assert ch.recv_blocking(None) == "z"


# ---- Ctrl-C ---------------------------------------------------------------------------


def test_ctrl_c_interrupts_blocking_waits_on_the_main_thread():
    """KeyboardInterrupt reaches a main thread blocked in a native wait, and
    the interrupted waits leave nothing queued behind them."""
    code = textwrap.dedent(
        """
        import os, signal, threading, time
        from tokio_runtime import Channel, Mutex

        ch = Channel(1)
        m = Mutex()
        m.acquire_blocking()

        def interrupt_soon():
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)

        def fill_then_send():
            ch.try_send(0)
            ch.send_blocking(1)

        for name, call in [("recv", ch.recv_blocking), ("send", fill_then_send),
                           ("lock", m.acquire_blocking)]:
            threading.Thread(target=interrupt_soon).start()
            t0 = time.monotonic()
            try:
                call()
            except KeyboardInterrupt:
                print(name, "interrupted", time.monotonic() - t0 < 1.5)
        assert ch.try_recv() == 0 and len(ch) == 0  # the interrupted send queued nothing
        ch.try_send(5)
        print("recv", ch.recv_blocking(1.0))
        m.release()
        print("lock", m.acquire_blocking(1.0))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:5] == [
        "recv interrupted True",
        "send interrupted True",
        "lock interrupted True",
        "recv 5",
        "lock True",
    ]
