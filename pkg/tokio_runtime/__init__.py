"""tokio_runtime: a Tokio-style native runtime for asyncio, written in C.

A libev event loop runs in its own thread next to a pool of worker threads;
native operations complete into ``asyncio`` futures on whichever loop asked
for them.  The five functions of the original PyO3 + Tokio example:

>>> import asyncio, tokio_runtime
>>> async def main():
...     return await tokio_runtime.shared_counter_demo(100)
>>> asyncio.run(main())
100
"""

from .demos import (
    channel_demo,
    concurrent_tasks,
    shared_counter_demo,
    spawn_background_task,
    with_timeout,
)

__all__ = [
    "channel_demo",
    "concurrent_tasks",
    "shared_counter_demo",
    "spawn_background_task",
    "with_timeout",
]
__version__ = "0.1.0"
