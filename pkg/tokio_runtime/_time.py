"""Time: native sleeps, and deadlines for any awaitable.

``sleep`` is one libev timer per call, resolved through the port of the
running loop.  ``timeout`` arms one native timer as a deadline and awaits the
inner awaitable *in the calling task*, the way ``asyncio.timeout`` does: when
the deadline's record arrives, the task is cancelled, and the resulting
``CancelledError`` is turned into ``TimeoutError`` at the boundary.  No extra
task is created, and whatever the inner awaitable does on cancellation (a
native sleep stopping its timer, a channel receive passing its wake on) runs
exactly as for any other cancellation.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any, TypeVar

from ._dispatch import Ports
from ._native import lib
from ._validate import MAX_SECONDS
from ._validate import seconds as check_seconds

get_running_loop = asyncio.get_running_loop
_tr_sleep = lib.tr_sleep

T = TypeVar("T")


def sleep(ports: Ports, seconds: float, result: Any = None) -> asyncio.Future[Any]:
    """See :meth:`Runtime.sleep` (``ports``: the runtime's ports)."""
    cls = seconds.__class__
    if (cls is not float and cls is not int) or not 0 <= seconds <= MAX_SECONDS:
        seconds = check_seconds("seconds", seconds)  # raises, or converts
    loop = get_running_loop()
    port = ports.by_loop_id.get(id(loop))
    if port is None or port.closed:
        port = ports.port_for(loop)
    return port.submit(loop, _tr_sleep, (seconds,), result)  # type: ignore[no-any-return]


class _Deadline:
    """Handler of a timeout's timer: cancels the awaiting task when it fires."""

    __slots__ = ("armed", "fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.armed = True
        self.fired = False

    def _tr_deliver(self, status: int, value: int, final: int) -> None:
        if not self.armed:
            return
        if status == lib.TR_OK:
            # A task whose awaited future is already done (or that awaits
            # none) is scheduled to resume: cancelling it now would throw
            # CancelledError in instead of that result (asyncio's
            # _must_cancel).  The result wins: let the task take it first,
            # and expire one turn later unless its finally disarmed us.
            waiter = getattr(self.task, "_fut_waiter", None)
            if waiter is None or waiter.done():
                self.task.get_loop().call_soon(self._expire)
                return
            self.fired = True
        # else TR_CANCELLED: not our doing (disarming unregisters first), so
        # the runtime is shutting down: cancel like any pending operation.
        self.armed = False
        self.task.cancel()

    def _expire(self) -> None:
        if self.armed:  # the awaitable took its result but has not finished
            self.armed = False
            self.fired = True
            self.task.cancel()

    def _tr_abort(self, loop_alive: bool) -> None:
        # The runtime shut down under the deadline: cancel the waiting task
        # like every other pending operation (CancelledError, not a timeout).
        if self.armed and loop_alive:
            self.armed = False
            self.task.cancel()


def _close_quietly(awaitable: Any) -> None:
    if inspect.iscoroutine(awaitable):
        awaitable.close()  # never awaited: do not let it warn


def timeout(ports: Ports, seconds: float, awaitable: Awaitable[T]) -> Awaitable[T]:
    """See :func:`tokio_runtime.timeout` (``ports``: the runtime's ports)."""
    try:
        s = check_seconds("seconds", seconds)
        if not inspect.isawaitable(awaitable):
            raise TypeError(f"timeout() needs an awaitable, not '{type(awaitable).__name__}'")
        ports.check_usable()
    except BaseException:
        _close_quietly(awaitable)
        raise
    return _timeout(ports, s, awaitable)


async def _timeout(ports: Ports, seconds: float, awaitable: Awaitable[T]) -> T:
    try:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("timeout() must be awaited inside an asyncio task")
        port = ports.port_for(loop)
        token = port.start(loop, _tr_sleep, (seconds,))
    except BaseException:
        _close_quietly(awaitable)  # it will never be awaited
        raise
    deadline = _Deadline(task)
    port.pending[token] = deadline
    cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
    try:
        result = await awaitable
    except asyncio.CancelledError:
        if not deadline.fired:
            raise
        # Ours, unless someone else cancelled the task as well (3.11+ can
        # tell: uncancel() counts the requests).
        if hasattr(task, "uncancel") and task.uncancel() > cancelling:
            raise
        raise TimeoutError(f"timed out after {seconds:g} s") from None
    finally:
        if deadline.armed:
            deadline.armed = False
            port.cancel(token)  # stop the native timer
    if deadline.fired and hasattr(task, "uncancel"):
        # The deadline's cancel was absorbed by the inner awaitable, which
        # then returned: its result wins, and the task is not left cancelling.
        task.uncancel()
    return result
