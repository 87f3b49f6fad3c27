"""A small cffi module of native helpers for the native-work tests.

Built once per process (a few seconds of gcc) into a temporary folder, and
reaching the runtime only the way a user's extension would: through the C
API table of ``tokio_runtime_capi.h`` (the module gets the table's address,
as the capsule holds it), never by linking against the package.
"""

from __future__ import annotations

import functools
import importlib
import sys
import tempfile

import cffi

import tokio_runtime

CDEF = """
typedef int64_t (*tr_native_fn)(void *arg, const volatile int *cancelled);
typedef struct probe { int started; int saw_cancel; int finished; int64_t value; } probe_t;
typedef struct order { int64_t next; int64_t seen[4096]; } order_t;
typedef struct order_job { order_t *order; int64_t id; } order_job_t;
typedef struct completer completer_t;

int set_api(uintptr_t table);
int64_t add_one(void *arg, const volatile int *cancelled);
int64_t spin_until_cancelled(void *arg, const volatile int *cancelled);
int64_t sleep_ms(void *arg, const volatile int *cancelled);
int64_t record_order(void *arg, const volatile int *cancelled);
int64_t mark_ran(void *arg, const volatile int *cancelled);
long long_result(void *arg, const volatile int *cancelled);
int wrong_signature(void *arg);

/* A C thread completing promises (it takes a reference to each first). */
enum { MODE_INT = 0, MODE_BYTES = 1, MODE_STATUS = 2 };
completer_t *completer_start(const uintptr_t *handles, size_t n, int64_t base, int mode,
                             int delay_us);
/* Join it; counts[k] = how many completions returned status k (0..15). */
void completer_join(completer_t *c, int64_t counts[16]);
int promise_complete(uintptr_t handle, int status, int64_t value);
int promise_complete_bytes(uintptr_t handle, const char *data, size_t len);
void promise_ref(uintptr_t handle);
void promise_release(uintptr_t handle);
int promise_flag(uintptr_t handle);

/* A C thread sending count values (start, start+1, ...; as decimal bytes if
 * as_bytes) into a channel handle it owns (released at the end). */
typedef struct producer producer_t;
producer_t *producer_start(uintptr_t channel, int64_t start, int64_t count, int as_bytes,
                           double timeout, int close_at_end);
int producer_join(producer_t *p, int64_t *sent);
/* Receive values in C until the channel is closed and drained (or another
 * status): returns that status; sums the ints, counts the items and bytes. */
int consume(uintptr_t channel, double timeout, int64_t *sum, int64_t *items, int64_t *nbytes);
int channel_recv_one(uintptr_t channel, double timeout, int64_t *value, int *kind);
int channel_send_int(uintptr_t channel, int64_t value, double timeout);
void channel_release(uintptr_t channel);
/* Hold a mutex handle from a C thread for ms milliseconds. */
typedef struct holder holder_t;
holder_t *mutex_hold_start(uintptr_t mutex, int ms);
int mutex_hold_join(holder_t *h);
int mutex_holding(holder_t *h);
"""

