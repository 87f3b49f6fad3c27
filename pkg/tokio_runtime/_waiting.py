"""Waiting on native channels and locks, from coroutines and from threads.

An asyncio task waits by queueing a C waiter for its loop's port and
awaiting a plain future that the waiter's record resolves.  Whatever ends the
wait (the record, a cancellation, the coroutine being closed, the loop
closing, shutdown), the waiter is released exactly once, and a wake that
arrived but will not be used is passed on, so no item and no lock is ever
left unclaimed while others wait.

A thread waits inside C with the GIL released.  On the main thread it waits
in slices so that Ctrl-C (which CPython can only act on between bytecodes)
interrupts it within ``SLICE`` seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ._bridge import Waiter
from ._native import ffi, lib

if TYPE_CHECKING:
    from ._runtime import Runtime

#: Longest uninterrupted native wait on the main thread (seconds).
SLICE = 0.05


def runtime_or_default(rt: Runtime | None) -> Runtime:
    """``rt``, or the default runtime."""
    if rt is not None:
        return rt
    from ._runtime import get_runtime

    return get_runtime()


def forbid_running_loop(what: str) -> None:
    """Raise ``RuntimeError`` if this thread runs an asyncio loop.

    A blocking wait there would stall the loop, and deadlock if the loop is
    what would end the wait.
    """
    if asyncio._get_running_loop() is not None:
        raise RuntimeError(
            f"{what}() would block the running asyncio loop in this thread; "
            "use the async form (await ...) instead"
        )


def block(call: Callable[[float], int], timeout: float) -> int:
    """Run the native blocking wait ``call(seconds)`` for ``timeout`` seconds.

    ``timeout`` negative means forever.  Returns the wait's status.
    """
    if threading.current_thread() is not threading.main_thread():
        return call(timeout)
    deadline = None if timeout < 0 else time.monotonic() + timeout
    while True:
        left = SLICE if deadline is None else min(SLICE, max(0.0, deadline - time.monotonic()))
        rc = call(left)
        if rc != lib.TR_TIMEDOUT or (deadline is not None and time.monotonic() >= deadline):
            return rc
        # Back in Python for a moment: a pending KeyboardInterrupt is raised here.


async def wait(
    rt: Runtime | None,
    register: Callable[[Any, int, Any], int],
    pass_on: Callable[[], None],
) -> bool:
    """Queue a native waiter on this loop's port and wait for its wake.

    ``register(port_ptr, token, out)`` calls ``tr_channel_wait`` or
    ``tr_mutex_wait``.  Returns ``False`` if it was ready at once (nothing
    queued), ``True`` after a wake.  On any exception the waiter is released
    and an unused wake is passed on with ``pass_on()``.
    """
    runtime = runtime_or_default(rt)
    loop = asyncio.get_running_loop()
    port = runtime.port_for(loop)
    token = runtime.next_token()
    out = ffi.new("tr_waiter_t **")
    rc = register(port._ptr, token, out)
    if rc == lib.TR_OK:
        return False
    if rc != lib.TR_PENDING:
        runtime.check(rc)
    fut = loop.create_future()
    waiter = Waiter(fut, out[0], pass_on)
    port.pending[token] = waiter
    used = False
    try:
        await fut
        used = True
    finally:
        port.pending.pop(token, None)
        waiter.release(used)
    return True
