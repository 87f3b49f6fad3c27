/*
 * test-promise.c - promises (tr_promise_*): results that native code hands
 * to a consumer, and native jobs on the worker pool that complete them
 * (tr_promise_run); and the C API table other extensions use
 * (tokio_runtime_capi.h).
 *
 * The contract (tokio_runtime.h, "promises and native jobs"): exactly one of
 * "completed" and "cancelled" wins; its one final record reaches the port
 * exactly once; a job's record comes only after its function returned (or
 * was skipped); a port's close and a shutdown cancel what is pending; a
 * handle stays valid until its last reference is dropped.
 */
#include "task.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define TR_CAPI_NO_PYTHON
#include "tokio_runtime_capi.h"

static tr_promise_t *new_promise(tr_runtime_t *rt, tr_port_t *port, uint64_t token) {
    tr_promise_t *p = NULL;
    ASSERT_EQ(tr_promise_new(rt, port, token, &p), TR_OK);
    ASSERT_NOT_NULL(p);
    return p;
}

/* The next final record on port is (token, status, value). */
#define expect_record(rt, port, tok, st, val)              \
    do {                                                   \
        tr_completion_t c_;                                \
        tt_wait_one(rt, port, &c_, 5.0);                   \
        ASSERT_EQ(c_.token, tok);                          \
        ASSERT_EQ(c_.status, st);                          \
        ASSERT_EQ(c_.final, 1);                            \
        ASSERT_EQ(c_.value, (int64_t)(val));               \
    } while (0)

static int flag_of(tr_promise_t *p) {
    const volatile int *f = tr_promise_cancel_flag(p);
    ASSERT_NOT_NULL(f);
    return __atomic_load_n(f, __ATOMIC_ACQUIRE);
}

/* Wait until p is no longer pending (a port's close cancels on the loop
 * thread, after tr_port_close returned). */
static void wait_settled(tr_promise_t *p) {
    double deadline = tt_now() + 5.0;
    while (tr_promise_state(p) == TR_PENDING) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        tt_sleep(0.001);
    }
}

/* promises, pending and native job counters are all back to 0.  A job
 * lets go of its promise just after it queued the record, so the last one
 * may be freed a moment after its record was drained: wait for that. */
static void expect_no_promises(tr_runtime_t *rt) {
    double deadline = tt_now() + 5.0;
    while (tt_stats(rt).promises != 0 && tt_now() < deadline) tt_sleep(0.001);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.promises, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.native_queued, 0);
    ASSERT_EQ(s.native_running, 0);
}

static void wait_until_true(atomic_int *v) {
    double deadline = tt_now() + 5.0;
    while (!atomic_load(v)) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        tt_sleep(0.0005);
    }
}

/* ---- a native job's function, steered by its arg ---------------------------- */

typedef struct job {
    int64_t result;
    bool until_cancel;   /* poll the cancel flag until it is set (5 s at most) */
    atomic_bool *gate;   /* NULL, or wait until *gate (5 s at most) */
    double linger;       /* then sleep this long before returning */
    int *order;          /* NULL, or order[(*order_next)++] = index */
    atomic_int *order_next;
    int index;
    /* what happened */
    atomic_int runs, returned, saw_cancel;
    pthread_t thread;
    char thread_name[16];
} job_t;

static int64_t job_fn(void *arg, const volatile int *cancelled) {
    job_t *j = arg;
    j->thread = pthread_self();
    pthread_getname_np(pthread_self(), j->thread_name, sizeof j->thread_name);
    atomic_fetch_add(&j->runs, 1);
    double deadline = tt_now() + 5.0;
    if (j->gate)
        while (!atomic_load(j->gate) && tt_now() < deadline) tt_sleep(0.0005);
    if (j->until_cancel)
        while (!__atomic_load_n(cancelled, __ATOMIC_RELAXED) && tt_now() < deadline) tt_sleep(0.0005);
    if (__atomic_load_n(cancelled, __ATOMIC_RELAXED)) atomic_store(&j->saw_cancel, 1);
    if (j->order) j->order[atomic_fetch_add(j->order_next, 1)] = j->index;
    if (j->linger > 0) tt_sleep(j->linger);
    atomic_store(&j->returned, 1);
    return j->result;
}

/* ---- promises ------------------------------------------------------------------ */

TEST_IMPL(promise_new_invalid) {
    tr_runtime_t *rt = tt_runtime(1), *other = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1), *oport = tt_port(other, 2), *closed = tt_port(rt, 3);
    char m;
    tr_promise_t *marker = (tr_promise_t *)(void *)&m, *p = marker;
    ASSERT_EQ(tr_promise_new(NULL, port, 1, &p), TR_EINVAL);
    ASSERT_EQ(tr_promise_new(rt, NULL, 1, &p), TR_EINVAL);
    ASSERT_EQ(tr_promise_new(rt, port, 0, &p), TR_EINVAL);
    ASSERT_EQ(tr_promise_new(rt, port, 1, NULL), TR_EINVAL);
    ASSERT_EQ(tr_promise_new(rt, oport, 1, &p), TR_EINVAL); /* another runtime's port */
    tr_port_close(closed);
    ASSERT_EQ(tr_promise_new(rt, closed, 1, &p), TR_ECLOSED);
    ASSERT(p == marker); /* untouched on error */
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.promises, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.submitted, 0);
    ASSERT_EQ(tt_stats(other).promises, 0);

    /* NULL handles: nothing happens, errors come back. */
    tr_promise_ref(NULL);
    tr_promise_release(NULL);
    size_t len = 99;
    ASSERT_EQ(tr_promise_state(NULL), TR_EINVAL);
    ASSERT_EQ(tr_promise_complete(NULL, TR_OK, 1), TR_EINVAL);
    ASSERT_EQ(tr_promise_complete_bytes(NULL, "x", 1), TR_EINVAL);
    ASSERT_EQ(tr_promise_cancel(NULL), TR_EINVAL);
    ASSERT_NULL(tr_promise_cancel_flag(NULL));
    ASSERT_NULL(tr_promise_bytes(NULL, &len));
    ASSERT_EQ(len, 0);
    job_t j = {0};
    ASSERT_EQ(tr_promise_run(rt, NULL, job_fn, &j, NULL), TR_EINVAL);
    ASSERT_EQ(tr_promise_run(NULL, NULL, job_fn, &j, NULL), TR_EINVAL);

    /* After shutdown: refused; the one made before is cancelled. */
    tr_promise_t *before = new_promise(rt, port, 5);
    ASSERT_EQ(tt_stats(rt).promises, 1);
    tr_runtime_shutdown(rt);
    ASSERT_EQ(tr_promise_new(rt, port, 6, &p), TR_ESHUTDOWN);
    ASSERT(p == marker);
    s = tt_stats(rt);
    ASSERT_EQ(s.promises, 1);
    ASSERT_EQ(s.submitted, 1);
    ASSERT_EQ(s.cancelled, 1);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(tr_promise_state(before), TR_CANCELLED);
    ASSERT_EQ(tr_promise_complete(before, TR_OK, 1), TR_ESHUTDOWN);
    expect_record(rt, port, 5, TR_CANCELLED, 0);
    tr_promise_release(before);
    expect_no_promises(rt);
    ASSERT_EQ(j.runs, 0);

    tr_port_release(closed);
    tr_port_release(oport);
    tr_port_release(port);
    tr_runtime_release(other);
    tr_runtime_release(rt);
}

