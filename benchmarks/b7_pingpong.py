"""B7 ping-pong: a plain thread and a coroutine pass a token over two capacity-1 queues.

Per round trip the thread does ``q1.put(i)`` then ``q2.get()`` (blocking
calls) and the coroutine ``await q1.get()`` then ``await q2.put(x)``; N round
trips, every one checked (the thread gets back exactly the ``i`` it sent, the
coroutine sees 0, 1, 2 ... in order).  µs per round trip, timed on the
thread from after WARM untimed round trips to the last reply.

Two sub-cases, each with its own metric (ours is compared only with the
peers of its own sub-case), a fresh loop and thread per run:

* ``main``: the loop runs on the main thread, the blocking side on a worker thread;
* ``worker``: the loop runs on a worker thread, the blocking side on the main thread.

Ours: ``tokio_runtime.Channel(1)`` x2 (``send_blocking``/``recv_blocking`` on
the thread, ``await recv``/``await send`` on the coroutine).  Peers:
``culsans.Queue(1)`` (``sync_put``/``sync_get``, ``async_get``/``async_put``:
its direct methods, as in B3), ``janus.Queue(1)`` (``sync_q``/``async_q``),
``aiologic.Queue(maxsize=1)`` (``green_put``/``green_get``,
``async_get``/``async_put``) and the hand-rolled stdlib bridge: the thread
posts with ``loop.call_soon_threadsafe(asyncio_queue.put_nowait, i)`` and
waits on a ``queue.SimpleQueue`` that the coroutine ``put``s into (both
unbounded, but a ping-pong never holds more than one item).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from _common import (
    CheckFailed,
    Metric,
    Summary,
    Target,
    Variant,
    check,
    child_args,
    emit,
    ratio_text,
    repeat_variants_sync,
    run_on,
    timer,
)

CASE_ID = "B7"
TITLE = "ping-pong: a thread and a coroutine, two capacity-1 queues"
OURS = ("ours_main", "ours_worker")
#: One metric per sub-case: a ratio pairs only variants that have the same metric.
RATIO_METRICS = ("main_rt_us", "worker_rt_us")
SUBCASES = {
    "main": "loop on the main thread, blocking side on a worker",
    "worker": "loop on a worker thread, blocking side on the main thread",
}
#: Seconds a side waits for the other to set up before the run counts as failed.
SETUP_TIMEOUT = 60.0
#: What the blocking side sends to stop the coroutine early when a check failed.
STOP = -1


def sizes(quick: bool) -> dict[str, Any]:
    """The case's parameters."""
    return {"round_trips": 200 if quick else 10_000, "warm_round_trips": 20 if quick else 200}


KINDS = {
    "ours": "ours: Channel(1) x2: send/recv_blocking | await recv/send",
    "stdlib": "call_soon_threadsafe(asyncio.Queue) | queue.SimpleQueue",
    "culsans": "culsans.Queue(1) x2: sync_put/get | await async_get/put",
    "janus": "janus.Queue(1) x2: sync_q.put/get | await async_q.get/put",
    "aiologic": "aiologic.Queue(1) x2: green_put/get | await async_get/put",
}


def make_variants(stdlib_only: bool) -> list[Variant]:
    """Per sub-case: ours first, then the peers."""
    out = []
    for sub, where in SUBCASES.items():
        metric = f"{sub}_rt_us"
        for kind, label in KINDS.items():
            if stdlib_only and kind not in ("ours", "stdlib"):
                continue
            out.append(
                Variant(
                    f"{kind}_{sub}",
                    f"{label} [loop on {sub}]",
                    kind == "ours",
                    metric,
                    {metric: Metric("µs", "lower"), "total_s": Metric("s", "lower")},
                    where,
                    show=(metric, "total_s"),
                )
            )
    return out


@dataclass
class Ends:
    """The two queues as the blocking side and the coroutine side see them."""

    put: Callable[[int], None]  # blocking side -> q1
    get: Callable[[], int]  # q2 -> blocking side
    aget: Callable[[], Awaitable[int]]  # q1 -> coroutine
    aput: Callable[[int], Awaitable[None]]  # coroutine -> q2
    aclose: Callable[[], Awaitable[None]] | None = None


def make_ends(kind: str) -> Ends:
    """Two fresh capacity-1 queues of ``kind``; made on the running loop (janus needs it)."""
    if kind == "ours":
        import tokio_runtime as tr

        c1: Any = tr.Channel(1)
        c2: Any = tr.Channel(1)
        return Ends(c1.send_blocking, c2.recv_blocking, c1.recv, c2.send)
    if kind == "culsans":
        import culsans

        u1: Any = culsans.Queue(1)
        u2: Any = culsans.Queue(1)
        return Ends(u1.sync_put, u2.sync_get, u1.async_get, u2.async_put)
    if kind == "janus":
        import janus

        j1: Any = janus.Queue(1)
        j2: Any = janus.Queue(1)

        async def aclose() -> None:
            for j in (j1, j2):
                j.close()
                await j.wait_closed()

        return Ends(j1.sync_q.put, j2.sync_q.get, j1.async_q.get, j2.async_q.put, aclose)
    if kind == "aiologic":
        import aiologic

        a1: Any = aiologic.Queue(maxsize=1)
        a2: Any = aiologic.Queue(maxsize=1)
        return Ends(a1.green_put, a2.green_get, a1.async_get, a2.async_put)
    if kind == "stdlib":
        loop = asyncio.get_running_loop()
        aq: asyncio.Queue[int] = asyncio.Queue()
        tq: queue.SimpleQueue[int] = queue.SimpleQueue()
        call = loop.call_soon_threadsafe
        put_nowait = aq.put_nowait

        def put(i: int) -> None:
            call(put_nowait, i)

        async def aput(x: int) -> None:
            tq.put(x)

        return Ends(put, tq.get, aq.get, aput)
    raise ValueError(f"unknown kind {kind!r}")


