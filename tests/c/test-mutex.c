/*
 * test-mutex.c - the FIFO mutex (tr_mutex_*): direct hand-off to the oldest
 * waiter, thread or port alike, and what happens to a hand-off that reaches
 * nobody.
 *
 * As in test-channel.c, a thread that must be queued before the test goes
 * on is given SETTLE seconds once it is about to call in.
 */
#include "task.h"

#include <math.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SETTLE TT_SETTLE

static tr_mutex_t *new_mutex(void) {
    tr_mutex_t *m = NULL;
    ASSERT_EQ(tr_mutex_new(&m), TR_OK);
    ASSERT_NOT_NULL(m);
    return m;
}

TEST_IMPL(mutex_basic) {
    ASSERT_EQ(tr_mutex_new(NULL), TR_EINVAL);
    tr_mutex_release(NULL); /* allowed, does nothing */
    tr_mutex_t *m = new_mutex();
    ASSERT_EQ(tr_mutex_locked(m), 0);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_EINVAL); /* not locked */
    /* Bad arguments are refused even when the lock is free to take. */
    tr_waiter_t *w = NULL;
    ASSERT_EQ(tr_mutex_wait(m, NULL, 1, 1, &w), TR_EINVAL);
    ASSERT_EQ(tr_mutex_lock_blocking(m, NAN, 1), TR_EINVAL);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    ASSERT_NULL(w);
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_EBUSY);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_EINVAL);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    /* Free: taken at once, whatever the timeout. */
    double t0 = tt_now();
    ASSERT_EQ(tr_mutex_lock_blocking(m, -1.0, 1), TR_OK);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_lock_blocking(m, 0.0, 1), TR_OK);
    ASSERT_DBL_CMP(tt_now() - t0, <, 1.0);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    tr_mutex_release(m); /* released while locked: fine */
}

TEST_IMPL(mutex_lock_timeout) {
    tr_mutex_t *m = new_mutex();
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    double t0 = tt_now();
    ASSERT_EQ(tr_mutex_lock_blocking(m, 0.05, 1), TR_TIMEDOUT);
    double took = tt_now() - t0;
    ASSERT_DBL_CMP(took, >=, 0.045);
    ASSERT_DBL_CMP(took, <, 2.0);
    t0 = tt_now();
    ASSERT_EQ(tr_mutex_lock_blocking(m, 0.0, 1), TR_TIMEDOUT); /* a poll */
    ASSERT_DBL_CMP(tt_now() - t0, <, 1.0);
    /* The timed-out waiters left the queue: unlocking hands it to nobody. */
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    tr_mutex_release(m);
}

/* ---- threads in line ------------------------------------------------------------ */

typedef struct order_log {
    int ids[16];
    size_t n; /* plain: only written with the tr_mutex held */
} order_log;

typedef struct locker {
    tr_mutex_t *m;
    order_log *log;
    int id;
    double timeout;
    int rc;
    double took;
    atomic_bool started, done;
    pthread_t tid;
} locker;

static void *locker_main(void *arg) {
    locker *l = arg;
    atomic_store(&l->started, true);
    double t0 = tt_now();
    l->rc = tr_mutex_lock_blocking(l->m, l->timeout, 1);
    l->took = tt_now() - t0;
    if (l->rc == TR_OK) {
        l->log->ids[l->log->n++] = l->id;
        ASSERT_EQ(tr_mutex_unlock(l->m, NULL), TR_OK);
    }
    atomic_store(&l->done, true);
    return NULL;
}

/* Start a thread that locks, logs its id and unlocks; give it time to
 * queue. */
static void locker_start(locker *l, tr_mutex_t *m, order_log *log, int id, double timeout) {
    l->m = m;
    l->log = log;
    l->id = id;
    l->timeout = timeout;
    l->rc = -1;
    atomic_init(&l->started, false);
    atomic_init(&l->done, false);
    tt_start_settled(&l->tid, locker_main, l, &l->started);
}

static void locker_join(locker *l) { ASSERT_EQ(pthread_join(l->tid, NULL), 0); }

