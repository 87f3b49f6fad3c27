"""The process-wide default runtime, the module-level functions, exit and fork.

The default runtime is built lazily on first use, like the original
example's ``OnceCell``; an ``atexit`` hook shuts every live runtime down
before the interpreter finalizes, so no native thread is left running when
Python state goes away.  A forked child never touches its parent's runtime
(those threads do not exist in the child): it builds a fresh one on first use.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Awaitable
from typing import Any, Callable, TypeVar

from . import _promise, _runtime, _task, _time
from ._dispatch import Ports
from ._runtime import Runtime, ports_of
from ._validate import check_thread_name, check_worker_threads

T = TypeVar("T")

_default: Runtime | None = None
#: The default runtime's ports, for the hot module-level ``sleep``.
_default_ports: Ports | None = None
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
    global _default, _default_ports
    with _default_lock:
        if _default is None or not _runtime.built_here(_default):
            _default = Runtime(**_config)
            _default_ports = ports_of(_default)
        return _default


def _default_ports_or_build() -> Ports:
    ports = _default_ports
    if ports is None:
        ports = ports_of(_build_default())
    return ports


def runtime_or_default(rt: Runtime | None) -> Runtime:
    """``rt``, or the default runtime."""
    return rt if rt is not None else get_runtime()


def configure(*, worker_threads: int | None = None, thread_name: str | None = None) -> None:
    """Set up the default runtime before it starts.

    Raises ``RuntimeError`` once the default runtime exists (any use of the
    module-level functions, the seed functions, or a ``Channel``/``Mutex``
    wait without an explicit runtime starts it), ``TypeError``/``ValueError``
    for bad values (``worker_threads`` 1..256; ``thread_name`` 1..63 bytes).
    """
    with _default_lock:
        if _default is not None and _runtime.built_here(_default):
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
    ports = _default_ports  # get_runtime(), inlined: this is the hot path
    return _time.sleep(ports if ports is not None else _default_ports_or_build(), seconds, result)


def timeout(seconds: float, awaitable: Awaitable[T]) -> Awaitable[T]:
    """Await ``awaitable`` for at most ``seconds`` (a native deadline).

    Returns an awaitable giving the awaitable's result, or raising the
    built-in ``TimeoutError`` once ``seconds`` pass first.  On timeout the
    inner operation is cancelled (a native one stops in C: its timer is
    stopped and ``stats()["pending"]`` drops back) and awaited until it has
    finished cancelling, like ``asyncio.wait_for``.

    The result wins a tie.  Precisely: when the deadline's record reaches the
    loop while the task is already scheduled to resume (the future it awaits
    is done), the task gets that step first, and if the awaitable finishes
    in it, its result (or exception) is returned instead of ``TimeoutError``.
    So a native inner operation (a ``sleep``, a channel or lock wait) whose
    result is due at or before the deadline wins, also when the loop is busy
    and gets both at once: an item sent to a ``Channel`` before the deadline
    fires is received.  For a pure-Python awaitable, a result already
    available when the deadline is delivered wins; one that becomes
    available later loses, as does an awaitable that takes a result and then
    waits again.

    Arguments are checked at call time (``TypeError``/``ValueError``; the
    awaitable, if it is a coroutine, is closed so it does not warn).  It must
    be awaited inside an asyncio task.  Cancelling the outer task cancels the
    inner operation and the deadline; at shutdown the task awaiting it gets
    ``CancelledError``.
    """
    return _time.timeout(_default_ports_or_build(), seconds, awaitable)


def spawn_background(
    count: int, interval: float, on_tick: Callable[[int], Any] | None = None
) -> _task.TaskHandle:
    """Start a detached native ticker on the default runtime.

    It fires ``count`` times, ``interval`` seconds apart, on a libev timer
    (the C side never waits for Python).  ``on_tick(i)`` (i from 1) runs on
    the spawning loop's thread for every iteration, in order, none skipped.
    An ``on_tick`` slower than ``interval`` does not slow the ticker down:
    the calls fall behind and the backlog is delivered in order, at most
    about 5 ms of calls per loop turn, so the loop's other callbacks (and
    Ctrl-C) still run; ``progress`` stays exact.  Once ``cancel()`` has
    returned ``True`` no further ``on_tick`` call starts: iterations not yet
    delivered then are dropped (see :class:`TaskHandle`).  Returns a
    :class:`TaskHandle` at once.  Needs a running asyncio loop.
    """
    return _task.spawn_background(_default_ports_or_build(), count, interval, on_tick)


def run_native(fn: Any, arg: Any = None) -> asyncio.Future[int]:
    """Run a C function on the default runtime's workers; see :meth:`Runtime.run_native`."""
    return _promise.run_native(_default_ports_or_build(), fn, arg)


def completion() -> _promise.Completion:
    """A :class:`Completion` on the default runtime; see :meth:`Runtime.completion`."""
    return _promise.Completion(_default_ports_or_build())


def _after_fork_in_child() -> None:
    global _default, _default_ports, _default_lock
    _default_lock = threading.Lock()  # may have been held by another thread
    _runtime.forget_all_after_fork()
    _default = None
    _default_ports = None


atexit.register(_runtime.shutdown_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
