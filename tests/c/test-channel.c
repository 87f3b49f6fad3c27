/*
 * test-channel.c - the public channel (tr_channel_*): a bounded FIFO of
 * 64-bit items, used by threads (try and blocking calls) and by event loops
 * (port waiters, woken to retry), alone and under contention.
 *
 * Where a test needs a thread to be blocked inside the channel before it
 * goes on, it waits until the thread is about to call in, then gives it
 * SETTLE seconds: nothing public tells a queued thread from a runnable one,
 * and the margin is wide for a call that blocks within microseconds.
 */
#include "task.h"

#include <math.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SETTLE TT_SETTLE
#define CAP_MAX ((size_t)1 << 40)

static tr_channel_t *new_channel(size_t capacity) {
    tr_channel_t *ch = NULL;
    ASSERT_EQ(tr_channel_new(capacity, &ch), TR_OK);
    ASSERT_NOT_NULL(ch);
    return ch;
}

static uint64_t recv_one(tr_channel_t *ch) {
    uint64_t item = 0;
    ASSERT_EQ(tr_channel_try_recv(ch, &item, NULL), TR_OK);
    return item;
}

/* ---- one thread ------------------------------------------------------------ */

TEST_IMPL(chan_new_invalid) {
    char m;
    tr_channel_t *marker = (tr_channel_t *)(void *)&m, *ch = marker;
    const size_t bad[] = {0, CAP_MAX + 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ(tr_channel_new(bad[i], &ch), TR_EINVAL);
        ASSERT(ch == marker); /* untouched on error */
    }
    ASSERT_EQ(tr_channel_new(4, NULL), TR_EINVAL);
    tr_channel_release(NULL); /* allowed, does nothing */

    ch = new_channel(1);
    ASSERT_EQ(tr_channel_capacity(ch), 1);
    ASSERT_EQ(tr_channel_len(ch), 0);
    ASSERT_EQ(tr_channel_closed(ch), 0);
    ASSERT_EQ(tr_channel_try_send(ch, 1, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 2, NULL), TR_EFULL);
    tr_channel_release(ch); /* with an item still in it */

    /* The largest capacity is allocated on demand: this would need eight
     * terabytes up front. */
    ch = new_channel(CAP_MAX);
    ASSERT_EQ(tr_channel_capacity(ch), CAP_MAX);
    for (uint64_t i = 0; i < 1000; i++) ASSERT_EQ(tr_channel_try_send(ch, i, NULL), TR_OK);
    ASSERT_EQ(tr_channel_len(ch), 1000);
    for (uint64_t i = 0; i < 1000; i++) ASSERT_EQ(recv_one(ch), i);
    tr_channel_release(ch);
}

TEST_IMPL(chan_fifo_order) {
    tr_channel_t *ch = new_channel(4);
    uint64_t item = 12345;
    ASSERT_EQ(tr_channel_try_recv(ch, &item, NULL), TR_EEMPTY);
    ASSERT_EQ(item, 12345); /* untouched */
    ASSERT_EQ(tr_channel_try_recv(ch, NULL, NULL), TR_EINVAL);
    /* Every opaque key is an item, 0 and the largest (2**63 - 1) included
     * (from 2**63 up, items are values the channel owns: test-item.c). */
    ASSERT_EQ(tr_channel_try_send(ch, 0, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, INT64_MAX, NULL), TR_OK);
    ASSERT_EQ(recv_one(ch), 0);
    ASSERT_EQ(recv_one(ch), INT64_MAX);

    for (uint64_t k = 1; k <= 4; k++) ASSERT_EQ(tr_channel_try_send(ch, k, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 5, NULL), TR_EFULL);
    ASSERT_EQ(tr_channel_len(ch), 4);
    /* Keep it between half and full for a while, so the ring wraps around
     * many times: the order must survive. */
    uint64_t next_in = 5, next_out = 1;
    for (int round = 0; round < 1000; round++) {
        int k = 1 + round % 3;
        for (int i = 0; i < k; i++) ASSERT_EQ(recv_one(ch), next_out++);
        for (int i = 0; i < k; i++) ASSERT_EQ(tr_channel_try_send(ch, next_in++, NULL), TR_OK);
        ASSERT_EQ(tr_channel_try_send(ch, 0, NULL), TR_EFULL);
        ASSERT_EQ(tr_channel_len(ch), 4);
    }
    while (tr_channel_try_recv(ch, &item, NULL) == TR_OK) ASSERT_EQ(item, next_out++);
    ASSERT_EQ(next_out, next_in);
    ASSERT_EQ(tr_channel_len(ch), 0);
    tr_channel_release(ch);
}

TEST_IMPL(chan_take) {
    tr_channel_t *ch = new_channel(2);
    const uint64_t none = 0;
    ASSERT_EQ(tr_channel_take(ch, none, NULL), none); /* empty */
    ASSERT_EQ(tr_channel_try_send(ch, 7, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 8, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 9, NULL), TR_EFULL);
    ASSERT_EQ(tr_channel_take(ch, none, NULL), 7); /* oldest first, and room again */
    ASSERT_EQ(tr_channel_try_send(ch, 9, NULL), TR_OK);
    tr_channel_close(ch, NULL);
    ASSERT_EQ(tr_channel_take(ch, none, NULL), 8); /* queued items outlive the close */
    ASSERT_EQ(tr_channel_take(ch, UINT64_MAX, NULL), 9);
    ASSERT_EQ(tr_channel_take(ch, 42, NULL), 42); /* closed and drained */
    uint64_t item;
    ASSERT_EQ(tr_channel_try_recv(ch, &item, NULL), TR_ECLOSED);
    ASSERT_EQ(tr_channel_len(ch), 0);
    tr_channel_release(ch);
}

TEST_IMPL(chan_ring_growth) {
    /* A capacity far above what is ever held.  Three in, one out: the ring
     * has to grow while its head is in the middle, so growing must unwrap
     * it in order. */
    tr_channel_t *ch = new_channel(100000);
    uint64_t next_in = 0, next_out = 0;
    for (int round = 0; round < 5000; round++) {
        for (int i = 0; i < 3; i++) ASSERT_EQ(tr_channel_try_send(ch, next_in++, NULL), TR_OK);
        ASSERT_EQ(recv_one(ch), next_out++);
    }
    ASSERT_EQ(tr_channel_len(ch), 10000);
    size_t n;
    uint64_t batch[64];
    while (tr_channel_recv_many(ch, batch, 64, &n, NULL) == TR_OK)
        for (size_t i = 0; i < n; i++) ASSERT_EQ(batch[i], next_out++);
    ASSERT_EQ(next_out, next_in);
    tr_channel_release(ch);

    /* A capacity that is no power of two: the ring is bigger than the
     * capacity, the capacity still holds, also after wrapping. */
    ch = new_channel(100);
    next_in = next_out = 0;
    for (int i = 0; i < 100; i++) ASSERT_EQ(tr_channel_try_send(ch, next_in++, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 999, NULL), TR_EFULL);
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 70; i++) ASSERT_EQ(recv_one(ch), next_out++);
        for (int i = 0; i < 70; i++) ASSERT_EQ(tr_channel_try_send(ch, next_in++, NULL), TR_OK);
        ASSERT_EQ(tr_channel_try_send(ch, 999, NULL), TR_EFULL);
        ASSERT_EQ(tr_channel_len(ch), 100);
    }
    while (tr_channel_len(ch)) ASSERT_EQ(recv_one(ch), next_out++);
    ASSERT_EQ(next_out, next_in);
    tr_channel_release(ch);
}

