"""Checks of the C API example (examples/capi), run INSIDE the example's own venv.

``tests/test_capi_example.py`` builds a fresh virtual environment with the
tokio_runtime wheel and the example extension installed, then runs
``python capi_example_checks.py CHECK LOOP`` there, once per check and loop
kind (``asyncio`` or ``uvloop``).  Each check raises on failure and the
script prints ``ok CHECK LOOP`` at the end, after checking that the
extension's native objects (jobs, producer threads) were all freed.

Not collected by pytest (no ``test_`` prefix): tokio_runtime here is the
installed wheel, not the source tree, and tr_capi_example is only in that venv.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import zlib

import tr_capi_example as ex
import uvloop

import tokio_runtime as tr

JOIN = 30.0  # generous bound for what should take milliseconds
CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


async def until(cond, what, timeout=JOIN):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


async def join(producer):
    return await asyncio.to_thread(ex.producer_join, producer)


async def expect(exc_type, awaitable):
    """Await; "raised" if it raised exc_type, else AssertionError."""
    try:
        await awaitable
    except exc_type:
        return "raised"
    raise AssertionError(f"{awaitable!r} did not raise {exc_type.__name__}")


def expect_now(exc_type, fn, *args):
    """Call; True if it raised exc_type, else AssertionError."""
    try:
        fn(*args)
    except exc_type:
        return True
    raise AssertionError(f"{fn.__name__}{args!r} did not raise {exc_type.__name__}")


_ZEROS = []


def zeros_stream():
    """zlib data of 128 MiB of zeros (~0.6 MB): ~0.25 s of inflate, made in ~0.2 s."""
    if not _ZEROS:
        _ZEROS.append(zlib.compress(bytes(128 << 20), 1))
    return _ZEROS[0]


def buffers(n, size=4096):
    """n buffers of size bytes, from incompressible to very compressible."""
    out = []
    for i in range(n):
        noise = os.urandom(size * (i % 4) // 4)
        out.append(noise + bytes([i % 251]) * (size - len(noise)))
    return out


# ---- zlib on the runtime's workers ---------------------------------------------------


@check
async def zlib_round_trips():
    with tr.Runtime(worker_threads=2) as rt:
        data = buffers(400)
        packed = await asyncio.gather(*[ex.zcompress(d, runtime=rt) for d in data])
        assert [zlib.decompress(p) for p in packed] == data
        # Levels behave as zlib's, and zdecompress reverses zlib.compress.
        assert await ex.zcompress(data[3], level=9, runtime=rt) == zlib.compress(data[3], 9)
        plain = await asyncio.gather(
            *[ex.zdecompress(zlib.compress(d), runtime=rt) for d in data[:50]]
        )
        assert plain == data[:50]
        big = os.urandom(1 << 20) + b"z" * (5 << 20)  # several inflate steps
        assert await ex.zdecompress(zlib.compress(big, 1), runtime=rt) == big
        # The input is copied at the start: the caller may reuse its buffer.
        buf = bytearray(data[1])
        c = rt.completion()
        assert ex.zcompress_start(c, buf, 6) is None
        buf[:] = b"\0" * len(buf)
        assert zlib.decompress(await c) == data[1]
        assert await ex.zcompress(b"", runtime=rt) == zlib.compress(b"")
        # zlib failures complete the promise with TR_EINVAL: ValueError.
        for bad in (b"not zlib at all", zlib.compress(data[0])[:-9]):
            await expect(ValueError, ex.zdecompress(bad, runtime=rt))
        x5000 = zlib.compress(b"x" * 5000)
        await expect(ValueError, ex.zdecompress(x5000, max_size=4999, runtime=rt))
        assert await ex.zdecompress(x5000, max_size=5000, runtime=rt) == b"x" * 5000
        assert expect_now(ValueError, ex.zcompress_start, rt.completion(), b"abc", 10)
        # The default runtime, too.
        assert zlib.decompress(await ex.zcompress(data[5])) == data[5]


@check
async def zlib_cancel():
    with tr.Runtime(worker_threads=1) as rt:
        # A long decompression (it polls its cancel flag between 1 MiB steps)
        # keeps the only worker busy.
        long_job = asyncio.ensure_future(ex.zdecompress(zeros_stream(), runtime=rt))
        await until(lambda: rt.stats()["native_running"] == 1, "the long job to start")
        # Jobs queued behind it, cancelled before they start: their function
        # never runs; the worker that skips them calls their drop callback,
        # which frees them.
        queued = [asyncio.ensure_future(ex.zcompress(b"q" * 4096, runtime=rt)) for _ in range(50)]
        await asyncio.sleep(0)
        assert rt.stats()["native_queued"] == 50
        assert ex.live_counts()["jobs"] == 51
        # A completion cancelled from Python right after its start.
        c = rt.completion()
        ex.zcompress_start(c, b"abc", 6)
        c.cancel()
        long_job.cancel()
        for t in queued:
            t.cancel()
        for t in [long_job, *queued, c]:
            assert await expect(asyncio.CancelledError, t) == "raised"
        await until(lambda: rt.stats()["pending"] == 0, "the runtime to be idle")
        await until(lambda: ex.live_counts()["jobs"] == 0, "the skipped jobs to be dropped")
        # Cancelled while its function runs, in compress2 (which cannot stop
        # early): the future is cancelled at once; the job is dropped (freed)
        # when its function returns.
        text = b"".join(b"line %d of some text with words\n" % i for i in range(300_000))
        running = asyncio.ensure_future(ex.zcompress(text, level=9, runtime=rt))
        await until(lambda: rt.stats()["native_running"] == 1, "the compression to start")
        running.cancel()
        assert await expect(asyncio.CancelledError, running) == "raised"
        assert ex.live_counts()["jobs"] == 1  # its function still runs
        await until(lambda: ex.live_counts()["jobs"] == 0, "the running job to free itself")
        # One job per completion: a second start is refused, the first one lives on.
        c = rt.completion()
        ex.zcompress_start(c, b"once", 6)
        assert expect_now(ValueError, ex.zcompress_start, c, b"twice", 6)
        assert zlib.decompress(await c) == b"once"
        assert expect_now(ValueError, ex.zcompress_start, c, b"again", 6)  # had its job
        # A cancelled completion is refused (promise_run: TR_CANCELLED).
        c = rt.completion()
        c.cancel()
        assert expect_now(RuntimeError, ex.zcompress_start, c, b"late", 6)
        assert ex.live_counts()["jobs"] == 0


# ---- channels ----------------------------------------------------------------------------


@check
async def c_producer_stream():
    n = 100_000
    ch = tr.Channel(1024)
    p = ex.producer_start(ch, n, close=True)
    got = [x async for x in ch]
    assert got == list(range(n)), "async for: not exactly once in order"
    assert await join(p) == (n, ex.TR_OK)

    ch = tr.Channel(4096)
    p = ex.producer_start(ch, n, start=-(2**62), close=True)  # boxed ints, too
    got = []
    while True:
        try:
            got += await ch.recv_many(4096)
        except tr.ChannelClosed:
            break
    assert got == list(range(-(2**62), -(2**62) + n)), "recv_many: not exactly once in order"
    assert await join(p) == (n, ex.TR_OK)

    ch = tr.Channel(16)
    p = ex.producer_start(ch, 1000, start=7, close=True, as_bytes=True)
    assert [x async for x in ch] == [str(i).encode() for i in range(7, 1007)]
    assert await join(p) == (1000, ex.TR_OK)
    del p
    gc.collect()


@check
async def mixed_producers():
    """A C thread and a Python coroutine (and a Python thread) on one channel."""
    n = 20_000
    ch = tr.Channel(64)
    c_producer = ex.producer_start(ch, n)  # 0 .. n-1

    async def py_producer():
        for i in range(n):
            await ch.send(10**9 + i if i % 10 else f"s{i}")  # values and Python objects

    def thread_producer():
        for i in range(n // 4):
            ch.send_blocking(b"t%d" % i)

    thread = threading.Thread(target=thread_producer)
    thread.start()

    async def close_when_done():
        await py_task
        assert await join(c_producer) == (n, ex.TR_OK)
        await asyncio.to_thread(thread.join)
        ch.close()

    py_task = asyncio.ensure_future(py_producer())
    closer = asyncio.ensure_future(close_when_done())
    got = []
    while True:
        try:
            got += await ch.recv_many(100)
        except tr.ChannelClosed:
            break
    await closer
    from_c = [x for x in got if isinstance(x, int) and x < 10**9]
    from_py = [x for x in got if isinstance(x, str) or (isinstance(x, int) and x >= 10**9)]
    from_thread = [x for x in got if isinstance(x, bytes)]
    assert from_c == list(range(n))
    assert from_py == [10**9 + i if i % 10 else f"s{i}" for i in range(n)]
    assert from_thread == [b"t%d" % i for i in range(n // 4)]
    assert len(got) == n + n + n // 4


@check
async def python_to_c_consumer():
    ch = tr.Channel(32)
    consumer = asyncio.ensure_future(asyncio.to_thread(ex.consumer_sum, ch, JOIN))

    def thread_side():
        for i in range(5000):
            ch.send_blocking(-i)

    thread = threading.Thread(target=thread_side)
    thread.start()
    for i in range(10_000):
        await ch.send(i)  # ints travel as native values
        if i % 100 == 0:
            await ch.send(b"x" * (i % 7))
    await ch.send(2**62)  # outside the inline range: boxed
    await asyncio.to_thread(thread.join)
    ch.close()
    res = await consumer
    assert res == {
        "ints": 10_000 + 5000 + 1,
        "int_sum": sum(range(10_000)) - sum(range(5000)) + 2**62,
        "bytes_items": 100,
        "bytes_total": sum(i % 7 for i in range(0, 10_000, 100)),
    }, res

    # A Python object first: the C consumer raises TypeError and leaves it.
    ch = tr.Channel(4)
    await ch.send(["a list"])
    await ch.send(5)
    assert expect_now(TypeError, ex.consumer_sum, ch, 0)
    assert await ch.recv() == ["a list"]
    ch.close()
    assert ex.consumer_sum(ch, 0)["int_sum"] == 5
    # Nothing arrives: TimeoutError (TR_RaiseStatus(TR_TIMEDOUT)).
    await expect(TimeoutError, asyncio.to_thread(ex.consumer_sum, tr.Channel(1), 0.05))


# ---- a Mutex held from C --------------------------------------------------------------


@check
async def mutex_from_c():
    m = tr.Mutex()
    # Python holds it: C waits (GIL released), then gets it in FIFO order.
    order = []
    async with m:
        c_side = asyncio.ensure_future(asyncio.to_thread(ex.mutex_hold, m, 0.1))
        await asyncio.sleep(0.05)
        assert not c_side.done()
        order.append("python")
    # The lock goes to C first (it queued first), then to this coroutine.
    await asyncio.sleep(0.01)
    start = time.monotonic()
    async with m:
        order.append("python again")
        assert time.monotonic() - start > 0.05, "Python got the lock while C held it"
    await c_side
    assert order == ["python", "python again"]
    assert not m.locked()
    # C gives up after its timeout while Python holds the lock.
    async with m:
        await expect(TimeoutError, asyncio.to_thread(ex.mutex_hold, m, 0.0, 0.05))
    assert not m.locked()


# ---- shutdown ------------------------------------------------------------------------------


@check
async def shutdown_with_a_blocked_producer():
    """Shut a runtime down while a C thread waits on a full channel of that runtime.

    A channel belongs to no runtime (the runtime only wakes coroutines waiting
    on it): the C sender is not woken by the shutdown, and it must not crash
    or hang anything.  Closing the channel ends its wait with TR_ECLOSED.
    """
    rt = tr.Runtime(worker_threads=2)
    ch = tr.Channel(8, runtime=rt)
    p = ex.producer_start(ch, 1000)
    await until(lambda: len(ch) == 8, "the channel to fill")
    # Jobs in flight on that runtime's workers too (~0.5 s each).
    jobs = [asyncio.ensure_future(ex.zdecompress(zeros_stream(), runtime=rt)) for _ in range(4)]
    waiter_ch = tr.Channel(1, runtime=rt)
    waiter = asyncio.ensure_future(waiter_ch.recv())  # a coroutine waiting on rt's port
    await until(lambda: rt.stats()["native_running"] >= 1, "a job to start")
    start = time.monotonic()
    await asyncio.to_thread(rt.shutdown, 10.0)
    assert time.monotonic() - start < 10.0
    await expect(asyncio.CancelledError, asyncio.wait_for(waiter, JOIN))
    # The jobs were cancelled (the running ones see their flag and stop),
    # unless one finished in the few ms before the shutdown; the two queued
    # behind the first two ~0.25 s ones cannot have.
    results = await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), JOIN)
    cancelled = [r for r in results if isinstance(r, asyncio.CancelledError)]
    assert len(cancelled) >= 2, results
    assert all(r == bytes(128 << 20) for r in results if not isinstance(r, BaseException))
    await asyncio.sleep(0.05)
    assert not p.done, "the blocked sender returned without a receiver or a close"
    # After the shutdown, new jobs are refused (RuntimeError).
    await expect(RuntimeError, ex.zcompress(b"late", runtime=rt))
    # Non-waiting calls keep working: take one item, the sender fills the slot.
    assert ch.try_recv() == 0
    await until(lambda: len(ch) == 8, "the sender to refill the slot")
    ch.close()  # ends the C thread's wait
    sent, status = await asyncio.wait_for(join(p), JOIN)
    assert status == ex.TR_ECLOSED, ex.status_name(status)
    assert sent == 9
    rest = []
    while True:
        try:
            rest.append(ch.try_recv())
        except tr.ChannelClosed:
            break
    assert rest == list(range(1, 9))
    del p
    await until(lambda: ex.live_counts()["jobs"] == 0, "the cancelled jobs to be freed")


# ---- bad input -------------------------------------------------------------------------------


@check
async def bad_input():
    m, ch = tr.Mutex(), tr.Channel(1)
    completion = tr.get_runtime().completion()
    # TR_PromiseFromObject and friends: TypeError for another kind of object.
    assert expect_now(TypeError, ex.zcompress_start, object(), b"x", 6)
    assert expect_now(TypeError, ex.zcompress_start, ch, b"x", 6)
    assert expect_now(TypeError, ex.zdecompress_start, None, b"x")
    assert expect_now(TypeError, ex.producer_start, m, 10)
    assert expect_now(TypeError, ex.producer_start, "channel", 10)
    assert expect_now(TypeError, ex.consumer_sum, m, 0)
    assert expect_now(TypeError, ex.mutex_hold, ch, 0.0)
    assert expect_now(TypeError, ex.mutex_hold, completion, 0.0)
    assert expect_now(TypeError, ex.producer_join, 3)
    assert expect_now(TypeError, ex.zcompress_start, completion, "text, not bytes", 6)
    assert expect_now(ValueError, ex.producer_start, ch, -1)
    assert expect_now(ValueError, ex.zdecompress_start, completion, b"x", 0)
    assert expect_now(ValueError, ex.consumer_sum, ch, -1.0)
    assert expect_now(ValueError, ex.mutex_hold, m, -1.0)
    # Nothing above took a reference it kept: the completion is still usable.
    ex.zcompress_start(completion, b"x", 6)
    assert zlib.decompress(await completion) == b"x"
    assert ex.status_name(ex.TR_ECLOSED) == "TR_ECLOSED"
    assert ex.status_name(999) == "unknown"
    assert ex.CAPI_VERSION >= 1


# ---- the driver --------------------------------------------------------------------------------


def main():
    name, loop_kind = sys.argv[1], sys.argv[2]
    factory = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}[loop_kind]
    loop = factory()
    try:
        loop.run_until_complete(asyncio.wait_for(CHECKS[name](), 60))
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    gc.collect()
    deadline = time.monotonic() + JOIN
    while ex.live_counts() != {"jobs": 0, "producers": 0}:
        assert time.monotonic() < deadline, f"native objects leaked: {ex.live_counts()}"
        time.sleep(0.01)
    assert tr.get_runtime().stats()["pending"] == 0
    print("ok", name, loop_kind)


if __name__ == "__main__":
    main()
