"""Mutex: every guarantee of its docstring, as a user sees it.

One FIFO lock for coroutines on any loops and plain threads at once; a
cancelled or abandoned acquire never leaves it held.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import threading
import time

import pytest
import uvloop
from conftest import wait_for_pending
from helpers import (
    JOIN,
    Worker,
    dying_loop_worker,
    idle,
    loop_worker,
    park_on_a_loop_then_close_it,
    queued_then_wait,
    stats,
    until,
    wait_until,
    with_deadline,
)

import tokio_runtime
from tokio_runtime import Mutex, Runtime
from tokio_runtime._default import get_runtime


def assert_usable(m):
    """Unlocked, and it locks and unlocks again (from a plain thread)."""
    assert not m.locked()
    assert m.acquire_blocking(0) is True
    assert m.locked()
    m.release()
    assert not m.locked()


async def assert_usable_async(m):
    """Unlocked, and it locks and unlocks again (from a coroutine)."""
    assert not m.locked()
    assert await asyncio.wait_for(m.acquire(), JOIN) is True
    assert m.locked()
    m.release()
    assert not m.locked()


# ---- basics ------------------------------------------------------------------------


def test_exported():
    assert tokio_runtime.Mutex is Mutex


async def test_async_with_acquire_release_locked():
    m = Mutex()
    assert not m.locked()
    assert "unlocked" in repr(m)
    async with m as entered:
        assert entered is m
        assert m.locked()
        assert "locked" in repr(m) and "unlocked" not in repr(m)
    assert not m.locked()
    assert await m.acquire() is True
    assert m.locked()
    m.release()
    assert not m.locked()
    with pytest.raises(RuntimeError):
        m.release()
    assert not m.locked()


async def test_async_with_releases_on_error():
    m = Mutex()
    with pytest.raises(KeyError):
        async with m:
            raise KeyError("boom")
    assert not m.locked()


async def test_acquire_waits_while_locked():
    m = Mutex()
    await m.acquire()
    waiting = asyncio.ensure_future(m.acquire())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    m.release()  # handed over: it stays locked
    assert m.locked()
    assert await asyncio.wait_for(waiting, JOIN) is True
    assert m.locked()
    m.release()
    assert not m.locked()
    await idle()


def test_with_and_acquire_blocking_in_threads():
    m = Mutex()
    with m as entered:
        assert entered is m
        assert m.locked()
        # Like threading.Lock: a timed attempt on a held lock fails.
        w = Worker(m.acquire_blocking, 0.05)
        w.start()
        assert w.finish() is False
        assert m.locked()
    assert not m.locked()
    with pytest.raises(ZeroDivisionError):
        with m:
            1 / 0  # noqa: B018
    assert not m.locked()
    assert m.acquire_blocking() is True
    assert m.acquire_blocking(0) is False
    assert m.acquire_blocking(0.0) is False
    m.release()
    assert m.acquire_blocking(0) is True
    m.release()
    assert m.acquire_blocking(5.0) is True
    m.release()
    assert m.acquire_blocking(None) is True
    m.release()
    with pytest.raises(RuntimeError):
        m.release()


@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_acquire_blocking_timeout(where):
    m = Mutex()
    m.acquire_blocking()

    def attempt():
        t0 = time.monotonic()
        ok = m.acquire_blocking(0.2)
        return ok, time.monotonic() - t0

    if where == "main thread":
        ok, elapsed = attempt()
    else:
        w = Worker(attempt)
        w.start()
        ok, elapsed = w.finish()
    assert ok is False
    assert 0.19 <= elapsed < 5.0
    assert m.locked()
    m.release()
    assert not m.locked()  # the timed-out attempt holds nothing


def test_blocked_thread_gets_the_lock_when_released():
    m = Mutex()
    m.acquire_blocking()
    w = Worker(lambda: (m.acquire_blocking(JOIN), m.locked()))
    w.start()
    time.sleep(0.1)
    assert w.is_alive()
    m.release()
    assert w.finish() == (True, True)
    m.release()  # not owned: any thread may release
    assert not m.locked()


def test_release_from_another_thread():
    m = Mutex()
    m.acquire_blocking()
    Worker(m.release).start()
    assert m.acquire_blocking(JOIN) is True
    w = Worker(m.release)
    w.start()
    w.finish()
    assert not m.locked()
    w = Worker(m.release)
    w.start()
    with pytest.raises(RuntimeError):
        w.finish()


async def test_blocking_forms_refuse_a_running_loop_thread():
    m = Mutex()
    with pytest.raises(RuntimeError):
        m.acquire_blocking()
    with pytest.raises(RuntimeError):
        m.acquire_blocking(0.1)
    with pytest.raises(RuntimeError):
        with m:
            pytest.fail("entered")
    assert not m.locked()  # nothing taken
    await m.acquire()
    with pytest.raises(RuntimeError):
        m.acquire_blocking(0)
    m.release()
    assert not m.locked()


def test_blocking_forms_refuse_loop_threads_of_both_flavours():
    m = Mutex()

    async def main():
        refused = 0
        for call in (lambda: m.acquire_blocking(), lambda: m.__enter__()):
            try:
                call()
            except RuntimeError:
                refused += 1
        return refused

    assert loop_worker(asyncio.new_event_loop, main).finish() == 2
    assert loop_worker(uvloop.new_event_loop, main).finish() == 2
    assert not m.locked()


async def test_lock_shared_by_a_task_and_a_thread():
    m = Mutex()
    await m.acquire()
    w = Worker(lambda: (m.acquire_blocking(JOIN), m.release()))
    w.start()
    await asyncio.sleep(0.05)
    assert w.is_alive()
    m.release()
    await asyncio.to_thread(w.finish)
    # and the other way round
    await asyncio.to_thread(m.acquire_blocking, 0)
    assert m.locked()
    waiting = asyncio.ensure_future(m.acquire())
    await asyncio.sleep(0.02)
    assert not waiting.done()
    await asyncio.to_thread(m.release)
    await asyncio.wait_for(waiting, JOIN)
    m.release()
    assert not m.locked()
    await idle()


# ---- FIFO -------------------------------------------------------------------------------


async def test_tasks_get_the_lock_in_the_order_they_asked():
    m = Mutex()
    order = []

    async def take(i):
        async with m:
            order.append(i)
            await asyncio.sleep(0)

    await m.acquire()
    tasks = []
    for i in range(30):
        tasks.append(asyncio.ensure_future(take(i)))
        await asyncio.sleep(0)  # task i is queued before task i + 1 starts
    m.release()
    await asyncio.wait_for(asyncio.gather(*tasks), JOIN)
    assert order == list(range(30))
    await idle()


async def test_threads_and_tasks_get_the_lock_in_the_order_they_asked():
    m = Mutex()
    order = []
    await m.acquire()

    def thread_waiter(name, started):
        started.set()
        assert m.acquire_blocking(JOIN)
        order.append(name)
        m.release()

    async def task_waiter(name):
        async with m:
            order.append(name)

    expected, tasks, threads = [], [], []
    for i in range(6):
        name = f"{'thread' if i % 2 else 'task'}-{i}"
        expected.append(name)
        if i % 2:
            started = threading.Event()
            w = Worker(thread_waiter, name, started)
            w.start()
            threads.append(w)
            await asyncio.to_thread(started.wait, JOIN)
            await asyncio.sleep(0.2)  # it is blocked in acquire_blocking by now
        else:
            tasks.append(asyncio.ensure_future(task_waiter(name)))
            await asyncio.sleep(0)
    m.release()
    await asyncio.wait_for(asyncio.gather(*tasks), JOIN)
    for w in threads:
        await asyncio.to_thread(w.finish)
    assert order == expected
    assert not m.locked()
    await idle()


def test_tasks_on_several_loops_get_the_lock_in_order():
    m = Mutex()
    order = []
    m.acquire_blocking()
    base = stats()["waiters"]

    async def one(i):
        async with m:
            order.append(i)

    workers = []
    for i in range(6):
        factory = uvloop.new_event_loop if i % 2 else asyncio.new_event_loop
        workers.append(loop_worker(factory, one, i))
        # a task waiting on a loop is visible in stats: no timing needed
        wait_until(lambda i=i: stats()["waiters"] == base + i + 1, what=f"waiter {i}")
    m.release()
    for w in workers:
        w.finish()
    assert order == list(range(6))
    assert not m.locked()


def test_main_thread_waiter_keeps_its_place_in_line():
    """The main thread waits in 50 ms slices (for Ctrl-C) without leaving the queue."""
    m = Mutex()
    order = []
    held = threading.Event()

    def holder():
        m.acquire_blocking()
        held.set()
        time.sleep(0.15)  # the main thread waits by now ...
        later = Worker(lambda: (m.acquire_blocking(JOIN), order.append("later"), m.release()))
        later.start()  # ... before this thread does
        time.sleep(0.3)
        m.release()
        later.finish()

    w = Worker(holder)
    w.start()
    assert held.wait(JOIN)
    assert m.acquire_blocking(JOIN)
    order.append("main")
    m.release()
    w.finish()
    assert order == ["main", "later"]


# ---- mutual exclusion ----------------------------------------------------------------


def test_mutual_exclusion_across_threads_and_loops():
    """4 threads and 2 loops (3 tasks each) doing read / yield / write under the lock."""
    m = Mutex()
    counter = [0]
    inside = [0]
    violations = []
    per_thread, per_task = 600, 300  # 4 * 600 + 6 * 300 = 4,200 acquisitions

    def enter():
        inside[0] += 1
        if inside[0] != 1:
            violations.append(inside[0])

    def leave():
        inside[0] -= 1

    def thread_body():
        for i in range(per_thread):
            with m:
                enter()
                v = counter[0]
                time.sleep(0)  # let every other thread run here
                counter[0] = v + 1
                leave()
            if i % 50 == 0:
                assert m.acquire_blocking(JOIN)
                m.release()

    async def loop_body():
        async def task():
            for i in range(per_task):
                async with m:
                    enter()
                    v = counter[0]
                    await asyncio.sleep(0)  # let every other task run here
                    counter[0] = v + 1
                    leave()
                if i % 7 == 0:
                    await asyncio.sleep(0)

        await asyncio.gather(task(), task(), task())

    workers = [Worker(thread_body) for _ in range(4)]
    for w in workers:
        w.start()
    workers.append(loop_worker(asyncio.new_event_loop, loop_body))
    workers.append(loop_worker(uvloop.new_event_loop, loop_body))
    for w in workers:
        w.finish()
    assert violations == []
    assert counter[0] == 4 * per_thread + 6 * per_task
    assert not m.locked()
    assert wait_for_pending(0) == 0


# ---- cancellation ---------------------------------------------------------------------


async def test_cancel_right_as_the_lock_is_handed_over():
    m = Mutex()
    order = []

    async def take(i):
        await m.acquire()
        order.append(i)
        m.release()

    for delay in range(6):  # cancel 0..5 loop iterations after the release
        order.clear()
        await m.acquire()
        first = asyncio.ensure_future(take("first"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(take("second"))
        await asyncio.sleep(0)
        m.release()  # handed to first
        for _ in range(delay):
            await asyncio.sleep(0)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(second, JOIN)
        if first.cancelled():
            assert order == ["second"]  # the lock was handed on
        else:
            assert order == ["first", "second"]
        assert not m.locked()
    await idle()


async def test_cancelled_acquire_alone_leaves_the_lock_free():
    m = Mutex()
    for delay in range(6):
        await m.acquire()
        waiter = asyncio.ensure_future(m.acquire())
        await asyncio.sleep(0)
        m.release()  # handed to waiter
        for _ in range(delay):
            await asyncio.sleep(0)
        if waiter.cancel():
            await asyncio.gather(waiter, return_exceptions=True)
            assert waiter.cancelled()
            assert not m.locked()  # not left held on its behalf
        else:
            assert waiter.result() is True
            assert m.locked()
            m.release()
        await assert_usable_async(m)
    await idle()


async def test_acquire_cancel_storm():
    rng = random.Random(31337)
    m = Mutex()
    holder = None
    acquired = []
    violations = []

    async def worker(i):
        nonlocal holder
        await m.acquire()
        if holder is not None:
            violations.append((holder, i))
        holder = i
        acquired.append(i)
        try:
            if rng.random() < 0.5:
                await asyncio.sleep(0)
        finally:
            holder = None
            m.release()
            if rng.random() < 0.3:
                # right as the lock is handed over: cancel a waiter
                waiting = [t for t in tasks if not t.done()]
                if waiting:
                    rng.choice(waiting).cancel()

    n = 400
    await m.acquire()
    tasks = [asyncio.ensure_future(worker(i)) for i in range(n)]
    await asyncio.sleep(0)
    m.release()
    thread_count = [0]

    def thread_contender():
        for _ in range(100):
            with m:
                thread_count[0] += 1
            time.sleep(0.0001)

    contender = Worker(thread_contender)
    contender.start()
    deadline = time.monotonic() + JOIN
    while not all(t.done() for t in tasks):
        assert time.monotonic() < deadline, "lock stuck with waiters queued"
        if rng.random() < 0.3:
            waiting = [t for t in tasks if not t.done()]
            for t in rng.sample(waiting, min(len(waiting), rng.randint(1, 3))):
                t.cancel()
        await asyncio.sleep(rng.choice([0, 0, 0, 0.0002]))
    await asyncio.to_thread(contender.finish)
    assert violations == []
    got = set(acquired)
    assert len(acquired) == len(got)  # nobody acquired twice
    for i, t in enumerate(tasks):
        if not t.cancelled():
            assert t.result() is None
            assert i in got  # every non-cancelled acquirer got it
    cancelled_before_acquiring = [i for i, t in enumerate(tasks) if i not in got]
    assert cancelled_before_acquiring, "the storm cancelled no waiter"
    assert all(tasks[i].cancelled() for i in cancelled_before_acquiring)
    assert thread_count[0] == 100
    assert not m.locked()
    await assert_usable_async(m)
    await idle()


@pytest.mark.parametrize("deadline", ["asyncio.wait_for", "tokio_runtime.timeout"])
async def test_acquire_under_tiny_timeouts(deadline):
    rng = random.Random(8)
    m = Mutex()
    stop = threading.Event()

    def churn():
        n = 0
        while not stop.is_set():
            with m:
                n += 1
        return n

    w = Worker(churn)
    w.start()
    got = timeouts = 0
    for _ in range(1500):
        t = rng.choice([0, 1e-6, 1e-5, 1e-4, 1e-3])
        try:
            await with_deadline(deadline, t, m.acquire())
        except TimeoutError:
            timeouts += 1
            continue
        got += 1
        assert m.locked()
        m.release()
    stop.set()
    assert await asyncio.to_thread(w.finish) > 0
    assert got > 0
    if deadline == "asyncio.wait_for":
        assert timeouts > 0  # a zero timeout always times out there
    await assert_usable_async(m)

    # A certain timeout (held elsewhere far longer): it leaves nothing held.
    held, let_go = threading.Event(), threading.Event()

    def hold():
        m.acquire_blocking()
        held.set()
        assert let_go.wait(JOIN)
        m.release()

    holder = Worker(hold)
    holder.start()
    assert await asyncio.to_thread(held.wait, JOIN)
    with pytest.raises(TimeoutError):
        await with_deadline(deadline, 0.01, m.acquire())
    let_go.set()
    await asyncio.to_thread(holder.finish)
    await assert_usable_async(m)
    await idle()


# ---- loops that close under a waiter --------------------------------------------------


@pytest.mark.parametrize("dead_flavour", ["asyncio", "uvloop"])
@pytest.mark.parametrize("when", ["before the sweep", "after the sweep"])
def test_lock_handed_to_a_closed_loop_passes_on(dead_flavour, when):
    factory = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}[dead_flavour]
    m = Mutex()
    m.acquire_blocking()
    base = stats()["waiters"]
    dead = park_on_a_loop_then_close_it(factory, m.acquire)
    if when == "after the sweep":
        wait_until(lambda: stats()["waiters"] == base, what="the sweep")
    seen = []

    async def live(name, queued):
        # 5 s: far more than the 0.25 s sweep interval
        await queued_then_wait(m.acquire, queued, 5.0)
        seen.append((name, m.locked()))
        await asyncio.sleep(0.3)  # long enough for any stray unlock to land
        seen.append((name, m.locked()))
        m.release()

    queued = [threading.Event(), threading.Event()]
    first = loop_worker(asyncio.new_event_loop, live, "first", queued[0])
    assert queued[0].wait(JOIN)
    second = loop_worker(uvloop.new_event_loop, live, "second", queued[1])
    assert queued[1].wait(JOIN)
    m.release()  # first in line (unless swept): the waiter on the closed loop
    first.finish()
    second.finish()
    # The lock went on in order and stayed held while each one held it.
    assert seen == [("first", True), ("first", True), ("second", True), ("second", True)]
    assert not dead.done()
    assert_usable(m)
    del dead
    gc.collect()
    assert wait_for_pending(0) == 0


def test_lock_delivered_to_a_loop_that_then_closes_passes_on():
    """The hand-off's record reached the loop, which closed before the task ran."""
    m = Mutex()
    m.acquire_blocking()
    parked = threading.Event()
    released = threading.Event()
    base = stats()["waiters"]

    dying = dying_loop_worker(m.acquire, parked, released)
    assert parked.wait(JOIN)

    async def live():
        await asyncio.wait_for(m.acquire(), 5.0)
        m.release()
        return True

    behind = loop_worker(asyncio.new_event_loop, live)
    wait_until(lambda: stats()["waiters"] == base + 2, what="both waiters queued")
    m.release()  # handed to the task on the dying loop
    released.set()
    dead = dying.finish()
    assert not dead.done()  # kept alive by us, it will never run again
    assert behind.finish() is True
    assert_usable(m)
    del dead
    gc.collect()
    assert wait_for_pending(0) == 0


