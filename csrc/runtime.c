/*
 * runtime.c - the runtime object: loop thread, inbox, op lifecycle, shutdown.
 *
 * Every op is started, cancelled and finished on the loop thread, so "which
 * of complete and cancel wins" is decided by plain program order there, with
 * no lock.  Other threads only ever append messages to the inbox (one mutex,
 * one ev_async_send on the empty -> non-empty edge).
 */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TR__MAX_WORKERS 256

int tr_max_workers(void) { return TR__MAX_WORKERS; }

bool tr__valid_seconds(double s) { return isfinite(s) && s >= 0.0; }

void tr__runtime_ref(tr_runtime_t *rt) { atomic_fetch_add(&rt->refs, 1); }

/* ---- threads ------------------------------------------------------------- */

/* "{prefix}-{suffix}" in 15 bytes (the Linux limit): the prefix is cut, never
 * the suffix, so that "tokio-runtime-10" does not become a second "-1". */
static void format_name(char out[16], const char *prefix, const char *suffix) {
    size_t slen = strlen(suffix);
    if (slen > 14) slen = 14;
    size_t plen = strnlen(prefix, 15 - 1 - slen);
    memcpy(out, prefix, plen);
    out[plen] = '-';
    memcpy(out + plen + 1, suffix, slen);
    out[plen + 1 + slen] = '\0';
}

int tr_name_current_thread(const char *prefix, const char *suffix) {
    char buf[16];
    if (prefix == NULL || suffix == NULL) return EINVAL;
    format_name(buf, prefix, suffix);
    return pthread_setname_np(pthread_self(), buf);
}

int tr__thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name, int index) {
    /* Block every signal in the new thread: a process-directed SIGINT must
     * land on the host's main thread, never on a runtime thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0) {
        char suffix[16], buf[16];
        snprintf(suffix, sizeof suffix, "%d", index);
        format_name(buf, name, suffix);
        (void)pthread_setname_np(*t, buf); /* cosmetic: ignore failure */
    }
    return err;
}

/* ---- inbox ---------------------------------------------------------------- */

/* Append msg to the inbox and wake the loop thread (mu held; the loop is
 * alive: it is destroyed only after the state has become STOPPED under this
 * same lock).  With `defer` (an op of a port that defers wake-ups) the wake
 * waits for tr_runtime_kick(), or for every TR__DEFER_MAX-th deferred op: a
 * burst of ops costs one wake-up, not one per op the loop thread happened to
 * catch.  Inbox not empty and nothing owed: a wake is on its way already and
 * takes msg along. */
static void enqueue_locked(tr_runtime_t *rt, tr__msg_t *msg, bool defer) {
    msg->next = NULL;
    bool unannounced = rt->inbox_head == NULL || rt->wake_owed;
    if (rt->inbox_tail) rt->inbox_tail->next = msg;
    else rt->inbox_head = msg;
    rt->inbox_tail = msg;
    if (defer ? unannounced && ++rt->wake_owed >= TR__DEFER_MAX : unannounced) {
        rt->wake_owed = 0;
        ev_async_send(rt->loop, &rt->wake);
    }
}

bool tr__post(tr_runtime_t *rt, tr__msg_t *msg) {
    pthread_mutex_lock(&rt->mu);
    if (rt->state == TR__STOPPED) {
        pthread_mutex_unlock(&rt->mu);
        return false;
    }
    enqueue_locked(rt, msg, false);
    pthread_mutex_unlock(&rt->mu);
    return true;
}

void tr_runtime_kick(tr_runtime_t *rt) {
    pthread_mutex_lock(&rt->mu);
    if (rt->wake_owed && rt->state != TR__STOPPED) ev_async_send(rt->loop, &rt->wake);
    rt->wake_owed = 0;
    pthread_mutex_unlock(&rt->mu);
}

static tr__msg_t *take_inbox(tr_runtime_t *rt, bool *stopping) {
    pthread_mutex_lock(&rt->mu);
    tr__msg_t *batch = rt->inbox_head;
    rt->inbox_head = rt->inbox_tail = NULL;
    rt->wake_owed = 0; /* whatever was owed is taken now */
    if (stopping) *stopping = rt->state != TR__RUNNING;
    pthread_mutex_unlock(&rt->mu);
    return batch;
}