TEST_IMPL(promise_complete) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_promise_t *p = new_promise(rt, port, 7);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.promises, 1);
    ASSERT_EQ(s.pending, 1);
    ASSERT_EQ(s.submitted, 1);
    ASSERT_EQ(s.live_ops, 0); /* a promise is no op */
    ASSERT_EQ(tr_promise_state(p), TR_PENDING);
    ASSERT_EQ(flag_of(p), 0);
    tt_expect_quiet(rt, port, 0.02); /* nothing until it is completed */

    const int64_t v = -INT64_C(123456789012345);
    ASSERT_EQ(tr_promise_complete(p, TR_OK, v), TR_OK);
    ASSERT_EQ(tr_promise_state(p), TR_OK);
    /* Late calls do nothing and say what won. */
    ASSERT_EQ(tr_promise_complete(p, TR_OK, 1), TR_EDONE);
    ASSERT_EQ(tr_promise_complete(p, TR_EINVAL, 2), TR_EDONE);
    ASSERT_EQ(tr_promise_complete_bytes(p, "zz", 2), TR_EDONE);
    ASSERT_EQ(tr_promise_cancel(p), TR_EDONE);
    ASSERT_EQ(tr_promise_state(p), TR_OK);
    ASSERT_EQ(flag_of(p), 0); /* a cancel that lost sets nothing */
    size_t len = 99;
    ASSERT_NULL(tr_promise_bytes(p, &len)); /* an int result */
    ASSERT_EQ(len, 0);

    /* Exactly one record, with the first result. */
    expect_record(rt, port, 7, TR_OK, v);
    tt_expect_quiet(rt, port, 0.05);
    s = tt_stats(rt);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.completed, 1);
    ASSERT_EQ(s.cancelled, 0);
    ASSERT_EQ(s.promises, 1); /* the creator still holds it */
    tr_promise_release(p);
    expect_no_promises(rt);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(promise_complete_status) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_promise_t *p = new_promise(rt, port, 1);
    /* Not a status a consumer can be given. */
    ASSERT_EQ(tr_promise_complete(p, -1, 0), TR_EINVAL);
    ASSERT_EQ(tr_promise_complete(p, TR_PENDING, 0), TR_EINVAL);
    ASSERT_EQ(tr_promise_complete(p, TR_ETYPE + 1, 0), TR_EINVAL);
    ASSERT_EQ(tr_promise_complete(p, 1000, 0), TR_EINVAL);
    ASSERT_EQ(tr_promise_state(p), TR_PENDING);
    tt_expect_quiet(rt, port, 0.02);
    tr_promise_release(p); /* dropped pending by everyone: counted as cancelled */
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.cancelled, 1);
    expect_no_promises(rt);

    /* Every other status is a result: the record carries it, the state
     * says it, TR_CANCELLED counts as a cancel. */
    uint64_t token = 1;
    uint64_t completed = 0, cancelled = 1;
    for (int st = TR_OK; st <= TR_ETYPE; st++) {
        if (st == TR_PENDING) continue;
        p = new_promise(rt, port, ++token);
        ASSERT_EQ(tr_promise_complete(p, st, st * 10 + 1), TR_OK);
        ASSERT_EQ(tr_promise_state(p), st);
        ASSERT_EQ(tr_promise_cancel(p), TR_EDONE);
        expect_record(rt, port, token, st, st * 10 + 1);
        if (st == TR_CANCELLED) cancelled++;
        else completed++;
        tr_promise_release(p);
    }
    s = tt_stats(rt);
    ASSERT_EQ(s.completed, completed);
    ASSERT_EQ(s.cancelled, cancelled);
    ASSERT_EQ(s.submitted, token);
    expect_no_promises(rt);
    tt_expect_quiet(rt, port, 0.02);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(promise_complete_bytes) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    size_t len = 99;

    /* A copy, and the record's value is its length. */
    tr_promise_t *p = new_promise(rt, port, 1);
    ASSERT_NULL(tr_promise_bytes(p, &len)); /* pending */
    ASSERT_EQ(len, 0);
    char src[] = "hello\0world";
    ASSERT_EQ(tr_promise_complete_bytes(p, src, sizeof src), TR_OK);
    memset(src, 'x', sizeof src);
    ASSERT_EQ(tr_promise_state(p), TR_OK);
    ASSERT_EQ(tr_promise_complete_bytes(p, "again", 5), TR_EDONE);
    ASSERT_EQ(tr_promise_complete(p, TR_OK, 3), TR_EDONE);
    expect_record(rt, port, 1, TR_OK, sizeof src);
    const char *b = tr_promise_bytes(p, &len);
    ASSERT_NOT_NULL(b);
    ASSERT_EQ(len, sizeof src);
    ASSERT_EQ(memcmp(b, "hello\0world", sizeof src), 0);
    ASSERT(tr_promise_bytes(p, NULL) == b); /* len may be NULL */
    tr_promise_release(p);

    /* b"" is a byte result too: not NULL, length 0 (an int result is NULL). */
    p = new_promise(rt, port, 2);
    ASSERT_EQ(tr_promise_complete_bytes(p, NULL, 0), TR_OK);
    expect_record(rt, port, 2, TR_OK, 0);
    len = 99;
    ASSERT_NOT_NULL(tr_promise_bytes(p, &len));
    ASSERT_EQ(len, 0);
    tr_promise_release(p);

    /* NULL with a length: refused, still pending; then a large one. */
    p = new_promise(rt, port, 3);
    ASSERT_EQ(tr_promise_complete_bytes(p, NULL, 5), TR_EINVAL);
    ASSERT_EQ(tr_promise_state(p), TR_PENDING);
    size_t big_len = (size_t)2 << 20;
    unsigned char *big = malloc(big_len);
    ASSERT_NOT_NULL(big);
    for (size_t i = 0; i < big_len; i++) big[i] = (unsigned char)(i * 7 + (i >> 11));
    ASSERT_EQ(tr_promise_complete_bytes(p, big, big_len), TR_OK);
    expect_record(rt, port, 3, TR_OK, big_len);
    const unsigned char *got = tr_promise_bytes(p, &len);
    ASSERT_EQ(len, big_len);
    ASSERT_EQ(memcmp(got, big, big_len), 0);
    free(big);
    tr_promise_release(p);

    /* Cancelled first: no bytes, nothing kept. */
    p = new_promise(rt, port, 4);
    ASSERT_EQ(tr_promise_cancel(p), TR_OK);
    ASSERT_EQ(tr_promise_complete_bytes(p, "late", 4), TR_CANCELLED);
    expect_record(rt, port, 4, TR_CANCELLED, 0);
    ASSERT_NULL(tr_promise_bytes(p, &len));
    ASSERT_EQ(len, 0);
    tr_promise_release(p);

    tt_expect_quiet(rt, port, 0.02);
    expect_no_promises(rt);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(promise_cancel) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_promise_t *p = new_promise(rt, port, 9);
    ASSERT_EQ(flag_of(p), 0);
    ASSERT_EQ(tr_promise_cancel(p), TR_OK);
    ASSERT_EQ(flag_of(p), 1);
    ASSERT_EQ(tr_promise_state(p), TR_CANCELLED);
    /* Late calls: what won was a cancel. */
    ASSERT_EQ(tr_promise_complete(p, TR_OK, 5), TR_CANCELLED);
    ASSERT_EQ(tr_promise_complete_bytes(p, "x", 1), TR_CANCELLED);
    ASSERT_EQ(tr_promise_cancel(p), TR_CANCELLED);
    ASSERT_EQ(tr_promise_state(p), TR_CANCELLED);
    expect_record(rt, port, 9, TR_CANCELLED, 0);
    tt_expect_quiet(rt, port, 0.05);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.cancelled, 1);
    ASSERT_EQ(s.completed, 0);
    ASSERT_EQ(s.pending, 0);
    tr_promise_release(p);
    expect_no_promises(rt);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* A C thread that completes a promise it holds a reference on, then lets go. */
typedef struct completer {
    tr_promise_t *p;
    int status;
    int64_t value;
    int rc;
    pthread_t tid;
} completer;

static void *completer_main(void *arg) {
    completer *c = arg;
    c->rc = tr_promise_complete(c->p, c->status, c->value);
    tr_promise_release(c->p);
    return NULL;
}

