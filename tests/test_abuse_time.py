"""timeout(): the result wins a tie (issue 14, item 2).

A deadline's record and the inner operation's result often reach the loop in
the same drain.  The result must win when it is due at or before the
deadline, however the two records are batched.  Public API only.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import tokio_runtime as tr

#: How long a test blocks its loop so that every record it expects is queued
#: (in due order) before the loop drains any of them.
BLOCK = 0.15


def _cancelling() -> int:
    task = asyncio.current_task()
    return task.cancelling() if hasattr(task, "cancelling") else 0


@pytest.mark.parametrize("d", [0, 0.001, 0.005, 0.02])
async def test_a_native_result_due_with_the_deadline_wins(d):
    # The inner sleep is submitted first, so it is due no later than the
    # deadline: it must win every time (it lost every time before).
    for _ in range(50):
        assert await tr.timeout(d, tr.sleep(d, "x")) == "x"
    assert _cancelling() == 0  # the task is not left cancelling


@pytest.mark.parametrize("early", [0.0002, 0.0005])
async def test_a_native_result_due_just_before_the_deadline_wins(early):
    for _ in range(30):
        assert await tr.timeout(0.01, tr.sleep(0.01 - early, "x")) == "x"


async def _queued_while_blocked(awaitable, seconds, during=None):
    """Run ``timeout(seconds, awaitable)`` in a task, with its loop blocked
    (and ``during()`` called) while the records come in; return the task."""
    task = asyncio.create_task(tr.timeout(seconds, awaitable))
    await asyncio.sleep(0.01)  # the task waits, its operations have started
    if during is not None:
        during()
    time.sleep(BLOCK)  # both records are queued on this loop meanwhile
    await asyncio.wait([task])
    return task


@pytest.mark.parametrize("inner", [0.04, 0.05])
async def test_results_queued_before_the_deadline_win_after_a_busy_loop(inner):
    # The two records are drained together, the result's first.
    for _ in range(3):
        task = await _queued_while_blocked(tr.sleep(inner, "x"), 0.05)
        assert task.result() == "x"


async def test_a_channel_item_sent_before_the_deadline_wins():
    for _ in range(3):
        ch = tr.Channel(1)

        def send_from_a_thread(ch=ch):
            t = threading.Thread(target=ch.send_blocking, args=("item",))
            t.start()
            t.join()

        task = await _queued_while_blocked(ch.recv(), 0.05, send_from_a_thread)
        assert task.result() == "item"
        assert len(ch) == 0


# Guards: these passed before the fix and must keep passing.


async def test_a_native_result_due_after_the_deadline_loses_after_a_busy_loop():
    task = await _queued_while_blocked(tr.sleep(0.08, "x"), 0.05)
    with pytest.raises(TimeoutError):
        task.result()


async def test_an_awaitable_that_took_a_result_but_goes_on_still_times_out():
    async def inner():
        await tr.sleep(0.04)  # resolved in the deadline's drain
        await asyncio.sleep(10)  # but the awaitable is not finished

    task = await _queued_while_blocked(inner(), 0.05)
    with pytest.raises(TimeoutError):
        task.result()


async def test_outer_cancel_with_the_deadline_queued_is_not_a_timeout():
    task = asyncio.create_task(tr.timeout(0.05, tr.sleep(0.04, "x")))
    await asyncio.sleep(0.01)
    task.cancel()  # before the loop sees either record
    time.sleep(BLOCK)
    await asyncio.wait([task])
    assert task.cancelled()


async def test_a_late_pure_python_awaitable_times_out():
    with pytest.raises(TimeoutError):
        await tr.timeout(0.02, asyncio.sleep(5))
    with pytest.raises(TimeoutError):
        await tr.timeout(0.02, tr.Channel(1).recv())