TEST_IMPL(chan_close_semantics) {
    tr_channel_t *ch = new_channel(2);
    uint64_t item;
    size_t n = 99;
    ASSERT_EQ(tr_channel_try_send(ch, 1, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 2, NULL), TR_OK);
    tr_channel_close(ch, NULL);
    tr_channel_close(ch, NULL); /* idempotent */
    ASSERT_EQ(tr_channel_closed(ch), 1);
    /* Sends fail, the blocking one at once (no room would ever come). */
    ASSERT_EQ(tr_channel_try_send(ch, 3, NULL), TR_ECLOSED);
    double t0 = tt_now();
    ASSERT_EQ(tr_channel_send_blocking(ch, 3, -1.0, NULL), TR_ECLOSED);
    ASSERT_EQ(tr_channel_len(ch), 2);
    /* Queued items are still delivered, in order... */
    ASSERT_EQ(recv_one(ch), 1);
    ASSERT_EQ(tr_channel_recv_blocking(ch, &item, -1.0, NULL), TR_OK);
    ASSERT_EQ(item, 2);
    /* ...then every receive says closed, the blocking one at once too. */
    ASSERT_EQ(tr_channel_try_recv(ch, &item, NULL), TR_ECLOSED);
    ASSERT_EQ(tr_channel_recv_blocking(ch, &item, -1.0, NULL), TR_ECLOSED);
    ASSERT_EQ(tr_channel_recv_many(ch, &item, 1, &n, NULL), TR_ECLOSED);
    ASSERT_EQ(n, 0);
    ASSERT_DBL_CMP(tt_now() - t0, <, 1.0);
    ASSERT_EQ(tr_channel_len(ch), 0);
    tr_channel_release(ch);
}

TEST_IMPL(chan_recv_many) {
    tr_channel_t *ch = new_channel(8);
    uint64_t items[16];
    size_t n = 99;
    ASSERT_EQ(tr_channel_recv_many(ch, items, 16, &n, NULL), TR_EEMPTY);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(tr_channel_recv_many(ch, NULL, 16, &n, NULL), TR_EINVAL);
    ASSERT_EQ(tr_channel_recv_many(ch, items, 16, NULL, NULL), TR_EINVAL);
    ASSERT_EQ(tr_channel_recv_many(ch, items, 0, &n, NULL), TR_EINVAL);

    for (uint64_t k = 1; k <= 5; k++) ASSERT_EQ(tr_channel_try_send(ch, k, NULL), TR_OK);
    ASSERT_EQ(tr_channel_recv_many(ch, items, 3, &n, NULL), TR_OK); /* at most max */
    ASSERT_EQ(n, 3);
    for (size_t i = 0; i < n; i++) ASSERT_EQ(items[i], i + 1);
    ASSERT_EQ(tr_channel_recv_many(ch, items, 16, &n, NULL), TR_OK); /* what there is */
    ASSERT_EQ(n, 2);
    ASSERT_EQ(items[0], 4);
    ASSERT_EQ(items[1], 5);
    ASSERT_EQ(tr_channel_len(ch), 0);

    /* Across the end of the ring. */
    uint64_t next_in = 10, next_out = 10;
    for (int i = 0; i < 6; i++) ASSERT_EQ(tr_channel_try_send(ch, next_in++, NULL), TR_OK);
    for (int i = 0; i < 4; i++) ASSERT_EQ(recv_one(ch), next_out++);
    for (int i = 0; i < 6; i++) ASSERT_EQ(tr_channel_try_send(ch, next_in++, NULL), TR_OK);
    ASSERT_EQ(tr_channel_recv_many(ch, items, 16, &n, NULL), TR_OK);
    ASSERT_EQ(n, 8);
    for (size_t i = 0; i < n; i++) ASSERT_EQ(items[i], next_out++);

    /* After close: the rest, then TR_ECLOSED. */
    ASSERT_EQ(tr_channel_try_send(ch, 77, NULL), TR_OK);
    tr_channel_close(ch, NULL);
    ASSERT_EQ(tr_channel_recv_many(ch, items, 16, &n, NULL), TR_OK);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(items[0], 77);
    ASSERT_EQ(tr_channel_recv_many(ch, items, 16, &n, NULL), TR_ECLOSED);
    ASSERT_EQ(n, 0);
    tr_channel_release(ch);
}

TEST_IMPL(chan_blocking_timeout) {
    tr_channel_t *ch = new_channel(1);
    uint64_t item = 12345;
    double t0 = tt_now();
    ASSERT_EQ(tr_channel_recv_blocking(ch, &item, 0.05, NULL), TR_TIMEDOUT);
    double took = tt_now() - t0;
    ASSERT_DBL_CMP(took, >=, 0.045);
    ASSERT_DBL_CMP(took, <, 2.0);
    ASSERT_EQ(item, 12345);
    t0 = tt_now();
    ASSERT_EQ(tr_channel_recv_blocking(ch, &item, 0.0, NULL), TR_TIMEDOUT); /* a poll */
    ASSERT_DBL_CMP(tt_now() - t0, <, 1.0);
    ASSERT_EQ(tr_channel_recv_blocking(ch, NULL, 0.0, NULL), TR_EINVAL);

    ASSERT_EQ(tr_channel_try_send(ch, 7, NULL), TR_OK);
    t0 = tt_now();
    ASSERT_EQ(tr_channel_send_blocking(ch, 8, 0.05, NULL), TR_TIMEDOUT);
    took = tt_now() - t0;
    ASSERT_DBL_CMP(took, >=, 0.045);
    ASSERT_DBL_CMP(took, <, 2.0);
    ASSERT_EQ(tr_channel_send_blocking(ch, 8, 0.0, NULL), TR_TIMEDOUT);
    ASSERT_EQ(tr_channel_len(ch), 1); /* the timed-out sends left nothing */

    /* Ready: no wait, whatever the timeout. */
    t0 = tt_now();
    ASSERT_EQ(tr_channel_recv_blocking(ch, &item, 30.0, NULL), TR_OK);
    ASSERT_EQ(item, 7);
    ASSERT_EQ(tr_channel_send_blocking(ch, 9, 30.0, NULL), TR_OK);
    ASSERT_EQ(tr_channel_recv_blocking(ch, &item, -1.0, NULL), TR_OK);
    ASSERT_EQ(item, 9);
    ASSERT_DBL_CMP(tt_now() - t0, <, 1.0);
    tr_channel_release(ch);
}

/* A thread making one blocking call. */
typedef struct blocker {
    tr_channel_t *ch;
    int dir; /* TR_SEND or TR_RECV */
    uint64_t item;
    double timeout;
    int rc;
    double took;
    atomic_bool started, done;
    pthread_t tid;
} blocker;

static void *blocker_main(void *arg) {
    blocker *b = arg;
    atomic_store(&b->started, true);
    double t0 = tt_now();
    b->rc = b->dir == TR_SEND ? tr_channel_send_blocking(b->ch, b->item, b->timeout, NULL)
                              : tr_channel_recv_blocking(b->ch, &b->item, b->timeout, NULL);
    b->took = tt_now() - t0;
    atomic_store(&b->done, true);
    return NULL;
}

/* Start b and give it time to block in the channel. */
static void blocker_start(blocker *b, tr_channel_t *ch, int dir, uint64_t item, double timeout) {
    b->ch = ch;
    b->dir = dir;
    b->item = item;
    b->timeout = timeout;
    b->rc = -1;
    atomic_init(&b->started, false);
    atomic_init(&b->done, false);
    tt_start_settled(&b->tid, blocker_main, b, &b->started);
}

static void blocker_join(blocker *b) { ASSERT_EQ(pthread_join(b->tid, NULL), 0); }

