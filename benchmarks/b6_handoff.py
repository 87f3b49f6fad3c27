"""B6 hand-off: coroutine to coroutine on one loop, and 8 coroutines on one lock.

Four sub-cases, each with its own metric, so ours is compared only with the
peers of its own sub-case:

* ``c1``: a producer coroutine ``await put(i)`` and a consumer coroutine
  ``await get()``, N items through a queue of capacity 1, both on the loop of
  the main thread.  Ours: ``tokio_runtime.Channel(1)`` (``await send`` /
  ``await recv``).  Peers: ``asyncio.Queue(1)``, ``culsans.Queue(1)``
  (``async_put``/``async_get``: its direct methods, as in B3) and
  ``aiologic.Queue(maxsize=1)`` (``async_put``/``async_get``).
* ``c16``: the same with capacity 16.
* ``t1``: the same as ``c1``, but the loop runs on a plain ``threading.Thread``
  (a fresh thread and loop per run; a short untimed pre-warm on that loop
  first, with a separate queue of the same kind).
* ``lock``: 8 coroutines on one loop, each K times ``async with lock:`` read
  the counter, ``await asyncio.sleep(0)`` (the lock held across a loop turn,
  so the others queue up on it), write it back + 1.  Ours: ``tokio_runtime.Mutex``.
  Peers: ``asyncio.Lock``, ``aiologic.Lock``.

Every run is checked: the consumer got 0..N-1 in order; the counter ends at
8*K (a broken lock loses increments) and the lock is free afterwards.  The
time is per item (per acquisition), from starting the coroutines to the last
one finishing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
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
    repeat_variants,
    run_on,
    timer,
)

CASE_ID = "B6"
TITLE = "hand-off: coroutine -> coroutine on one loop; 8 coroutines on one lock"
OURS = ("ours_c1", "ours_c16", "ours_t1", "ours_mutex")
#: One metric per sub-case: a ratio pairs only variants that have the same metric.
RATIO_METRICS = ("c1_us", "c16_us", "t1_us", "lock_us")
CONTENDERS = 8
#: Items handed off on a fresh loop before a ``t1`` run's timed part.
PREWARM = 200

#: Sub-case -> (capacity, the loop on a worker thread).
QUEUE_SUBCASES = {"c1": (1, False), "c16": (16, False), "t1": (1, True)}


def sizes(quick: bool) -> dict[str, Any]:
    """The case's parameters."""
    return {
        "items": 500 if quick else 20_000,
        "contenders": CONTENDERS,
        "iterations_each": 100 if quick else 2_500,
    }


def make_variants(stdlib_only: bool) -> list[Variant]:
    """Per sub-case: ours first, then the peers."""
    out: list[Variant] = []
    for sub, (cap, on_thread) in QUEUE_SUBCASES.items():
        where = "worker-thread loop" if on_thread else "main-thread loop"
        metric = f"{sub}_us"
        kinds = [
            ("ours", f"ours: Channel({cap}) await send -> await recv"),
            ("asyncio", f"asyncio.Queue({cap}) await put -> await get"),
        ]
        if not stdlib_only:
            kinds += [
                ("culsans", f"culsans.Queue({cap}) await async_put -> async_get"),
                ("aiologic", f"aiologic.Queue({cap}) await async_put -> async_get"),
            ]
        for kind, label in kinds:
            out.append(
                Variant(
                    f"{kind}_{sub}",
                    f"{label} [{where}]",
                    kind == "ours",
                    metric,
                    {metric: Metric("µs", "lower"), "total_s": Metric("s", "lower")},
                    "fresh thread and loop per run, pre-warmed untimed" if on_thread else "",
                    show=(metric, "total_s"),
                )
            )
    locks = [("ours_mutex", "ours: tokio_runtime.Mutex"), ("asyncio_lock", "asyncio.Lock")]
    if not stdlib_only:
        locks.append(("aiologic_lock", "aiologic.Lock"))
    for name, label in locks:
        out.append(
            Variant(
                name,
                f"{label} [{CONTENDERS} coroutines, one loop]",
                name.startswith("ours"),
                "lock_us",
                {"lock_us": Metric("µs", "lower"), "total_s": Metric("s", "lower")},
                show=("lock_us", "total_s"),
            )
        )
    return out


# -- queues ----------------------------------------------------------------------------
Put = Callable[[int], Awaitable[None]]
Get = Callable[[], Awaitable[int]]


def make_queue(kind: str, cap: int) -> tuple[Put, Get]:
    """A fresh queue of ``kind`` and capacity ``cap``: its ``(put, get)`` coroutine functions."""
    if kind == "ours":
        import tokio_runtime as tr

        ch: Any = tr.Channel(cap)
        return ch.send, ch.recv
    if kind == "asyncio":
        q: Any = asyncio.Queue(cap)
        return q.put, q.get
    if kind == "culsans":
        import culsans

        cq: Any = culsans.Queue(cap)
        return cq.async_put, cq.async_get
    if kind == "aiologic":
        import aiologic

        aq: Any = aiologic.Queue(maxsize=cap)
        return aq.async_put, aq.async_get
    raise ValueError(f"unknown queue kind {kind!r}")


