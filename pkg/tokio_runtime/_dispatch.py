"""Who wakes a loop: the dispatcher thread, or the thread that caused the wake.

:class:`Ports` keeps one :class:`~._port.Port` per asyncio loop (by
``id(loop)`` and by port id) and the runtime's token counter.  Two kinds of
threads put records on a port, and each delivers its own:

* **C threads** (libev timers, workers) never touch Python: when one queues
  the first record of a batch on a port, the port is reported to the
  runtime's *dispatcher*, a Python thread that waits in C with the GIL
  released and then calls the port loop's ``call_soon_threadsafe(port.drain)``
  - once per batch.
* **Python code** that wakes a waiter (a channel send or receive, a close, a
  lock release) holds the GIL anyway.  It passes its thread's
  :func:`wakes_buffer` to the C call, which lists there the ports it made
  ready instead of reporting them, and :func:`deliver_wakes` has them
  drained at once: on the caller's own loop directly (the woken task runs
  in this loop iteration or the next, as with ``asyncio.Queue``), on another
  loop through its ``call_soon_threadsafe``: one hop, no dispatcher.

A wake is never lost, only delayed: if the waker is interrupted between the
C call and the drain (Ctrl-C), the port keeps its records, and the
dispatcher's sweep, every ``SWEEP_INTERVAL`` seconds while any port exists,
asks C which ports have records nobody drained (``tr_port_stalled``) and has
them drained.  The same sweep closes the ports whose loop has closed (their
native operations are cancelled, their waiters' wakes passed on).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from typing import Any, Callable

from ._errors import status_error
from ._native import ffi, lib
from ._port import Port

log = logging.getLogger("tokio_runtime")

#: How often the dispatcher looks for ports whose loop has closed and for
#: ports with records nobody drained, while any port exists (it sleeps
#: without a timeout when there is none).
SWEEP_INTERVAL = 0.25

#: Every live port of the process, by port id.  Port ids are unique across
#: runtimes, because a wake names its port by id alone (a channel's waiters
#: may belong to loops of several runtimes).
_all_ports: dict[int, Port] = {}
_port_ids = itertools.count(1)
_local = threading.local()


def wakes_buffer() -> Any:
    """Return the calling thread's ``tr_wakes_t`` (see :func:`deliver_wakes`)."""
    try:
        return _local.wakes
    except AttributeError:
        _local.wakes = ffi.new("tr_wakes_t *")
        return _local.wakes


