/*
 * promise.c - promises and native jobs (layer L5, see promise.h).
 *
 * A promise is a record-to-be for one token on one port.  Unlike an op it
 * never visits the loop thread: whoever completes it (any thread) pushes
 * its record straight to the port, which reports itself to the dispatcher
 * like any completion made by a C thread.  "Complete" and "cancel" race on
 * one atomic state, so exactly one of them wins:
 *
 *   PENDING --complete--> COMPLETING --(result stored)--> DONE
 *   PENDING --cancel-----> CANCELLED / CLOSED / SHUTDOWN (who cancelled)
 *
 * The final record is pushed once the state is final *and* no job still
 * runs for the promise (holds: 1 for the state, +1 per job), so a consumer
 * that keeps the job's argument alive until the record arrives never frees
 * it under a running function.  References: the creator's, one per
 * tr_promise_ref, one per queued job, one for the record while it is in the
 * port.  Every pending promise is listed in its op set, so a port's close
 * and a shutdown can cancel it.  A promise holds its port until its record
 * is queued (never after: a queued record holds the promise), and the
 * runtime's hub (the runtime's memory: its op set, stats and promise lock)
 * until it is freed, so a handle stays valid after shutdown and release.
 *
 * Threads: every public function, any thread; the job's function runs on a
 * worker.  Locks: PROMISES (the list), then, after dropping it, PORT/HUB
 * (the record) or INBOX and POOL under it (a job).
 */
#include "promise.h"

#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "lock.h"

enum { S_PENDING = -1, S_COMPLETING = -2, S_DONE = -3 }; /* else TR_CANCELLED/ECLOSED/ESHUTDOWN */

struct tr_promise {
    atomic_int refs;
    atomic_int state;
    atomic_int holds;       /* the record is pushed when this reaches 0 */
    atomic_bool has_job;    /* tr_promise_run was accepted once */
    int cancel_flag;        /* 0, then 1 once cancelled: read by the job's function */
    tr__opset_t *set;       /* in the runtime, whose memory the hub reference keeps */
    tr_port_t *port;        /* holds a reference until the record is queued, then NULL */
    tr__record_t final;     /* status and value (or byte length) of the result */
    unsigned char *bytes;   /* a byte result (owned), or NULL */
    size_t len;
    /* the job */
    tr__msg_t msg;          /* tr_promise_submit: to the loop thread, then the pool */
    tr__work_t work;
    tr_native_fn fn;
    void *arg;
    void (*drop)(void *arg); /* called once the job is done with arg (may be NULL) */
    /* in set->promises while registered (promise_mu) */
    tr_promise_t *prev, *next;
    bool listed;
    tr_promise_t *todo;     /* a cancel sweep's private chain */
};

static void unlist(tr_promise_t *p) {
    tr__opset_t *set = p->set;
    tr__lock(&set->promise_mu, TR__RANK_PROMISES);
    if (p->listed) {
        TR__DLIST_UNLINK(set->promises, set->promises_tail, p, prev, next);
        p->listed = false;
    }
    tr__unlock(&set->promise_mu, TR__RANK_PROMISES);
}

static void promise_free(tr_promise_t *p) {
    tr__stats_t *stats = p->set->stats;
    tr__hub_t *hub = p->set->hub;
    if (atomic_load(&p->state) == S_PENDING) { /* dropped by everyone: never finishes */
        atomic_fetch_add(&stats->cancelled, 1);
        atomic_fetch_sub(&stats->pending, 1);
    }
    unlist(p);
    atomic_fetch_sub(&stats->promises, 1);
    tr_port_release(p->port); /* NULL once the record was queued */
    free(p->bytes);
    free(p);
    tr__hub_unref(hub); /* may free the runtime's memory: last */
}

void tr_promise_ref(tr_promise_t *p) {
    if (p) atomic_fetch_add(&p->refs, 1);
}

void tr_promise_release(tr_promise_t *p) {
    if (p && atomic_fetch_sub(&p->refs, 1) == 1) promise_free(p);
}

/* A reference for a cancel sweep, unless the last one is already gone: a
 * promise whose holders all let go stays listed until promise_free
 * unlists it, and must not be brought back from 0 (it would be freed
 * twice, and counted twice). */
