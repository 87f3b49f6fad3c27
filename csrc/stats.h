/*
 * stats.h - the runtime's counters and its timer-lateness histogram
 * (layer L1).
 *
 * Plain atomics: any thread adds and reads them without a lock; a snapshot
 * may be a few operations apart from one counter to the next.  The timer
 * fields are written by the loop thread only.  The struct is embedded in the
 * runtime; ports, ops and waiters point at it (the runtime's memory outlives
 * them all, see dispatch.h).  The public tr_late_bucket_bounds() is defined
 * in stats.c.
 */
#ifndef TR_STATS_H
#define TR_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "tokio_runtime.h"

/* Buckets of tr_stats_t.timer_late_hist (the public struct spells out 96). */
#define TR_LATE_BUCKETS 96

typedef struct tr__stats {
    atomic_uint_fast64_t pending, submitted, completed, cancelled, live_ops, ports, waiters;
    /* promises allocated and not freed; native jobs queued / running */
    atomic_uint_fast64_t promises, native_queued, native_running;
    /* written by the loop thread, read by tr__stats_snapshot() */
    atomic_uint_fast64_t timers_fired, timer_late_max_ns, timer_late_hist[TR_LATE_BUCKETS];
} tr__stats_t;

/* Count a timer that fired late_seconds after it was due.  Loop thread. */
void tr__stats_timer_fired(tr__stats_t *s, double late_seconds);
/* Copy the counters into out (every field but worker_threads and running,
 * which are the runtime's).  Any thread. */
void tr__stats_snapshot(tr__stats_t *s, tr_stats_t *out);

#endif /* TR_STATS_H */
