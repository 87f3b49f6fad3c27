"""Native work: results that C code delivers, and C functions on the workers.

A *promise* (``tr_promise_t``) is the native end of one future: made here for
a (port, token), completed once by whoever holds it, from any thread, with
no GIL; its record reaches the port like any completion made by a C thread.
Two things are built on it:

:class:`Completion`
    a future plus the promise's handle, for C code of the user's (through
    the C API of ``tokio_runtime_capi.h``, or a cffi module) to complete
    with a status, an ``int64_t`` or a byte string;
:func:`run_native`
    a C function (a cffi function pointer) run on the runtime's worker pool,
    whose ``int64_t`` result resolves the future.

Cancelling either future cancels the promise (exactly one of "completed"
and "cancelled" wins).  The future's handler stays registered until the
promise's final record arrives, which for ``run_native`` is only after the
function returned: the handler keeps ``fn``'s argument alive until then.  If
the loop closes first, the argument is parked in ``_orphans`` until the C
side says the function returned (``tr_promise_settled``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._dispatch import Ports
from ._errors import status_error
from ._lifetime import owned
from ._native import ffi, lib
from ._port import NativeFuture, Port

_OK = lib.TR_OK
_CANCELLED = lib.TR_CANCELLED
_NULL = ffi.NULL
_FN = ffi.typeof("tr_native_fn")
#: Function pointer types accepted for ``fn``: cffi drops const/volatile,
#: and ``int64_t`` is ``long`` or ``long long`` to a C compiler, so a user's
#: cdef may spell the result either way.
_FN_TYPES = {_FN}
for _result in ("long", "long long"):
    if ffi.sizeof(_result) == 8:
        _FN_TYPES.add(ffi.typeof(f"{_result}(*)(void *, const volatile int *)"))
SIGNATURE = "int64_t fn(void *arg, const volatile int *cancelled)"

#: run_native arguments whose function may still run although their loop is
#: gone: (promise, keep-alive), dropped once the promise is settled.
_orphans: list[tuple[Any, Any]] = []


#: Function pointers already checked (cdata hash and compare by address):
#: most programs run a handful of functions many times.
_checked: dict[Any, Any] = {}
_CHECKED_MAX = 256


def native_fn(fn: Any) -> Any:
    """Check ``fn`` and return it as a ``tr_native_fn`` (``TypeError``/``ValueError``)."""
    try:
        c_fn = _checked.get(fn)
    except TypeError:  # unhashable: not a cdata anyway
        c_fn = None
    if c_fn is not None:
        return c_fn
    if not isinstance(fn, ffi.CData) or ffi.typeof(fn) not in _FN_TYPES:
        kind = ffi.typeof(fn) if isinstance(fn, ffi.CData) else type(fn).__name__
        raise TypeError(
            f"fn must be a cffi function pointer '{SIGNATURE}', not {kind} "
            "(a function of a cffi module's lib: pass ffi.addressof(lib, 'name'))"
        )
    if fn == _NULL:
        raise ValueError("fn is a NULL function pointer")
    c_fn = ffi.cast(_FN, fn)
    if len(_checked) >= _CHECKED_MAX:
        _checked.clear()
    _checked[fn] = c_fn
    return c_fn


def native_arg(arg: Any) -> Any:
    """``arg`` as a ``void *``: ``None`` (NULL), a cdata pointer or array, or a buffer."""
    if arg is None:
        return _NULL
    if isinstance(arg, ffi.CData):
        kind = ffi.typeof(arg).kind
        if kind not in ("pointer", "array"):
            raise TypeError(f"arg must be a pointer, not {ffi.typeof(arg)}")
        return ffi.cast("void *", arg)
    try:
        return ffi.from_buffer(arg)
    except TypeError:
        raise TypeError(
            f"arg must be None, a cffi pointer or a buffer, not '{type(arg).__name__}'"
        ) from None


def _sweep_orphans() -> None:
    if _orphans:
        _orphans[:] = [o for o in _orphans if not lib.tr_promise_settled(o[0])]


class PromiseFuture(NativeFuture):
    """The future of a promise: cancelling it cancels the promise.

    It stays its port's handler until the promise's final record arrives
    (even once cancelled), holding ``_tr_keep`` (a ``run_native``
    argument) alive until the native side is done with it.
    """

    __slots__ = ("_tr_keep", "_tr_promise")
    _tr_promise: Any
    _tr_keep: Any

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the future and the promise (a running function sees its flag)."""
        if not asyncio.Future.cancel(self, msg):
            return False
        lib.tr_promise_cancel(self._tr_promise)
        return True

    def _tr_deliver(self, status: int, value: int, final: int) -> None:
        if self.done():
            return
        if status == _OK:
            data = lib.tr_promise_bytes(self._tr_promise, _NULL)
            self.set_result(value if data == _NULL else ffi.buffer(data, value)[:])
        elif status == _CANCELLED:
            asyncio.Future.cancel(self)
        else:
            self.set_exception(status_error(status))

    def _tr_abort(self, loop_alive: bool) -> None:
        # At shutdown C has cancelled the promise already (TR_ESHUTDOWN);
        # when the loop is gone, closing its port does (TR_ECLOSED): either
        # way C code completing it later learns why.  Not cancelled here.
        if self._tr_keep is not None and not lib.tr_promise_settled(self._tr_promise):
            _orphans.append((self._tr_promise, self._tr_keep))
        if loop_alive and not self.done():
            asyncio.Future.cancel(self)


