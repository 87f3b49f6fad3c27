"""B4 scale: a million native tasks, and a hundred thousand concurrent sleeps.

* ``tokio_runtime.shared_counter_demo(n)`` for n = 10^4, 10^5, 10^6 (n native
  tasks, each with its own 10 ms libev timer, then a C mutex and a C
  increment on a worker): wall time of the ``await`` and peak RSS
  (``ru_maxrss``), each n in a fresh subprocess so one n's peak is not the
  next one's.  The runtime is warmed up first (its threads started).
* N concurrent ``tokio_runtime.sleep(0.05)`` against N concurrent
  ``asyncio.sleep(0.05)``: every coroutine records its own lateness, the time
  it resumes minus (its own start + 0.05 s); p50 and p99 in ms.  With N =
  100,000 this is dominated by the asyncio loop starting and resuming N
  coroutines (over a second of Python either way), not by the timers.
* Timer lateness, the part a runtime answers for: N timers of 0.05 s set in
  one burst, and how late each *fired* (ran and handed its result on) after
  it was due.  Ours: ``Runtime.stats()``'s native histogram (a fresh runtime
  per run).  The peer: N ``loop.call_later(0.05, ...)`` callbacks, each
  recording how long after (its call + 0.05 s) it ran.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
from typing import Any

from _common import (
    Metric,
    Summary,
    Target,
    Variant,
    check,
    child_args,
    emit,
    fmt_value,
    percentile,
    progress,
    repeat_variants,
    run_on,
    timer,
)

CASE_ID = "B4"
TITLE = "scale: shared_counter_demo(n) and concurrent 50 ms sleeps"
# the counter runs have no peer: they are checked against targets only
OURS = ("ours_sleep", "ours_timer")
RATIO_METRICS = ("p50_ms", "p99_ms", "timer_p50_ms", "timer_p99_ms")
DELAY = 0.05
#: A resume more than this early (ms) counts as early, not as clock granularity.
EARLY_MS = 1.0


def sizes(quick: bool) -> dict[str, Any]:
    """The case's parameters."""
    return {
        "counter_n": [1_000, 10_000] if quick else [10_000, 100_000, 1_000_000],
        "sleeps": 2_000 if quick else 100_000,
        "delay_s": DELAY,
    }


def counter_name(n: int) -> str:
    """The variant name of ``shared_counter_demo(n)``."""
    return f"counter_{n}"


def make_variants(params: dict[str, Any]) -> list[Variant]:
    """The counter runs, then the two sleep variants."""
    out = [
        Variant(
            counter_name(n),
            f"ours: shared_counter_demo({n:,})",
            True,
            "wall_s",
            {"wall_s": Metric("s", "lower"), "peak_rss_mib": Metric("MiB", "lower")},
            "fresh subprocess per run; RSS is the whole process's peak",
            show=("wall_s", "peak_rss_mib"),
        )
        for n in params["counter_n"]
    ]
    for name, label, ours in (
        ("ours_sleep", f"ours: tokio_runtime.sleep({DELAY}) x{params['sleeps']:,}", True),
        ("asyncio_sleep", f"asyncio.sleep({DELAY}) x{params['sleeps']:,}", False),
    ):
        out.append(
            Variant(
                name,
                label,
                ours,
                "p99_ms",
                {
                    "p50_ms": Metric("ms", "lower"),
                    "p99_ms": Metric("ms", "lower"),
                    "max_ms": Metric("ms", "lower"),
                    "min_ms": Metric("ms", "higher"),
                    "early_pct": Metric("%", "lower"),
                    "total_s": Metric("s", "lower"),
                },
                "lateness = resume - (own start + delay), per coroutine; negative = early",
                show=("p99_ms", "p50_ms"),
            )
        )
    for name, label, ours in (
        ("ours_timer", f"ours: native timers, {params['sleeps']:,} x {DELAY} s", True),
        ("asyncio_timer", f"loop.call_later({DELAY}), {params['sleeps']:,} x", False),
    ):
        out.append(
            Variant(
                name,
                label,
                ours,
                "timer_p99_ms",
                {
                    "timer_p50_ms": Metric("ms", "lower"),
                    "timer_p99_ms": Metric("ms", "lower"),
                    "timer_max_ms": Metric("ms", "lower"),
                },
                "timer lateness = fired - due (ours: upper bounds from the native histogram)",
                show=("timer_p99_ms", "timer_p50_ms"),
            )
        )
    return out