static void run_batch(tr_runtime_t *rt, tr__msg_t *m) {
    while (m) {
        tr__msg_t *next = m->next; /* m may be freed by its own run() */
        m->run(rt, m);
        m = next;
    }
}

/* ---- op lifecycle --------------------------------------------------------- */

static void op_release_final(tr__record_t *r) {
    tr__op_t *op = TR__CONTAINER_OF(r, tr__op_t, final);
    atomic_fetch_sub(&op->rt->live_ops, 1);
    free(op);
}

tr__op_t *tr__op_alloc(tr_runtime_t *rt, size_t size, const tr__op_vtable_t *vt) {
    tr__op_t *op = calloc(1, size);
    if (!op) return NULL;
    op->vt = vt;
    op->rt = rt;
    op->state = TR__OP_QUEUED;
    op->final.release = op_release_final;
    op->final.c.final = 1;
    op->progress.c.final = 0;
    atomic_fetch_add(&rt->live_ops, 1);
    return op;
}

void tr__op_discard(tr__op_t *op) {
    if (op->vt->cleanup) op->vt->cleanup(op);
    atomic_fetch_sub(&op->rt->live_ops, 1);
    free(op);
}

static void list_link(tr_runtime_t *rt, tr__op_t *op) {
    op->all_prev = NULL;
    op->all_next = rt->all_ops;
    if (rt->all_ops) rt->all_ops->all_prev = op;
    rt->all_ops = op;
}

static void list_unlink(tr_runtime_t *rt, tr__op_t *op) {
    if (op->all_prev) op->all_prev->all_next = op->all_next;
    else rt->all_ops = op->all_next;
    if (op->all_next) op->all_next->all_prev = op->all_prev;
    op->all_prev = op->all_next = NULL;
}

static void op_start_msg(tr_runtime_t *rt, tr__msg_t *msg) {
    tr__op_t *op = TR__CONTAINER_OF(msg, tr__op_t, msg);
    int rc = tr__optable_put(&rt->ops, op->token, op);
    list_link(rt, op);
    if (rc != TR_OK) {
        /* The table could not take it (duplicate token or no memory): it
         * never ran, so report why instead of pretending it did. */
        op->state = TR__OP_RUNNING;
        tr__op_finish(op, rc, 0);
        return;
    }
    op->state = TR__OP_RUNNING;
    /* Nobody is left to run it for: the runtime is shutting down, or the
     * port is closed (its close message cancels only the ops started before
     * it ran; one starting later would run to its end for nobody). */
    if (rt->halting || tr__port_closed(op->port)) {
        op->state = TR__OP_CANCELLING;
        op->vt->cancel(op);
        return;
    }
    op->vt->start(op);
}

int tr__op_submit(tr_runtime_t *rt, tr_port_t *port, uint64_t token, tr__op_t *op) {
    if (token == 0 || port == NULL || port->rt != rt) {
        tr__op_discard(op);
        return TR_EINVAL;
    }
    op->token = token;
    op->port = port;
    op->final.c.token = token;
    op->progress.c.token = token;
    op->msg.run = op_start_msg;
    op->submitted = tr__mono_now();
    tr__port_ref(port);

    pthread_mutex_lock(&rt->mu);
    if (rt->state != TR__RUNNING) {
        pthread_mutex_unlock(&rt->mu);
        tr_port_release(port);
        tr__op_discard(op);
        return TR_ESHUTDOWN;
    }
    atomic_fetch_add(&rt->submitted, 1);
    atomic_fetch_add(&rt->pending, 1);
    enqueue_locked(rt, &op->msg, atomic_load_explicit(&port->defer_wake, memory_order_relaxed));
    pthread_mutex_unlock(&rt->mu);
    return TR_OK;
}

void tr__op_finish(tr__op_t *op, int status, int64_t value) {
    tr_runtime_t *rt = op->rt;
    tr_port_t *port = op->port;
    if (tr__optable_get(&rt->ops, op->token) == op) tr__optable_del(&rt->ops, op->token);
    list_unlink(rt, op);
    op->state = TR__OP_FINISHED;
    if (op->vt->cleanup) op->vt->cleanup(op);
    atomic_fetch_add(status == TR_CANCELLED ? &rt->cancelled : &rt->completed, 1);
    atomic_fetch_sub(&rt->pending, 1);
    op->final.c.status = status;
    op->final.c.value = value;
    tr__port_push(port, &op->final); /* from here on the port owns the op */
    tr_port_release(port);
}

