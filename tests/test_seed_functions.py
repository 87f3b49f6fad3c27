"""The five seed functions behave as the original example (REFERENCE.md) and better."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import tokio_runtime
from tokio_runtime import (
    channel_demo,
    concurrent_tasks,
    shared_counter_demo,
    spawn_background_task,
    with_timeout,
)

# ---- the original example's own checks --------------------------------------


async def test_spawn_background_task_original():
    result = await spawn_background_task(3, 10)
    assert "Spawned background task" in result
    assert "3 iterations" in result
    await asyncio.sleep(0.1)  # let the ticks finish inside this test


async def test_concurrent_tasks_original():
    results = await concurrent_tasks(["url1", "url2", "url3"])
    assert len(results) == 3
    assert all("Fetched:" in r for r in results)


async def test_shared_counter_original():
    assert await shared_counter_demo(10) == 10


async def test_with_timeout_completes_original():
    assert await with_timeout(100, 200) == "Operation completed"


async def test_with_timeout_times_out_original():
    with pytest.raises(TimeoutError, match="Operation timed out"):
        await with_timeout(200, 100)


async def test_channel_demo_original():
    messages = await channel_demo(5)
    assert len(messages) == 5
    assert messages[0] == "Message 0"
    assert messages[-1] == "Message 4"


async def test_gather_original():
    results = await asyncio.gather(shared_counter_demo(5), channel_demo(3), with_timeout(50, 100))
    assert results == [5, ["Message 0", "Message 1", "Message 2"], "Operation completed"]


# ---- exact results and timing shape ------------------------------------------------


async def test_spawn_result_is_exact_and_immediate():
    loop = asyncio.get_running_loop()
    fut = spawn_background_task(2, 1000)
    assert isinstance(fut, asyncio.Future) and fut.get_loop() is loop
    assert fut.done()  # resolves at once, before any tick
    assert fut.result() == "Spawned background task with 2 iterations"
    fut.cancel()  # a done future: no effect on the detached task
    # The detached ticker is still pending; it ends with this test's loop.


async def test_background_ticks_are_python_prints_on_the_loop_thread(capsys, monkeypatch):
    threads = []
    real_print = print

    def recording_print(*args, **kwargs):
        threads.append(threading.get_ident())
        real_print(*args, **kwargs)

    monkeypatch.setattr("builtins.print", recording_print)
    await spawn_background_task(4, 5)
    await asyncio.sleep(0.3)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"Background task iteration: {i}/4" for i in range(1, 5)]
    assert threads == [threading.get_ident()] * 4


async def test_background_zero_iterations_prints_nothing(capsys):
    assert await spawn_background_task(0, 1) == "Spawned background task with 0 iterations"
    await asyncio.sleep(0.05)
    assert capsys.readouterr().out == ""


async def test_background_zero_delay_prints_every_tick_in_order(capsys):
    await spawn_background_task(500, 0)
    for _ in range(200):
        await asyncio.sleep(0.01)
        if "500/500" in capsys.readouterr().out:
            break
    # Ticks are coalesced in C when the loop lags; none may be lost or repeated.
    await spawn_background_task(300, 0)
    out = ""
    for _ in range(200):
        await asyncio.sleep(0.01)
        out += capsys.readouterr().out
        if "300/300" in out:
            break
    assert out.splitlines() == [f"Background task iteration: {i}/300" for i in range(1, 301)]


async def test_concurrent_tasks_results_in_input_order_and_concurrent():
    urls = [f"https://example.com/{i}" for i in range(5)]
    t0 = time.monotonic()
    results = await concurrent_tasks(urls)
    elapsed = time.monotonic() - t0
    assert results == [f"Fetched: {u}" for u in urls]
    # Item i sleeps 100 + 50*i ms; all run at once, so ~300 ms, not the 1 s sum.
    assert 0.28 <= elapsed < 0.9


async def test_concurrent_tasks_empty_and_tuple():
    assert await concurrent_tasks([]) == []
    assert await concurrent_tasks(("a",)) == ["Fetched: a"]


async def test_concurrent_tasks_keeps_any_str_intact():
    odd = ["", "naïve ✓", "with\0nul", "x" * 10_000]
    assert await concurrent_tasks(odd) == [f"Fetched: {u}" for u in odd]


async def test_shared_counter_zero_and_large():
    assert await shared_counter_demo(0) == 0
    assert await shared_counter_demo(100_000) == 100_000


async def test_shared_counter_takes_about_ten_ms():
    t0 = time.monotonic()
    assert await shared_counter_demo(1000) == 1000
    assert 0.009 <= time.monotonic() - t0 < 1.0


async def test_with_timeout_exact_message():
    with pytest.raises(TimeoutError) as info:
        await with_timeout(200, 30)
    assert type(info.value) is TimeoutError
    assert str(info.value) == "Operation timed out after 30ms (operation would take 200ms)"


async def test_with_timeout_timing_shape():
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await with_timeout(2000, 50)
    assert 0.045 <= time.monotonic() - t0 < 1.0  # at the timeout, not the operation
    t0 = time.monotonic()
    assert await with_timeout(50, 2000) == "Operation completed"
    assert 0.045 <= time.monotonic() - t0 < 1.0  # at the operation, not the timeout


@pytest.mark.parametrize(("op", "limit"), [(0, 0), (30, 30), (0, 10)])
async def test_with_timeout_operation_wins_ties(op, limit):
    assert await with_timeout(op, limit) == "Operation completed"


async def test_channel_demo_empty_and_above_capacity():
    assert await channel_demo(0) == []
    t0 = time.monotonic()
    messages = await channel_demo(40)  # more than the capacity of 32
    elapsed = time.monotonic() - t0
    assert messages == [f"Message {i}" for i in range(40)]
    assert 0.38 <= elapsed < 2.0  # ~10 ms per message


async def test_futures_work_with_wait_for_and_gather():
    assert await asyncio.wait_for(shared_counter_demo(3), timeout=5) == 3
    with pytest.raises(asyncio.TimeoutError):  # TimeoutError since 3.11
        await asyncio.wait_for(with_timeout(5000, 10000), timeout=0.05)
    results = await asyncio.gather(*(shared_counter_demo(i) for i in range(20)))
    assert results == list(range(20))


# ---- call-time argument errors ----------------------------------------------------

INT_CALLS = [
    ("spawn_background_task", lambda v: spawn_background_task(v, 1)),
    ("spawn_background_task", lambda v: spawn_background_task(1, v)),
    ("shared_counter_demo", shared_counter_demo),
    ("with_timeout", lambda v: with_timeout(v, 1)),
    ("with_timeout", lambda v: with_timeout(1, v)),
    ("channel_demo", channel_demo),
]


@pytest.mark.parametrize(("name", "call"), INT_CALLS)
@pytest.mark.parametrize(
    ("bad", "exc"),
    [
        (-1, OverflowError),
        (2**64, OverflowError),
        (1.0, TypeError),
        ("3", TypeError),
        (None, TypeError),
        (float("nan"), TypeError),
        ([1], TypeError),
    ],
)
async def test_bad_int_arguments_raise_at_call_time(name, call, bad, exc):
    before = tokio_runtime.get_runtime().stats()["submitted"]
    with pytest.raises(exc):
        call(bad)
    assert tokio_runtime.get_runtime().stats()["submitted"] == before


@pytest.mark.parametrize("bad", ["url", b"url", None, 3, [1, "a"], ["a", None], {"a": 1}])
async def test_bad_urls_raise_type_error(bad):
    with pytest.raises(TypeError):
        concurrent_tasks(bad)


async def test_bool_and_index_objects_are_ints_like_pyo3():
    class Index:
        def __index__(self):
            return 2

    assert await shared_counter_demo(True) == 1
    assert await shared_counter_demo(Index()) == 2


ALL_CALLS = [
    lambda: spawn_background_task(1, 1),
    lambda: concurrent_tasks(["a"]),
    lambda: shared_counter_demo(1),
    lambda: with_timeout(1, 1),
    lambda: channel_demo(1),
]


@pytest.mark.parametrize("call", ALL_CALLS)
def test_no_running_loop_raises_runtime_error(call):
    with pytest.raises(RuntimeError, match="no running event loop"):
        call()


async def test_runtime_is_usable_after_errors():
    for bad in (-5, 1.5, None):
        with pytest.raises((OverflowError, TypeError)):
            shared_counter_demo(bad)
    assert await shared_counter_demo(7) == 7