TEST_IMPL(promise_refs) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);

    /* The creator lets go first; the C thread's reference keeps it. */
    tr_promise_t *p = new_promise(rt, port, 1);
    tr_promise_ref(p);
    tr_promise_release(p);
    ASSERT_EQ(tt_stats(rt).promises, 1);
    ASSERT_EQ(tr_promise_state(p), TR_PENDING);
    completer c = {.p = p, .status = TR_OK, .value = 42};
    ASSERT_EQ(pthread_create(&c.tid, NULL, completer_main, &c), 0);
    ASSERT_EQ(pthread_join(c.tid, NULL), 0);
    ASSERT_EQ(c.rc, TR_OK);
    /* Every handle is gone: the queued record keeps the promise... */
    ASSERT_EQ(tt_stats(rt).promises, 1);
    /* ...until it is drained (ASan/valgrind: read while it lives). */
    expect_record(rt, port, 1, TR_OK, 42);
    expect_no_promises(rt);

    /* Several holders: freed with the last one only. */
    p = new_promise(rt, port, 2);
    for (int i = 0; i < 3; i++) tr_promise_ref(p);
    for (int i = 0; i < 3; i++) tr_promise_release(p);
    ASSERT_EQ(tt_stats(rt).promises, 1);
    ASSERT_EQ(tr_promise_cancel(p), TR_OK);
    expect_record(rt, port, 2, TR_CANCELLED, 0);
    ASSERT_EQ(tt_stats(rt).promises, 1);
    ASSERT_EQ(flag_of(p), 1);
    tr_promise_release(p);
    expect_no_promises(rt);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(promise_many_records) {
    /* Many promises on one port, finished every way, in a shuffled order:
     * one record each, with its own result. */
    enum { N = 1000 };
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_promise_t **ps = calloc(N, sizeof *ps);
    ASSERT_NOT_NULL(ps);
    for (size_t i = 0; i < N; i++) ps[i] = new_promise(rt, port, i + 1);
    for (size_t k = 0; k < N; k++) {
        size_t i = (k * 617) % N; /* 617 is prime to N: a permutation */
        int rc;
        switch (i % 4) {
        case 0: rc = tr_promise_complete(ps[i], TR_OK, (int64_t)i * 3); break;
        case 1: rc = tr_promise_complete_bytes(ps[i], &i, sizeof i); break;
        case 2: rc = tr_promise_cancel(ps[i]); break;
        default: rc = tr_promise_complete(ps[i], TR_TIMEDOUT, -(int64_t)i); break;
        }
        ASSERT_EQ(rc, TR_OK);
    }
    tt_ledger_t l;
    tt_ledger_init(&l, N);
    ASSERT_EQ(tt_wait_finals(rt, port, N, 10.0, tt_ledger_visit, &l), N);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(l.stray, 0);
    ASSERT_EQ(l.progress, 0);
    for (size_t i = 0; i < N; i++) {
        ASSERT_EQ(l.finals[i], 1);
        switch (i % 4) {
        case 0:
            ASSERT_EQ(l.status[i], TR_OK);
            ASSERT_EQ(l.value[i], (int64_t)i * 3);
            break;
        case 1: {
            ASSERT_EQ(l.status[i], TR_OK);
            ASSERT_EQ(l.value[i], sizeof i);
            size_t len = 0;
            const void *b = tr_promise_bytes(ps[i], &len);
            ASSERT_EQ(len, sizeof i);
            ASSERT_EQ(memcmp(b, &i, sizeof i), 0);
            break;
        }
        case 2:
            ASSERT_EQ(l.status[i], TR_CANCELLED);
            ASSERT_EQ(l.value[i], 0);
            break;
        default:
            ASSERT_EQ(l.status[i], TR_TIMEDOUT);
            ASSERT_EQ(l.value[i], -(int64_t)i);
            break;
        }
        tr_promise_release(ps[i]);
    }
    tt_ledger_free(&l);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.submitted, N);
    ASSERT_EQ(s.cancelled, N / 4);
    ASSERT_EQ(s.completed, N - N / 4);
    expect_no_promises(rt);
    free(ps);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* ---- native jobs ---------------------------------------------------------------- */