def test_task_destroyed_while_its_hand_off_is_queued_unlocks_once():
    m = Mutex()
    m.acquire_blocking()
    parked = threading.Event()
    go = threading.Event()
    base = stats()["waiters"]
    seen = []

    def run():
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda _loop, ctx: None)
        task = loop.create_task(m.acquire())
        loop.run_until_complete(asyncio.sleep(0.01))
        parked.set()
        assert go.wait(JOIN)
        time.sleep(0.2)  # the hand-off's record waits on this (stopped) loop
        # The task is destroyed before its loop ever runs again (as when the
        # last reference to it goes): its coroutine is closed, the hand-off
        # it had is given on.  Then the loop closes with the record unread.
        task.get_coro().close()
        del task
        loop.close()

    dying = Worker(run)
    dying.start()
    assert parked.wait(JOIN)

    def behind():
        assert m.acquire_blocking(JOIN)
        seen.append(m.locked())
        time.sleep(1.0)  # the closed loop's port is swept meanwhile
        seen.append(m.locked())
        m.release()

    w = Worker(behind)
    w.start()
    wait_until(lambda: stats()["waiters"] == base + 1)
    time.sleep(0.1)  # the thread queues behind the task
    m.release()
    go.set()
    dying.finish()
    w.finish()
    assert seen == [True, True]


