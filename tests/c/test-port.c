/*
 * test-port.c - completion ports: close, release, many ports behind one
 * dispatcher, and the empty -> non-empty edge.
 */
#include "task.h"

#include <stdlib.h>

TEST_IMPL(port_new_invalid) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = NULL;
    ASSERT_EQ(tr_port_new(NULL, 1, &port), TR_EINVAL);
    ASSERT_EQ(tr_port_new(rt, 1, NULL), TR_EINVAL);
    ASSERT_NULL(port);
    ASSERT_EQ(tt_stats(rt).ports, 0);
    tr_port_release(NULL);
    tr_runtime_release(rt);
}

TEST_IMPL(port_close_drops_records) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    for (uint64_t i = 1; i <= 10; i++) ASSERT_EQ(tr_sleep(rt, port, i, 0.0), TR_OK);
    /* A ticker leaves a progress record queued next to its final one; the
     * progress record belongs to the op, not to the queue. */
    ASSERT_EQ(tr_ticker(rt, port, 11, 5, 0.0, NULL), TR_OK);
    ASSERT(tt_wait_idle(rt, 5.0));
    ASSERT_EQ(tt_stats(rt).live_ops, 11); /* records queued: the ops live in them */
    tr_port_close(port);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_completion_t c;
    ASSERT_EQ(tt_drain(port, &c, 1), 0);
    tr_port_close(port); /* idempotent */
    /* A later op is cancelled as it starts, its record dropped. */
    ASSERT_EQ(tr_sleep(rt, port, 12, 0.0), TR_OK);
    ASSERT(tt_wait_idle(rt, 5.0));
    ASSERT_EQ(tt_drain(port, &c, 1), 0);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.completed, 11);
    ASSERT_EQ(s.cancelled, 1);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(port_close_cancels_ops) {
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *port = tt_port(rt, 1);
    tr_port_t *other = tt_port(rt, 2);
    tr_task_t *task = NULL;
    uint64_t n = 0;
    for (int i = 0; i < 100; i++) ASSERT_EQ(tr_sleep(rt, port, ++n, 30.0), TR_OK);
    ASSERT_EQ(tr_ticker(rt, port, ++n, 1000, 0.01, &task), TR_OK);
    /* A busy ticker keeps re-queuing its progress record while the close
     * drops the queue. */
    ASSERT_EQ(tr_ticker(rt, port, ++n, 100000000, 0.0, NULL), TR_OK);
    ASSERT_EQ(tr_timeout_sleep(rt, port, ++n, 30.0, 30.0), TR_OK);
    ASSERT_EQ(tr_counter_demo(rt, port, ++n, 1000, 30.0), TR_OK);
    /* An op on another port is not affected. */
    ASSERT_EQ(tr_sleep(rt, other, 1000, 30.0), TR_OK);
    tr_port_close(port);
    double deadline = tt_now() + 5.0;
    while (tt_stats(rt).pending != 1 && tt_now() < deadline) tt_sleep(0.001);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.pending, 1);
    ASSERT_EQ(s.cancelled, n);
    /* The handle learns it too, though its record was dropped. */
    ASSERT_EQ(tr_task_status(task), TR_CANCELLED);
    ASSERT_LT(tr_task_progress(task), 1000);
    tr_task_release(task);
    tr_completion_t c;
    ASSERT_EQ(tt_drain(port, &c, 1), 0);
    ASSERT_EQ(tt_drain(other, &c, 1), 0);
    ASSERT_EQ(tr_cancel(rt, 1000), TR_OK);
    tt_wait_one(rt, other, &c, 5.0);
    ASSERT_EQ(c.token, 1000);
    ASSERT_EQ(c.status, TR_CANCELLED);
    s = tt_stats(rt);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(other);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(port_close_then_submit) {
    /* An op bound to a port that is already closed has nobody to report to:
     * it is cancelled as it starts, not left running. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_port_close(port);
    ASSERT_EQ(tr_sleep(rt, port, 1, 30.0), TR_OK);
    ASSERT_EQ(tr_counter_demo(rt, port, 2, 100, 30.0), TR_OK);
    ASSERT(tt_wait_idle(rt, 5.0));
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.cancelled, 2);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(port_close_ticker_race) {
    /* Close ports while busy tickers keep updating their progress records:
     * the record may be queued, being dropped, or pushed again right then.
     * (ThreadSanitizer caught tr_port_close following such a record's link
     * after unlocking, while the loop thread re-queued it.) */
    tr_runtime_t *rt = tt_runtime(1);
    size_t n = tt_scaled(600);
    for (size_t i = 1; i <= n; i++) {
        tr_port_t *port = tt_port(rt, i);
        ASSERT_EQ(tr_ticker(rt, port, i, 1000000, 0.0, NULL), TR_OK);
        ASSERT_EQ(tr_sleep(rt, port, n + i, 0.0), TR_OK);
        if (i % 2) { /* sometimes after a few records came in */
            tr_completion_t c;
            tt_wait_one(rt, port, &c, 5.0);
            ASSERT_EQ(c.token, n + i);
        }
        tr_port_close(port);
        tr_port_release(port);
    }
    ASSERT(tt_wait_idle(rt, 10.0));
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.submitted, 2 * n);
    ASSERT_GE(s.cancelled, n); /* every ticker; some sleeps too */
    ASSERT_EQ(s.completed + s.cancelled, 2 * n);
    ASSERT_EQ(s.live_ops, 0);
    ASSERT_EQ(s.ports, 0);
    tr_runtime_release(rt);
}

