"""Runtime objects, the default runtime, configure(), and shutdown."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import native_threads, threads_gone

import tokio_runtime
from tokio_runtime import Channel, Mutex, Runtime, get_runtime

# ---- construction --------------------------------------------------------------


def test_runtime_threads_are_named_and_joined():
    with Runtime(worker_threads=2, thread_name="rt-named") as rt:
        assert native_threads("rt-named") == [
            "rt-named-0",
            "rt-named-1",
            "rt-named-2",
            "rt-named-3",
        ]
        s = rt.stats()
        assert s["worker_threads"] == 2 and s["thread_name"] == "rt-named"
        assert s["running"] is True and s["pending"] == 0
        assert "rt-named" in repr(rt)
    assert threads_gone("rt-named")
    assert rt.closed and rt.stats()["running"] is False


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"worker_threads": 0}, ValueError),
        ({"worker_threads": -1}, ValueError),
        ({"worker_threads": 257}, ValueError),
        ({"worker_threads": 2.0}, TypeError),
        ({"worker_threads": "2"}, TypeError),
        ({"worker_threads": True}, TypeError),
        ({"thread_name": ""}, ValueError),
        ({"thread_name": "x" * 64}, ValueError),
        ({"thread_name": "a\0b"}, ValueError),
        ({"thread_name": 5}, TypeError),
        ({"thread_name": None}, TypeError),
    ],
)
def test_bad_runtime_arguments(kwargs, error):
    with pytest.raises(error):
        Runtime(**kwargs)


def test_get_runtime_is_one_default():
    assert get_runtime() is get_runtime()
    assert get_runtime().stats()["thread_name"] == "tokio-runtime"


def test_configure_after_start_raises():
    get_runtime()
    with pytest.raises(RuntimeError, match="before the default runtime starts"):
        tokio_runtime.configure(worker_threads=2)


def run_python(code: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_configure_before_start_sets_up_the_default_runtime():
    proc = run_python(
        """
        import asyncio, tokio_runtime
        tokio_runtime.configure(worker_threads=2, thread_name="cfg-rt")
        tokio_runtime.configure(worker_threads=3)  # again, still before start
        async def main():
            assert await tokio_runtime.sleep(0, 7) == 7
        asyncio.run(main())
        s = tokio_runtime.get_runtime().stats()
        print(s["worker_threads"], s["thread_name"])
        try:
            tokio_runtime.configure(thread_name="late")
        except RuntimeError:
            print("late configure refused")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["3 cfg-rt", "late configure refused"]
    assert proc.stderr == ""


