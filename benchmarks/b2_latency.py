"""B2 round-trip latency: N sequential awaits, one at a time; median and p99 in µs.

Ours: ``await tokio_runtime.sleep(0)`` (loop -> libev thread -> dispatcher
-> loop).  Peers: ``await loop.run_in_executor(None, noop)`` and a plain
Python thread that waits on a ``queue.SimpleQueue`` for a request and answers
with ``loop.call_soon_threadsafe(fut.set_result, x)``.  Each await is timed
on its own with ``time.perf_counter``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

from _common import (
    Metric,
    Summary,
    Target,
    Variant,
    check,
    child_args,
    emit,
    median,
    percentile,
    repeat_variants,
    run_on,
    timer,
)

CASE_ID = "B2"
TITLE = "round-trip latency: sequential awaits"
OURS = ("ours_sleep0",)
RATIO_METRICS = ("median_us", "p99_us")


def sizes(quick: bool) -> dict[str, Any]:
    """The case's parameters."""
    return {"awaits": 200 if quick else 2_000, "warmup_awaits": 50 if quick else 200}


def noop() -> None:
    """The work handed to a thread: nothing."""


def make_variants() -> list[Variant]:
    """Ours first, then the peers."""

    def v(name: str, label: str, ours: bool) -> Variant:
        return Variant(
            name,
            label,
            ours,
            "median_us",
            {"median_us": Metric("µs", "lower"), "p99_us": Metric("µs", "lower")},
            show=("median_us", "p99_us"),
        )

    return [
        v("ours_sleep0", "ours: await tokio_runtime.sleep(0)", True),
        v("run_in_executor", "await loop.run_in_executor(None, noop)", False),
        v("thread_cst", "thread + SimpleQueue -> call_soon_threadsafe", False),
    ]


class Answerer:
    """A thread that answers each request ``(fut, x)`` with ``fut.set_result(x)`` on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="b2-answerer", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        get = self.requests.get
        cst = self.loop.call_soon_threadsafe
        while True:
            req = get()
            if req is None:
                return
            fut, x = req
            cst(fut.set_result, x)

    def stop(self) -> None:
        """Stop and join the thread."""
        self.requests.put(None)
        self.thread.join()


async def one_run(name: str, n: int, answerer: Answerer) -> list[float]:
    """``n`` sequential awaits of variant ``name``; each one's latency in µs."""
    import tokio_runtime as tr

    loop = asyncio.get_running_loop()
    lat = [0.0] * n
    if name == "ours_sleep0":
        for i in range(n):
            t0 = timer()
            x = await tr.sleep(0, i)
            lat[i] = timer() - t0
            check(x == i, "sleep(0) result")
    elif name == "run_in_executor":
        for i in range(n):
            t0 = timer()
            await loop.run_in_executor(None, noop)  # noop returns nothing to check
            lat[i] = timer() - t0
    elif name == "thread_cst":
        put = answerer.requests.put
        for i in range(n):
            t0 = timer()
            fut = loop.create_future()
            put((fut, i))
            x = await fut
            lat[i] = timer() - t0
            check(x == i, "thread answer")
    else:
        raise ValueError(name)
    return [x * 1e6 for x in lat]


def targets(s: Summary, params: dict[str, Any]) -> list[Target]:
    """Our median <= run_in_executor's median."""
    if "ours_sleep0" not in s or "run_in_executor" not in s:
        return []
    ours = s["ours_sleep0"]["median_us"]
    peer = s["run_in_executor"]["median_us"]
    return [
        Target(
            "ours_sleep0: median <= run_in_executor median",
            ours / peer,
            "<=",
            1.0,
            f"{ours:.1f} vs {peer:.1f} µs",
        )
    ]


def main() -> None:
    """Measure every variant on the chosen loop and print the result."""
    args = child_args(__doc__ or "")
    params = sizes(args.quick)
    n = params["awaits"]
    variants = make_variants()
    tag = f"{CASE_ID} {args.loop}"

    async def bench() -> None:
        answerer = Answerer(asyncio.get_running_loop())
        try:

            async def runner(name: str) -> dict[str, float]:
                lat = await one_run(name, n, answerer)
                return {"median_us": median(lat), "p99_us": percentile(lat, 99)}

            async def warmup(name: str) -> None:
                await one_run(name, params["warmup_awaits"], answerer)

            await repeat_variants(tag, variants, runner, args.repeat, warmup)
        finally:
            answerer.stop()

    run_on(args.loop, bench)
    emit(args, params, variants)


if __name__ == "__main__":
    main()