# ---- runtime= ----------------------------------------------------------------------


async def test_mutex_bound_to_a_private_runtime():
    rt = Runtime(worker_threads=1, thread_name="mutex-test")
    try:
        m = Mutex(runtime=rt)
        base = stats()["waiters"]
        await m.acquire()
        waiting = asyncio.ensure_future(m.acquire())
        await until(lambda: rt.stats()["waiters"] == 1, what="a waiter on the private runtime")
        assert stats()["waiters"] == base
        m.release()
        assert await asyncio.wait_for(waiting, JOIN) is True
        assert m.locked()

        waiting = asyncio.ensure_future(m.acquire())
        await until(lambda: rt.stats()["waiters"] == 1)
        rt.shutdown()
        with pytest.raises(RuntimeError):
            await m.acquire()  # contended: would have to wait
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting, JOIN)
        assert waiting.cancelled()
        assert m.locked()  # still ours: the cancelled waiter took nothing
        assert rt.stats()["pending"] == 0
        with pytest.raises(RuntimeError):
            async with m:
                pytest.fail("entered")
        m.release()
        assert not m.locked()
        # Uncontended acquire needs no wait, and threads keep working.
        assert await m.acquire() is True
        m.release()
        async with m:
            assert m.locked()
        blocked = Worker(m.acquire_blocking, JOIN)
        await m.acquire()
        blocked.start()
        await asyncio.sleep(0.05)
        m.release()
        assert await asyncio.to_thread(blocked.finish) is True
        assert m.locked()
        m.release()
        assert not m.locked()
    finally:
        rt.shutdown()