static bool ref_if_live(tr_promise_t *p) {
    int r = atomic_load(&p->refs);
    while (r > 0)
        if (atomic_compare_exchange_weak(&p->refs, &r, r + 1)) return true;
    return false;
}

static void record_released(tr__record_t *r) {
    tr_promise_release(TR__CONTAINER_OF(r, tr_promise_t, final));
}

/* Drop one hold; the last one pushes the final record (state is final).
 * The promise's port reference goes with it, for the push only: a queued
 * record holds the promise, so a promise holding the port would keep a
 * port let go with the record still queued alive for ever (and the
 * record, and the promise).  Ops and waiters do the same.  The promise is
 * off the list by now (complete and cancel unlist before they drop their
 * hold), so no sweep reads p->port any more. */
static void drop_hold(tr_promise_t *p) {
    if (atomic_fetch_sub(&p->holds, 1) != 1) return;
    tr_port_t *port = p->port;
    p->port = NULL;
    tr_promise_ref(p); /* the record's: record_released drops it */
    tr__port_push(port, &p->final);
    tr_port_release(port);
}

/* Take a hold unless the record is already on its way. */
static bool take_hold(tr_promise_t *p) {
    int h = atomic_load(&p->holds);
    while (h > 0)
        if (atomic_compare_exchange_weak(&p->holds, &h, h + 1)) return true;
    return false;
}

/* What a late complete or cancel returns, given the state that won. */
static int late(int state) { return state >= 0 ? state : TR_EDONE; }

static int cancel(tr_promise_t *p, int why);

int tr_promise_new(tr_runtime_t *rt, tr_port_t *port, uint64_t token, tr_promise_t **out) {
    if (!rt || !port || !out || token == 0) return TR_EINVAL;
    tr__opset_t *set = tr__opset_of(rt);
    if (port->inbox != set->inbox) return TR_EINVAL; /* a port of another runtime */
    if (tr__port_closed(port)) return TR_ECLOSED;
    tr_promise_t *p = calloc(1, sizeof *p);
    if (!p) return TR_ENOMEM;
    atomic_init(&p->refs, 1);
    atomic_init(&p->state, S_PENDING);
    atomic_init(&p->holds, 1);
    p->set = set;
    p->port = port;
    p->final.c.token = token;
    p->final.c.final = 1;
    p->final.release = record_released;
    tr__lock(&set->promise_mu, TR__RANK_PROMISES);
    bool halted = set->promises_halted;
    if (!halted) {
        TR__DLIST_APPEND(set->promises, set->promises_tail, p, prev, next);
        p->listed = true;
        tr__port_ref(port);
        tr__hub_ref(set->hub);
        atomic_fetch_add(&set->stats->promises, 1);
        atomic_fetch_add(&set->stats->submitted, 1);
        atomic_fetch_add(&set->stats->pending, 1);
    }
    tr__unlock(&set->promise_mu, TR__RANK_PROMISES);
    if (halted) {
        free(p);
        return TR_ESHUTDOWN;
    }
    /* A close that came after the check above may have swept the port's
     * promises before p was listed: cancel it as that sweep would have.
     * (The port's closed flag is set before its close message is posted,
     * so a sweep that missed p ran after this reads it set; a sweep that
     * saw p makes this a no-op: one cancel wins.) */
    if (tr__port_closed(port)) cancel(p, TR_ECLOSED);
    *out = p;
    return TR_OK;
}

/* The winner of PENDING -> COMPLETING stores the result and finishes. */
static int complete(tr_promise_t *p, int status, int64_t value, unsigned char *bytes, size_t len) {
    int expect = S_PENDING;
    if (!atomic_compare_exchange_strong(&p->state, &expect, S_COMPLETING)) {
        free(bytes);
        return late(expect);
    }
    if (status == TR_CANCELLED) /* the native side gave up: a running job is told too */
        __atomic_store_n(&p->cancel_flag, 1, __ATOMIC_RELEASE);
    p->bytes = bytes;
    p->len = len;
    p->final.c.status = status;
    p->final.c.value = bytes ? (int64_t)len : value;
    atomic_store(&p->state, S_DONE);
    unlist(p);
    tr__stats_t *stats = p->set->stats;
    atomic_fetch_add(status == TR_CANCELLED ? &stats->cancelled : &stats->completed, 1);
    atomic_fetch_sub(&stats->pending, 1);
    drop_hold(p);
    return TR_OK;
}

