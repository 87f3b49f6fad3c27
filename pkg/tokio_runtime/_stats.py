"""The native counters of a runtime, as a dict.

``tr_runtime_stats`` copies the C side's atomic counters and its timer
lateness histogram (log-linear buckets, 25 % wide); this module turns them
into plain numbers, with the p50/p99 lateness read off the histogram.
"""

from __future__ import annotations

from typing import Any

from ._native import ffi, lib


def _late_bucket_upper_bounds() -> list[float]:
    lo, hi = ffi.new("uint64_t *"), ffi.new("uint64_t *")
    bounds = []
    for b in range(len(ffi.new("tr_stats_t *").timer_late_hist)):
        lib.tr_late_bucket_bounds(b, lo, hi)
        bounds.append(float(hi[0]))
    return bounds


#: Upper bound (µs) of each lateness histogram bucket.
LATE_UPPER_US = _late_bucket_upper_bounds()


def late_quantile(hist: list[int], q: float, late_max_us: float) -> float:
    """Upper bound of the ``q`` quantile of a lateness histogram (0.0 if empty)."""
    total = sum(hist)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for count, upper in zip(hist, LATE_UPPER_US):
        seen += count
        if seen >= rank:
            return min(upper, late_max_us)  # never above the exact maximum
    return late_max_us  # pragma: no cover - the loop always reaches the rank


def native_stats(rt_ptr: Any) -> dict[str, Any]:
    """The counters of the runtime ``rt_ptr``; ``running`` as the C side says."""
    s = ffi.new("tr_stats_t *")
    lib.tr_runtime_stats(rt_ptr, s)
    hist = list(s.timer_late_hist)
    late_max = s.timer_late_max_ns / 1000.0
    return {
        "pending": s.pending,
        "submitted": s.submitted,
        "completed": s.completed,
        "cancelled": s.cancelled,
        "live_ops": s.live_ops,
        "waiters": s.waiters,
        "ports": s.ports,
        "promises": s.promises,
        "native_queued": s.native_queued,
        "native_running": s.native_running,
        "worker_threads": s.worker_threads,
        "running": bool(s.running),
        "timers_fired": s.timers_fired,
        "timer_late_p50_us": late_quantile(hist, 0.50, late_max),
        "timer_late_p99_us": late_quantile(hist, 0.99, late_max),
        "timer_late_max_us": late_max,
    }