async def pair(put: Put, get: Get, n: int) -> float:
    """Hand ``n`` ints from a producer to a consumer coroutine; check them; return seconds."""

    async def producer() -> None:
        for i in range(n):
            await put(i)

    async def consumer() -> None:
        for i in range(n):
            x = await get()
            if x != i:
                raise CheckFailed(f"item {i}: the consumer got {x!r}")

    t0 = timer()
    await asyncio.gather(producer(), consumer())
    return timer() - t0


def pair_on_thread(kind: str, cap: int, n: int, loop_kind: str) -> float:
    """:func:`pair` on a fresh loop of ``loop_kind`` run by a fresh ``threading.Thread``."""
    box: dict[str, Any] = {}

    async def main() -> float:
        # Untimed: whatever a kind sets up on the first use of a loop.
        await pair(*make_queue(kind, cap), min(n, PREWARM))
        return await pair(*make_queue(kind, cap), n)

    def body() -> None:
        try:
            box["dt"] = run_on(loop_kind, main)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=body, name=f"b6-{kind}-loop", daemon=True)
    t.start()
    # The main loop just waits: nothing of the pair runs on it.
    t.join()
    if "error" in box:
        raise box["error"]
    return float(box["dt"])


# -- the lock ------------------------------------------------------------------------------
class Counter:
    """The shared state the lock protects."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def make_lock(name: str) -> Any:
    """A fresh lock (made on the running loop)."""
    if name == "ours_mutex":
        import tokio_runtime as tr

        return tr.Mutex()
    if name == "aiologic_lock":
        import aiologic

        return aiologic.Lock()
    return asyncio.Lock()


async def lock_run(name: str, k: int) -> float:
    """CONTENDERS coroutines, ``k`` held-across-a-turn increments each; check; seconds."""
    lock = make_lock(name)
    counter = Counter()

    async def contender() -> None:
        for _ in range(k):
            async with lock:
                v = counter.value
                await asyncio.sleep(0)
                counter.value = v + 1

    t0 = timer()
    await asyncio.gather(*[contender() for _ in range(CONTENDERS)])
    dt = timer() - t0
    total = CONTENDERS * k
    check(counter.value == total, f"counter {counter.value} != {total}: mutual exclusion broken")
    check(not lock.locked(), "lock left held")
    return dt


# -- one run ------------------------------------------------------------------------------------
async def one_run(name: str, params: dict[str, Any], loop_kind: str) -> dict[str, float]:
    """One checked run of variant ``name``: its metrics."""
    if name.endswith("_mutex") or name.endswith("_lock"):
        k = params["iterations_each"]
        dt = await lock_run(name, k)
        return {"lock_us": dt / (CONTENDERS * k) * 1e6, "total_s": dt}
    kind, sub = name.rsplit("_", 1)
    cap, on_thread = QUEUE_SUBCASES[sub]
    n = params["items"]
    if on_thread:
        dt = pair_on_thread(kind, cap, n, loop_kind)
    else:
        dt = await pair(*make_queue(kind, cap), n)
    return {f"{sub}_us": dt / n * 1e6, "total_s": dt}


def targets(s: Summary, params: dict[str, Any]) -> list[Target]:
    """Channel(1), Channel(16), Mutex: <= 1.5x asyncio's; Channel(1), Mutex: faster than peers."""
    out = []

    def at_most(ours: str, peer: str, metric: str, text: str, short: str) -> None:
        if ours in s and peer in s:
            r = s[ours][metric] / s[peer][metric]
            out.append(Target(text, r, "<=", 1.5, f"{ratio_text(r, '<=')} {short}"))

    def faster(ours: str, peer: str, metric: str, text: str, short: str) -> None:
        if ours in s and peer in s:
            r = s[peer][metric] / s[ours][metric]
            out.append(Target(text, r, ">", 1.0, f"{ratio_text(r, '>')} {short}"))

    at_most("ours_c1", "asyncio_c1", "c1_us", "ours_c1: <= 1.5x asyncio.Queue(1)", "asyncio")
    faster("ours_c1", "culsans_c1", "c1_us", "ours_c1: faster than culsans.Queue(1)", "culsans")
    faster("ours_c1", "aiologic_c1", "c1_us", "ours_c1: faster than aiologic.Queue(1)", "aiologic")
    at_most("ours_c16", "asyncio_c16", "c16_us", "ours_c16: <= 1.5x asyncio.Queue(16)", "asyncio")
    at_most("ours_mutex", "asyncio_lock", "lock_us", "ours_mutex: <= 1.5x asyncio.Lock", "asyncio")
    faster(
        "ours_mutex",
        "aiologic_lock",
        "lock_us",
        "ours_mutex: faster than aiologic.Lock",
        "aiologic",
    )
    return out


def main() -> None:
    """Measure every variant on a loop of ``--loop`` kind and print the result."""
    args = child_args(__doc__ or "")
    params = sizes(args.quick)
    variants = make_variants(args.stdlib_only)
    tag = f"{CASE_ID} {args.loop}"
    quarter = {
        "items": max(params["items"] // 4, 100),
        "contenders": CONTENDERS,
        "iterations_each": max(params["iterations_each"] // 4, 25),
    }

    async def bench() -> None:
        async def runner(name: str) -> dict[str, float]:
            return await one_run(name, params, args.loop)

        async def warmup(name: str) -> None:
            await one_run(name, quarter, args.loop)

        await repeat_variants(tag, variants, runner, args.repeat, warmup)

    run_on(args.loop, bench)
    emit(args, params, variants)


if __name__ == "__main__":
    main()