async def coroutine_side(ends: Ends, total: int) -> str:
    """Echo ``total`` tokens; an error text if one came out of order ('' if none)."""
    bad = ""
    for i in range(total):
        x = await ends.aget()
        if x == STOP:
            return bad or "stopped by the blocking side"
        if x != i and not bad:
            bad = f"the coroutine got {x!r} for round trip {i}"
        await ends.aput(x)
    return bad


def blocking_side(ends: Ends, warm: int, n: int) -> float:
    """``warm`` untimed round trips, then ``n`` timed ones; every reply checked; seconds."""
    put, get = ends.put, ends.get
    for i in range(warm):
        put(i)
        x = get()
        if x != i:
            put(STOP)
            raise CheckFailed(f"round trip {i}: sent {i}, got back {x!r}")
    t0 = timer()
    for i in range(warm, warm + n):
        put(i)
        x = get()
        if x != i:
            put(STOP)
            raise CheckFailed(f"round trip {i}: sent {i}, got back {x!r}")
    return timer() - t0


def run_loop_on_main(kind: str, warm: int, n: int, loop_kind: str) -> float:
    """Sub-case ``main``: this thread runs the loop, a worker thread the blocking side."""
    box: dict[str, Any] = {}

    async def main() -> str:
        loop = asyncio.get_running_loop()
        ends = make_ends(kind)
        done = loop.create_future()

        def body() -> None:
            try:
                box["dt"] = blocking_side(ends, warm, n)
            except BaseException as exc:
                box["error"] = exc
            finally:
                loop.call_soon_threadsafe(done.set_result, None)

        t = threading.Thread(target=body, name=f"b7-{kind}-blocking", daemon=True)
        t.start()
        bad = await coroutine_side(ends, warm + n)
        await done
        t.join()
        if ends.aclose is not None:  # only now: janus drops what the thread has not taken
            await ends.aclose()
        return bad

    bad = run_on(loop_kind, main)
    if "error" in box:
        raise box["error"]
    check(not bad, bad)
    return float(box["dt"])


def run_loop_on_worker(kind: str, warm: int, n: int, loop_kind: str) -> float:
    """Sub-case ``worker``: a worker thread runs the loop, this thread the blocking side."""
    box: dict[str, Any] = {}
    ready = threading.Event()

    async def main() -> str:
        loop = asyncio.get_running_loop()
        ends = make_ends(kind)
        done = loop.create_future()
        box.update(ends=ends, finished=lambda: loop.call_soon_threadsafe(done.set_result, None))
        ready.set()
        bad = await coroutine_side(ends, warm + n)
        await done
        if ends.aclose is not None:  # only now: janus drops what the thread has not taken
            await ends.aclose()
        return bad

    def body() -> None:
        try:
            box["bad"] = run_on(loop_kind, main)
        except BaseException as exc:
            box["error"] = exc
            ready.set()

    t = threading.Thread(target=body, name=f"b7-{kind}-loop", daemon=True)
    t.start()
    check(ready.wait(SETUP_TIMEOUT), "the loop thread did not start")
    if "error" in box:
        raise box["error"]
    try:
        dt = blocking_side(box["ends"], warm, n)
    finally:
        box["finished"]()
    t.join(SETUP_TIMEOUT)
    check(not t.is_alive(), "the loop thread did not finish")
    if "error" in box:
        raise box["error"]
    check(not box["bad"], box["bad"])
    return dt


def one_run(name: str, params: dict[str, Any], loop_kind: str) -> dict[str, float]:
    """One checked run of variant ``name``: its metrics."""
    kind, sub = name.rsplit("_", 1)
    warm, n = params["warm_round_trips"], params["round_trips"]
    run = run_loop_on_main if sub == "main" else run_loop_on_worker
    dt = run(kind, warm, n, loop_kind)
    return {f"{sub}_rt_us": dt / n * 1e6, "total_s": dt}


def targets(s: Summary, params: dict[str, Any]) -> list[Target]:
    """Ours faster than culsans, janus and aiologic, in both sub-cases."""
    out = []
    for sub in SUBCASES:
        ours, metric = f"ours_{sub}", f"{sub}_rt_us"
        for peer in ("culsans", "janus", "aiologic"):
            p = f"{peer}_{sub}"
            if ours in s and p in s:
                r = s[p][metric] / s[ours][metric]
                out.append(
                    Target(
                        f"{ours}: faster than {peer}", r, ">", 1.0, f"{ratio_text(r, '>')} {peer}"
                    )
                )
    return out


def main() -> None:
    """Measure every variant on loops of ``--loop`` kind and print the result."""
    args = child_args(__doc__ or "")
    params = sizes(args.quick)
    variants = make_variants(args.stdlib_only)
    tag = f"{CASE_ID} {args.loop}"
    quarter = {
        "round_trips": max(params["round_trips"] // 4, 50),
        "warm_round_trips": params["warm_round_trips"],
    }

    def runner(name: str) -> dict[str, float]:
        return one_run(name, params, args.loop)

    def warmup(name: str) -> None:
        one_run(name, quarter, args.loop)

    # No loop runs on this thread around the runs: the ``worker`` sub-case blocks it.
    repeat_variants_sync(tag, variants, runner, args.repeat, warmup)
    emit(args, params, variants)


if __name__ == "__main__":
    main()
