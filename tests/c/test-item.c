/*
 * test-item.c - value items (tr_item_*, tr_items_*): int64s and byte
 * strings that C and the Python shim both understand, and the channel calls
 * that carry them (tr_channel_send_value / _recv_value / _took_value) next
 * to opaque keys.
 *
 * Encoding (item.h): bit 63 clear is an opaque key; bit 63 set is a value,
 * an int in [-2**61, 2**61) inline, anything else in a heap box.  Whether a
 * value is boxed is visible through tr_items_classify (TR_ITEMS_INTS vs
 * TR_ITEMS_BOXED), which is how these tests tell the two apart.
 */
#include "task.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SETTLE TT_SETTLE
#define P61 (INT64_C(1) << 61)

static tr_channel_t *new_channel(size_t capacity) {
    tr_channel_t *ch = NULL;
    ASSERT_EQ(tr_channel_new(capacity, &ch), TR_OK);
    ASSERT_NOT_NULL(ch);
    return ch;
}

/* A value item for v, failing the test if it could not be made. */
static uint64_t int_item(int64_t v) {
    uint64_t item = tr_item_int(v);
    ASSERT_NE(item, 0);
    return item;
}

static uint64_t bytes_item(const void *data, size_t len) {
    uint64_t item = tr_item_bytes(data, len);
    ASSERT_NE(item, 0);
    return item;
}

static int classify1(uint64_t item) { return tr_items_classify(&item, 1); }

/* item is an int value holding v, inline or boxed as told. */
static void expect_int(uint64_t item, int64_t v, bool boxed) {
    ASSERT_NE(item & (UINT64_C(1) << 63), 0);
    ASSERT_EQ(tr_item_kind(item), TR_ITEM_INT);
    ASSERT_EQ(classify1(item), boxed ? TR_ITEMS_BOXED : TR_ITEMS_INTS);
    ASSERT(tr_item_get_int(item) == v);
    size_t len = 99;
    ASSERT_NULL(tr_item_get_bytes(item, &len));
    ASSERT_EQ(len, 0);
}

/* item is a bytes value holding data[0..len). */
static void expect_bytes(uint64_t item, const void *data, size_t len) {
    ASSERT_NE(item & (UINT64_C(1) << 63), 0);
    ASSERT_EQ(tr_item_kind(item), TR_ITEM_BYTES);
    ASSERT_EQ(classify1(item), TR_ITEMS_BOXED);
    ASSERT_EQ(tr_item_get_int(item), 0);
    size_t got = (size_t)-1;
    const void *p = tr_item_get_bytes(item, &got);
    ASSERT_NOT_NULL(p); /* even for b"": a bytes item always has its box */
    ASSERT_EQ(got, len);
    if (len) ASSERT_EQ(memcmp(p, data, len), 0);
    ASSERT(tr_item_get_bytes(item, NULL) == p); /* len may be NULL */
}

/* ---- the items themselves -------------------------------------------------- */

TEST_IMPL(item_int_inline) {
    /* Every int of [-2**61, 2**61) lives in the item: no box, exact round
     * trip, sign included, at both ends of the range. */
    const int64_t vals[] = {0, 1, -1, 42, -42, INT32_MAX, INT32_MIN, (int64_t)UINT32_MAX,
                            P61 - 1, P61 - 2, -P61, -P61 + 1, P61 / 2, -(P61 / 2)};
    uint64_t items[sizeof vals / sizeof vals[0]];
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        items[i] = int_item(vals[i]);
        expect_int(items[i], vals[i], false);
        /* Made the same way twice: the same bits (nothing allocated). */
        ASSERT_EQ(tr_item_int(vals[i]), items[i]);
        for (size_t j = 0; j < i; j++) ASSERT_NE(items[i], items[j]);
    }
    /* Freeing an inline int does nothing, as often as you like. */
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        tr_item_free(items[i]);
        tr_item_free(items[i]);
        expect_int(items[i], vals[i], false);
    }
}

TEST_IMPL(item_int_boxed) {
    /* Just outside the inline range, and the int64 extremes: boxed, still
     * exact.  (With ASan and valgrind, each box must be freed exactly once.) */
    const int64_t vals[] = {P61, -P61 - 1, INT64_MAX, INT64_MIN, INT64_MAX - 1,
                            INT64_MIN + 1, P61 + 1, -P61 - 2, INT64_C(1) << 62,
                            -(INT64_C(1) << 62), (INT64_C(1) << 62) - 1};
    enum { N = sizeof vals / sizeof vals[0] };
    uint64_t items[N];
    for (size_t i = 0; i < N; i++) {
        items[i] = int_item(vals[i]);
        expect_int(items[i], vals[i], true);
        for (size_t j = 0; j < i; j++) ASSERT_NE(items[i], items[j]);
    }
    /* The boundary pairs, side by side: one step apart, one inline, one not. */
    expect_int(int_item(P61 - 1), P61 - 1, false);
    expect_int(int_item(-P61), -P61, false);
    for (size_t i = 0; i < N; i++) tr_item_free(items[i]);
}

