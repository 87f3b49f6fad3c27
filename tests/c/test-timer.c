/*
 * test-timer.c - sleep, ticker (and its task handle) and timeout ops.
 *
 * Timing checks are one-sided where the machine can only make things late:
 * "took at least the delay" is firm (less a little for clock granularity),
 * "took at most" only guards against a hang.
 */
#include "task.h"

#include "inbox.h" /* TR__DEFER_MAX */

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

TEST_IMPL(sleep_basic) {
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *port = tt_port(rt, 1);
    double t0 = tt_now();
    ASSERT_EQ(tr_sleep(rt, port, 7, 0.05), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    double took = tt_now() - t0;
    ASSERT_EQ(c.token, 7);
    ASSERT_EQ(c.status, TR_OK);
    ASSERT_EQ(c.final, 1);
    ASSERT_EQ(c.value, 0);
    ASSERT_DBL_CMP(took, >=, 0.045);
    ASSERT_DBL_CMP(took, <, 2.0);

    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.submitted, 1);
    ASSERT_EQ(s.completed, 1);
    ASSERT_EQ(s.cancelled, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.live_ops, 0); /* freed when its record was drained */
    tr_port_release(port);
    tr_runtime_release(rt);
}

static uint64_t hist_total(const tr_stats_t *s) {
    uint64_t n = 0;
    for (int b = 0; b < 96; b++) n += s->timer_late_hist[b];
    return n;
}

