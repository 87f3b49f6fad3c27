"""B1 per-operation overhead: N zero-delay operations in one ``asyncio.gather``.

Ours: ``tokio_runtime.sleep(0)`` and ``tokio_runtime.with_timeout(0, 1000)``.
Peers: the floor (N ``loop.create_future()`` futures resolved in one batch by
one callback on the loop itself, no thread, then gathered: what any native
completion must at least cost), ``asyncio.sleep(0)`` tasks,
``asyncio.to_thread(noop)`` and ``loop.run_in_executor(None, noop)``.
Each run times creating, completing and gathering all N; per op = time / N.
"""

from __future__ import annotations

import asyncio
from typing import Any

from _common import (
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

CASE_ID = "B1"
TITLE = "per-operation overhead: zero-delay operations in one gather"
OURS = ("ours_sleep0", "ours_with_timeout")
RATIO_METRICS = ("per_op_us",)


def sizes(quick: bool) -> dict[str, Any]:
    """The case's parameters."""
    return {"ops": 1_000 if quick else 10_000}


def noop() -> None:
    """The work handed to a thread: nothing."""


def make_variants() -> list[Variant]:
    """Ours first, then the peers."""

    def v(name: str, label: str, ours: bool) -> Variant:
        return Variant(
            name,
            label,
            ours,
            "per_op_us",
            {"total_s": Metric("s", "lower"), "per_op_us": Metric("µs", "lower")},
            show=("per_op_us", "total_s"),
        )

    return [
        v("ours_sleep0", "ours: tokio_runtime.sleep(0)", True),
        v("ours_with_timeout", "ours: tokio_runtime.with_timeout(0, 1000)", True),
        v("floor", "floor: loop futures resolved in one batch on the loop", False),
        v("asyncio_sleep0", "asyncio.sleep(0) tasks", False),
        v("to_thread", "asyncio.to_thread(noop)", False),
        v("run_in_executor", "loop.run_in_executor(None, noop)", False),
    ]


async def one_run(name: str, n: int) -> float:
    """Time ``n`` operations of variant ``name`` in one gather; check every result."""
    import tokio_runtime as tr

    loop = asyncio.get_running_loop()
    t0 = timer()
    if name == "ours_sleep0":
        res = await asyncio.gather(*[tr.sleep(0, i) for i in range(n)])
        dt = timer() - t0
        check(res == list(range(n)), "sleep(0) results")
    elif name == "ours_with_timeout":
        texts = await asyncio.gather(*[tr.with_timeout(0, 1000) for _ in range(n)])
        dt = timer() - t0
        check(texts == ["Operation completed"] * n, "with_timeout results")
    elif name == "floor":
        futs = [loop.create_future() for _ in range(n)]

        def resolve_all() -> None:
            for i, f in enumerate(futs):
                if not f.done():
                    f.set_result(i)

        loop.call_soon(resolve_all)
        res = await asyncio.gather(*futs)
        dt = timer() - t0
        check(res == list(range(n)), "floor results")
    elif name == "asyncio_sleep0":
        res = await asyncio.gather(*[asyncio.sleep(0, i) for i in range(n)])
        dt = timer() - t0
        check(res == list(range(n)), "asyncio.sleep(0) results")
    elif name == "to_thread":
        nones = await asyncio.gather(*[asyncio.to_thread(noop) for _ in range(n)])
        dt = timer() - t0
        check(nones == [None] * n, "to_thread results")
    elif name == "run_in_executor":
        nones = await asyncio.gather(*[loop.run_in_executor(None, noop) for _ in range(n)])
        dt = timer() - t0
        check(nones == [None] * n, "run_in_executor results")
    else:
        raise ValueError(name)
    return dt


def targets(s: Summary, params: dict[str, Any]) -> list[Target]:
    """Ours <= 2x the floor per op; ours >= 20x faster than asyncio.to_thread."""
    out = []
    for ours in OURS:
        if ours not in s:
            continue
        op = s[ours]["per_op_us"]
        if "floor" in s:
            r = op / s["floor"]["per_op_us"]
            out.append(
                Target(
                    f"{ours}: per op <= 2x the floor", r, "<=", 2.0, f"{ratio_text(r, '<=')} floor"
                )
            )
        if "to_thread" in s:
            r = s["to_thread"]["per_op_us"] / op
            out.append(
                Target(
                    f"{ours}: >= 20x faster than to_thread",
                    r,
                    ">=",
                    20.0,
                    f"{ratio_text(r, '>=')} faster",
                )
            )
    return out


def main() -> None:
    """Measure every variant on the chosen loop and print the result."""
    args = child_args(__doc__ or "")
    params = sizes(args.quick)
    n = params["ops"]
    variants = make_variants()
    tag = f"{CASE_ID} {args.loop}"

    async def bench() -> None:
        import tokio_runtime  # noqa: F401  (the runtime starts on first use, in the warm-up)

        async def runner_for(name: str, size: int) -> dict[str, float]:
            dt = await one_run(name, size)
            return {"total_s": dt, "per_op_us": dt / size * 1e6}

        async def warmup(name: str) -> None:
            await one_run(name, n)

        async def runner(name: str) -> dict[str, float]:
            return await runner_for(name, n)

        await repeat_variants(tag, variants, runner, args.repeat, warmup)

    run_on(args.loop, bench)
    emit(args, params, variants)


if __name__ == "__main__":
    main()
