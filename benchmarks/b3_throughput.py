"""B3 thread -> asyncio throughput: N ints from one producer thread to one consumer coroutine.

Capacity 1024 everywhere it can be bounded.  Ours: ``tokio_runtime.Channel``
(``send_blocking(i)`` per item; the consumer ``await recv()`` per item, or
``await recv_many(1024)``).  Peers: ``janus.Queue`` (``sync_q.put`` ->
``await async_q.get()``), ``culsans.Queue`` (``sync_put`` -> ``await
async_get()``), ``aiologic.Queue`` (``green_put`` -> ``await async_get()``),
and ``asyncio.Queue`` fed by ``loop.call_soon_threadsafe(q.put_nowait, i)``
(unbounded: the producer never waits, so it is not the same contract).
Each run times from starting the producer thread to the consumer holding
the last item (and the producer joined); the consumer checks the count and
the sum of every item.

Time budget: a variant whose warm-up rate predicts more than BUDGET_S
seconds per run for N items moves N / 5 items per run instead (still some
200 times the capacity, so the rate is a steady-state rate); its label and
JSON ``params`` say so.  ``aiologic.Queue`` (about 25k items/s here: a thread
wake per item once the queue is full) is the one this normally hits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any, Callable

from _common import (
    Metric,
    Summary,
    Target,
    Variant,
    check,
    child_args,
    emit,
    progress,
    ratio_text,
    repeat_variants,
    run_on,
    timer,
)

CASE_ID = "B3"
TITLE = "thread -> asyncio throughput: one producer thread, one consumer coroutine"
OURS = ("ours_recv", "ours_recv_many")
RATIO_METRICS = ("items_per_s",)
CAPACITY = 1024
#: Longest a single run may be expected to take before its size is cut to N / 5.
BUDGET_S = 15.0
PEERS_3P = ("janus", "culsans", "aiologic")


def sizes(quick: bool) -> dict[str, Any]:
    """The case's parameters."""
    return {"items": 20_000 if quick else 1_000_000, "capacity": CAPACITY}


def make_variants(stdlib_only: bool) -> list[Variant]:
    """Ours first, then the peers."""

    def v(name: str, label: str, ours: bool, note: str = "") -> Variant:
        return Variant(
            name,
            label,
            ours,
            "items_per_s",
            {"items_per_s": Metric("items/s", "higher"), "total_s": Metric("s", "lower")},
            note,
            show=("items_per_s", "total_s"),
        )

    out = [
        v("ours_recv", "ours: Channel send_blocking -> await recv()", True),
        v("ours_recv_many", "ours: Channel send_blocking -> await recv_many(1024)", True),
    ]
    if not stdlib_only:
        out += [
            v("janus", "janus.Queue: sync_q.put -> await async_q.get()", False),
            v("culsans", "culsans.Queue: sync_put -> await async_get()", False),
            v("aiologic", "aiologic.Queue: green_put -> await async_get()", False),
        ]
    out.append(
        v(
            "asyncio_queue_cst",
            "asyncio.Queue via call_soon_threadsafe(put_nowait)",
            False,
            "unbounded: the producer never waits for the consumer",
        )
    )
    return out


# A variant: builds (producer body, consumer coroutine function, cleanup) on the running loop.
Setup = tuple[Callable[[int], None], Callable[[int], Awaitable[int]], Callable[[], Awaitable[None]]]


async def _nothing() -> None:
    return None


