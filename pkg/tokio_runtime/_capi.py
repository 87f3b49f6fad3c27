"""The C API for other extensions: the capsule, and handles from Python objects.

``tokio_runtime_capi.h`` (installed next to this package, see
:func:`tokio_runtime.get_include`) describes a table of C functions; the
native module holds it, and :data:`_C_API` wraps its address in a
``PyCapsule`` named ``tokio_runtime._C_API``, which the header's
``tr_import_capi()`` imports with ``PyCapsule_Import`` (the NumPy pattern).

The header's ``TR_*FromObject`` helpers call :func:`export`: it checks the
object's type here, in Python, and returns the address of its native object
with a new reference that the C side owns.
"""

from __future__ import annotations

import ctypes
from typing import Any

from ._channel import Channel, ChannelClosed, ChannelEmpty, ChannelFull
from ._errors import status_error
from ._mutex import Mutex
from ._native import ffi, lib
from ._promise import Completion

#: The capsule's name; ctypes passes the bytes' buffer, which must outlive the
#: capsule (this module keeps it).
CAPSULE_NAME = b"tokio_runtime._C_API"


def _make_capsule() -> Any:
    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    address = int(ffi.cast("uintptr_t", lib.tr_capi_table()))
    return new(address, CAPSULE_NAME, None)


#: The C API table, for ``PyCapsule_Import("tokio_runtime._C_API", 0)``.
_C_API = _make_capsule()

_KINDS = {"completion": Completion, "channel": Channel, "mutex": Mutex}


def export(obj: Any, kind: str) -> int:
    """The native handle of ``obj`` (a ``kind``), with a new reference for C.

    ``TypeError`` if ``obj`` is not a ``kind`` (``"completion"``,
    ``"channel"`` or ``"mutex"``).  The caller (C) releases the reference
    with the table's ``*_release``.
    """
    cls = _KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown handle kind {kind!r}")
    if not isinstance(obj, cls):
        raise TypeError(f"expected a tokio_runtime.{cls.__name__}, not '{type(obj).__name__}'")
    if isinstance(obj, Completion):
        return obj.native_ref()
    if isinstance(obj, Channel):
        lib.tr_channel_ref(obj._ptr)
        return int(ffi.cast("uintptr_t", obj._ptr))
    assert isinstance(obj, Mutex)
    lib.tr_mutex_ref(obj._ptr)
    return int(ffi.cast("uintptr_t", obj._ptr))


def status_exception(status: int) -> BaseException:
    """The exception Python code of the package raises for a C ``status``.

    For ``TR_RaiseStatus`` in ``tokio_runtime_capi.h``: the statuses the C
    API returns become what the same failure raises in Python (a closed
    channel's ``ChannelClosed``; a cancelled promise is ``RuntimeError``,
    not ``CancelledError``, which would read as the calling task's own).
    """
    if status == lib.TR_ECLOSED:
        return ChannelClosed("tokio_runtime: closed")
    if status == lib.TR_EFULL:
        return ChannelFull("tokio_runtime: channel is full")
    if status == lib.TR_EEMPTY:
        return ChannelEmpty("tokio_runtime: channel is empty")
    if status == lib.TR_CANCELLED:
        # Not CancelledError: raised by a plain call, that would read as the
        # calling task being cancelled.
        return RuntimeError("tokio_runtime: cancelled")
    if status == lib.TR_ETYPE:
        return TypeError("tokio_runtime: the channel's next item is a Python object, not a value")
    if status == lib.TR_OK:
        return ValueError("tokio_runtime: TR_OK is not an error")
    return status_error(status)
