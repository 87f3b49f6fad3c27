/*
 * test-shutdown.c - shutting down with work of every kind in flight, while
 * other threads keep submitting, cancelling and dispatching; and shutting
 * down with a deadline while a worker is stuck.
 */
#include "task.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* One op of a kind chosen by i: long and short, timers and workers, with and
 * without a task handle. */
static int submit_kind(tr_runtime_t *rt, tr_port_t *port, uint64_t token, size_t i) {
    switch (i % 10) {
    case 0: return tr_sleep(rt, port, token, 30.0);
    case 1: return tr_sleep(rt, port, token, 0.0);
    case 2: return tr_ticker(rt, port, token, 1000, 0.001, NULL);
    case 3: return tr_ticker(rt, port, token, 5, 0.0, NULL);
    case 4: { /* the handle is let go at once: the op keeps its own reference */
        tr_task_t *task = NULL;
        int rc = tr_ticker(rt, port, token, 1 + i % 50, 0.0005, &task);
        if (rc == TR_OK) tr_task_release(task);
        return rc;
    }
    case 5: return tr_timeout_sleep(rt, port, token, 0.001, 30.0);
    case 6: return tr_timeout_sleep(rt, port, token, 30.0, 0.001);
    case 7: return tr_counter_demo(rt, port, token, 50, i % 20 == 7 ? 0.0 : 30.0);
    case 8: return tr_counter_demo(rt, port, token, 20, 0.0);
    default: return tr_counter_demo(rt, port, token, 20, 0.01);
    }
}

enum { SUBMITTERS = 4 };

typedef struct submitter {
    tr_runtime_t *rt;
    tr_port_t *port;
    uint64_t first_token; /* this thread's tokens: first_token + i */
    size_t per;
    bool *accepted;       /* by i */
    size_t naccepted;
    atomic_size_t *total_accepted;
    pthread_t tid;
} submitter;

static void *submit_until_shutdown(void *arg) {
    submitter *s = arg;
    for (size_t i = 0; i < s->per; i++) {
        uint64_t token = s->first_token + i;
        int rc = submit_kind(s->rt, s->port, token, i);
        if (rc == TR_ESHUTDOWN) {
            /* From now on every kind is refused, while the shutdown may
             * still be tearing the loop down. */
            for (size_t k = 0; k < 10; k++) ASSERT_EQ(submit_kind(s->rt, s->port, token, k), TR_ESHUTDOWN);
            break;
        }
        ASSERT_EQ(rc, TR_OK);
        s->accepted[i] = true;
        s->naccepted++;
        atomic_fetch_add(s->total_accepted, 1);
        /* Cancel some earlier ops on the way, as a consumer would. */
        if (i % 7 == 6) {
            rc = tr_cancel(s->rt, token - 3);
            ASSERT(rc == TR_OK || rc == TR_ESHUTDOWN);
        }
    }
    return NULL;
}