def test_configure_rejects_bad_values_and_keeps_the_old_ones():
    proc = run_python(
        """
        import tokio_runtime
        for kwargs in ({"worker_threads": 0}, {"thread_name": ""}, {"worker_threads": "4"}):
            try:
                tokio_runtime.configure(**kwargs)
            except (TypeError, ValueError) as e:
                print(type(e).__name__)
        print(tokio_runtime.get_runtime().stats()["worker_threads"])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ValueError", "ValueError", "TypeError", "4"]


# ---- shutdown -------------------------------------------------------------------


async def test_shutdown_cancels_operations_in_flight():
    rt = Runtime(worker_threads=2)
    ch: Channel[int] = Channel(1, runtime=rt)
    ch.try_send(0)  # full: a sender will wait
    m = Mutex(runtime=rt)
    await m.acquire()  # held: an acquirer will wait
    sleeps = [rt.sleep(30) for _ in range(10)]
    handle = rt.spawn_background(10_000, 0.001)
    timed = asyncio.ensure_future(rt.timeout(30, asyncio.sleep(60)))
    sender = asyncio.ensure_future(ch.send(1))
    acquirer = asyncio.ensure_future(m.acquire())
    receiver_ch: Channel[int] = Channel(1, runtime=rt)
    receiver = asyncio.ensure_future(receiver_ch.recv())
    await asyncio.sleep(0.02)
    assert rt.stats()["pending"] == 10 + 1 + 1 + 3  # sleeps, ticker, deadline, 3 waiters
    rt.shutdown()
    for aw in [*sleeps, handle, timed, sender, acquirer, receiver]:
        with pytest.raises(asyncio.CancelledError):
            await aw
    assert rt.stats()["pending"] == 0
    assert rt.stats()["waiters"] == 0
    # The cancelled send did not enqueue; the cancelled acquire holds nothing.
    assert len(ch) == 1 and ch.try_recv() == 0
    m.release()
    assert not m.locked()


async def test_every_use_after_shutdown_raises_runtime_error():
    rt = Runtime(worker_threads=1)
    rt.shutdown()
    rt.shutdown()  # idempotent
    with pytest.raises(RuntimeError, match="shut down"):
        rt.sleep(0)
    with pytest.raises(RuntimeError, match="shut down"):
        rt.spawn_background(1, 0)
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="shut down"):
        rt.timeout(1, coro)
    ch: Channel[int] = Channel(1, runtime=rt)
    with pytest.raises(RuntimeError, match="shut down"):
        await ch.recv()  # would have to wait
    ch.try_send(1)  # non-waiting calls do not need the runtime
    assert await ch.recv() == 1
    m = Mutex(runtime=rt)
    await m.acquire()  # uncontended: no wait, no runtime
    with pytest.raises(RuntimeError, match="shut down"):
        await m.acquire()
    assert rt.stats()["running"] is False


def test_shutdown_from_another_thread_while_a_loop_awaits():
    rt = Runtime(worker_threads=2)
    started = threading.Event()
    outcome = []

    async def main():
        fut = rt.sleep(30)
        started.set()
        try:
            await fut
        except asyncio.CancelledError:
            outcome.append("cancelled")

    t = threading.Thread(target=asyncio.run, args=(main(),))
    t.start()
    started.wait(5)
    time.sleep(0.02)
    rt.shutdown()
    t.join(5)
    assert outcome == ["cancelled"]


async def test_shutdown_from_the_loop_thread_does_not_deadlock():
    rt = Runtime(worker_threads=1)
    fut = rt.sleep(30)
    with rt:
        pass  # __exit__ shuts down, here on the loop thread
    with pytest.raises(asyncio.CancelledError):
        await fut


def test_shutdown_timeout_with_a_stuck_worker_logs_and_finishes_later(caplog):
    from tokio_runtime._native import lib
    from tokio_runtime._runtime import ports_of

    rt = Runtime(worker_threads=1, thread_name="rt-stuck")
    assert lib.tr_debug_stall_worker(ports_of(rt).rt_ptr, 0.5) == lib.TR_OK
    time.sleep(0.02)  # the worker is inside the stall
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tokio_runtime"):
        rt.shutdown(timeout=0.05)
    assert time.monotonic() - t0 < 0.4  # did not wait for the 0.5 s stall
    assert any("did not stop within" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError):
        asyncio.run(_sleep_on(rt))
    assert threads_gone("rt-stuck")  # joined in the background


async def _sleep_on(rt):
    await rt.sleep(0)


def test_shutdown_without_limit_and_bad_timeouts():
    rt = Runtime(worker_threads=1)
    for bad, error in [(-1, ValueError), (float("nan"), ValueError), ("1", TypeError)]:
        with pytest.raises(error):
            rt.shutdown(timeout=bad)
    assert rt.stats()["running"]  # a rejected call did nothing
    rt.shutdown(timeout=None)
    assert not rt.stats()["running"]


def test_many_runtimes_side_by_side():
    rts = [Runtime(worker_threads=1, thread_name=f"many-{i}") for i in range(4)]

    async def main():
        return await asyncio.gather(*(rt.sleep(0.01, i) for i, rt in enumerate(rts)))

    assert asyncio.run(main()) == [0, 1, 2, 3]
    for rt in rts:
        rt.shutdown()
    assert all(threads_gone(f"many-{i}") for i in range(4))


def test_public_names_are_exported_and_documented():
    for name in tokio_runtime.__all__:
        obj = getattr(tokio_runtime, name)
        assert obj.__doc__, name
    for cls in (
        tokio_runtime.Runtime,
        tokio_runtime.Channel,
        tokio_runtime.Mutex,
        tokio_runtime.TaskHandle,
    ):
        for attr, value in vars(cls).items():
            if not attr.startswith("_") and callable(value):
                assert value.__doc__, f"{cls.__name__}.{attr}"


async def test_stats_report_how_late_sleep_timers_fired():
    rt = Runtime(worker_threads=1)
    try:
        s = rt.stats()
        assert s["timers_fired"] == 0
        assert s["timer_late_p50_us"] == s["timer_late_p99_us"] == s["timer_late_max_us"] == 0
        waits = [rt.sleep(0.002 * (i % 5)) for i in range(40)]
        cancelled = rt.sleep(60)  # never fires: not counted
        await asyncio.gather(*waits)
        cancelled.cancel()
        await asyncio.wait_for(rt.timeout(5, asyncio.sleep(0)), 5)  # a deadline that never fires
        s = rt.stats()
        assert s["timers_fired"] == 40
        assert 0 <= s["timer_late_p50_us"] <= s["timer_late_p99_us"] <= s["timer_late_max_us"]
        assert s["timer_late_max_us"] < 1e6  # late by a second: clocks mixed up
    finally:
        rt.shutdown()


def test_lateness_quantiles_come_from_the_histogram():
    from tokio_runtime._stats import LATE_UPPER_US as _LATE_UPPER_US
    from tokio_runtime._stats import late_quantile as _late_quantile

    assert _LATE_UPPER_US[:5] == [1.0, 2.0, 3.0, 4.0, 5.0]  # 0..3 µs exact, then 4..5 µs
    assert all(a < b for a, b in zip(_LATE_UPPER_US, _LATE_UPPER_US[1:]))
    hist = [0] * len(_LATE_UPPER_US)
    assert _late_quantile(hist, 0.5, 0.0) == 0.0
    hist[2] = 98  # 98 timers 2..3 µs late
    hist[20] = 2  # 2 timers in bucket 20
    assert _late_quantile(hist, 0.5, 500.0) == 3.0
    assert _late_quantile(hist, 0.98, 500.0) == 3.0
    assert _late_quantile(hist, 0.99, 500.0) == min(_LATE_UPPER_US[20], 500.0)
    assert _late_quantile(hist, 0.99, 1.0e9) == _LATE_UPPER_US[20]