TEST_IMPL(promise_run_basic) {
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *port = tt_port(rt, 1);
    atomic_bool gate = false;
    job_t j = {.result = INT64_C(0x123456789abc), .gate = &gate, .linger = 0.02};
    tr_promise_t *p = new_promise(rt, port, 1);
    ASSERT_EQ(tr_promise_run(rt, p, job_fn, &j, NULL), TR_OK);
    wait_until_true(&j.runs);
    /* Running on a worker: counted as such, no record yet. */
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.native_running, 1);
    ASSERT_EQ(s.native_queued, 0);
    ASSERT_EQ(s.pending, 1);
    ASSERT_EQ(tr_promise_state(p), TR_PENDING);
    tt_expect_quiet(rt, port, 0.02);
    atomic_store(&gate, true);
    expect_record(rt, port, 1, TR_OK, INT64_C(0x123456789abc));
    ASSERT_EQ(atomic_load(&j.returned), 1); /* the record came after it returned */
    ASSERT_EQ(atomic_load(&j.runs), 1);
    ASSERT_EQ(atomic_load(&j.saw_cancel), 0);
    ASSERT(!pthread_equal(j.thread, pthread_self()));
    ASSERT_EQ(strncmp(j.thread_name, "tt-", 3), 0); /* one of the runtime's threads */
    ASSERT_EQ(tr_promise_state(p), TR_OK);
    ASSERT_EQ(tr_promise_complete(p, TR_OK, 0), TR_EDONE);
    tr_promise_release(p);

    /* rt may be NULL (the C API's way); the creator may let go at once, the
     * job keeps the promise alive. */
    job_t j2 = {.result = -1};
    p = new_promise(rt, port, 2);
    ASSERT_EQ(tr_promise_run(NULL, p, job_fn, &j2, NULL), TR_OK);
    tr_promise_release(p);
    expect_record(rt, port, 2, TR_OK, -1);
    ASSERT_EQ(atomic_load(&j2.runs), 1);
    ASSERT(tt_wait_idle(rt, 5.0));
    expect_no_promises(rt);
    s = tt_stats(rt);
    ASSERT_EQ(s.completed, 2);
    ASSERT_EQ(s.live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(promise_run_cancel_queued) {
    /* The only worker is stalled, so the job stays queued; cancelled there,
     * it never runs, and its record waits until a worker skipped it. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_debug_stall_worker(rt, 0.3), TR_OK);
    job_t j = {.result = 5}, j2 = {.result = 6};
    tr_promise_t *p = new_promise(rt, port, 1), *p2 = new_promise(rt, port, 2);
    ASSERT_EQ(tr_promise_run(rt, p, job_fn, &j, NULL), TR_OK);
    ASSERT_EQ(tr_promise_run(rt, p2, job_fn, &j2, NULL), TR_OK);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.native_queued, 2); /* the stall is no native job */
    ASSERT_EQ(s.native_running, 0);
    ASSERT_EQ(tr_promise_cancel(p), TR_OK);
    ASSERT_EQ(flag_of(p), 1);
    ASSERT_EQ(tr_promise_state(p), TR_CANCELLED);
    ASSERT_EQ(tr_promise_complete(p, TR_OK, 1), TR_CANCELLED);
    tt_expect_quiet(rt, port, 0.05); /* still queued behind the stall */
    /* Then the worker skips it and runs the next one. */
    tt_ledger_t l;
    tt_ledger_init(&l, 2);
    ASSERT_EQ(tt_wait_finals(rt, port, 2, 5.0, tt_ledger_visit, &l), 2);
    ASSERT_EQ(l.finals[0], 1);
    ASSERT_EQ(l.status[0], TR_CANCELLED);
    ASSERT_EQ(l.value[0], 0);
    ASSERT_EQ(l.finals[1], 1);
    ASSERT_EQ(l.status[1], TR_OK);
    ASSERT_EQ(l.value[1], 6);
    tt_ledger_free(&l);
    ASSERT_EQ(atomic_load(&j.runs), 0);
    ASSERT_EQ(atomic_load(&j2.runs), 1);
    tr_promise_release(p);
    tr_promise_release(p2);
    expect_no_promises(rt);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(promise_run_cancel_running) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    job_t j = {.result = 77, .until_cancel = true, .linger = 0.05};
    tr_promise_t *p = new_promise(rt, port, 1);
    double t0 = tt_now();
    ASSERT_EQ(tr_promise_run(rt, p, job_fn, &j, NULL), TR_OK);
    wait_until_true(&j.runs);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.native_running, 1);
    ASSERT_EQ(s.pending, 1);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(tr_promise_cancel(p), TR_OK);
    ASSERT_EQ(flag_of(p), 1);
    ASSERT_EQ(tr_promise_state(p), TR_CANCELLED);
    ASSERT_EQ(tt_stats(rt).pending, 0); /* settled, though fn still runs */
    /* The record only once fn returned; its result is dropped. */
    expect_record(rt, port, 1, TR_CANCELLED, 0);
    ASSERT_EQ(atomic_load(&j.returned), 1);
    ASSERT_EQ(atomic_load(&j.saw_cancel), 1); /* it stopped for the flag... */
    ASSERT_DBL_CMP(tt_now() - t0, <, 3.0);    /* ...not for its own deadline */
    ASSERT_EQ(tr_promise_state(p), TR_CANCELLED);
    ASSERT_EQ(tr_promise_complete(p, TR_OK, 1), TR_CANCELLED);
    tt_expect_quiet(rt, port, 0.02);
    s = tt_stats(rt);
    ASSERT_EQ(s.cancelled, 1);
    ASSERT_EQ(s.completed, 0);
    tr_promise_release(p);
    expect_no_promises(rt);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(promise_run_complete_running) {
    /* Someone else completes the promise while its job runs: that result
     * wins, the job's is dropped, and the record still waits for fn. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    atomic_bool gate = false;
    job_t j = {.result = 99, .gate = &gate};
    tr_promise_t *p = new_promise(rt, port, 1);
    ASSERT_EQ(tr_promise_run(rt, p, job_fn, &j, NULL), TR_OK);
    wait_until_true(&j.runs);
    ASSERT_EQ(tr_promise_complete(p, TR_OK, 5), TR_OK);
    ASSERT_EQ(tr_promise_state(p), TR_OK);
    ASSERT_EQ(flag_of(p), 0); /* completed, not cancelled */
    tt_expect_quiet(rt, port, 0.03);
    atomic_store(&gate, true);
    expect_record(rt, port, 1, TR_OK, 5);
    ASSERT_EQ(atomic_load(&j.returned), 1);
    ASSERT_EQ(atomic_load(&j.saw_cancel), 0);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT(tt_wait_idle(rt, 5.0));
    tr_promise_release(p);
    expect_no_promises(rt);
    ASSERT_EQ(tt_stats(rt).completed, 1);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(promise_run_invalid) {
    tr_runtime_t *rt = tt_runtime(1), *other = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1), *oport = tt_port(other, 1);
    job_t j = {.result = 1}, never = {0};
    tr_promise_t *p = new_promise(rt, port, 1);
    ASSERT_EQ(tr_promise_run(rt, p, NULL, &j, NULL), TR_EINVAL);
    ASSERT_EQ(tr_promise_run(other, p, job_fn, &never, NULL), TR_EINVAL); /* not its runtime */
    /* None of that counted as its job. */
    ASSERT_EQ(tr_promise_run(rt, p, job_fn, &j, NULL), TR_OK);
    ASSERT_EQ(tr_promise_run(rt, p, job_fn, &never, NULL), TR_EINVAL); /* one job per promise */
    ASSERT_EQ(tr_promise_run(NULL, p, job_fn, &never, NULL), TR_EINVAL);
    expect_record(rt, port, 1, TR_OK, 1);
    ASSERT_EQ(tr_promise_run(rt, p, job_fn, &never, NULL), TR_EINVAL);
    ASSERT_EQ(atomic_load(&j.runs), 1);
    tr_promise_release(p);

    /* A promise of another runtime, given to this one. */
    tr_promise_t *q = new_promise(other, oport, 1);
    ASSERT_EQ(tr_promise_run(rt, q, job_fn, &never, NULL), TR_EINVAL);
    ASSERT_EQ(tr_promise_state(q), TR_PENDING);
    ASSERT_EQ(tr_promise_cancel(q), TR_OK);
    expect_record(other, oport, 1, TR_CANCELLED, 0);
    tr_promise_release(q);

    /* Finished before: refused with what won, fn never runs. */
    tr_promise_t *d = new_promise(rt, port, 2), *c = new_promise(rt, port, 3);
    ASSERT_EQ(tr_promise_complete(d, TR_OK, 2), TR_OK);
    ASSERT_EQ(tr_promise_run(rt, d, job_fn, &never, NULL), TR_EDONE);
    ASSERT_EQ(tr_promise_cancel(c), TR_OK);
    ASSERT_EQ(tr_promise_run(rt, c, job_fn, &never, NULL), TR_CANCELLED);
    expect_record(rt, port, 2, TR_OK, 2);
    expect_record(rt, port, 3, TR_CANCELLED, 0);
    tr_promise_release(d);
    tr_promise_release(c);

    ASSERT(tt_wait_idle(rt, 5.0));
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(atomic_load(&never.runs), 0);
    expect_no_promises(rt);
    expect_no_promises(other);
    tr_port_release(oport);
    tr_port_release(port);
    tr_runtime_release(other);
    tr_runtime_release(rt);
}

/* drop(arg) runs exactly once per accepted job, before its record: after fn
 * ran, instead of fn when the job was cancelled in the queue, and for jobs
 * still queued at shutdown; never for a refused job. */
typedef struct drop_arg {
    atomic_int dropped;
    atomic_int ran;
} drop_arg;

static int64_t drop_fn(void *arg, const volatile int *cancelled) {
    (void)cancelled;
    drop_arg *d = arg;
    atomic_fetch_add(&d->ran, 1);
    return atomic_load(&d->dropped); /* 0: fn runs before its drop */
}

static void drop_it(void *arg) { atomic_fetch_add(&((drop_arg *)arg)->dropped, 1); }

TEST_IMPL(promise_run_drop) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    drop_arg ran = {0}, skipped = {0}, refused = {0}, at_shutdown = {0};
    /* fn runs, then drop, then the record. */
    tr_promise_t *p = new_promise(rt, port, 1);
    ASSERT_EQ(tr_promise_run(rt, p, drop_fn, &ran, drop_it), TR_OK);
    expect_record(rt, port, 1, TR_OK, 0);
    ASSERT_EQ(atomic_load(&ran.ran), 1);
    ASSERT_EQ(atomic_load(&ran.dropped), 1);
    tr_promise_release(p);
    /* Cancelled while queued: fn skipped, drop still runs, before the record. */
    ASSERT_EQ(tr_debug_stall_worker(rt, 0.1), TR_OK);
    p = new_promise(rt, port, 2);
    ASSERT_EQ(tr_promise_run(rt, p, drop_fn, &skipped, drop_it), TR_OK);
    ASSERT_EQ(tr_promise_cancel(p), TR_OK);
    ASSERT_EQ(atomic_load(&skipped.dropped), 0); /* the worker has not reached it */
    expect_record(rt, port, 2, TR_CANCELLED, 0);
    ASSERT_EQ(atomic_load(&skipped.ran), 0);
    ASSERT_EQ(atomic_load(&skipped.dropped), 1);
    /* Refused (a second job): drop is not called, arg is still ours. */
    ASSERT_EQ(tr_promise_run(rt, p, drop_fn, &refused, drop_it), TR_EINVAL);
    tr_promise_release(p);
    /* Queued at shutdown: skipped and dropped. */
    ASSERT_EQ(tr_debug_stall_worker(rt, 0.1), TR_OK);
    p = new_promise(rt, port, 3);
    ASSERT_EQ(tr_promise_run(rt, p, drop_fn, &at_shutdown, drop_it), TR_OK);
    tr_runtime_shutdown(rt);
    ASSERT_EQ(atomic_load(&at_shutdown.ran), 0);
    ASSERT_EQ(atomic_load(&at_shutdown.dropped), 1);
    ASSERT_EQ(atomic_load(&refused.dropped), 0);
    ASSERT_EQ(atomic_load(&refused.ran), 0);
    tr_promise_release(p);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(promise_run_fifo) {
    /* One worker: jobs run in the order they were queued. */
    enum { N = 20 };
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    atomic_bool gate = false;
    job_t g = {.gate = &gate, .result = 1000};
    tr_promise_t *pg = new_promise(rt, port, N + 1);
    ASSERT_EQ(tr_promise_run(rt, pg, job_fn, &g, NULL), TR_OK);
    wait_until_true(&g.runs);
    int order[N];
    atomic_int next = 0;
    job_t *jobs = calloc(N, sizeof *jobs);
    tr_promise_t *ps[N];
    ASSERT_NOT_NULL(jobs);
    for (int i = 0; i < N; i++) {
        jobs[i].result = i;
        jobs[i].order = order;
        jobs[i].order_next = &next;
        jobs[i].index = i;
        ps[i] = new_promise(rt, port, (uint64_t)i + 1);
        ASSERT_EQ(tr_promise_run(rt, ps[i], job_fn, &jobs[i], NULL), TR_OK);
    }
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.native_queued, N);
    ASSERT_EQ(s.native_running, 1);
    ASSERT_EQ(s.promises, N + 1);
    ASSERT_EQ(s.pending, N + 1);
    atomic_store(&gate, true);
    tt_ledger_t l;
    tt_ledger_init(&l, N + 1);
    ASSERT_EQ(tt_wait_finals(rt, port, N + 1, 10.0, tt_ledger_visit, &l), N + 1);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(l.finals[i], 1);
        ASSERT_EQ(l.status[i], TR_OK);
        ASSERT_EQ(l.value[i], i);
    }
    ASSERT_EQ(l.value[N], 1000);
    tt_ledger_free(&l);
    ASSERT_EQ(atomic_load(&next), N);
    for (int i = 0; i < N; i++) ASSERT_EQ(order[i], i);
    for (int i = 0; i < N; i++) tr_promise_release(ps[i]);
    tr_promise_release(pg);
    expect_no_promises(rt);
    free(jobs);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* ---- ports closing, ports let go -------------------------------------------------- */