TEST_IMPL(shutdown_ops_in_flight) {
    tr_runtime_t *rt = tt_runtime(2);
    size_t per = tt_scaled(1500);
    atomic_size_t total_accepted = 0;
    submitter subs[SUBMITTERS];
    for (int k = 0; k < SUBMITTERS; k++) {
        subs[k] = (submitter){.rt = rt,
                              .port = tt_port(rt, (uint64_t)k + 1),
                              .first_token = (uint64_t)k * per + 1,
                              .per = per,
                              .accepted = calloc(per, sizeof(bool)),
                              .total_accepted = &total_accepted};
        ASSERT_NOT_NULL(subs[k].accepted);
    }
    for (int k = 0; k < SUBMITTERS; k++)
        ASSERT_EQ(pthread_create(&subs[k].tid, NULL, submit_until_shutdown, &subs[k]), 0);
    /* Shut down about half way through the submissions. */
    double deadline = tt_now() + 20.0;
    while (atomic_load(&total_accepted) < SUBMITTERS * per / 2 && tt_now() < deadline) sched_yield();
    tr_runtime_shutdown(rt);
    for (int k = 0; k < SUBMITTERS; k++) ASSERT_EQ(pthread_join(subs[k].tid, NULL), 0);

    /* Every accepted op has its final record queued by now. */
    tt_ledger_t l;
    tt_ledger_init(&l, SUBMITTERS * per);
    size_t accepted = 0;
    for (int k = 0; k < SUBMITTERS; k++) {
        ASSERT_EQ(tt_wait_finals(rt, subs[k].port, subs[k].naccepted, 10.0, tt_ledger_visit, &l),
                  subs[k].naccepted);
        tr_completion_t c;
        ASSERT_EQ(tt_drain(subs[k].port, &c, 1), 0);
        accepted += subs[k].naccepted;
    }
    ASSERT_EQ(l.stray, 0);
    for (int k = 0; k < SUBMITTERS; k++)
        for (size_t i = 0; i < per; i++) {
            size_t t = (size_t)(subs[k].first_token - 1) + i;
            if (!subs[k].accepted[i]) {
                ASSERT_EQ(l.finals[t], 0);
                continue;
            }
            ASSERT_EQ(l.finals[t], 1);
            int st = l.status[t];
            ASSERT(st == TR_OK || st == TR_CANCELLED || st == TR_TIMEDOUT);
        }
    tt_ledger_free(&l);

    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.running, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.submitted, accepted);
    ASSERT_EQ(s.completed + s.cancelled, accepted);
    ASSERT_EQ(s.live_ops, 0);
    ASSERT_GT(s.cancelled, 0);

    /* The dispatcher may still hold stale reports; then it sees the end. */
    uint64_t ids[8];
    int n, rounds = 0;
    while ((n = tr_runtime_wait_ready(rt, ids, 8, 1.0)) > 0) ASSERT_LT(++rounds, 10);
    ASSERT_EQ(n, -1);
    for (int k = 0; k < SUBMITTERS; k++) {
        free(subs[k].accepted);
        tr_port_release(subs[k].port);
    }
    tr_runtime_release(rt);
}

/* A dispatcher thread, as the Python side runs one: wait, drain whatever was
 * reported, until the runtime says it is over. */
typedef struct dispatcher {
    tr_runtime_t *rt;
    tr_port_t **ports;
    size_t nports;
    tt_ledger_t ledger;
} dispatcher;

static void *dispatch_main(void *arg) {
    dispatcher *d = arg;
    uint64_t ids[4];
    int n;
    while ((n = tr_runtime_wait_ready(d->rt, ids, 4, -1.0)) >= 0) {
        for (int i = 0; i < n; i++) {
            ASSERT(ids[i] >= 1 && ids[i] <= d->nports);
            tr_port_t *port = d->ports[ids[i] - 1];
            tr_completion_t c[8];
            size_t got;
            /* Until a drain finds it empty (which re-arms its edge): a
             * record that arrives while a batch is in flight is not
             * reported again, the next drain takes it. */
            while ((got = tt_drain(port, c, 8)) > 0)
                for (size_t j = 0; j < got; j++) tt_ledger_visit(&c[j], &d->ledger);
        }
    }
    return NULL;
}

TEST_IMPL(shutdown_dispatcher_sees_end) {
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *ports[2] = {tt_port(rt, 1), tt_port(rt, 2)};
    dispatcher d = {rt, ports, 2, {0}};
    size_t n = tt_scaled(1000);
    tt_ledger_init(&d.ledger, n);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, dispatch_main, &d), 0);
    for (size_t i = 0; i < n; i++) ASSERT_EQ(submit_kind(rt, ports[i % 2], i + 1, i / 2), TR_OK);
    tt_sleep(0.01);
    tr_runtime_shutdown(rt);
    ASSERT_EQ(pthread_join(t, NULL), 0); /* it saw -1 */
    /* ... and only after every record was delivered. */
    ASSERT_EQ(d.ledger.total_finals, n);
    for (size_t i = 0; i < n; i++) ASSERT_EQ(d.ledger.finals[i], 1);
    tt_ledger_free(&d.ledger);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(ports[0]);
    tr_port_release(ports[1]);
    tr_runtime_release(rt);
}