int tr_promise_complete(tr_promise_t *p, int status, int64_t value) {
    if (!p || status < TR_OK || status > TR_ETYPE || status == TR_PENDING) return TR_EINVAL;
    return complete(p, status, value, NULL, 0);
}

int tr_promise_complete_bytes(tr_promise_t *p, const void *data, size_t len) {
    if (!p || (!data && len)) return TR_EINVAL;
    int state = atomic_load(&p->state);
    if (state != S_PENDING) return late(state); /* no copy for nothing */
    unsigned char *copy = malloc(len ? len : 1); /* non-NULL marks a byte result */
    if (!copy) return TR_ENOMEM;
    if (len) memcpy(copy, data, len);
    return complete(p, TR_OK, 0, copy, len);
}

/* PENDING -> why (TR_CANCELLED, TR_ECLOSED or TR_ESHUTDOWN). */
static int cancel(tr_promise_t *p, int why) {
    int expect = S_PENDING;
    if (!atomic_compare_exchange_strong(&p->state, &expect, why)) return late(expect);
    __atomic_store_n(&p->cancel_flag, 1, __ATOMIC_RELEASE);
    p->final.c.status = TR_CANCELLED;
    p->final.c.value = 0;
    unlist(p);
    tr__stats_t *stats = p->set->stats;
    atomic_fetch_add(&stats->cancelled, 1);
    atomic_fetch_sub(&stats->pending, 1);
    drop_hold(p);
    return TR_OK;
}

int tr_promise_cancel(tr_promise_t *p) { return p ? cancel(p, TR_CANCELLED) : TR_EINVAL; }

int tr_promise_state(const tr_promise_t *p) {
    if (!p) return TR_EINVAL;
    int state = atomic_load(&((tr_promise_t *)p)->state);
    if (state == S_PENDING || state == S_COMPLETING) return TR_PENDING;
    if (state == S_DONE) return p->final.c.status;
    return TR_CANCELLED;
}

int tr_promise_settled(const tr_promise_t *p) {
    return p ? atomic_load(&((tr_promise_t *)p)->holds) == 0 : 1;
}

const volatile int *tr_promise_cancel_flag(tr_promise_t *p) { return p ? &p->cancel_flag : NULL; }

const void *tr_promise_bytes(const tr_promise_t *p, size_t *len) {
    if (!p || atomic_load(&((tr_promise_t *)p)->state) != S_DONE || !p->bytes) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = p->len;
    return p->bytes;
}

/* ---- jobs ------------------------------------------------------------------- */

static void job_run(tr__work_t *w) { /* a worker */
    tr_promise_t *p = TR__CONTAINER_OF(w, tr_promise_t, work);
    tr__stats_t *stats = p->set->stats;
    atomic_fetch_sub(&stats->native_queued, 1);
    if (atomic_load(&p->state) == S_PENDING) { /* cancelled before it started: never runs */
        atomic_fetch_add(&stats->native_running, 1);
        int64_t value = p->fn(p->arg, &p->cancel_flag);
        atomic_fetch_sub(&stats->native_running, 1);
        complete(p, TR_OK, value, NULL, 0); /* loses to a cancel: the result is dropped */
    }
    /* Before the record can go: whoever waits for it may free what arg
     * points into once it arrives. */
    if (p->drop) p->drop(p->arg);
    drop_hold(p);
    tr_promise_release(p);
}

/* Loop thread: a submitted job joins this iteration's batch for the pool. */
static void job_forward(tr__msg_t *msg, void *ctx) {
    tr__opset_t *set = ctx;
    tr_promise_t *p = TR__CONTAINER_OF(msg, tr_promise_t, msg);
    tr__workbatch_add(&set->outbox, &p->work);
}