TEST_IMPL(chan_blocking_wakeup) {
    tr_channel_t *ch = new_channel(1);
    blocker a, b;

    /* A receiver blocked with no deadline is woken by a send. */
    blocker_start(&a, ch, TR_RECV, 0, -1.0);
    ASSERT(!atomic_load(&a.done));
    ASSERT_EQ(tr_channel_try_send(ch, 42, NULL), TR_OK);
    blocker_join(&a);
    ASSERT_EQ(a.rc, TR_OK);
    ASSERT_EQ(a.item, 42);
    ASSERT_DBL_CMP(a.took, >=, SETTLE * 0.9);
    ASSERT_EQ(tr_channel_len(ch), 0);

    /* A sender blocked on a full channel is woken by a receive, and its
     * item goes in after the one that was there. */
    ASSERT_EQ(tr_channel_try_send(ch, 1, NULL), TR_OK);
    blocker_start(&a, ch, TR_SEND, 2, 10.0);
    ASSERT(!atomic_load(&a.done));
    ASSERT_EQ(recv_one(ch), 1);
    blocker_join(&a);
    ASSERT_EQ(a.rc, TR_OK);
    ASSERT_EQ(recv_one(ch), 2);

    /* Blocked receivers are served in the order they came, one per item. */
    blocker_start(&a, ch, TR_RECV, 0, 10.0);
    blocker_start(&b, ch, TR_RECV, 0, 10.0);
    ASSERT_EQ(tr_channel_try_send(ch, 100, NULL), TR_OK);
    blocker_join(&a);
    ASSERT_EQ(a.rc, TR_OK);
    ASSERT_EQ(a.item, 100);
    tt_sleep(SETTLE);
    ASSERT(!atomic_load(&b.done)); /* not woken for an item it cannot have */
    ASSERT_EQ(tr_channel_try_send(ch, 200, NULL), TR_OK);
    blocker_join(&b);
    ASSERT_EQ(b.rc, TR_OK);
    ASSERT_EQ(b.item, 200);

    /* A receiver that timed out left the queue: the next item goes to the
     * one blocked after it (a stale entry would take the wake, and worse,
     * point into a returned stack frame). */
    uint64_t item;
    ASSERT_EQ(tr_channel_recv_blocking(ch, &item, 0.01, NULL), TR_TIMEDOUT);
    blocker_start(&a, ch, TR_RECV, 0, 10.0);
    ASSERT_EQ(tr_channel_try_send(ch, 300, NULL), TR_OK);
    blocker_join(&a);
    ASSERT_EQ(a.rc, TR_OK);
    ASSERT_EQ(a.item, 300);
    ASSERT_DBL_CMP(a.took, <, 5.0);

    /* Close wakes blocked receivers (nothing left: TR_ECLOSED)... */
    blocker_start(&a, ch, TR_RECV, 0, 10.0);
    tr_channel_close(ch, NULL);
    blocker_join(&a);
    ASSERT_EQ(a.rc, TR_ECLOSED);
    ASSERT_DBL_CMP(a.took, <, 5.0);
    tr_channel_release(ch);

    /* ...and blocked senders, whose item stays out. */
    ch = new_channel(1);
    ASSERT_EQ(tr_channel_try_send(ch, 1, NULL), TR_OK);
    blocker_start(&a, ch, TR_SEND, 2, -1.0);
    tr_channel_close(ch, NULL);
    blocker_join(&a);
    ASSERT_EQ(a.rc, TR_ECLOSED);
    ASSERT_EQ(tr_channel_len(ch), 1);
    ASSERT_EQ(recv_one(ch), 1);
    ASSERT_EQ(tr_channel_try_recv(ch, &item, NULL), TR_ECLOSED);
    tr_channel_release(ch);
}

/* ---- many threads --------------------------------------------------------------
 * Producers and consumers with every kind of call: blocking with and
 * without deadlines, try, recv_many.  Each item is (producer << 32) | seq.
 * Every item must arrive exactly once, and each consumer must see each
 * producer's items in the order they were sent. */

enum { STRESS_PRODUCERS = 4, STRESS_CONSUMERS = 3 };

typedef struct stress {
    tr_channel_t *ch;
    size_t per_producer;
    atomic_uint *seen;     /* per item: times received */
    atomic_size_t received;
} stress;

typedef struct stress_thread {
    stress *st;
    int index;
    pthread_t tid;
    /* consumers: per producer, 1 + the last seq seen (0: none yet) */
    uint64_t next[STRESS_PRODUCERS];
} stress_thread;

static void *stress_producer(void *arg) {
    stress_thread *me = arg;
    stress *st = me->st;
    for (size_t i = 0; i < st->per_producer; i++) {
        uint64_t item = (uint64_t)me->index << 32 | i;
        int rc;
        switch (me->index) {
        case 0: rc = tr_channel_send_blocking(st->ch, item, -1.0, NULL); break;
        case 1: /* short deadlines: timeouts race with wakes */
            while ((rc = tr_channel_send_blocking(st->ch, item, 0.001, NULL)) == TR_TIMEDOUT) {
            }
            break;
        case 2: /* try first, as a non-blocking caller would */
            rc = tr_channel_try_send(st->ch, item, NULL);
            if (rc == TR_EFULL) rc = tr_channel_send_blocking(st->ch, item, -1.0, NULL);
            break;
        default: rc = tr_channel_send_blocking(st->ch, item, 30.0, NULL); break;
        }
        ASSERT_EQ(rc, TR_OK);
    }
    return NULL;
}

static void stress_got(stress_thread *me, uint64_t item) {
    stress *st = me->st;
    uint64_t p = item >> 32, seq = item & 0xffffffffu;
    ASSERT_LT(p, STRESS_PRODUCERS);
    ASSERT_LT(seq, st->per_producer);
    ASSERT_GE(seq, me->next[p]); /* each producer's items in its order */
    me->next[p] = seq + 1;
    atomic_fetch_add(&st->seen[p * st->per_producer + seq], 1);
    atomic_fetch_add(&st->received, 1);
}

static void *stress_consumer(void *arg) {
    stress_thread *me = arg;
    stress *st = me->st;
    uint64_t items[16];
    for (;;) {
        int rc;
        size_t n = 0;
        switch (me->index) {
        case 0:
            rc = tr_channel_recv_blocking(st->ch, &items[0], -1.0, NULL);
            n = 1;
            break;
        case 1:
            while ((rc = tr_channel_recv_blocking(st->ch, &items[0], 0.002, NULL)) == TR_TIMEDOUT) {
            }
            n = 1;
            break;
        default:
            rc = tr_channel_recv_many(st->ch, items, 16, &n, NULL);
            if (rc == TR_EEMPTY) {
                rc = tr_channel_recv_blocking(st->ch, &items[0], -1.0, NULL);
                n = 1;
            }
            break;
        }
        if (rc == TR_ECLOSED) return NULL;
        ASSERT_EQ(rc, TR_OK);
        for (size_t i = 0; i < n; i++) stress_got(me, items[i]);
    }
}

TEST_IMPL(chan_stress_mpmc) {
    stress st = {.per_producer = tt_scaled(20000)};
    size_t total = STRESS_PRODUCERS * st.per_producer;
    st.seen = calloc(total, sizeof *st.seen);
    ASSERT_NOT_NULL(st.seen);
    st.ch = new_channel(16); /* small: senders block often */

    stress_thread prod[STRESS_PRODUCERS], cons[STRESS_CONSUMERS];
    for (int i = 0; i < STRESS_CONSUMERS; i++) {
        cons[i] = (stress_thread){.st = &st, .index = i};
        ASSERT_EQ(pthread_create(&cons[i].tid, NULL, stress_consumer, &cons[i]), 0);
    }
    for (int i = 0; i < STRESS_PRODUCERS; i++) {
        prod[i] = (stress_thread){.st = &st, .index = i};
        ASSERT_EQ(pthread_create(&prod[i].tid, NULL, stress_producer, &prod[i]), 0);
    }
    for (int i = 0; i < STRESS_PRODUCERS; i++) ASSERT_EQ(pthread_join(prod[i].tid, NULL), 0);
    /* Everything is taken before the close: no item waits for one. */
    double deadline = tt_now() + 20.0;
    while (atomic_load(&st.received) < total) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        tt_sleep(0.001);
    }
    tr_channel_close(st.ch, NULL); /* the consumers see TR_ECLOSED and stop */
    for (int i = 0; i < STRESS_CONSUMERS; i++) ASSERT_EQ(pthread_join(cons[i].tid, NULL), 0);
    ASSERT_EQ(atomic_load(&st.received), total);
    for (size_t k = 0; k < total; k++) ASSERT_EQ(atomic_load(&st.seen[k]), 1);
    ASSERT_EQ(tr_channel_len(st.ch), 0);
    tr_channel_release(st.ch);
    free(st.seen);
}

