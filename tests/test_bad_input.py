"""Every public callable, fed anything: the documented exception, never a
crash, and the runtime works afterwards.

Hypothesis draws arguments from a pool of wrong types, negatives, NaN and
infinities, huge ints and ``None``; a small model of each argument check
(what the docstrings promise) says which exception, if any, is due:

* durations (``sleep``, ``timeout``, ``spawn_background``'s interval, the
  ``timeout=`` of blocking calls and ``shutdown``): ``TypeError`` for a
  non-number (``bool`` included), ``ValueError`` outside 0 .. 1e9 or NaN;
* counts (``spawn_background``, ``Channel`` capacity, ``recv_many``):
  ``TypeError`` for a non-int (``bool`` and ``float`` included), ``ValueError``
  out of range;
* the seed functions, like the PyO3 original: ``TypeError`` for a non-int,
  ``OverflowError`` below 0 or above 2**64-1;
* blocking forms on a thread whose loop is running, and anything needing a
  loop called without one: ``RuntimeError``.

A valid call is carried out and cleaned up (cancelled, drained, released).
"""

from __future__ import annotations

import asyncio
import math
import numbers
import operator
import threading
from decimal import Decimal
from fractions import Fraction

import pytest
from conftest import LOOP_FACTORIES, wait_for_pending
from helpers import JOIN, Worker, stats
from hypothesis import given
from hypothesis import strategies as st

import tokio_runtime as tr
from tokio_runtime import _default

U64_MAX = 2**64 - 1
EXPECTED = (TypeError, ValueError, OverflowError, RuntimeError)