class NativeCall(PromiseFuture):
    """The future of :func:`run_native`: its result is always the ``int64_t``."""

    __slots__ = ()

    def _tr_deliver(self, status: int, value: int, final: int) -> None:
        if self.done():
            return
        if status == _OK:
            self.set_result(value)
        elif status == _CANCELLED:
            asyncio.Future.cancel(self)
        else:
            self.set_exception(status_error(status))


def _new_promise(
    ports: Ports, keep: Any, cls: type[PromiseFuture] = PromiseFuture
) -> tuple[PromiseFuture, Any]:
    """A pending promise on the running loop's port, and its registered future."""
    loop = asyncio.get_running_loop()
    port: Port | None = ports.by_loop_id.get(id(loop))
    if port is None or port.closed:
        port = ports.port_for(loop)
    token = port.next_token()
    out = ffi.new("tr_promise_t **")
    rc = lib.tr_promise_new(port.rt_ptr, port.ptr, token, out)
    if rc != _OK:
        port.check(rc)
        raise status_error(rc)  # pragma: no cover - check() raises for every refusal
    promise = owned(out[0], lib.tr_promise_release)
    fut = cls(loop=loop)
    fut._tr_port = port
    fut._tr_token = token
    fut._tr_result = None
    fut._tr_promise = promise
    fut._tr_keep = keep
    port.pending[token] = fut
    return fut, promise


def run_native(ports: Ports, fn: Any, arg: Any = None) -> asyncio.Future[int]:
    """See :meth:`Runtime.run_native` (``ports``: the runtime's ports)."""
    c_fn = native_fn(fn)
    c_arg = native_arg(arg)
    _sweep_orphans()
    keep = (fn, arg, c_arg)
    fut, promise = _new_promise(ports, keep, NativeCall)
    port = fut._tr_port
    try:
        # Through the loop thread, batched: the workers are woken once per
        # asyncio turn (at the port's kick), not once per function.
        rc = lib.tr_promise_submit(promise, c_fn, c_arg, _NULL)
        if rc != _OK:  # the runtime stopped in between: nothing will run
            port.check(rc)
            raise status_error(rc)
    except BaseException:
        # Refused, or interrupted (Ctrl-C) around the call: no future is
        # returned; the function, if queued, is cancelled, and its argument
        # stays alive until the C side is done with it.
        port.pending.pop(fut._tr_token, None)
        lib.tr_promise_cancel(promise)
        if not lib.tr_promise_settled(promise):
            _orphans.append((promise, keep))
        raise
    if not port.kick_pending:
        port.kick_soon(fut.get_loop())
    return fut


class Completion:
    """A result native code delivers: an awaitable future and its native handle.

    Made by :meth:`Runtime.completion` on the running loop.  Give
    :attr:`handle` (a ``tr_promise_t *``) to C: through the C API
    (``TR_PromiseFromObject`` takes its own reference) or to a cffi function
    that completes it with ``tr_promise_complete`` (a status and an
    ``int64_t``) or ``tr_promise_complete_bytes`` (a copied byte string).
    Awaiting the completion (or :attr:`future`) gives that ``int`` or
    ``bytes``; an error status raises its exception (``TR_EINVAL``:
    ``ValueError``, ``TR_TIMEDOUT``: ``TimeoutError``, others
    ``RuntimeError``), ``TR_CANCELLED`` cancels the future.

    Guarantees: it completes once; a second completion, or one after the
    future was cancelled, does nothing and tells the C caller so (``TR_EDONE``,
    ``TR_CANCELLED``).  Cancelling the future sets the promise's cancel flag.
    If the loop closes, C callers get ``TR_ECLOSED``; after the runtime's
    shutdown, ``TR_ESHUTDOWN`` (and the future is cancelled).  A handle stays
    valid for C code holding a reference of its own (``tr_promise_ref``)
    until it releases it, whatever happened here.
    """

    __slots__ = ("_promise", "future")

    def __init__(self, ports: Ports) -> None:
        self.future: asyncio.Future[Any]
        self.future, self._promise = _new_promise(ports, None)

    def __await__(self) -> Any:
        return self.future.__await__()

    def __repr__(self) -> str:
        state = "done" if self.future.done() else "pending"
        return f"<Completion {state} handle=0x{self.handle:x}>"

    @property
    def handle(self) -> int:
        """The address of the ``tr_promise_t`` (borrowed: valid while this object lives).

        C code that keeps it longer takes a reference (``tr_promise_ref``)
        before this object may go away, and releases it when done.
        """
        return int(ffi.cast("uintptr_t", self._promise))

    def done(self) -> bool:
        """Whether the future is done (completed or cancelled)."""
        return self.future.done()

    def cancel(self) -> bool:
        """Cancel the future and the promise; see the class docs."""
        return self.future.cancel()

    def native_ref(self) -> int:
        """A new reference to the promise, as an address, for the C API."""
        lib.tr_promise_ref(self._promise)
        return self.handle