def call_waking(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args, wakes)`` with this thread's wakes buffer; deliver its wakes.

    For the calls that may wake a waiting coroutine (the shim's contended
    paths: a channel or a lock some coroutine waits on).  Returns what ``fn``
    returns.  Interrupted between the call and the delivery, the wakes wait
    for the dispatcher's sweep.
    """
    wakes = wakes_buffer()
    rc = fn(*args, wakes)
    if wakes.n:
        deliver_wakes(wakes)
    return rc


def deliver_wakes(wakes: Any) -> None:
    """Have the ports a C call listed in ``wakes`` drained (see the module docs).

    The caller's own loop's port is drained right here; other loops are
    asked to drain with ``call_soon_threadsafe``.
    """
    running = asyncio._get_running_loop()
    n = wakes.n
    if n == 1:  # the common case, read before a drain could reuse the buffer
        port = _all_ports.get(wakes.ids[0])
        if port is not None:
            port.wake(running)
        return
    # A drain below may run a handler that uses this thread's buffer again.
    for port_id in ffi.unpack(wakes.ids, n):
        port = _all_ports.get(port_id)
        if port is not None:
            port.wake(running)


class Ports:
    """The ports of one runtime (``rt_ptr``), by ``id(loop)`` and by port id.

    ``by_loop_id`` is read without a lock on the hot path (a dict lookup is
    atomic under the GIL); ports are added and removed under a lock.  It is
    keyed by ``id(loop)``, not the loop: the runtime must not keep a loop
    alive (a port holds its loop weakly, and is closed and forgotten when
    the loop is collected, before its id can be reused), and a plain dict
    keeps the lookup cheap (``id()`` adds ~20 ns to it, a
    ``WeakKeyDictionary`` ~90 ns).  ``check_usable()`` raises if the runtime
    may not be used any more.
    """

    __slots__ = (
        "_lock",
        "by_id",
        "by_loop_id",
        "check_usable",
        "next_token",
        "rt_ptr",
    )

    def __init__(self, rt_ptr: Any, check_usable: Callable[[], None]) -> None:
        self.rt_ptr = rt_ptr
        self.check_usable = check_usable
        # Reentrant: a loop collected while this thread holds it (in
        # port_for) closes its port, which takes it again (forget).
        self._lock = threading.RLock()
        #: A fresh token (never 0, never reused by this runtime).
        self.next_token: Callable[[], int] = itertools.count(1).__next__
        self.by_loop_id: dict[int, Port] = {}
        self.by_id: dict[int, Port] = {}

    def check(self, rc: int) -> None:
        """Raise for a submission's non-OK return code."""
        if rc != lib.TR_OK:
            if rc == lib.TR_ESHUTDOWN:
                self.check_usable()
            raise status_error(rc)

    def port_for(self, loop: asyncio.AbstractEventLoop) -> Port:
        """The port of ``loop``, created on first use."""
        key = id(loop)
        port = self.by_loop_id.get(key)
        if port is not None and not port.closed:
            return port
        self.check_usable()
        with self._lock:
            port = self.by_loop_id.get(key)
            if port is None or port.closed:
                port_id = next(_port_ids)
                port = Port(self.rt_ptr, loop, port_id, self.next_token, self.check, self.forget)
                # In this order, so that an interrupt anywhere in between
                # leaves no port in use that a wake or the sweep cannot find:
                # a port is used once it is in by_loop_id, set last.
                _all_ports[port_id] = port
                self.by_id[port_id] = port
                # The dispatcher may sleep without a timeout (no port to
                # sweep): wake it.  Once per loop, so never mind if it was not.
                lib.tr_runtime_wake_dispatcher(self.rt_ptr)
                self.by_loop_id[key] = port
        return port

    def forget(self, port: Port) -> None:
        """Drop a closed port (any thread)."""
        with self._lock:
            if self.by_loop_id.get(port.loop_key) is port:
                del self.by_loop_id[port.loop_key]
            self.by_id.pop(port.id, None)
            _all_ports.pop(port.id, None)

    def all(self) -> list[Port]:
        """A snapshot of the live ports."""
        with self._lock:
            return list(self.by_id.values())

    def sweep(self) -> None:
        """Close ports of closed loops; have stalled ports drained.

        A port is stalled when it has had records since the last sweep and
        nobody drained it (a waker interrupted before its drain).
        """
        for port in self.all():
            loop = port.loop
            if loop is None or loop.is_closed():
                port.close()
            elif lib.tr_port_stalled(port.ptr):
                port.schedule_drain()

    def detach_running_loops(self) -> None:
        """At interpreter exit: detach the ports of loops still running.

        Such a loop runs in a daemon thread (the interpreter joined every
        other thread before its exit hooks): see :meth:`Port.detach`.
        """
        for port in self.all():
            loop = port.loop
            if loop is not None and loop.is_running():
                port.detach()

    def schedule_drains(self, ids: Any, n: int) -> None:
        """Ask the loops of the first ``n`` port ids in ``ids`` to drain."""
        by_id = self.by_id
        for i in range(n):
            port = by_id.get(ids[i])
            if port is not None:
                port.schedule_drain()

    def disown_all(self) -> None:
        """In a forked child: forget every port without touching C."""
        for port in list(self.by_id.values()):
            port.disown()
            _all_ports.pop(port.id, None)
        self.by_loop_id.clear()
        self.by_id.clear()


def _dispatch_main(
    ports: Ports, name: bytes, index: int, started: threading.Event, owner: object
) -> None:
    """Body of a runtime's dispatcher thread; returns after shutdown.

    ``owner`` (the Runtime) is only held: while its dispatcher runs, a
    runtime stays alive even if its user dropped every reference.
    """
    lib.tr_name_current_thread(name, str(index).encode())
    started.set()
    ids = ffi.new("uint64_t[]", 64)
    ptr = ports.rt_ptr
    last_sweep = time.monotonic()
    while True:
        # Only ports can have a loop that closes under them.  Nothing here
        # may wake per operation: this thread competes for the GIL with the
        # loops it serves.
        timeout = SWEEP_INTERVAL if ports.by_id else -1.0
        n = lib.tr_runtime_wait_ready(ptr, ids, 64, timeout)
        if n < 0:
            return
        try:
            # In a frame of its own: while this thread waits, it keeps no port
            # (nor its closed loop) alive in a local.
            ports.schedule_drains(ids, n)
            now = time.monotonic()
            if now - last_sweep >= SWEEP_INTERVAL:
                last_sweep = now
                ports.sweep()
        except Exception:  # never let delivery die silently
            log.exception("tokio_runtime dispatcher error")


def start_dispatcher(ports: Ports, thread_name: str, index: int, owner: object) -> threading.Thread:
    """Start the dispatcher thread ``{thread_name}-{index}`` for ``owner``.

    A daemon thread: the runtime's shutdown (and the atexit hook) joins it.
    Returns once the thread runs and carries its name.
    """
    started = threading.Event()
    t = threading.Thread(
        target=_dispatch_main,
        args=(ports, thread_name.encode(), index, started, owner),
        name=f"{thread_name}-{index}",
        daemon=True,
    )
    t.start()
    started.wait()
    return t
