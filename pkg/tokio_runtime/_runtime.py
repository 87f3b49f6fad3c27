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
import os
import threading
import weakref
from typing import Any

from . import _bridge
from ._native import ffi, lib
from ._validate import check_thread_name, check_worker_threads

_RUNNING, _STOPPED, _FORKED = "running", "stopped", "forked"


class Runtime:
    """A native runtime: one libev loop thread and ``worker_threads`` workers.

    Threads are named ``{thread_name}-0`` (the libev loop), ``{thread_name}-1``
    .. ``-{worker_threads}`` (workers) and ``-{worker_threads + 1}`` (the
    dispatcher, a Python thread), the name cut to the 15 bytes Linux keeps.
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
        self._ptr = out[0]
        self._pid = os.getpid()
        self._state = _RUNNING
        self._final_stats: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._port_ids = itertools.count(1)
        self._ports: dict[asyncio.AbstractEventLoop, _bridge.Port] = {}
        self._ports_by_id: dict[int, _bridge.Port] = {}
        try:
            self._dispatcher = _bridge.start_dispatcher(self)
        except BaseException:
            lib.tr_runtime_release(self._ptr)  # joins the native threads
            raise
        _live.add(self)

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

    def _check_usable(self) -> None:
        if self._state == _FORKED or self._pid != os.getpid():
            raise RuntimeError("tokio_runtime: this runtime belongs to the parent process")
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
        """Counters of the native side (see ``tr_stats_t``) and the config.

        After shutdown, the counters as they were when it completed.
        """
        with self._lock:
            if self._final_stats is not None:
                return dict(self._final_stats)
            if self._state == _FORKED or self._pid != os.getpid():
                raise RuntimeError("tokio_runtime: this runtime belongs to the parent process")
            return self._read_stats()

    def _read_stats(self) -> dict[str, Any]:
        s = ffi.new("tr_stats_t *")
        lib.tr_runtime_stats(self._ptr, s)
        return {
            "pending": s.pending,
            "submitted": s.submitted,
            "completed": s.completed,
            "cancelled": s.cancelled,
            "live_ops": s.live_ops,
            "ports": s.ports,
            "worker_threads": s.worker_threads,
            "thread_name": self.thread_name,
            "running": bool(s.running),
        }

    def shutdown(self) -> None:
        """Cancel pending operations, stop and join every thread.  Idempotent.

        Futures of cancelled operations are cancelled on their loops (if those
        loops still run).  In a forked child this does nothing: the parent's
        threads are not there to join.
        """
        with self._lock:
            if self._state != _RUNNING:
                return
            if self._pid != os.getpid():
                self._state = _FORKED
                return
            self._state = _STOPPED
        lib.tr_runtime_shutdown(self._ptr)  # releases the GIL while joining
        if self._dispatcher is not threading.current_thread():
            self._dispatcher.join()
        with self._lock:
            self._final_stats = self._read_stats()
            # Drop the owner's reference; the memory lives on while ports
            # (still referenced by futures) hold theirs.
            lib.tr_runtime_release(self._ptr)

    def _forked(self) -> None:
        """In a forked child: forget this runtime without touching its threads."""
        self._state = _FORKED


_live: weakref.WeakSet[Runtime] = weakref.WeakSet()
_default: Runtime | None = None
_default_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide default runtime, built on first use (once per process)."""
    rt = _default
    if rt is not None and rt._pid == os.getpid():
        return rt
    return _build_default()


def _build_default() -> Runtime:
    global _default
    with _default_lock:
        if _default is None or _default._pid != os.getpid():
            _default = Runtime()
        return _default


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
