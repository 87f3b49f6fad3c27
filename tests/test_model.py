"""Random operation sequences on Channel and Mutex, checked against a model.

Hypothesis' stateful testing drives a ``Channel`` (a deque and a closed
flag as the model) and a ``Mutex`` (one "held" flag) through random
sequences of non-blocking, blocking (from a second thread), async and
cancelled calls, on stdlib asyncio and on uvloop.  After every step the
model and the real object must agree: items conserved, FIFO, capacity
respected, close semantics, the lock held exactly when the model says,
and no native waiter left queued.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import LOOP_FACTORIES
from helpers import stats, until
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import tokio_runtime as tr
from tokio_runtime import ChannelClosed, ChannelEmpty, ChannelFull

ITEMS = st.integers(min_value=0, max_value=10**6)
SHORT = 0.005  # a blocking call that must time out waits this long


class Machine(RuleBasedStateMachine):
    """Shared by both machines: a loop of the chosen flavour and a second thread."""

    flavour = "asyncio"

    def __init__(self):
        super().__init__()
        self.loop = LOOP_FACTORIES[self.flavour]()
        self.other = ThreadPoolExecutor(1)

    def teardown(self):
        self.other.shutdown(wait=True)
        self.loop.run_until_complete(until(lambda: stats()["waiters"] == 0))
        self.loop.close()

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def in_thread(self, fn, *args):
        return self.other.submit(fn, *args).result(timeout=30)

    def start_waiting(self, coro):
        """Start ``coro`` as a task and return it once it waits natively."""

        async def go():
            before = stats()["waiters"]
            task = asyncio.ensure_future(coro)
            await until(lambda: stats()["waiters"] == before + 1, what="a queued waiter")
            return task

        return self.run(go())

    def finish(self, task):
        async def go():
            try:
                return await asyncio.wait_for(task, 30), None
            except (asyncio.CancelledError, ChannelClosed, TimeoutError) as exc:
                return None, exc

        return self.run(go())

    @invariant()
    def no_waiter_left(self):
        assert stats()["waiters"] == 0


def outcome(fn, *args):
    try:
        return fn(*args), None
    except (ChannelClosed, ChannelEmpty, ChannelFull, TimeoutError, RuntimeError) as exc:
        return None, type(exc)


class ChannelMachine(Machine):
    @initialize(capacity=st.integers(min_value=1, max_value=5))
    def make(self, capacity):
        self.ch = tr.Channel(capacity)
        self.cap = capacity
        self.model = deque()
        self.closed = False

    def full(self):
        return len(self.model) >= self.cap

    def want_send(self):
        if self.closed:
            return ChannelClosed  # closed wins over full
        return ChannelFull if self.full() else None

    def take_model(self):
        if self.model:
            return self.model.popleft(), None
        return None, ChannelClosed if self.closed else ChannelEmpty

    # -- non-blocking, on this thread or the other one --------------------------
    @rule(item=ITEMS, elsewhere=st.booleans())
    def try_send(self, item, elsewhere):
        want = self.want_send()
        if elsewhere:
            got = self.in_thread(outcome, self.ch.try_send, item)
        else:
            got = outcome(self.ch.try_send, item)
        assert got == (None, want)
        if want is None:
            self.model.append(item)

    @rule(elsewhere=st.booleans())
    def try_recv(self, elsewhere):
        want = self.take_model()
        got = self.in_thread(outcome, self.ch.try_recv) if elsewhere else outcome(self.ch.try_recv)
        assert got == want

    # -- blocking, from the other thread -----------------------------------------
    @rule(item=ITEMS)
    def send_blocking(self, item):
        want = self.want_send()
        if want is ChannelFull:
            want = TimeoutError
        assert self.in_thread(outcome, self.ch.send_blocking, item, SHORT) == (None, want)
        if want is None:
            self.model.append(item)

    @rule()
    def recv_blocking(self):
        want_item, want = self.take_model()
        if want is ChannelEmpty:
            want = TimeoutError
        assert self.in_thread(outcome, self.ch.recv_blocking, SHORT) == (want_item, want)

    # -- async ---------------------------------------------------------------------
    @precondition(lambda self: self.model or self.closed)  # else it would wait
    @rule(k=st.integers(min_value=1, max_value=8))
    def recv_many(self, k):
        got, exc = self.finish(asyncio.ensure_future(self.ch.recv_many(k), loop=self.loop))
        if not self.model:
            assert isinstance(exc, ChannelClosed)
            return
        want = [self.model.popleft() for _ in range(min(k, len(self.model)))]
        assert (got, exc) == (want, None)

    @precondition(lambda self: not self.model and not self.closed)
    @rule(item=ITEMS)
    def recv_woken_by_the_other_thread(self, item):
        task = self.start_waiting(self.ch.recv())
        self.in_thread(self.ch.try_send, item)
        assert self.finish(task) == (item, None)

    @precondition(lambda self: self.full() and not self.closed)
    @rule(item=ITEMS)
    def send_woken_by_the_other_thread(self, item):
        task = self.start_waiting(self.ch.send(item))
        assert self.in_thread(self.ch.try_recv) == self.model.popleft()
        assert self.finish(task) == (None, None)
        self.model.append(item)

    @precondition(lambda self: not self.model and not self.closed)
    @rule(item=ITEMS, before=st.booleans())
    def cancelled_recv_takes_nothing(self, item, before):
        task = self.start_waiting(self.ch.recv())
        if before:
            task.cancel()
        self.in_thread(self.ch.try_send, item)  # woken as it is cancelled, or after
        task.cancel()
        got, exc = self.finish(task)
        if exc is None:  # it ran before the cancel landed: it took the item
            assert got == item
        else:
            assert isinstance(exc, asyncio.CancelledError)
            self.model.append(item)

    @precondition(lambda self: self.full() and not self.closed)
    @rule(item=ITEMS)
    def cancelled_send_queues_nothing(self, item):
        task = self.start_waiting(self.ch.send(item))
        task.cancel()
        _, exc = self.finish(task)
        assert isinstance(exc, asyncio.CancelledError)

    @precondition(lambda self: (not self.model or self.full()) and not self.closed)
    @rule(item=ITEMS)
    def close_wakes_a_waiter(self, item):
        # A receiver waits on an empty channel, a sender on a full one.
        task = self.start_waiting(self.ch.send(item) if self.model else self.ch.recv())
        self.in_thread(self.ch.close)
        self.closed = True
        _, exc = self.finish(task)
        assert isinstance(exc, ChannelClosed)  # and a sender's item was not queued

    @rule(elsewhere=st.booleans())
    def close(self, elsewhere):
        (self.in_thread if elsewhere else (lambda f: f()))(self.ch.close)
        self.closed = True

    @precondition(lambda self: self.closed)
    @rule()
    def async_for_drains(self):
        async def drain():
            return [item async for item in self.ch]

        assert self.run(drain()) == list(self.model)
        self.model.clear()

    @invariant()
    def agrees(self):
        if not hasattr(self, "ch"):
            return
        assert len(self.ch) == len(self.model) <= self.cap
        assert self.ch.closed == self.closed
        assert self.ch.capacity == self.cap


class MutexMachine(Machine):
    @initialize()
    def make(self):
        self.m = tr.Mutex()
        self.held = False

    @rule(elsewhere=st.booleans())
    def acquire_blocking(self, elsewhere):
        # On this (main) thread: a zero timeout; on the other, a short one.
        if elsewhere:
            got = self.in_thread(self.m.acquire_blocking, SHORT)
        else:
            got = self.m.acquire_blocking(0)
        assert got is (not self.held)
        self.held = True

    @rule(elsewhere=st.booleans())
    def release(self, elsewhere):
        got = self.in_thread(outcome, self.m.release) if elsewhere else outcome(self.m.release)
        assert got == (None, None if self.held else RuntimeError)
        self.held = False

    @precondition(lambda self: not self.held)
    @rule()
    def with_block_in_the_other_thread(self):
        def use():
            with self.m:
                return self.m.locked()

        assert self.in_thread(use) is True

    @rule()
    def acquire_async(self):
        if not self.held:
            assert self.run(self.m.acquire()) is True
            self.held = True
            return
        task = self.start_waiting(self.m.acquire())
        self.in_thread(self.m.release)  # handed straight to the waiting task
        assert self.finish(task) == (True, None)

    @precondition(lambda self: self.held)
    @rule()
    def cancelled_acquire_leaves_the_lock_alone(self):
        task = self.start_waiting(self.m.acquire())
        task.cancel()
        _, exc = self.finish(task)
        assert isinstance(exc, asyncio.CancelledError)

    @precondition(lambda self: self.held)
    @rule(cancel_first=st.booleans())
    def release_as_the_waiter_is_cancelled(self, cancel_first):
        task = self.start_waiting(self.m.acquire())
        if cancel_first:
            task.cancel()
            self.m.release()
        else:
            self.m.release()
            task.cancel()
        got, _ = self.finish(task)
        self.held = got is True  # it won the race, or the lock went free

    @precondition(lambda self: self.held)
    @rule()
    def acquire_under_a_timeout(self):
        _, exc = self.finish(
            asyncio.ensure_future(tr.timeout(SHORT, self.m.acquire()), loop=self.loop)
        )
        assert isinstance(exc, TimeoutError)

    @invariant()
    def agrees(self):
        if hasattr(self, "m"):
            assert self.m.locked() is self.held

    def teardown(self):
        if getattr(self, "held", False):
            self.m.release()
        super().teardown()


def machine_test(machine, flavour):
    cls = type(f"{machine.__name__}_{flavour}", (machine,), {"flavour": flavour})
    case = cls.TestCase
    case.settings = settings(max_examples=60, stateful_step_count=30)
    return case


@pytest.mark.parametrize("flavour", list(LOOP_FACTORIES))
@pytest.mark.parametrize("machine", [ChannelMachine, MutexMachine])
def test_state_machine(machine, flavour):
    machine_test(machine, flavour)().runTest()
