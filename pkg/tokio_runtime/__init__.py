"""tokio_runtime: a Tokio-style native runtime for asyncio, written in C.

A libev event loop runs in its own thread next to a pool of worker threads;
native operations complete into ``asyncio`` futures on whichever loop asked
for them.

>>> import asyncio, tokio_runtime
>>> async def main():
...     ch = tokio_runtime.Channel(8)
...     await ch.send("hello")
...     return await tokio_runtime.timeout(1.0, ch.recv())
>>> asyncio.run(main())
'hello'

The general API: :class:`Runtime`, :func:`get_runtime`, :func:`configure`,
:func:`sleep`, :func:`timeout`, :func:`spawn_background` (a
:class:`TaskHandle`), :class:`Channel` and :class:`Mutex`.  Native work:
:func:`run_native` (a C function on the workers), :class:`Completion` (a
result C code delivers) and the C API for other extensions
(:func:`get_include`, the ``_C_API`` capsule).  The five functions
of the original PyO3 + Tokio example are built on them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._channel import Channel, ChannelClosed, ChannelEmpty, ChannelError, ChannelFull
    from ._default import (
        completion,
        configure,
        get_runtime,
        run_native,
        sleep,
        spawn_background,
        timeout,
    )
    from ._mutex import Mutex
    from ._promise import Completion
    from ._runtime import Runtime
    from ._task import TaskHandle
    from .demos import (
        channel_demo,
        concurrent_tasks,
        shared_counter_demo,
        spawn_background_task,
        with_timeout,
    )

# Public names are loaded on first use (PEP 562), so that importing a light
# submodule - the pytest plugin, which pytest loads in every session of an
# environment where this package is installed - does not load the native
# module or register the runtime's exit and fork hooks.
_SOURCES = {
    "Channel": "_channel",
    "ChannelClosed": "_channel",
    "ChannelEmpty": "_channel",
    "ChannelError": "_channel",
    "ChannelFull": "_channel",
    "Completion": "_promise",
    "Mutex": "_mutex",
    "_C_API": "_capi",
    "completion": "_default",
    "run_native": "_default",
    "Runtime": "_runtime",
    "configure": "_default",
    "get_runtime": "_default",
    "sleep": "_default",
    "spawn_background": "_default",
    "timeout": "_default",
    "TaskHandle": "_task",
    "channel_demo": "demos",
    "concurrent_tasks": "demos",
    "shared_counter_demo": "demos",
    "spawn_background_task": "demos",
    "with_timeout": "demos",
}


def get_include() -> str:
    """The folder of the installed C headers, for extensions using the C API.

    It holds ``tokio_runtime.h`` (the core's types and functions) and
    ``tokio_runtime_capi.h`` (the table an extension imports with
    ``tr_import_capi()``).  Does not load the native module.
    """
    import os

    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{source}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))


__all__ = [
    "Channel",
    "ChannelClosed",
    "ChannelEmpty",
    "ChannelError",
    "ChannelFull",
    "Completion",
    "Mutex",
    "Runtime",
    "TaskHandle",
    "channel_demo",
    "completion",
    "concurrent_tasks",
    "configure",
    "get_include",
    "get_runtime",
    "run_native",
    "shared_counter_demo",
    "sleep",
    "spawn_background",
    "spawn_background_task",
    "timeout",
    "with_timeout",
]
__version__ = "0.1.0"