TEST_IMPL(shutdown_release_with_records) {
    /* Released with records nobody drained, on ports closed or not, released
     * before or after the runtime: the sanitizers and valgrind check that
     * all of it is freed in the end. */
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *ports[4];
    for (int p = 0; p < 4; p++) {
        ports[p] = tt_port(rt, (uint64_t)p + 1);
        for (size_t i = 0; i < 50; i++)
            ASSERT_EQ(submit_kind(rt, ports[p], (uint64_t)p * 100 + i + 1, i), TR_OK);
    }
    tt_sleep(0.02);
    tr_port_close(ports[0]);
    tr_port_release(ports[1]);
    tr_runtime_release(rt);
    tr_port_close(ports[2]);
    tr_port_release(ports[0]);
    tr_port_release(ports[2]);
    tr_port_release(ports[3]); /* the last one: frees the runtime */
}

/* ---- shutdown with a deadline ------------------------------------------------ */

/* Threads named `name` are gone (a joined thread may linger in /proc for a
 * moment, hence the polling). */
static bool threads_gone(const char *name, double timeout) {
    double deadline = tt_now() + timeout;
    while (tt_count_threads_named(name) != 0) {
        if (tt_now() > deadline) return false;
        tt_sleep(0.002);
    }
    return true;
}

TEST_IMPL(shutdown_timeout_stalled) {
    /* A worker busy in native code cannot be interrupted: the deadline
     * passes, the caller gets TR_TIMEDOUT at about the deadline (not when
     * the worker is done), and a later call finishes the job. */
    enum { OPS = 5 };
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    for (uint64_t i = 1; i <= OPS; i++) ASSERT_EQ(tr_sleep(rt, port, i, 30.0), TR_OK);
    double stall_at = tt_now();
    ASSERT_EQ(tr_debug_stall_worker(rt, 0.5), TR_OK);

    double t0 = tt_now();
    ASSERT_EQ(tr_runtime_shutdown_timeout(rt, 0.05), TR_TIMEDOUT);
    double took = tt_now() - t0;
    ASSERT_DBL_CMP(took, >=, 0.045);
    ASSERT_DBL_CMP(took, <, 0.4); /* well before the stall ends */

    /* Half-way: nothing new is accepted, the ops were cancelled by the loop
     * thread and their records are there, but the worker still runs. */
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.running, 0);
    ASSERT_EQ(tr_sleep(rt, port, 100, 0.0), TR_ESHUTDOWN);
    ASSERT_EQ(tr_debug_stall_worker(rt, 0.0), TR_ESHUTDOWN);
    ASSERT_EQ(tt_count_threads_named("tt-1"), 1);
    tt_ledger_t l;
    tt_ledger_init(&l, OPS);
    ASSERT_EQ(tt_wait_finals(rt, port, OPS, 5.0, tt_ledger_visit, &l), OPS);
    for (size_t i = 0; i < OPS; i++) ASSERT_EQ(l.status[i], TR_CANCELLED);
    tt_ledger_free(&l);
    uint64_t ids[4];
    ASSERT_NE(tr_runtime_wait_ready(rt, ids, 4, 0.0), -1); /* not over yet */

    /* Another short call while the worker is still stalled: the same.  (If
     * this machine was too slow to get here in time, it may be done.) */
    bool early = tt_now() - stall_at < 0.4;
    int rc = tr_runtime_shutdown_timeout(rt, 0.01);
    if (early) ASSERT_EQ(rc, TR_TIMEDOUT);
    else ASSERT(rc == TR_TIMEDOUT || rc == TR_OK);

    /* No deadline: waits for the worker, then finishes everything. */
    ASSERT_EQ(tr_runtime_shutdown_timeout(rt, -1.0), TR_OK);
    ASSERT_DBL_CMP(tt_now() - stall_at, >=, 0.45);
    s = tt_stats(rt);
    ASSERT_EQ(s.running, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.submitted, OPS);
    ASSERT_EQ(s.cancelled, OPS);
    ASSERT_EQ(s.completed, 0);
    ASSERT_EQ(s.live_ops, 0);
    ASSERT(threads_gone("tt-0", 2.0));
    ASSERT(threads_gone("tt-1", 2.0));
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 1.0), -1);
    /* Done is done: any later call returns TR_OK at once. */
    t0 = tt_now();
    ASSERT_EQ(tr_runtime_shutdown_timeout(rt, 0.0), TR_OK);
    ASSERT_EQ(tr_runtime_shutdown_timeout(rt, 10.0), TR_OK);
    ASSERT_DBL_CMP(tt_now() - t0, <, 1.0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(shutdown_timeout_idle) {
    /* Nothing stalls: TR_OK, well within the deadline, with every op
     * cancelled and every thread joined. */
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_sleep(rt, port, 1, 30.0), TR_OK);
    ASSERT_EQ(tr_ticker(rt, port, 2, 1000000, 0.001, NULL), TR_OK);
    ASSERT_EQ(tr_counter_demo(rt, port, 3, 100, 30.0), TR_OK);
    double t0 = tt_now();
    ASSERT_EQ(tr_runtime_shutdown_timeout(rt, 5.0), TR_OK);
    ASSERT_DBL_CMP(tt_now() - t0, <, 2.0);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.running, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.cancelled, 3);
    for (int i = 0; i <= 2; i++) {
        char name[16];
        snprintf(name, sizeof name, "tt-%d", i);
        ASSERT(threads_gone(name, 2.0));
    }
    tt_ledger_t l;
    tt_ledger_init(&l, 3);
    ASSERT_EQ(tt_wait_finals(rt, port, 3, 1.0, tt_ledger_visit, &l), 3);
    for (size_t i = 0; i < 3; i++) ASSERT_EQ(l.status[i], TR_CANCELLED);
    tt_ledger_free(&l);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    ASSERT_EQ(tr_runtime_shutdown_timeout(rt, 0.0), TR_OK);
    tr_runtime_shutdown(rt);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(shutdown_timeout_then_release) {
    /* The owner gives up waiting, then lets go: tr_runtime_release (which
     * waits without a deadline) finishes the job.  A zero timeout cannot
     * wait for the stalled worker. */
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_debug_stall_worker(rt, 0.2), TR_OK);
    ASSERT_EQ(tr_sleep(rt, port, 1, 30.0), TR_OK);
    ASSERT_EQ(tr_runtime_shutdown_timeout(rt, 0.0), TR_TIMEDOUT);
    /* Cancels and closes still go through meanwhile; the loop is gone, so
     * the last shutdown step runs them. */
    ASSERT_EQ(tr_cancel(rt, 1), TR_OK);
    tr_runtime_release(rt);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 1.0);
    ASSERT_EQ(c.token, 1);
    ASSERT_EQ(c.status, TR_CANCELLED);
    tr_port_close(port);
    tr_port_release(port); /* the last reference: frees the runtime */
}

