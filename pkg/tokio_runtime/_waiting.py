"""Waiting on native channels and locks, from coroutines and from threads.

An asyncio task waits by queueing a C waiter for its loop's port and
awaiting a plain future that the waiter's record resolves (:class:`Waiter`
is that record's handler).  Whatever ends the wait (the record, a
cancellation, the coroutine being closed, the loop closing, shutdown), the
waiter is released exactly once, and a wake that arrived but will not be
used is passed on, so no item and no lock is ever left unclaimed while others
wait.

A thread waits inside C with the GIL released.  The main thread waits in
slices instead, so that Ctrl-C (which CPython can only act on between
bytecodes) interrupts it within ``SLICE`` seconds; its waiter stays queued
between slices, so it keeps its place in line.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable

from ._dispatch import Ports
from ._errors import status_error
from ._native import ffi, lib

#: Longest uninterrupted native wait on the main thread (seconds).
SLICE = 0.05


class Waiter:
    """Handler of a channel or mutex waiter (``tr_waiter_t``).

    Its record only says "woken"; ``fut`` gets ``None``.  The C waiter sits
    in ``cell`` (a ``tr_waiter_t **`` the wait call filled in); whoever stops
    waiting releases it with :meth:`release`, which takes it out of the cell
    atomically, so only the first release of several (the coroutine's
    cleanup, a closed loop's sweep) acts.  A wake that will not be acted on
    is passed on by ``pass_on`` (``tr_channel_notify`` or giving the lock
    back), so a cancelled waiter never swallows an item or keeps a lock.

    From its record until its coroutine takes the wake, it sits in its
    port's ``woken`` set: if the loop closes in between (the task will never
    run again), ``Port.close`` passes the wake on.  A record delivered twice
    (after an interrupted drain) changes nothing the second time.
    """

    __slots__ = ("cell", "fut", "pass_on", "woken")

    def __init__(
        self,
        fut: asyncio.Future[None],
        cell: Any,
        pass_on: Callable[[], None],
        woken: set[Any],
    ) -> None:
        self.fut = fut
        self.cell = cell
        self.pass_on = pass_on
        self.woken = woken

    def release(self, used: bool) -> None:
        """Give the C waiter back; pass its wake on unless ``used``."""
        release_cell(self.cell, self.pass_on, used)

    def _tr_deliver(self, status: int, value: int, final: int) -> None:
        self.woken.add(self)  # even if cancelled: the task still has to run
        if not self.fut.done():
            self.fut.set_result(None)

    def _tr_abort(self, loop_alive: bool) -> None:
        self.release(used=False)
        if loop_alive and not self.fut.done():
            self.fut.cancel()


def release_cell(cell: Any, pass_on: Callable[[], None], used: bool) -> None:
    """Release the waiter in ``cell`` (if not yet); pass an unused wake on."""
    if lib.tr_waiter_release_cell(cell) == 1 and not used:
        pass_on()


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
    cell = ffi.new("tr_waiter_t **")  # NULL until register() queues a waiter
    used = False
    try:
        rc = register(cell)
        if rc == lib.TR_OK:
            return True
        if rc != lib.TR_PENDING:
            raise status_error(rc)
        while True:
            left = SLICE if deadline is None else min(SLICE, deadline - time.monotonic())
            if lib.tr_waiter_wait(cell[0], max(0.0, left)) == lib.TR_OK:
                used = True
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            # Back in Python for a moment: a pending KeyboardInterrupt is raised here.
    finally:
        # Whatever happened, from before register() returned to here: the
        # waiter (if one was queued) is released, an unused wake passed on.
        release_cell(cell, pass_on, used)


def deadline_after(timeout: float) -> float | None:
    """The ``time.monotonic()`` deadline ``timeout`` seconds from now (None: never)."""
    return None if timeout < 0 else time.monotonic() + timeout


async def wait(
    ports: Ports,
    register: Callable[[Any, int, Any], int],
    pass_on: Callable[[], None],
) -> bool:
    """Queue a native waiter on this loop's port and wait for its wake.

    ``ports`` are the ports of the runtime that wakes the waiter.
    ``register(port_ptr, token, out)`` calls ``tr_channel_wait`` or
    ``tr_mutex_wait``.  Returns ``False`` if it was ready at once (nothing
    queued), ``True`` after a wake.  On any exception the waiter is released
    and an unused wake is passed on with ``pass_on()``.
    """
    loop = asyncio.get_running_loop()
    port = ports.port_for(loop)
    token = ports.next_token()
    cell = ffi.new("tr_waiter_t **")  # NULL until register() queues a waiter
    waiter = None
    used = False
    try:
        rc = register(port.ptr, token, cell)
        if rc == lib.TR_OK:
            return False
        if rc != lib.TR_PENDING:
            ports.check(rc)
        fut = loop.create_future()
        waiter = Waiter(fut, cell, pass_on, port.woken)
        port.pending[token] = waiter
        await fut
        used = True
    finally:
        # Whatever ended the wait, from before register() returned to here
        # (a wake, a cancellation, an interrupt, the coroutine being closed):
        # the waiter is released once and an unused wake passed on.
        port.pending.pop(token, None)
        port.woken.discard(waiter)
        release_cell(cell, pass_on, used)
    return True