TEST_IMPL(item_bytes) {
    /* Empty, from NULL or not: a bytes item (not an int, not "nothing"). */
    uint64_t e1 = bytes_item(NULL, 0);
    uint64_t e2 = bytes_item("x", 0);
    expect_bytes(e1, NULL, 0);
    expect_bytes(e2, NULL, 0);
    ASSERT_NE(e1, e2); /* two boxes */
    /* NULL with a length is refused. */
    ASSERT_EQ(tr_item_bytes(NULL, 3), 0);

    /* A copy: the source may change or go right after. */
    char src[] = "hello\0world"; /* an inner NUL is just a byte */
    uint64_t small = bytes_item(src, sizeof src);
    memset(src, 'z', sizeof src);
    expect_bytes(small, "hello\0world", sizeof src);

    /* Large: 3 MiB of a pattern, every byte checked. */
    size_t big_len = (size_t)3 << 20;
    unsigned char *big = malloc(big_len);
    ASSERT_NOT_NULL(big);
    for (size_t i = 0; i < big_len; i++) big[i] = (unsigned char)(i * 131 + (i >> 9));
    uint64_t large = bytes_item(big, big_len);
    expect_bytes(large, big, big_len);
    const unsigned char *in = tr_item_get_bytes(large, NULL);
    ASSERT(in != big);
    free(big);

    tr_item_free(e1);
    tr_item_free(e2);
    tr_item_free(small);
    tr_item_free(large);
}

TEST_IMPL(item_keys) {
    /* Below 2**63: opaque keys, which the value functions leave alone. */
    const uint64_t keys[] = {0, 1, 42, UINT64_C(1) << 61, UINT64_C(1) << 62,
                             (UINT64_C(1) << 62) | 12345, (UINT64_C(1) << 63) - 1};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        uint64_t k = keys[i];
        ASSERT_EQ(tr_item_kind(k), TR_ITEM_KEY);
        ASSERT_EQ(classify1(k), TR_ITEMS_KEYS);
        ASSERT_EQ(tr_item_get_int(k), 0);
        size_t len = 99;
        ASSERT_NULL(tr_item_get_bytes(k, &len));
        ASSERT_EQ(len, 0);
        tr_item_free(k); /* nothing: a key is no pointer (ASan would see a bad free) */
    }
}

TEST_IMPL(items_batch) {
    uint64_t items[8];
    items[0] = int_item(7);
    items[1] = 1234; /* a key */
    items[2] = int_item(INT64_MIN);
    items[3] = bytes_item("abc", 3);
    items[4] = int_item(-P61);
    items[5] = int_item(P61);
    items[6] = 0; /* a key too */
    items[7] = int_item(-1);

    ASSERT_EQ(tr_items_classify(NULL, 8), 0);
    ASSERT_EQ(tr_items_classify(items, 0), 0);
    ASSERT_EQ(tr_items_classify(items, 1), TR_ITEMS_INTS);
    ASSERT_EQ(tr_items_classify(items, 2), TR_ITEMS_INTS | TR_ITEMS_KEYS);
    ASSERT_EQ(tr_items_classify(items + 1, 1), TR_ITEMS_KEYS);
    ASSERT_EQ(tr_items_classify(items + 2, 1), TR_ITEMS_BOXED);
    ASSERT_EQ(tr_items_classify(items + 3, 1), TR_ITEMS_BOXED);
    ASSERT_EQ(tr_items_classify(items + 4, 1), TR_ITEMS_INTS);
    ASSERT_EQ(tr_items_classify(items, 8), TR_ITEMS_INTS | TR_ITEMS_KEYS | TR_ITEMS_BOXED);
    ASSERT_EQ(tr_items_classify(items + 2, 2), TR_ITEMS_BOXED);

    /* ints: the int of each, 0 for keys and bytes; nothing for NULLs. */
    int64_t out[8];
    for (int i = 0; i < 8; i++) out[i] = 555;
    tr_items_ints(items, 8, out);
    const int64_t want[8] = {7, 0, INT64_MIN, 0, -P61, P61, 0, -1};
    for (int i = 0; i < 8; i++) ASSERT(out[i] == want[i]);
    out[0] = 555;
    tr_items_ints(items, 0, out);
    tr_items_ints(NULL, 8, out);
    tr_items_ints(items, 8, NULL);
    ASSERT_EQ(out[0], 555);

    /* free: every box once (keys and inline ints are nothing to free),
     * then done is set; done may be NULL, items may be NULL. */
    int done = 0;
    tr_items_free(NULL, 8, &done);
    ASSERT_EQ(done, 1);
    done = 0;
    tr_items_free(items, 0, &done);
    ASSERT_EQ(done, 1);
    done = 0;
    tr_items_free(items, 4, &done); /* 7, a key, INT64_MIN, "abc" */
    ASSERT_EQ(done, 1);
    tr_items_free(items + 4, 4, NULL); /* -2**61, 2**61, a key, -1 */
}