TEST_IMPL(stall_worker) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_debug_stall_worker(rt, NAN), TR_EINVAL);
    ASSERT_EQ(tr_debug_stall_worker(rt, -0.1), TR_EINVAL);
    ASSERT_EQ(tr_debug_stall_worker(rt, INFINITY), TR_EINVAL);
    ASSERT_EQ(tr_debug_stall_worker(rt, 3601.0), TR_EINVAL);
    ASSERT_EQ(tr_debug_stall_worker(rt, 0.0), TR_OK);
    /* It holds the only worker, not the loop: a timer still fires at once,
     * while work that needs a worker waits for the stall to end. */
    double t0 = tt_now();
    ASSERT_EQ(tr_debug_stall_worker(rt, 0.2), TR_OK);
    ASSERT_EQ(tr_counter_demo(rt, port, 1, 1, 0.0), TR_OK);
    ASSERT_EQ(tr_sleep(rt, port, 2, 0.0), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.token, 2);
    ASSERT_DBL_CMP(tt_now() - t0, <, 0.15);
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.token, 1);
    ASSERT_EQ(c.status, TR_OK);
    ASSERT_EQ(c.value, 1);
    ASSERT_DBL_CMP(tt_now() - t0, >=, 0.19);
    ASSERT_EQ(tt_stats(rt).submitted, 2); /* a stall is not an op */
    tr_port_release(port);
    tr_runtime_release(rt);
}
