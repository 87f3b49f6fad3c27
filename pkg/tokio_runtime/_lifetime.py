"""Native objects owned by Python objects, and when they are let go.

``ffi.gc`` runs its destructor from the cdata's ``tp_finalize``.  When the
owner dies in a reference cycle, the garbage collector calls every finalizer
of the cycle in no set order: the ``finally`` of an abandoned coroutine
(``channel.close()``, ``Mutex.release()`` in ``__aexit__``, a waiter passing
its wake on) may run *after* the destructor of the very pointer it uses, and
then touch freed memory.  A coroutine parked on a loop that was closed
without cancelling it ends exactly like that.

So a destructor that runs during a collection only queues its release; the
queue is emptied when the collection ends (``gc.callbacks``), after every
finalizer of the cycle has run.  Outside a collection the last reference is
gone and nothing can reach the pointer any more: it is released at once.
"""

from __future__ import annotations

import gc
from typing import Any, Callable

from ._native import ffi

_collecting = False
_deferred: list[tuple[Callable[[Any], None], Any]] = []
_destructors: dict[Callable[[Any], None], Callable[[Any], None]] = {}


def _on_gc(phase: str, info: dict[str, int]) -> None:
    global _collecting
    if phase == "start":
        _collecting = True
        return
    _collecting = False
    while _deferred:  # list.pop is atomic: threads may append meanwhile
        release, ptr = _deferred.pop()
        release(ptr)


gc.callbacks.append(_on_gc)


def _destructor(release: Callable[[Any], None]) -> Callable[[Any], None]:
    def destroy(ptr: Any) -> None:
        if _collecting:
            _deferred.append((release, ptr))
        else:
            release(ptr)

    return destroy


def owned(ptr: Any, release: Callable[[Any], None]) -> Any:
    """Return ``ffi.gc(ptr, release)``, but never release during a collection.

    If the owner dies while the garbage collector runs, ``release`` is put
    off until the collection ends.
    """
    destroy = _destructors.get(release)
    if destroy is None:
        destroy = _destructors.setdefault(release, _destructor(release))
    return ffi.gc(ptr, destroy)
