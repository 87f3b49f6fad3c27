"""The five functions of the original PyO3 + Tokio example, on the C runtime.

Each checks its arguments when called (``OverflowError`` for a negative int,
``TypeError`` for a float or a wrong type), needs a running asyncio loop
(``RuntimeError("no running event loop")`` otherwise), and returns an
``asyncio.Future`` bound to that loop - awaitable, and usable with
``asyncio.gather`` and ``asyncio.wait_for``.

They are built from the public primitives, the way a user would write them:
``spawn_background_task`` is :func:`spawn_background` with a printing
``on_tick``, ``concurrent_tasks`` gathers native :func:`sleep` calls,
``channel_demo`` is a producer and a consumer task around a
:class:`Channel`.  Two stay single native operations, for what they measure:
``shared_counter_demo`` (a million tasks, each with its own libev timer and
its own lock/unlock of a C mutex on a worker thread: one Python object per
task would be the whole cost) and ``with_timeout`` (a native race in which the
operation wins ties, as ``tokio::time::timeout`` polls the inner future
first; two separately delivered timers could not promise that).
Cancelling a returned future cancels the native work and all of its children
(the original left its children running).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ._channel import Channel
from ._default import get_runtime
from ._native import lib
from ._port import NativeFuture
from ._runtime import Runtime, ports_of
from ._task import MAX_COUNT
from ._validate import MAX_SECONDS, U64_MAX, str_list, u64

#: Capacity of channel_demo's channel, as in the original.
CHANNEL_CAPACITY = 32
#: Per-step sleep of shared_counter_demo's tasks and channel_demo's producer.
STEP_SECONDS = 0.010


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

    def tick(i: int) -> None:
        print(f"Background task iteration: {i}/{count}")

    # Any u64 is accepted, as by the original; the native ticker takes at most
    # 2**63-1 ticks and 1e9 s between them, and beyond that (centuries) no
    # caller can tell the difference.
    ticks, interval = min(count, MAX_COUNT), min(delay_ms / 1000.0, MAX_SECONDS)
    get_runtime().spawn_background(ticks, interval, on_tick=tick)
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
    loop = asyncio.get_running_loop()
    if not items:
        done: asyncio.Future[list[str]] = loop.create_future()
        done.set_result([])
        return done
    rt = get_runtime()
    return asyncio.gather(
        *(rt.sleep((100 + 50 * i) / 1000.0, f"Fetched: {url}") for i, url in enumerate(items))
    )


class _CountFuture(NativeFuture):
    __slots__ = ()

    def _tr_deliver(self, status: int, value: int, final: int) -> None:
        self._tr_result = value  # the count is the result
        super()._tr_deliver(status, value, final)


def shared_counter_demo(increments: int) -> asyncio.Future[int]:
    """Spawn ``increments`` native tasks that each sleep 10 ms, then add 1.

    Each task's increment runs on a worker thread under one C mutex.
    Resolves to the final count (== ``increments``) after about 10 ms.
    Cancelling it stops the tasks that have not run yet.
    """
    n = u64("increments", increments)
    loop = asyncio.get_running_loop()
    ports = ports_of(get_runtime())
    port = ports.port_for(loop)
    fut: asyncio.Future[int] = port.submit(
        loop, lib.tr_counter_demo, (n, STEP_SECONDS), None, _CountFuture
    )
    lib.tr_runtime_kick(ports.rt_ptr)  # start now: its workers run while Python is busy
    return fut


class _TimeoutFuture(NativeFuture):
    __slots__ = ("_tr_ms",)
    _tr_ms: tuple[int, int]

    def _tr_error(self, status: int, value: int) -> BaseException:
        if status == lib.TR_TIMEDOUT:
            op_ms, to_ms = self._tr_ms
            return TimeoutError(
                f"Operation timed out after {to_ms}ms (operation would take {op_ms}ms)"
            )
        return super()._tr_error(status, value)


def with_timeout(operation_ms: int, timeout_ms: int) -> asyncio.Future[str]:
    """Run a native ``operation_ms`` sleep under a ``timeout_ms`` timeout.

    Resolves to ``"Operation completed"``, or raises ``TimeoutError("Operation
    timed out after {timeout_ms}ms (operation would take {operation_ms}ms)")``.
    The operation wins a tie, as with ``tokio::time::timeout``.
    """
    # Plain ints in range skip the checks' call (a benchmarked hot path).
    op_ms, to_ms = operation_ms, timeout_ms
    if op_ms.__class__ is not int or not 0 <= op_ms <= U64_MAX:
        op_ms = u64("operation_ms", op_ms)
    if to_ms.__class__ is not int or not 0 <= to_ms <= U64_MAX:
        to_ms = u64("timeout_ms", to_ms)
    loop = asyncio.get_running_loop()
    ports = ports_of(get_runtime())
    port = ports.by_loop_id.get(id(loop))
    if port is None or port.closed:
        port = ports.port_for(loop)
    seconds = (op_ms / 1000.0, to_ms / 1000.0)
    fut: _TimeoutFuture = port.submit(
        loop, lib.tr_timeout_sleep, seconds, "Operation completed", _TimeoutFuture
    )
    fut._tr_ms = (op_ms, to_ms)
    return fut


async def _producer(rt: Runtime, channel: Channel[str], n: int) -> None:
    try:
        for i in range(n):
            await channel.send(f"Message {i}")
            await rt.sleep(STEP_SECONDS)
    finally:
        channel.close()


async def _channel_demo(rt: Runtime, n: int) -> list[str]:
    channel: Channel[str] = Channel(CHANNEL_CAPACITY, runtime=rt)
    producer = asyncio.ensure_future(_producer(rt, channel, n))
    try:
        received = [message async for message in channel]
        await producer
        return received
    except RuntimeError:
        if not rt.closed:
            raise
        # The runtime shut down between two steps (a new sleep or wait was
        # refused): end cancelled, as an operation pending at shutdown does.
        raise asyncio.CancelledError from None
    finally:
        if producer.done():
            if not producer.cancelled():
                producer.exception()  # seen here: never "exception was never retrieved"
        # Not when the loop is closed: this runs then only because the
        # abandoned coroutine is being destroyed, and cancelling would
        # schedule a callback on the closed loop ("Event loop is closed").
        elif not producer.get_loop().is_closed():
            producer.cancel()


def channel_demo(message_count: int) -> asyncio.Future[list[str]]:
    """Send ``message_count`` messages through a native channel of capacity 32.

    A producer task sends ``"Message {i}"`` and sleeps 10 ms (a native
    sleep) after each send; a consumer collects until the channel closes.
    Resolves to the messages in order after about ``10 * message_count`` ms.
    Cancelling it cancels both tasks; the channel and its items are freed.
    """
    n = u64("message_count", message_count)
    loop = asyncio.get_running_loop()
    return loop.create_task(_channel_demo(get_runtime(), n))