/* ---- port waiters ------------------------------------------------------------------
 * How an event loop waits: tr_channel_wait queues a waiter for a port; its
 * record (token, TR_OK, final) says "try again", never "here is an item". */

static void expect_wake(tr_runtime_t *rt, tr_port_t *port, uint64_t token) {
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.token, token);
    ASSERT_EQ(c.status, TR_OK);
    ASSERT_EQ(c.final, 1);
    ASSERT_EQ(c.value, 0);
}

static tr_waiter_t *wait_pending(tr_channel_t *ch, int dir, tr_port_t *port, uint64_t token) {
    tr_waiter_t *w = NULL;
    ASSERT_EQ(tr_channel_wait(ch, dir, port, token, &w), TR_PENDING);
    ASSERT_NOT_NULL(w);
    return w;
}

static void expect_no_waiters(tr_runtime_t *rt) {
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.waiters, 0);
    ASSERT_EQ(s.pending, 0);
}

TEST_IMPL(chan_wait_port) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_channel_t *ch = new_channel(2);
    char m;
    tr_waiter_t *marker = (tr_waiter_t *)(void *)&m, *w = marker;

    /* Ready now: TR_OK, no waiter. */
    ASSERT_EQ(tr_channel_wait(ch, TR_SEND, port, 1, &w), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 5, NULL), TR_OK);
    ASSERT_EQ(tr_channel_wait(ch, TR_RECV, port, 1, &w), TR_OK);
    ASSERT(w == marker);
    expect_no_waiters(rt);
    ASSERT_EQ(recv_one(ch), 5);

    /* Empty: queued, and counted as pending until woken. */
    w = wait_pending(ch, TR_RECV, port, 2);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.waiters, 1);
    ASSERT_EQ(s.pending, 1);
    ASSERT_EQ(s.submitted, 0); /* a waiter is not an op */
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tr_channel_try_send(ch, 6, NULL), TR_OK);
    expect_wake(rt, port, 2);
    expect_no_waiters(rt);
    ASSERT_EQ(tr_channel_len(ch), 1); /* woken to retry: the item is still there */
    ASSERT_EQ(tr_waiter_release(w), 1);
    ASSERT_EQ(recv_one(ch), 6);

    /* Full: a sender waits for room. */
    ASSERT_EQ(tr_channel_try_send(ch, 7, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 8, NULL), TR_OK);
    w = wait_pending(ch, TR_SEND, port, 3);
    ASSERT_EQ(recv_one(ch), 7);
    expect_wake(rt, port, 3);
    ASSERT_EQ(tr_waiter_release(w), 1);
    ASSERT_EQ(tr_channel_try_send(ch, 9, NULL), TR_OK);
    ASSERT_EQ(recv_one(ch), 8);
    ASSERT_EQ(recv_one(ch), 9);

    /* Given up before any wake: 0, out of the queue, and no record comes. */
    w = wait_pending(ch, TR_RECV, port, 4);
    ASSERT_EQ(tt_stats(rt).waiters, 1);
    ASSERT_EQ(tr_waiter_release(w), 0);
    expect_no_waiters(rt);
    ASSERT_EQ(tr_channel_try_send(ch, 10, NULL), TR_OK);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tr_channel_len(ch), 1);

    /* Released after the wake but before its record was drained: still
     * 1 (the wake was its), and the record then arrives all the same. */
    ASSERT_EQ(recv_one(ch), 10);
    w = wait_pending(ch, TR_RECV, port, 5);
    ASSERT_EQ(tr_channel_try_send(ch, 11, NULL), TR_OK);
    ASSERT_EQ(tr_waiter_release(w), 1);
    expect_wake(rt, port, 5);
    expect_no_waiters(rt);

    tr_channel_release(ch);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(chan_wait_invalid) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_channel_t *ch = new_channel(1);
    tr_waiter_t *w = NULL;
    ASSERT_EQ(tr_channel_wait(ch, 2, port, 1, &w), TR_EINVAL);
    ASSERT_EQ(tr_channel_wait(ch, -1, port, 1, &w), TR_EINVAL);
    ASSERT_EQ(tr_channel_wait(ch, TR_RECV, port, 0, &w), TR_EINVAL); /* token 0 */
    ASSERT_EQ(tr_channel_wait(ch, TR_RECV, NULL, 1, &w), TR_EINVAL);
    ASSERT_EQ(tr_channel_wait(ch, TR_RECV, port, 1, NULL), TR_EINVAL);
    /* Checked even when the channel is ready (room to send), where no waiter
     * would be needed. */
    ASSERT_EQ(tr_channel_wait(ch, TR_SEND, NULL, 1, &w), TR_EINVAL);
    ASSERT_EQ(tr_channel_wait(ch, TR_SEND, port, 0, &w), TR_EINVAL);
    /* A NaN timeout is an error, not "forever". */
    uint64_t item = 0;
    ASSERT_EQ(tr_channel_send_blocking(ch, 7, NAN, NULL), TR_EINVAL);
    ASSERT_EQ(tr_channel_recv_blocking(ch, &item, NAN, NULL), TR_EINVAL);
    ASSERT_EQ(tr_channel_len(ch), 0);
    /* Nobody would ever see the record of a closed port. */
    tr_port_t *closed = tt_port(rt, 2);
    tr_port_close(closed);
    ASSERT_EQ(tr_channel_wait(ch, TR_RECV, closed, 1, &w), TR_ECLOSED);
    ASSERT_NULL(w);
    expect_no_waiters(rt);
    tr_port_release(closed);
    tr_channel_release(ch);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(chan_wait_thread) {
    tr_channel_t *ch = new_channel(1);
    tr_waiter_t *w = NULL;
    uint64_t item = 0;
    ASSERT_EQ(tr_channel_wait_thread(ch, TR_SEND, &w), TR_OK); /* room: ready */
    ASSERT_NULL(w);
    ASSERT_EQ(tr_channel_wait_thread(ch, 5, &w), TR_EINVAL);
    ASSERT_EQ(tr_channel_wait_thread(ch, TR_RECV, NULL), TR_EINVAL);

    /* Empty: queued; steps time out in place; a send wakes it; the retry
     * gets the item. */
    ASSERT_EQ(tr_channel_wait_thread(ch, TR_RECV, &w), TR_PENDING);
    ASSERT_EQ(tr_waiter_wait(w, 0.0), TR_TIMEDOUT);
    ASSERT_EQ(tr_waiter_wait(w, 0.001), TR_TIMEDOUT);
    ASSERT_EQ(tr_channel_try_send(ch, 42, NULL), TR_OK);
    ASSERT_EQ(tr_waiter_wait(w, 5.0), TR_OK);
    ASSERT_EQ(tr_waiter_wait(w, 0.0), TR_OK); /* stays woken */
    ASSERT_EQ(tr_waiter_release(w), 1);
    ASSERT_EQ(tr_channel_try_recv(ch, &item, NULL), TR_OK);
    ASSERT_EQ(item, 42);

    /* Two queued: the first one's unused wake, passed on with notify,
     * reaches the second. */
    tr_waiter_t *a = NULL, *b = NULL;
    ASSERT_EQ(tr_channel_wait_thread(ch, TR_RECV, &a), TR_PENDING);
    ASSERT_EQ(tr_channel_wait_thread(ch, TR_RECV, &b), TR_PENDING);
    ASSERT_EQ(tr_channel_try_send(ch, 7, NULL), TR_OK);
    ASSERT_EQ(tr_waiter_wait(b, 0.0), TR_TIMEDOUT); /* only the oldest is woken */
    ASSERT_EQ(tr_waiter_release(a), 1);
    tr_channel_notify(ch, TR_RECV, NULL);
    ASSERT_EQ(tr_waiter_wait(b, 5.0), TR_OK);
    ASSERT_EQ(tr_waiter_release(b), 1);

    /* A full channel: a sender waits for room; close wakes it. */
    ASSERT_EQ(tr_channel_wait_thread(ch, TR_SEND, &w), TR_PENDING);
    tr_channel_close(ch, NULL);
    ASSERT_EQ(tr_waiter_wait(w, 5.0), TR_OK);
    ASSERT_EQ(tr_waiter_release(w), 1);
    ASSERT_EQ(tr_channel_try_send(ch, 8, NULL), TR_ECLOSED);
    ASSERT_EQ(tr_channel_wait_thread(ch, TR_RECV, &w), TR_OK); /* item queued */
    ASSERT_EQ(tr_channel_try_recv(ch, &item, NULL), TR_OK);
    ASSERT_EQ(item, 7);
    ASSERT_EQ(tr_channel_wait_thread(ch, TR_RECV, &w), TR_OK); /* closed: ready */
    tr_channel_release(ch);
}

