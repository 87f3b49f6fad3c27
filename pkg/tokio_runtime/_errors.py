"""Native status codes to Python exceptions.

Every C function of the core returns a ``TR_*`` status.  ``TR_OK`` and
``TR_PENDING`` are not errors; every other status has one Python exception
that stands for it, made here and nowhere else, so the same failure reads the
same wherever it surfaces.
"""

from __future__ import annotations

from typing import Callable

from ._native import lib

_STATUS_ERRORS: dict[int, Callable[[], BaseException]] = {
    lib.TR_ENOMEM: MemoryError,
    lib.TR_EINVAL: lambda: ValueError("tokio_runtime: invalid operation"),
    lib.TR_ESHUTDOWN: lambda: RuntimeError("tokio_runtime: the runtime is shut down"),
    lib.TR_ECLOSED: lambda: RuntimeError("tokio_runtime: closed"),
    lib.TR_TIMEDOUT: TimeoutError,
    lib.TR_EDONE: lambda: RuntimeError("tokio_runtime: already completed"),
}


def status_error(status: int) -> BaseException:
    """Return the exception that stands for a non-OK C status."""
    make = _STATUS_ERRORS.get(status)
    if make is None:
        return RuntimeError(f"tokio_runtime: unexpected status {status}")
    return make()