/* ---- channels carrying values ------------------------------------------------ */

/* Receive one item with tr_channel_recv_value, expecting rc. */
static uint64_t recv_value(tr_channel_t *ch, double timeout, int rc) {
    uint64_t item = 0xdead;
    ASSERT_EQ(tr_channel_recv_value(ch, &item, timeout, NULL), rc);
    if (rc != TR_OK) ASSERT_EQ(item, 0xdead); /* untouched */
    return item;
}

TEST_IMPL(chan_value_basic) {
    tr_channel_t *ch = new_channel(4);
    uint64_t item = 0;
    uint64_t a = int_item(-5), b = int_item(INT64_MAX), c = bytes_item("xyz", 3);

    /* Argument checks: a key is no value; NaN is no timeout. */
    ASSERT_EQ(tr_channel_send_value(NULL, a, 0.0, NULL), TR_EINVAL);
    ASSERT_EQ(tr_channel_send_value(ch, 7, 0.0, NULL), TR_EINVAL);
    ASSERT_EQ(tr_channel_send_value(ch, 0, -1.0, NULL), TR_EINVAL);
    ASSERT_EQ(tr_channel_send_value(ch, a, NAN, NULL), TR_EINVAL);
    ASSERT_EQ(tr_channel_recv_value(NULL, &item, 0.0, NULL), TR_EINVAL);
    ASSERT_EQ(tr_channel_recv_value(ch, NULL, 0.0, NULL), TR_EINVAL);
    ASSERT_EQ(tr_channel_recv_value(ch, &item, NAN, NULL), TR_EINVAL);
    ASSERT_EQ(tr_channel_len(ch), 0);

    /* Timeout 0: no wait at all, TR_EEMPTY (not TR_TIMEDOUT). */
    recv_value(ch, 0.0, TR_EEMPTY);

    tr_wakes_t wk;
    wk.n = 99;
    ASSERT_EQ(tr_channel_send_value(ch, a, 0.0, &wk), TR_OK);
    ASSERT_EQ(wk.n, 0); /* reset even when nobody was woken */
    ASSERT_EQ(tr_channel_send_value(ch, b, 0.0, NULL), TR_OK);
    ASSERT_EQ(tr_channel_send_value(ch, c, 1.0, NULL), TR_OK);
    ASSERT_EQ(tr_channel_sent(ch, c), 1); /* the put receipt, as for any put */
    ASSERT_EQ(tr_channel_len(ch), 3);

    /* In order, the very items that were sent (the box travels, no copy). */
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), a);
    ASSERT_EQ(recv_value(ch, 1.0, TR_OK), b);
    ASSERT_EQ(recv_value(ch, -1.0, TR_OK), c);
    expect_int(a, -5, false);
    expect_int(b, INT64_MAX, true);
    expect_bytes(c, "xyz", 3);
    recv_value(ch, 0.0, TR_EEMPTY);

    /* Full, timeout 0: TR_EFULL, and the caller keeps the item. */
    for (int i = 0; i < 4; i++) ASSERT_EQ(tr_channel_send_value(ch, int_item(i), 0.0, NULL), TR_OK);
    ASSERT_EQ(tr_channel_send_value(ch, b, 0.0, NULL), TR_EFULL);
    expect_int(b, INT64_MAX, true);
    for (int i = 0; i < 4; i++) expect_int(recv_value(ch, 0.0, TR_OK), i, false);

    /* The value receive is a receive like any other: plain receivers get
     * value items too (the shim decodes them), and value senders mix with
     * plain ones in one FIFO. */
    ASSERT_EQ(tr_channel_send_value(ch, b, 0.0, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, int_item(8), NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_recv(ch, &item, NULL), TR_OK);
    ASSERT_EQ(item, b);
    expect_int(recv_value(ch, 0.0, TR_OK), 8, false);

    tr_item_free(a);
    tr_item_free(b);
    tr_item_free(c);
    tr_channel_release(ch);
}