TEST_IMPL(mutex_fifo_threads) {
    tr_mutex_t *m = new_mutex();
    order_log log = {.n = 0};
    locker l[4];
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    for (int i = 0; i < 4; i++) locker_start(&l[i], m, &log, i + 1, 10.0);
    for (int i = 0; i < 4; i++) ASSERT(!atomic_load(&l[i].done));
    /* One unlock, four hand-offs in the order they queued. */
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    for (int i = 0; i < 4; i++) {
        locker_join(&l[i]);
        ASSERT_EQ(l[i].rc, TR_OK);
    }
    ASSERT_EQ(log.n, 4);
    for (int i = 0; i < 4; i++) ASSERT_EQ(log.ids[i], i + 1);
    ASSERT_EQ(tr_mutex_locked(m), 0);

    /* A thread woken by an unlock from another thread, with a deadline it
     * does not reach. */
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    locker_start(&l[0], m, &log, 5, 10.0);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    locker_join(&l[0]);
    ASSERT_EQ(l[0].rc, TR_OK);
    ASSERT_DBL_CMP(l[0].took, >=, SETTLE * 0.9);
    ASSERT_DBL_CMP(l[0].took, <, 5.0);

    /* A thread that timed out is out of line: the next one gets the lock. */
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    locker_start(&l[0], m, &log, 6, 0.01);
    locker_join(&l[0]);
    ASSERT_EQ(l[0].rc, TR_TIMEDOUT);
    locker_start(&l[1], m, &log, 7, 10.0);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    locker_join(&l[1]);
    ASSERT_EQ(l[1].rc, TR_OK);
    ASSERT_EQ(log.n, 6);
    ASSERT_EQ(log.ids[4], 5);
    ASSERT_EQ(log.ids[5], 7);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    tr_mutex_release(m);
}

/* ---- thread waiters that wait in steps ------------------------------------------- */

typedef struct stepper {
    tr_mutex_t *m;
    order_log *log;
    int id;
    int steps; /* tr_waiter_wait calls that timed out, place kept */
    atomic_bool started;
    pthread_t tid;
} stepper;

/* Waits the way the Python main thread does: 5 ms at a time. */
static void *stepper_main(void *arg) {
    stepper *st = arg;
    tr_waiter_t *w = NULL;
    atomic_store(&st->started, true);
    ASSERT_EQ(tr_mutex_wait_thread(st->m, 1, &w), TR_PENDING);
    while (tr_waiter_wait(w, 0.005) == TR_TIMEDOUT) st->steps++;
    ASSERT_EQ(tr_waiter_release(w), 1); /* woken: the lock is ours */
    st->log->ids[st->log->n++] = st->id;
    ASSERT_EQ(tr_mutex_unlock(st->m, NULL), TR_OK);
    return NULL;
}

TEST_IMPL(mutex_wait_thread_keeps_place) {
    tr_mutex_t *m = new_mutex();
    order_log log = {.n = 0};
    tr_waiter_t *w = NULL;
    /* Free: taken at once, no waiter. */
    ASSERT_EQ(tr_mutex_wait_thread(m, 1, &w), TR_OK);
    ASSERT_NULL(w);
    ASSERT_EQ(tr_mutex_wait_thread(m, 1, NULL), TR_EINVAL);

    /* A stepping waiter queued first is served first, however many times
     * it came back out of tr_waiter_wait meanwhile. */
    stepper st = {.m = m, .log = &log, .id = 1};
    atomic_init(&st.started, false);
    tt_start_settled(&st.tid, stepper_main, &st, &st.started);
    locker later;
    locker_start(&later, m, &log, 2, 10.0);
    tt_sleep(SETTLE);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(pthread_join(st.tid, NULL), 0);
    locker_join(&later);
    ASSERT_GE(st.steps, 3);
    ASSERT_EQ(log.n, 2);
    ASSERT_EQ(log.ids[0], 1);
    ASSERT_EQ(log.ids[1], 2);
    ASSERT_EQ(tr_mutex_locked(m), 0);

    /* Released unwoken: out of line, returns 0, the lock stays free for
     * others.  Released after a hand-off it did not use: returns 1, and the
     * caller passes the lock on with an unlock. */
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    ASSERT_EQ(tr_mutex_wait_thread(m, 1, &w), TR_PENDING);
    ASSERT_EQ(tr_waiter_wait(w, 0.0), TR_TIMEDOUT);
    ASSERT_EQ(tr_waiter_wait(w, NAN), TR_EINVAL);
    ASSERT_EQ(tr_waiter_release(w), 0);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    ASSERT_EQ(tr_mutex_wait_thread(m, 1, &w), TR_PENDING);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK); /* handed to w */
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(tr_waiter_release(w), 1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    tr_mutex_release(m);
}

/* ---- port waiters ------------------------------------------------------------------ */

static void expect_handed(tr_runtime_t *rt, tr_port_t *port, uint64_t token) {
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.token, token);
    ASSERT_EQ(c.status, TR_OK);
    ASSERT_EQ(c.final, 1);
}

static tr_waiter_t *wait_pending(tr_mutex_t *m, tr_port_t *port, uint64_t token) {
    tr_waiter_t *w = NULL;
    ASSERT_EQ(tr_mutex_wait(m, port, token, token, &w), TR_PENDING); /* ticket = token */
    ASSERT_NOT_NULL(w);
    return w;
}