TEST_IMPL(promise_port_close) {
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *pa = tt_port(rt, 1), *pb = tt_port(rt, 2);
    /* a0 finished, its record queued; a1, a2 pending; a3 with a running
     * job; b1 pending on another port. */
    tr_promise_t *a0 = new_promise(rt, pa, 10), *a1 = new_promise(rt, pa, 11),
                 *a2 = new_promise(rt, pa, 12), *a3 = new_promise(rt, pa, 13),
                 *b1 = new_promise(rt, pb, 21);
    ASSERT_EQ(tr_promise_complete(a0, TR_OK, 1), TR_OK);
    job_t j = {.until_cancel = true, .linger = 0.02, .result = 3};
    ASSERT_EQ(tr_promise_run(rt, a3, job_fn, &j, NULL), TR_OK);
    wait_until_true(&j.runs);

    tr_port_close(pa);
    wait_settled(a1);
    wait_settled(a2);
    wait_settled(a3);
    /* Late calls learn the port is gone. */
    ASSERT_EQ(tr_promise_complete(a1, TR_OK, 1), TR_ECLOSED);
    ASSERT_EQ(tr_promise_complete_bytes(a2, "x", 1), TR_ECLOSED);
    ASSERT_EQ(tr_promise_cancel(a2), TR_ECLOSED);
    ASSERT_EQ(tr_promise_run(rt, a1, job_fn, &j, NULL), TR_ECLOSED);
    ASSERT_EQ(tr_promise_complete(a0, TR_OK, 1), TR_EDONE); /* it had finished */
    ASSERT_EQ(tr_promise_state(a1), TR_CANCELLED);
    ASSERT_EQ(flag_of(a1), 1);
    ASSERT_EQ(flag_of(a2), 1);
    ASSERT_EQ(flag_of(a3), 1);
    ASSERT_EQ(flag_of(a0), 0);
    /* The running job saw its flag; no record of pa's reaches anyone. */
    wait_until_true(&j.returned);
    ASSERT_EQ(atomic_load(&j.saw_cancel), 1);
    ASSERT_EQ(atomic_load(&j.runs), 1);
    tr_completion_t c;
    ASSERT_EQ(tt_drain(pa, &c, 1), 0);
    /* No new promise on it. */
    tr_promise_t *none = NULL;
    ASSERT_EQ(tr_promise_new(rt, pa, 14, &none), TR_ECLOSED);
    ASSERT_NULL(none);

    /* The other port's promise is untouched. */
    ASSERT_EQ(tr_promise_state(b1), TR_PENDING);
    ASSERT_EQ(flag_of(b1), 0);
    ASSERT_EQ(tr_promise_complete(b1, TR_OK, 8), TR_OK);
    expect_record(rt, pb, 21, TR_OK, 8);

    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.cancelled, 3);
    ASSERT_EQ(s.completed, 2);
    tr_promise_release(a0);
    tr_promise_release(a1);
    tr_promise_release(a2);
    tr_promise_release(a3);
    tr_promise_release(b1);
    /* a3's record (dropped by the closed port) lets go of it once the
     * worker is through with the job. */
    double deadline = tt_now() + 5.0;
    while (tt_stats(rt).promises != 0) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        tt_sleep(0.001);
    }
    expect_no_promises(rt);
    tr_port_release(pa);
    tr_port_release(pb);
    ASSERT(tt_wait_idle(rt, 5.0));
    ASSERT_EQ(tt_stats(rt).ports, 0);
    tr_runtime_release(rt);
}

TEST_IMPL(promise_port_release_with_record) {
    /* A port let go (not closed) with promise records nobody drained: the
     * records go with it, and so does the port (a queued record must not
     * keep its port alive: ops and waiters give their port reference up
     * when they queue their record). */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_promise_t *p1 = new_promise(rt, port, 1), *p2 = new_promise(rt, port, 2),
                 *p3 = new_promise(rt, port, 3);
    ASSERT_EQ(tr_promise_complete(p1, TR_OK, 1), TR_OK);
    ASSERT_EQ(tr_promise_complete_bytes(p2, "abc", 3), TR_OK);
    ASSERT_EQ(tr_promise_cancel(p3), TR_OK);
    tr_promise_release(p1);
    tr_promise_release(p2);
    tr_promise_release(p3);
    ASSERT_EQ(tt_stats(rt).promises, 3); /* the records hold them */
    tr_port_release(port);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.ports, 0);
    ASSERT_EQ(s.promises, 0);

    /* A pending promise keeps its port (it has a record to deliver)...  */
    port = tt_port(rt, 2);
    tr_promise_t *p = new_promise(rt, port, 4);
    tr_port_release(port);
    ASSERT_EQ(tt_stats(rt).ports, 1);
    /* ...until that record is queued: then the port, the record and the
     * promise all go when the last holder lets go. */
    ASSERT_EQ(tr_promise_complete(p, TR_OK, 4), TR_OK);
    tr_promise_release(p);
    s = tt_stats(rt);
    ASSERT_EQ(s.ports, 0);
    ASSERT_EQ(s.promises, 0);

    /* The same with a job's record and with the handle let go first. */
    port = tt_port(rt, 3);
    job_t j = {.result = 9};
    p = new_promise(rt, port, 5);
    ASSERT_EQ(tr_promise_run(rt, p, job_fn, &j, NULL), TR_OK);
    tr_promise_release(p);
    tr_port_release(port);
    double deadline = tt_now() + 5.0;
    while (tt_stats(rt).ports != 0 || tt_stats(rt).promises != 0) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        tt_sleep(0.001);
    }
    ASSERT_EQ(atomic_load(&j.runs), 1);
    expect_no_promises(rt);
    tr_runtime_release(rt);
}

/* Let go of every promise of a port while the port closes (or the runtime
 * shuts down) on another thread. */
typedef struct releaser {
    tr_promise_t **ps;
    size_t n;
    atomic_bool *go;
    pthread_t tid;
} releaser;

static void *releaser_main(void *arg) {
    releaser *r = arg;
    while (!atomic_load(r->go)) sched_yield();
    for (size_t i = 0; i < r->n; i++) tr_promise_release(r->ps[i]);
    return NULL;
}

TEST_IMPL(promise_release_close_race) {
    /* A pending promise whose last handle is dropped while a close (or a
     * shutdown) sweeps its port's promises: it is freed exactly once, and
     * counted exactly once, whoever gets to it first. */
    enum { PER = 1024 };
    size_t rounds = tt_scaled(40);
    tr_runtime_t *rt = tt_runtime(1);
    tr_promise_t **ps = calloc(PER, sizeof *ps);
    ASSERT_NOT_NULL(ps);
    for (size_t r = 0; r < rounds; r++) {
        tr_port_t *port = tt_port(rt, r + 1);
        for (size_t i = 0; i < PER; i++) ps[i] = new_promise(rt, port, r * PER + i + 1);
        atomic_bool go = false;
        releaser rel = {.ps = ps, .n = PER, .go = &go};
        ASSERT_EQ(pthread_create(&rel.tid, NULL, releaser_main, &rel), 0);
        atomic_store(&go, true);
        if (r % 2) tt_sleep(0.00001 * (double)(r % 7)); /* vary the overlap */
        tr_port_close(port);
        ASSERT_EQ(pthread_join(rel.tid, NULL), 0);
        ASSERT(tt_wait_idle(rt, 5.0));
        tr_port_release(port);
        tr_stats_t s = tt_stats(rt);
        ASSERT_EQ(s.promises, 0);
        ASSERT_EQ(s.pending, 0);
        ASSERT_EQ(s.cancelled, (r + 1) * PER);
        ASSERT_EQ(s.ports, 0);
    }
    /* The same against a shutdown. */
    tr_port_t *port = tt_port(rt, 1);
    for (size_t i = 0; i < PER; i++) ps[i] = new_promise(rt, port, i + 1);
    atomic_bool go = false;
    releaser rel = {.ps = ps, .n = PER, .go = &go};
    ASSERT_EQ(pthread_create(&rel.tid, NULL, releaser_main, &rel), 0);
    atomic_store(&go, true);
    tr_runtime_shutdown(rt);
    ASSERT_EQ(pthread_join(rel.tid, NULL), 0);
    tt_ledger_t l;
    tt_ledger_init(&l, PER);
    tt_wait_finals(rt, port, PER, 0.5, tt_ledger_visit, &l);
    for (size_t i = 0; i < PER; i++) {
        ASSERT_LE(l.finals[i], 1);
        if (l.finals[i]) ASSERT_EQ(l.status[i], TR_CANCELLED);
    }
    tt_ledger_free(&l);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.promises, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.submitted, (rounds + 1) * PER);
    ASSERT_EQ(s.cancelled, (rounds + 1) * PER);
    free(ps);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* Makes promises on a port until it is closed. */
