"""run_native and Completion: native work on the runtime, results from C threads.

The native side is a cffi module built for the tests (native_lib.py), which
reaches the runtime only through the C API table, as a user's would.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import JOIN

import tokio_runtime
from tokio_runtime import Runtime, run_native
from tokio_runtime._native import lib as tr_lib

native_lib = pytest.importorskip("native_lib")
nffi, nlib = native_lib.load()


def fn(name):
    return nffi.addressof(nlib, name)


async def until(predicate, timeout=JOIN):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


# ---- run_native -------------------------------------------------------------------


async def test_run_native_returns_the_result():
    arg = nffi.new("int64_t *", 99)
    assert await run_native(fn("add_one"), arg) == 100
    assert await run_native(fn("add_one")) == 41  # NULL arg
    assert await run_native(fn("long_result")) == 5  # int64_t spelled `long`


async def test_run_native_buffer_argument():
    buf = bytearray(8)
    buf[0] = 9  # little-endian int64 9
    assert await run_native(fn("add_one"), buf) == 10


async def test_run_native_many_in_one_gather():
    args = [nffi.new("int64_t *", i) for i in range(2000)]
    results = await asyncio.gather(*(run_native(fn("add_one"), a) for a in args))
    assert results == [i + 1 for i in range(2000)]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (None, TypeError),
        (42, TypeError),
        (print, TypeError),
        (lambda a, c: 0, TypeError),
        ("add_one", TypeError),
    ],
)
async def test_run_native_bad_fn(bad, error):
    with pytest.raises(error, match="function pointer"):
        run_native(bad)


async def test_run_native_wrong_signature_or_null():
    with pytest.raises(TypeError, match="int64_t fn"):
        run_native(fn("wrong_signature"))
    with pytest.raises(TypeError):
        run_native(nlib.add_one)  # the lib's builtin, not a pointer
    null = nffi.cast("tr_native_fn", 0)
    with pytest.raises(ValueError, match="NULL"):
        run_native(null)


@pytest.mark.parametrize("bad", ["text", 3.5, object(), 7])
async def test_run_native_bad_arg(bad):
    with pytest.raises(TypeError, match="arg must be"):
        run_native(fn("add_one"), bad)


async def test_run_native_non_pointer_cdata_arg():
    with pytest.raises(TypeError, match="pointer"):
        run_native(fn("add_one"), nffi.cast("int", 3))


async def test_cancel_while_running_sets_the_flag():
    probe = nffi.new("probe_t *")
    fut = run_native(fn("spin_until_cancelled"), probe)
    await until(lambda: probe.started)
    assert tokio_runtime.get_runtime().stats()["native_running"] >= 1
    fut.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
    await until(lambda: probe.finished)
    assert probe.saw_cancel == 1


async def test_cancelled_before_start_never_runs():
    with Runtime(worker_threads=1) as rt:
        blocker = nffi.new("probe_t *")
        first = rt.run_native(fn("spin_until_cancelled"), blocker)
        await until(lambda: blocker.started)
        ran = [nffi.new("int *") for _ in range(5)]
        queued = [rt.run_native(fn("mark_ran"), r) for r in ran]
        stats = rt.stats()
        assert stats["native_queued"] == 5
        assert stats["native_running"] == 1
        for q in queued[1:]:
            q.cancel()
        first.cancel()
        assert await queued[0] == 7
        await until(lambda: rt.stats()["native_queued"] == 0)
        assert [r[0] for r in ran] == [1, 0, 0, 0, 0]
        for q in queued[1:]:
            assert q.cancelled()
        with pytest.raises(asyncio.CancelledError):
            await first


async def test_one_worker_runs_jobs_in_fifo_order():
    with Runtime(worker_threads=1) as rt:
        order = nffi.new("order_t *")
        jobs = [nffi.new("order_job_t *", {"order": order, "id": i}) for i in range(300)]
        results = await asyncio.gather(*(rt.run_native(fn("record_order"), j) for j in jobs))
        assert results == list(range(300))
        assert list(order.seen[0:300]) == list(range(300))


async def test_functions_run_concurrently_on_the_pool():
    with Runtime(worker_threads=3) as rt:
        ms = nffi.new("int64_t *", 150)
        start = time.monotonic()
        assert (
            await asyncio.gather(*(rt.run_native(fn("sleep_ms"), ms) for _ in range(3)))
            == [150] * 3
        )
        # Three 150 ms functions on three workers: well under 3 x 150 ms.
        assert time.monotonic() - start < 0.40


async def test_shutdown_cancels_running_and_queued_functions():
    rt = Runtime(worker_threads=1)
    probe = nffi.new("probe_t *")
    ran = nffi.new("int *")
    running = rt.run_native(fn("spin_until_cancelled"), probe)
    queued = rt.run_native(fn("mark_ran"), ran)
    await until(lambda: probe.started)
    rt.shutdown()  # waits for the spinning function, which sees its flag
    assert probe.finished and probe.saw_cancel
    assert ran[0] == 0
    for fut in (running, queued):
        with pytest.raises(asyncio.CancelledError):
            await fut
    with pytest.raises(RuntimeError, match="shut down"):
        rt.run_native(fn("add_one"))
    stats = rt.stats()
    assert stats["pending"] == 0
    assert stats["native_queued"] == 0
    assert stats["native_running"] == 0


def test_run_native_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        run_native(fn("add_one"))


def test_argument_outlives_a_closed_loop():
    """The loop closes while fn runs: its argument stays alive until fn returns."""
    probe_holder = {}

    async def start():
        probe = nffi.new("probe_t *")
        probe_holder["addr"] = int(nffi.cast("uintptr_t", probe))
        probe_holder["fut"] = run_native(fn("spin_until_cancelled"), probe)
        await until(lambda: probe.started)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(start())
    loop.close()  # the port closes: the promise is cancelled, fn sees its flag
    del probe_holder["fut"]
    gc.collect()
    probe = nffi.cast("probe_t *", probe_holder["addr"])
    deadline = time.monotonic() + JOIN
    while not probe.finished:  # still valid memory: parked until fn returned
        assert time.monotonic() < deadline
        time.sleep(0.002)
    assert probe.saw_cancel == 1


# ---- Completion --------------------------------------------------------------------


async def test_completion_from_a_c_thread():
    rt = tokio_runtime.get_runtime()
    comps = [rt.completion() for _ in range(100)]
    handles = [c.handle for c in comps]
    worker = nlib.completer_start(handles, len(handles), 1000, nlib.MODE_INT, 2000)
    assert await asyncio.gather(*comps) == list(range(1000, 1100))
    counts = nffi.new("int64_t[16]")
    nlib.completer_join(worker, counts)
    assert counts[tr_lib.TR_OK] == 100


async def test_completion_with_bytes():
    comps = [tokio_runtime.completion() for _ in range(10)]
    worker = nlib.completer_start([c.handle for c in comps], 10, 5, nlib.MODE_BYTES, 0)
    assert await asyncio.gather(*comps) == [str(5 + i).encode() for i in range(10)]
    nlib.completer_join(worker, nffi.new("int64_t[16]"))
    empty = tokio_runtime.completion()
    assert nlib.promise_complete_bytes(empty.handle, nffi.NULL, 0) == tr_lib.TR_OK
    assert await empty == b""


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("TR_EINVAL", ValueError),
        ("TR_TIMEDOUT", TimeoutError),
        ("TR_ECLOSED", RuntimeError),
        ("TR_ENOMEM", MemoryError),
        ("TR_EBUSY", RuntimeError),
    ],
)
async def test_completion_with_an_error_status(status, error):
    c = tokio_runtime.completion()
    assert nlib.promise_complete(c.handle, getattr(tr_lib, status), 0) == tr_lib.TR_OK
    with pytest.raises(error):
        await c


async def test_completion_with_cancelled_status_cancels():
    c = tokio_runtime.completion()
    assert nlib.promise_complete(c.handle, tr_lib.TR_CANCELLED, 0) == tr_lib.TR_OK
    with pytest.raises(asyncio.CancelledError):
        await c


async def test_completion_bad_status_is_refused():
    c = tokio_runtime.completion()
    for bad in (tr_lib.TR_PENDING, -1, 99):
        assert nlib.promise_complete(c.handle, bad, 0) == tr_lib.TR_EINVAL
    assert not c.done()
    c.cancel()


async def test_completing_twice_is_a_safe_no_op():
    c = tokio_runtime.completion()
    assert nlib.promise_complete(c.handle, tr_lib.TR_OK, 1) == tr_lib.TR_OK
    assert nlib.promise_complete(c.handle, tr_lib.TR_OK, 2) == tr_lib.TR_EDONE
    assert nlib.promise_complete_bytes(c.handle, b"x", 1) == tr_lib.TR_EDONE
    assert await c == 1


async def test_completing_after_cancel_is_refused():
    c = tokio_runtime.completion()
    h = c.handle
    nlib.promise_ref(h)
    try:
        assert c.cancel()
        assert nlib.promise_flag(h) == 1
        assert nlib.promise_complete(h, tr_lib.TR_OK, 1) == tr_lib.TR_CANCELLED
        with pytest.raises(asyncio.CancelledError):
            await c
    finally:
        nlib.promise_release(h)


def test_completion_after_its_loop_closed():
    holder = {}

    async def make():
        c = tokio_runtime.completion()
        nlib.promise_ref(c.handle)  # C's own reference
        holder["h"] = c.handle

    loop = asyncio.new_event_loop()
    loop.run_until_complete(make())
    loop.close()
    gc.collect()
    h = holder["h"]
    deadline = time.monotonic() + JOIN
    while nlib.promise_flag(h) == 0:  # the port's close reaches the loop thread
        assert time.monotonic() < deadline
        time.sleep(0.002)
    assert nlib.promise_complete(h, tr_lib.TR_OK, 1) == tr_lib.TR_ECLOSED
    nlib.promise_release(h)


async def test_completion_after_shutdown():
    rt = Runtime(worker_threads=1)
    c = rt.completion()
    h = c.handle
    nlib.promise_ref(h)
    rt.shutdown()
    with pytest.raises(asyncio.CancelledError):
        await c
    assert nlib.promise_flag(h) == 1
    assert nlib.promise_complete(h, tr_lib.TR_OK, 1) == tr_lib.TR_ESHUTDOWN
    del c
    gc.collect()
    # Still a valid handle: C holds the last reference.
    assert nlib.promise_complete_bytes(h, b"late", 4) == tr_lib.TR_ESHUTDOWN
    nlib.promise_release(h)
    await until(lambda: gc.collect() is not None and rt.stats()["promises"] == 0)


async def test_completion_needs_a_running_runtime():
    rt = Runtime(worker_threads=1)
    rt.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        rt.completion()


def test_completion_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        tokio_runtime.completion()


async def test_completion_repr_and_done():
    c = tokio_runtime.completion()
    assert "pending" in repr(c) and not c.done()
    nlib.promise_complete(c.handle, tr_lib.TR_OK, 3)
    assert await c.future == 3
    assert "done" in repr(c) and c.done()


async def test_completions_from_another_loop_thread():
    """A completion awaited on a loop in another thread, completed from C."""

    async def on_other_loop():
        c = tokio_runtime.completion()
        w = nlib.completer_start([c.handle], 1, 77, nlib.MODE_INT, 1000)
        value = await c
        nlib.completer_join(w, nffi.new("int64_t[16]"))
        return value

    result = []
    t = threading.Thread(target=lambda: result.append(asyncio.run(on_other_loop())))
    t.start()
    await asyncio.to_thread(t.join, JOIN)
    assert result == [77]


# ---- a million results from a C thread ----------------------------------------------


async def test_a_million_completions_from_a_c_thread_exactly_once():
    """1,000,000 results, in batches, completed by C threads; every 7th cancelled first.

    Each completed one resolves its future with its own value exactly once;
    each cancelled one never resolves, and its C completer is told so; the
    native counters return to their baseline.
    """
    rt = tokio_runtime.get_runtime()
    base_promises = rt.stats()["promises"]
    total, batch = 1_000_000, 50_000
    counts = nffi.new("int64_t[16]")
    got_ok = got_cancelled = 0
    for start in range(0, total, batch):
        comps = [rt.completion() for _ in range(batch)]
        for i in range(0, batch, 7):
            comps[i].cancel()
        worker = nlib.completer_start([c.handle for c in comps], batch, start, nlib.MODE_INT, 0)
        results = await asyncio.gather(*comps, return_exceptions=True)
        await asyncio.to_thread(nlib.completer_join, worker, counts)
        for i, r in enumerate(results):
            if i % 7 == 0:
                assert isinstance(r, asyncio.CancelledError)
                got_cancelled += 1
            else:
                assert r == start + i
                got_ok += 1
        assert counts[tr_lib.TR_OK] == batch - len(range(0, batch, 7))
        assert counts[tr_lib.TR_CANCELLED] == len(range(0, batch, 7))
        del comps, results
    assert got_ok + got_cancelled == total
    gc.collect()
    stats = rt.stats()
    assert stats["promises"] == base_promises
    assert stats["pending"] == 0


# ---- exit -----------------------------------------------------------------------------


@pytest.mark.parametrize("fn_name", ["spin_until_cancelled", "sleep_ms"])
def test_interpreter_exit_while_functions_run(fn_name):
    """Exit with native functions running and queued: clean, silent, bounded.

    ``spin_until_cancelled`` sees its flag at shutdown; ``sleep_ms`` ignores
    it and the exit waits for it to return (300 ms).
    """
    script = textwrap.dedent(
        f"""
        import asyncio, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import native_lib
        import tokio_runtime
        nffi, nlib = native_lib.load()

        async def main():
            probe = nffi.new("probe_t *")
            ms = nffi.new("int64_t *", 300)
            arg = probe if {fn_name!r} == "spin_until_cancelled" else ms
            fn = nffi.addressof(nlib, {fn_name!r})
            futs = [tokio_runtime.run_native(fn, arg) for _ in range(10)]
            await asyncio.sleep(0.05)
            print("running", tokio_runtime.get_runtime().stats()["native_running"], flush=True)
            sys.exit(0)  # with the functions still running and queued

        asyncio.run(main())
        """
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "running" and int(proc.stdout.split()[1]) >= 1
    assert proc.stderr == ""
    assert time.monotonic() - start < 30