TEST_IMPL(chan_value_timeouts) {
    tr_channel_t *ch = new_channel(1);
    /* Empty, > 0: waits that long, then TR_TIMEDOUT. */
    double t0 = tt_now();
    recv_value(ch, 0.05, TR_TIMEDOUT);
    double took = tt_now() - t0;
    ASSERT_DBL_CMP(took, >=, 0.045);
    ASSERT_DBL_CMP(took, <, 2.0);
    /* Full, > 0: the same for a send; the item stays the caller's. */
    uint64_t first = int_item(1), big = int_item(INT64_MIN);
    ASSERT_EQ(tr_channel_send_value(ch, first, 0.0, NULL), TR_OK);
    t0 = tt_now();
    ASSERT_EQ(tr_channel_send_value(ch, big, 0.05, NULL), TR_TIMEDOUT);
    took = tt_now() - t0;
    ASSERT_DBL_CMP(took, >=, 0.045);
    ASSERT_DBL_CMP(took, <, 2.0);
    ASSERT_EQ(tr_channel_len(ch), 1);
    expect_int(big, INT64_MIN, true);
    /* Ready: no wait, whatever the timeout. */
    t0 = tt_now();
    ASSERT_EQ(recv_value(ch, 30.0, TR_OK), first);
    ASSERT_EQ(tr_channel_send_value(ch, big, -1.0, NULL), TR_OK);
    ASSERT_EQ(recv_value(ch, -1.0, TR_OK), big);
    ASSERT_DBL_CMP(tt_now() - t0, <, 1.0);
    tr_item_free(big);
    tr_channel_release(ch);
}

/* A thread making one value call (send or receive) with a timeout. */
typedef struct vblocker {
    tr_channel_t *ch;
    int dir;       /* TR_SEND: send_value(item); TR_RECV: recv_value; 2: recv_blocking */
    uint64_t item;
    double timeout;
    int rc;
    double took;
    atomic_bool started, done;
    pthread_t tid;
} vblocker;

static void *vblocker_main(void *arg) {
    vblocker *b = arg;
    atomic_store(&b->started, true);
    double t0 = tt_now();
    switch (b->dir) {
    case TR_SEND: b->rc = tr_channel_send_value(b->ch, b->item, b->timeout, NULL); break;
    case TR_RECV: b->rc = tr_channel_recv_value(b->ch, &b->item, b->timeout, NULL); break;
    default: b->rc = tr_channel_recv_blocking(b->ch, &b->item, b->timeout, NULL); break;
    }
    b->took = tt_now() - t0;
    atomic_store(&b->done, true);
    return NULL;
}

static void vblocker_start(vblocker *b, tr_channel_t *ch, int dir, uint64_t item, double timeout) {
    b->ch = ch;
    b->dir = dir;
    b->item = item;
    b->timeout = timeout;
    b->rc = -1;
    atomic_init(&b->started, false);
    atomic_init(&b->done, false);
    tt_start_settled(&b->tid, vblocker_main, b, &b->started);
}

static void vblocker_join(vblocker *b) { ASSERT_EQ(pthread_join(b->tid, NULL), 0); }

TEST_IMPL(chan_value_blocking) {
    tr_channel_t *ch = new_channel(1);
    vblocker b;
    /* Negative timeout: waits without limit until a value comes. */
    vblocker_start(&b, ch, TR_RECV, 0, -1.0);
    ASSERT(!atomic_load(&b.done));
    uint64_t v = int_item(P61);
    ASSERT_EQ(tr_channel_send_value(ch, v, 0.0, NULL), TR_OK);
    vblocker_join(&b);
    ASSERT_EQ(b.rc, TR_OK);
    ASSERT_EQ(b.item, v);
    ASSERT_DBL_CMP(b.took, >=, SETTLE * 0.9);
    expect_int(b.item, P61, true);
    tr_item_free(b.item);

    /* A sender with a timeout > 0 waits for room and gets it. */
    uint64_t one = int_item(1), two = bytes_item("two", 3);
    ASSERT_EQ(tr_channel_send_value(ch, one, 0.0, NULL), TR_OK);
    vblocker_start(&b, ch, TR_SEND, two, 10.0);
    ASSERT(!atomic_load(&b.done));
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), one);
    vblocker_join(&b);
    ASSERT_EQ(b.rc, TR_OK);
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), two);
    tr_item_free(two);

    /* A sender without limit is woken by the close, and keeps its item. */
    ASSERT_EQ(tr_channel_send_value(ch, one, 0.0, NULL), TR_OK);
    uint64_t three = int_item(INT64_MAX);
    vblocker_start(&b, ch, TR_SEND, three, -1.0);
    tr_channel_close(ch, NULL);
    vblocker_join(&b);
    ASSERT_EQ(b.rc, TR_ECLOSED);
    expect_int(three, INT64_MAX, true);
    tr_item_free(three);
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), one);
    tr_channel_release(ch);
}