TEST_IMPL(sleep_lateness_stats) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.timers_fired, 0);
    ASSERT_EQ(hist_total(&s), 0);
    ASSERT_EQ(s.timer_late_max_ns, 0);
    enum { N = 50 };
    for (uint64_t t = 1; t <= N; t++)
        ASSERT_EQ(tr_sleep(rt, port, t, 0.001 * (double)(t % 5)), TR_OK);
    ASSERT_EQ(tr_sleep(rt, port, 100, 60.0), TR_OK); /* cancelled: never fires */
    ASSERT_EQ(tt_wait_finals(rt, port, N, 5.0, NULL, NULL), N);
    ASSERT_EQ(tr_cancel(rt, 100), TR_OK);
    ASSERT_EQ(tt_wait_finals(rt, port, 1, 5.0, NULL, NULL), 1);
    s = tt_stats(rt);
    ASSERT_EQ(s.timers_fired, N);
    ASSERT_EQ(hist_total(&s), N);
    /* Some lateness is normal (libev's epoll waits in whole milliseconds);
     * a second would mean the clocks were mixed up. */
    ASSERT(s.timer_late_max_ns < UINT64_C(1000000000));
    uint64_t lo, hi, max_us = s.timer_late_max_ns / 1000;
    int top = 95;
    while (top > 0 && s.timer_late_hist[top] == 0) top--;
    ASSERT_EQ(tr_late_bucket_bounds(top, &lo, &hi), TR_OK);
    ASSERT(lo <= max_us && max_us < hi); /* the max lies in the highest bucket used */
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(deferred_wake) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *quiet = tt_port(rt, 1), *loud = tt_port(rt, 2);
    ASSERT_EQ(tr_port_defer_wake(NULL, 1), TR_EINVAL);
    ASSERT_EQ(tr_port_defer_wake(quiet, 1), TR_OK);
    tr_runtime_kick(rt); /* nothing owed: nothing happens */
    tr_completion_t c;

    /* Submitted, counted, but not started until the kick. */
    ASSERT_EQ(tr_sleep(rt, quiet, 1, 0.0), TR_OK);
    ASSERT_EQ(tr_sleep(rt, quiet, 2, 0.0), TR_OK);
    ASSERT_EQ(tt_stats(rt).pending, 2);
    tt_expect_quiet(rt, quiet, 0.05);
    tr_runtime_kick(rt);
    ASSERT_EQ(tt_wait_finals(rt, quiet, 2, 5.0, NULL, NULL), 2);

    /* Anything that does wake the loop thread takes the deferred ops along:
     * an op on a port that does not defer, a cancel, a close. */
    ASSERT_EQ(tr_sleep(rt, quiet, 3, 0.0), TR_OK);
    ASSERT_EQ(tr_sleep(rt, loud, 4, 0.0), TR_OK);
    tt_wait_one(rt, quiet, &c, 5.0);
    ASSERT_EQ(c.token, 3);
    tt_wait_one(rt, loud, &c, 5.0);
    ASSERT_EQ(c.token, 4);

    ASSERT_EQ(tr_sleep(rt, quiet, 5, 60.0), TR_OK);
    ASSERT_EQ(tr_cancel(rt, 5), TR_OK);
    tt_wait_one(rt, quiet, &c, 5.0);
    ASSERT_EQ(c.status, TR_CANCELLED);

    /* A long burst does not wait for its kick: every TR__DEFER_MAX-th
     * deferred op wakes the loop thread, which takes the ops so far (and
     * any that join the inbox before it gets there). */
    for (uint64_t t = 1000; t < 1000 + TR__DEFER_MAX + 10; t++)
        ASSERT_EQ(tr_sleep(rt, quiet, t, 0.0), TR_OK);
    ASSERT_EQ(tt_wait_finals(rt, quiet, TR__DEFER_MAX, 5.0, NULL, NULL), TR__DEFER_MAX);
    tr_runtime_kick(rt);
    ASSERT_EQ(tt_wait_finals(rt, quiet, 10, 5.0, NULL, NULL), 10);

    /* Turned off again: every op wakes the loop thread itself. */
    ASSERT_EQ(tr_port_defer_wake(quiet, 0), TR_OK);
    ASSERT_EQ(tr_sleep(rt, quiet, 6, 0.0), TR_OK);
    tt_wait_one(rt, quiet, &c, 5.0);
    ASSERT_EQ(c.token, 6);

    /* Still owed at shutdown: cancelled and freed like any other op. */
    ASSERT_EQ(tr_port_defer_wake(quiet, 1), TR_OK);
    ASSERT_EQ(tr_sleep(rt, quiet, 7, 0.0), TR_OK);
    tr_runtime_shutdown(rt);
    tt_wait_one(rt, quiet, &c, 5.0);
    ASSERT_EQ(c.token, 7);
    ASSERT_EQ(c.status, TR_CANCELLED);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(quiet);
    tr_port_release(loud);
    tr_runtime_release(rt);
}