TEST_IMPL(chan_wait_one_per_item) {
    /* Each item wakes one receiver and each freed slot one sender, oldest
     * first: a burst does not stampede every waiter. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_channel_t *ch = new_channel(2);
    tr_waiter_t *r[3];
    for (int i = 0; i < 3; i++) r[i] = wait_pending(ch, TR_RECV, port, (uint64_t)i + 1);
    ASSERT_EQ(tr_channel_try_send(ch, 1, NULL), TR_OK);
    expect_wake(rt, port, 1);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tr_channel_try_send(ch, 2, NULL), TR_OK);
    expect_wake(rt, port, 2);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tt_stats(rt).waiters, 1);
    ASSERT_EQ(tr_waiter_release(r[0]), 1);
    ASSERT_EQ(tr_waiter_release(r[1]), 1);
    ASSERT_EQ(tr_waiter_release(r[2]), 0);
    expect_no_waiters(rt);

    /* Full; recv_many frees two slots: two senders woken, the third not. */
    tr_waiter_t *s[3];
    for (int i = 0; i < 3; i++) s[i] = wait_pending(ch, TR_SEND, port, (uint64_t)i + 11);
    uint64_t items[4];
    size_t n;
    ASSERT_EQ(tr_channel_recv_many(ch, items, 4, &n, NULL), TR_OK);
    ASSERT_EQ(n, 2);
    expect_wake(rt, port, 11);
    expect_wake(rt, port, 12);
    tt_expect_quiet(rt, port, 0.02);
    for (int i = 0; i < 3; i++) ASSERT_EQ(tr_waiter_release(s[i]), i < 2 ? 1 : 0);
    expect_no_waiters(rt);

    /* Threads and ports share one line: a blocked thread that came first
     * gets the first item. */
    blocker b;
    blocker_start(&b, ch, TR_RECV, 0, 10.0);
    tr_waiter_t *w = wait_pending(ch, TR_RECV, port, 21);
    ASSERT_EQ(tr_channel_try_send(ch, 100, NULL), TR_OK);
    blocker_join(&b);
    ASSERT_EQ(b.rc, TR_OK);
    ASSERT_EQ(b.item, 100);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tr_channel_try_send(ch, 200, NULL), TR_OK);
    expect_wake(rt, port, 21);
    ASSERT_EQ(tr_waiter_release(w), 1);
    ASSERT_EQ(recv_one(ch), 200);

    tr_channel_release(ch);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(chan_wait_close) {
    /* Close wakes every waiter of both directions; each retries and learns
     * TR_ECLOSED (receivers after the queued items). */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_channel_t *empty = new_channel(1), *full = new_channel(1);
    ASSERT_EQ(tr_channel_try_send(full, 1, NULL), TR_OK);
    tr_waiter_t *w[4];
    w[0] = wait_pending(empty, TR_RECV, port, 1);
    w[1] = wait_pending(empty, TR_RECV, port, 2);
    w[2] = wait_pending(full, TR_SEND, port, 3);
    w[3] = wait_pending(full, TR_SEND, port, 4);
    tr_channel_close(empty, NULL);
    tr_channel_close(full, NULL);
    tt_ledger_t l;
    tt_ledger_init(&l, 4);
    ASSERT_EQ(tt_wait_finals(rt, port, 4, 5.0, tt_ledger_visit, &l), 4);
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(l.finals[i], 1);
        ASSERT_EQ(l.status[i], TR_OK);
        ASSERT_EQ(tr_waiter_release(w[i]), 1);
    }
    tt_ledger_free(&l);
    expect_no_waiters(rt);
    uint64_t item;
    ASSERT_EQ(tr_channel_try_recv(empty, &item, NULL), TR_ECLOSED);
    ASSERT_EQ(tr_channel_try_send(full, 2, NULL), TR_ECLOSED);
    ASSERT_EQ(recv_one(full), 1);
    /* Closed is "ready" for both directions: no more waiting. */
    tr_waiter_t *none = NULL;
    ASSERT_EQ(tr_channel_wait(empty, TR_RECV, port, 5, &none), TR_OK);
    ASSERT_EQ(tr_channel_wait(full, TR_SEND, port, 6, &none), TR_OK);
    ASSERT_NULL(none);
    expect_no_waiters(rt);
    tr_channel_release(empty);
    tr_channel_release(full);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(chan_notify_passes_wake) {
    /* A consumer woken for an item it will not take (its task was
     * cancelled) hands the wake on with tr_channel_notify. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_channel_t *ch = new_channel(4);
    tr_waiter_t *r1 = wait_pending(ch, TR_RECV, port, 1);
    tr_waiter_t *r2 = wait_pending(ch, TR_RECV, port, 2);
    ASSERT_EQ(tr_channel_try_send(ch, 7, NULL), TR_OK);
    expect_wake(rt, port, 1);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tr_waiter_release(r1), 1);
    tr_channel_notify(ch, TR_RECV, NULL);
    expect_wake(rt, port, 2);
    ASSERT_EQ(tr_waiter_release(r2), 1);
    ASSERT_EQ(recv_one(ch), 7);

    /* Nothing to pass on when the channel cannot serve the waiter. */
    tr_waiter_t *r3 = wait_pending(ch, TR_RECV, port, 3);
    tr_channel_notify(ch, TR_RECV, NULL); /* empty */
    tr_channel_notify(ch, TR_SEND, NULL); /* nobody waits to send */
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tr_waiter_release(r3), 0);
    for (uint64_t i = 0; i < 4; i++) ASSERT_EQ(tr_channel_try_send(ch, i, NULL), TR_OK);
    tr_waiter_t *s1 = wait_pending(ch, TR_SEND, port, 4);
    tr_channel_notify(ch, TR_SEND, NULL); /* full */
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(recv_one(ch), 0);
    expect_wake(rt, port, 4);
    ASSERT_EQ(tr_waiter_release(s1), 1);
    expect_no_waiters(rt);

    tr_channel_release(ch);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* ---- wakes that reach nobody ---------------------------------------------------
 * A waiter's port can close (its event loop is gone) before or after it is
 * woken.  The wake must then go to the next waiter, so an item never sits
 * in the channel while someone waits for one, and it must go on exactly
 * once: the closed port's owner is told (tr_waiter_release returns 0) that
 * it has nothing to pass on. */