# -- the counter, in a fresh process ----------------------------------------------------
def counter_child(n: int, loop_kind: str) -> None:
    """Run in the grandchild: warm up, time ``shared_counter_demo(n)``, print JSON."""
    import tokio_runtime as tr

    async def main() -> dict[str, float]:
        check(await tr.shared_counter_demo(100) == 100, "warm-up count")
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = timer()
        got = await tr.shared_counter_demo(n)
        dt = timer() - t0
        check(got == n, f"shared_counter_demo({n}) returned {got}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"wall_s": dt, "peak_rss_mib": peak / 1024.0, "before_rss_mib": base / 1024.0}

    print(json.dumps(run_on(loop_kind, main)))


def counter_run(n: int, loop_kind: str) -> dict[str, float]:
    """One fresh subprocess measuring ``shared_counter_demo(n)``."""
    proc = subprocess.run(
        [sys.executable, __file__, "--counter", str(n), "--loop", loop_kind],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"counter subprocess n={n} failed:\n{proc.stderr}")
    out: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# -- lateness ---------------------------------------------------------------------------
async def lateness_run(name: str, n: int) -> dict[str, float]:
    """``n`` concurrent sleeps of ``DELAY``; per-coroutine lateness percentiles in ms."""
    import tokio_runtime as tr

    late = [float("nan")] * n
    sleep = tr.sleep if name == "ours_sleep" else asyncio.sleep

    async def one(i: int) -> None:
        start = timer()
        await sleep(DELAY)
        late[i] = timer() - (start + DELAY)

    t0 = timer()
    await asyncio.gather(*[one(i) for i in range(n)])
    total = timer() - t0
    check(all(x == x for x in late), "every coroutine resumed")  # no NaN left
    ms = [x * 1e3 for x in late]
    # Early resumes are measured, not treated as a broken run: they are kept in the
    # percentiles as negative lateness, and counted (beyond 1 ms: more than clock slop).
    return {
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "min_ms": min(ms),
        "early_pct": 100.0 * sum(1 for x in ms if x < -EARLY_MS) / n,
        "total_s": total,
    }


async def timer_run(name: str, n: int) -> dict[str, float]:
    """``n`` timers of ``DELAY`` set in one burst; how late they fired, in ms."""
    import tokio_runtime as tr

    loop = asyncio.get_running_loop()
    if name == "ours_timer":
        rt = tr.Runtime()
        try:
            await asyncio.gather(*[rt.sleep(DELAY) for _ in range(n)])
            s = rt.stats()
        finally:
            rt.shutdown()
        check(s["timers_fired"] == n, "every native timer fired once")
        return {
            "timer_p50_ms": s["timer_late_p50_us"] / 1e3,
            "timer_p99_ms": s["timer_late_p99_us"] / 1e3,
            "timer_max_ms": s["timer_late_max_us"] / 1e3,
        }
    late: list[float] = []
    done = loop.create_future()

    def fired(due: float) -> None:
        late.append(timer() - due)
        if len(late) == n:
            done.set_result(None)

    # Due DELAY after the call, on the benchmark's clock: uvloop's loop.time()
    # is libuv's cached millisecond clock, too coarse to measure against.
    for _ in range(n):
        loop.call_later(DELAY, fired, timer() + DELAY)
    await done
    ms = [max(0.0, x) * 1e3 for x in late]  # early (libuv rounds to ms): not late
    return {
        "timer_p50_ms": percentile(ms, 50),
        "timer_p99_ms": percentile(ms, 99),
        "timer_max_ms": max(ms),
    }


def note_early(v: Variant) -> None:
    """Add to ``v``'s note how often its sleeps resumed more than EARLY_MS early."""
    mins = v.metrics["min_ms"].runs
    pcts = v.metrics["early_pct"].runs
    runs = sum(1 for p in pcts if p > 0)
    if runs:
        why = (
            f"resumed more than {EARLY_MS:g} ms EARLY in {runs} of {len(pcts)} runs "
            f"(up to {max(pcts):.1f}% of its coroutines; earliest {min(mins):.2f} ms)"
        )
        v.note = f"{v.note}; {why}" if v.note else why


def targets(s: Summary, params: dict[str, Any]) -> list[Target]:
    """shared_counter_demo(10^6) <= 0.3 s and <= 150 MiB; p99 lateness <= 2 ms."""
    out = []
    big = counter_name(max(params["counter_n"]))
    if big in s:
        n = max(params["counter_n"])
        w = s[big]["wall_s"]
        m = s[big]["peak_rss_mib"]
        out.append(Target(f"shared_counter_demo({n:,}) <= 0.3 s", w, "<=", 0.3, f"{w:.3f} s"))
        out.append(
            Target(
                f"shared_counter_demo({n:,}) peak RSS <= 150 MiB", m, "<=", 150.0, f"{m:.0f} MiB"
            )
        )
    if "ours_timer" in s:
        p = s["ours_timer"]["timer_p99_ms"]
        out.append(
            Target(
                f"ours_timer: p99 timer lateness <= 2 ms ({params['sleeps']:,} timers)",
                p,
                "<=",
                2.0,
                fmt_value(p, "ms"),
            )
        )
    if "ours_sleep" in s:
        p = s["ours_sleep"]["p99_ms"]
        out.append(
            Target(
                f"ours_sleep: p99 lateness <= 2 ms ({params['sleeps']:,} sleeps)",
                p,
                "<=",
                2.0,
                fmt_value(p, "ms"),
                veto="the sleeps woke early" if p < 0 else "",
            )
        )
    return out


def main() -> None:
    """Measure every variant on the chosen loop and print the result."""
    if "--counter" in sys.argv:
        i = sys.argv.index("--counter")
        loop_kind = sys.argv[sys.argv.index("--loop") + 1] if "--loop" in sys.argv else "asyncio"
        counter_child(int(sys.argv[i + 1]), loop_kind)
        return
    args = child_args(__doc__ or "")
    params = sizes(args.quick)
    variants = make_variants(params)
    tag = f"{CASE_ID} {args.loop}"
    counters = [v for v in variants if v.name.startswith("counter_")]
    sleeps = [v for v in variants if not v.name.startswith("counter_")]

    # The counter: one fresh process per n and run (no warm-up run: each child warms up).
    for r in range(1, args.repeat + 1):
        for v, n in zip(counters, params["counter_n"]):
            res = counter_run(n, args.loop)
            v.checks += 1
            v.metrics["wall_s"].runs.append(res["wall_s"])
            v.metrics["peak_rss_mib"].runs.append(res["peak_rss_mib"])
            progress(
                f"[{tag}] run {r}/{args.repeat}: {v.label}: {res['wall_s'] * 1e3:.1f} ms, "
                f"peak RSS {res['peak_rss_mib']:.0f} MiB (before: {res['before_rss_mib']:.0f})"
            )

    async def bench() -> None:
        n = params["sleeps"]

        async def runner(name: str) -> dict[str, float]:
            if name.endswith("_timer"):
                return await timer_run(name, n)
            res = await lateness_run(name, n)
            if res["early_pct"] > 0:
                progress(
                    f"[{tag}] {name}: {res['early_pct']:.1f}% of the sleeps resumed more than "
                    f"{EARLY_MS:g} ms early (earliest {res['min_ms']:.2f} ms)"
                )
            return res

        async def warmup(name: str) -> None:
            if name.endswith("_timer"):
                await timer_run(name, max(n // 10, 100))
            else:
                await lateness_run(name, max(n // 10, 100))

        await repeat_variants(tag, sleeps, runner, args.repeat, warmup)

    run_on(args.loop, bench)
    for v in sleeps:
        if not v.name.endswith("_timer"):
            note_early(v)
    emit(args, params, variants)


if __name__ == "__main__":
    main()
