/*
 * test-channel.c - channel_demo through the public API, and the internal
 * channel (tr__chan_*) directly, single-threaded and under contention.
 */
#include "internal.h"
#include "task.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- channel_demo ------------------------------------------------------------ */

static void check_messages(const tr_completion_t *c, uint64_t n) {
    ASSERT_EQ(c->final, 1);
    ASSERT_EQ(c->status, TR_OK);
    ASSERT_EQ(c->value, n);
    ASSERT_NOT_NULL(c->payload);
    const tr_strvec_t *v = c->payload;
    ASSERT_EQ(v->len, n);
    for (uint64_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "Message %" PRIu64, i);
        ASSERT_STR_EQ(v->items[i], want);
    }
}

static void run_channel_demo(uint64_t messages, size_t capacity, double interval) {
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *port = tt_port(rt, 1);
    double t0 = tt_now();
    ASSERT_EQ(tr_channel_demo(rt, port, 1, messages, capacity, interval), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 30.0);
    /* the producer sleeps after every send, the last one included */
    ASSERT_DBL_CMP(tt_now() - t0, >=, (double)messages * interval * 0.9);
    check_messages(&c, messages);
    tr_payload_free(c.payload);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(channel_demo_zero) { run_channel_demo(0, 32, 0.0005); }

TEST_IMPL(channel_demo_five) { run_channel_demo(5, 32, 0.0005); }

TEST_IMPL(channel_demo_above_capacity) {
    run_channel_demo(100, 32, 0.0005);
    /* No pause: the producer keeps meeting a full buffer or a waiting
     * consumer, so hand-overs and blocked sends both happen. */
    run_channel_demo(tt_scaled(2000), 1, 0.0);
    run_channel_demo(tt_scaled(2000), 3, 0.0);
}

TEST_IMPL(channel_demo_invalid) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_channel_demo(rt, port, 1, 5, 0, 0.0), TR_EINVAL);
    ASSERT_EQ(tr_channel_demo(rt, port, 1, 5, 4, NAN), TR_EINVAL);
    ASSERT_EQ(tr_channel_demo(rt, port, 1, 5, 4, -1.0), TR_EINVAL);
    ASSERT_EQ(tr_channel_demo(rt, port, 1, UINT64_MAX, 4, 0.0), TR_EINVAL);
    ASSERT_EQ(tr_channel_demo(rt, port, 0, 5, 4, 0.0), TR_EINVAL);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.submitted, 0);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(channel_demo_cancel) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_completion_t c;

    /* Mid-way: some messages were received, the producer is pausing. */
    ASSERT_EQ(tr_channel_demo(rt, port, 1, 1000, 32, 0.001), TR_OK);
    ASSERT_EQ(tr_sleep(rt, port, 2, 0.03), TR_OK);
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.token, 2);
    ASSERT_EQ(tr_cancel(rt, 1), TR_OK);
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.token, 1);
    ASSERT_EQ(c.status, TR_CANCELLED);
    ASSERT_NULL(c.payload); /* the partial result is freed, not delivered */

    /* At once, and in a storm with no pauses, so the cancel lands in every
     * state: send blocked, receive blocked, wake-up fed but not yet run. */
    size_t n = tt_scaled(200);
    for (size_t i = 1; i <= n; i++) {
        ASSERT_EQ(tr_channel_demo(rt, port, 100 + i, 50 + i % 7, 1 + i % 3, 0.0), TR_OK);
        if (i % 2) ASSERT_EQ(tr_cancel(rt, 100 + i), TR_OK);
        if (i > 5) ASSERT_EQ(tr_cancel(rt, 100 + i - 5), TR_OK);
    }
    for (size_t got = 0; got < n; got++) {
        tt_wait_one(rt, port, &c, 10.0);
        ASSERT(c.token > 100 && c.token <= 100 + n);
        if (c.status == TR_OK) {
            check_messages(&c, 50 + (c.token - 100) % 7);
            tr_payload_free(c.payload);
        } else {
            ASSERT_EQ(c.status, TR_CANCELLED);
            ASSERT_NULL(c.payload);
        }
    }
    tt_expect_quiet(rt, port, 0.02);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt); /* the sanitizers check that no message leaked */
}

TEST_IMPL(channel_demo_port_close) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    for (uint64_t i = 1; i <= 20; i++)
        ASSERT_EQ(tr_channel_demo(rt, port, i, 100 * i, 4, i % 2 ? 0.0 : 0.001), TR_OK);
    tt_sleep(0.01);
    tr_port_close(port);
    ASSERT(tt_wait_idle(rt, 5.0));
    tr_completion_t c;
    ASSERT_EQ(tr_port_drain(port, &c, 1), 0);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* ---- the channel itself ---------------------------------------------------- */