typedef struct maker {
    tr_runtime_t *rt;
    tr_port_t *port;
    tr_promise_t **ps;
    size_t cap, n;
    atomic_size_t made;
    pthread_t tid;
} maker;

static void *maker_main(void *arg) {
    maker *m = arg;
    while (m->n < m->cap) {
        tr_promise_t *p = NULL;
        int rc = tr_promise_new(m->rt, m->port, m->n + 1, &p);
        if (rc == TR_ECLOSED) break;
        ASSERT_EQ(rc, TR_OK);
        m->ps[m->n++] = p;
        atomic_store(&m->made, m->n);
    }
    return NULL;
}

TEST_IMPL(promise_new_close_race) {
    /* Promises made while their port closes: each one is either refused
     * (TR_ECLOSED) or made and then cancelled by the close, never left
     * pending on a closed port. */
    size_t rounds = tt_scaled(30);
    tr_runtime_t *rt = tt_runtime(1);
    maker m = {.rt = rt, .cap = 5000};
    m.ps = calloc(m.cap, sizeof *m.ps);
    ASSERT_NOT_NULL(m.ps);
    for (size_t r = 0; r < rounds; r++) {
        m.port = tt_port(rt, r + 1);
        m.n = 0;
        atomic_store(&m.made, 0);
        ASSERT_EQ(pthread_create(&m.tid, NULL, maker_main, &m), 0);
        double deadline = tt_now() + 5.0;
        while (atomic_load(&m.made) < 20 + r % 50) {
            ASSERT_DBL_CMP(tt_now(), <, deadline);
            sched_yield();
        }
        tr_port_close(m.port);
        ASSERT_EQ(pthread_join(m.tid, NULL), 0);
        for (size_t i = 0; i < m.n; i++) {
            wait_settled(m.ps[i]);
            ASSERT_EQ(tr_promise_complete(m.ps[i], TR_OK, 1), TR_ECLOSED);
            ASSERT_EQ(flag_of(m.ps[i]), 1);
            tr_promise_release(m.ps[i]);
        }
        ASSERT(tt_wait_idle(rt, 5.0));
        tr_port_release(m.port);
        expect_no_promises(rt);
        ASSERT_EQ(tt_stats(rt).ports, 0);
    }
    free(m.ps);
    tr_runtime_release(rt);
}

/* ---- shutdown ----------------------------------------------------------------------- */

/* A C thread with its own references, acting after everyone else let go. */
typedef struct late_caller {
    tr_promise_t *running, *pending;
    int rc_complete, rc_bytes, rc_cancel, state, flag;
    const void *bytes;
    pthread_t tid;
} late_caller;

static void *late_main(void *arg) {
    late_caller *lc = arg;
    lc->rc_complete = tr_promise_complete(lc->running, TR_OK, 1);
    lc->rc_bytes = tr_promise_complete_bytes(lc->pending, "late", 4);
    lc->rc_cancel = tr_promise_cancel(lc->pending);
    lc->state = tr_promise_state(lc->running);
    lc->flag = __atomic_load_n(tr_promise_cancel_flag(lc->pending), __ATOMIC_ACQUIRE);
    lc->bytes = tr_promise_bytes(lc->pending, NULL);
    tr_promise_release(lc->running);
    tr_promise_release(lc->pending);
    return NULL;
}

TEST_IMPL(promise_shutdown_job) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    job_t j = {.until_cancel = true, .linger = 0.1, .result = 5};
    tr_promise_t *p = new_promise(rt, port, 1), *q = new_promise(rt, port, 2);
    ASSERT_EQ(tr_promise_run(rt, p, job_fn, &j, NULL), TR_OK);
    wait_until_true(&j.runs);
    late_caller lc = {.running = p, .pending = q};
    tr_promise_ref(p); /* the C thread's */
    tr_promise_ref(q);

    /* Shutdown cancels both, sets the flags, and waits for fn. */
    double t0 = tt_now();
    tr_runtime_shutdown(rt);
    double took = tt_now() - t0;
    ASSERT_EQ(atomic_load(&j.returned), 1);
    ASSERT_EQ(atomic_load(&j.saw_cancel), 1);
    ASSERT_DBL_CMP(took, >=, 0.09); /* fn's linger after it saw the flag */
    ASSERT_DBL_CMP(took, <, 3.0);
    ASSERT_EQ(flag_of(p), 1);
    ASSERT_EQ(flag_of(q), 1);
    ASSERT_EQ(tr_promise_state(p), TR_CANCELLED);
    ASSERT_EQ(tr_promise_state(q), TR_CANCELLED);
    ASSERT_EQ(tr_promise_run(rt, q, job_fn, &j, NULL), TR_ESHUTDOWN);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.native_running, 0);
    ASSERT_EQ(s.native_queued, 0);
    ASSERT_EQ(s.running, 0);
    /* Both records reached the (open) port. */
    tt_ledger_t l;
    tt_ledger_init(&l, 2);
    ASSERT_EQ(tt_wait_finals(rt, port, 2, 5.0, tt_ledger_visit, &l), 2);
    ASSERT_EQ(l.finals[0], 1);
    ASSERT_EQ(l.finals[1], 1);
    ASSERT_EQ(l.status[0], TR_CANCELLED);
    ASSERT_EQ(l.status[1], TR_CANCELLED);
    tt_ledger_free(&l);

    /* Everybody else lets go; the C thread's handles stay valid. */
    tr_promise_release(p);
    tr_promise_release(q);
    tr_port_release(port);
    tr_runtime_release(rt);
    ASSERT_EQ(pthread_create(&lc.tid, NULL, late_main, &lc), 0);
    ASSERT_EQ(pthread_join(lc.tid, NULL), 0);
    ASSERT_EQ(lc.rc_complete, TR_ESHUTDOWN);
    ASSERT_EQ(lc.rc_bytes, TR_ESHUTDOWN);
    ASSERT_EQ(lc.rc_cancel, TR_ESHUTDOWN);
    ASSERT_EQ(lc.state, TR_CANCELLED);
    ASSERT_EQ(lc.flag, 1);
    ASSERT_NULL(lc.bytes);
    ASSERT_EQ(atomic_load(&j.runs), 1);
}

TEST_IMPL(promise_shutdown_queued) {
    /* Jobs still queued at shutdown never run; records go to a port nobody
     * drains, which is then let go with them. */
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_debug_stall_worker(rt, 0.1), TR_OK);
    enum { N = 5 };
    job_t jobs[N];
    memset(jobs, 0, sizeof jobs);
    tr_promise_t *ps[N];
    for (int i = 0; i < N; i++) {
        ps[i] = new_promise(rt, port, (uint64_t)i + 1);
        ASSERT_EQ(tr_promise_run(rt, ps[i], job_fn, &jobs[i], NULL), TR_OK);
    }
    ASSERT_EQ(tt_stats(rt).native_queued, N);
    tr_runtime_shutdown(rt);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(atomic_load(&jobs[i].runs), 0);
        ASSERT_EQ(tr_promise_state(ps[i]), TR_CANCELLED);
        ASSERT_EQ(tr_promise_complete(ps[i], TR_OK, 0), TR_ESHUTDOWN);
        tr_promise_release(ps[i]);
    }
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.native_queued, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.cancelled, N);
    ASSERT_EQ(s.promises, N); /* in their records */
    tr_port_release(port);
    s = tt_stats(rt);
    ASSERT_EQ(s.ports, 0);
    ASSERT_EQ(s.promises, 0);
    tr_runtime_release(rt);
}

/* ---- many threads -------------------------------------------------------------------- */

typedef struct bulk {
    tr_promise_t **ps;
    size_t n;
    pthread_t tid;
} bulk;

static void *bulk_main(void *arg) {
    bulk *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        ASSERT_EQ(tr_promise_complete(b->ps[i], TR_OK, (int64_t)(i + 1) * 2), TR_OK);
        tr_promise_release(b->ps[i]); /* its reference: the record keeps it now */
    }
    return NULL;
}