def setup(name: str, loop: asyncio.AbstractEventLoop) -> Setup:
    """Producer ``produce(n)`` (puts 0..n-1), consumer ``consume(n) -> sum``, cleanup."""
    if name in ("ours_recv", "ours_recv_many"):
        import tokio_runtime as tr

        ch: Any = tr.Channel(CAPACITY)

        def produce_ch(n: int) -> None:
            send = ch.send_blocking
            for i in range(n):
                send(i)

        async def consume_one(n: int) -> int:
            recv = ch.recv
            total = 0
            for _ in range(n):
                total += await recv()
            return total

        async def consume_many(n: int) -> int:
            recv_many = ch.recv_many
            total = got = 0
            while got < n:
                batch = await recv_many(CAPACITY)
                got += len(batch)
                total += sum(batch)
            check(got == n, f"recv_many got {got} items, not {n}")
            return total

        async def close_ch() -> None:
            ch.close()

        return produce_ch, (consume_one if name == "ours_recv" else consume_many), close_ch
    if name == "janus":
        import janus

        jq: Any = janus.Queue(CAPACITY)

        def produce_j(n: int) -> None:
            put = jq.sync_q.put
            for i in range(n):
                put(i)

        async def consume_j(n: int) -> int:
            get = jq.async_q.get
            total = 0
            for _ in range(n):
                total += await get()
            return total

        async def close_j() -> None:
            jq.close()
            await jq.wait_closed()

        return produce_j, consume_j, close_j
    if name == "culsans":
        import culsans

        cq: Any = culsans.Queue(CAPACITY)

        def produce_c(n: int) -> None:
            put = cq.sync_put
            for i in range(n):
                put(i)

        async def consume_c(n: int) -> int:
            get = cq.async_get
            total = 0
            for _ in range(n):
                total += await get()
            return total

        async def close_c() -> None:
            cq.shutdown()

        return produce_c, consume_c, close_c
    if name == "aiologic":
        import aiologic

        aq: Any = aiologic.Queue(maxsize=CAPACITY)

        def produce_a(n: int) -> None:
            put = aq.green_put
            for i in range(n):
                put(i)

        async def consume_a(n: int) -> int:
            get = aq.async_get
            total = 0
            for _ in range(n):
                total += await get()
            return total

        return produce_a, consume_a, _nothing
    if name == "asyncio_queue_cst":
        q: asyncio.Queue[int] = asyncio.Queue()

        def produce_q(n: int) -> None:
            cst = loop.call_soon_threadsafe
            put = q.put_nowait
            for i in range(n):
                cst(put, i)

        async def consume_q(n: int) -> int:
            get = q.get
            total = 0
            for _ in range(n):
                total += await get()
            return total

        return produce_q, consume_q, _nothing
    raise ValueError(name)


async def one_run(name: str, n: int) -> float:
    """Move ``n`` items with variant ``name``; check count and sum; return the seconds."""
    loop = asyncio.get_running_loop()
    produce, consume, cleanup = setup(name, loop)
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            produce(n)
        except BaseException as exc:  # reported by the consumer side
            errors.append(exc)

    t = threading.Thread(target=producer, name=f"b3-{name}")
    t0 = timer()
    t.start()
    total = await consume(n)
    dt = timer() - t0
    await loop.run_in_executor(None, t.join)
    await cleanup()
    check(not errors, f"producer failed: {errors!r}")
    check(total == n * (n - 1) // 2, f"sum {total} != {n * (n - 1) // 2}")
    return dt


def targets(s: Summary, params: dict[str, Any]) -> list[Target]:
    """>= 5x janus, >= 2x culsans and aiologic; >= 1,000,000 items/s with recv_many."""
    out = []
    for ours in OURS:
        if ours not in s:
            continue
        rate = s[ours]["items_per_s"]
        for peer, need in (("janus", 5.0), ("culsans", 2.0), ("aiologic", 2.0)):
            if peer in s:
                r = rate / s[peer]["items_per_s"]
                out.append(
                    Target(
                        f"{ours}: >= {need:g}x {peer}",
                        r,
                        ">=",
                        need,
                        f"{ratio_text(r, '>=')} {peer}",
                    )
                )
    if "ours_recv_many" in s:
        rate = s["ours_recv_many"]["items_per_s"]
        out.append(
            Target(
                "ours_recv_many: >= 1,000,000 items/s",
                rate,
                ">=",
                1e6,
                f"{rate / 1e6:.2f} M items/s",
            )
        )
    return out


def main() -> None:
    """Measure every variant on the chosen loop and print the result."""
    args = child_args(__doc__ or "")
    params = sizes(args.quick)
    n = params["items"]
    variants = make_variants(args.stdlib_only)
    tag = f"{CASE_ID} {args.loop}"

    items = {v.name: n for v in variants}
    by_name = {v.name: v for v in variants}

    async def bench() -> None:
        async def runner(name: str) -> dict[str, float]:
            k = items[name]
            dt = await one_run(name, k)
            return {"items_per_s": k / dt, "total_s": dt}

        async def warmup(name: str) -> None:
            k = max(n // 20, CAPACITY * 4)
            dt = await one_run(name, k)
            predicted = dt * n / k
            if predicted > BUDGET_S:
                items[name] = n // 5
                v = by_name[name]
                v.params["items"] = n // 5
                v.label += f" [{n // 5:,} items]"
                why = (
                    f"moves {n // 5:,} items per run, not {n:,}: its warm-up predicted "
                    f"{predicted:.0f} s per run (budget {BUDGET_S:g} s)"
                )
                v.note = f"{v.note}; {why}" if v.note else why
                progress(f"[{tag}] {name}: {why}")

        await repeat_variants(tag, variants, runner, args.repeat, warmup)

    run_on(args.loop, bench)
    emit(args, params, variants)


if __name__ == "__main__":
    main()
