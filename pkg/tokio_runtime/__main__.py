"""``python -m tokio_runtime``: the original example's demo sequence.

Runs, in order: ``spawn_background_task(3, 100)``, ``concurrent_tasks`` on three
URLs, ``shared_counter_demo(10)``, ``with_timeout(50, 100)``,
``with_timeout(200, 100)`` (its ``TimeoutError`` caught), ``channel_demo(5)``,
printing each result; the background ticks print in between.
Pass ``--uvloop`` to run it on uvloop.
"""

from __future__ import annotations

import asyncio
import sys

from . import (
    channel_demo,
    concurrent_tasks,
    shared_counter_demo,
    spawn_background_task,
    with_timeout,
)


async def demo() -> None:
    """The demo sequence."""
    print("spawn_background_task(3, 100) ->", await spawn_background_task(3, 100))
    urls = ["https://example.com/a", "https://example.com/b", "https://example.com/c"]
    print("concurrent_tasks(3 urls)      ->", await concurrent_tasks(urls))
    print("shared_counter_demo(10)       ->", await shared_counter_demo(10))
    print("with_timeout(50, 100)         ->", await with_timeout(50, 100))
    try:
        await with_timeout(200, 100)
    except TimeoutError as exc:
        print("with_timeout(200, 100)        -> TimeoutError:", exc)
    print("channel_demo(5)               ->", await channel_demo(5))


def main(argv: list[str]) -> int:
    """Run the demo on a new event loop (stdlib asyncio, or uvloop)."""
    loop: asyncio.AbstractEventLoop
    if "--uvloop" in argv:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(demo())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