TEST_IMPL(port_release_with_records) {
    /* Records nobody drained go with the port. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_counter_demo(rt, port, 1, 3, 0.0), TR_OK);
    ASSERT_EQ(tr_sleep(rt, port, 2, 0.0), TR_OK);
    ASSERT_EQ(tr_ticker(rt, port, 3, 5, 0.0, NULL), TR_OK);
    ASSERT(tt_wait_idle(rt, 5.0));
    tr_port_release(port);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.live_ops, 0);
    ASSERT_EQ(s.ports, 0);
    tr_runtime_release(rt);
}

TEST_IMPL(port_release_ops_in_flight) {
    /* Released (not closed) with ops running: they keep the port alive, end
     * normally, and their records are dropped with its last reference. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_sleep(rt, port, 1, 0.02), TR_OK);
    ASSERT_EQ(tr_ticker(rt, port, 2, 5, 0.001, NULL), TR_OK);
    ASSERT_EQ(tr_counter_demo(rt, port, 3, 100, 0.01), TR_OK);
    ASSERT_EQ(tr_sleep(rt, port, 4, 30.0), TR_OK);
    tr_port_release(port);
    ASSERT_EQ(tt_stats(rt).ports, 1); /* the ops hold it */
    ASSERT_EQ(tr_cancel(rt, 4), TR_OK);
    ASSERT(tt_wait_idle(rt, 5.0));
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.completed, 3);
    ASSERT_EQ(s.cancelled, 1);
    ASSERT_EQ(s.live_ops, 0);
    ASSERT_EQ(s.ports, 0);
    tr_runtime_release(rt);
}

TEST_IMPL(port_many) {
    /* One dispatcher, many ports: every id it reports belongs to a port with
     * records, and every op's record reaches its own port. */
    enum { PER_PORT = 10 };
    size_t nports = tt_scaled(64);
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t **ports = calloc(nports, sizeof *ports);
    size_t *finals = calloc(nports, sizeof *finals);
    ASSERT(ports && finals);
    for (size_t p = 0; p < nports; p++) ports[p] = tt_port(rt, p + 1);
    for (int k = 0; k < PER_PORT; k++)
        for (size_t p = 0; p < nports; p++) {
            uint64_t token = (p + 1) * 1000 + (uint64_t)k;
            ASSERT_EQ(tr_sleep(rt, ports[p], token, (double)((p + (size_t)k) % 5) * 0.001), TR_OK);
        }
    size_t total = 0;
    double deadline = tt_now() + 20.0;
    while (total < nports * PER_PORT) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        uint64_t ids[8]; /* fewer than the ports: the rest wait their turn */
        int n = tr_runtime_wait_ready(rt, ids, 8, 0.5);
        ASSERT_GE(n, 0);
        for (int i = 0; i < n; i++) {
            ASSERT(ids[i] >= 1 && ids[i] <= nports);
            size_t p = (size_t)ids[i] - 1;
            tr_completion_t c[4];
            size_t got;
            /* Drain it until a drain finds it empty, which re-arms its
             * edge: a record that arrives while a batch is in flight is
             * not reported again, the next drain takes it. */
            while ((got = tt_drain(ports[p], c, 4)) > 0) {
                for (size_t j = 0; j < got; j++) {
                    ASSERT_EQ(c[j].token / 1000, p + 1);
                    ASSERT_EQ(c[j].status, TR_OK);
                    finals[p]++;
                    total++;
                }
            }
        }
    }
    for (size_t p = 0; p < nports; p++) {
        ASSERT_EQ(finals[p], PER_PORT);
        tr_port_release(ports[p]);
    }
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    free(finals);
    free(ports);
    tr_runtime_release(rt);
}

