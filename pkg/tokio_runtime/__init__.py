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
:class:`TaskHandle`), :class:`Channel` and :class:`Mutex`.  The five functions
of the original PyO3 + Tokio example are built on them.
"""

from ._channel import Channel, ChannelClosed, ChannelEmpty, ChannelError, ChannelFull
from ._mutex import Mutex
from ._runtime import (
    Runtime,
    configure,
    get_runtime,
    sleep,
    spawn_background,
    timeout,
)
from ._task import TaskHandle
from .demos import (
    channel_demo,
    concurrent_tasks,
    shared_counter_demo,
    spawn_background_task,
    with_timeout,
)

__all__ = [
    "Channel",
    "ChannelClosed",
    "ChannelEmpty",
    "ChannelError",
    "ChannelFull",
    "Mutex",
    "Runtime",
    "TaskHandle",
    "channel_demo",
    "concurrent_tasks",
    "configure",
    "get_runtime",
    "shared_counter_demo",
    "sleep",
    "spawn_background",
    "spawn_background_task",
    "timeout",
    "with_timeout",
]
__version__ = "0.1.0"
