"""A FIFO mutex for coroutines on any loops and plain threads at once.

The lock lives in C (``tr_mutex_t``).  Unlocking hands it straight to the
oldest waiter, a thread or a coroutine alike, so nobody can barge in and
acquisitions happen in arrival order.  A coroutine that is handed the lock
but cancelled before it could use it gives it on to the next waiter.
"""

from __future__ import annotations

import threading
from types import TracebackType

from . import _default, _waiting
from ._errors import status_error
from ._lifetime import owned
from ._native import ffi, lib
from ._runtime import Runtime, check_runtime_arg, ports_of
from ._validate import timeout_seconds

_MAIN_THREAD = threading.main_thread().ident
_PENDING = lib.TR_PENDING


class Mutex:
    """A fair (FIFO) lock usable across asyncio loops and threads.

    * ``async with m:`` / ``await m.acquire()`` in coroutines;
      ``with m:`` / ``m.acquire_blocking(timeout)`` in plain threads (on a
      thread running an asyncio loop they raise ``RuntimeError`` rather than
      block the loop).
    * Waiters get the lock in the order they started waiting.
    * A cancelled ``acquire`` never leaves the lock held: if the lock was
      handed to it at that moment, it is handed on to the next waiter.
    * Not owned by a thread or task: :meth:`release` may be called from
      anywhere, and raises ``RuntimeError`` if the lock is not held.

    ``runtime`` wakes waiting coroutines (default: the default runtime).  If it
    is shut down, waiting coroutines get ``CancelledError`` and later
    contended ``acquire()`` calls raise ``RuntimeError``.
    """

    __slots__ = ("__weakref__", "_ptr", "_runtime")

    def __init__(self, *, runtime: Runtime | None = None) -> None:
        check_runtime_arg(runtime)
        out = ffi.new("tr_mutex_t **")
        rc = lib.tr_mutex_new(out)
        if rc != lib.TR_OK:
            raise status_error(rc)
        self._ptr = owned(out[0], lib.tr_mutex_release)
        self._runtime = runtime

    def __repr__(self) -> str:
        return f"<Mutex {'locked' if self.locked() else 'unlocked'}>"

    def locked(self) -> bool:
        """Whether the lock is held (a snapshot)."""
        return bool(lib.tr_mutex_locked(self._ptr))

    async def acquire(self) -> bool:
        """Wait for the lock and take it; returns ``True``.

        If cancelled while waiting, the lock is not held by this caller (and
        not left held by anyone on its behalf).
        """
        ptr = self._ptr
        if lib.tr_mutex_try_lock(ptr) == lib.TR_OK:
            return True
        await _waiting.wait(
            ports_of(_default.runtime_or_default(self._runtime)),
            lambda port, token, out: lib.tr_mutex_wait(ptr, port, token, out),
            lambda: lib.tr_mutex_unlock(ptr),
        )
        return True  # taken at once by tr_mutex_wait, or handed over

    def acquire_blocking(self, timeout: float | None = None) -> bool:
        """Take the lock from a plain thread, waiting up to ``timeout`` seconds.

        Returns ``True`` once held, ``False`` if ``timeout`` passed first
        (``None``: wait forever), like ``threading.Lock.acquire``.  Raises
        ``RuntimeError`` on a thread running an asyncio loop.
        """
        limit = timeout_seconds("timeout", timeout)
        _waiting.forbid_running_loop("acquire_blocking")
        ptr = self._ptr
        if lib.tr_mutex_try_lock(ptr) == lib.TR_OK:
            return True
        if not _waiting.on_main_thread():
            return bool(lib.tr_mutex_lock_blocking(ptr, limit) == lib.TR_OK)  # all in C
        return _waiting.wait_in_slices(
            lambda out: lib.tr_mutex_wait_thread(ptr, out),
            lambda: lib.tr_mutex_unlock(ptr),
            _waiting.deadline_after(limit),
        )

    def release(self) -> None:
        """Release the lock (handing it to the oldest waiter, if any).

        Raises ``RuntimeError`` if it is not locked.
        """
        # Off the main thread, a hand-off to a waiting coroutine wakes its
        # loop from here instead of through the dispatcher thread.  Not on
        # the main thread: Ctrl-C may raise between taking the ready ports
        # and waking their loops, and then a wake would be lost.
        rt = self._runtime or _default.current()
        if rt is None or threading.get_ident() == _MAIN_THREAD:
            rc = lib.tr_mutex_unlock(self._ptr)
        else:
            ports = ports_of(rt)
            rc = lib.tr_mutex_unlock_quiet(self._ptr, ports.rt_ptr)
            if rc == _PENDING:
                ports.dispatch_here()
                return
        if rc != lib.TR_OK:
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