#define ITEM(k) ((void *)(uintptr_t)(k))
#define KEY(p) ((uintptr_t)(p))

/* For single-threaded tests: a wake-up only needs counting. */
typedef struct counted {
    tr__chan_waiter_t w;
    int wakes;
} counted;

static void count_wake(tr__chan_waiter_t *w) { ((counted *)w->ctx)->wakes++; }

static void counted_init(counted *c, void *item) {
    memset(c, 0, sizeof *c);
    c->w.item = item;
    c->w.wake = count_wake;
    c->w.ctx = c;
}

TEST_IMPL(chan_new_invalid) {
    tr__chan_t *ch = NULL;
    ASSERT_EQ(tr__chan_new(0, NULL, &ch), TR_EINVAL);
    ASSERT_EQ(tr__chan_new(SIZE_MAX, NULL, &ch), TR_EINVAL);
    ASSERT_NULL(ch);
    tr__chan_free(NULL);
}

TEST_IMPL(chan_fifo_try) {
    tr__chan_t *ch;
    ASSERT_EQ(tr__chan_new(4, NULL, &ch), TR_OK);
    void *item;
    ASSERT_EQ(tr__chan_try_recv(ch, &item), TR__PENDING);
    for (uintptr_t k = 1; k <= 4; k++) ASSERT_EQ(tr__chan_try_send(ch, ITEM(k)), TR_OK);
    ASSERT_EQ(tr__chan_try_send(ch, ITEM(5)), TR__PENDING); /* full */
    ASSERT_EQ(tr__chan_len(ch), 4);
    /* Keep it between half and full for a while, so the ring wraps around
     * many times: the order must survive. */
    uintptr_t next_in = 5, next_out = 1;
    for (int round = 0; round < 1000; round++) {
        int k = 1 + round % 3;
        for (int i = 0; i < k; i++) {
            ASSERT_EQ(tr__chan_try_recv(ch, &item), TR_OK);
            ASSERT_EQ(KEY(item), next_out++);
        }
        for (int i = 0; i < k; i++) ASSERT_EQ(tr__chan_try_send(ch, ITEM(next_in++)), TR_OK);
        ASSERT_EQ(tr__chan_len(ch), 4);
    }
    while (tr__chan_try_recv(ch, &item) == TR_OK) ASSERT_EQ(KEY(item), next_out++);
    ASSERT_EQ(next_out, next_in);
    ASSERT_EQ(tr__chan_len(ch), 0);
    tr__chan_free(ch);
}

TEST_IMPL(chan_close_semantics) {
    tr__chan_t *ch;
    void *item;

    /* Buffered items stay receivable after close; sends fail. */
    ASSERT_EQ(tr__chan_new(2, NULL, &ch), TR_OK);
    ASSERT_EQ(tr__chan_try_send(ch, ITEM(1)), TR_OK);
    ASSERT_EQ(tr__chan_try_send(ch, ITEM(2)), TR_OK);
    tr__chan_close(ch);
    tr__chan_close(ch); /* idempotent */
    ASSERT_EQ(tr__chan_try_send(ch, ITEM(3)), TR_ECLOSED);
    counted s;
    counted_init(&s, ITEM(3));
    ASSERT_EQ(tr__chan_send(ch, &s.w), TR_ECLOSED);
    ASSERT_EQ(KEY(s.w.item), 3); /* still the caller's */
    ASSERT(!s.w.queued);
    ASSERT_EQ(tr__chan_try_recv(ch, &item), TR_OK);
    ASSERT_EQ(KEY(item), 1);
    counted r;
    counted_init(&r, NULL);
    ASSERT_EQ(tr__chan_recv(ch, &r.w), TR_OK);
    ASSERT_EQ(KEY(r.w.item), 2);
    ASSERT_EQ(tr__chan_try_recv(ch, &item), TR_ECLOSED);
    ASSERT_EQ(tr__chan_recv(ch, &r.w), TR_ECLOSED);
    ASSERT_EQ(s.wakes + r.wakes, 0); /* nothing waited, nothing woken */
    tr__chan_free(ch);

    /* Waiting receivers are woken once, with TR_ECLOSED. */
    ASSERT_EQ(tr__chan_new(1, NULL, &ch), TR_OK);
    counted r1, r2;
    counted_init(&r1, NULL);
    counted_init(&r2, NULL);
    ASSERT_EQ(tr__chan_recv(ch, &r1.w), TR__PENDING);
    ASSERT_EQ(tr__chan_recv(ch, &r2.w), TR__PENDING);
    ASSERT(r1.w.queued && r2.w.queued);
    tr__chan_close(ch);
    ASSERT_EQ(r1.wakes, 1);
    ASSERT_EQ(r2.wakes, 1);
    ASSERT_EQ(r1.w.status, TR_ECLOSED);
    ASSERT_EQ(r2.w.status, TR_ECLOSED);
    ASSERT(!r1.w.queued && !r2.w.queued);
    ASSERT(!tr__chan_cancel(ch, &r1.w)); /* already completed */
    tr__chan_close(ch);
    ASSERT_EQ(r1.wakes, 1);
    tr__chan_free(ch);

    /* Waiting senders are woken with TR_ECLOSED and keep their items; what
     * was buffered before the close is still delivered. */
    ASSERT_EQ(tr__chan_new(1, NULL, &ch), TR_OK);
    ASSERT_EQ(tr__chan_try_send(ch, ITEM(10)), TR_OK);
    counted s1;
    counted_init(&s1, ITEM(11));
    ASSERT_EQ(tr__chan_send(ch, &s1.w), TR__PENDING);
    tr__chan_close(ch);
    ASSERT_EQ(s1.wakes, 1);
    ASSERT_EQ(s1.w.status, TR_ECLOSED);
    ASSERT_EQ(KEY(s1.w.item), 11);
    ASSERT_EQ(tr__chan_try_recv(ch, &item), TR_OK);
    ASSERT_EQ(KEY(item), 10);
    ASSERT_EQ(tr__chan_try_recv(ch, &item), TR_ECLOSED);
    tr__chan_free(ch);
}