SOURCE = r"""
#define TR_CAPI_NO_PYTHON
#include "tokio_runtime_capi.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct probe { int started; int saw_cancel; int finished; int64_t value; } probe_t;
typedef struct order { int64_t next; int64_t seen[4096]; } order_t;
typedef struct order_job { order_t *order; int64_t id; } order_job_t;

enum { MODE_INT = 0, MODE_BYTES = 1, MODE_STATUS = 2 };
static const tr_capi_t *api;

int set_api(uintptr_t table) {
    api = (const tr_capi_t *)table;
    return api->abi_version == TR_CAPI_VERSION && api->size == sizeof(tr_capi_t);
}

static void nap_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

int64_t add_one(void *arg, const volatile int *cancelled) {
    (void)cancelled;
    return arg ? *(int64_t *)arg + 1 : 41;
}

int64_t spin_until_cancelled(void *arg, const volatile int *cancelled) {
    probe_t *p = arg;
    __atomic_store_n(&p->started, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 50000; i++) { /* 10 s at most */
        if (__atomic_load_n((const int *)cancelled, __ATOMIC_RELAXED)) {
            __atomic_store_n(&p->saw_cancel, 1, __ATOMIC_SEQ_CST);
            break;
        }
        nap_us(200);
    }
    __atomic_store_n(&p->finished, 1, __ATOMIC_SEQ_CST);
    return -1;
}

int64_t sleep_ms(void *arg, const volatile int *cancelled) {
    (void)cancelled;
    int64_t ms = *(int64_t *)arg;
    nap_us((long)ms * 1000);
    return ms;
}

int64_t record_order(void *arg, const volatile int *cancelled) {
    (void)cancelled;
    order_job_t *job = arg;
    int64_t i = __atomic_fetch_add(&job->order->next, 1, __ATOMIC_SEQ_CST);
    if (i < 4096) job->order->seen[i] = job->id;
    return job->id;
}

int64_t mark_ran(void *arg, const volatile int *cancelled) {
    (void)cancelled;
    __atomic_store_n((int *)arg, 1, __ATOMIC_SEQ_CST);
    return 7;
}

long long_result(void *arg, const volatile int *cancelled) {
    (void)arg;
    (void)cancelled;
    return 5;
}

int wrong_signature(void *arg) { return arg != NULL; }

typedef struct completer {
    tr_promise_t **ps;
    size_t n;
    int64_t base;
    int mode, delay_us;
    int64_t counts[16];
    pthread_t thread;
} completer_t;

static void *completer_main(void *arg) {
    completer_t *c = arg;
    if (c->delay_us) nap_us(c->delay_us);
    for (size_t i = 0; i < c->n; i++) {
        int rc;
        int64_t v = c->base + (int64_t)i;
        if (c->mode == MODE_BYTES) {
            char buf[32];
            int len = snprintf(buf, sizeof buf, "%lld", (long long)v);
            rc = api->promise_complete_bytes(c->ps[i], buf, (size_t)len);
        } else if (c->mode == MODE_STATUS) {
            rc = api->promise_complete(c->ps[i], (int)v, 0);
        } else {
            rc = api->promise_complete(c->ps[i], TR_OK, v);
        }
        c->counts[rc >= 0 && rc < 16 ? rc : 15]++;
        api->promise_release(c->ps[i]);
    }
    return NULL;
}

completer_t *completer_start(const uintptr_t *handles, size_t n, int64_t base, int mode,
                             int delay_us) {
    completer_t *c = calloc(1, sizeof *c);
    c->ps = malloc((n ? n : 1) * sizeof *c->ps);
    c->n = n;
    c->base = base;
    c->mode = mode;
    c->delay_us = delay_us;
    for (size_t i = 0; i < n; i++) {
        c->ps[i] = (tr_promise_t *)handles[i];
        api->promise_ref(c->ps[i]); /* ours: the Python objects may go */
    }
    pthread_create(&c->thread, NULL, completer_main, c);
    return c;
}

void completer_join(completer_t *c, int64_t counts[16]) {
    pthread_join(c->thread, NULL);
    memcpy(counts, c->counts, sizeof c->counts);
    free(c->ps);
    free(c);
}

int promise_complete(uintptr_t h, int status, int64_t value) {
    return api->promise_complete((tr_promise_t *)h, status, value);
}
int promise_complete_bytes(uintptr_t h, const char *data, size_t len) {
    return api->promise_complete_bytes((tr_promise_t *)h, data, len);
}
void promise_ref(uintptr_t h) { api->promise_ref((tr_promise_t *)h); }
void promise_release(uintptr_t h) { api->promise_release((tr_promise_t *)h); }
typedef struct producer {
    tr_channel_t *ch;
    int64_t start, count, sent;
    int as_bytes, close_at_end, rc;
    double timeout;
    pthread_t thread;
} producer_t;

static void *producer_main(void *arg) {
    producer_t *p = arg;
    p->rc = TR_OK;
    for (int64_t i = 0; i < p->count; i++) {
        int64_t v = p->start + i;
        if (p->as_bytes) {
            char buf[32];
            int len = snprintf(buf, sizeof buf, "%lld", (long long)v);
            p->rc = api->channel_send_bytes(p->ch, buf, (size_t)len, p->timeout);
        } else {
            p->rc = api->channel_send_int(p->ch, v, p->timeout);
        }
        if (p->rc != TR_OK) break;
        p->sent++;
    }
    if (p->close_at_end) api->channel_close(p->ch);
    api->channel_release(p->ch);
    return NULL;
}

producer_t *producer_start(uintptr_t channel, int64_t start, int64_t count, int as_bytes,
                           double timeout, int close_at_end) {
    producer_t *p = calloc(1, sizeof *p);
    p->ch = (tr_channel_t *)channel; /* the caller's reference becomes the thread's */
    p->start = start;
    p->count = count;
    p->as_bytes = as_bytes;
    p->timeout = timeout;
    p->close_at_end = close_at_end;
    pthread_create(&p->thread, NULL, producer_main, p);
    return p;
}

int producer_join(producer_t *p, int64_t *sent) {
    pthread_join(p->thread, NULL);
    int rc = p->rc;
    *sent = p->sent;
    free(p);
    return rc;
}

int consume(uintptr_t channel, double timeout, int64_t *sum, int64_t *items, int64_t *nbytes) {
    tr_channel_t *ch = (tr_channel_t *)channel;
    for (;;) {
        uint64_t item;
        int rc = api->channel_recv(ch, &item, timeout);
        if (rc != TR_OK) return rc;
        if (api->item_kind(item) == TR_ITEM_INT) {
            *sum += api->item_int(item);
        } else {
            size_t len;
            const void *data = api->item_bytes(item, &len);
            if (!data) return -1;
            *nbytes += (int64_t)len;
        }
        api->item_free(item);
        (*items)++;
    }
}

int channel_recv_one(uintptr_t channel, double timeout, int64_t *value, int *kind) {
    uint64_t item;
    int rc = api->channel_recv((tr_channel_t *)channel, &item, timeout);
    if (rc != TR_OK) return rc;
    *kind = api->item_kind(item);
    *value = *kind == TR_ITEM_INT ? api->item_int(item) : 0;
    if (*kind == TR_ITEM_BYTES) {
        size_t len;
        api->item_bytes(item, &len);
        *value = (int64_t)len;
    }
    api->item_free(item);
    return rc;
}

int channel_send_int(uintptr_t channel, int64_t value, double timeout) {
    return api->channel_send_int((tr_channel_t *)channel, value, timeout);
}

void channel_release(uintptr_t channel) { api->channel_release((tr_channel_t *)channel); }

typedef struct holder {
    tr_mutex_t *m;
    int ms, rc, holding;
    pthread_t thread;
} holder_t;

static void *holder_main(void *arg) {
    holder_t *h = arg;
    uint64_t ticket = api->mutex_ticket();
    h->rc = api->mutex_lock(h->m, -1.0, ticket);
    if (h->rc == TR_OK) {
        __atomic_store_n(&h->holding, 1, __ATOMIC_SEQ_CST);
        nap_us((long)h->ms * 1000);
        __atomic_store_n(&h->holding, 0, __ATOMIC_SEQ_CST);
        h->rc = api->mutex_unlock(h->m, ticket);
    }
    api->mutex_release(h->m);
    return NULL;
}

holder_t *mutex_hold_start(uintptr_t mutex, int ms) {
    holder_t *h = calloc(1, sizeof *h);
    h->m = (tr_mutex_t *)mutex;
    h->ms = ms;
    pthread_create(&h->thread, NULL, holder_main, h);
    return h;
}

int mutex_holding(holder_t *h) { return __atomic_load_n(&h->holding, __ATOMIC_SEQ_CST); }

int mutex_hold_join(holder_t *h) {
    pthread_join(h->thread, NULL);
    int rc = h->rc;
    free(h);
    return rc;
}

int promise_flag(uintptr_t h) {
    return __atomic_load_n((const int *)api->promise_cancel_flag((tr_promise_t *)h),
                           __ATOMIC_RELAXED);
}
"""


@functools.cache
def load():
    """Build (once per process) and import the module; return (ffi, lib)."""
    from tokio_runtime._native import ffi as tr_ffi
    from tokio_runtime._native import lib as tr_lib

    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    ffi.set_source(
        "trtest_native",
        SOURCE,
        include_dirs=[tokio_runtime.get_include()],
        extra_compile_args=["-std=c11", "-D_GNU_SOURCE"],
        libraries=["pthread"],
    )
    folder = tempfile.mkdtemp(prefix="trtest-native-")
    ffi.compile(tmpdir=folder, verbose=False)
    sys.path.insert(0, folder)
    try:
        module = importlib.import_module("trtest_native")
    finally:
        sys.path.remove(folder)
    assert module.lib.set_api(int(tr_ffi.cast("uintptr_t", tr_lib.tr_capi_table())))
    return module.ffi, module.lib