double tr__op_waited(const tr__op_t *op) {
    double waited = op->rt->batch_now - op->submitted;
    return waited > 0 ? waited : 0;
}

void tr__op_progress(tr__op_t *op, int64_t value) { tr__port_progress(op->port, &op->progress, value); }

void tr__cancel_ops(tr_runtime_t *rt, tr_port_t *port) {
    tr__op_t *op = rt->all_ops;
    while (op) {
        /* Cancelling op finishes at most op itself, so next stays valid. */
        tr__op_t *next = op->all_next;
        if ((port == NULL || op->port == port) && op->state == TR__OP_RUNNING) {
            op->state = TR__OP_CANCELLING;
            op->vt->cancel(op);
        }
        op = next;
    }
}

typedef struct cancel_msg {
    tr__msg_t msg;
    uint64_t token;
} cancel_msg;

static void cancel_msg_run(tr_runtime_t *rt, tr__msg_t *msg) {
    cancel_msg *cm = TR__CONTAINER_OF(msg, cancel_msg, msg);
    tr__op_t *op = tr__optable_get(&rt->ops, cm->token);
    free(cm);
    if (op && op->state == TR__OP_RUNNING) {
        op->state = TR__OP_CANCELLING;
        op->vt->cancel(op);
    }
}

int tr_cancel(tr_runtime_t *rt, uint64_t token) {
    cancel_msg *cm = malloc(sizeof *cm);
    if (!cm) return TR_ENOMEM;
    cm->token = token;
    cm->msg.run = cancel_msg_run;
    if (!tr__post(rt, &cm->msg)) {
        free(cm);
        return TR_ESHUTDOWN;
    }
    return TR_OK;
}

/* ---- the loop thread ------------------------------------------------------ */

void tr__outbox_push(tr_runtime_t *rt, tr__work_t *w) {
    w->next = NULL;
    if (rt->outbox_tail) rt->outbox_tail->next = w;
    else rt->outbox_head = w;
    rt->outbox_tail = w;
}

static void flush_outbox(tr_runtime_t *rt) {
    if (rt->outbox_head) {
        tr__pool_push(&rt->pool, rt->outbox_head, rt->outbox_tail);
        rt->outbox_head = rt->outbox_tail = NULL;
    }
}

/* The runtime whose loop thread this is (NULL on any other thread). */
static _Thread_local tr_runtime_t *loop_thread_of;

void tr__port_ready(tr_runtime_t *rt, tr_port_t *port) {
    if (loop_thread_of != rt) {
        tr__dispatch_ready(rt, port);
        return;
    }
    if (port->notify_queued) return;
    port->notify_queued = true;
    tr__port_ref(port);
    port->notify_next = NULL;
    if (rt->notify_tail) rt->notify_tail->notify_next = port;
    else rt->notify_head = port;
    rt->notify_tail = port;
}

void tr__notify_flush(tr_runtime_t *rt) {
    tr_port_t *p = rt->notify_head;
    rt->notify_head = rt->notify_tail = NULL;
    while (p) {
        tr_port_t *next = p->notify_next;
        p->notify_queued = false;
        tr__dispatch_ready(rt, p);
        tr_port_release(p);
        p = next;
    }
}