static void expect_no_waiters(tr_runtime_t *rt) {
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.waiters, 0);
    ASSERT_EQ(s.pending, 0);
}

TEST_IMPL(mutex_wait_port) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_mutex_t *m = new_mutex();
    char c0;
    tr_waiter_t *marker = (tr_waiter_t *)(void *)&c0, *w = marker;

    /* Free: taken now, no waiter. */
    ASSERT_EQ(tr_mutex_wait(m, port, 1, 1, &w), TR_OK);
    ASSERT(w == marker);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    expect_no_waiters(rt);

    /* Held: queued, counted, and its record means "yours now". */
    w = wait_pending(m, port, 2);
    ASSERT_EQ(tr_waiter_wait(w, 0.0), TR_EINVAL); /* only thread waiters wait in steps */
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.waiters, 1);
    ASSERT_EQ(s.pending, 1);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    /* Handed over directly: it never was free, so nobody can barge in. */
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_EBUSY);
    expect_handed(rt, port, 2);
    expect_no_waiters(rt);
    ASSERT_EQ(tr_waiter_release(w), 1);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);

    /* Given up before the hand-off: 0, and the unlock frees the lock
     * instead of handing it to the departed waiter. */
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    w = wait_pending(m, port, 3);
    ASSERT_EQ(tr_waiter_release(w), 0);
    expect_no_waiters(rt);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    tt_expect_quiet(rt, port, 0.02);

    /* Invalid arguments queue nothing. */
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    w = NULL;
    ASSERT_EQ(tr_mutex_wait(m, port, 0, 1, &w), TR_EINVAL);
    ASSERT_EQ(tr_mutex_wait(m, NULL, 1, 1, &w), TR_EINVAL);
    ASSERT_EQ(tr_mutex_wait(m, port, 1, 1, NULL), TR_EINVAL);
    ASSERT_NULL(w);
    expect_no_waiters(rt);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);

    tr_mutex_release(m);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(mutex_unlock_wakes) {
    tr_runtime_t *rt = tt_runtime(1), *other = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 7), *elsewhere = tt_port(other, 9);
    tr_mutex_t *m = new_mutex();
    uint64_t ids[4] = {0};
    tr_wakes_t wk;
    tr_completion_t c;

    wk.n = 99;
    ASSERT_EQ(tr_mutex_unlock(m, &wk), TR_EINVAL); /* not locked */
    ASSERT_EQ(wk.n, 0);                             /* emptied on entry all the same */
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    wk.n = 99;
    ASSERT_EQ(tr_mutex_unlock(m, &wk), TR_OK); /* nobody waits: just unlocked */
    ASSERT_EQ(wk.n, 0);
    ASSERT_EQ(tr_mutex_locked(m), 0);

    /* Handed to a port waiter: its port is listed for the caller, and the
     * dispatcher is not told; the record is there to drain. */
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    tr_waiter_t *w = wait_pending(m, port, 2);
    ASSERT_EQ(tr_mutex_unlock(m, &wk), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 1); /* handed over, never free */
    ASSERT_EQ(wk.n, 1);
    ASSERT_EQ(wk.ids[0], 7);
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 0.05), 0);
    ASSERT_EQ(tt_drain(port, &c, 1), 1);
    ASSERT_EQ(c.token, 2);
    ASSERT_EQ(c.status, TR_OK);
    ASSERT_EQ(tr_waiter_release(w), 1);

    /* The drain re-armed the port; with NULL the dispatcher is told. */
    w = wait_pending(m, port, 3);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 5.0), 1);
    ASSERT_EQ(ids[0], 7);
    expect_handed(rt, port, 3);
    ASSERT_EQ(tr_waiter_release(w), 1);

    /* A caller that lists the port and then does not drain it (it was
     * interrupted): the dispatcher's sweep finds it with tr_port_stalled. */
    w = wait_pending(m, port, 4);
    ASSERT_EQ(tr_mutex_unlock(m, &wk), TR_OK);
    ASSERT_EQ(wk.n, 1);
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 0.05), 0);
    ASSERT_EQ(tr_port_stalled(port), 0); /* drained since the last sweep (there was none) */
    ASSERT_EQ(tr_port_stalled(port), 1); /* not since: stalled */
    expect_handed(rt, port, 4);
    ASSERT_EQ(tr_port_stalled(port), 0);
    ASSERT_EQ(tr_waiter_release(w), 1);

    /* A port of another runtime is listed just the same. */
    w = wait_pending(m, elsewhere, 5);
    ASSERT_EQ(tr_mutex_unlock(m, &wk), TR_OK);
    ASSERT_EQ(wk.n, 1);
    ASSERT_EQ(wk.ids[0], 9);
    ASSERT_EQ(tr_runtime_wait_ready(other, ids, 4, 0.05), 0);
    ASSERT_EQ(tt_drain(elsewhere, &c, 1), 1);
    ASSERT_EQ(c.token, 5);
    ASSERT_EQ(tr_waiter_release(w), 1);

    /* A thread waiter is woken directly: nothing to list. */
    tr_waiter_t *tw = NULL;
    ASSERT_EQ(tr_mutex_wait_thread(m, 6, &tw), TR_PENDING);
    wk.n = 99;
    ASSERT_EQ(tr_mutex_unlock(m, &wk), TR_OK);
    ASSERT_EQ(wk.n, 0);
    ASSERT_EQ(tr_waiter_wait(tw, 5.0), TR_OK);
    ASSERT_EQ(tr_waiter_release(tw), 1);
    ASSERT_EQ(tr_mutex_unlock_if(m, 6, &wk), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);

    tr_mutex_release(m);
    tr_port_release(port);
    tr_port_release(elsewhere);
    tr_runtime_release(rt);
    tr_runtime_release(other);
}

