"""A FIFO mutex for coroutines on any loops and plain threads at once.

The lock lives in C (``tr_mutex_t``).  Unlocking hands it straight to the
oldest waiter, a thread or a coroutine alike, so nobody can barge in and
acquisitions happen in arrival order.  A coroutine that is handed the lock
but cancelled before it could use it gives it on to the next waiter.

Interrupts.  Every acquisition carries a ticket, and C remembers the ticket
the lock is held under: an acquire that ends in any exception (a
cancellation, or a ``KeyboardInterrupt`` landing right after the C call
took the lock) gives the lock back with ``tr_mutex_unlock_if(ticket)``,
which does nothing unless the lock is held under that ticket.  So an
interrupted acquire never leaves the lock held.

Wakes.  A release that hands the lock to a waiting coroutine has its port
drained by the releasing thread (see ``_dispatch``): on the coroutine's own
loop at once, on another loop with one ``call_soon_threadsafe``.
"""

from __future__ import annotations

import itertools
from types import TracebackType

from . import _default, _waiting
from ._dispatch import call_waking
from ._errors import status_error
from ._lifetime import owned
from ._native import ffi, lib
from ._runtime import Runtime, check_runtime_arg, ports_of
from ._validate import timeout_seconds

_OK = lib.TR_OK
_try_lock = lib.tr_mutex_try_lock
_unlock = lib.tr_mutex_unlock
_NULL = ffi.NULL
#: Acquisition tickets: unique in the process, never 0.
_tickets = itertools.count(1).__next__


class Mutex:
    """A fair (FIFO) lock usable across asyncio loops and threads.

    * ``async with m:`` / ``await m.acquire()`` in coroutines;
      ``with m:`` / ``m.acquire_blocking(timeout)`` in plain threads (on a
      thread running an asyncio loop they raise ``RuntimeError`` rather than
      block the loop).
    * Waiters get the lock in the order they started waiting.
    * A cancelled ``acquire`` never leaves the lock held: if the lock was
      handed to it at that moment, it is handed on to the next waiter.  The
      same holds for an acquire interrupted by an exception at any point
      (Ctrl-C): either it returns, holding the lock, or it raises, not
      holding it.
    * A coroutine the lock is handed to on its own loop runs in the same or
      the next loop iteration, as with ``asyncio.Lock``.
    * Not owned by a thread or task: :meth:`release` may be called from
      anywhere, and raises ``RuntimeError`` if the lock is not held.

    ``runtime`` wakes waiting coroutines (default: the default runtime).  If it
    is shut down, waiting coroutines get ``CancelledError`` and later
    contended ``acquire()`` calls raise ``RuntimeError``.
    """

    __slots__ = ("__weakref__", "_ptr", "_runtime", "_waiting")

    def __init__(self, *, runtime: Runtime | None = None) -> None:
        check_runtime_arg(runtime)
        out = ffi.new("tr_mutex_t **")
        rc = lib.tr_mutex_new(out)
        if rc != lib.TR_OK:
            raise status_error(rc)
        self._ptr = owned(out[0], lib.tr_mutex_release)
        self._runtime = runtime
        self._waiting = 0  # coroutines waiting for it (a hint: wakes go direct)

    def __repr__(self) -> str:
        return f"<Mutex {'locked' if self.locked() else 'unlocked'}>"

    def locked(self) -> bool:
        """Whether the lock is held (a snapshot)."""
        return bool(lib.tr_mutex_locked(self._ptr))

    def _unlock_if(self, ticket: int) -> None:
        """Give the lock back if it is held under ``ticket`` (else nothing)."""
        call_waking(lib.tr_mutex_unlock_if, self._ptr, ticket)

    async def acquire(self) -> bool:
        """Wait for the lock and take it; returns ``True``.

        If cancelled while waiting (or interrupted anywhere), the lock is not
        held by this caller (and not left held by anyone on its behalf).
        """
        ptr = self._ptr
        ticket = 0
        try:
            ticket = _tickets()
            if _try_lock(ptr, ticket) == _OK:
                return True
            self._waiting += 1
            try:
                await _waiting.wait(
                    ports_of(_default.runtime_or_default(self._runtime)),
                    lambda port, token, out: lib.tr_mutex_wait(ptr, port, token, ticket, out),
                    lambda: self._unlock_if(ticket),
                )
            finally:
                self._waiting -= 1
            return True  # taken at once by tr_mutex_wait, or handed over
        except BaseException:
            if ticket:
                self._unlock_if(ticket)
            raise

    def acquire_blocking(self, timeout: float | None = None) -> bool:
        """Take the lock from a plain thread, waiting up to ``timeout`` seconds.

        Returns ``True`` once held, ``False`` if ``timeout`` passed first
        (``None``: wait forever), like ``threading.Lock.acquire``.  Raises
        ``RuntimeError`` on a thread running an asyncio loop.  Interrupted
        (Ctrl-C on the main thread), it raises without holding the lock.
        """
        limit = timeout_seconds("timeout", timeout)
        _waiting.forbid_running_loop("acquire_blocking")
        ptr = self._ptr
        ticket = 0
        try:
            ticket = _tickets()
            if _try_lock(ptr, ticket) == _OK:
                return True
            if not _waiting.on_main_thread():
                return bool(lib.tr_mutex_lock_blocking(ptr, limit, ticket) == _OK)  # all in C
            return _waiting.wait_in_slices(
                lambda out: lib.tr_mutex_wait_thread(ptr, ticket, out),
                lambda: self._unlock_if(ticket),
                _waiting.deadline_after(limit),
            )
        except BaseException:
            if ticket:
                self._unlock_if(ticket)
            raise

    def release(self) -> None:
        """Release the lock (handing it to the oldest waiter, if any).

        Raises ``RuntimeError`` if it is not locked.  The hand-off to a
        coroutine is delivered by this thread (see the module docs).  An
        exception that interrupts ``release()`` before it reaches C (its
        first line) leaves the lock with its holder, like
        ``threading.Lock.release``; once C has unlocked, the hand-off is never
        lost (at worst delayed to the dispatcher's next sweep).
        """
        if self._waiting:
            rc = call_waking(_unlock, self._ptr)
        else:
            rc = _unlock(self._ptr, _NULL)
        if rc != _OK:
            raise RuntimeError("Mutex.release(): the mutex is not locked")

    async def __aenter__(self) -> Mutex:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __enter__(self) -> Mutex:
        self.acquire_blocking()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