TEST_IMPL(deferred_wake_deadlines) {
    /* A deadline counts from the submission, not from the late start. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_port_defer_wake(port, 1), TR_OK);
    double t0 = tt_now();
    ASSERT_EQ(tr_sleep(rt, port, 1, 0.1), TR_OK);
    ASSERT_EQ(tr_timeout_sleep(rt, port, 2, 0.1, 0.2), TR_OK);  /* op wins */
    ASSERT_EQ(tr_timeout_sleep(rt, port, 3, 0.15, 0.12), TR_OK); /* limit wins */
    ASSERT_EQ(tr_sleep(rt, port, 4, 0.5), TR_OK);
    while (tt_now() - t0 < 0.3) tt_sleep(0.01);
    double kicked = tt_now();
    tr_runtime_kick(rt);
    tt_ledger_t l;
    tt_ledger_init(&l, 4);
    ASSERT_EQ(tt_wait_finals(rt, port, 3, 5.0, tt_ledger_visit, &l), 3);
    /* Overdue at the kick: they fire at once (generous bound for a busy
     * machine), with the outcome their deadlines decide. */
    ASSERT_DBL_CMP(tt_now() - kicked, <, 0.15);
    ASSERT_EQ(l.status[0], TR_OK);
    ASSERT_EQ(l.status[1], TR_OK);
    ASSERT_EQ(l.status[2], TR_TIMEDOUT);
    /* Not yet due at the kick: fires 0.5 s after its submission. */
    ASSERT_EQ(tt_wait_finals(rt, port, 1, 5.0, tt_ledger_visit, &l), 1);
    ASSERT_DBL_CMP(tt_now() - t0, >=, 0.49);
    ASSERT_EQ(l.status[3], TR_OK);
    tt_ledger_free(&l);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(burst_reported_once) {
    /* Timers that come due in one iteration of the loop thread get their
     * port reported once, after all of them, so a single drain gets every
     * record.  (Overdue when kicked: all start at 0 and fire together.) */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_port_defer_wake(port, 1), TR_OK);
    enum { N = TR__DEFER_MAX - 1 }; /* all in one batch: no early wake */
    for (uint64_t t = 1; t <= N; t++) ASSERT_EQ(tr_sleep(rt, port, t, 0.02), TR_OK);
    tt_sleep(0.1);
    tr_runtime_kick(rt);
    uint64_t ids[4];
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 5.0), 1);
    ASSERT_EQ(ids[0], 1);
    tr_completion_t *c = calloc(N + 1, sizeof *c);
    ASSERT_NOT_NULL(c);
    ASSERT_EQ(tt_drain(port, c, N + 1), N);
    for (size_t i = 0; i < N; i++) ASSERT_EQ(c[i].status, TR_OK);
    free(c);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(late_bucket_bounds) {
    uint64_t lo, hi, prev_hi = 0;
    for (int b = 0; b < 96; b++) {
        ASSERT_EQ(tr_late_bucket_bounds(b, &lo, &hi), TR_OK);
        ASSERT_EQ(lo, prev_hi); /* contiguous from 0 */
        ASSERT(hi > lo);
        if (b >= 4 && b < 95) ASSERT((hi - lo) * 4 <= lo); /* within 25 % */
        prev_hi = hi;
    }
    ASSERT(hi == UINT64_MAX);
    ASSERT_EQ(tr_late_bucket_bounds(-1, &lo, &hi), TR_EINVAL);
    ASSERT_EQ(tr_late_bucket_bounds(96, &lo, &hi), TR_EINVAL);
    ASSERT_EQ(tr_late_bucket_bounds(0, NULL, &hi), TR_EINVAL);
}

TEST_IMPL(sleep_zero) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    double t0 = tt_now();
    ASSERT_EQ(tr_sleep(rt, port, 1, 0.0), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.status, TR_OK);
    ASSERT_DBL_CMP(tt_now() - t0, <, 1.0);
    /* A finished op's token may be used again. */
    ASSERT_EQ(tr_sleep(rt, port, 1, 0.0), TR_OK);
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.token, 1);
    ASSERT_EQ(c.status, TR_OK);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(sleep_invalid) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_runtime_t *other = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_port_t *foreign = tt_port(other, 1);
    const double bad[] = {NAN, -1.0, -1e-9, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_EQ(tr_sleep(rt, port, 1, bad[i]), TR_EINVAL);
    ASSERT_EQ(tr_sleep(rt, port, 0, 0.0), TR_EINVAL);       /* token 0 */
    ASSERT_EQ(tr_sleep(rt, NULL, 1, 0.0), TR_EINVAL);       /* no port */
    ASSERT_EQ(tr_sleep(rt, foreign, 1, 0.0), TR_EINVAL);    /* another runtime's port */
    ASSERT_EQ(tr_ticker(rt, port, 1, 3, NAN, NULL), TR_EINVAL);
    ASSERT_EQ(tr_ticker(rt, port, 1, 3, -0.5, NULL), TR_EINVAL);
    ASSERT_EQ(tr_ticker(rt, port, 0, 3, 0.1, NULL), TR_EINVAL);
    ASSERT_EQ(tr_ticker(rt, port, 1, UINT64_MAX, 0.1, NULL), TR_EINVAL); /* count beyond int64 */

    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.submitted, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.live_ops, 0);
    tt_expect_quiet(rt, port, 0.05);
    /* The runtime is still fine after all that. */
    ASSERT_EQ(tr_sleep(rt, port, 1, 0.0), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.status, TR_OK);
    tr_port_release(foreign);
    tr_port_release(port);
    tr_runtime_release(other);
    tr_runtime_release(rt);
}