TEST_IMPL(chan_waiter_handover) {
    tr__chan_t *ch;
    void *item;
    ASSERT_EQ(tr__chan_new(2, NULL, &ch), TR_OK);

    /* A send meeting a waiting receiver hands the item straight over. */
    counted r;
    counted_init(&r, NULL);
    ASSERT_EQ(tr__chan_recv(ch, &r.w), TR__PENDING);
    ASSERT_EQ(tr__chan_try_send(ch, ITEM(1)), TR_OK);
    ASSERT_EQ(r.wakes, 1);
    ASSERT_EQ(r.w.status, TR_OK);
    ASSERT_EQ(KEY(r.w.item), 1);
    ASSERT_EQ(tr__chan_len(ch), 0);
    counted s;
    counted_init(&s, NULL);
    ASSERT_EQ(tr__chan_recv(ch, &r.w), TR__PENDING);
    s.w.item = ITEM(2);
    ASSERT_EQ(tr__chan_send(ch, &s.w), TR_OK); /* the waiter form, same thing */
    ASSERT_EQ(r.wakes, 2);
    ASSERT_EQ(KEY(r.w.item), 2);
    ASSERT_EQ(s.wakes, 0);

    /* Senders of a full channel wait in line; each receive moves the
     * oldest waiting item into the buffer, so the order is A B C D. */
    ASSERT_EQ(tr__chan_try_send(ch, ITEM(0xA)), TR_OK);
    ASSERT_EQ(tr__chan_try_send(ch, ITEM(0xB)), TR_OK);
    counted sc, sd;
    counted_init(&sc, ITEM(0xC));
    counted_init(&sd, ITEM(0xD));
    ASSERT_EQ(tr__chan_send(ch, &sc.w), TR__PENDING);
    ASSERT_EQ(tr__chan_send(ch, &sd.w), TR__PENDING);
    ASSERT_EQ(tr__chan_try_recv(ch, &item), TR_OK);
    ASSERT_EQ(KEY(item), 0xA);
    ASSERT_EQ(sc.wakes, 1);
    ASSERT_EQ(sc.w.status, TR_OK);
    ASSERT_EQ(sd.wakes, 0);
    ASSERT_EQ(tr__chan_len(ch), 2);
    counted_init(&r, NULL);
    ASSERT_EQ(tr__chan_recv(ch, &r.w), TR_OK); /* an item is there: no wait */
    ASSERT_EQ(KEY(r.w.item), 0xB);
    ASSERT_EQ(r.wakes, 0);
    ASSERT_EQ(sd.wakes, 1);
    const uintptr_t rest[] = {0xC, 0xD};
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(tr__chan_try_recv(ch, &item), TR_OK);
        ASSERT_EQ(KEY(item), rest[i]);
    }
    ASSERT_EQ(tr__chan_try_recv(ch, &item), TR__PENDING);
    tr__chan_free(ch);
}

