"""Ports, handlers and the dispatcher: C completions into asyncio.

One :class:`Port` exists per (runtime, asyncio loop).  The C core queues each
finished operation's record on its port; the first record of a batch reports
the port to the runtime's dispatcher thread, which is the only thread that
calls ``loop.call_soon_threadsafe`` - once per batch.  The drain then runs on
the loop's own thread and hands every record of the batch to the *handler*
registered for its token, guarded by ``fut.done()``, so a future cancelled in
the meantime is left alone.

A handler is any object with two methods:

``_tr_deliver(status, value, final)``
    on the loop thread, for each record of its token (``final`` is 0 for a
    progress record, 1 for the last one);
``_tr_abort(loop_alive)``
    at most once, instead of the final record, when the runtime shut down
    (``loop_alive``: the loop still runs, cancel what waits) or the loop
    closed (``loop_alive`` false: nothing can be resolved any more, only
    native resources may be given back).

The C threads never touch Python: only the dispatcher (a Python thread that
blocks in C with the GIL released) and the loops' own threads do.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ._lifetime import owned
from ._native import ffi, lib

if TYPE_CHECKING:
    from ._runtime import Runtime

log = logging.getLogger("tokio_runtime")

#: Records copied out of C per ``tr_port_drain`` call.
DRAIN_BATCH = 256
#: One ``tr_completion_t``: token (u64), status (i32), final (i32), value
#: (i64).  A drained batch is unpacked with one ``iter_unpack`` instead of
#: four cdata field reads per record.
_RECORD = struct.Struct("=Qiiq")
if _RECORD.size != ffi.sizeof("tr_completion_t"):  # pragma: no cover - a build mismatch
    raise ImportError("tokio_runtime: tr_completion_t does not match the module's record layout")
_OK = lib.TR_OK
_CANCELLED = lib.TR_CANCELLED
#: How often the dispatcher looks for ports whose loop has closed, while any
#: port exists (it sleeps without a timeout when there is none).
SWEEP_INTERVAL = 0.25

_STATUS_ERRORS: dict[int, Callable[[], BaseException]] = {
    lib.TR_ENOMEM: MemoryError,
    lib.TR_EINVAL: lambda: ValueError("tokio_runtime: invalid operation"),
    lib.TR_ESHUTDOWN: lambda: RuntimeError("tokio_runtime: the runtime is shut down"),
    lib.TR_ECLOSED: lambda: RuntimeError("tokio_runtime: closed"),
    lib.TR_TIMEDOUT: TimeoutError,
}


def status_error(status: int) -> BaseException:
    """Return the exception that stands for a non-OK C status."""
    make = _STATUS_ERRORS.get(status)
    if make is None:
        return RuntimeError(f"tokio_runtime: unexpected status {status}")
    return make()


class NativeFuture(asyncio.Future):  # type: ignore[type-arg]
    """An ``asyncio.Future`` whose cancellation reaches the native operation.

    Cancelling it (directly, through ``Task.cancel``, ``wait_for``,
    ``timeout`` or ``gather``) cancels the C operation and every child it
    has, on the runtime's loop thread.  If the operation finished at the same
    moment, the late result is discarded: the future stays cancelled.  If the
    runtime shuts down first, the future is cancelled.
    """

    __slots__ = ("_tr_port", "_tr_result", "_tr_token")
    _tr_port: Port
    _tr_token: int
    _tr_result: Any

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the future and its native operation; see the class docs."""
        if not super().cancel(msg):
            return False
        self._tr_port.cancel(self._tr_token)
        return True

    # -- handler protocol (loop thread) ----------------------------------------
    def _tr_error(self, status: int, value: int) -> BaseException:
        return status_error(status)

    def _tr_deliver(self, status: int, value: int, final: int) -> None:
        if self.done():  # cancelled while the record was on its way
            return
        if status == _OK:
            self.set_result(self._tr_result)
        elif status == _CANCELLED:
            super().cancel()  # C already stopped it: no tr_cancel
        else:
            self.set_exception(self._tr_error(status, value))

    def _tr_abort(self, loop_alive: bool) -> None:
        if loop_alive and not self.done():
            super().cancel()