TEST_IMPL(sleep_cancel_before_fire) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    double t0 = tt_now();
    ASSERT_EQ(tr_sleep(rt, port, 1, 30.0), TR_OK);
    ASSERT_EQ(tr_cancel(rt, 1), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.token, 1);
    ASSERT_EQ(c.status, TR_CANCELLED);
    ASSERT_EQ(c.final, 1);
    ASSERT_DBL_CMP(tt_now() - t0, <, 2.0);
    ASSERT_EQ(tr_cancel(rt, 1), TR_OK); /* again: nothing left to cancel */
    tt_expect_quiet(rt, port, 0.05);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.cancelled, 1);
    ASSERT_EQ(s.completed, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(sleep_cancel_after_fire) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_sleep(rt, port, 1, 0.0), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.status, TR_OK);
    /* Finished already, or never existed: both do nothing. */
    ASSERT_EQ(tr_cancel(rt, 1), TR_OK);
    ASSERT_EQ(tr_cancel(rt, 999), TR_OK);
    ASSERT_EQ(tr_cancel(rt, 0), TR_OK);
    tt_expect_quiet(rt, port, 0.05);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.completed, 1);
    ASSERT_EQ(s.cancelled, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* Sleeps of 0 and ~0 submitted by one thread while another cancels them as
 * soon as they are accepted: each must end exactly once, either way. */
typedef struct race_ctx {
    tr_runtime_t *rt;
    size_t n;
    atomic_size_t accepted;
} race_ctx;

static void *cancel_as_accepted(void *arg) {
    race_ctx *rc = arg;
    for (size_t next = 1; next <= rc->n;) {
        if (next > atomic_load(&rc->accepted)) {
            sched_yield(); /* stay close behind the submitter */
            continue;
        }
        ASSERT_EQ(tr_cancel(rc->rt, next), TR_OK);
        next++;
    }
    return NULL;
}

TEST_IMPL(sleep_cancel_race) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    race_ctx rc = {rt, tt_scaled(3000), 0};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, cancel_as_accepted, &rc), 0);
    for (size_t i = 1; i <= rc.n; i++) {
        ASSERT_EQ(tr_sleep(rt, port, i, (double)(i % 3) * 0.0002), TR_OK);
        atomic_store(&rc.accepted, i);
    }
    ASSERT_EQ(pthread_join(t, NULL), 0);

    tt_ledger_t l;
    tt_ledger_init(&l, rc.n);
    ASSERT_EQ(tt_wait_finals(rt, port, rc.n, 20.0, tt_ledger_visit, &l), rc.n);
    size_t ok = 0, cancelled = 0;
    for (size_t i = 0; i < rc.n; i++) {
        ASSERT_EQ(l.finals[i], 1);
        ASSERT(l.status[i] == TR_OK || l.status[i] == TR_CANCELLED);
        if (l.status[i] == TR_OK) ok++;
        else cancelled++;
    }
    tt_ledger_free(&l);
    tt_expect_quiet(rt, port, 0.05);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.completed, ok);
    ASSERT_EQ(s.cancelled, cancelled);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(sleep_duplicate_token) {
    /* A token that is already pending cannot be checked at submission (the
     * table lives on the loop thread): the second op is accepted, then ends
     * at once with TR_EINVAL, and the first one is untouched. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_sleep(rt, port, 5, 0.05), TR_OK);
    ASSERT_EQ(tr_sleep(rt, port, 5, 0.0), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.token, 5);
    ASSERT_EQ(c.status, TR_EINVAL);
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.token, 5);
    ASSERT_EQ(c.status, TR_OK);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* Checks a ticker's records as they come: progress values only grow, the
 * final one comes last. */
typedef struct tick_seen {
    int64_t last_progress;
    size_t progress;
    bool final_seen;
    int32_t final_status;
    int64_t final_value;
} tick_seen;

static void tick_visit(tr_completion_t *c, void *ctx) {
    tick_seen *ts = ctx;
    ASSERT(!ts->final_seen); /* nothing after the final record */
    ASSERT_EQ(c->token, 1);
    if (c->final) {
        ts->final_seen = true;
        ts->final_status = c->status;
        ts->final_value = c->value;
        ASSERT_GE(c->value, ts->last_progress);
        return;
    }
    ASSERT_EQ(c->status, TR_OK);
    ASSERT_GT(c->value, ts->last_progress);
    ts->last_progress = c->value;
    ts->progress++;
}

static void run_ticker(uint64_t count, double interval, double min_took) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tick_seen ts = {0};
    double t0 = tt_now();
    ASSERT_EQ(tr_ticker(rt, port, 1, count, interval, NULL), TR_OK);
    ASSERT_EQ(tt_wait_finals(rt, port, 1, 10.0, tick_visit, &ts), 1);
    ASSERT_DBL_CMP(tt_now() - t0, >=, min_took);
    ASSERT_EQ(ts.final_status, TR_OK);
    ASSERT_EQ(ts.final_value, count);
    if (count) ASSERT_LT(ts.last_progress, count);
    ASSERT_LE(ts.progress, count ? count - 1 : 0); /* coalesced: never more than the ticks */
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(ticker_progress) { run_ticker(20, 0.002, 20 * 0.002 * 0.9); }

TEST_IMPL(ticker_zero_interval) { run_ticker(tt_scaled(2000), 0.0, 0.0); }

TEST_IMPL(ticker_count_zero) { run_ticker(0, 0.01, 0.0); }

TEST_IMPL(ticker_cancel) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tick_seen ts = {0};
    ASSERT_EQ(tr_ticker(rt, port, 1, 1000000, 0.001, NULL), TR_OK);
    /* Let a few ticks through first. */
    double deadline = tt_now() + 5.0;
    while (ts.progress < 3 && tt_now() < deadline)
        ASSERT_EQ(tt_wait_finals(rt, port, 1, 0.01, tick_visit, &ts), 0);
    ASSERT_GE(ts.progress, 3);
    ASSERT_EQ(tr_cancel(rt, 1), TR_OK);
    ASSERT_EQ(tt_wait_finals(rt, port, 1, 5.0, tick_visit, &ts), 1);
    ASSERT_EQ(ts.final_status, TR_CANCELLED);
    ASSERT_GE(ts.final_value, ts.last_progress); /* ticks so far */
    ASSERT_LT(ts.final_value, 1000000);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* ---- the ticker's task handle -----------------------------------------------
 * What a busy consumer (or any other thread) reads instead of draining the
 * port: ticks so far and the final status, lock-free. */

static void wait_task_progress(const tr_task_t *task, uint64_t at_least, double timeout) {
    double deadline = tt_now() + timeout;
    while (tr_task_progress(task) < at_least) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        tt_sleep(0.001);
    }
}