TEST_IMPL(mutex_fifo_mixed) {
    /* Threads and event loops queue in one line: T1, W2, T3, W4, T5. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_mutex_t *m = new_mutex();
    order_log log = {.n = 0};
    locker t1, t3, t5;
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    locker_start(&t1, m, &log, 1, 10.0);
    tr_waiter_t *w2 = wait_pending(m, port, 2);
    locker_start(&t3, m, &log, 3, 10.0);
    tr_waiter_t *w4 = wait_pending(m, port, 4);
    locker_start(&t5, m, &log, 5, 10.0);

    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK); /* T1 runs, then hands it to W2 */
    expect_handed(rt, port, 2);
    locker_join(&t1);
    ASSERT_EQ(log.n, 1);
    ASSERT(!atomic_load(&t3.done)); /* behind W2, which holds it now */
    log.ids[log.n++] = 2;
    ASSERT_EQ(tr_waiter_release(w2), 1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK); /* T3, then W4 */
    expect_handed(rt, port, 4);
    locker_join(&t3);
    ASSERT(!atomic_load(&t5.done));
    log.ids[log.n++] = 4;
    ASSERT_EQ(tr_waiter_release(w4), 1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK); /* T5 */
    locker_join(&t5);
    ASSERT_EQ(log.n, 5);
    for (int i = 0; i < 5; i++) ASSERT_EQ(log.ids[i], i + 1);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    expect_no_waiters(rt);
    tr_mutex_release(m);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(mutex_wait_release_woken) {
    /* A waiter handed the lock whose task no longer wants it (released:
     * 1) owns it all the same and must unlock to pass it on. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_mutex_t *m = new_mutex();
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    tr_waiter_t *w1 = wait_pending(m, port, 1);
    tr_waiter_t *w2 = wait_pending(m, port, 2);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    expect_handed(rt, port, 1);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tr_waiter_release(w1), 1);
    ASSERT_EQ(tr_mutex_locked(m), 1); /* still w1's, until: */
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    expect_handed(rt, port, 2);
    ASSERT_EQ(tr_waiter_release(w2), 1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);

    /* Released after the hand-off but before its record was drained: the
     * same, and the record still arrives. */
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    tr_waiter_t *w3 = wait_pending(m, port, 3);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_waiter_release(w3), 1);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    expect_handed(rt, port, 3);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    expect_no_waiters(rt);
    tr_mutex_release(m);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* A hand-off to a waiter whose port is closed reaches nobody: it must go on
 * to the next waiter (or free the lock) exactly once.  Once more would take
 * the lock from its new holder. */

TEST_IMPL(mutex_wait_closed_port) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *p1 = tt_port(rt, 1), *p2 = tt_port(rt, 2), *p3 = tt_port(rt, 3);
    tr_mutex_t *m = new_mutex();
    tr_completion_t c;

    /* Closed before the unlock: skipped. */
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    tr_waiter_t *w1 = wait_pending(m, p1, 1);
    tr_waiter_t *w2 = wait_pending(m, p2, 2);
    tr_port_close(p1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    expect_handed(rt, p2, 2);
    ASSERT_EQ(tt_drain(p1, &c, 1), 0);
    ASSERT_EQ(tr_waiter_release(w1), 0); /* it never had the lock: no unlock */
    ASSERT_EQ(tr_waiter_release(w2), 1);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);

    /* Only waiters of closed ports: the unlock frees it. */
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    tr_waiter_t *w3 = wait_pending(m, p3, 3);
    tr_port_close(p3);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    ASSERT_EQ(tr_waiter_release(w3), 0);
    expect_no_waiters(rt);

    tr_port_release(p1);
    tr_port_release(p3);
    tr_port_release(p2);
    tr_mutex_release(m);
    tr_runtime_release(rt);
}