TEST_IMPL(promise_c_thread_many) {
    /* A C thread completes many promises while this thread drains the
     * port the way a dispatcher does: every token exactly once. */
    size_t n = tt_scaled(200000);
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 7);
    bulk b = {.n = n, .ps = calloc(n, sizeof(tr_promise_t *))};
    ASSERT_NOT_NULL(b.ps);
    for (size_t i = 0; i < n; i++) {
        b.ps[i] = new_promise(rt, port, i + 1);
        tr_promise_ref(b.ps[i]);     /* the C thread's */
        tr_promise_release(b.ps[i]); /* the creator's, let go at once */
    }
    ASSERT_EQ(tt_stats(rt).promises, n);
    ASSERT_EQ(pthread_create(&b.tid, NULL, bulk_main, &b), 0);
    uint8_t *seen = calloc(n, 1);
    ASSERT_NOT_NULL(seen);
    size_t total = 0;
    double deadline = tt_now() + 30.0;
    while (total < n) {
        ASSERT_DBL_CMP(tt_now(), <, deadline);
        uint64_t ids[4];
        int k = tr_runtime_wait_ready(rt, ids, 4, 0.2);
        ASSERT_GE(k, 0);
        for (int i = 0; i < k; i++) ASSERT_EQ(ids[i], 7);
        tr_completion_t c[256];
        size_t got;
        while ((got = tt_drain(port, c, 256)) > 0) {
            for (size_t i = 0; i < got; i++) {
                ASSERT(c[i].token >= 1 && c[i].token <= n);
                ASSERT_EQ(c[i].status, TR_OK);
                ASSERT_EQ(c[i].final, 1);
                ASSERT(c[i].value == (int64_t)c[i].token * 2);
                ASSERT_EQ(seen[c[i].token - 1]++, 0);
                total++;
            }
        }
    }
    ASSERT_EQ(pthread_join(b.tid, NULL), 0);
    tt_expect_quiet(rt, port, 0.02);
    for (size_t i = 0; i < n; i++) ASSERT_EQ(seen[i], 1);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.completed, n);
    expect_no_promises(rt);
    free(seen);
    free(b.ps);
    tr_port_release(port);
    tr_runtime_release(rt);
}

enum { RACERS = 4 };

typedef struct race {
    tr_promise_t **ps;
    size_t n;
    int8_t *rc;        /* [promise * RACERS + racer]: what each call returned */
    atomic_bool go;
} race;

typedef struct racer {
    race *r;
    int index;
    pthread_t tid;
} racer;

/* Racer k: 0 and 2 complete (an int, bytes), 1 and 3 cancel. */
static void *racer_main(void *arg) {
    racer *me = arg;
    race *r = me->r;
    while (!atomic_load(&r->go)) sched_yield();
    for (size_t i = 0; i < r->n; i++) {
        int rc;
        switch (me->index) {
        case 0: rc = tr_promise_complete(r->ps[i], TR_OK, (int64_t)i); break;
        case 2: rc = tr_promise_complete_bytes(r->ps[i], &i, sizeof i); break;
        default: rc = tr_promise_cancel(r->ps[i]); break;
        }
        r->rc[i * RACERS + (size_t)me->index] = (int8_t)rc;
    }
    return NULL;
}

TEST_IMPL(promise_race_complete_cancel) {
    /* Threads race to complete and to cancel the same promises, in the
     * same order: exactly one wins each, the others are told what won, and
     * exactly one record arrives, the winner's. */
    size_t n = tt_scaled(20000);
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    race r = {.n = n, .ps = calloc(n, sizeof(tr_promise_t *)), .rc = calloc(n * RACERS, 1)};
    ASSERT(r.ps && r.rc);
    for (size_t i = 0; i < n; i++) r.ps[i] = new_promise(rt, port, i + 1);
    racer rs[RACERS];
    for (int k = 0; k < RACERS; k++) {
        rs[k] = (racer){.r = &r, .index = k};
        ASSERT_EQ(pthread_create(&rs[k].tid, NULL, racer_main, &rs[k]), 0);
    }
    atomic_store(&r.go, true);
    tt_ledger_t l;
    tt_ledger_init(&l, n);
    ASSERT_EQ(tt_wait_finals(rt, port, n, 30.0, tt_ledger_visit, &l), n);
    for (int k = 0; k < RACERS; k++) ASSERT_EQ(pthread_join(rs[k].tid, NULL), 0);
    tt_expect_quiet(rt, port, 0.02);
    ASSERT_EQ(l.stray, 0);
    size_t wins[RACERS] = {0};
    for (size_t i = 0; i < n; i++) {
        int winner = -1;
        for (int k = 0; k < RACERS; k++)
            if (r.rc[i * RACERS + (size_t)k] == TR_OK) {
                ASSERT_EQ(winner, -1); /* one winner only */
                winner = k;
            }
        ASSERT_GE(winner, 0);
        wins[winner]++;
        bool cancelled = winner % 2 == 1;
        for (int k = 0; k < RACERS; k++)
            if (k != winner) ASSERT_EQ(r.rc[i * RACERS + (size_t)k], cancelled ? TR_CANCELLED : TR_EDONE);
        ASSERT_EQ(l.finals[i], 1);
        ASSERT_EQ(flag_of(r.ps[i]), cancelled ? 1 : 0);
        size_t len = 0;
        const void *b = tr_promise_bytes(r.ps[i], &len);
        switch (winner) {
        case 0:
            ASSERT_EQ(l.status[i], TR_OK);
            ASSERT_EQ(l.value[i], i);
            ASSERT_NULL(b);
            break;
        case 2:
            ASSERT_EQ(l.status[i], TR_OK);
            ASSERT_EQ(l.value[i], sizeof i);
            ASSERT_EQ(len, sizeof i);
            ASSERT_EQ(memcmp(b, &i, sizeof i), 0);
            break;
        default:
            ASSERT_EQ(l.status[i], TR_CANCELLED);
            ASSERT_EQ(l.value[i], 0);
            ASSERT_NULL(b);
            break;
        }
        ASSERT_EQ(tr_promise_state(r.ps[i]), l.status[i]);
        tr_promise_release(r.ps[i]);
    }
    tt_ledger_free(&l);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.completed, wins[0] + wins[2]);
    ASSERT_EQ(s.cancelled, wins[1] + wins[3]);
    expect_no_promises(rt);
    free(r.ps);
    free(r.rc);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* ---- the C API table ------------------------------------------------------------------ */

TEST_IMPL(capi_table) {
    const tr_capi_t *api = tr_capi_table();
    ASSERT_NOT_NULL(api);
    ASSERT(tr_capi_table() == api); /* one table */
    ASSERT_EQ(api->abi_version, TR_CAPI_VERSION);
    ASSERT_EQ(api->size, sizeof(tr_capi_t));
    /* Every entry is filled in. */
    const void *const fns[] = {
        (const void *)api->status_name,        (const void *)api->promise_complete,
        (const void *)api->promise_complete_bytes, (const void *)api->promise_state,
        (const void *)api->promise_cancel_flag, (const void *)api->promise_run,
        (const void *)api->promise_ref,        (const void *)api->promise_release,
        (const void *)api->channel_send_int,   (const void *)api->channel_send_bytes,
        (const void *)api->channel_recv,       (const void *)api->channel_close,
        (const void *)api->channel_closed,     (const void *)api->channel_ref,
        (const void *)api->channel_release,    (const void *)api->item_kind,
        (const void *)api->item_int,           (const void *)api->item_bytes,
        (const void *)api->item_free,          (const void *)api->mutex_ticket,
        (const void *)api->mutex_lock,         (const void *)api->mutex_unlock,
        (const void *)api->mutex_ref,          (const void *)api->mutex_release,
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) ASSERT_NOT_NULL(fns[i]);
    /* The names, in enum order. */
    static const char *const names[] = {
        "TR_OK",        "TR_CANCELLED", "TR_TIMEDOUT", "TR_ENOMEM", "TR_EINVAL",
        "TR_ESHUTDOWN", "TR_ECLOSED",   "TR_ETHREAD",  "TR_EFULL",  "TR_EEMPTY",
        "TR_EBUSY",     "TR_PENDING",   "TR_EDONE",    "TR_ETYPE",
    };
    for (int st = 0; st <= TR_ETYPE; st++) ASSERT_STR_EQ(api->status_name(st), names[st]);
    ASSERT_STR_EQ(api->status_name(-1), "unknown");
    ASSERT_STR_EQ(api->status_name(TR_ETYPE + 1), "unknown");
    ASSERT_STR_EQ(api->status_name(1 << 30), "unknown");
}

