"""The five functions of the original PyO3 + Tokio example, on the C runtime.

Each checks its arguments when called (``OverflowError`` for a negative int,
``TypeError`` for a float or a wrong type), needs a running asyncio loop
(``RuntimeError("no running event loop")`` otherwise), and returns an
``asyncio.Future`` bound to that loop - awaitable, and usable with
``asyncio.gather`` and ``asyncio.wait_for``.

The work happens in C: timers are libev timers on the runtime's loop thread,
the counter is a C integer behind a C mutex incremented on worker threads, and
the channel is a bounded C queue between a producer and a consumer task.
Cancelling a returned future cancels the native operation and all of its
children (the original left its children running).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Callable

from ._bridge import Completion
from ._native import ffi, lib
from ._runtime import get_runtime
from ._validate import str_list, u64

#: Capacity of channel_demo's channel, as in the original.
CHANNEL_CAPACITY = 32
#: Per-step sleep of shared_counter_demo's tasks and channel_demo's producer.
STEP_SECONDS = 0.010


def _submit(
    start: Callable[[Any, Any, int], int],
    on_ok: Callable[[int, Any], Any],
    on_error: Callable[[int, int], BaseException | None] | None = None,
) -> asyncio.Future[Any]:
    """Submit a native op on the running loop; return its future."""
    loop = asyncio.get_running_loop()
    rt = get_runtime()
    port = rt.port_for(loop)
    token = rt.next_token()
    rt.check(start(rt._ptr, port._ptr, token))
    fut = port.new_future(token)
    port.pending[token] = Completion(fut, on_ok, on_error)
    return fut


class _TickPrinter:
    """Prints a background task's ticks on the loop thread, none missed.

    Progress records are coalesced in C (one record may carry several ticks),
    so every tick between the last printed and the record's count is printed.
    """

    __slots__ = ("count", "printed")

    def __init__(self, count: int) -> None:
        self.count = count
        self.printed = 0

    def deliver(self, status: int, value: int, payload: Any, final: int) -> None:
        for i in range(self.printed + 1, value + 1):
            print(f"Background task iteration: {i}/{self.count}")
        self.printed = max(self.printed, value)


def spawn_background_task(count: int, delay_ms: int) -> asyncio.Future[str]:
    """Start a detached native task that ticks ``count`` times, ``delay_ms`` apart.

    The future resolves at once to ``"Spawned background task with {count}
    iterations"``.  Each tick prints ``Background task iteration: {i}/{count}``
    (i from 1) with Python's ``print`` on the spawning loop's thread, so pytest
    and Jupyter capture it.  If that loop closes first, the remaining ticks are
    dropped and the native timer is stopped; at interpreter exit the task is
    cancelled.
    """
    count = u64("count", count)
    delay_ms = u64("delay_ms", delay_ms)
    loop = asyncio.get_running_loop()
    rt = get_runtime()
    port = rt.port_for(loop)
    token = rt.next_token()
    rt.check(lib.tr_ticker(rt._ptr, port._ptr, token, count, delay_ms / 1000.0))
    port.pending[token] = _TickPrinter(count)
    fut: asyncio.Future[str] = loop.create_future()
    fut.set_result(f"Spawned background task with {count} iterations")
    return fut


def concurrent_tasks(urls: Sequence[str]) -> asyncio.Future[list[str]]:
    """Run one native task per URL concurrently; item ``i`` takes ``100 + 50*i`` ms.

    Resolves, after about ``100 + 50*(n-1)`` ms, to ``["Fetched: {url}", ...]``
    in input order (``[]`` at once for no URLs).  Cancelling it stops every
    child timer.
    """
    items = str_list("urls", urls)
    delays = ffi.new("double[]", [(100 + 50 * i) / 1000.0 for i in range(len(items))])
    return _submit(
        lambda rt, port, token: lib.tr_sleep_all(rt, port, token, delays, len(items)),
        lambda value, payload: [f"Fetched: {url}" for url in items],
    )


def shared_counter_demo(increments: int) -> asyncio.Future[int]:
    """Spawn ``increments`` native tasks that each sleep 10 ms, then add 1.

    Each task's increment runs on a worker thread under one C mutex.
    Resolves to the final count (== ``increments``) after about 10 ms.
    Cancelling it stops the tasks that have not run yet.
    """
    n = u64("increments", increments)
    return _submit(
        lambda rt, port, token: lib.tr_counter_demo(rt, port, token, n, STEP_SECONDS),
        lambda value, payload: value,
    )


def with_timeout(operation_ms: int, timeout_ms: int) -> asyncio.Future[str]:
    """Run a native ``operation_ms`` sleep under a ``timeout_ms`` timeout.

    Resolves to ``"Operation completed"``, or raises ``TimeoutError("Operation
    timed out after {timeout_ms}ms (operation would take {operation_ms}ms)")``.
    The operation wins a tie, as with ``tokio::time::timeout``.
    """
    op_ms = u64("operation_ms", operation_ms)
    to_ms = u64("timeout_ms", timeout_ms)

    def timed_out(status: int, value: int) -> BaseException | None:
        if status != lib.TR_TIMEDOUT:
            return None
        return TimeoutError(f"Operation timed out after {to_ms}ms (operation would take {op_ms}ms)")

    return _submit(
        lambda rt, port, token: lib.tr_timeout_sleep(
            rt, port, token, op_ms / 1000.0, to_ms / 1000.0
        ),
        lambda value, payload: "Operation completed",
        timed_out,
    )


def _strings(value: int, payload: Any) -> list[str]:
    vec = ffi.cast("tr_strvec_t *", payload)
    return [ffi.string(vec.items[i]).decode() for i in range(vec.len)]


def channel_demo(message_count: int) -> asyncio.Future[list[str]]:
    """Send ``message_count`` messages through a native channel of capacity 32.

    A producer sends ``"Message {i}"`` and sleeps 10 ms after each send; a
    consumer collects until the channel closes.  Resolves to the messages in
    order after about ``10 * message_count`` ms.  Cancelling it stops both
    tasks and frees the messages in flight.
    """
    n = u64("message_count", message_count)
    return _submit(
        lambda rt, port, token: lib.tr_channel_demo(
            rt, port, token, n, CHANNEL_CAPACITY, STEP_SECONDS
        ),
        _strings,
    )