TEST_IMPL(chan_value_keys_fifo) {
    /* Opaque keys and values share one FIFO.  A value receiver takes values
     * only: an opaque key at the head is left there (TR_ETYPE), in its
     * place, for a receiver that can take it. */
    tr_channel_t *ch = new_channel(8);
    uint64_t v1 = int_item(11), v2 = bytes_item("v2", 2), v3 = int_item(-P61 - 1);
    ASSERT_EQ(tr_channel_try_send(ch, 100, NULL), TR_OK); /* a key */
    ASSERT_EQ(tr_channel_send_value(ch, v1, 0.0, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 101, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 102, NULL), TR_OK);
    ASSERT_EQ(tr_channel_send_value(ch, v2, 0.0, NULL), TR_OK);
    ASSERT_EQ(tr_channel_send_value(ch, v3, 0.0, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 0, NULL), TR_OK); /* key 0 is a key too */

    /* Whatever the timeout, a key at the head answers at once. */
    double t0 = tt_now();
    recv_value(ch, 0.0, TR_ETYPE);
    recv_value(ch, 5.0, TR_ETYPE);
    recv_value(ch, -1.0, TR_ETYPE);
    ASSERT_DBL_CMP(tt_now() - t0, <, 1.0);
    ASSERT_EQ(tr_channel_len(ch), 7);
    ASSERT_EQ(tr_channel_taken(ch), 0); /* nothing was taken */

    uint64_t item = 0;
    ASSERT_EQ(tr_channel_try_recv(ch, &item, NULL), TR_OK);
    ASSERT_EQ(item, 100);
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), v1);
    recv_value(ch, 0.0, TR_ETYPE);
    ASSERT_EQ(tr_channel_take(ch, 999, NULL), 101);
    recv_value(ch, 0.0, TR_ETYPE);
    ASSERT_EQ(tr_channel_take(ch, 999, NULL), 102);
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), v2);
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), v3);
    recv_value(ch, 0.0, TR_ETYPE);
    ASSERT_EQ(tr_channel_take(ch, 999, NULL), 0);
    recv_value(ch, 0.0, TR_EEMPTY);
    expect_int(v1, 11, false);
    expect_bytes(v2, "v2", 2);
    expect_int(v3, -P61 - 1, true);
    tr_item_free(v2);
    tr_item_free(v3);
    tr_channel_release(ch);
}

TEST_IMPL(chan_value_etype_passes_wake) {
    /* A C receiver blocked for a value is woken by a key it cannot take:
     * it must pass that wake on, or the key would sit in the channel while
     * a receiver that could take it (a Python one) sleeps. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_channel_t *ch = new_channel(4);

    /* 1. A blocked thread that takes anything, queued behind it. */
    vblocker cv, any;
    vblocker_start(&cv, ch, TR_RECV, 0, 10.0);
    vblocker_start(&any, ch, 2, 0, 10.0);
    ASSERT_EQ(tr_channel_try_send(ch, 77, NULL), TR_OK); /* wakes cv, the oldest */
    vblocker_join(&cv);
    ASSERT_EQ(cv.rc, TR_ETYPE);
    ASSERT_DBL_CMP(cv.took, <, 5.0);
    vblocker_join(&any);
    ASSERT_EQ(any.rc, TR_OK);
    ASSERT_EQ(any.item, 77);
    ASSERT_DBL_CMP(any.took, <, 5.0);
    ASSERT_EQ(tr_channel_len(ch), 0);

    /* 2. A port waiter (an event loop's receiver) queued behind it. */
    vblocker_start(&cv, ch, TR_RECV, 0, 10.0);
    tr_waiter_t *w = NULL;
    ASSERT_EQ(tr_channel_wait(ch, TR_RECV, port, 5, &w), TR_PENDING);
    ASSERT_EQ(tr_channel_try_send(ch, 78, NULL), TR_OK);
    vblocker_join(&cv);
    ASSERT_EQ(cv.rc, TR_ETYPE);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.token, 5);
    ASSERT_EQ(c.status, TR_OK);
    ASSERT_EQ(tr_waiter_release(w), 1);
    ASSERT_EQ(tr_channel_len(ch), 1); /* the key is still there, first */
    ASSERT_EQ(tr_channel_take(ch, 0, NULL), 78);

    /* 3. A value behind the key: the value receiver does not skip ahead. */
    uint64_t v = int_item(5);
    ASSERT_EQ(tr_channel_try_send(ch, 79, NULL), TR_OK);
    ASSERT_EQ(tr_channel_send_value(ch, v, 0.0, NULL), TR_OK);
    recv_value(ch, 1.0, TR_ETYPE);
    ASSERT_EQ(tr_channel_take(ch, 0, NULL), 79);
    ASSERT_EQ(recv_value(ch, 1.0, TR_OK), v);

    tt_expect_quiet(rt, port, 0.02);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.waiters, 0);
    ASSERT_EQ(s.pending, 0);
    tr_channel_release(ch);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(chan_value_close) {
    tr_channel_t *ch = new_channel(4);
    uint64_t a = int_item(1), b = bytes_item("bb", 2), late = int_item(INT64_MIN);
    ASSERT_EQ(tr_channel_send_value(ch, a, 0.0, NULL), TR_OK);
    ASSERT_EQ(tr_channel_try_send(ch, 55, NULL), TR_OK); /* a key between */
    ASSERT_EQ(tr_channel_send_value(ch, b, 0.0, NULL), TR_OK);
    tr_channel_close(ch, NULL);
    /* Sends fail at once, whatever the timeout; the caller keeps its item. */
    double t0 = tt_now();
    ASSERT_EQ(tr_channel_send_value(ch, late, 0.0, NULL), TR_ECLOSED);
    ASSERT_EQ(tr_channel_send_value(ch, late, 5.0, NULL), TR_ECLOSED);
    ASSERT_EQ(tr_channel_send_value(ch, late, -1.0, NULL), TR_ECLOSED);
    expect_int(late, INT64_MIN, true);
    tr_item_free(late);
    /* Queued items stay receivable, in order, keys in their place... */
    ASSERT_EQ(recv_value(ch, -1.0, TR_OK), a);
    recv_value(ch, -1.0, TR_ETYPE);
    ASSERT_EQ(tr_channel_take(ch, 0, NULL), 55);
    ASSERT_EQ(recv_value(ch, 5.0, TR_OK), b);
    expect_bytes(b, "bb", 2);
    tr_item_free(b);
    /* ...then TR_ECLOSED at once, for every timeout. */
    recv_value(ch, 0.0, TR_ECLOSED);
    recv_value(ch, 5.0, TR_ECLOSED);
    recv_value(ch, -1.0, TR_ECLOSED);
    ASSERT_DBL_CMP(tt_now() - t0, <, 1.0);
    tr_channel_release(ch);

    /* A receiver blocked without limit is woken by the close. */
    ch = new_channel(1);
    vblocker r;
    vblocker_start(&r, ch, TR_RECV, 0, -1.0);
    tr_channel_close(ch, NULL);
    vblocker_join(&r);
    ASSERT_EQ(r.rc, TR_ECLOSED);
    ASSERT_DBL_CMP(r.took, <, 5.0);
    tr_channel_release(ch);
}