/* Take the job's hold and reference and set it up; TR_OK or why not. */
static int job_prepare(tr_runtime_t *rt, tr_promise_t *p, tr_native_fn fn, void *arg,
                       void (*drop)(void *arg)) {
    if (!p || !fn) return TR_EINVAL;
    if (rt && tr__opset_of(rt) != p->set) return TR_EINVAL; /* a promise of another runtime */
    if (atomic_exchange(&p->has_job, true)) return TR_EINVAL; /* one job per promise */
    if (!take_hold(p)) return late(atomic_load(&p->state));
    int state = atomic_load(&p->state);
    if (state != S_PENDING) {
        drop_hold(p);
        return late(state);
    }
    p->fn = fn;
    p->arg = arg;
    p->drop = drop;
    p->work.run = job_run;
    p->work.next = NULL;
    p->work.solo = true;
    tr_promise_ref(p); /* the job's */
    atomic_fetch_add(&p->set->stats->native_queued, 1);
    return TR_OK;
}

/* The job could not be queued: the runtime has stopped. */
static int job_refused(tr_promise_t *p) {
    atomic_fetch_sub(&p->set->stats->native_queued, 1);
    cancel(p, TR_ESHUTDOWN);
    drop_hold(p);
    tr_promise_release(p);
    return TR_ESHUTDOWN;
}

int tr_promise_run(tr_runtime_t *rt, tr_promise_t *p, tr_native_fn fn, void *arg,
                   void (*drop)(void *arg)) {
    int rc = job_prepare(rt, p, fn, arg, drop);
    if (rc != TR_OK) return rc;
    /* Queued only while the runtime runs, decided under the inbox lock: a
     * shutdown tells the pool to quit, and then destroys it, only after the
     * state left RUNNING (as tr_debug_stall_worker does; lock order INBOX,
     * then POOL).  Asking the pool itself would touch its lock after that
     * destroy if this thread stalled here through a whole shutdown. */
    tr__inbox_t *inbox = p->set->inbox;
    bool running = tr__inbox_lock_running(inbox);
    if (running) tr__pool_push(p->set->pool, &p->work, &p->work);
    tr__inbox_unlock(inbox);
    if (!running) return job_refused(p);
    return TR_OK;
}

int tr_promise_submit(tr_promise_t *p, tr_native_fn fn, void *arg, void (*drop)(void *arg)) {
    int rc = job_prepare(NULL, p, fn, arg, drop);
    if (rc != TR_OK) return rc;
    tr__inbox_t *inbox = p->set->inbox;
    p->msg.run = job_forward;
    if (!tr__inbox_lock_running(inbox)) {
        tr__inbox_unlock(inbox);
        return job_refused(p);
    }
    tr__inbox_enqueue_locked(inbox, &p->msg,
                             atomic_load_explicit(&p->port->defer_wake, memory_order_relaxed));
    tr__inbox_unlock(inbox);
    return TR_OK;
}

/* ---- cancel sweeps ------------------------------------------------------------ */

/* Cancel (with why) the listed promises of port (all if NULL); halt: refuse
 * new ones from now on.  The list is walked under its lock, the cancels
 * (which push records and drop references) are made after it is dropped. */
static void sweep(tr__opset_t *set, tr_port_t *port, int why, bool halt) {
    tr_promise_t *todo = NULL;
    tr__lock(&set->promise_mu, TR__RANK_PROMISES);
    if (halt) set->promises_halted = true;
    for (tr_promise_t *p = set->promises, *next; p; p = next) {
        next = p->next;
        if (port && p->port != port) continue;
        /* Being freed (its last holder let go and waits for this lock to
         * unlist it): nothing to cancel, promise_free counts it. */
        if (!ref_if_live(p)) continue;
        /* Off the list now, so a concurrent sweep (a port closing during a
         * shutdown) cannot take it too: todo is one chain per promise. */
        TR__DLIST_UNLINK(set->promises, set->promises_tail, p, prev, next);
        p->listed = false;
        p->todo = todo;
        todo = p;
    }
    tr__unlock(&set->promise_mu, TR__RANK_PROMISES);
    while (todo) {
        tr_promise_t *p = todo;
        todo = p->todo;
        cancel(p, why);
        tr_promise_release(p);
    }
}

void tr__promises_port_closing(tr__opset_t *set, tr_port_t *port) { sweep(set, port, TR_ECLOSED, false); }

void tr__promises_halt(tr__opset_t *set) { sweep(set, NULL, TR_ESHUTDOWN, true); }