TEST_IMPL(mutex_wait_dropped_record) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *live = tt_port(rt, 1);
    tr_mutex_t *m = new_mutex();

    /* Handed the lock, then the port closes before the record is drained:
     * the dropped record hands it on. */
    tr_port_t *p = tt_port(rt, 2);
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    tr_waiter_t *w1 = wait_pending(m, p, 1);
    tr_waiter_t *w2 = wait_pending(m, live, 2);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    tt_expect_quiet(rt, live, 0.02);
    tr_port_close(p);
    expect_handed(rt, live, 2);
    ASSERT_EQ(tr_waiter_release(w1), 0); /* the lock went on without it */
    ASSERT_EQ(tr_waiter_release(w2), 1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    tr_port_release(p);

    /* The same when the port is let go without a close. */
    p = tt_port(rt, 3);
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    w1 = wait_pending(m, p, 3);
    w2 = wait_pending(m, live, 4);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    tr_port_release(p);
    expect_handed(rt, live, 4);
    ASSERT_EQ(tr_waiter_release(w1), 0);
    ASSERT_EQ(tr_waiter_release(w2), 1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    /* The released ports are gone (the first one once its close message
     * has run on the loop thread, which holds it until then). */
    ASSERT(tt_wait_idle(rt, 5.0));
    ASSERT_EQ(tt_stats(rt).ports, 1);

    /* Released (1) and unlocked by its owner, then its record is dropped:
     * the lock, now w2's, must stay w2's (w3 is not handed it). */
    p = tt_port(rt, 5);
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    w1 = wait_pending(m, p, 5);
    w2 = wait_pending(m, live, 6);
    tr_waiter_t *w3 = wait_pending(m, live, 7);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);   /* handed to w1 */
    ASSERT_EQ(tr_waiter_release(w1), 1);    /* w1 will not use it... */
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);   /* ...so passes it on, to w2 */
    expect_handed(rt, live, 6);
    tr_port_close(p);                       /* drops w1's record */
    tt_expect_quiet(rt, live, 0.02);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(tr_waiter_release(w2), 1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);   /* now w3 */
    expect_handed(rt, live, 7);
    ASSERT_EQ(tr_waiter_release(w3), 1);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_EINVAL);
    tr_port_release(p);
    expect_no_waiters(rt);

    tr_mutex_release(m);
    tr_port_release(live);
    tr_runtime_release(rt);
}

TEST_IMPL(mutex_wait_shutdown) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_mutex_t *m = new_mutex();
    tr_runtime_shutdown(rt);
    tr_waiter_t *w = NULL;
    ASSERT_EQ(tr_mutex_wait(m, port, 1, 1, &w), TR_OK); /* free: no waiter needed */
    ASSERT_EQ(tr_mutex_wait(m, port, 2, 1, &w), TR_ESHUTDOWN);
    ASSERT_NULL(w);
    expect_no_waiters(rt);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    tr_mutex_release(m);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* ---- contention ----------------------------------------------------------------------
 * Threads take the lock every way there is (blocking, with short deadlines,
 * try first) and an event-loop thread through port waiters, giving up on
 * some waits.  Inside, a plain counter and a plain "someone is in here"
 * flag: a second holder trips the flag, and ThreadSanitizer flags any
 * hand-off that does not order one holder after the other. */

enum { MSTRESS_THREADS = 4 };

typedef struct mstress {
    tr_mutex_t *m;
    size_t per_thread;
    uint64_t counter; /* plain */
    int inside;       /* plain */
} mstress;

static void critical_section(mstress *st) {
    ASSERT_EQ(st->inside, 0);
    st->inside = 1;
    st->counter++;
    st->inside = 0;
}

typedef struct mstress_thread {
    mstress *st;
    int index;
    size_t entered;
    pthread_t tid;
} mstress_thread;

static void *mstress_main(void *arg) {
    mstress_thread *me = arg;
    mstress *st = me->st;
    for (size_t i = 0; i < st->per_thread; i++) {
        int rc;
        switch (me->index) {
        case 0: rc = tr_mutex_lock_blocking(st->m, -1.0, 1); break;
        case 1:
            while ((rc = tr_mutex_lock_blocking(st->m, 0.0005, 1)) == TR_TIMEDOUT) {
            }
            break;
        case 2:
            rc = tr_mutex_try_lock(st->m, 1);
            if (rc == TR_EBUSY) rc = tr_mutex_lock_blocking(st->m, -1.0, 1);
            break;
        default: rc = tr_mutex_lock_blocking(st->m, 30.0, 1); break;
        }
        ASSERT_EQ(rc, TR_OK);
        critical_section(st);
        me->entered++;
        ASSERT_EQ(tr_mutex_unlock(st->m, NULL), TR_OK);
    }
    return NULL;
}

