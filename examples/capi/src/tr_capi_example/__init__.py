"""tr_capi_example: a C extension using tokio_runtime's C API, and async helpers.

The extension (``_ext``, see ``_ext.c``) reaches the runtime only through the
table of ``tokio_runtime_capi.h``.  Its functions:

* ``zcompress_start(completion, data, level)`` / ``zdecompress_start(completion,
  data, max_size)``: zlib on a runtime worker thread, completing a
  :class:`tokio_runtime.Completion` with bytes.  :func:`zcompress` and
  :func:`zdecompress` below wrap them.
* ``producer_start(channel, count, start=0, close=False, as_bytes=False)`` and
  ``producer_join(producer) -> (sent, status)``: a native thread sending
  into a :class:`tokio_runtime.Channel`.
* ``consumer_sum(channel, timeout=None)``: receives ints and bytes in C until
  the channel is closed and drained.
* ``mutex_hold(mutex, seconds)``: holds a :class:`tokio_runtime.Mutex` from C.
"""

from __future__ import annotations

from typing import Any

import tokio_runtime

from ._ext import (
    CAPI_VERSION,
    TR_CANCELLED,
    TR_ECLOSED,
    TR_EINVAL,
    TR_ENOMEM,
    TR_ESHUTDOWN,
    TR_ETYPE,
    TR_OK,
    TR_TIMEDOUT,
    consumer_sum,
    live_counts,
    mutex_hold,
    noop_fn_address,
    producer_join,
    producer_start,
    status_name,
    zcompress_start,
    zdecompress_start,
)

__all__ = [
    "CAPI_VERSION",
    "TR_CANCELLED",
    "TR_ECLOSED",
    "TR_EINVAL",
    "TR_ENOMEM",
    "TR_ESHUTDOWN",
    "TR_ETYPE",
    "TR_OK",
    "TR_TIMEDOUT",
    "consumer_sum",
    "live_counts",
    "mutex_hold",
    "noop_fn_address",
    "producer_join",
    "producer_start",
    "status_name",
    "zcompress",
    "zcompress_start",
    "zdecompress",
    "zdecompress_start",
]


async def _run_job(start: Any, runtime: tokio_runtime.Runtime | None, *args: Any) -> bytes:
    rt = runtime if runtime is not None else tokio_runtime.get_runtime()
    completion = rt.completion()  # on the running loop
    start(completion, *args)  # the data is copied: the caller may reuse it
    # Cancelling this cancels the native job: skipped if it has not started,
    # told through its cancel flag if it has.  Either way the job frees its
    # own memory (the drop callback of promise_run).
    result: bytes = await completion
    return result


async def zcompress(
    data: bytes, level: int = 6, runtime: tokio_runtime.Runtime | None = None
) -> bytes:
    """``zlib.compress(data, level)``, computed on one of the runtime's worker threads.

    ``runtime``: default :func:`tokio_runtime.get_runtime`.  Needs a running loop.
    """
    return await _run_job(zcompress_start, runtime, data, level)


async def zdecompress(
    data: bytes, max_size: int = 256 << 20, runtime: tokio_runtime.Runtime | None = None
) -> bytes:
    """``zlib.decompress(data)`` on a runtime worker; ``ValueError`` for bad data.

    The output may be at most ``max_size`` bytes (``ValueError`` beyond).
    """
    return await _run_job(zdecompress_start, runtime, data, max_size)