class Waiter:
    """Handler of a channel or mutex waiter (``tr_waiter_t``).

    Its record only says "woken"; ``fut`` gets ``None``.  Whoever stops
    waiting calls :meth:`release` exactly once in effect (later calls do
    nothing): a wake that will not be acted on is passed on by
    ``pass_on`` (``tr_channel_notify`` or ``tr_mutex_unlock``), so a
    cancelled waiter never swallows an item or keeps a lock.

    From its record until its coroutine takes the wake, it sits in its
    port's ``woken`` set: if the loop closes in between (the task will never
    run again), :meth:`Port.close` passes the wake on.
    """

    __slots__ = ("fut", "pass_on", "ptr", "woken")

    def __init__(
        self,
        fut: asyncio.Future[None],
        ptr: Any,
        pass_on: Callable[[], None],
        woken: set[Waiter],
    ) -> None:
        self.fut = fut
        # A one-item list: list.pop() is atomic, so two threads racing to
        # release (the loop's task and a closed-loop sweep) release once.
        self.ptr = [ptr]
        self.pass_on = pass_on
        self.woken = woken

    def release(self, used: bool) -> None:
        """Give the C waiter back; pass its wake on unless ``used``."""
        try:
            ptr = self.ptr.pop()
        except IndexError:
            return
        if lib.tr_waiter_release(ptr) and not used:
            self.pass_on()

    def _tr_deliver(self, status: int, value: int, final: int) -> None:
        self.woken.add(self)  # even if cancelled: the task still has to run
        if not self.fut.done():
            self.fut.set_result(None)

    def _tr_abort(self, loop_alive: bool) -> None:
        self.release(used=False)
        if loop_alive and not self.fut.done():
            self.fut.cancel()


class Port:
    """The completion queue of one runtime on one asyncio loop.

    Only the loop's thread submits through a port and drains it, so
    ``pending`` (token -> handler) needs no lock.  Closing the port (when its
    loop is found closed, or at shutdown) cancels its native operations and
    drops their late records quietly.
    """

    __slots__ = (
        "__weakref__",
        "_ptr",
        "_recs",
        "_view",
        "closed",
        "id",
        "kick_pending",
        "loop",
        "pending",
        "runtime",
        "woken",
    )

    def __init__(self, runtime: Runtime, loop: asyncio.AbstractEventLoop, port_id: int) -> None:
        out = ffi.new("tr_port_t **")
        rc = lib.tr_port_new(runtime._ptr, port_id, out)
        if rc != lib.TR_OK:
            raise status_error(rc)
        self._ptr = owned(out[0], lib.tr_port_release)
        # Submissions do not wake the runtime's loop thread one by one: see
        # submitted().
        lib.tr_port_defer_wake(self._ptr, 1)
        self._recs = ffi.new("tr_completion_t[]", DRAIN_BATCH)
        self._view = memoryview(ffi.buffer(self._recs))
        self.runtime = runtime
        self.loop = loop
        self.id = port_id
        self.pending: dict[int, Any] = {}
        # Waiters whose record was delivered, until their coroutine takes
        # the wake (see Waiter).
        self.woken: set[Waiter] = set()
        self.closed = False
        self.kick_pending = False

    # -- loop thread ---------------------------------------------------------
    def submitted(self) -> None:
        """After a submission: wake the runtime's loop thread once this turn.

        The port defers wake-ups, so every op submitted during one turn of
        the asyncio loop (10,000 in a ``gather``) costs one wake-up of the
        runtime's loop thread, at the end of the turn, instead of one per op
        it happened to catch.  Deadlines count from each submission anyway.
        """
        if not self.kick_pending:
            self.kick_pending = True
            self.loop.call_soon(self._kick)

    def _kick(self) -> None:
        self.kick_pending = False
        lib.tr_runtime_kick(self.runtime._ptr)

    def new_future(self, token: int, result: Any = None, cls: type = NativeFuture) -> Any:
        """A future on this port's loop whose cancel() cancels ``token``."""
        fut = cls(loop=self.loop)
        fut._tr_port = self
        fut._tr_token = token
        fut._tr_result = result
        self.pending[token] = fut
        return fut

    def cancel(self, token: int) -> None:
        """Forget ``token`` here and cancel its native operation."""
        if self.pending.pop(token, None) is not None:
            lib.tr_cancel(self.runtime._ptr, token)  # TR_ESHUTDOWN: already cancelled

    def drain(self) -> None:
        """Deliver every queued record (runs on the loop via the dispatcher).

        A handler's exception is reported to the loop's exception handler;
        a ``KeyboardInterrupt``/``SystemExit`` raised by one (e.g. from an
        ``on_tick`` callback) is re-raised only after the whole queue is
        delivered, so no record is ever lost or leaked.
        """
        recs, view, ptr, pending = self._recs, self._view, self._ptr, self.pending
        unpack, size = _RECORD.iter_unpack, _RECORD.size
        interrupt: BaseException | None = None
        while True:
            n = lib.tr_port_drain(ptr, recs, DRAIN_BATCH)
            for token, status, final, value in unpack(view[: n * size]):
                handler = pending.pop(token, None) if final else pending.get(token)
                if handler is None:
                    continue
                try:
                    if status == _OK and handler.__class__ is NativeFuture:
                        # The common case (a sleep), NativeFuture._tr_deliver inlined.
                        if not handler.done():
                            handler.set_result(handler._tr_result)
                    else:
                        handler._tr_deliver(status, value, final)
                except Exception as exc:
                    self.loop.call_exception_handler(
                        {
                            "message": "tokio_runtime: error while delivering a result",
                            "exception": exc,
                        }
                    )
                except BaseException as exc:
                    interrupt = interrupt or exc
            if n < DRAIN_BATCH:
                break
        if interrupt is not None:
            raise interrupt

    def abort_all(self) -> None:
        """After the runtime shut down (loop thread): finish this port.

        Delivers what is queued, cancels every handler still waiting, and
        closes the port.
        """
        if self.closed:
            return
        try:
            self.drain()
        finally:
            self._abort_handlers(loop_alive=True)
            self.close()

    # -- any thread ------------------------------------------------------------
    def schedule_drain(self) -> None:
        """Ask the loop to drain (the dispatcher, or a thread doing its job)."""
        loop = self.loop
        if asyncio._get_running_loop() is loop:
            loop.call_soon(self.drain)  # our own loop: no wake-up needed
            return
        try:
            loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # the loop is closed: nobody will ever drain
            self.close()

    def schedule_abort(self) -> None:
        """Have the loop run :meth:`abort_all`, or close now if it is closed."""
        try:
            self.loop.call_soon_threadsafe(self.abort_all)
        except RuntimeError:
            self.close()

    def _abort_handlers(self, loop_alive: bool) -> None:
        handlers = list(self.pending.values())
        self.pending.clear()
        for handler in handlers:
            try:
                handler._tr_abort(loop_alive)
            except Exception:
                log.exception("tokio_runtime: error while aborting an operation")

    def close(self) -> None:
        """Drop everything bound to this port; cancel its native operations.

        Called once the port's loop is closed (its futures can no longer be
        awaited, so they are dropped unresolved, but waiters give their
        channel or lock back) and at the end of a shutdown.
        """
        if self.closed:
            return
        self.closed = True
        self.runtime._forget_port(self)
        lib.tr_port_close(self._ptr)
        if self.pending:
            log.debug("port %d closed with %d operations pending", self.id, len(self.pending))
            self._abort_handlers(loop_alive=False)
        if self.loop.is_closed():
            # Woken, but their tasks will never run again to take the wake:
            # pass it on.  (At shutdown, with the loop alive, they still run.)
            woken = self.woken
            while woken:
                try:
                    waiter = woken.pop()
                except KeyError:  # taken meanwhile by a coroutine being closed
                    break
                waiter.release(used=False)


