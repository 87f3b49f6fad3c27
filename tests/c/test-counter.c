/*
 * test-counter.c - counter_demo: timers on the loop thread, increments on the
 * workers, and cancellation at each stage in between.
 */
#include "runtime.h" /* tr__pool_push, rt->pool */
#include "task.h"

#include <math.h>
#include <pthread.h>

static void run_counter(uint64_t tasks, double delay, int workers) {
    tr_runtime_t *rt = tt_runtime(workers);
    tr_port_t *port = tt_port(rt, 1);
    double t0 = tt_now();
    ASSERT_EQ(tr_counter_demo(rt, port, 1, tasks, delay), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 30.0);
    if (tasks) ASSERT_DBL_CMP(tt_now() - t0, >=, delay * 0.9);
    ASSERT_EQ(c.status, TR_OK);
    ASSERT_EQ(c.value, tasks);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.completed, 1);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(counter_zero) { run_counter(0, 0.01, 1); }

TEST_IMPL(counter_small) { run_counter(10, 0.01, 2); }

TEST_IMPL(counter_large) { run_counter(tt_scaled(100000), 0.0, 4); }

TEST_IMPL(counter_invalid) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_counter_demo(rt, port, 1, 10, NAN), TR_EINVAL);
    ASSERT_EQ(tr_counter_demo(rt, port, 1, 10, -0.01), TR_EINVAL);
    ASSERT_EQ(tr_counter_demo(rt, port, 0, 10, 0.0), TR_EINVAL);
    int rc = tr_counter_demo(rt, port, 1, UINT64_MAX, 0.0); /* cannot be allocated */
    ASSERT(rc == TR_ENOMEM || rc == TR_EINVAL);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.submitted, 0);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(counter_cancel_after_submit) {
    /* Every timer is still armed when the cancel comes: nothing was added. */
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *port = tt_port(rt, 1);
    uint64_t tasks = tt_scaled(100000);
    ASSERT_EQ(tr_counter_demo(rt, port, 1, tasks, 30.0), TR_OK);
    ASSERT_EQ(tr_cancel(rt, 1), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 10.0);
    ASSERT_EQ(c.status, TR_CANCELLED);
    ASSERT_EQ(c.value, 0);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.cancelled, 1);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* A work item that holds the (single) worker until opened, so increments
 * can be caught "handed to a worker, not yet run". */
typedef struct gate {
    tr__work_t work;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, open;
} gate;

static void gate_run(tr__work_t *w) {
    gate *g = TR__CONTAINER_OF(w, gate, work);
    pthread_mutex_lock(&g->mu);
    g->entered = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_close(gate *g, tr_runtime_t *rt) {
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->entered = g->open = false;
    g->work.run = gate_run;
    g->work.solo = true; /* it holds its worker */
    tr__pool_push(&rt->pool, &g->work, &g->work);
    pthread_mutex_lock(&g->mu);
    while (!g->entered) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g) {
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_destroy(gate *g) {
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

TEST_IMPL(counter_cancel_mid_flight) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    uint64_t tasks = tt_scaled(20000);
    gate g;
    gate_close(&g, rt); /* the one worker is now stuck */

    ASSERT_EQ(tr_counter_demo(rt, port, 1, tasks, 0.0), TR_OK);
    /* Ops start in submission order, so a sleep of 0 submitted after the
     * counter fires no earlier than the counter's timers: once its record is
     * here, every increment sits queued for the stuck worker. */
    ASSERT_EQ(tr_sleep(rt, port, 2, 0.0), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 10.0);
    ASSERT_EQ(c.token, 2);
    ASSERT_EQ(tr_cancel(rt, 1), TR_OK);
    /* Same trick: this record means the cancel has been handled. */
    ASSERT_EQ(tr_sleep(rt, port, 3, 0.0), TR_OK);
    tt_wait_one(rt, port, &c, 10.0);
    ASSERT_EQ(c.token, 3);
    ASSERT_EQ(tt_stats(rt).pending, 1); /* the counter waits for its workers */

    gate_open(&g);
    tt_wait_one(rt, port, &c, 20.0);
    ASSERT_EQ(c.token, 1);
    ASSERT_EQ(c.status, TR_CANCELLED);
    ASSERT_EQ(c.value, 0); /* every queued increment was skipped */
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.cancelled, 1);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
    gate_destroy(&g);
}

TEST_IMPL(counter_cancel_storm) {
    /* Counters cancelled at every point of their lives: before start, with
     * timers armed, with increments queued or running.  Each ends exactly
     * once: TR_OK with the full count, or TR_CANCELLED with at most that. */
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *port = tt_port(rt, 1);
    size_t n = tt_scaled(300);
    const uint64_t tasks = 200;
    for (size_t i = 1; i <= n; i++) {
        ASSERT_EQ(tr_counter_demo(rt, port, i, tasks, (i % 4 == 0) ? 0.001 : 0.0), TR_OK);
        if (i % 3 == 0) ASSERT_EQ(tr_cancel(rt, i), TR_OK);
        if (i % 3 == 1 && i > 10) ASSERT_EQ(tr_cancel(rt, i - 10), TR_OK);
    }
    tt_ledger_t l;
    tt_ledger_init(&l, n);
    ASSERT_EQ(tt_wait_finals(rt, port, n, 30.0, tt_ledger_visit, &l), n);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(l.finals[i], 1);
        if (l.status[i] == TR_OK) {
            ASSERT_EQ(l.value[i], tasks);
        } else {
            ASSERT_EQ(l.status[i], TR_CANCELLED);
            ASSERT_LE(l.value[i], tasks);
        }
    }
    tt_ledger_free(&l);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.completed + s.cancelled, n);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}
