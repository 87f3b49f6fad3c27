"""Helpers shared by the case modules: loops, timing, statistics, the child protocol.

Every case module is a plain script.  ``run.py`` starts it once per loop kind
in a fresh interpreter (``python bXX.py --loop uvloop --repeat 5 ...``); the
child measures, checks every run for correctness, prints progress lines to
stderr and one JSON document (its measurements) to stdout.  The parent then
computes medians, ratios and targets from those raw runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

LOOP_KINDS = ("asyncio", "uvloop")
#: Third-party peers; ``--stdlib-only`` leaves them (and uvloop) out.
THIRD_PARTY = ("janus", "culsans", "aiologic")


# -- loops ----------------------------------------------------------------------
def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A fresh event loop of ``kind`` (``asyncio`` or ``uvloop``)."""
    if kind == "asyncio":
        return asyncio.new_event_loop()
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    raise ValueError(f"unknown loop kind {kind!r}")


def run_on(kind: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a new loop of ``kind``, then close it cleanly.

    Like ``asyncio.run`` with a loop factory (which Python 3.9-3.11 lack).
    """
    loop = new_loop(kind)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


# -- statistics -------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linear interpolation."""
    if not values:
        raise ValueError("percentile of no values")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return float(statistics.median(values))


# -- measuring ----------------------------------------------------------------------
@dataclass
class Metric:
    """One number a variant reports per run (seconds, items/s, µs, MiB ...)."""

    unit: str
    better: str  # "lower" or "higher"
    runs: list[float] = field(default_factory=list)


@dataclass
class Variant:
    """One thing measured: ours or a peer, with its metrics' per-run values."""

    name: str
    label: str
    ours: bool
    primary: str
    metrics: dict[str, Metric]
    note: str = ""
    checks: int = 0  # runs whose correctness check passed
    params: dict[str, Any] = field(default_factory=dict)  # per-variant sizes, if they differ
    show: tuple[str, ...] = ()  # metrics the table shows (default: the primary one)

    def to_json(self) -> dict[str, Any]:
        """The raw form the child prints."""
        return {
            "label": self.label,
            "ours": self.ours,
            "primary": self.primary,
            "note": self.note,
            "checks_passed": self.checks,
            "params": self.params,
            "show": list(self.show or (self.primary,)),
            "metrics": {
                k: {"unit": m.unit, "better": m.better, "runs": m.runs}
                for k, m in self.metrics.items()
            },
        }


class CheckFailed(AssertionError):
    """A run's result was wrong (a lost item, a broken lock): the run is invalid."""


def check(ok: bool, what: str) -> None:
    """Raise :class:`CheckFailed` with ``what`` unless ``ok``."""
    if not ok:
        raise CheckFailed(what)


def progress(msg: str) -> None:
    """One progress line on stderr (flushed: the parent shows it at once)."""
    print(msg, file=sys.stderr, flush=True)


def fmt_value(value: float, unit: str) -> str:
    """A number with its unit, compactly (``12.3 ms``, ``1.25 M/s``)."""
    if unit == "s":
        if abs(value) < 1e-3:
            return f"{value * 1e6:.1f} µs"
        if abs(value) < 1.0:
            return f"{value * 1e3:.1f} ms"
        return f"{value:.2f} s"
    if unit.endswith("/s"):
        if value >= 1e6:
            return f"{value / 1e6:.2f} M/s"
        return f"{value / 1e3:.1f} k/s"
    if unit == "µs":
        return f"{value:.1f} µs"
    if unit == "ms":
        return fmt_value(value / 1e3, "s")
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:.4g} {unit}"


def prepare_run() -> None:
    """Before each timed run: collect garbage so one run's debris is not the next's cost."""
    gc.collect()


def _record(tag: str, v: Variant, r: int, repeat: int, values: dict[str, float]) -> None:
    """Keep one checked run's metrics and print its progress line."""
    v.checks += 1
    for k, val in values.items():
        v.metrics[k].runs.append(val)
    p = v.metrics[v.primary]
    progress(f"[{tag}] run {r}/{repeat}: {v.label}: {fmt_value(values[v.primary], p.unit)}")