/* Wait on this thread's own runtime and port for the record of `token`;
 * older tokens (waiters given up after their wake) are skipped. */
static void await_token(tr_runtime_t *rt, tr_port_t *port, uint64_t token) {
    double deadline = tt_now() + 20.0;
    for (;;) {
        tr_completion_t c;
        while (tt_drain(port, &c, 1) == 1) {
            ASSERT_LE(c.token, token);
            if (c.token == token) return;
        }
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        uint64_t ids[4];
        tr_runtime_wait_ready(rt, ids, 4, 0.05);
    }
}

typedef struct port_locker {
    mstress *st;
    size_t rounds, entered, gave_up_queued, gave_up_woken;
    pthread_t tid;
} port_locker;

static void *port_locker_main(void *arg) {
    port_locker *pl = arg;
    mstress *st = pl->st;
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    uint64_t token = 0;
    for (size_t i = 0; i < pl->rounds; i++) {
        tr_waiter_t *w = NULL;
        int rc = tr_mutex_wait(st->m, port, ++token, 1, &w);
        if (rc == TR_PENDING) {
            if (i % 5 == 0) {
                /* Cancelled at once: either still queued (0), or handed the
                 * lock meanwhile (1), which must then be passed on. */
                if (tr_waiter_release(w)) {
                    pl->gave_up_woken++;
                    ASSERT_EQ(tr_mutex_unlock(st->m, NULL), TR_OK);
                } else {
                    pl->gave_up_queued++;
                }
                continue;
            }
            await_token(rt, port, token);
            ASSERT_EQ(tr_waiter_release(w), 1);
        } else {
            ASSERT_EQ(rc, TR_OK);
        }
        critical_section(st);
        pl->entered++;
        ASSERT_EQ(tr_mutex_unlock(st->m, NULL), TR_OK);
    }
    /* Every waiter was woken or removed. */
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.waiters, 0);
    ASSERT_EQ(s.pending, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
    return NULL;
}

TEST_IMPL(mutex_stress) {
    mstress st = {.per_thread = tt_scaled(10000)};
    st.m = new_mutex();
    mstress_thread t[MSTRESS_THREADS];
    port_locker pl = {.st = &st, .rounds = tt_scaled(3000)};
    ASSERT_EQ(pthread_create(&pl.tid, NULL, port_locker_main, &pl), 0);
    for (int i = 0; i < MSTRESS_THREADS; i++) {
        t[i] = (mstress_thread){.st = &st, .index = i};
        ASSERT_EQ(pthread_create(&t[i].tid, NULL, mstress_main, &t[i]), 0);
    }
    uint64_t entered = 0;
    for (int i = 0; i < MSTRESS_THREADS; i++) {
        ASSERT_EQ(pthread_join(t[i].tid, NULL), 0);
        ASSERT_EQ(t[i].entered, st.per_thread);
        entered += t[i].entered;
    }
    ASSERT_EQ(pthread_join(pl.tid, NULL), 0);
    ASSERT_EQ(pl.entered + pl.gave_up_queued + pl.gave_up_woken, pl.rounds);
    entered += pl.entered;
    ASSERT_EQ(st.counter, entered);
    ASSERT_EQ(st.inside, 0);
    ASSERT_EQ(tr_mutex_locked(st.m), 0);
    tr_mutex_release(st.m);
}

/* ---- tickets, and a hand-off in flight when its port closes -------------------- */

typedef struct ticket_locker {
    tr_mutex_t *m;
    uint64_t ticket;
    int rc;
    atomic_bool started;
} ticket_locker;

static void *ticket_locker_main(void *arg) {
    ticket_locker *l = arg;
    atomic_store(&l->started, true);
    l->rc = tr_mutex_lock_blocking(l->m, 5.0, l->ticket);
    return NULL;
}