/* The final status, once the handle leaves TR_PENDING. */
static int wait_task_done(const tr_task_t *task, double timeout) {
    double deadline = tt_now() + timeout;
    int st;
    while ((st = tr_task_status(task)) == TR_PENDING) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        tt_sleep(0.001);
    }
    return st;
}

TEST_IMPL(ticker_task_progress) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_task_t *task = NULL;
    ASSERT_EQ(tr_ticker(rt, port, 1, 1000000, 0.001, &task), TR_OK);
    ASSERT_NOT_NULL(task);
    /* Nobody drains the port, yet the handle keeps counting. */
    wait_task_progress(task, 3, 5.0);
    uint64_t p1 = tr_task_progress(task);
    wait_task_progress(task, p1 + 3, 5.0);
    ASSERT_EQ(tr_task_status(task), TR_PENDING);
    /* Meanwhile the port holds one coalesced progress record, not one per
     * tick, and it is never ahead of the handle. */
    tr_completion_t c[4];
    ASSERT_EQ(tt_drain(port, c, 4), 1);
    ASSERT_EQ(c[0].final, 0);
    ASSERT_GE(c[0].value, 1);
    ASSERT_LE(c[0].value, tr_task_progress(task));

    ASSERT_EQ(tr_cancel(rt, 1), TR_OK);
    ASSERT_EQ(wait_task_done(task, 5.0), TR_CANCELLED);
    /* The handle said "finished" just before the final record was queued:
     * the record follows. */
    tick_seen ts = {.last_progress = c[0].value};
    ASSERT_EQ(tt_wait_finals(rt, port, 1, 5.0, tick_visit, &ts), 1);
    ASSERT_EQ(ts.final_status, TR_CANCELLED);
    ASSERT_EQ(ts.final_value, tr_task_progress(task));
    ASSERT_LT(tr_task_progress(task), 1000000);
    uint64_t last = tr_task_progress(task);
    tt_sleep(0.01);
    ASSERT_EQ(tr_task_progress(task), last); /* stopped for good */
    ASSERT_EQ(tr_task_status(task), TR_CANCELLED);
    tr_task_release(task);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(ticker_task_finish) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_task_t *task = NULL;
    /* 40 ticks of 5 ms: still running when looked at right away. */
    ASSERT_EQ(tr_ticker(rt, port, 1, 40, 0.005, &task), TR_OK);
    ASSERT_EQ(tr_task_status(task), TR_PENDING);
    ASSERT_LT(tr_task_progress(task), 40);
    /* Whoever drains the final record finds the handle finished already (the
     * status is stored before the record is queued). */
    tick_seen ts = {0};
    ASSERT_EQ(tt_wait_finals(rt, port, 1, 10.0, tick_visit, &ts), 1);
    ASSERT_EQ(tr_task_status(task), TR_OK);
    ASSERT_EQ(tr_task_progress(task), 40);
    ASSERT_EQ(ts.final_status, TR_OK);
    ASSERT_EQ(ts.final_value, 40);
    tr_task_release(task);

    /* No ticks at all: done at once, with nothing counted. */
    ASSERT_EQ(tr_ticker(rt, port, 1, 0, 0.01, &task), TR_OK);
    ASSERT_EQ(wait_task_done(task, 5.0), TR_OK);
    ASSERT_EQ(tr_task_progress(task), 0);
    ts = (tick_seen){0};
    ASSERT_EQ(tt_wait_finals(rt, port, 1, 5.0, tick_visit, &ts), 1); /* it follows */
    ASSERT_EQ(ts.final_value, 0);
    tr_task_release(task);

    /* A refused ticker leaves *task alone and allocates nothing. */
    tr_task_t *marker = (tr_task_t *)(void *)&ts;
    task = marker;
    ASSERT_EQ(tr_ticker(rt, port, 1, 3, NAN, &task), TR_EINVAL);
    ASSERT_EQ(tr_ticker(rt, port, 0, 3, 0.1, &task), TR_EINVAL);
    ASSERT_EQ(tr_ticker(rt, NULL, 1, 3, 0.1, &task), TR_EINVAL);
    ASSERT_EQ(tr_ticker(rt, port, 1, UINT64_MAX, 0.1, &task), TR_EINVAL);
    ASSERT(task == marker);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(ticker_task_outlives_runtime) {
    /* The handle is shared by the op and its holder: whichever lets go last
     * frees it.  Here the runtime and the port go first, then a handle is
     * let go before its op ends; the sanitizers and valgrind check both. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_task_t *kept = NULL, *dropped = NULL;
    ASSERT_EQ(tr_ticker(rt, port, 1, 1000000, 0.001, &kept), TR_OK);
    ASSERT_EQ(tr_ticker(rt, port, 2, 1000000, 0.001, &dropped), TR_OK);
    tr_task_release(dropped); /* the op runs on with its own reference */
    wait_task_progress(kept, 2, 5.0);
    tr_runtime_release(rt);
    /* The shutdown cancelled it and joined the loop thread: settled now. */
    ASSERT_EQ(tr_task_status(kept), TR_CANCELLED);
    uint64_t ticks = tr_task_progress(kept);
    ASSERT_GE(ticks, 2);
    ASSERT_LT(ticks, 1000000);
    tr_port_release(port); /* frees the runtime and the queued records */
    ASSERT_EQ(tr_task_status(kept), TR_CANCELLED);
    ASSERT_EQ(tr_task_progress(kept), ticks);
    tr_task_release(kept);
}

