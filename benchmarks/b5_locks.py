"""B5 lock contention: 4 threads + 2 event loops share one lock.

TOTAL acquire/release pairs in all, split evenly over the 6 actors (4 plain
threads, 2 loop threads each running COROUTINES coroutines); inside the lock
a shared counter is incremented non-atomically (read, then write), and it
must end exactly at TOTAL: mutual exclusion is checked on every run.

Ours: ``tokio_runtime.Mutex`` (``acquire_blocking()``/``release()`` in the
threads, ``async with`` in the coroutines).  Peers: ``aiologic.Lock`` (same
layout: ``green_acquire()``/``green_release()``, ``async with``),
``threading.Lock`` (threads only: 6 threads) and ``asyncio.Lock`` (one loop
only, 2*COROUTINES coroutines).  Wall time from releasing all actors at once
(a barrier) to the last one finishing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from _common import (
    Metric,
    Summary,
    Target,
    Variant,
    check,
    child_args,
    emit,
    new_loop,
    ratio_text,
    repeat_variants,
    run_on,
    timer,
)

CASE_ID = "B5"
TITLE = "lock contention: 4 threads + 2 loops on one lock"
OURS = ("ours_mutex",)
RATIO_METRICS = ("ops_per_s",)
THREADS = 4
LOOPS = 2
COROUTINES = 4


def sizes(quick: bool) -> dict[str, Any]:
    """The case's parameters."""
    return {
        "total": 6_000 if quick else 200_000,
        "threads": THREADS,
        "loops": LOOPS,
        "coroutines_per_loop": COROUTINES,
    }


def make_variants(stdlib_only: bool) -> list[Variant]:
    """Ours first, then the peers."""

    def v(name: str, label: str, ours: bool, note: str = "") -> Variant:
        return Variant(
            name,
            label,
            ours,
            "ops_per_s",
            {"ops_per_s": Metric("ops/s", "higher"), "total_s": Metric("s", "lower")},
            note,
            show=("ops_per_s", "total_s"),
        )

    out = [v("ours_mutex", "ours: tokio_runtime.Mutex (4 threads + 2 loops)", True)]
    if not stdlib_only:
        out.append(v("aiologic_lock", "aiologic.Lock (4 threads + 2 loops)", False))
    out += [
        v("threading_lock", "threading.Lock (6 threads)", False, "threads only"),
        v("asyncio_lock", f"asyncio.Lock (1 loop, {2 * COROUTINES} coroutines)", False, "one loop"),
    ]
    return out


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` near-equal shares that add up exactly."""
    q, r = divmod(total, parts)
    return [q + (1 if i < r else 0) for i in range(parts)]


class Counter:
    """The shared state the lock protects."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def thread_body(kind: str, lock: Any, counter: Counter, n: int) -> Callable[[], None]:
    """A thread's loop of ``n`` acquire / increment / release."""
    if kind == "ours_mutex":
        acquire, release = lock.acquire_blocking, lock.release
    elif kind == "aiologic_lock":
        acquire, release = lock.green_acquire, lock.green_release
    else:  # threading.Lock
        acquire, release = lock.acquire, lock.release

    def body() -> None:
        for _ in range(n):
            acquire()
            v = counter.value
            counter.value = v + 1
            release()

    return body


async def coroutine_body(lock: Any, counter: Counter, n: int) -> None:
    """A coroutine's loop of ``n`` ``async with lock`` / increment."""
    for _ in range(n):
        async with lock:
            v = counter.value
            counter.value = v + 1


def make_lock(kind: str) -> Any:
    """A fresh lock of ``kind`` (asyncio.Lock is made on its loop)."""
    if kind == "ours_mutex":
        import tokio_runtime as tr

        return tr.Mutex()
    if kind == "aiologic_lock":
        import aiologic

        return aiologic.Lock()
    if kind == "threading_lock":
        return threading.Lock()
    return None


def one_run(kind: str, total: int, loop_kind: str) -> float:
    """One contended run of ``total`` acquisitions; check the counter; return seconds."""
    counter = Counter()
    lock = make_lock(kind)
    errors: list[BaseException] = []
    bodies: list[Callable[[], None]] = []

    def loop_actor(n: int, coros: int, mk_lock: bool) -> Callable[[], None]:
        def body() -> None:
            async def main() -> None:
                lk = asyncio.Lock() if mk_lock else lock
                await asyncio.gather(*[coroutine_body(lk, counter, m) for m in split(n, coros)])

            loop = new_loop(loop_kind)
            try:
                barrier.wait()
                loop.run_until_complete(main())
            finally:
                loop.close()

        return body

    if kind == "threading_lock":
        shares = split(total, THREADS + LOOPS)
        bodies = [thread_body(kind, lock, counter, n) for n in shares]
    elif kind == "asyncio_lock":
        bodies = [loop_actor(total, 2 * COROUTINES, True)]
    else:
        shares = split(total, THREADS + LOOPS)
        bodies = [thread_body(kind, lock, counter, n) for n in shares[:THREADS]]
        bodies += [loop_actor(n, COROUTINES, False) for n in shares[THREADS:]]

    barrier = threading.Barrier(len(bodies) + 1)

    def wrap(body: Callable[[], None], is_loop: bool) -> Callable[[], None]:
        def run() -> None:
            try:
                if not is_loop:
                    barrier.wait()
                body()
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        return run

    loop_bodies = 1 if kind == "asyncio_lock" else (0 if kind == "threading_lock" else LOOPS)
    threads = [
        threading.Thread(
            target=wrap(b, i >= len(bodies) - loop_bodies), name=f"b5-{kind}-{i}", daemon=True
        )
        for i, b in enumerate(bodies)
    ]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = timer()
    for t in threads:
        t.join()
    dt = timer() - t0
    check(not errors, f"an actor failed: {errors!r}")
    check(counter.value == total, f"counter {counter.value} != {total}: mutual exclusion broken")
    if lock is not None and hasattr(lock, "locked"):
        check(not lock.locked(), "lock left held")
    return dt


def targets(s: Summary, params: dict[str, Any]) -> list[Target]:
    """Ours faster than aiologic's Lock."""
    if "ours_mutex" not in s or "aiologic_lock" not in s:
        return []
    r = s["ours_mutex"]["ops_per_s"] / s["aiologic_lock"]["ops_per_s"]
    return [
        Target(
            "ours_mutex: faster than aiologic.Lock", r, ">", 1.0, f"{ratio_text(r, '>')} aiologic"
        )
    ]


def main() -> None:
    """Measure every variant (loops of ``--loop`` kind) and print the result."""
    args = child_args(__doc__ or "")
    params = sizes(args.quick)
    total = params["total"]
    variants = make_variants(args.stdlib_only)
    tag = f"{CASE_ID} {args.loop}"

    async def bench() -> None:
        loop = asyncio.get_running_loop()

        async def runner(name: str) -> dict[str, float]:
            dt = await loop.run_in_executor(None, one_run, name, total, args.loop)
            return {"ops_per_s": total / dt, "total_s": dt}

        async def warmup(name: str) -> None:
            await loop.run_in_executor(None, one_run, name, max(total // 10, 600), args.loop)

        await repeat_variants(tag, variants, runner, args.repeat, warmup)

    run_on(args.loop, bench)
    emit(args, params, variants)


if __name__ == "__main__":
    main()