TEST_IMPL(chan_value_took_receipt) {
    tr_channel_t *ch = new_channel(4), *other = new_channel(4);
    /* A value receive leaves the take receipt as any take does... */
    uint64_t a = int_item(INT64_MAX);
    ASSERT_EQ(tr_channel_send_value(ch, a, 0.0, NULL), TR_OK);
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), a);
    ASSERT_EQ(tr_channel_taken(ch), a);
    ASSERT_EQ(tr_channel_taken(ch), 0); /* read once */

    /* ...and took_value, the shim's "done with it", forgets it (and frees
     * the box: ASan and valgrind check that). */
    ASSERT_EQ(tr_channel_send_value(ch, a, 0.0, NULL), TR_OK);
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), a);
    tr_channel_took_value(ch, a);
    ASSERT_EQ(tr_channel_taken(ch), 0);

    /* It forgets only a receipt that names (ch, item): another item, or
     * another channel, leaves it. */
    uint64_t b = int_item(-P61 - 5), c = int_item(3), d = bytes_item("d", 1);
    ASSERT_EQ(tr_channel_send_value(ch, b, 0.0, NULL), TR_OK);
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), b);
    tr_channel_took_value(ch, c);     /* another item (inline: nothing to free) */
    tr_channel_took_value(other, d);  /* another channel (d is freed all the same) */
    ASSERT_EQ(tr_channel_taken(ch), b);

    /* An inline int: the receipt goes too, nothing is freed. */
    ASSERT_EQ(tr_channel_send_value(ch, c, 0.0, NULL), TR_OK);
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), c);
    tr_channel_took_value(ch, c);
    ASSERT_EQ(tr_channel_taken(ch), 0);
    expect_int(c, 3, false);

    /* A key left at the head (TR_ETYPE) is no take: the receipt stays. */
    ASSERT_EQ(tr_channel_send_value(ch, b, 0.0, NULL), TR_OK);
    ASSERT_EQ(recv_value(ch, 0.0, TR_OK), b);
    ASSERT_EQ(tr_channel_try_send(ch, 9, NULL), TR_OK);
    recv_value(ch, 0.0, TR_ETYPE);
    ASSERT_EQ(tr_channel_taken(ch), b);
    tr_channel_took_value(ch, b);
    ASSERT_EQ(tr_channel_take(ch, 0, NULL), 9);
    tr_channel_release(ch);
    tr_channel_release(other);
}

