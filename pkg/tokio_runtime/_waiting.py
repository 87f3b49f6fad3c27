"""Waiting on native channels and locks, from coroutines and from threads.

An asyncio task waits by queueing a C waiter for its loop's port and
awaiting a plain future that the waiter's record resolves.  Whatever ends the
wait (the record, a cancellation, the coroutine being closed, the loop
closing, shutdown), the waiter is released exactly once, and a wake that
arrived but will not be used is passed on, so no item and no lock is ever
left unclaimed while others wait.

A thread waits inside C with the GIL released.  The main thread waits in
slices instead, so that Ctrl-C (which CPython can only act on between
bytecodes) interrupts it within ``SLICE`` seconds; its waiter stays queued
between slices, so it keeps its place in line.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ._bridge import Waiter, status_error
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


def check_runtime(rt: object) -> None:
    """``TypeError`` unless ``rt`` is a :class:`Runtime` or ``None``."""
    from ._runtime import Runtime

    if rt is not None and not isinstance(rt, Runtime):
        raise TypeError(f"runtime must be a Runtime or None, not '{type(rt).__name__}'")


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


def on_main_thread() -> bool:
    """Whether this is the main thread (the one Python runs signal handlers on)."""
    return threading.current_thread() is threading.main_thread()


def wait_in_slices(
    register: Callable[[Any], int], pass_on: Callable[[], None], deadline: float | None
) -> bool:
    """Wait on the main thread for a native thread waiter, keeping its place.

    ``register(out)`` is ``tr_channel_wait_thread`` or
    ``tr_mutex_wait_thread``.  Waits in slices of at most ``SLICE`` seconds,
    coming back to Python in between so that Ctrl-C is raised here, without
    leaving the queue.  Returns ``True`` once ready or woken, ``False`` when
    ``deadline`` (a ``time.monotonic()`` value, ``None`` for no limit) passes.
    A wake that arrives but is not used (timeout, exception) is passed on.
    """
    out = ffi.new("tr_waiter_t **")
    rc = register(out)
    if rc == lib.TR_OK:
        return True
    if rc != lib.TR_PENDING:
        raise status_error(rc)
    waiter = out[0]
    used = False
    try:
        while True:
            left = SLICE if deadline is None else min(SLICE, deadline - time.monotonic())
            if lib.tr_waiter_wait(waiter, max(0.0, left)) == lib.TR_OK:
                used = True
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            # Back in Python for a moment: a pending KeyboardInterrupt is raised here.
    finally:
        if lib.tr_waiter_release(waiter) and not used:
            pass_on()


def deadline_after(timeout: float) -> float | None:
    """The ``time.monotonic()`` deadline ``timeout`` seconds from now (None: never)."""
    return None if timeout < 0 else time.monotonic() + timeout


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
    waiter = Waiter(fut, out[0], pass_on, port.woken)
    port.pending[token] = waiter
    used = False
    try:
        await fut
        used = True
    finally:
        port.pending.pop(token, None)
        port.woken.discard(waiter)
        waiter.release(used)
    return True