TEST_IMPL(chan_wait_closed_port_skipped) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *p1 = tt_port(rt, 1), *p2 = tt_port(rt, 2);
    tr_channel_t *ch = new_channel(4);
    tr_waiter_t *r1 = wait_pending(ch, TR_RECV, p1, 1);
    tr_waiter_t *r2 = wait_pending(ch, TR_RECV, p2, 2);
    tr_port_close(p1);
    ASSERT_EQ(tr_channel_try_send(ch, 5, NULL), TR_OK);
    expect_wake(rt, p2, 2); /* r1 skipped */
    tr_completion_t c;
    ASSERT_EQ(tt_drain(p1, &c, 1), 0);
    expect_no_waiters(rt);
    ASSERT_EQ(tr_waiter_release(r1), 0); /* the wake went to r2 */
    ASSERT_EQ(tr_waiter_release(r2), 1);
    ASSERT_EQ(recv_one(ch), 5);

    /* Only waiters of closed ports: nobody is woken, the item stays, and
     * the next live waiter finds it at once. */
    tr_port_t *p3 = tt_port(rt, 3);
    tr_waiter_t *r3 = wait_pending(ch, TR_RECV, p3, 3);
    tr_port_close(p3);
    ASSERT_EQ(tr_channel_try_send(ch, 6, NULL), TR_OK);
    expect_no_waiters(rt);
    ASSERT_EQ(tr_waiter_release(r3), 0);
    tr_waiter_t *none = NULL;
    ASSERT_EQ(tr_channel_wait(ch, TR_RECV, p2, 4, &none), TR_OK);
    ASSERT_EQ(recv_one(ch), 6);

    tr_port_release(p3);
    tr_port_release(p1);
    tr_port_release(p2);
    tr_channel_release(ch);
    tr_runtime_release(rt);
}

TEST_IMPL(chan_wait_dropped_record) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *p1 = tt_port(rt, 1), *p2 = tt_port(rt, 2);
    tr_channel_t *ch = new_channel(4);

    /* Woken, then the port closes before the record is drained: the
     * dropped record passes the wake to the next waiter. */
    tr_waiter_t *r1 = wait_pending(ch, TR_RECV, p1, 1);
    tr_waiter_t *r2 = wait_pending(ch, TR_RECV, p2, 2);
    ASSERT_EQ(tr_channel_try_send(ch, 5, NULL), TR_OK);
    tt_expect_quiet(rt, p2, 0.02);
    tr_port_close(p1);
    expect_wake(rt, p2, 2);
    ASSERT_EQ(tr_waiter_release(r1), 0); /* passed on already */
    ASSERT_EQ(tr_waiter_release(r2), 1);
    ASSERT_EQ(recv_one(ch), 5);
    expect_no_waiters(rt);

    /* The same when the port is let go without a close: its queued records
     * go with it, and so does the port itself (a queued waiter record must
     * not keep it alive). */
    tr_port_t *p3 = tt_port(rt, 3);
    tr_waiter_t *r3 = wait_pending(ch, TR_RECV, p3, 3);
    tr_waiter_t *r4 = wait_pending(ch, TR_RECV, p2, 4);
    ASSERT_EQ(tr_channel_try_send(ch, 6, NULL), TR_OK);
    ASSERT_EQ(tt_stats(rt).ports, 3);
    tr_port_release(p3);
    ASSERT_EQ(tt_stats(rt).ports, 2);
    expect_wake(rt, p2, 4);
    ASSERT_EQ(tr_waiter_release(r3), 0);
    ASSERT_EQ(tr_waiter_release(r4), 1);
    ASSERT_EQ(recv_one(ch), 6);

    /* A wake the owner already took (release said 1, so it passed it on
     * itself) is not passed on a second time when its record is dropped
     * later: r6 is woken by the notify, r7 by nothing. */
    tr_port_t *p4 = tt_port(rt, 4);
    tr_waiter_t *r5 = wait_pending(ch, TR_RECV, p4, 5);
    tr_waiter_t *r6 = wait_pending(ch, TR_RECV, p2, 6);
    tr_waiter_t *r7 = wait_pending(ch, TR_RECV, p2, 7);
    ASSERT_EQ(tr_channel_try_send(ch, 7, NULL), TR_OK);
    ASSERT_EQ(tr_waiter_release(r5), 1);
    tr_channel_notify(ch, TR_RECV, NULL);
    expect_wake(rt, p2, 6);
    tr_port_close(p4); /* drops r5's record */
    tt_expect_quiet(rt, p2, 0.02);
    ASSERT_EQ(tr_waiter_release(r6), 1);
    ASSERT_EQ(recv_one(ch), 7);
    ASSERT_EQ(tr_waiter_release(r7), 0);
    expect_no_waiters(rt);

    /* Let go after the wake and before the drain, then the port goes too:
     * nothing is left behind (the sanitizers and valgrind check). */
    tr_port_t *p5 = tt_port(rt, 5);
    tr_waiter_t *r8 = wait_pending(ch, TR_RECV, p5, 8);
    ASSERT_EQ(tr_channel_try_send(ch, 8, NULL), TR_OK);
    ASSERT_EQ(tr_waiter_release(r8), 1);
    tr_channel_notify(ch, TR_RECV, NULL); /* nobody waits: nothing happens */
    tr_port_release(p5);
    ASSERT_EQ(recv_one(ch), 8);

    tr_port_release(p4);
    tr_port_release(p1);
    tr_port_release(p2);
    ASSERT(tt_wait_idle(rt, 5.0)); /* close messages hold their ports until they ran */
    ASSERT_EQ(tt_stats(rt).ports, 0);
    tr_channel_release(ch);
    tr_runtime_release(rt);
}

TEST_IMPL(chan_wait_shutdown) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_channel_t *ch = new_channel(1);
    tr_waiter_t *early = wait_pending(ch, TR_RECV, port, 1);
    tr_runtime_shutdown(rt);

    /* No new waiter once the runtime is shut down; a ready channel needs
     * none. */
    tr_waiter_t *w = NULL;
    ASSERT_EQ(tr_channel_wait(ch, TR_RECV, port, 2, &w), TR_ESHUTDOWN);
    ASSERT_NULL(w);
    /* A waiter queued before is not an op: the shutdown leaves it queued
     * (and counted), for its owner to release. */
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.waiters, 1);
    ASSERT_EQ(s.pending, 1);
    /* Its port is still open, so a send still wakes it. */
    ASSERT_EQ(tr_channel_try_send(ch, 1, NULL), TR_OK);
    expect_wake(rt, port, 1);
    expect_no_waiters(rt);
    ASSERT_EQ(tr_waiter_release(early), 1);
    ASSERT_EQ(tr_channel_wait(ch, TR_RECV, port, 3, &w), TR_OK);
    ASSERT_EQ(tr_channel_wait(ch, TR_SEND, port, 4, &w), TR_ESHUTDOWN);
    ASSERT_NULL(w);
    tr_channel_release(ch);
    tr_port_release(port);
    tr_runtime_release(rt);

    /* Waiters outlive what they wait on: runtime and channel let go first,
     * the waiter (holding both) last. */
    rt = tt_runtime(1);
    port = tt_port(rt, 1);
    ch = new_channel(1);
    w = wait_pending(ch, TR_RECV, port, 1);
    tr_runtime_release(rt);
    tr_port_release(port);
    tr_channel_release(ch);
    ASSERT_EQ(tr_waiter_release(w), 0); /* frees the channel, port and runtime */
}

/* ---- wakes buffers, receipts, unget, release_cell ------------------------------ */