TEST_IMPL(capi_channel) {
    const tr_capi_t *api = tr_capi_table();
    tr_channel_t *ch = NULL;
    ASSERT_EQ(tr_channel_new(3, &ch), TR_OK);
    uint64_t item = 0;
    /* ints (inline and boxed) and bytes, in order. */
    ASSERT_EQ(api->channel_send_int(ch, 42, 0.0), TR_OK);
    ASSERT_EQ(api->channel_send_int(ch, INT64_MIN, 1.0), TR_OK);
    ASSERT_EQ(api->channel_send_bytes(ch, "hey", 3, -1.0), TR_OK);
    /* Full: TR_EFULL / TR_TIMEDOUT, and the adapter frees what it made
     * (ASan and valgrind check). */
    ASSERT_EQ(api->channel_send_int(ch, INT64_MAX, 0.0), TR_EFULL);
    ASSERT_EQ(api->channel_send_bytes(ch, "no", 2, 0.01), TR_TIMEDOUT);
    ASSERT_EQ(tr_channel_len(ch), 3);
    ASSERT_EQ(api->channel_recv(ch, &item, 0.0), TR_OK);
    ASSERT_EQ(api->item_kind(item), TR_ITEM_INT);
    ASSERT_EQ(api->item_int(item), 42);
    api->item_free(item);
    ASSERT_EQ(api->channel_recv(ch, &item, 1.0), TR_OK);
    ASSERT_EQ(api->item_kind(item), TR_ITEM_INT);
    ASSERT(api->item_int(item) == INT64_MIN);
    api->item_free(item);
    ASSERT_EQ(api->channel_recv(ch, &item, -1.0), TR_OK);
    ASSERT_EQ(api->item_kind(item), TR_ITEM_BYTES);
    size_t len = 0;
    const char *b = api->item_bytes(item, &len);
    ASSERT_EQ(len, 3);
    ASSERT_EQ(memcmp(b, "hey", 3), 0);
    api->item_free(item);
    ASSERT_EQ(api->channel_recv(ch, &item, 0.0), TR_EEMPTY);
    ASSERT_EQ(api->channel_recv(ch, &item, 0.01), TR_TIMEDOUT);
    /* A Python object's key at the head: left for a Python receiver. */
    ASSERT_EQ(tr_channel_try_send(ch, 5, NULL), TR_OK);
    ASSERT_EQ(api->channel_recv(ch, &item, 0.0), TR_ETYPE);
    ASSERT_EQ(tr_channel_take(ch, 0, NULL), 5);
    /* Values from C reach a plain receiver as value items. */
    ASSERT_EQ(api->channel_send_int(ch, -7, 0.0), TR_OK);
    ASSERT_EQ(tr_channel_try_recv(ch, &item, NULL), TR_OK);
    ASSERT_EQ(tr_item_get_int(item), -7);
    /* Bad arguments. */
    ASSERT_EQ(api->channel_send_int(NULL, 1, 0.0), TR_EINVAL);
    ASSERT_EQ(api->channel_send_bytes(NULL, "x", 1, 0.0), TR_EINVAL);
    ASSERT_EQ(api->channel_send_bytes(ch, NULL, 1, 0.0), TR_EINVAL);
    ASSERT_EQ(api->channel_recv(NULL, &item, 0.0), TR_EINVAL);
    ASSERT_EQ(api->channel_recv(ch, NULL, 0.0), TR_EINVAL);
    ASSERT_EQ(api->channel_closed(NULL), 1);
    api->channel_close(NULL);
    /* References and close. */
    api->channel_ref(ch);
    api->channel_release(ch);
    ASSERT_EQ(api->channel_closed(ch), 0);
    ASSERT_EQ(api->channel_send_int(ch, 1, 0.0), TR_OK);
    api->channel_close(ch);
    ASSERT_EQ(api->channel_closed(ch), 1);
    ASSERT_EQ(api->channel_send_int(ch, 2, 0.0), TR_ECLOSED);
    ASSERT_EQ(api->channel_send_bytes(ch, "x", 1, -1.0), TR_ECLOSED);
    ASSERT_EQ(api->channel_recv(ch, &item, -1.0), TR_OK);
    ASSERT_EQ(api->item_int(item), 1);
    ASSERT_EQ(api->channel_recv(ch, &item, -1.0), TR_ECLOSED);
    api->channel_release(ch);
}

TEST_IMPL(capi_mutex) {
    const tr_capi_t *api = tr_capi_table();
    tr_mutex_t *m = NULL;
    ASSERT_EQ(tr_mutex_new(&m), TR_OK);
    /* Tickets: never 0, never repeated, far above the shim's small ones. */
    uint64_t t1 = api->mutex_ticket(), t2 = api->mutex_ticket(), t3 = tr_mutex_ticket();
    ASSERT(t1 != 0 && t2 != 0 && t3 != 0);
    ASSERT(t1 != t2 && t2 != t3 && t1 != t3);
    ASSERT(t1 > (UINT64_C(1) << 62) && t2 > (UINT64_C(1) << 62));
    ASSERT_EQ(api->mutex_lock(m, 0.0, t1), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(api->mutex_lock(m, 0.0, t2), TR_EBUSY);
    double t0 = tt_now();
    ASSERT_EQ(api->mutex_lock(m, 0.03, t2), TR_TIMEDOUT);
    ASSERT_DBL_CMP(tt_now() - t0, >=, 0.025);
    ASSERT_EQ(api->mutex_unlock(m, t2), TR_EINVAL); /* not held under t2 */
    ASSERT_EQ(tr_mutex_locked(m), 1);
    ASSERT_EQ(api->mutex_unlock(m, t1), TR_OK);
    ASSERT_EQ(tr_mutex_locked(m), 0);
    ASSERT_EQ(api->mutex_unlock(m, t1), TR_EINVAL);
    ASSERT_EQ(api->mutex_lock(m, -1.0, t2), TR_OK); /* free: no wait */
    ASSERT_EQ(tr_mutex_unlock_if(m, t2, NULL), TR_OK);
    ASSERT_EQ(api->mutex_lock(NULL, 0.0, t1), TR_EINVAL);
    ASSERT_EQ(api->mutex_unlock(NULL, t1), TR_EINVAL);
    api->mutex_ref(m);
    api->mutex_release(m);
    ASSERT_EQ(api->mutex_lock(m, 0.0, t3), TR_OK);
    ASSERT_EQ(api->mutex_unlock(m, t3), TR_OK);
    api->mutex_release(m);
}

TEST_IMPL(capi_promise) {
    const tr_capi_t *api = tr_capi_table();
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_promise_t *p = new_promise(rt, port, 1), *q = new_promise(rt, port, 2),
                 *r = new_promise(rt, port, 3);
    api->promise_ref(p);
    tr_promise_release(p); /* the extension's handle is the last one */
    ASSERT_EQ(api->promise_state(p), TR_PENDING);
    ASSERT_EQ(api->promise_complete(p, TR_OK, 11), TR_OK);
    ASSERT_EQ(api->promise_complete(p, TR_OK, 12), TR_EDONE);
    ASSERT_EQ(api->promise_state(p), TR_OK);
    api->promise_release(p);
    expect_record(rt, port, 1, TR_OK, 11);

    ASSERT_EQ(api->promise_complete_bytes(q, "abcd", 4), TR_OK);
    expect_record(rt, port, 2, TR_OK, 4);
    size_t len = 0;
    ASSERT_EQ(memcmp(tr_promise_bytes(q, &len), "abcd", 4), 0);
    ASSERT_EQ(len, 4);

    job_t j = {.result = 33};
    ASSERT_EQ(api->promise_run(r, job_fn, &j, NULL), TR_OK);
    ASSERT_EQ(api->promise_run(r, job_fn, &j, NULL), TR_EINVAL);
    expect_record(rt, port, 3, TR_OK, 33);
    ASSERT_EQ(atomic_load(&j.runs), 1);
    ASSERT_EQ(__atomic_load_n(api->promise_cancel_flag(r), __ATOMIC_ACQUIRE), 0);

    tr_promise_t *c = new_promise(rt, port, 4);
    ASSERT_EQ(tr_promise_cancel(c), TR_OK);
    ASSERT_EQ(__atomic_load_n(api->promise_cancel_flag(c), __ATOMIC_ACQUIRE), 1);
    ASSERT_EQ(api->promise_complete(c, TR_OK, 1), TR_CANCELLED);
    expect_record(rt, port, 4, TR_CANCELLED, 0);
    tr_promise_release(c);
    tr_promise_release(q);
    tr_promise_release(r);
    ASSERT(tt_wait_idle(rt, 5.0));
    expect_no_promises(rt);
    tr_port_release(port);
    tr_runtime_release(rt);
}
