"""Event loops dropped without ``close()`` are not kept alive by the runtime
(issue 14, item 4).

Each loop runs one coroutine that uses the runtime, then is dropped without
``close()``.  Once collected, it must be gone together with its completion
queue: ``stats()["ports"]`` and the process's file descriptors stay flat.

uvloop leaks by itself here: a uvloop loop dropped unclosed keeps its libuv
file descriptors (5 per loop) even when collected, and one that ran on the
main thread is never collected at all (with plain ``asyncio.sleep`` too).
So the loops run on a fresh thread, and on uvloop the runtime's test is
"no more descriptors than the same loops without the runtime".
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import weakref

import pytest
import uvloop

import tokio_runtime as tr

# Dropping loops unclosed is the point: asyncio warns in BaseEventLoop.__del__.
pytestmark = pytest.mark.filterwarnings("ignore:unclosed event loop:ResourceWarning")

FACTORIES = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
LOOPS = 300


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def ports() -> int:
    return tr.get_runtime().stats()["ports"]


async def with_runtime() -> None:
    await tr.sleep(0)
    await tr.timeout(10, tr.sleep(0))


async def sleep_result(i: int) -> int:
    return await tr.sleep(0, result=i)


async def without_runtime() -> None:
    await asyncio.sleep(0)


def drop_loops(factory, coro_fn, n: int) -> list[weakref.ref]:
    """Run ``coro_fn()`` on ``n`` loops on a fresh thread, dropping each unclosed."""
    refs = []

    def body() -> None:
        for _ in range(n):
            loop = factory()
            loop.run_until_complete(coro_fn())
            refs.append(weakref.ref(loop))
            del loop
        gc.collect()

    t = threading.Thread(target=body)
    t.start()
    t.join(60)
    assert not t.is_alive()
    return refs


def settle(expected_ports: int) -> int:
    """Collect, then wait (generously) for the ports count to reach ``expected_ports``."""
    deadline = time.monotonic() + 10
    while True:
        gc.collect()
        now = ports()
        if now == expected_ports or time.monotonic() > deadline:
            return now
        time.sleep(0.02)


@pytest.mark.parametrize("flavour", sorted(FACTORIES))
def test_dropped_loops_are_collected_with_their_ports_and_fds(flavour):
    factory = FACTORIES[flavour]
    drop_loops(factory, with_runtime, 3)  # warm-up: the runtime, first-use caches
    base_ports = settle(0)
    base_fds = fds()
    drop_loops(factory, without_runtime, LOOPS)
    settle(base_ports)
    plain_growth = fds() - base_fds  # what the loop flavour leaks by itself
    base_fds = fds()
    refs = drop_loops(factory, with_runtime, LOOPS)
    assert settle(base_ports) == base_ports, "ports of dropped loops are still alive"
    alive = sum(ref() is not None for ref in refs)
    assert alive == 0, f"{alive} of {LOOPS} dropped loops are still alive"
    growth = fds() - base_fds
    assert growth <= plain_growth + 8, (
        f"{LOOPS} dropped loops left {growth} more file descriptors "
        f"({plain_growth} without the runtime)"
    )


def test_dropped_asyncio_loops_on_the_main_thread_are_collected():
    gc.collect()
    base_ports, base_fds = settle(ports()), fds()
    refs = []
    for _ in range(LOOPS):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(with_runtime())
        refs.append(weakref.ref(loop))
        del loop
    assert settle(base_ports) == base_ports
    assert sum(ref() is not None for ref in refs) == 0
    assert fds() - base_fds <= 8


@pytest.mark.parametrize("flavour", sorted(FACTORIES))
def test_the_runtime_keeps_serving_a_new_loop_that_reuses_a_dropped_loops_id(flavour):
    # Ports are keyed by id(loop): a collected loop's port must be forgotten
    # before a new loop can get the same id, or the new loop would be handed
    # the old, closed-over port.
    factory = FACTORIES[flavour]

    def body() -> None:
        seen: dict[int, int] = {}
        for i in range(200):
            loop = factory()
            assert loop.run_until_complete(sleep_result(i)) == i
            seen[id(loop)] = seen.get(id(loop), 0) + 1
            del loop
            if i % 10 == 0:
                gc.collect()
        if flavour == "asyncio":  # uvloop loops come from fresh memory each time
            assert max(seen.values()) > 1  # ids were reused

    t = threading.Thread(target=body)
    t.start()
    t.join(60)
    assert not t.is_alive()
