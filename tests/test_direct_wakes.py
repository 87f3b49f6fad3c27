"""Direct wake-ups: a waiting coroutine is woken by whoever wakes it.

A wake caused by Python code (a channel send or receive, a close, a lock
release) is delivered by that code's own thread, never through the
dispatcher thread:

* on the waiter's own loop, at once: one ``await asyncio.sleep(0)`` by the
  waker is enough for the woken task to have run, exactly as with
  ``asyncio.Queue`` and ``asyncio.Lock`` (each test checks the stdlib
  primitive the same way first, so the test is about the same timing);
* on another loop, with one ``call_soon_threadsafe`` from the waker's thread;
* a thread blocked in C keeps being woken by its condition variable.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from helpers import JOIN, Worker, loop_worker

import tokio_runtime
from tokio_runtime import Channel, Mutex
from tokio_runtime._port import Port

ROUNDS = 300


async def _woken_after_one_turn(make_waiter, wake) -> int:
    """How many of ROUNDS waiters had run after the waker's one sleep(0)."""
    ran = 0
    for _ in range(ROUNDS):
        done = []
        task = asyncio.ensure_future(make_waiter(done))
        await asyncio.sleep(0)  # the waiter runs up to its wait
        await asyncio.sleep(0)
        assert not done, "the waiter did not wait"
        wake()
        await asyncio.sleep(0)  # one turn for the woken task
        ran += bool(done)
        await task
    return ran


# ---- same loop: asyncio's own timing ---------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 16])
async def test_a_send_wakes_a_receiver_on_its_loop_within_one_turn(capacity):
    q: asyncio.Queue[int] = asyncio.Queue(capacity)

    async def q_getter(done):
        done.append(await q.get())

    assert await _woken_after_one_turn(q_getter, lambda: q.put_nowait(1)) == ROUNDS

    ch: Channel[int] = Channel(capacity)

    async def ch_getter(done):
        done.append(await ch.recv())

    assert await _woken_after_one_turn(ch_getter, lambda: ch.try_send(1)) == ROUNDS


async def test_a_receive_wakes_a_sender_on_its_loop_within_one_turn():
    q: asyncio.Queue[int] = asyncio.Queue(1)

    async def q_putter(done):
        await q.put(2)
        done.append(True)

    def q_take():
        q.get_nowait()

    q.put_nowait(0)
    assert await _woken_after_one_turn(q_putter, q_take) == ROUNDS

    ch: Channel[int] = Channel(1)

    async def ch_putter(done):
        await ch.send(2)
        done.append(True)

    ch.try_send(0)
    assert await _woken_after_one_turn(ch_putter, ch.try_recv) == ROUNDS


async def test_a_release_hands_the_lock_over_on_its_loop_within_one_turn():
    lock = asyncio.Lock()

    async def lock_waiter(done):
        async with lock:
            done.append(True)

    await lock.acquire()

    def lock_release():
        lock.release()

    ran = 0
    for _ in range(ROUNDS):
        done = []
        task = asyncio.ensure_future(lock_waiter(done))
        await asyncio.sleep(0)
        lock_release()
        await asyncio.sleep(0)
        ran += bool(done)
        await task
        await lock.acquire()
    lock.release()
    assert ran == ROUNDS

    m = Mutex()
    await m.acquire()
    ran = 0
    for _ in range(ROUNDS):
        done = []

        async def m_waiter(done=done):
            async with m:
                done.append(True)

        task = asyncio.ensure_future(m_waiter())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert m.locked() and not done
        m.release()
        await asyncio.sleep(0)
        ran += bool(done)
        await task
        await m.acquire()
    m.release()
    assert ran == ROUNDS


async def test_close_wakes_every_receiver_on_its_loop_within_one_turn():
    ch: Channel[int] = Channel(4)
    ended = []

    async def receiver():
        async for _ in ch:
            pass
        ended.append(True)

    tasks = [asyncio.ensure_future(receiver()) for _ in range(5)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    ch.close()
    await asyncio.sleep(0)
    assert len(ended) == 5
    await asyncio.gather(*tasks)


async def test_a_coroutine_pair_streams_through_channel_1_in_order():
    """Producer and consumer on one loop, capacity 1: every item, in order,
    and the two alternate turn by turn (no stall waiting for a sweep)."""
    ch: Channel[int] = Channel(1)
    n = 5000
    got = []

    async def producer():
        for i in range(n):
            await ch.send(i)
        ch.close()

    async def consumer():
        async for x in ch:
            got.append(x)

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(asyncio.gather(producer(), consumer()), JOIN)
    assert got == list(range(n))
    # A stalled wake would cost a sweep (0.25 s) each: 5,000 items would take
    # minutes.  Wide margin: well under one sweep per 50 items.
    assert loop.time() - t0 < n / 50 * 0.25


# ---- other threads and loops: the waker's thread delivers ---------------------------


@pytest.fixture
def wake_threads(monkeypatch):
    """Names of the threads that delivered wakes through Port.wake."""
    seen: list[str] = []
    real = Port.wake

    def recording(self, running):
        seen.append(threading.current_thread().name)
        real(self, running)

    monkeypatch.setattr(Port, "wake", recording)
    return seen


def test_a_thread_send_wakes_a_loop_from_the_sending_thread(wake_threads, new_loop):
    ch: Channel[int] = Channel(1)
    n = 200

    async def consume():
        return [await ch.recv() for _ in range(n)]

    consumer = loop_worker(new_loop, consume, name="consumer-loop")

    def produce():
        for i in range(n):
            ch.send_blocking(i, timeout=JOIN)

    producer = Worker(produce, name="producer-thread")
    producer.start()
    producer.finish()
    assert consumer.finish() == list(range(n))
    dispatcher = f"tokio-runtime-{tokio_runtime.get_runtime().worker_threads + 1}"
    assert "producer-thread" in wake_threads
    assert dispatcher not in wake_threads


def test_a_release_on_one_loop_wakes_a_waiter_on_another(wake_threads, new_loop):
    m = Mutex()
    order = []
    rounds = 100

    async def contend(tag):
        for i in range(rounds):
            async with m:
                order.append((tag, i))
                await asyncio.sleep(0)

    a = loop_worker(new_loop, contend, "a", name="loop-a")
    b = loop_worker(new_loop, contend, "b", name="loop-b")
    a.finish()
    b.finish()
    assert sorted(order) == sorted((t, i) for t in "ab" for i in range(rounds))
    assert set(wake_threads) <= {"loop-a", "loop-b"}
    assert not m.locked()


@pytest.fixture(params=["asyncio", "uvloop"])
def new_loop(request):
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}[request.param]