TEST_IMPL(chan_value_release_frees) {
    /* A channel owns the values queued in it: its last reference frees
     * their boxes (not the keys, which are their owner's business).  With
     * ASan and valgrind a leak or a bad free fails the test; in a plain
     * glibc build the heap's own count must go back. */
    size_t base = tt_heap_in_use();
    tr_channel_t *ch = new_channel(64);
    size_t big_len = (size_t)1 << 20;
    unsigned char *big = calloc(1, big_len);
    ASSERT_NOT_NULL(big);
    big[big_len - 1] = 0x5a;
    for (int i = 0; i < 8; i++) {
        ASSERT_EQ(tr_channel_send_value(ch, int_item(INT64_MIN + i), 0.0, NULL), TR_OK);
        ASSERT_EQ(tr_channel_send_value(ch, int_item(i), 0.0, NULL), TR_OK); /* inline */
        ASSERT_EQ(tr_channel_try_send(ch, 1000 + (uint64_t)i, NULL), TR_OK); /* keys */
        size_t len = i == 7 ? big_len : (size_t)i; /* the last one stays in */
        ASSERT_EQ(tr_channel_send_value(ch, bytes_item(big, len), 0.0, NULL), TR_OK);
    }
    free(big);
    /* Take a few from the head and put them back: the ring wraps. */
    uint64_t head[3];
    for (int i = 0; i < 3; i++) ASSERT_EQ(tr_channel_try_recv(ch, &head[i], NULL), TR_OK);
    ASSERT_EQ(tr_channel_unget(ch, head, 3, NULL), TR_OK);

    /* Another holder: the first release frees nothing; what is queued is
     * still intact (a freed box would not read back). */
    tr_channel_ref(ch);
    size_t full = tt_heap_in_use();
    tr_channel_release(ch);
    ASSERT_EQ(tr_channel_len(ch), 32);
    ASSERT_EQ(tr_channel_closed(ch), 0);
    uint64_t item = 0;
    ASSERT_EQ(tr_channel_recv_value(ch, &item, 0.0, NULL), TR_OK);
    expect_int(item, INT64_MIN, true);
    tr_item_free(item);
    ASSERT_EQ(tr_channel_recv_value(ch, &item, 0.0, NULL), TR_OK);
    expect_int(item, 0, false);
    recv_value(ch, 0.0, TR_ETYPE);
    ASSERT_EQ(tr_channel_take(ch, 0, NULL), 1000);
    ASSERT_EQ(tr_channel_recv_value(ch, &item, 0.0, NULL), TR_OK);
    expect_bytes(item, NULL, 0);
    tr_item_free(item);
    ASSERT_EQ(tr_channel_len(ch), 28);
    tr_channel_close(ch, NULL); /* closed or not, its items go with it */

    /* The last reference: 7 boxed ints and 7 bytes boxes are freed, the
     * 1 MiB one among them.  (Some slack: freed small chunks that glibc
     * keeps in its per-thread cache still count as in use.) */
    tr_channel_release(ch);
    size_t end = tt_heap_in_use();
    if (full > base + big_len) ASSERT_LE(end, base + 16384);
}

/* ---- many threads ------------------------------------------------------------
 * C producers send ints (half boxed) and byte strings with every timeout
 * kind, C consumers take them with recv_value; a key producer and a plain
 * consumer mix in.  Every value arrives exactly once, its box intact, and
 * every key is taken by the plain consumer (value receivers leave keys). */

enum { VS_PRODUCERS = 3, VS_CONSUMERS = 2 };

typedef struct vstress {
    tr_channel_t *ch;
    size_t per;              /* items per producer */
    atomic_uint *seen;       /* per (producer, seq) */
    atomic_size_t received, keys_taken, etype;
} vstress;

typedef struct vs_thread {
    vstress *st;
    int index;
    pthread_t tid;
} vs_thread;

/* Producer p's seq-th value: an int (boxed for odd seq) or bytes. */
static uint64_t vs_make(int p, size_t seq) {
    int64_t id = (int64_t)p << 32 | (int64_t)seq;
    if (p == 2) return bytes_item(&id, sizeof id);
    return int_item(seq % 2 ? INT64_MIN + id : id);
}

static void vs_check(vstress *st, uint64_t item) {
    int64_t id;
    if (tr_item_kind(item) == TR_ITEM_BYTES) {
        size_t len = 0;
        const void *p = tr_item_get_bytes(item, &len);
        ASSERT_EQ(len, sizeof id);
        memcpy(&id, p, sizeof id);
        ASSERT_EQ(id >> 32, 2);
    } else {
        ASSERT_EQ(tr_item_kind(item), TR_ITEM_INT);
        id = tr_item_get_int(item);
        bool boxed = classify1(item) == TR_ITEMS_BOXED;
        if (boxed) id -= INT64_MIN;
        ASSERT_EQ((uint64_t)(id & 0xffffffff) % 2, boxed ? 1 : 0);
    }
    int p = (int)(id >> 32);
    size_t seq = (size_t)(id & 0xffffffff);
    ASSERT(p >= 0 && p < VS_PRODUCERS && seq < st->per);
    ASSERT_EQ(atomic_fetch_add(&st->seen[(size_t)p * st->per + seq], 1), 0);
    atomic_fetch_add(&st->received, 1);
    tr_item_free(item);
}