TEST_IMPL(chan_wakes) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *p1 = tt_port(rt, 11), *p2 = tt_port(rt, 12);
    tr_channel_t *ch = new_channel(1);
    tr_wakes_t wk;
    uint64_t ids[4];
    tr_completion_t c;

    /* A send that wakes a port receiver lists its port instead of telling
     * the dispatcher. */
    tr_waiter_t *r = wait_pending(ch, TR_RECV, p1, 1);
    ASSERT_EQ(tr_channel_try_send(ch, 5, &wk), TR_OK);
    ASSERT_EQ(wk.n, 1);
    ASSERT_EQ(wk.ids[0], 11);
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 0.05), 0);
    ASSERT_EQ(tt_drain(p1, &c, 1), 1);
    ASSERT_EQ(c.token, 1);
    ASSERT_EQ(tr_waiter_release(r), 1);
    /* A receive that wakes a port sender: the same. */
    tr_waiter_t *s = wait_pending(ch, TR_SEND, p2, 2);
    uint64_t item = 0;
    ASSERT_EQ(tr_channel_try_recv(ch, &item, &wk), TR_OK);
    ASSERT_EQ(item, 5);
    ASSERT_EQ(wk.n, 1);
    ASSERT_EQ(wk.ids[0], 12);
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 0.05), 0);
    ASSERT_EQ(tt_drain(p2, &c, 1), 1);
    ASSERT_EQ(c.token, 2);
    ASSERT_EQ(tr_waiter_release(s), 1);
    /* Nothing woken: emptied all the same. */
    wk.n = 99;
    ASSERT_EQ(tr_channel_try_send(ch, 6, &wk), TR_OK);
    ASSERT_EQ(wk.n, 0);
    wk.n = 99;
    ASSERT_EQ(tr_channel_take(ch, 0, &wk), 6);
    ASSERT_EQ(wk.n, 0);
    /* With NULL, the dispatcher is told, as before. */
    r = wait_pending(ch, TR_RECV, p1, 3);
    ASSERT_EQ(tr_channel_try_send(ch, 7, NULL), TR_OK);
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 5.0), 1);
    ASSERT_EQ(ids[0], 11);
    expect_wake(rt, p1, 3);
    ASSERT_EQ(tr_waiter_release(r), 1);
    /* A port already made ready (its record not drained) is not listed
     * again: it has no new edge. */
    r = wait_pending(ch, TR_SEND, p1, 4);
    tr_waiter_t *r2 = wait_pending(ch, TR_SEND, p1, 5);
    ASSERT_EQ(tr_channel_take(ch, 0, &wk), 7);
    ASSERT_EQ(wk.n, 1);
    tr_channel_close(ch, &wk); /* wakes r2, onto the same, still ready port */
    ASSERT_EQ(wk.n, 0);
    ASSERT_EQ(tt_drain(p1, &c, 1), 1);
    ASSERT_EQ(c.token, 4);
    ASSERT_EQ(tt_drain(p1, &c, 1), 1);
    ASSERT_EQ(c.token, 5);
    ASSERT_EQ(tr_waiter_release(r), 1);
    ASSERT_EQ(tr_waiter_release(r2), 1);
    expect_no_waiters(rt);

    tr_channel_release(ch);
    tr_port_release(p1);
    tr_port_release(p2);
    tr_runtime_release(rt);
}

TEST_IMPL(chan_wakes_overflow) {
    /* More ports made ready than the buffer holds: the first TR_WAKES_MAX
     * are listed (in wake order), the rest go to the dispatcher. */
    enum { N = TR_WAKES_MAX + 3 };
    tr_runtime_t *rt = tt_runtime(1);
    tr_channel_t *ch = new_channel(1);
    tr_port_t *ports[N];
    tr_waiter_t *ws[N];
    for (int i = 0; i < N; i++) {
        ports[i] = tt_port(rt, 100 + (uint64_t)i);
        ws[i] = wait_pending(ch, TR_RECV, ports[i], 1 + (uint64_t)i);
    }
    tr_wakes_t wk;
    tr_channel_close(ch, &wk);
    ASSERT_EQ(wk.n, TR_WAKES_MAX);
    for (int i = 0; i < TR_WAKES_MAX; i++) ASSERT_EQ(wk.ids[i], 100 + i);
    bool told[N] = {false};
    int ntold = 0;
    double deadline = tt_now() + 5.0;
    while (ntold < N - TR_WAKES_MAX) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        uint64_t ids[N];
        int n = tr_runtime_wait_ready(rt, ids, N, 0.1);
        ASSERT_GE(n, 0);
        for (int k = 0; k < n; k++) {
            ASSERT_GE(ids[k], 100 + TR_WAKES_MAX);
            ASSERT_LT(ids[k], 100 + N);
            ASSERT(!told[ids[k] - 100]);
            told[ids[k] - 100] = true;
            ntold++;
        }
    }
    uint64_t ids[N];
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, N, 0.05), 0); /* the listed ones never come */
    for (int i = 0; i < N; i++) {
        tr_completion_t c;
        ASSERT_EQ(tt_drain(ports[i], &c, 1), 1);
        ASSERT_EQ(c.token, 1 + (uint64_t)i);
        ASSERT_EQ(tr_waiter_release(ws[i]), 1);
        tr_port_release(ports[i]);
    }
    expect_no_waiters(rt);
    tr_channel_release(ch);
    tr_runtime_release(rt);
}

typedef struct receipt_thread {
    tr_channel_t *ch;
    int sent_here;
} receipt_thread;

static void *receipt_main(void *arg) {
    receipt_thread *t = arg;
    ASSERT_EQ(tr_channel_try_send(t->ch, 42, NULL), TR_OK);
    t->sent_here = tr_channel_sent(t->ch, 42);
    return NULL;
}

