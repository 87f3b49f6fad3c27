"""The ports of a runtime, and the dispatcher thread that wakes their loops.

:class:`Ports` keeps one :class:`~._port.Port` per asyncio loop (by loop and
by id) and the runtime's token counter.  The C threads (libev timers,
workers) never touch Python: when one queues the first record of a batch on a
port, the port is reported to the runtime's *dispatcher*, a Python thread
that waits in C with the GIL released and then calls the port loop's
``call_soon_threadsafe(port.drain)`` - once per batch.  A thread whose own
call caused a wake (a lock release) may do the dispatcher's job itself
(:meth:`Ports.dispatch_here`), which saves a thread hop.

The dispatcher also sweeps, every ``SWEEP_INTERVAL`` seconds while any port
exists, for ports whose loop has closed, and closes them (their native
operations are cancelled, their waiters' wakes passed on).
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

#: How often the dispatcher looks for ports whose loop has closed, while any
#: port exists (it sleeps without a timeout when there is none).
SWEEP_INTERVAL = 0.25


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
        "_port_ids",
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
        self._port_ids = itertools.count(1)
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
        first = False
        with self._lock:
            port = self.by_loop_id.get(key)
            if port is None or port.closed:
                port_id = next(self._port_ids)
                port = Port(self.rt_ptr, loop, port_id, self.next_token, self.check, self.forget)
                self.by_loop_id[key] = port
                first = not self.by_id
                self.by_id[port.id] = port
        if first:  # the dispatcher may sleep without a timeout: start its sweeps
            lib.tr_runtime_wake_dispatcher(self.rt_ptr)
        return port

    def forget(self, port: Port) -> None:
        """Drop a closed port (any thread)."""
        with self._lock:
            if self.by_loop_id.get(port.loop_key) is port:
                del self.by_loop_id[port.loop_key]
            self.by_id.pop(port.id, None)

    def all(self) -> list[Port]:
        """A snapshot of the live ports."""
        with self._lock:
            return list(self.by_id.values())

    def sweep_closed(self) -> None:
        """Close the ports whose loop is closed (or collected)."""
        for port in self.all():
            loop = port.loop
            if loop is None or loop.is_closed():
                port.close()

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

    def dispatch_here(self) -> None:
        """Do the dispatcher's job on this thread, for ports made ready quietly.

        Called after a ``*_quiet`` C call returned ``TR_PENDING``: the ports
        it made ready were queued without waking the dispatcher thread, so
        this thread (which holds the GIL anyway) asks their loops to drain,
        saving a thread wake-up and a GIL hand-off per wake.  Ports it does
        not get to are still found by the dispatcher at its next wake.
        """
        ids = ffi.new("uint64_t[]", 8)
        while True:
            n = lib.tr_runtime_take_ready(self.rt_ptr, ids, 8)
            self.schedule_drains(ids, n)
            if n < 8:
                return

    def disown_all(self) -> None:
        """In a forked child: forget every port without touching C."""
        for port in list(self.by_id.values()):
            port.disown()
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
                ports.sweep_closed()
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