TEST_IMPL(timeout_tie_rule) {
    static const struct {
        double op, limit;
        int status;
        double min_took;
    } cases[] = {
        {0.02, 0.5, TR_OK, 0.015},      /* op first */
        {0.5, 0.02, TR_TIMEDOUT, 0.015}, /* timeout first */
        {0.03, 0.03, TR_OK, 0.025},     /* a tie: the op wins */
        {0.0, 0.0, TR_OK, 0.0},
        {0.01, 0.0, TR_TIMEDOUT, 0.0},
        {0.0, 0.01, TR_OK, 0.0},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    for (size_t i = 0; i < N; i++) {
        double t0 = tt_now();
        ASSERT_EQ(tr_timeout_sleep(rt, port, i + 1, cases[i].op, cases[i].limit), TR_OK);
        tr_completion_t c;
        tt_wait_one(rt, port, &c, 5.0);
        double took = tt_now() - t0;
        ASSERT_EQ(c.token, i + 1);
        ASSERT_EQ(c.status, cases[i].status);
        ASSERT_DBL_CMP(took, >=, cases[i].min_took);
        ASSERT_DBL_CMP(took, <, 2.0);
    }
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(timeout_ties_many) {
    /* Many at once, so that both timers of an op often come due in the same
     * loop iteration: ties must still go to the op, and a limit that is
     * earlier by a hair must still win. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    size_t n = tt_scaled(1500);
    for (size_t i = 0; i < n; i++) {
        double base = (double)(i % 3) * 0.001;
        double op = base, limit = base;
        if (i % 5 == 3) op += 1e-4;    /* limit earlier: times out */
        if (i % 5 == 4) limit += 1e-4; /* op earlier: completes */
        ASSERT_EQ(tr_timeout_sleep(rt, port, i + 1, op, limit), TR_OK);
    }
    tt_ledger_t l;
    tt_ledger_init(&l, n);
    ASSERT_EQ(tt_wait_finals(rt, port, n, 20.0, tt_ledger_visit, &l), n);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(l.finals[i], 1);
        ASSERT_EQ(l.status[i], i % 5 == 3 ? TR_TIMEDOUT : TR_OK);
    }
    tt_ledger_free(&l);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(timeout_invalid_and_cancel) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_timeout_sleep(rt, port, 1, NAN, 1.0), TR_EINVAL);
    ASSERT_EQ(tr_timeout_sleep(rt, port, 1, 1.0, -1.0), TR_EINVAL);
    ASSERT_EQ(tr_timeout_sleep(rt, port, 1, INFINITY, 1.0), TR_EINVAL);
    ASSERT_EQ(tr_timeout_sleep(rt, port, 0, 1.0, 1.0), TR_EINVAL);
    ASSERT_EQ(tt_stats(rt).submitted, 0);

    ASSERT_EQ(tr_timeout_sleep(rt, port, 1, 30.0, 30.0), TR_OK);
    ASSERT_EQ(tr_cancel(rt, 1), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.status, TR_CANCELLED);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}