/* Wait for the dispatcher to report `id`; an early 0 (a wake) is skipped. */
static void expect_reported(tr_runtime_t *rt, uint64_t id) {
    double deadline = tt_now() + 5.0;
    for (;;) {
        uint64_t ids[4];
        int n = tr_runtime_wait_ready(rt, ids, 4, 0.1);
        if (n > 0) {
            ASSERT_EQ(n, 1);
            ASSERT_EQ(ids[0], id);
            return;
        }
        ASSERT_EQ(n, 0);
        ASSERT_DBL_CMP(tt_now(), <, deadline);
    }
}

/* Not reported: two waits, in case the first returns early for a wake. */
static void expect_not_reported(tr_runtime_t *rt) {
    uint64_t ids[4];
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 0.03), 0);
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 0.03), 0);
}

TEST_IMPL(port_drain_cap1) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 42);
    for (uint64_t t = 1; t <= 5; t++) ASSERT_EQ(tr_sleep(rt, port, t, 0.0), TR_OK);
    ASSERT(tt_wait_idle(rt, 5.0));
    expect_reported(rt, 42); /* five records, one edge */

    bool seen[6] = {false};
    tr_completion_t c;
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(tt_drain(port, &c, 1), 1);
        ASSERT(c.token >= 1 && c.token <= 5 && !seen[c.token]);
        seen[c.token] = true;
    }
    /* Not empty yet: no new report, even when another record comes. */
    expect_not_reported(rt);
    ASSERT_EQ(tr_sleep(rt, port, 6, 0.0), TR_OK);
    ASSERT(tt_wait_idle(rt, 5.0));
    expect_not_reported(rt);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(tt_drain(port, &c, 1), 1);
        ASSERT(c.token >= 1 && c.token <= 5 && !seen[c.token]);
        seen[c.token] = true;
    }
    ASSERT_EQ(tt_drain(port, &c, 1), 1);
    ASSERT_EQ(c.token, 6);
    ASSERT_EQ(tt_drain(port, &c, 1), 0); /* empty: re-armed */
    expect_not_reported(rt);

    ASSERT_EQ(tr_sleep(rt, port, 7, 0.0), TR_OK);
    expect_reported(rt, 42); /* a new edge */
    ASSERT_EQ(tt_drain(port, &c, 0), 0); /* cap 0 takes nothing */
    ASSERT_EQ(tt_drain(port, &c, 1), 1);
    ASSERT_EQ(c.token, 7);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* ---- two-phase drain, tr_port_stalled ---------------------------------------- */

/* Queue one finished sleep record per token, in token order. */
static void queue_sleeps(tr_runtime_t *rt, tr_port_t *port, uint64_t first, uint64_t last) {
    for (uint64_t t = first; t <= last; t++) {
        ASSERT_EQ(tr_sleep(rt, port, t, 0.0), TR_OK);
        ASSERT(tt_wait_idle(rt, 5.0));
    }
}