class Index:
    """An int-like object (``__index__``), as numpy integers are."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return f"Index({self.value})"


GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-5, max_value=50),
    st.sampled_from([2**31, 2**32, 2**40, 2**40 + 1, 2**62, 2**62 + 1, 2**63 - 1, 2**63]),
    st.sampled_from([U64_MAX, 2**64, 10**400, -(10**400), 10**9, 10**9 + 1]),
    st.floats(),
    st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e-9, 1e9, 1e308]),
    st.sampled_from([1e9 + 1, 2.0**63, 2.0**64]),
    st.fractions(max_denominator=1000),
    st.sampled_from([Fraction(10**400), Fraction(-(10**400)), Fraction(1, 10**400)]),
    st.decimals(),
    st.sampled_from([Decimal("0.5"), Decimal("NaN"), Decimal("Infinity")]),
    st.complex_numbers(max_magnitude=10),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=3),
    st.builds(Index, st.integers(min_value=-10, max_value=2**65)),
    st.builds(object),
)


# ---- the model of the checks ----------------------------------------------------------


def want_seconds(v, nullable=False):
    if nullable and v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return TypeError
    try:
        f = float(v)
    except OverflowError:  # an exact number (int, Fraction) beyond any float
        f = math.inf if v > 0 else -math.inf
    return None if 0.0 <= f <= 1e9 else ValueError


def want_int(v, low, high):
    if isinstance(v, (bool, float)):
        return TypeError
    try:
        i = operator.index(v)
    except TypeError:
        return TypeError
    return None if low <= i <= high else ValueError


def want_u64(v):
    try:
        i = operator.index(v)
    except TypeError:
        return TypeError
    return None if 0 <= i <= U64_MAX else OverflowError


def first(*wants):
    """The error of the first bad argument (they are checked in order)."""
    return next((w for w in wants if w is not None), None)


def attempt(call):
    """``(result, None)`` or ``(None, exception)`` for an expected exception type;
    anything else (an AttributeError, a SystemError, ...) fails the test."""
    try:
        return call(), None
    except EXPECTED as exc:
        return None, exc


def check(what, want, err):
    if want is None:
        assert err is None, f"{what}: unexpected {err!r}"
    else:
        assert isinstance(err, want), f"{what}: expected {want.__name__}, got {err!r}"


async def settle(aw):
    """Cancel a future, task or handle and wait for it to end."""
    aw.cancel()
    try:
        await aw
    except asyncio.CancelledError:
        pass


# ---- a loop of each flavour, kept for the module ---------------------------------------


@pytest.fixture(scope="module", params=list(LOOP_FACTORIES))
def loop(request):
    loop = LOOP_FACTORIES[request.param]()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture(autouse=True)
def runtime_still_works(request):
    yield
    if "loop" not in request.fixturenames:
        return

    async def works():
        ch, lock = tr.Channel(2), tr.Mutex()
        await ch.send("x")
        async with lock:
            return await tr.sleep(0, await ch.recv()), await tr.with_timeout(0, 1)

    loop = request.getfixturevalue("loop")
    assert loop.run_until_complete(works()) == ("x", "Operation completed")
    assert wait_for_pending(0) == 0
    assert stats()["waiters"] == 0


# ---- durations -----------------------------------------------------------------------


@given(v=GARBAGE, aw=st.sampled_from(["awaitable", "garbage"]))
def test_durations(loop, v, aw):
    rt = _default.get_runtime()
    want = want_seconds(v)

    async def go():
        fut, err = attempt(lambda: tr.sleep(v, "r"))
        check("sleep", want, err)
        if fut is not None:
            await settle(fut)
        fut, err = attempt(lambda: rt.sleep(v))
        check("Runtime.sleep", want, err)
        if fut is not None:
            await settle(fut)
        for what, spawn in [
            ("spawn_background", tr.spawn_background),
            ("Runtime", rt.spawn_background),
        ]:
            handle, err = attempt(lambda spawn=spawn: spawn(1, v))
            check(f"{what} interval", want, err)
            if handle is not None:
                handle.cancel()
                try:
                    assert await handle == 1  # it may have fired first
                except asyncio.CancelledError:
                    pass
        if aw == "awaitable":
            inner = loop.create_future()
            inner.set_result("inner")  # done: awaiting it never yields
        else:
            inner = v
        for what, timeout in [("timeout", tr.timeout), ("Runtime.timeout", rt.timeout)]:
            coro, err = attempt(lambda timeout=timeout: timeout(v, inner))
            check(what, first(want, None if aw == "awaitable" else TypeError), err)
            if coro is not None:
                assert await coro == "inner"

    loop.run_until_complete(go())


@given(v=GARBAGE)
def test_blocking_timeouts_on_a_plain_thread(v):
    want = want_seconds(v, nullable=True)
    ch, lock = tr.Channel(1), tr.Mutex()
    # Set up so that every valid call returns at once.
    _, err = attempt(lambda: ch.send_blocking("item", v))
    check("send_blocking", want, err)
    assert len(ch) == (1 if want is None else 0)  # a refused send queued nothing
    ch.try_send("other") if want is not None else None
    got, err = attempt(lambda: ch.recv_blocking(v))
    check("recv_blocking", want, err)
    assert got == (None if want is not None else "item")
    held, err = attempt(lambda: lock.acquire_blocking(v))
    check("acquire_blocking", want, err)
    assert lock.locked() == (want is None) and held in (None, True)
    if held:
        lock.release()
    rt = tr.Runtime(worker_threads=1)
    _, err = attempt(lambda: rt.shutdown(v))
    check("Runtime.shutdown", want, err)
    assert rt.closed == (want is None)  # a refused shutdown did not start
    rt.shutdown()


@given(v=GARBAGE)
def test_blocking_forms_refuse_a_running_loop_thread(loop, v):
    """On a loop thread: the argument error if the timeout is bad, else
    RuntimeError, and nothing sent, taken or locked."""
    want = first(want_seconds(v, nullable=True), RuntimeError)
    ch, lock = tr.Channel(1), tr.Mutex()

    async def go():
        for what, call in [
            ("send_blocking", lambda: ch.send_blocking("x", v)),
            ("recv_blocking", lambda: ch.recv_blocking(v)),
            ("acquire_blocking", lambda: lock.acquire_blocking(v)),
        ]:
            check(what, want, attempt(call)[1])
        with pytest.raises(RuntimeError):
            with lock:
                pass
        assert len(ch) == 0 and not lock.locked()

    loop.run_until_complete(go())


# ---- counts ------------------------------------------------------------------------------


@given(v=GARBAGE)
def test_counts(loop, v):
    async def go():
        handle, err = attempt(lambda: tr.spawn_background(v, 0.001))
        check("spawn_background count", want_int(v, 0, 2**63 - 1), err)
        if handle is not None:
            await settle(handle)
        ch, err = attempt(lambda: tr.Channel(v))
        check("Channel capacity", want_int(v, 1, 2**40), err)
        if ch is not None:
            ch.try_send(1)
            assert ch.try_recv() == 1 and ch.capacity == operator.index(v)
        ch = tr.Channel(8)
        for i in range(3):
            ch.try_send(i)
        got, err = await _attempt_async(lambda: ch.recv_many(v))
        want = want_int(v, 1, 2**62)
        check("recv_many", want, err)
        if want is None:
            assert got == list(range(min(3, operator.index(v))))
        else:
            assert len(ch) == 3  # a refused call takes nothing

    loop.run_until_complete(go())


async def _attempt_async(make):
    try:
        return await make(), None
    except EXPECTED as exc:
        return None, exc


# ---- the seed functions --------------------------------------------------------------------


@pytest.fixture
def recorded_tickers(monkeypatch):
    """spawn_background_task returns no handle: record its tickers, to stop them."""
    handles = []
    real = _default.get_runtime()

    class Recorder:
        def spawn_background(self, *args, **kwargs):
            handles.append(real.spawn_background(*args, **kwargs))
            return handles[-1]

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(tr.demos, "get_runtime", Recorder)
    return handles


SMALL = st.integers(min_value=0, max_value=200)
HUGE_COUNTS = st.integers(min_value=2**58, max_value=2**66)  # refused before any allocation


@given(a=st.one_of(GARBAGE, SMALL), b=st.one_of(GARBAGE, SMALL))
def test_seed_functions(loop, recorded_tickers, a, b):
    async def go():
        fut, err = attempt(lambda: tr.spawn_background_task(a, b))
        check("spawn_background_task", first(want_u64(a), want_u64(b)), err)
        if fut is not None:
            assert await fut == f"Spawned background task with {operator.index(a)} iterations"
        while recorded_tickers:
            await settle(recorded_tickers.pop())

        fut, err = attempt(lambda: tr.with_timeout(a, b))
        check("with_timeout", first(want_u64(a), want_u64(b)), err)
        if fut is not None:
            if operator.index(a) <= 5 or operator.index(b) <= 5:  # settled at once
                try:
                    assert await fut == "Operation completed"
                    assert operator.index(a) <= operator.index(b)
                except TimeoutError as exc:
                    assert operator.index(a) > operator.index(b)
                    assert str(exc).startswith(f"Operation timed out after {operator.index(b)}ms")
            else:
                await settle(fut)

        fut, err = attempt(lambda: tr.channel_demo(a))
        check("channel_demo", want_u64(a), err)
        if fut is not None:
            await settle(fut)

    loop.run_until_complete(go())


@given(n=st.one_of(GARBAGE.filter(lambda v: want_u64(v) is not None), SMALL, HUGE_COUNTS))
def test_shared_counter_demo(loop, n):
    too_many = want_u64(n) is None and operator.index(n) >= 2**58

    async def go():
        try:
            fut, err = attempt(lambda: tr.shared_counter_demo(n))
        except MemoryError:
            # In range for u64, but no memory could hold that many tasks:
            # refused at call time, before anything is allocated.
            assert too_many, n
            return
        assert not too_many, n
        check("shared_counter_demo", want_u64(n), err)
        if fut is not None:
            assert await fut == operator.index(n)

    loop.run_until_complete(go())


URLS = st.one_of(
    GARBAGE,
    st.lists(st.text(max_size=3), max_size=5),
    st.tuples(st.text(max_size=3), st.text(max_size=3)),
    st.lists(st.one_of(st.text(max_size=3), GARBAGE), max_size=4),
)


@given(urls=URLS)
def test_concurrent_tasks(loop, urls):
    is_seq = isinstance(urls, (list, tuple))
    ok = is_seq and all(isinstance(u, str) for u in urls)

    async def go():
        fut, err = attempt(lambda: tr.concurrent_tasks(urls))
        check("concurrent_tasks", None if ok else TypeError, err)
        if fut is not None:
            if urls:
                await settle(fut)
            else:
                assert await fut == []

    loop.run_until_complete(go())


# ---- constructors, callbacks, wrong arity ------------------------------------------------


@given(workers=GARBAGE, name=st.one_of(GARBAGE, st.text(max_size=70)))
def test_runtime_constructor(workers, name):
    want_w = TypeError if isinstance(workers, bool) else want_int(workers, 1, 256)
    if isinstance(name, str):
        try:
            raw = name.encode("utf-8")
            want_n = None if 0 < len(raw) < 64 and b"\0" not in raw else ValueError
        except UnicodeEncodeError:
            want_n = ValueError
    else:
        want_n = TypeError
    want = first(want_w, want_n)
    if want is None and operator.index(workers) > 4:
        workers = 2  # a valid count: no need to start hundreds of threads
    rt, err = attempt(lambda: tr.Runtime(worker_threads=workers, thread_name=name))
    check("Runtime", want, err)
    if rt is not None:
        rt.shutdown()


@given(v=GARBAGE)
def test_channel_and_mutex_runtime_argument(v):
    # None is the default runtime; anything else must be a Runtime.
    want = None if v is None else TypeError
    check("Channel(runtime=)", want, attempt(lambda: tr.Channel(1, runtime=v))[1])
    check("Mutex(runtime=)", want, attempt(lambda: tr.Mutex(runtime=v))[1])


@given(cb=st.one_of(GARBAGE, st.just(print), st.just(lambda i: None)))
def test_on_tick(loop, cb):
    async def go():
        handle, err = attempt(lambda: tr.spawn_background(2, 0, on_tick=cb))
        check("on_tick", None if cb is None or callable(cb) else TypeError, err)
        if handle is not None:
            await settle(handle)

    loop.run_until_complete(go())


@given(args=st.lists(GARBAGE, max_size=6))
def test_task_handle_cannot_be_built_from_garbage(args):
    with pytest.raises(TypeError):
        tr.TaskHandle(*args)


@given(extra=st.lists(GARBAGE, min_size=1, max_size=3))
def test_wrong_arity_is_a_type_error(loop, extra):
    ch, lock, rt = tr.Channel(1), tr.Mutex(), _default.get_runtime()

    async def go():
        handle = tr.spawn_background(1, 0)
        calls = [
            ch.close,
            ch.try_recv,
            lock.release,
            lock.locked,
            rt.stats,
            tr.get_runtime,
            handle.cancel,
            handle.done,
            handle.cancelled,
            handle.ticks,
            lambda *a: tr.sleep(0, None, *a),
            lambda *a: tr.spawn_background(1, 1, None, *a),
            lambda *a: ch.try_send(1, *a),
            lambda *a: ch.send_blocking(1, None, *a),
            lambda *a: tr.channel_demo(1, *a),
            lambda *a: tr.with_timeout(1, 1, *a),
        ]
        for call in calls:
            with pytest.raises(TypeError):
                call(*extra)
        with pytest.raises(TypeError):
            tr.configure(*extra)  # keyword-only
        await handle

    loop.run_until_complete(go())


@given(workers=st.one_of(GARBAGE, st.none()), name=st.one_of(GARBAGE, st.text(max_size=70)))
def test_configure_checks_before_the_runtime_starts(monkeypatch, workers, name):
    """configure() validates like Runtime() while the default runtime does not
    exist yet (simulated here), and raises RuntimeError once it does."""
    config = dict(_default._config)
    monkeypatch.setattr(_default, "_default", None)
    try:
        _, err = attempt(lambda: tr.configure(worker_threads=workers, thread_name=name))
    finally:
        _default._config.clear()
        _default._config.update(config)
    want_w = None if workers is None else _want_workers(workers)
    want_n = None if name is None else _want_name(name)
    check("configure", first(want_w, want_n), err)
    monkeypatch.undo()
    check("configure after start", RuntimeError, attempt(lambda: tr.configure(thread_name=name))[1])


def _want_workers(v):
    return TypeError if isinstance(v, bool) else want_int(v, 1, 256)


def _want_name(v):
    if not isinstance(v, str):
        return TypeError
    try:
        raw = v.encode("utf-8")
    except UnicodeEncodeError:
        return ValueError
    return None if 0 < len(raw) < 64 and b"\0" not in raw else ValueError


# ---- no running loop -------------------------------------------------------------------------


@given(v=GARBAGE)
def test_loop_bound_calls_without_a_loop(v):
    """With valid arguments they raise RuntimeError; with bad ones, the
    argument error comes first (checked before the loop is looked up)."""
    for what, want, call in [
        ("sleep", want_seconds(v), lambda: tr.sleep(v)),
        ("spawn_background", want_int(v, 0, 2**63 - 1), lambda: tr.spawn_background(v, 1)),
        ("spawn_background_task", want_u64(v), lambda: tr.spawn_background_task(v, 1)),
        ("with_timeout", want_u64(v), lambda: tr.with_timeout(v, 1)),
        ("channel_demo", want_u64(v), lambda: tr.channel_demo(v)),
        ("shared_counter_demo", want_u64(v), lambda: tr.shared_counter_demo(v)),
    ]:
        if what == "shared_counter_demo" and want is None and operator.index(v) >= 2**58:
            continue  # refused as too big, but only once a loop is there
        check(what, first(want, RuntimeError), attempt(call)[1])


def test_runtime_serves_other_threads_after_all_that():
    results = []

    def use():
        async def go():
            return await tr.shared_counter_demo(100), await tr.channel_demo(2)

        results.append(asyncio.run(go()))

    workers = [Worker(use) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.finish(JOIN)
    assert results == [(100, ["Message 0", "Message 1"])] * 4
    assert threading.active_count() < 50
