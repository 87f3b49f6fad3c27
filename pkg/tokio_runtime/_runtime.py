"""The runtime object: a native runtime, its ports and its dispatcher.

A :class:`Runtime` is one C ``tr_runtime_t`` (a libev loop thread plus
worker threads), the :class:`~._dispatch.Ports` of the asyncio loops that
use it, and one dispatcher thread.  Every live runtime is listed (weakly) in
this module, so that the exit and fork hooks of :mod:`._default` can find
them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Callable, TypeVar

from . import _promise, _task, _time
from ._dispatch import Ports, start_dispatcher
from ._errors import status_error
from ._lifetime import owned
from ._native import ffi, lib
from ._stats import native_stats
from ._validate import check_thread_name, check_worker_threads, timeout_seconds

_RUNNING, _STOPPED, _FORKED = "running", "stopped", "forked"
T = TypeVar("T")
log = logging.getLogger("tokio_runtime")


class Runtime:
    """A native runtime: one libev loop thread and ``worker_threads`` workers.

    Threads are named ``{thread_name}-0`` (the libev loop), ``{thread_name}-1``
    .. ``-{worker_threads}`` (workers) and ``-{worker_threads + 1}`` (the
    dispatcher, a Python thread), the name cut to the 15 bytes Linux keeps.

    Operations can be awaited from any number of asyncio loops (each in its
    own thread) at once.  A runtime lives until :meth:`shutdown` (or the end
    of a ``with`` block, or interpreter exit); dropping the last reference
    does not stop it, because its dispatcher thread holds one.
    """

    def __init__(self, worker_threads: int = 4, thread_name: str = "tokio-runtime") -> None:
        self.worker_threads = check_worker_threads(worker_threads)
        self.thread_name = check_thread_name(thread_name)
        name = self.thread_name.encode()
        config = ffi.new("tr_config_t *", {"worker_threads": self.worker_threads})
        name_buf = ffi.new("char[]", name)
        config.thread_name = name_buf
        out = ffi.new("tr_runtime_t **")
        rc = lib.tr_runtime_new(config, out)
        if rc != lib.TR_OK:
            raise status_error(rc)
        # Released (which shuts it down first) when this object is collected;
        # the C memory lives on while ports hold references.
        self._ptr = owned(out[0], lib.tr_runtime_release)
        self._pid = os.getpid()
        self._state = _RUNNING
        self._lock = threading.Lock()
        # Set once a shutdown has joined every thread (see shutdown()).
        self._joined = threading.Event()
        self._ports = Ports(self._ptr, self._check_usable)
        try:
            # Named like the native threads: loop -0, workers -1..-N,
            # dispatcher -(N+1).
            self._dispatcher = start_dispatcher(
                self._ports, self.thread_name, self.worker_threads + 1, self
            )
        except BaseException:
            self._state = _STOPPED
            lib.tr_runtime_shutdown(self._ptr)
            raise
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Runtime {self.thread_name!r} worker_threads={self.worker_threads} {self._state}>"

    # -- operations ------------------------------------------------------------
    def sleep(self, seconds: float, result: T = None) -> asyncio.Future[T]:  # type: ignore[assignment]
        """Return a future that resolves to ``result`` after ``seconds``.

        The timer is a libev timer on this runtime's loop thread.  Arguments
        are checked at call time: ``TypeError`` for a non-number, ``ValueError``
        for a negative, NaN, infinite or too large (> 1e9) value.  Needs a
        running asyncio loop (``RuntimeError`` otherwise).  Cancelling the
        future stops the native timer; at shutdown the future is cancelled.
        """
        return _time.sleep(self._ports, seconds, result)

    def timeout(self, seconds: float, awaitable: Awaitable[T]) -> Awaitable[T]:
        """Await ``awaitable`` for at most ``seconds``; see :func:`timeout`."""
        return _time.timeout(self._ports, seconds, awaitable)

    def spawn_background(
        self, count: int, interval: float, on_tick: Callable[[int], Any] | None = None
    ) -> _task.TaskHandle:
        """Start a detached native ticker; see :func:`spawn_background`."""
        return _task.spawn_background(self._ports, count, interval, on_tick)

    def run_native(self, fn: Any, arg: Any = None) -> asyncio.Future[int]:
        """Run the C function ``fn(arg, cancelled)`` on a worker thread.

        ``fn`` is a cffi function pointer of the signature
        ``int64_t fn(void *arg, const volatile int *cancelled)`` (from your
        own cffi module, or ``ffi.cast``); ``arg`` is ``None`` (NULL), a
        cffi pointer or a buffer (``bytearray``, ``memoryview``...), kept
        alive until ``fn`` has returned.  ``fn`` runs without the GIL; the
        returned future resolves to its ``int64_t`` result.

        Workers run functions in FIFO order, as many at once as there are
        worker threads; the rest wait (``stats()``: ``native_queued``,
        ``native_running``).  Cancelled before a worker took it, ``fn``
        never runs.  Cancelled while it runs, ``*cancelled`` becomes
        non-zero (poll it to stop early) and its result is discarded.  At
        shutdown the same happens, and the shutdown waits for running
        functions to return.  ``TypeError``/``ValueError`` for a bad ``fn``
        or ``arg`` (a NULL pointer, another signature), before anything
        runs.  Needs a running asyncio loop.
        """
        return _promise.run_native(self._ports, fn, arg)

    def completion(self) -> _promise.Completion:
        """A :class:`Completion` for C code to complete, on the running loop."""
        return _promise.Completion(self._ports)

    def _check_not_forked(self) -> None:
        if self._state == _FORKED or self._pid != os.getpid():
            raise RuntimeError("tokio_runtime: this runtime belongs to the parent process")

    def _check_usable(self) -> None:
        self._check_not_forked()
        if self._state != _RUNNING:
            raise RuntimeError("tokio_runtime: the runtime is shut down")

    # -- lifecycle ------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters of the native side, and the configuration.

        ``pending`` (operations, promises and channel/mutex waits in flight:
        0 when nothing is), ``submitted``, ``completed``, ``cancelled``,
        ``live_ops`` (native operation objects not yet freed), ``promises``
        (native promises not yet freed), ``native_queued`` and
        ``native_running`` (:meth:`run_native` functions waiting for a
        worker, and running), ``waiters``, ``ports``,
        ``worker_threads``, ``thread_name`` and ``running``.  Safe from any
        thread; still works after :meth:`shutdown` (the final counters).

        Timer accuracy, over every native sleep timer (``sleep`` and
        ``timeout`` deadlines) fired so far: ``timers_fired``, and how late
        they fired, in microseconds, from when they were due to when the
        runtime's loop thread ran them and queued their results:
        ``timer_late_p50_us``, ``timer_late_p99_us`` (upper bounds, within
        25 %, from a histogram) and ``timer_late_max_us`` (exact).  This is
        the runtime's own lateness; the awaiting coroutine resumes when its
        asyncio loop gets to it, which a busy loop can delay further.
        """
        self._check_not_forked()
        stats = native_stats(self._ptr)
        stats["thread_name"] = self.thread_name
        stats["running"] = stats["running"] and self._state == _RUNNING
        return stats

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` has started."""
        return self._state != _RUNNING

    def shutdown(self, timeout: float | None = 5.0) -> None:
        """Cancel pending operations, stop and join every thread.  Idempotent.

        Every pending operation is cancelled: its future (or the task awaiting
        a channel, a lock or a timeout) gets ``CancelledError`` on its loop,
        if that loop still runs.  Afterwards every use of the runtime raises
        ``RuntimeError``; :meth:`stats` keeps working.

        ``timeout`` (seconds, ``None`` for no limit) bounds the wait for the
        native threads.  Their work is short, so they normally stop in
        milliseconds; if one is still busy when it expires, a warning is
        logged on the ``tokio_runtime`` logger and the joining finishes on a
        background thread.  Safe from any thread, including a loop thread
        (it never waits for a loop).  A call made while another one is under
        way returns, like it, once the threads are joined (or after its own
        ``timeout``, with the same warning).  In a forked child it does
        nothing: the parent's threads are not there to join.
        """
        limit = timeout_seconds("timeout", timeout)
        with self._lock:
            if self._pid != os.getpid():
                self._state = _FORKED
            state = self._state
            if state == _RUNNING:
                self._state = _STOPPED
        if state == _FORKED:
            return
        if state == _STOPPED:
            # Another call is shutting down: like it, return once the threads
            # are joined (never waits for a loop: that call does not either).
            if not self._joined.wait(None if limit < 0 else limit):
                self._warn_not_stopped(limit)
            return
        # Releases the GIL while it waits.
        if lib.tr_runtime_shutdown_timeout(self._ptr, limit) == lib.TR_OK:
            self._finish_shutdown()
            return
        self._warn_not_stopped(limit)
        threading.Thread(
            target=self._finish_shutdown, args=(True,), name="tokio-runtime-reaper", daemon=True
        ).start()

    def _warn_not_stopped(self, limit: float) -> None:
        log.warning(
            "tokio_runtime: runtime %r did not stop within %.3g s; "
            "its threads are joined in the background",
            self.thread_name,
            limit,
        )

    def _finish_shutdown(self, wait_native: bool = False) -> None:
        try:
            if wait_native:
                lib.tr_runtime_shutdown(self._ptr)
            if self._dispatcher is not threading.current_thread():
                self._dispatcher.join()  # it delivered the last records and returned
        finally:
            self._joined.set()  # concurrent shutdown() calls return now
        for port in self._ports.all():
            port.schedule_abort()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def _forked(self) -> None:
        """In a forked child: forget this runtime without touching its threads."""
        self._state = _FORKED
        # Never run C cleanup for the parent's objects here: their locks may
        # have been held by threads that do not exist in this process.
        ffi.gc(self._ptr, None)
        self._ports.disown_all()


_live: weakref.WeakSet[Runtime] = weakref.WeakSet()


def shutdown_all() -> None:
    """The exit hook: shut every live runtime down.

    A loop still running now runs in a daemon thread (the interpreter joined
    every other thread before calling exit hooks), which ends with the
    interpreter, like a daemon thread blocked in ``queue.Queue.get()``.
    Cancelling its futures would only make its tasks raise
    ``CancelledError`` out of ``asyncio.run`` on the way out, a traceback
    per thread: its port is detached first instead, so its operations are
    stopped natively and their futures stay pending, quietly.
    """
    for rt in list(_live):
        rt._ports.detach_running_loops()
        rt.shutdown()


def forget_all_after_fork() -> None:
    """In a forked child: forget every runtime without touching its threads."""
    for rt in list(_live):
        rt._forked()


def built_here(rt: Runtime) -> bool:
    """Whether ``rt`` was built by this process (not inherited over fork)."""
    return rt._pid == os.getpid()


def check_runtime_arg(rt: object) -> None:
    """``TypeError`` unless ``rt`` is a :class:`Runtime` or ``None``."""
    if rt is not None and not isinstance(rt, Runtime):
        raise TypeError(f"runtime must be a Runtime or None, not '{type(rt).__name__}'")


def ports_of(rt: Runtime) -> Ports:
    """The ports of ``rt``: what the primitives above submit and wait through."""
    return rt._ports