TEST_IMPL(mutex_tickets) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 3), *p2 = tt_port(rt, 4);
    tr_mutex_t *m = new_mutex();
    tr_waiter_t *w = NULL;
    tr_wakes_t wk;

    /* Ticket 0 is refused everywhere. */
    ASSERT_EQ(tr_mutex_try_lock(m, 0), TR_EINVAL);
    ASSERT_EQ(tr_mutex_lock_blocking(m, 1.0, 0), TR_EINVAL);
    ASSERT_EQ(tr_mutex_wait(m, port, 1, 0, &w), TR_EINVAL);
    ASSERT_EQ(tr_mutex_wait_thread(m, 0, &w), TR_EINVAL);
    ASSERT_NULL(w);
    ASSERT_EQ(tr_mutex_locked(m), 0);

    /* unlock_if: only under the holder's ticket. */
    ASSERT_EQ(tr_mutex_unlock_if(m, 5, NULL), TR_EINVAL); /* not locked */
    ASSERT_EQ(tr_mutex_try_lock(m, 5), TR_OK);
    ASSERT_EQ(tr_mutex_unlock_if(m, 6, NULL), TR_EINVAL);
    ASSERT_EQ(tr_mutex_unlock_if(m, 0, NULL), TR_EINVAL);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(tr_mutex_unlock_if(m, 5, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    ASSERT_EQ(tr_mutex_unlock_if(m, 5, NULL), TR_EINVAL); /* cleared on unlock */
    ASSERT_EQ(tr_mutex_wait(m, port, 1, 9, &w), TR_OK);   /* free: held under 9 */
    ASSERT_EQ(tr_mutex_unlock_if(m, 5, NULL), TR_EINVAL);
    ASSERT_EQ(tr_mutex_unlock_if(m, 9, NULL), TR_OK);

    /* Hand-off to a port waiter: held under the waiter's ticket now. */
    ASSERT_EQ(tr_mutex_try_lock(m, 5), TR_OK);
    ASSERT_EQ(tr_mutex_wait(m, port, 2, 7, &w), TR_PENDING);
    ASSERT_EQ(tr_mutex_unlock_if(m, 5, &wk), TR_OK);
    ASSERT_EQ(wk.n, 1);
    ASSERT_EQ(wk.ids[0], 3);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(tr_mutex_unlock_if(m, 5, NULL), TR_EINVAL); /* the old ticket */
    tr_completion_t c;
    ASSERT_EQ(tt_drain(port, &c, 1), 1);
    ASSERT_EQ(c.token, 2);
    ASSERT_EQ(tr_waiter_release(w), 1);
    ASSERT_EQ(tr_mutex_unlock_if(m, 7, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);

    /* Hand-off to a thread waiter that waits in steps. */
    ASSERT_EQ(tr_mutex_try_lock(m, 5), TR_OK);
    ASSERT_EQ(tr_mutex_wait_thread(m, 8, &w), TR_PENDING);
    ASSERT_EQ(tr_mutex_unlock_if(m, 5, NULL), TR_OK);
    ASSERT_EQ(tr_waiter_wait(w, 5.0), TR_OK);
    ASSERT_EQ(tr_waiter_release(w), 1);
    ASSERT_EQ(tr_mutex_unlock_if(m, 5, NULL), TR_EINVAL);
    ASSERT_EQ(tr_mutex_unlock_if(m, 8, NULL), TR_OK);

    /* Hand-off to a blocked thread (tr_mutex_lock_blocking). */
    ASSERT_EQ(tr_mutex_try_lock(m, 5), TR_OK);
    ticket_locker l = {.m = m, .ticket = 10, .rc = -1};
    atomic_init(&l.started, false);
    pthread_t tid;
    tt_start_settled(&tid, ticket_locker_main, &l, &l.started);
    ASSERT_EQ(tr_mutex_unlock_if(m, 5, NULL), TR_OK);
    ASSERT_EQ(pthread_join(tid, NULL), 0);
    ASSERT_EQ(l.rc, TR_OK);
    ASSERT_EQ(tr_mutex_unlock_if(m, 5, NULL), TR_EINVAL);
    ASSERT_EQ(tr_mutex_unlock_if(m, 10, NULL), TR_OK);

    /* A hand-off lost with its port (closed before the drain) is passed on
     * unconditionally: the next waiter holds it under its own ticket. */
    tr_port_t *gone = tt_port(rt, 5);
    ASSERT_EQ(tr_mutex_try_lock(m, 5), TR_OK);
    tr_waiter_t *wg = NULL, *w2 = NULL;
    ASSERT_EQ(tr_mutex_wait(m, gone, 3, 11, &wg), TR_PENDING);
    ASSERT_EQ(tr_mutex_wait(m, p2, 4, 12, &w2), TR_PENDING);
    ASSERT_EQ(tr_mutex_unlock(m, NULL), TR_OK); /* to wg (ticket 11) */
    tr_port_close(gone);                        /* its record dropped: on to w2 */
    expect_handed(rt, p2, 4);
    ASSERT_EQ(tr_waiter_release(wg), 0);
    ASSERT_EQ(tr_waiter_release(w2), 1);
    ASSERT_EQ(tr_mutex_unlock_if(m, 11, NULL), TR_EINVAL);
    ASSERT_EQ(tr_mutex_unlock_if(m, 12, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    expect_no_waiters(rt);

    tr_mutex_release(m);
    tr_port_release(gone);
    tr_port_release(port);
    tr_port_release(p2);
    ASSERT(tt_wait_idle(rt, 5.0));
    tr_runtime_release(rt);
}

TEST_IMPL(mutex_hand_off_in_flight_close) {
    /* The consumer has copied the hand-off record (drain without ack) when
     * its port closes: the record stays, so the wake is not passed on; the
     * waiter is still the holder, released once. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *p1 = tt_port(rt, 1), *p2 = tt_port(rt, 2);
    tr_mutex_t *m = new_mutex();
    tr_waiter_t *w1 = NULL, *w2 = NULL;
    tr_completion_t c;
    ASSERT_EQ(tr_mutex_try_lock(m, 1), TR_OK);
    ASSERT_EQ(tr_mutex_wait(m, p1, 11, 11, &w1), TR_PENDING);
    ASSERT_EQ(tr_mutex_wait(m, p2, 12, 12, &w2), TR_PENDING);
    tr_wakes_t wk;
    ASSERT_EQ(tr_mutex_unlock(m, &wk), TR_OK);
    ASSERT_EQ(wk.n, 1);
    ASSERT_EQ(tr_port_drain(p1, &c, 4, 0), 1); /* copied, not acknowledged */
    ASSERT_EQ(c.token, 11);
    tr_port_close(p1);
    tt_expect_quiet(rt, p2, 0.05); /* not handed on */
    ASSERT_EQ(tr_waiter_release(w1), 1); /* the consumer claims it: its lock */
    ASSERT_EQ(tr_mutex_unlock_if(m, 12, NULL), TR_EINVAL);
    /* The closed port's next drain drops the unacknowledged record; the wake
     * was claimed, so it is not passed on a second time. */
    ASSERT_EQ(tr_port_drain(p1, &c, 4, 0), 0);
    tt_expect_quiet(rt, p2, 0.05);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(tr_mutex_unlock_if(m, 11, NULL), TR_OK); /* now on to w2 */
    expect_handed(rt, p2, 12);
    ASSERT_EQ(tr_waiter_release(w2), 1);

    /* The same hand-off acknowledged after the close: delivered, nothing
     * passed on; and one never acknowledged nor claimed, let go with its
     * port: passed on exactly once. */
    tr_port_t *p3 = tt_port(rt, 3), *p4 = tt_port(rt, 4);
    tr_waiter_t *w3 = NULL, *w4 = NULL, *w5 = NULL;
    ASSERT_EQ(tr_mutex_wait(m, p3, 13, 13, &w3), TR_PENDING);
    ASSERT_EQ(tr_mutex_wait(m, p4, 14, 14, &w4), TR_PENDING);
    ASSERT_EQ(tr_mutex_wait(m, p2, 15, 15, &w5), TR_PENDING);
    ASSERT_EQ(tr_mutex_unlock_if(m, 12, NULL), TR_OK); /* to w3 */
    expect_handed(rt, p3, 13);
    ASSERT_EQ(tr_waiter_release(w3), 1);
    ASSERT_EQ(tr_mutex_unlock_if(m, 13, NULL), TR_OK); /* to w4 */
    double deadline = tt_now() + 5.0;
    while (tr_port_drain(p4, &c, 4, 0) == 0) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        uint64_t ids[4];
        (void)tr_runtime_wait_ready(rt, ids, 4, 0.1);
    }
    ASSERT_EQ(c.token, 14);
    tr_port_close(p4);
    ASSERT_EQ(tr_port_drain(p4, &c, 4, 1), 0); /* acknowledged: delivered */
    tt_expect_quiet(rt, p2, 0.05);
    ASSERT_EQ(tr_waiter_release(w4), 1);
    ASSERT_EQ(tr_mutex_unlock_if(m, 14, NULL), TR_OK); /* to w5 */
    expect_handed(rt, p2, 15);
    ASSERT_EQ(tr_waiter_release(w5), 1);
    ASSERT_EQ(tr_mutex_unlock_if(m, 15, NULL), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    expect_no_waiters(rt);

    tr_mutex_release(m);
    tr_port_release(p1);
    tr_port_release(p2);
    tr_port_release(p3);
    tr_port_release(p4);
    ASSERT(tt_wait_idle(rt, 5.0));
    tr_runtime_release(rt);
}