TEST_IMPL(port_drain_two_phase) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 5);
    tr_completion_t c[8];
    queue_sleeps(rt, port, 1, 3);
    expect_reported(rt, 5);
    ASSERT_EQ(tt_stats(rt).live_ops, 3);

    /* Copied, not removed: without an ack the same records come again. */
    ASSERT_EQ(tr_port_drain(port, c, 2, 0), 2);
    ASSERT_EQ(c[0].token, 1);
    ASSERT_EQ(c[1].token, 2);
    ASSERT_EQ(tr_port_drain(port, c, 2, 0), 2);
    ASSERT_EQ(c[0].token, 1);
    ASSERT_EQ(c[1].token, 2);
    ASSERT_EQ(tt_stats(rt).live_ops, 3); /* nothing released yet */
    /* Acknowledge one of the two: it goes, the other is copied again. */
    ASSERT_EQ(tr_port_drain(port, c, 8, 1), 2);
    ASSERT_EQ(c[0].token, 2);
    ASSERT_EQ(c[1].token, 3);
    ASSERT_EQ(tt_stats(rt).live_ops, 2);
    /* Still not empty: a new record does not report the port again. */
    queue_sleeps(rt, port, 4, 4);
    expect_not_reported(rt);
    /* An ack beyond what was copied counts only what was copied. */
    ASSERT_EQ(tr_port_drain(port, c, 8, 100), 1);
    ASSERT_EQ(c[0].token, 4);
    ASSERT_EQ(tr_port_drain(port, c, 8, 1), 0);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    /* Empty after the ack: re-armed, the next record is a new edge. */
    queue_sleeps(rt, port, 5, 5);
    expect_reported(rt, 5);
    /* A fresh start (ack 0) after an empty drain acknowledges nothing. */
    ASSERT_EQ(tr_port_drain(port, c, 8, 0), 1);
    ASSERT_EQ(tr_port_drain(port, c, 0, 1), 0); /* cap 0: ack only */
    ASSERT_EQ(tr_port_drain(port, c, 8, 1), 0); /* nothing in flight now */
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(port_close_keeps_in_flight) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 6);
    tr_completion_t c[8];
    queue_sleeps(rt, port, 1, 4);
    ASSERT_EQ(tr_port_drain(port, c, 2, 0), 2); /* 1 and 2 in flight */
    tr_port_close(port);
    /* 3 and 4 were never copied: dropped; 1 and 2 stay queued. */
    ASSERT_EQ(tt_stats(rt).live_ops, 2);
    tr_port_close(port); /* idempotent, keeps them still */
    ASSERT_EQ(tt_stats(rt).live_ops, 2);
    /* The next drain acknowledges them (here one of the two: the other,
     * never delivered and never to be, is dropped) and copies nothing. */
    ASSERT_EQ(tr_port_drain(port, c, 8, 1), 0);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    ASSERT_EQ(tr_port_drain(port, c, 8, 2), 0); /* nothing in flight any more */

    /* Closed with records in flight and never drained again: release
     * drops them (valgrind/ASan check that nothing leaks). */
    tr_port_t *p2 = tt_port(rt, 7);
    queue_sleeps(rt, p2, 11, 13);
    ASSERT_EQ(tr_port_drain(p2, c, 8, 0), 3);
    tr_port_close(p2);
    ASSERT_EQ(tt_stats(rt).live_ops, 3);
    ASSERT(tt_wait_idle(rt, 5.0)); /* the close message let go of p2 */
    tr_port_release(p2);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(port_close_progress_in_flight) {
    /* A ticker's progress record is copied (in flight) when the port
     * closes: it belongs to the op, which close then cancels and frees, so
     * the queue must not keep it. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 8);
    ASSERT_EQ(tr_ticker(rt, port, 1, 1000000, 0.001, NULL), TR_OK);
    tr_completion_t c[4];
    double deadline = tt_now() + 5.0;
    size_t n;
    while ((n = tr_port_drain(port, c, 1, 0)) == 0) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        uint64_t ids[4];
        (void)tr_runtime_wait_ready(rt, ids, 4, 0.1);
    }
    ASSERT_EQ(c[0].final, 0);
    tr_port_close(port);
    ASSERT(tt_wait_idle(rt, 5.0)); /* cancelled; its final record dropped */
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    ASSERT_EQ(tr_port_drain(port, c, 4, 1), 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(port_stalled) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 9);
    tr_completion_t c[4];
    ASSERT_EQ(tr_port_stalled(port), 0); /* empty */
    queue_sleeps(rt, port, 1, 1);
    /* Records and no drain since the previous call: stalled, at every
     * call until a drain comes. */
    ASSERT_EQ(tr_port_stalled(port), 1);
    ASSERT_EQ(tr_port_stalled(port), 1);
    /* A drain in between (even one that acknowledges nothing): not stalled. */
    ASSERT_EQ(tr_port_drain(port, c, 4, 0), 1);
    ASSERT_EQ(tr_port_stalled(port), 0);
    /* The record is still there and nobody drained since: stalled again. */
    ASSERT_EQ(tr_port_stalled(port), 1);
    ASSERT_EQ(tr_port_drain(port, c, 4, 1), 0); /* acked: empty */
    ASSERT_EQ(tr_port_stalled(port), 0);
    ASSERT_EQ(tr_port_stalled(port), 0); /* empty */
    /* Records that came after a drain and before this call: the drain
     * counts as "in between", so the first sweep lets them be. */
    queue_sleeps(rt, port, 2, 2);
    ASSERT_EQ(tr_port_drain(port, c, 4, 0), 1);
    queue_sleeps(rt, port, 3, 3);
    ASSERT_EQ(tr_port_stalled(port), 0);
    ASSERT_EQ(tr_port_stalled(port), 1);
    tr_port_release(port);
    tr_runtime_release(rt);
}