async def repeat_variants(
    tag: str,
    variants: list[Variant],
    run_one: Callable[[str], Awaitable[dict[str, float]]],
    repeat: int,
    warmup: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Warm every variant up, then run them interleaved ``repeat`` times.

    Interleaving (run 1 of every variant, then run 2 ...) spreads a slow
    moment of the shared machine over all variants instead of one.
    ``run_one(name)`` performs one checked run of that variant and returns its
    metrics; ``warmup(name)`` one untimed run.
    """
    if warmup is not None:
        for v in variants:
            progress(f"[{tag}] warm-up: {v.label}")
            prepare_run()
            await warmup(v.name)
    for r in range(1, repeat + 1):
        for v in variants:
            prepare_run()
            _record(tag, v, r, repeat, await run_one(v.name))


def repeat_variants_sync(
    tag: str,
    variants: list[Variant],
    run_one: Callable[[str], dict[str, float]],
    repeat: int,
    warmup: Callable[[str], None] | None = None,
) -> None:
    """:func:`repeat_variants` for a case whose runs need no loop running on this thread.

    (B7 runs a blocking side on the main thread, which must not be running a
    loop; each run starts the loops it needs.)
    """
    if warmup is not None:
        for v in variants:
            progress(f"[{tag}] warm-up: {v.label}")
            prepare_run()
            warmup(v.name)
    for r in range(1, repeat + 1):
        for v in variants:
            prepare_run()
            _record(tag, v, r, repeat, run_one(v.name))


def timer() -> float:
    """``time.perf_counter()``: the clock every case uses."""
    return time.perf_counter()


# -- the child protocol ----------------------------------------------------------------
def child_args(description: str) -> argparse.Namespace:
    """Parse a case module's command line (as ``run.py`` passes it)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--loop", choices=LOOP_KINDS, default="asyncio")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    ap.add_argument("--stdlib-only", action="store_true", help="leave out the third-party peers")
    ap.add_argument("--json", action="store_true", help="print the raw JSON result on stdout")
    return ap.parse_args()


def emit(args: argparse.Namespace, params: dict[str, Any], variants: list[Variant]) -> None:
    """Print the child's result: JSON for ``run.py``, or a short summary by hand."""
    doc = {"params": params, "variants": {v.name: v.to_json() for v in variants}}
    if args.json:
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
        return
    for v in variants:
        p = v.metrics[v.primary]
        print(f"{v.label:50s} {fmt_value(median(p.runs), p.unit):>12s}  (median of {len(p.runs)})")


# -- targets (used by run.py on the medians) ------------------------------------------
def ratio_text(value: float, op: str) -> str:
    """``value`` to 2 decimals, rounded away from the threshold's side.

    Down for a ">=" goal and up for a "<=" goal, so a goal missed by a hair
    never prints as if it were exactly met (4.996 for ">= 5" shows 4.99).
    """
    scaled = value * 100
    rounded = math.floor(scaled) if op in (">=", ">") else math.ceil(scaled)
    return f"{rounded / 100:.2f}x"


Summary = dict[str, dict[str, float]]  # variant -> metric -> median over the runs


@dataclass
class Target:
    """A goal from issue 5, checked against this run's medians."""

    text: str  # the goal as stated, e.g. "ours <= 2x the floor per op"
    value: float  # the measured quantity the goal bounds
    op: str  # "<=", ">=", "<" or ">"
    threshold: float
    shown: str  # the value as printed, e.g. "1.43x floor"
    veto: str = ""  # a reason the goal is not met whatever the value (e.g. a negative lateness)

    @property
    def met(self) -> bool:
        """Whether the goal is met in this run."""
        if self.veto:
            return False
        v, t = self.value, self.threshold
        return {"<=": v <= t, ">=": v >= t, "<": v < t, ">": v > t}[self.op]

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "text": self.text,
            "value": self.value,
            "op": self.op,
            "threshold": self.threshold,
            "shown": self.shown,
            "veto": self.veto,
            "met": self.met,
        }
