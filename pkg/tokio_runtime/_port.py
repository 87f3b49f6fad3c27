"""Ports: the completion queue of one runtime on one asyncio loop.

One :class:`Port` exists per (runtime, asyncio loop).  The C core queues each
finished operation's record on its port; somebody (the dispatcher thread, or
the thread whose call caused the wake) asks the loop to :meth:`Port.drain`,
which runs on the loop's own thread and hands every record to the *handler*
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

:class:`NativeFuture` is the handler of a plain operation, and
:meth:`Port.submit` is the one path every operation is submitted through.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import weakref
from typing import Any, Callable

from ._errors import status_error
from ._lifetime import owned
from ._native import ffi, lib

log = logging.getLogger("tokio_runtime")

#: Records copied out of C per ``tr_port_drain`` call.
DRAIN_BATCH = 256
#: Records one drain callback delivers at most; it then yields to the loop
#: (``loop.call_soon``) and delivers the rest in a later turn, so a queue
#: that keeps filling cannot hold the loop (nor Ctrl-C) in one callback.
DRAIN_TURN = 4 * DRAIN_BATCH
#: One ``tr_completion_t``: token (u64), status (i32), final (i32), value
#: (i64).  A drained batch is unpacked with one ``iter_unpack`` instead of
#: four cdata field reads per record.
_RECORD = struct.Struct("=Qiiq")
if _RECORD.size != ffi.sizeof("tr_completion_t"):  # pragma: no cover - a build mismatch
    raise ImportError("tokio_runtime: tr_completion_t does not match the module's record layout")
_OK = lib.TR_OK
_CANCELLED = lib.TR_CANCELLED
_kick = lib.tr_runtime_kick
_drain = lib.tr_port_drain


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


class Port:
    """The completion queue of one runtime on one asyncio loop.

    Only the loop's thread submits through a port and drains it, so
    ``pending`` (token -> handler) needs no lock.  Closing the port (when its
    loop is found closed, is garbage-collected, or at shutdown) cancels its
    native operations and drops their late records quietly.

    The port holds its loop weakly (``loop`` is ``None`` once it is gone), so
    a loop dropped without ``close()`` can be collected; its pending futures
    do hold it, though (see the README's "Dropped loop" guarantee).

    ``rt_ptr`` is the runtime's ``tr_runtime_t *``; ``next_token`` gives the
    runtime's tokens; ``check(rc)`` raises for a refused submission (it knows
    whether the runtime is still usable); ``forget(port)`` is called once
    when the port closes, by whoever keeps the ports of a runtime.
    """

    __slots__ = (
        "__weakref__",
        "_loop",
        "_recs",
        "_view",
        "check",
        "closed",
        "depth",
        "forget",
        "id",
        "kick_pending",
        "loop_key",
        "next_token",
        "pending",
        "ptr",
        "rt_ptr",
        "woken",
    )

    def __init__(
        self,
        rt_ptr: Any,
        loop: asyncio.AbstractEventLoop,
        port_id: int,
        next_token: Callable[[], int],
        check: Callable[[int], None],
        forget: Callable[[Port], None],
    ) -> None:
        out = ffi.new("tr_port_t **")
        rc = lib.tr_port_new(rt_ptr, port_id, out)
        if rc != lib.TR_OK:
            raise status_error(rc)
        self.ptr = owned(out[0], lib.tr_port_release)
        # Submissions do not wake the runtime's loop thread one by one: see
        # start().
        lib.tr_port_defer_wake(self.ptr, 1)
        self._recs = ffi.new("tr_completion_t[]", DRAIN_BATCH)
        self._view = memoryview(ffi.buffer(self._recs))
        self.rt_ptr = rt_ptr
        # Weak: the runtime must not keep a dropped loop alive.  When the loop
        # is collected the callback closes the port (before the loop's memory,
        # and so its id(), can be reused: ports are found by id(loop)).
        self._loop = weakref.ref(loop, _closer(weakref.ref(self)))
        self.loop_key = id(loop)
        self.id = port_id
        self.next_token = next_token
        self.check = check
        self.forget = forget
        self.pending: dict[int, Any] = {}
        # Waiters whose record was delivered, until their coroutine takes
        # the wake (see _waiting.Waiter): anything with release(used).
        self.woken: set[Any] = set()
        self.closed = False
        self.kick_pending = False
        self.depth = 0  # drains running (loop thread; > 1: nested)

    @property
    def loop(self) -> Any:
        """The port's asyncio loop, or ``None`` once it was garbage-collected."""
        return self._loop()

    # -- loop thread ---------------------------------------------------------
    def start(
        self, loop: asyncio.AbstractEventLoop, start: Callable[..., int], args: tuple[Any, ...]
    ) -> int:
        """Submit one native operation from ``loop`` (this port's); return its token.

        ``start(rt_ptr, port_ptr, token, *args)`` is the C submission
        function.  A refused submission raises (``check``).  The port defers
        wake-ups, so every op submitted during one turn of the asyncio loop
        (10,000 in a ``gather``) costs one wake-up of the runtime's loop
        thread, at the end of the turn (``_kick``), instead of one per op it
        happened to catch; deadlines count from each submission anyway.  The
        caller registers the token's handler in ``pending`` before it yields
        to the loop.
        """
        token = self.next_token()
        rc = start(self.rt_ptr, self.ptr, token, *args)
        if rc:
            self.check(rc)
        if not self.kick_pending:
            self.kick_pending = True
            loop.call_soon(self._kick)
        return token

    def kick_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the runtime's loop thread at the end of this turn (see start())."""
        if not self.kick_pending:
            self.kick_pending = True
            loop.call_soon(self._kick)

    def submit(
        self,
        loop: asyncio.AbstractEventLoop,
        start: Callable[..., int],
        args: tuple[Any, ...],
        result: Any,
        cls: type = NativeFuture,
    ) -> Any:
        """Submit one native operation; return its future (a ``cls``).

        As :meth:`start`, with a future as the handler: it resolves to
        ``result`` when the operation completes, and its ``cancel()``
        reaches C.  No future exists if the submission is refused.
        """
        token = self.start(loop, start, args)
        fut = cls(loop=loop)
        fut._tr_port = self
        fut._tr_token = token
        fut._tr_result = result
        self.pending[token] = fut
        return fut

    def _kick(self) -> None:
        self.kick_pending = False
        _kick(self.rt_ptr)

    def cancel(self, token: int) -> None:
        """Forget ``token`` here and cancel its native operation."""
        if self.pending.pop(token, None) is not None:
            lib.tr_cancel(self.rt_ptr, token)  # TR_ESHUTDOWN: already cancelled

    def drain(self, limit: int | None = DRAIN_TURN) -> None:
        """Deliver the queued records (runs on the loop's thread).

        At most about ``limit`` records per call (``None``: until the queue
        is empty): past that, the rest is delivered by another ``drain``
        scheduled with ``loop.call_soon``, after the callbacks that became
        ready meanwhile.  (The queue reports no new edge while it is not
        empty, so that call is what finishes it.)  A handler's exception is
        reported to the loop's exception handler.

        Nothing is lost to an interrupt: records are acknowledged to C only
        once delivered (``tr_port_drain`` copies without removing), and every
        handler takes a record twice without harm.  A ``KeyboardInterrupt``
        (from an ``on_tick`` callback, or a signal landing anywhere in here)
        acknowledges what was delivered, schedules another drain for the
        rest and propagates at once; if even that is cut short, the
        dispatcher's sweep finds the port stalled and has it drained.

        A drain may start inside another one on the same port (a handler's
        own wake-up: an ``on_tick`` that sends to a channel).  That is safe:
        it delivers the records the outer one has not acknowledged yet again
        (harmlessly), and C caps every acknowledgement at what is still in
        flight; it only needs a buffer of its own.
        """
        ptr, pending = self.ptr, self.pending
        if self.depth:  # nested (or a count an interrupt left behind)
            recs = ffi.new("tr_completion_t[]", DRAIN_BATCH)
            view = memoryview(ffi.buffer(recs))
        else:
            recs, view = self._recs, self._view
        unpack, size = _RECORD.iter_unpack, _RECORD.size
        left = limit
        self.depth += 1
        try:
            n = _drain(ptr, recs, DRAIN_BATCH, 0)
            while n:
                done = 0
                try:
                    for token, status, final, value in unpack(view[: n * size]):
                        handler = pending.get(token)
                        if handler is not None:
                            try:
                                if status == _OK and handler.__class__ is NativeFuture:
                                    # The common case (a sleep), _tr_deliver inlined.
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
                            if final:
                                pending.pop(token, None)
                        done += 1
                except BaseException:
                    _drain(ptr, recs, 0, done)  # keep the undelivered ones queued
                    self.loop.call_soon(self.drain)
                    raise
                if left is not None:
                    left -= n
                    if left <= 0:
                        _drain(ptr, recs, 0, n)
                        self.loop.call_soon(self.drain)
                        return
                n = _drain(ptr, recs, DRAIN_BATCH, n)
        finally:
            self.depth -= 1

    def wake(self, running: asyncio.AbstractEventLoop | None) -> None:
        """Have the port drained after a wake this thread caused.

        ``running`` is this thread's running loop.  On the port's own loop
        the records are delivered now (as ``asyncio.Queue`` resolves its
        waiter's future inside ``put``): the woken task runs in this loop
        iteration or the next.  Another loop is asked with its
        ``call_soon_threadsafe``: one hop, without the dispatcher.
        """
        loop = self.loop
        if loop is None:
            return
        if loop is running:
            self.drain()
            return
        try:
            loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # closed: the dispatcher's sweep closes the port
            pass

    def abort_all(self) -> None:
        """After the runtime shut down (loop thread): finish this port.

        Delivers what is queued, cancels every handler still waiting, and
        closes the port.
        """
        if self.closed:
            return
        try:
            self.drain(None)
        finally:
            self._abort_handlers(loop_alive=True)
            self.close()

    # -- any thread ------------------------------------------------------------
    def schedule_drain(self) -> None:
        """Ask the loop to drain (the dispatcher, or a thread doing its job)."""
        loop = self.loop
        if loop is None:  # collected: its weakref callback closes the port
            return
        own = asyncio._get_running_loop() is loop  # (a separate name keeps mypy's type)
        if own:
            loop.call_soon(self.drain)  # our own loop: no wake-up needed
            return
        try:
            loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # the loop is closed: nobody will ever drain
            self.close()

    def schedule_abort(self) -> None:
        """Have the loop run :meth:`abort_all`, or close now if it is closed."""
        loop = self.loop
        if loop is None:
            self.close()
            return
        try:
            loop.call_soon_threadsafe(self.abort_all)
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

        Called once the port's loop is closed or collected (its futures can
        no longer be awaited, so they are dropped unresolved, but waiters give
        their channel or lock back) and at the end of a shutdown.
        """
        if self.closed:
            return
        self.closed = True
        self.forget(self)
        lib.tr_port_close(self.ptr)
        if self.pending:
            log.debug("port %d closed with %d operations pending", self.id, len(self.pending))
            self._abort_handlers(loop_alive=False)
        loop = self.loop
        if loop is None or loop.is_closed():
            # Woken, but their tasks will never run again to take the wake:
            # pass it on.  (At shutdown, with the loop alive, they still run.)
            woken = self.woken
            while woken:
                try:
                    waiter = woken.pop()
                except KeyError:  # taken meanwhile by a coroutine being closed
                    break
                waiter.release(used=False)

    def detach(self) -> None:
        """Stop this port's native operations, leaving its futures pending.

        For interpreter exit: a loop still running then runs in a daemon
        thread that dies with the interpreter; cancelling its futures would
        only make its tasks raise ``CancelledError`` on the way out.  Its
        records are dropped from now on, and a shutdown leaves it alone.
        """
        if not self.closed:
            self.closed = True
            lib.tr_port_close(self.ptr)

    def disown(self) -> None:
        """In a forked child: never run C cleanup for the parent's port."""
        ffi.gc(self.ptr, None)
        self.closed = True


def _closer(port_ref: weakref.ReferenceType[Port]) -> Callable[[Any], None]:
    """The callback of a port's weakref to its loop: close the port.

    It holds the port weakly, so a port closed and forgotten meanwhile is
    freed by reference counting, not left in a cycle for the collector.
    """

    def loop_collected(_: Any) -> None:
        port = port_ref()
        if port is not None:
            port.close()

    return loop_collected
