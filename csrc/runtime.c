/*
 * runtime.c - the runtime object: creation, the loop thread's body, shutdown,
 * release and the public calls that only forward to its parts (layer L6).
 *
 * Read the parts first (csrc/README.md): the inbox carries messages to the
 * loop thread, the op set runs them, the hub reports ports to the dispatcher,
 * the pool runs work.  Here they are put together:
 *
 *   loop thread  on_wake (a batch from the inbox), on_flush (end of each
 *                iteration: report held-back ports, hand work to the pool).
 *   owner        tr_runtime_new, tr_runtime_shutdown*, tr_runtime_release.
 *                After shutdown has joined the loop thread, its caller takes
 *                over the loop thread's role.
 *   any thread   tr_runtime_stats, _kick, _wait_ready,
 *                _wake_dispatcher.
 *
 * Lifetime: the hub's refcount (owner + ports + promises) governs the memory; its
 * destroy hook, runtime_free, is the only teardown of the struct (also used
 * by a failed tr_runtime_new).
 */
#include "runtime.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "list.h"
#include "lock.h"
#include "promise.h"
#include "thread.h"

_Static_assert(offsetof(struct tr_runtime, ops) == 0, "tr__opset_of() needs the op set first");

int tr_max_workers(void) { return TR__MAX_WORKERS; }

/* ---- the loop thread -------------------------------------------------------- */

static void on_flush(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)loop;
    (void)revents;
    tr_runtime_t *rt = w->data;
    tr__hub_flush(&rt->hub);
    tr__pool_push_batch(&rt->pool, &rt->ops.outbox);
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents) {
    (void)revents;
    tr_runtime_t *rt = w->data;
    bool stopping;
    /* Timers started from this batch count from libev's clock as of now:
     * read ours first, then update libev's, so a deadline computed from
     * batch_now is never earlier than the one libev arms. */
    rt->ops.batch_now = tr__mono_now();
    ev_now_update(loop);
    tr__msg_t *batch = tr__inbox_take(&rt->inbox, &stopping);
    if (stopping) rt->ops.halting = true; /* ops started from this batch on are cancelled */
    tr__inbox_run(batch, &rt->ops);
    if (stopping) {
        tr__ops_cancel(&rt->ops, NULL);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void *loop_main(void *arg) {
    tr_runtime_t *rt = arg;
    tr__hub_enter_loop(&rt->hub);
    ev_run(rt->loop, 0);
    tr__hub_flush(&rt->hub);                       /* records queued in the last iteration */
    tr__pool_push_batch(&rt->pool, &rt->ops.outbox); /* work that fired in the last iteration */
    tr__hub_leave_loop();
    tr__lock(&rt->exit_mu, TR__RANK_EXIT);
    rt->loop_exited = true;
    pthread_cond_broadcast(&rt->exit_cv);
    tr__unlock(&rt->exit_mu, TR__RANK_EXIT);
    return NULL;
}

/* ---- creation and teardown -------------------------------------------------- */

/* The hub's destroy hook: the last reference is gone (every thread joined,
 * every port released), only memory is left. */
static void runtime_free(tr__hub_t *hub) {
    tr_runtime_t *rt = TR__CONTAINER_OF(hub, tr_runtime_t, hub);
    pthread_cond_destroy(&rt->exit_cv);
    pthread_mutex_destroy(&rt->exit_mu);
    pthread_mutex_destroy(&rt->shutdown_mu);
    if (rt->ops.stats) tr__opset_destroy(&rt->ops); /* set up (the loop was made) */
    tr__inbox_destroy(&rt->inbox);
    free(rt);
}

/* Stop the watchers and free the libev loop (no loop thread runs it). */
static void loop_close(tr_runtime_t *rt) {
    tr__inbox_detach(&rt->inbox);
    ev_prepare_stop(rt->loop, &rt->flush);
    ev_loop_destroy(rt->loop);
    rt->loop = NULL;
    tr__opset_free(&rt->ops);
}

int tr_runtime_new(const tr_config_t *config, tr_runtime_t **out) {
    if (!config || !out || config->worker_threads < 1 || config->worker_threads > TR__MAX_WORKERS ||
        !config->thread_name || !config->thread_name[0] || strlen(config->thread_name) >= 64)
        return TR_EINVAL;

    tr_runtime_t *rt = calloc(1, sizeof *rt);
    if (!rt) return TR_ENOMEM;
    rt->worker_threads = config->worker_threads;
    snprintf(rt->thread_name, sizeof rt->thread_name, "%s", config->thread_name);
    tr__hub_init(&rt->hub, runtime_free);
    tr__inbox_init(&rt->inbox);
    pthread_mutex_init(&rt->shutdown_mu, NULL);
    pthread_mutex_init(&rt->exit_mu, NULL);
    tr__cond_init_monotonic(&rt->exit_cv);

    /* EVFLAG_NOSIGMASK: libev must leave the process signal mask alone;
     * EVBACKEND default: epoll on Linux.  libev honours a LIBEV_FLAGS
     * environment variable; one naming a backend this kernel lacks would make
     * every runtime fail, so then the default is used instead. */
    rt->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!rt->loop) rt->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK | EVFLAG_NOENV);
    if (!rt->loop) {
        tr__hub_unref(&rt->hub); /* the only reference: frees rt */
        return TR_ENOMEM;
    }
    tr__opset_init(&rt->ops, rt->loop, &rt->inbox, &rt->hub, &rt->stats);
    rt->ops.pool = &rt->pool;
    rt->ops.port_closing = tr__promises_port_closing;
    ev_set_userdata(rt->loop, rt);
    tr__inbox_attach(&rt->inbox, rt->loop, on_wake, rt);
    ev_prepare_init(&rt->flush, on_flush);
    rt->flush.data = rt;
    ev_prepare_start(rt->loop, &rt->flush);

    int rc = tr__pool_start(&rt->pool, rt->worker_threads, rt->thread_name, 1);
    if (rc == TR_OK && tr__thread_start(&rt->loop_thread, loop_main, rt, rt->thread_name, 0) != 0) {
        tr__pool_stop(&rt->pool);
        rc = TR_ETHREAD;
    }
    if (rc != TR_OK) {
        loop_close(rt);
        tr__hub_unref(&rt->hub);
        return rc;
    }
    *out = rt;
    return TR_OK;
}