static void on_flush(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)loop;
    (void)revents;
    tr__notify_flush(w->data);
    flush_outbox(w->data);
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents) {
    (void)revents;
    tr_runtime_t *rt = w->data;
    bool stopping;
    /* Timers started from this batch count from libev's clock as of now:
     * read ours first, then update libev's, so a deadline computed from
     * batch_now is never earlier than the one libev arms. */
    rt->batch_now = tr__mono_now();
    ev_now_update(loop);
    tr__msg_t *batch = take_inbox(rt, &stopping);
    if (stopping) rt->halting = true; /* ops started from this batch on are cancelled */
    run_batch(rt, batch);
    if (stopping) {
        tr__cancel_ops(rt, NULL);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void *loop_main(void *arg) {
    tr_runtime_t *rt = arg;
    loop_thread_of = rt;
    ev_run(rt->loop, 0);
    tr__notify_flush(rt); /* records queued in the last iteration get reported */
    flush_outbox(rt);     /* work that fired in the last iteration goes to the pool */
    loop_thread_of = NULL;
    pthread_mutex_lock(&rt->mu);
    rt->loop_exited = true;
    pthread_cond_broadcast(&rt->exit_cv);
    pthread_mutex_unlock(&rt->mu);
    return NULL;
}

/* ---- public lifecycle ----------------------------------------------------- */

int tr_runtime_new(const tr_config_t *config, tr_runtime_t **out) {
    if (!config || !out || config->worker_threads < 1 || config->worker_threads > TR__MAX_WORKERS ||
        !config->thread_name || !config->thread_name[0] || strlen(config->thread_name) >= 64)
        return TR_EINVAL;

    tr_runtime_t *rt = calloc(1, sizeof *rt);
    if (!rt) return TR_ENOMEM;
    atomic_init(&rt->refs, 1);
    rt->worker_threads = config->worker_threads;
    snprintf(rt->thread_name, sizeof rt->thread_name, "%s", config->thread_name);
    rt->state = TR__RUNNING;

    /* EVFLAG_NOSIGMASK: libev must leave the process signal mask alone;
     * EVBACKEND default: epoll on Linux.  libev honours a LIBEV_FLAGS
     * environment variable; one naming a backend this kernel lacks would make
     * every runtime fail, so then the default is used instead. */
    rt->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!rt->loop) rt->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK | EVFLAG_NOENV);
    if (!rt->loop) {
        free(rt);
        return TR_ENOMEM;
    }
    pthread_mutex_init(&rt->mu, NULL);
    pthread_mutex_init(&rt->shutdown_mu, NULL);
    pthread_mutex_init(&rt->ready_mu, NULL);
    tr__cond_init_monotonic(&rt->ready_cv);
    tr__cond_init_monotonic(&rt->exit_cv);

    ev_set_userdata(rt->loop, rt);
    ev_async_init(&rt->wake, on_wake);
    rt->wake.data = rt;
    ev_async_start(rt->loop, &rt->wake);
    ev_prepare_init(&rt->flush, on_flush);
    rt->flush.data = rt;
    ev_prepare_start(rt->loop, &rt->flush);

    int rc = tr__pool_start(&rt->pool, rt->worker_threads, rt->thread_name, 1);
    if (rc == TR_OK && tr__thread_start(&rt->loop_thread, loop_main, rt, rt->thread_name, 0) != 0) {
        tr__pool_stop(&rt->pool);
        rc = TR_ETHREAD;
    }
    if (rc != TR_OK) {
        ev_async_stop(rt->loop, &rt->wake);
        ev_prepare_stop(rt->loop, &rt->flush);
        ev_loop_destroy(rt->loop);
        pthread_cond_destroy(&rt->exit_cv);
        pthread_cond_destroy(&rt->ready_cv);
        pthread_mutex_destroy(&rt->ready_mu);
        pthread_mutex_destroy(&rt->shutdown_mu);
        pthread_mutex_destroy(&rt->mu);
        free(rt);
        return rc;
    }
    *out = rt;
    return TR_OK;
}