TEST_IMPL(chan_cancel_waiter) {
    tr__chan_t *ch;
    void *item;
    ASSERT_EQ(tr__chan_new(1, NULL, &ch), TR_OK);

    /* Three receivers wait; the middle one gives up and is skipped. */
    counted r[3];
    for (int i = 0; i < 3; i++) {
        counted_init(&r[i], NULL);
        ASSERT_EQ(tr__chan_recv(ch, &r[i].w), TR__PENDING);
    }
    ASSERT(tr__chan_cancel(ch, &r[1].w));
    ASSERT(!r[1].w.queued);
    ASSERT(!tr__chan_cancel(ch, &r[1].w)); /* not queued any more */
    ASSERT_EQ(tr__chan_try_send(ch, ITEM(1)), TR_OK);
    ASSERT_EQ(tr__chan_try_send(ch, ITEM(2)), TR_OK);
    ASSERT_EQ(KEY(r[0].w.item), 1);
    ASSERT_EQ(KEY(r[2].w.item), 2);
    ASSERT_EQ(r[0].wakes + r[1].wakes + r[2].wakes, 2);
    ASSERT_EQ(r[1].wakes, 0);
    ASSERT(!tr__chan_cancel(ch, &r[0].w)); /* completed: too late to cancel */
    ASSERT_EQ(tr__chan_len(ch), 0);

    /* The only waiter cancelled: the list is empty again and works. */
    ASSERT_EQ(tr__chan_recv(ch, &r[0].w), TR__PENDING);
    ASSERT(tr__chan_cancel(ch, &r[0].w));
    ASSERT_EQ(tr__chan_try_send(ch, ITEM(3)), TR_OK); /* buffered: nobody waits */
    ASSERT_EQ(tr__chan_len(ch), 1);

    /* A cancelled sender keeps its item; the next one in line moves up. */
    counted s1, s2;
    counted_init(&s1, ITEM(4));
    counted_init(&s2, ITEM(5));
    ASSERT_EQ(tr__chan_send(ch, &s1.w), TR__PENDING);
    ASSERT_EQ(tr__chan_send(ch, &s2.w), TR__PENDING);
    ASSERT(tr__chan_cancel(ch, &s1.w));
    ASSERT_EQ(tr__chan_try_recv(ch, &item), TR_OK);
    ASSERT_EQ(KEY(item), 3);
    ASSERT_EQ(s2.wakes, 1);
    ASSERT_EQ(s1.wakes, 0);
    ASSERT_EQ(tr__chan_try_recv(ch, &item), TR_OK);
    ASSERT_EQ(KEY(item), 5);
    ASSERT_EQ(KEY(s1.w.item), 4);
    ASSERT_EQ(tr__chan_try_recv(ch, &item), TR__PENDING);
    tr__chan_free(ch);
}

static atomic_int freed_items;

static void count_free(void *item) {
    atomic_fetch_add(&freed_items, 1);
    free(item);
}

static void *new_item(int v) {
    int *p = malloc(sizeof *p);
    ASSERT_NOT_NULL(p);
    *p = v;
    return p;
}

TEST_IMPL(chan_free_items) {
    tr__chan_t *ch;
    ASSERT_EQ(tr__chan_new(4, count_free, &ch), TR_OK);
    void *item;
    /* Wrap the ring first, so the leftovers straddle its end. */
    for (int i = 0; i < 3; i++) ASSERT_EQ(tr__chan_try_send(ch, new_item(i)), TR_OK);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(tr__chan_try_recv(ch, &item), TR_OK);
        ASSERT_EQ(*(int *)item, i);
        free(item);
    }
    for (int i = 0; i < 3; i++) ASSERT_EQ(tr__chan_try_send(ch, new_item(i)), TR_OK);
    tr__chan_close(ch);
    tr__chan_free(ch);
    ASSERT_EQ(atomic_load(&freed_items), 3);
}

/* ---- many threads ----------------------------------------------------------
 * Producers and consumers block through the waiter API, with a condvar
 * behind wake().  One consumer also gives up on waits after a millisecond and
 * cancels them, which races cancel against wake: the item must then be
 * delivered by the wake, never lost and never twice. */

typedef struct sync_waiter {
    tr__chan_waiter_t w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool woken;
} sync_waiter;