/* ---- shutdown ------------------------------------------------------------------- */

static int shutdown_locked(tr_runtime_t *rt, const struct timespec *deadline) {
    if (!tr__inbox_stop(&rt->inbox)) return TR_OK; /* stopped already */
    /* Pending promises fail from now on (TR_ESHUTDOWN); running jobs see
     * their cancel flag, queued ones are skipped by the workers below. */
    tr__promises_halt(&rt->ops);
    /* The loop thread runs what is queued, cancels every op and returns. */
    tr__lock(&rt->exit_mu, TR__RANK_EXIT);
    while (!rt->loop_exited)
        if (tr__cond_wait_until(&rt->exit_cv, &rt->exit_mu, TR__RANK_EXIT, deadline) == ETIMEDOUT)
            break;
    bool exited = rt->loop_exited;
    tr__unlock(&rt->exit_mu, TR__RANK_EXIT);
    if (!exited) return TR_TIMEDOUT; /* a later call picks up from here */
    if (!rt->loop_joined) {
        pthread_join(rt->loop_thread, NULL);
        rt->loop_joined = true;
    }
    /* Workers run what is queued (cancelled work is skipped) and exit. */
    if (!rt->pool_joined) {
        tr__pool_quit(&rt->pool);
        if (!tr__pool_wait(&rt->pool, deadline)) return TR_TIMEDOUT;
        tr__pool_stop(&rt->pool); /* joins threads that have all returned */
        rt->pool_joined = true;
    }
    /* This thread is now the loop thread.  Finish what the workers and the
     * loop left behind until nothing is left; the last empty inbox turns the
     * state to STOPPED under the inbox lock, so nobody posts after it. */
    rt->ops.halting = true;
    for (;;) {
        bool idle = rt->ops.outbox.head == NULL;
        tr__msg_t *batch = tr__inbox_take_last(&rt->inbox, idle);
        if (!batch && idle) break;
        tr__inbox_run(batch, &rt->ops);
        tr__ops_cancel(&rt->ops, NULL);
        tr__workbatch_run(&rt->ops.outbox); /* the pool is gone: run leftover work here */
    }
    loop_close(rt);
    tr__hub_close(&rt->hub);
    return TR_OK;
}

int tr_runtime_shutdown_timeout(tr_runtime_t *rt, double timeout) {
    if (isnan(timeout)) return TR_EINVAL;
    struct timespec ts;
    const struct timespec *deadline = tr__deadline(timeout, &ts);
    tr__lock(&rt->shutdown_mu, TR__RANK_SHUTDOWN);
    int rc = shutdown_locked(rt, deadline);
    tr__unlock(&rt->shutdown_mu, TR__RANK_SHUTDOWN);
    return rc;
}

void tr_runtime_shutdown(tr_runtime_t *rt) { (void)tr_runtime_shutdown_timeout(rt, -1.0); }

void tr_runtime_release(tr_runtime_t *rt) {
    if (!rt) return;
    /* Shut down here, on the owner's thread: the last reference may later be
     * dropped by a port on a runtime thread, which cannot join itself. */
    tr_runtime_shutdown(rt);
    tr__hub_unref(&rt->hub);
}

/* ---- forwarding ------------------------------------------------------------------ */

void tr_runtime_stats(tr_runtime_t *rt, tr_stats_t *out) {
    tr__stats_snapshot(&rt->stats, out);
    out->worker_threads = rt->worker_threads;
    out->running = tr__inbox_running(&rt->inbox);
}

void tr_runtime_kick(tr_runtime_t *rt) { tr__inbox_kick(&rt->inbox); }

int tr_runtime_wait_ready(tr_runtime_t *rt, uint64_t *ids, int cap, double timeout) {
    return tr__hub_wait(&rt->hub, ids, cap, timeout);
}

void tr_runtime_wake_dispatcher(tr_runtime_t *rt) { tr__hub_wake(&rt->hub); }