int tr_runtime_shutdown_timeout(tr_runtime_t *rt, double timeout) {
    if (isnan(timeout)) return TR_EINVAL;
    struct timespec ts;
    const struct timespec *deadline = tr__deadline(timeout, &ts);
    pthread_mutex_lock(&rt->shutdown_mu);
    pthread_mutex_lock(&rt->mu);
    if (rt->state == TR__STOPPED) {
        pthread_mutex_unlock(&rt->mu);
        pthread_mutex_unlock(&rt->shutdown_mu);
        return TR_OK;
    }
    if (rt->state == TR__RUNNING) {
        rt->state = TR__STOPPING; /* no new submissions from here on */
        ev_async_send(rt->loop, &rt->wake);
    }
    /* The loop thread runs what is queued, cancels every op and returns. */
    while (!rt->loop_exited) {
        int err = deadline ? pthread_cond_timedwait(&rt->exit_cv, &rt->mu, deadline)
                           : pthread_cond_wait(&rt->exit_cv, &rt->mu);
        if (err == ETIMEDOUT && !rt->loop_exited) {
            pthread_mutex_unlock(&rt->mu);
            pthread_mutex_unlock(&rt->shutdown_mu);
            return TR_TIMEDOUT; /* a later call picks up from here */
        }
    }
    pthread_mutex_unlock(&rt->mu);
    if (!rt->loop_joined) {
        pthread_join(rt->loop_thread, NULL);
        rt->loop_joined = true;
    }
    /* Workers run what is queued (cancelled work is skipped) and exit. */
    if (!rt->pool_joined) {
        tr__pool_quit(&rt->pool);
        if (!tr__pool_wait(&rt->pool, deadline)) {
            pthread_mutex_unlock(&rt->shutdown_mu);
            return TR_TIMEDOUT;
        }
        tr__pool_stop(&rt->pool); /* joins threads that have all returned */
        rt->pool_joined = true;
    }

    /* This thread is now the loop thread.  Finish what the workers and the
     * loop left behind until nothing is left; the last empty inbox turns the
     * state to STOPPED under the lock, so nobody posts after it. */
    rt->halting = true;
    for (;;) {
        pthread_mutex_lock(&rt->mu);
        tr__msg_t *batch = rt->inbox_head;
        rt->inbox_head = rt->inbox_tail = NULL;
        if (!batch && !rt->outbox_head) rt->state = TR__STOPPED;
        pthread_mutex_unlock(&rt->mu);
        if (!batch && !rt->outbox_head) break;
        run_batch(rt, batch);
        tr__cancel_ops(rt, NULL);
        /* The pool is gone: run leftover work here. */
        while (rt->outbox_head) {
            tr__work_t *w = rt->outbox_head;
            rt->outbox_head = w->next;
            if (!rt->outbox_head) rt->outbox_tail = NULL;
            w->run(w);
        }
    }

    ev_async_stop(rt->loop, &rt->wake);
    ev_prepare_stop(rt->loop, &rt->flush);
    ev_loop_destroy(rt->loop);
    rt->loop = NULL;
    tr__optable_free(&rt->ops);

    pthread_mutex_lock(&rt->ready_mu);
    rt->dispatch_done = true;
    pthread_cond_broadcast(&rt->ready_cv);
    pthread_mutex_unlock(&rt->ready_mu);
    pthread_mutex_unlock(&rt->shutdown_mu);
    return TR_OK;
}

void tr_runtime_shutdown(tr_runtime_t *rt) { (void)tr_runtime_shutdown_timeout(rt, -1.0); }

/* ---- a slow native task, for tests ---------------------------------------- */

typedef struct stall_work {
    tr__work_t work;
    double seconds;
} stall_work;

