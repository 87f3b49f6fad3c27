"""The runtime object, the process-wide default runtime, exit and fork safety.

A runtime is one C ``tr_runtime_t`` (a libev loop thread plus worker threads)
and one dispatcher thread.  The default runtime is built lazily on first use,
like the original example's ``OnceCell``; an ``atexit`` hook shuts every live
runtime down before the interpreter finalizes, so no native thread is left
running when Python state goes away.  A forked child never touches its
parent's runtime (those threads do not exist in the child): it builds a fresh
one on first use.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import threading
import weakref
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Callable, TypeVar

from . import _bridge, _task, _time
from ._lifetime import owned
from ._native import ffi, lib
from ._validate import check_thread_name, check_worker_threads, timeout_seconds

_RUNNING, _STOPPED, _FORKED = "running", "stopped", "forked"
T = TypeVar("T")
log = logging.getLogger("tokio_runtime")


def _late_bucket_upper_bounds() -> list[float]:
    lo, hi = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    bounds = []
    for b in range(len(ffi.new("tr_stats_t *").timer_late_hist)):
        lib.tr_late_bucket_bounds(b, lo, hi)
        bounds.append(float(hi[0]))
    return bounds


_LATE_UPPER_US = _late_bucket_upper_bounds()


def _late_quantile(hist: list[int], q: float, late_max_us: float) -> float:
    """Upper bound of the ``q`` quantile of a lateness histogram (0.0 if empty)."""
    total = sum(hist)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for count, upper in zip(hist, _LATE_UPPER_US):
        seen += count
        if seen >= rank:
            return min(upper, late_max_us)  # never above the exact maximum
    return late_max_us  # pragma: no cover - the loop always reaches the rank


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
            raise _bridge.status_error(rc)
        # Released (which shuts it down first) when this object is collected;
        # the C memory lives on while ports hold references.
        self._ptr = owned(out[0], lib.tr_runtime_release)
        self._pid = os.getpid()
        self._state = _RUNNING
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._port_ids = itertools.count(1)
        self._ports: dict[asyncio.AbstractEventLoop, _bridge.Port] = {}
        self._ports_by_id: dict[int, _bridge.Port] = {}
        try:
            self._dispatcher = _bridge.start_dispatcher(self)
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
        return _time.sleep(self, seconds, result)

    def timeout(self, seconds: float, awaitable: Awaitable[T]) -> Awaitable[T]:
        """Await ``awaitable`` for at most ``seconds``; see :func:`timeout`."""
        return _time.timeout(self, seconds, awaitable)

    def spawn_background(
        self, count: int, interval: float, on_tick: Callable[[int], Any] | None = None
    ) -> _task.TaskHandle:
        """Start a detached native ticker; see :func:`spawn_background`."""
        return _task.spawn_background(self, count, interval, on_tick)

    # -- submissions (on the running loop's thread) ----------------------------
    def next_token(self) -> int:
        """A fresh token (never 0, never reused by this runtime)."""
        return next(self._tokens)

    def port_for(self, loop: asyncio.AbstractEventLoop) -> _bridge.Port:
        """The port of ``loop``, created on first use."""
        port = self._ports.get(loop)
        if port is not None and not port.closed:
            return port
        self._check_usable()
        first = False
        with self._lock:
            port = self._ports.get(loop)
            if port is None or port.closed:
                port = _bridge.Port(self, loop, next(self._port_ids))
                self._ports[loop] = port
                first = not self._ports_by_id
                self._ports_by_id[port.id] = port
        if first:  # the dispatcher may sleep without a timeout: start its sweeps
            lib.tr_runtime_wake_dispatcher(self._ptr)
        return port

    def check(self, rc: int) -> None:
        """Raise for a submission's non-OK return code."""
        if rc != lib.TR_OK:
            if rc == lib.TR_ESHUTDOWN:
                self._check_usable()
            raise _bridge.status_error(rc)

    def _check_not_forked(self) -> None:
        if self._state == _FORKED or self._pid != os.getpid():
            raise RuntimeError("tokio_runtime: this runtime belongs to the parent process")

    def _check_usable(self) -> None:
        self._check_not_forked()
        if self._state != _RUNNING:
            raise RuntimeError("tokio_runtime: the runtime is shut down")

    # -- ports (any thread) ---------------------------------------------------------
    def _forget_port(self, port: _bridge.Port) -> None:
        with self._lock:
            if self._ports.get(port.loop) is port:
                del self._ports[port.loop]
            self._ports_by_id.pop(port.id, None)

    def _sweep_closed_loops(self) -> None:
        for port in list(self._ports_by_id.values()):
            if port.loop.is_closed():
                port.close()

    # -- lifecycle ------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters of the native side, and the configuration.

        ``pending`` (operations and channel/mutex waits in flight: 0 when
        nothing is), ``submitted``, ``completed``, ``cancelled``, ``live_ops``
        (native operation objects not yet freed), ``waiters``, ``ports``,
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
        s = ffi.new("tr_stats_t *")
        lib.tr_runtime_stats(self._ptr, s)
        hist = list(s.timer_late_hist)
        late_max = s.timer_late_max_ns / 1000.0
        return {
            "pending": s.pending,
            "submitted": s.submitted,
            "completed": s.completed,
            "cancelled": s.cancelled,
            "live_ops": s.live_ops,
            "waiters": s.waiters,
            "ports": s.ports,
            "worker_threads": s.worker_threads,
            "thread_name": self.thread_name,
            "running": bool(s.running) and self._state == _RUNNING,
            "timers_fired": s.timers_fired,
            "timer_late_p50_us": _late_quantile(hist, 0.50, late_max),
            "timer_late_p99_us": _late_quantile(hist, 0.99, late_max),
            "timer_late_max_us": late_max,
        }

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
        (it never waits for a loop).  In a forked child it does nothing: the
        parent's threads are not there to join.
        """
        limit = timeout_seconds("timeout", timeout)
        with self._lock:
            if self._state != _RUNNING:
                return
            if self._pid != os.getpid():
                self._state = _FORKED
                return
            self._state = _STOPPED
        # Releases the GIL while it waits.
        if lib.tr_runtime_shutdown_timeout(self._ptr, limit) == lib.TR_OK:
            self._finish_shutdown()
            return
        log.warning(
            "tokio_runtime: runtime %r did not stop within %.3g s; "
            "its threads are joined in the background",
            self.thread_name,
            limit,
        )
        threading.Thread(
            target=self._finish_shutdown, args=(True,), name="tokio-runtime-reaper", daemon=True
        ).start()

    def _finish_shutdown(self, wait_native: bool = False) -> None:
        if wait_native:
            lib.tr_runtime_shutdown(self._ptr)
        if self._dispatcher is not threading.current_thread():
            self._dispatcher.join()  # it delivered the last records and returned
        with self._lock:
            ports = list(self._ports_by_id.values())
        for port in ports:
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
        for port in list(self._ports_by_id.values()):
            ffi.gc(port._ptr, None)
            port.closed = True
        self._ports.clear()
        self._ports_by_id.clear()


_live: weakref.WeakSet[Runtime] = weakref.WeakSet()
_default: Runtime | None = None
_default_lock = threading.Lock()
_config: dict[str, Any] = {"worker_threads": 4, "thread_name": "tokio-runtime"}


def get_runtime() -> Runtime:
    """The process-wide default runtime, built on first use.

    Built once per process, like the original example's ``OnceCell``, with
    the settings given to :func:`configure` (default: 4 workers, threads named
    ``tokio-runtime-{n}``); a forked child builds its own on first use.  If it
    is shut down explicitly it stays shut down, and using it raises
    ``RuntimeError``.
    """
    # No pid check here (os.getpid() is a system call, ~250 ns, on every
    # operation): the at-fork hook clears _default in a child.
    rt = _default
    if rt is not None:
        return rt
    return _build_default()


def _build_default() -> Runtime:
    global _default
    with _default_lock:
        if _default is None or _default._pid != os.getpid():
            _default = Runtime(**_config)
        return _default


def configure(*, worker_threads: int | None = None, thread_name: str | None = None) -> None:
    """Set up the default runtime before it starts.

    Raises ``RuntimeError`` once the default runtime exists (any use of the
    module-level functions, the seed functions, or a ``Channel``/``Mutex``
    wait without an explicit runtime starts it), ``TypeError``/``ValueError``
    for bad values (``worker_threads`` 1..256; ``thread_name`` 1..63 bytes).
    """
    with _default_lock:
        if _default is not None and _default._pid == os.getpid():
            raise RuntimeError(
                "tokio_runtime.configure() must be called before the default runtime starts"
            )
        new = dict(_config)
        if worker_threads is not None:
            new["worker_threads"] = check_worker_threads(worker_threads)
        if thread_name is not None:
            new["thread_name"] = check_thread_name(thread_name)
        _config.update(new)


def sleep(seconds: float, result: T = None) -> asyncio.Future[T]:  # type: ignore[assignment]
    """Sleep on the default runtime; see :meth:`Runtime.sleep`."""
    rt = _default  # get_runtime(), inlined: this is the hot path
    return _time.sleep(rt if rt is not None else _build_default(), seconds, result)


def timeout(seconds: float, awaitable: Awaitable[T]) -> Awaitable[T]:
    """Await ``awaitable`` for at most ``seconds`` (a native deadline).

    Returns an awaitable giving the awaitable's result, or raising the
    built-in ``TimeoutError`` once ``seconds`` pass first.  On timeout the
    inner operation is cancelled (a native one stops in C: its timer is
    stopped and ``stats()["pending"]`` drops back) and awaited until it has
    finished cancelling, like ``asyncio.wait_for``.  If the inner operation
    completes at the very moment the deadline fires, its result wins.

    Arguments are checked at call time (``TypeError``/``ValueError``; the
    awaitable, if it is a coroutine, is closed so it does not warn).  It must
    be awaited inside an asyncio task.  Cancelling the outer task cancels the
    inner operation and the deadline; at shutdown the task awaiting it gets
    ``CancelledError``.
    """
    return _time.timeout(get_runtime(), seconds, awaitable)


def spawn_background(
    count: int, interval: float, on_tick: Callable[[int], Any] | None = None
) -> _task.TaskHandle:
    """Start a detached native ticker on the default runtime.

    It fires ``count`` times, ``interval`` seconds apart, on a libev timer
    (the C side never waits for Python).  ``on_tick(i)`` (i from 1) runs on
    the spawning loop's thread for every iteration, in order, none skipped.
    Returns a :class:`TaskHandle` at once.  Needs a running asyncio loop.
    """
    return _task.spawn_background(get_runtime(), count, interval, on_tick)


def _shutdown_all() -> None:
    for rt in list(_live):
        rt.shutdown()


def _after_fork_in_child() -> None:
    global _default, _default_lock
    _default_lock = threading.Lock()  # may have been held by another thread
    for rt in list(_live):
        rt._forked()
    _default = None


atexit.register(_shutdown_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
