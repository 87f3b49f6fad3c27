/*
 * stats.c - counters and the lateness histogram (layer L1, see stats.h).
 */
#include "stats.h"

_Static_assert(sizeof ((tr_stats_t *)0)->timer_late_hist == TR_LATE_BUCKETS * sizeof(uint64_t),
               "tr_stats_t.timer_late_hist must have TR_LATE_BUCKETS entries");

/* Bucket of a lateness in microseconds: 0..3 exactly, then four buckets per
 * power of two: [2^e, 2^e + 2^(e-2)), ... , [2^e + 3*2^(e-2), 2^(e+1)). */
static int late_bucket(uint64_t us) {
    if (us < 4) return (int)us;
    int e = 2;
    while (e < 63 && (us >> (e + 1)) != 0) e++;
    int b = 4 + (e - 2) * 4 + (int)((us >> (e - 2)) & 3);
    return b < TR_LATE_BUCKETS ? b : TR_LATE_BUCKETS - 1;
}

int tr_late_bucket_bounds(int b, uint64_t *lo_us, uint64_t *hi_us) {
    if (b < 0 || b >= TR_LATE_BUCKETS || !lo_us || !hi_us) return TR_EINVAL;
    if (b < 4) {
        *lo_us = (uint64_t)b;
        *hi_us = (uint64_t)b + 1;
    } else {
        int e = 2 + (b - 4) / 4, sub = (b - 4) % 4;
        *lo_us = (UINT64_C(1) << e) + (uint64_t)sub * (UINT64_C(1) << (e - 2));
        *hi_us = *lo_us + (UINT64_C(1) << (e - 2));
    }
    if (b == TR_LATE_BUCKETS - 1) *hi_us = UINT64_MAX;
    return TR_OK;
}

void tr__stats_timer_fired(tr__stats_t *s, double late_seconds) {
    /* Clamped at 0: libev's clock may lag the wall clock by a rounding. */
    uint64_t ns = late_seconds > 0 ? (uint64_t)(late_seconds * 1e9) : 0;
    atomic_fetch_add_explicit(&s->timers_fired, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->timer_late_hist[late_bucket(ns / 1000)], 1, memory_order_relaxed);
    /* Only the loop thread writes it: a plain compare is enough. */
    if (ns > atomic_load_explicit(&s->timer_late_max_ns, memory_order_relaxed))
        atomic_store_explicit(&s->timer_late_max_ns, ns, memory_order_relaxed);
}

void tr__stats_snapshot(tr__stats_t *s, tr_stats_t *out) {
    out->pending = atomic_load(&s->pending);
    out->submitted = atomic_load(&s->submitted);
    out->completed = atomic_load(&s->completed);
    out->cancelled = atomic_load(&s->cancelled);
    out->live_ops = atomic_load(&s->live_ops);
    out->ports = atomic_load(&s->ports);
    out->waiters = atomic_load(&s->waiters);
    out->promises = atomic_load(&s->promises);
    out->native_queued = atomic_load(&s->native_queued);
    out->native_running = atomic_load(&s->native_running);
    out->timers_fired = atomic_load(&s->timers_fired);
    out->timer_late_max_ns = atomic_load(&s->timer_late_max_ns);
    for (int b = 0; b < TR_LATE_BUCKETS; b++)
        out->timer_late_hist[b] = atomic_load_explicit(&s->timer_late_hist[b], memory_order_relaxed);
}