static void stall_run(tr__work_t *w) {
    stall_work *s = TR__CONTAINER_OF(w, stall_work, work);
    struct timespec ts = {(time_t)s->seconds, (long)((s->seconds - (double)(time_t)s->seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    free(s);
}

int tr_debug_stall_worker(tr_runtime_t *rt, double seconds) {
    if (!tr__valid_seconds(seconds) || seconds > 3600.0) return TR_EINVAL;
    stall_work *s = calloc(1, sizeof *s);
    if (!s) return TR_ENOMEM;
    s->seconds = seconds;
    s->work.run = stall_run;
    pthread_mutex_lock(&rt->mu);
    bool running = rt->state == TR__RUNNING;
    /* Under rt->mu: the pool is stopped only after the state left RUNNING. */
    if (running) tr__pool_push(&rt->pool, &s->work, &s->work);
    pthread_mutex_unlock(&rt->mu);
    if (!running) {
        free(s);
        return TR_ESHUTDOWN;
    }
    return TR_OK;
}

void tr__runtime_unref(tr_runtime_t *rt) {
    if (atomic_fetch_sub(&rt->refs, 1) != 1) return;
    /* The owner shut it down before dropping its reference, so every thread
     * is joined and no op is left; only the memory remains. */
    pthread_cond_destroy(&rt->exit_cv);
    pthread_cond_destroy(&rt->ready_cv);
    pthread_mutex_destroy(&rt->ready_mu);
    pthread_mutex_destroy(&rt->shutdown_mu);
    pthread_mutex_destroy(&rt->mu);
    free(rt);
}

void tr_runtime_release(tr_runtime_t *rt) {
    if (!rt) return;
    /* Shut down here, on the owner's thread: the last reference may later be
     * dropped by a port on a runtime thread, which cannot join itself. */
    tr_runtime_shutdown(rt);
    tr__runtime_unref(rt);
}

void tr_runtime_stats(tr_runtime_t *rt, tr_stats_t *out) {
    out->pending = atomic_load(&rt->pending);
    out->submitted = atomic_load(&rt->submitted);
    out->completed = atomic_load(&rt->completed);
    out->cancelled = atomic_load(&rt->cancelled);
    out->live_ops = atomic_load(&rt->live_ops);
    out->ports = atomic_load(&rt->ports);
    out->waiters = atomic_load(&rt->waiters);
    out->timers_fired = atomic_load(&rt->timers_fired);
    out->timer_late_max_ns = atomic_load(&rt->timer_late_max_ns);
    for (int b = 0; b < TR_LATE_BUCKETS; b++)
        out->timer_late_hist[b] = atomic_load_explicit(&rt->timer_late_hist[b], memory_order_relaxed);
    out->worker_threads = rt->worker_threads;
    pthread_mutex_lock(&rt->mu);
    out->running = rt->state == TR__RUNNING;
    pthread_mutex_unlock(&rt->mu);
}

/* ---- dispatcher -------------------------------------------------------------- */

/* The runtime this thread is running a *_quiet call for, and whether that
 * call queued one of its ports quietly. */
static _Thread_local tr_runtime_t *quiet_rt;
static _Thread_local bool quiet_queued;

void tr__quiet_begin(tr_runtime_t *rt) {
    quiet_rt = rt;
    quiet_queued = false;
}

bool tr__quiet_end(void) {
    quiet_rt = NULL;
    return quiet_queued;
}

void tr__dispatch_ready(tr_runtime_t *rt, tr_port_t *port) {
    bool quiet = rt == quiet_rt;
    pthread_mutex_lock(&rt->ready_mu);
    if (!port->in_ready) {
        port->in_ready = true;
        port->ready_next = NULL;
        port->ready_prev = rt->ready_tail;
        if (rt->ready_tail) rt->ready_tail->ready_next = port;
        else rt->ready_head = port;
        rt->ready_tail = port;
        if (quiet) quiet_queued = true;
        else pthread_cond_signal(&rt->ready_cv);
    }
    pthread_mutex_unlock(&rt->ready_mu);
}

void tr_runtime_wake_dispatcher(tr_runtime_t *rt) {
    pthread_mutex_lock(&rt->ready_mu);
    rt->dispatch_kick = true;
    pthread_cond_signal(&rt->ready_cv);
    pthread_mutex_unlock(&rt->ready_mu);
}

/* Take up to cap ready ports off the list (ready_mu held). */
static int take_ready_locked(tr_runtime_t *rt, uint64_t *ids, int cap) {
    int n = 0;
    while (n < cap && rt->ready_head) {
        tr_port_t *p = rt->ready_head;
        rt->ready_head = p->ready_next;
        if (rt->ready_head) rt->ready_head->ready_prev = NULL;
        else rt->ready_tail = NULL;
        p->ready_next = p->ready_prev = NULL;
        p->in_ready = false;
        ids[n++] = p->id;
    }
    return n;
}

int tr_runtime_wait_ready(tr_runtime_t *rt, uint64_t *ids, int cap, double timeout) {
    struct timespec ts;
    const struct timespec *deadline = tr__deadline(timeout, &ts);
    pthread_mutex_lock(&rt->ready_mu);
    while (!rt->ready_head && !rt->dispatch_done && !rt->dispatch_kick) {
        int err = deadline ? pthread_cond_timedwait(&rt->ready_cv, &rt->ready_mu, deadline)
                           : pthread_cond_wait(&rt->ready_cv, &rt->ready_mu);
        if (err == ETIMEDOUT) break;
    }
    rt->dispatch_kick = false;
    int n = take_ready_locked(rt, ids, cap);
    bool done = rt->dispatch_done && n == 0;
    pthread_mutex_unlock(&rt->ready_mu);
    return done ? -1 : n;
}

int tr_runtime_take_ready(tr_runtime_t *rt, uint64_t *ids, int cap) {
    pthread_mutex_lock(&rt->ready_mu);
    int n = take_ready_locked(rt, ids, cap);
    pthread_mutex_unlock(&rt->ready_mu);
    return n;
}