def dispatch_here(runtime: Runtime) -> None:
    """Do the dispatcher's job on this thread, for ports made ready quietly.

    Called after a ``*_quiet`` C call returned ``TR_PENDING``: the ports it
    made ready were queued without waking the dispatcher thread, so this
    thread (which holds the GIL anyway) asks their loops to drain, saving a
    thread wake-up and a GIL hand-off per wake.  Ports it does not get to
    are still found by the dispatcher at its next wake.
    """
    ids = ffi.new("uint64_t[]", 8)
    while True:
        n = lib.tr_runtime_take_ready(runtime._ptr, ids, 8)
        _schedule_drains(runtime, ids, n)
        if n < 8:
            return


def _schedule_drains(runtime: Runtime, ids: Any, n: int) -> None:
    """Ask the loops of the first ``n`` port ids in ``ids`` to drain."""
    ports = runtime._ports_by_id
    for i in range(n):
        port = ports.get(ids[i])
        if port is not None:
            port.schedule_drain()


def dispatch_main(runtime: Runtime, started: threading.Event) -> None:
    """Body of a runtime's dispatcher thread; returns after shutdown."""
    # Named like the native threads: loop -0, workers -1..-N, dispatcher -(N+1).
    lib.tr_name_current_thread(
        runtime.thread_name.encode(), str(runtime.worker_threads + 1).encode()
    )
    started.set()
    ids = ffi.new("uint64_t[]", 64)
    ptr = runtime._ptr
    last_sweep = time.monotonic()
    while True:
        # Only ports can have a loop that closes under them.  Nothing here
        # may wake per operation: this thread competes for the GIL with the
        # loops it serves.
        timeout = SWEEP_INTERVAL if runtime._ports_by_id else -1.0
        n = lib.tr_runtime_wait_ready(ptr, ids, 64, timeout)
        if n < 0:
            return
        try:
            # In a frame of its own: while this thread waits, it keeps no port
            # (nor its closed loop) alive in a local.
            _schedule_drains(runtime, ids, n)
            now = time.monotonic()
            if now - last_sweep >= SWEEP_INTERVAL:
                last_sweep = now
                runtime._sweep_closed_loops()
        except Exception:  # never let delivery die silently
            log.exception("tokio_runtime dispatcher error")


def start_dispatcher(runtime: Runtime) -> threading.Thread:
    """Start the dispatcher thread (a daemon: the atexit hook joins it).

    Returns once the thread runs and carries its name.
    """
    started = threading.Event()
    t = threading.Thread(
        target=dispatch_main,
        args=(runtime, started),
        name=f"{runtime.thread_name}-{runtime.worker_threads + 1}",
        daemon=True,
    )
    t.start()
    started.wait()
    return t