def test_mutex_runtime_is_keyword_only():
    with pytest.raises(TypeError):
        Mutex(None)  # type: ignore[misc]


@pytest.mark.parametrize("runtime", ["rt", 42, object(), get_runtime])
async def test_bad_runtime(runtime):
    with pytest.raises(TypeError):
        Mutex(runtime=runtime)
    m = Mutex(runtime=None)  # None: the default runtime
    await m.acquire()
    waiting = asyncio.ensure_future(m.acquire())
    await asyncio.sleep(0)
    m.release()
    assert await asyncio.wait_for(waiting, JOIN) is True
    m.release()


# ---- bad arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (-1, ValueError),
        (-0.5, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("1", TypeError),
        (True, TypeError),
        (object(), TypeError),
    ],
)
def test_bad_timeout(timeout, error):
    m = Mutex()
    with pytest.raises(error):
        m.acquire_blocking(timeout)
    assert not m.locked()  # refused before taking anything
    m.acquire_blocking()
    with pytest.raises(error):
        m.acquire_blocking(timeout)
    assert m.locked()
    m.release()
    assert_usable(m)


# ---- hand-offs woken from the releasing thread --------------------------------------


@pytest.mark.parametrize("factory", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_off_main_thread_releases_wake_the_next_loop_themselves(factory, monkeypatch):
    """A release off the main thread that hands the lock to a coroutine wakes
    the coroutine's loop from the releasing thread (not via the dispatcher),
    both for another thread's loop and for its own loop; each hand-off is
    delivered, in FIFO order."""
    from tokio_runtime._port import Port

    direct = []
    real = Port.wake

    def counting(port, running):
        direct.append(threading.current_thread().name)
        real(port, running)

    monkeypatch.setattr(Port, "wake", counting)
    get_runtime()
    m = Mutex()
    order = []
    rounds = 200

    async def contend(tag):
        for i in range(rounds):
            async with m:
                order.append((tag, i))
                await asyncio.sleep(0)  # hold it across a loop turn: others queue

    async def two_on_one_loop():
        await asyncio.gather(contend("a"), contend("b"))

    thread_loop = loop_worker(factory, two_on_one_loop, name="two-coroutines")
    other_loop = loop_worker(factory, contend, "c", name="third-coroutine")
    thread_loop.finish()
    other_loop.finish()
    assert sorted(order) == sorted((t, i) for t in "abc" for i in range(rounds))
    for tag in "abc":  # each coroutine's own acquisitions in order
        assert [i for t, i in order if t == tag] == list(range(rounds))
    assert direct, "no release took the direct path"
    assert set(direct) <= {"two-coroutines", "third-coroutine"}
    assert_usable(m)


def test_main_thread_releases_wake_the_loop_themselves(monkeypatch):
    """The main thread delivers its hand-offs too (Ctrl-C there can only
    delay a wake, never lose it: see test_interrupts)."""
    from tokio_runtime._port import Port

    calls = []
    real = Port.wake

    def counting(port, running):
        calls.append(threading.current_thread().name)
        real(port, running)

    monkeypatch.setattr(Port, "wake", counting)
    m = Mutex()
    got = threading.Event()

    async def waiter():
        async with m:
            got.set()

    assert m.acquire_blocking(JOIN)
    w = loop_worker(asyncio.new_event_loop, waiter)
    wait_until(lambda: stats()["waiters"] == 1, what="a queued coroutine")
    m.release()  # on the main thread: this thread wakes the loop
    assert got.wait(JOIN)
    w.finish()
    assert calls == [threading.main_thread().name]
    assert_usable(m)