static void sync_wake(tr__chan_waiter_t *w) {
    sync_waiter *s = w->ctx;
    /* Signal under the lock: once woken is seen, s may be reused at once. */
    pthread_mutex_lock(&s->mu);
    s->woken = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void sync_init(sync_waiter *s) {
    memset(&s->w, 0, sizeof s->w);
    s->w.wake = sync_wake;
    s->w.ctx = s;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
}

static void sync_destroy(sync_waiter *s) {
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

static void sync_wait(sync_waiter *s) {
    pthread_mutex_lock(&s->mu);
    while (!s->woken) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* Wait up to 1 ms; false if it timed out without a wake. */
static bool sync_wait_briefly(sync_waiter *s) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 1000000;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->woken && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT) {
    }
    bool woken = s->woken;
    pthread_mutex_unlock(&s->mu);
    return woken;
}

enum { STRESS_PRODUCERS = 4, STRESS_CONSUMERS = 2 };

typedef struct stress {
    tr__chan_t *ch;
    size_t per_producer;
    atomic_uint *seen;        /* per item: times received */
    atomic_size_t cancels;    /* waits given up in time */
    atomic_size_t lost_races; /* cancels that came too late */
} stress;

typedef struct stress_thread {
    stress *st;
    int index;
    pthread_t tid;
    size_t received;
} stress_thread;

static void *producer_main(void *arg) {
    stress_thread *me = arg;
    stress *st = me->st;
    sync_waiter s;
    sync_init(&s);
    for (size_t i = 0; i < st->per_producer; i++) {
        /* items are 1-based numbers, so none is NULL */
        s.w.item = ITEM((size_t)me->index * st->per_producer + i + 1);
        s.woken = false;
        int rc = tr__chan_send(st->ch, &s.w);
        if (rc == TR__PENDING) {
            sync_wait(&s);
            rc = s.w.status;
        }
        ASSERT_EQ(rc, TR_OK);
    }
    sync_destroy(&s);
    return NULL;
}

static void *consumer_main(void *arg) {
    stress_thread *me = arg;
    stress *st = me->st;
    bool impatient = me->index == 1;
    size_t last[STRESS_PRODUCERS] = {0}; /* per producer: the last item seen */
    sync_waiter s;
    sync_init(&s);
    for (;;) {
        s.woken = false;
        int rc = tr__chan_recv(st->ch, &s.w);
        if (rc == TR__PENDING) {
            if (impatient && !sync_wait_briefly(&s)) {
                if (tr__chan_cancel(st->ch, &s.w)) {
                    atomic_fetch_add(&st->cancels, 1);
                    continue; /* nothing was taken: ask again */
                }
                atomic_fetch_add(&st->lost_races, 1); /* the wake is on its way */
            }
            sync_wait(&s);
            rc = s.w.status;
        }
        if (rc == TR_ECLOSED) break;
        ASSERT_EQ(rc, TR_OK);
        size_t k = (size_t)KEY(s.w.item);
        ASSERT(k >= 1 && k <= STRESS_PRODUCERS * st->per_producer);
        size_t p = (k - 1) / st->per_producer;
        ASSERT_GT(k, last[p]); /* each producer's items arrive in its order */
        last[p] = k;
        atomic_fetch_add(&st->seen[k - 1], 1);
        me->received++;
    }
    sync_destroy(&s);
    return NULL;
}

TEST_IMPL(chan_stress_mpmc) {
    stress st = {.per_producer = tt_scaled(50000)};
    size_t total = STRESS_PRODUCERS * st.per_producer;
    st.seen = calloc(total, sizeof *st.seen);
    ASSERT_NOT_NULL(st.seen);
    ASSERT_EQ(tr__chan_new(64, NULL, &st.ch), TR_OK);

    stress_thread prod[STRESS_PRODUCERS], cons[STRESS_CONSUMERS];
    for (int i = 0; i < STRESS_CONSUMERS; i++) {
        cons[i] = (stress_thread){&st, i, 0, 0};
        ASSERT_EQ(pthread_create(&cons[i].tid, NULL, consumer_main, &cons[i]), 0);
    }
    for (int i = 0; i < STRESS_PRODUCERS; i++) {
        prod[i] = (stress_thread){&st, i, 0, 0};
        ASSERT_EQ(pthread_create(&prod[i].tid, NULL, producer_main, &prod[i]), 0);
    }
    for (int i = 0; i < STRESS_PRODUCERS; i++) ASSERT_EQ(pthread_join(prod[i].tid, NULL), 0);
    tr__chan_close(st.ch); /* consumers drain what is left, then see TR_ECLOSED */
    size_t received = 0;
    for (int i = 0; i < STRESS_CONSUMERS; i++) {
        ASSERT_EQ(pthread_join(cons[i].tid, NULL), 0);
        received += cons[i].received;
    }
    ASSERT_EQ(received, total);
    for (size_t k = 0; k < total; k++) ASSERT_EQ(atomic_load(&st.seen[k]), 1);
    ASSERT_EQ(tr__chan_len(st.ch), 0);
    tr__chan_free(st.ch);
    free(st.seen);
}