static void *vs_producer(void *arg) {
    vs_thread *me = arg;
    vstress *st = me->st;
    for (size_t i = 0; i < st->per; i++) {
        uint64_t item = vs_make(me->index, i);
        int rc;
        switch (me->index) {
        case 0: rc = tr_channel_send_value(st->ch, item, -1.0, NULL); break;
        case 1: /* short timeouts race with wakes */
            while ((rc = tr_channel_send_value(st->ch, item, 0.001, NULL)) == TR_TIMEDOUT) {
            }
            break;
        default: /* polls */
            while ((rc = tr_channel_send_value(st->ch, item, 0.0, NULL)) == TR_EFULL) sched_yield();
            break;
        }
        ASSERT_EQ(rc, TR_OK);
        if (i % 64 == 0) ASSERT_EQ(tr_channel_send_blocking(st->ch, 1 + i, -1.0, NULL), TR_OK);
    }
    return NULL;
}

static void *vs_consumer(void *arg) {
    vs_thread *me = arg;
    vstress *st = me->st;
    for (;;) {
        uint64_t item = 0;
        int rc = tr_channel_recv_value(st->ch, &item, me->index == 0 ? -1.0 : 0.002, NULL);
        if (rc == TR_ECLOSED) return NULL;
        if (rc == TR_TIMEDOUT) continue;
        if (rc == TR_ETYPE) { /* leave it to the plain consumer */
            atomic_fetch_add(&st->etype, 1);
            sched_yield();
            continue;
        }
        ASSERT_EQ(rc, TR_OK);
        ASSERT_EQ(tr_channel_taken(st->ch), item);
        vs_check(st, item);
    }
}

/* Takes anything: keys are counted, values checked like the others. */
static void *vs_plain(void *arg) {
    vs_thread *me = arg;
    vstress *st = me->st;
    for (;;) {
        uint64_t item = 0;
        int rc = tr_channel_recv_blocking(st->ch, &item, -1.0, NULL);
        if (rc == TR_ECLOSED) return NULL;
        ASSERT_EQ(rc, TR_OK);
        if (tr_item_kind(item) == TR_ITEM_KEY) atomic_fetch_add(&st->keys_taken, 1);
        else vs_check(st, item);
    }
}

TEST_IMPL(chan_value_stress) {
    vstress st = {.per = tt_scaled(6000)};
    size_t total = VS_PRODUCERS * st.per;
    size_t keys = VS_PRODUCERS * ((st.per + 63) / 64);
    st.seen = calloc(total, sizeof *st.seen);
    ASSERT_NOT_NULL(st.seen);
    st.ch = new_channel(8);
    vs_thread prod[VS_PRODUCERS], cons[VS_CONSUMERS], plain = {.st = &st};
    for (int i = 0; i < VS_CONSUMERS; i++) {
        cons[i] = (vs_thread){.st = &st, .index = i};
        ASSERT_EQ(pthread_create(&cons[i].tid, NULL, vs_consumer, &cons[i]), 0);
    }
    ASSERT_EQ(pthread_create(&plain.tid, NULL, vs_plain, &plain), 0);
    for (int i = 0; i < VS_PRODUCERS; i++) {
        prod[i] = (vs_thread){.st = &st, .index = i};
        ASSERT_EQ(pthread_create(&prod[i].tid, NULL, vs_producer, &prod[i]), 0);
    }
    for (int i = 0; i < VS_PRODUCERS; i++) ASSERT_EQ(pthread_join(prod[i].tid, NULL), 0);
    double deadline = tt_now() + 20.0;
    while (atomic_load(&st.received) < total || atomic_load(&st.keys_taken) < keys) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        tt_sleep(0.001);
    }
    tr_channel_close(st.ch, NULL);
    for (int i = 0; i < VS_CONSUMERS; i++) ASSERT_EQ(pthread_join(cons[i].tid, NULL), 0);
    ASSERT_EQ(pthread_join(plain.tid, NULL), 0);
    ASSERT_EQ(atomic_load(&st.received), total);
    ASSERT_EQ(atomic_load(&st.keys_taken), keys);
    for (size_t k = 0; k < total; k++) ASSERT_EQ(atomic_load(&st.seen[k]), 1);
    ASSERT_EQ(tr_channel_len(st.ch), 0);
    tr_channel_release(st.ch);
    free(st.seen);
}