TEST_IMPL(chan_receipts) {
    tr_channel_t *a = new_channel(2), *b = new_channel(2);
    ASSERT_EQ(tr_channel_sent(a, 0), 0); /* nothing put yet */
    ASSERT_EQ(tr_channel_taken(a), 0);

    /* sent: the last successful put, channel and item; reading keeps it. */
    ASSERT_EQ(tr_channel_try_send(a, 5, NULL), TR_OK);
    ASSERT_EQ(tr_channel_sent(a, 5), 1);
    ASSERT_EQ(tr_channel_sent(a, 5), 1);
    ASSERT_EQ(tr_channel_sent(a, 6), 0);
    ASSERT_EQ(tr_channel_sent(b, 5), 0);
    ASSERT_EQ(tr_channel_send_blocking(b, 7, 1.0, NULL), TR_OK);
    ASSERT_EQ(tr_channel_sent(a, 5), 0); /* the last put went to b */
    ASSERT_EQ(tr_channel_sent(b, 7), 1);
    /* A failed put changes nothing. */
    ASSERT_EQ(tr_channel_try_send(a, 8, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(a, 9, NULL), TR_EFULL);
    ASSERT_EQ(tr_channel_sent(a, 9), 0);
    ASSERT_EQ(tr_channel_sent(a, 8), 1);
    /* Another thread's puts are its own. */
    receipt_thread t = {.ch = b};
    pthread_t tid;
    ASSERT_EQ(pthread_create(&tid, NULL, receipt_main, &t), 0);
    ASSERT_EQ(pthread_join(tid, NULL), 0);
    ASSERT_EQ(t.sent_here, 1);
    ASSERT_EQ(tr_channel_sent(b, 42), 0);
    ASSERT_EQ(tr_channel_sent(a, 8), 1);

    /* taken: the last item taken, if from that channel; read once. */
    ASSERT_EQ(tr_channel_take(a, 0, NULL), 5);
    ASSERT_EQ(tr_channel_taken(a), 5);
    ASSERT_EQ(tr_channel_taken(a), 0); /* forgotten */
    uint64_t item = 0;
    ASSERT_EQ(tr_channel_try_recv(a, &item, NULL), TR_OK);
    ASSERT_EQ(item, 8);
    ASSERT_EQ(tr_channel_taken(b), 0); /* another channel: 0, and forgotten */
    ASSERT_EQ(tr_channel_taken(a), 0);
    ASSERT_EQ(tr_channel_recv_blocking(b, &item, 1.0, NULL), TR_OK);
    ASSERT_EQ(item, 7);
    ASSERT_EQ(tr_channel_try_recv(a, &item, NULL), TR_EEMPTY); /* no take: receipt stays */
    ASSERT_EQ(tr_channel_taken(b), 7);
    /* recv_many: the last item of the batch. */
    ASSERT_EQ(tr_channel_try_send(a, 10, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(a, 11, NULL), TR_OK);
    uint64_t items[4];
    size_t n = 0;
    ASSERT_EQ(tr_channel_recv_many(a, items, 4, &n, NULL), TR_OK);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(tr_channel_taken(a), 11);
    tr_channel_release(a);
    tr_channel_release(b);
}

TEST_IMPL(chan_unget) {
    tr_channel_t *ch = new_channel(2);
    ASSERT_EQ(tr_channel_unget(ch, NULL, 0, NULL), TR_OK); /* nothing */
    ASSERT_EQ(tr_channel_try_send(ch, 1, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 2, NULL), TR_OK);
    /* Ahead of everything, in order, past capacity. */
    const uint64_t back[3] = {10, 11, 12};
    ASSERT_EQ(tr_channel_unget(ch, back, 3, NULL), TR_OK);
    ASSERT_EQ(tr_channel_len(ch), 5);
    ASSERT_EQ(tr_channel_try_send(ch, 3, NULL), TR_EFULL);
    tr_waiter_t *sw = NULL;
    ASSERT_EQ(tr_channel_wait_thread(ch, TR_SEND, &sw), TR_PENDING);
    ASSERT_EQ(recv_one(ch), 10);
    ASSERT_EQ(recv_one(ch), 11);
    ASSERT_EQ(recv_one(ch), 12);
    /* Two left: still full, so no sender was woken. */
    ASSERT_EQ(tr_waiter_wait(sw, 0.0), TR_TIMEDOUT);
    ASSERT_EQ(tr_channel_try_send(ch, 3, NULL), TR_EFULL);
    ASSERT_EQ(recv_one(ch), 1);
    ASSERT_EQ(tr_waiter_wait(sw, 1.0), TR_OK); /* a slot is free now */
    ASSERT_EQ(tr_waiter_release(sw), 1);
    ASSERT_EQ(tr_channel_try_send(ch, 3, NULL), TR_OK);
    ASSERT_EQ(recv_one(ch), 2);
    ASSERT_EQ(recv_one(ch), 3);

    /* Into a channel whose ring was never allocated, and across the
     * ring's wrap-around, many at once. */
    tr_channel_t *one = new_channel(1);
    uint64_t many[100];
    for (int i = 0; i < 100; i++) many[i] = 1000 + (uint64_t)i;
    ASSERT_EQ(tr_channel_unget(one, many, 3, NULL), TR_OK);
    ASSERT_EQ(recv_one(one), 1000);
    ASSERT_EQ(tr_channel_unget(one, many + 50, 50, NULL), TR_OK);
    for (int i = 0; i < 50; i++) ASSERT_EQ(recv_one(one), 1050 + (uint64_t)i);
    ASSERT_EQ(recv_one(one), 1001);
    ASSERT_EQ(recv_one(one), 1002);
    uint64_t item;
    ASSERT_EQ(tr_channel_try_recv(one, &item, NULL), TR_EEMPTY);

    /* Closed: accepted, and receivable before the channel reads as done. */
    ASSERT_EQ(tr_channel_try_send(one, 7, NULL), TR_OK);
    tr_channel_close(one, NULL);
    ASSERT_EQ(tr_channel_unget(one, many, 2, NULL), TR_OK);
    ASSERT_EQ(recv_one(one), 1000);
    ASSERT_EQ(recv_one(one), 1001);
    ASSERT_EQ(recv_one(one), 7);
    ASSERT_EQ(tr_channel_try_recv(one, &item, NULL), TR_ECLOSED);
    tr_channel_release(one);
    tr_channel_release(ch);
}

TEST_IMPL(chan_unget_wakes) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *p1 = tt_port(rt, 21), *p2 = tt_port(rt, 22), *p3 = tt_port(rt, 23);
    tr_channel_t *ch = new_channel(1);
    tr_waiter_t *r1 = wait_pending(ch, TR_RECV, p1, 1);
    tr_waiter_t *r2 = wait_pending(ch, TR_RECV, p2, 2);
    tr_waiter_t *r3 = wait_pending(ch, TR_RECV, p3, 3);
    /* One receiver per item, oldest first. */
    const uint64_t back[2] = {5, 6};
    tr_wakes_t wk;
    uint64_t ids[4];
    ASSERT_EQ(tr_channel_unget(ch, back, 2, &wk), TR_OK);
    ASSERT_EQ(wk.n, 2);
    ASSERT_EQ(wk.ids[0], 21);
    ASSERT_EQ(wk.ids[1], 22);
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 0.05), 0);
    tr_completion_t c;
    ASSERT_EQ(tt_drain(p1, &c, 1), 1);
    ASSERT_EQ(tt_drain(p2, &c, 1), 1);
    ASSERT_EQ(tt_drain(p3, &c, 1), 0);
    ASSERT_EQ(tr_waiter_release(r1), 1);
    ASSERT_EQ(tr_waiter_release(r2), 1);
    ASSERT_EQ(recv_one(ch), 5);
    ASSERT_EQ(recv_one(ch), 6);
    /* With NULL: through the dispatcher. */
    ASSERT_EQ(tr_channel_unget(ch, back, 1, NULL), TR_OK);
    expect_wake(rt, p3, 3);
    ASSERT_EQ(tr_waiter_release(r3), 1);
    ASSERT_EQ(recv_one(ch), 5);
    expect_no_waiters(rt);
    /* A blocked thread receiver gets an item put back. */
    blocker b;
    blocker_start(&b, ch, TR_RECV, 0, 5.0);
    ASSERT_EQ(tr_channel_unget(ch, back + 1, 1, NULL), TR_OK);
    blocker_join(&b);
    ASSERT_EQ(b.rc, TR_OK);
    ASSERT_EQ(b.item, 6);
    tr_channel_release(ch);
    tr_port_release(p1);
    tr_port_release(p2);
    tr_port_release(p3);
    tr_runtime_release(rt);
}

TEST_IMPL(waiter_release_cell) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_channel_t *ch = new_channel(1);
    tr_waiter_t *cell = NULL;
    ASSERT_EQ(tr_waiter_release_cell(&cell), -1); /* never set */
    /* Still queued: 0, and the cell is emptied. */
    ASSERT_EQ(tr_channel_wait(ch, TR_RECV, port, 1, &cell), TR_PENDING);
    ASSERT_EQ(tr_waiter_release_cell(&cell), 0);
    ASSERT_NULL(cell);
    ASSERT_EQ(tr_waiter_release_cell(&cell), -1);
    /* Woken: 1 once, then -1. */
    ASSERT_EQ(tr_channel_wait_thread(ch, TR_RECV, &cell), TR_PENDING);
    ASSERT_EQ(tr_channel_try_send(ch, 5, NULL), TR_OK);
    ASSERT_EQ(tr_waiter_release_cell(&cell), 1);
    ASSERT_EQ(tr_waiter_release_cell(&cell), -1);
    ASSERT_EQ(tr_waiter_release_cell(&cell), -1);
    ASSERT_EQ(recv_one(ch), 5);
    expect_no_waiters(rt);
    tr_channel_release(ch);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(chan_waiting) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *p1 = tt_port(rt, 31);
    tr_channel_t *ch = new_channel(1);
    ASSERT_EQ(tr_channel_waiting(ch, TR_RECV), 0);
    ASSERT_EQ(tr_channel_waiting(ch, TR_SEND), 0);
    ASSERT_EQ(tr_channel_waiting(ch, 7), 0);
    tr_waiter_t *r1 = wait_pending(ch, TR_RECV, p1, 1);
    ASSERT_EQ(tr_channel_waiting(ch, TR_RECV), 1);
    ASSERT_EQ(tr_channel_waiting(ch, TR_SEND), 0);
    /* Woken: out of the queue, nobody waits any more. */
    ASSERT_EQ(tr_channel_try_send(ch, 9, NULL), TR_OK);
    ASSERT_EQ(tr_channel_waiting(ch, TR_RECV), 0);
    expect_wake(rt, p1, 1);
    ASSERT_EQ(tr_waiter_release(r1), 1);
    /* Full: a blocked sender is a waiter too. */
    blocker b;
    blocker_start(&b, ch, TR_SEND, 10, 5.0);
    ASSERT_EQ(tr_channel_waiting(ch, TR_SEND), 1);
    ASSERT_EQ(recv_one(ch), 9);
    blocker_join(&b);
    ASSERT_EQ(b.rc, TR_OK);
    ASSERT_EQ(tr_channel_waiting(ch, TR_SEND), 0);
    ASSERT_EQ(recv_one(ch), 10);
    tr_channel_release(ch);
    tr_port_release(p1);
    tr_runtime_release(rt);
}
