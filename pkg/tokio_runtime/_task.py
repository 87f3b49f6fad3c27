"""Detached native background tasks and their handles.

A background task is a native ticker (a repeating libev timer).  Its C side
keeps a small shared handle (``tr_task_t``) whose progress and status any
thread can read without a lock and without the GIL-holding loop's help, so
``TaskHandle.progress`` keeps counting while the asyncio thread is busy.  Its
progress records reach the spawning loop like any other completion and drive
``on_tick`` and :meth:`TaskHandle.ticks` there, every iteration in order, a
time slice of calls per loop turn when they fall behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Generator
from typing import Any, Callable

from ._dispatch import Ports
from ._lifetime import owned
from ._native import ffi, lib
from ._validate import callback_or_none, int_in_range
from ._validate import seconds as check_seconds

#: Largest iteration count (the C side counts in int64).
MAX_COUNT = 2**63 - 1
#: Longest one turn of the spawning loop spends on a ticker's ``on_tick``
#: calls (seconds): at least one call, then calls go on until this much time
#: has passed; the rest follow in a later turn (``loop.call_soon``), so a
#: backlog of slow callbacks never starves the loop's other callbacks.
TICK_SLICE = 0.005
_clock = time.perf_counter
_OK = lib.TR_OK


class TaskHandle:
    """A detached native background task, returned by ``spawn_background``.

    * ``await handle`` gives the number of iterations completed (== ``count``)
      once the task finishes, or raises ``CancelledError`` if it was
      cancelled.  Awaiting is shielded: cancelling the awaiting task does not
      cancel the background task (it is detached, like a Tokio
      ``JoinHandle``).  Await it on the loop that spawned it.
    * :meth:`cancel` stops it from any thread; :meth:`done`,
      :meth:`cancelled` and :attr:`progress` read the native state, from any
      thread, even while the spawning loop is busy or gone.
    * ``on_tick(i)`` and :meth:`ticks` run on the spawning loop, for every
      iteration in order.  When ``on_tick`` is slower than the interval, the
      ticker keeps its native pace (``progress`` stays exact) and the calls
      fall behind: the backlog is delivered in order, at most about
      ``TICK_SLICE`` (5 ms) of calls per loop turn, so the loop's other
      callbacks and Ctrl-C still get their turn.  ``await handle`` and
      ``ticks()`` end only after the last iteration was delivered.
    * Once :meth:`cancel` has returned ``True``, no further ``on_tick``
      call starts (except, from another thread, the one the loop thread was
      starting) and ``ticks()`` yields nothing more: iterations not yet
      delivered are dropped, though ``progress`` counts them.  The same holds
      once a cancellation for any other reason (shutdown) reaches the loop.
      If the task completes anyway (its last iteration won the race with
      the cancel), every iteration is still delivered.

    If the spawning loop closes first, the native timer is stopped within the
    runtime's sweep interval (0.25 s): the task ends as cancelled, ``progress``
    stops where it was, and no more ``on_tick`` calls happen.  At runtime
    shutdown (or interpreter exit) it is cancelled too.
    """

    __slots__ = (
        "_count",
        "_delivered",
        "_final",
        "_finished",
        "_fut",
        "_loop",
        "_on_tick",
        "_ptr",
        "_rt_ptr",
        "_scheduled",
        "_seen",
        "_stop",
        "_token",
        "_watchers",
    )

    def __init__(
        self,
        rt_ptr: Any,
        loop: asyncio.AbstractEventLoop,
        token: int,
        ptr: Any,
        count: int,
        on_tick: Callable[[int], Any] | None,
    ) -> None:
        self._rt_ptr = rt_ptr
        self._loop = loop
        self._token = token
        self._ptr = owned(ptr, lib.tr_task_release)
        self._count = count
        self._on_tick = on_tick
        self._fut: asyncio.Future[int] = loop.create_future()
        self._delivered = 0  # iterations seen on the loop (on_tick, ticks())
        self._seen = 0  # iterations reported by the records so far
        self._final: int | None = None  # the final record's status, once seen
        self._stop = False  # cancel() was called: start no more on_tick
        self._scheduled = False  # a _pump is queued with call_soon
        self._finished = False  # every iteration delivered after the final record
        self._watchers: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        state = "running"
        if self.done():
            state = "cancelled" if self.cancelled() else "finished"
        return f"<TaskHandle {state} {self.progress}/{self._count}>"

    # -- any thread --------------------------------------------------------------
    @property
    def count(self) -> int:
        """The number of iterations asked for."""
        return self._count

    @property
    def progress(self) -> int:
        """Iterations completed so far, read from the native side.

        Safe from any thread; it advances even while the spawning loop is
        blocked, and may run ahead of the ``on_tick`` calls delivered so far.
        """
        return int(lib.tr_task_progress(self._ptr))

    def done(self) -> bool:
        """Whether the task has finished (completed or cancelled)."""
        return bool(lib.tr_task_status(self._ptr) != lib.TR_PENDING)

    def cancelled(self) -> bool:
        """Whether the task ended by being cancelled."""
        return bool(lib.tr_task_status(self._ptr) == lib.TR_CANCELLED)

    def cancel(self) -> bool:
        """Ask the native task to stop.  Safe from any thread.

        Returns ``False`` if it had already finished.  The stop is
        asynchronous: ``done()`` becomes true, and awaiting the handle raises
        ``CancelledError``, once the runtime's loop thread has stopped the
        timer (microseconds later); an iteration that fired first still
        counts.  If the task finishes its last iteration at that moment, it
        ends as completed, not cancelled.
        """
        if self.done():
            return False
        self._stop = True  # no more on_tick calls: see the class docs
        lib.tr_cancel(self._rt_ptr, self._token)  # after shutdown: already cancelled
        return True

    # -- the spawning loop -----------------------------------------------------------
    def __await__(self) -> Generator[Any, None, int]:
        return asyncio.shield(self._fut).__await__()

    def ticks(self) -> AsyncIterator[int]:
        """Iterate over iteration numbers 1, 2, ... as they are delivered.

        Every iteration completed so far is yielded first, then each new one
        as it happens; the iteration ends when the task finishes (normally or
        cancelled).  Each call gives an independent iterator.  Use it on the
        spawning loop.
        """
        return self._ticks()

    async def _ticks(self) -> AsyncIterator[int]:
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("TaskHandle.ticks() must be used on the loop that spawned the task")
        i = 1
        while True:
            while i <= self._delivered:
                yield i
                i += 1
            if self._finished:
                return
            w = self._loop.create_future()
            self._watchers.append(w)
            try:
                await w
            finally:
                if w in self._watchers:
                    self._watchers.remove(w)

    # -- handler protocol (loop thread) -----------------------------------------------
    def _tr_deliver(self, status: int, value: int, final: int) -> None:
        # Records are coalesced in C: one may account for several iterations.
        if value > self._seen:
            self._seen = value
        if final:
            self._final = status
        if not self._scheduled:  # else the queued _pump goes on from here
            self._pump()

    def _pump(self) -> None:
        """Deliver iterations in order, for at most TICK_SLICE of this turn."""
        self._scheduled = False
        interrupt: BaseException | None = None
        on_tick = self._on_tick
        end = _clock() + TICK_SLICE
        calls = 0
        while self._delivered < self._seen:
            final = self._final
            if final is None:
                if self._stop:
                    break  # cancel(): wait for the final record to say how it ended
            elif final != _OK:
                self._seen = self._delivered  # cancelled: drop the backlog
                break
            if on_tick is None:
                self._delivered = self._seen
                break
            if calls and _clock() >= end:  # yield to the loop, go on next turn
                self._scheduled = True
                self._loop.call_soon(self._pump)
                break
            calls += 1
            self._delivered += 1
            try:
                on_tick(self._delivered)
            except Exception as exc:
                self._loop.call_exception_handler(
                    {"message": "tokio_runtime: on_tick raised", "exception": exc}
                )
            except BaseException as exc:  # keep counting; re-raise at the end
                interrupt = interrupt or exc
        if self._final is not None and self._delivered == self._seen and not self._finished:
            self._finished = True
            if not self._fut.done():
                if self._final == _OK:
                    self._fut.set_result(self._seen)
                else:
                    self._fut.cancel()
        self._wake_watchers()
        if interrupt is not None:
            raise interrupt

    def _tr_abort(self, loop_alive: bool) -> None:
        self._final = lib.TR_CANCELLED  # a queued _pump delivers nothing more
        self._seen = self._delivered
        self._finished = True
        if loop_alive:
            if not self._fut.done():
                self._fut.cancel()
            self._wake_watchers()

    def _wake_watchers(self) -> None:
        watchers, self._watchers = self._watchers, []
        for w in watchers:
            if not w.done():
                w.set_result(None)


def spawn_background(
    ports: Ports, count: int, interval: float, on_tick: Callable[[int], Any] | None = None
) -> TaskHandle:
    """See :func:`tokio_runtime.spawn_background` (``ports``: the runtime's ports)."""
    n = int_in_range("count", count, 0, MAX_COUNT)
    s = check_seconds("interval", interval)
    callback = callback_or_none("on_tick", on_tick)
    loop = asyncio.get_running_loop()
    port = ports.port_for(loop)
    out = ffi.new("tr_task_t **")
    token = port.start(loop, lib.tr_ticker, (n, s, out))
    lib.tr_runtime_kick(ports.rt_ptr)  # start now: it ticks while Python is busy
    handle = TaskHandle(ports.rt_ptr, loop, token, out[0], n, callback)
    port.pending[token] = handle
    return handle
