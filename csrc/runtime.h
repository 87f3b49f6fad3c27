/*
 * runtime.h - the runtime object (layer L6): what one tr_runtime_t is made
 * of.  Shared with debug.c (L7) and the C tests; code below L6 never sees it
 * (it reaches a runtime's parts through tr__opset_of(), op.h).
 *
 * Threads: the loop thread owns the ev loop and the op set; workers run the
 * pool; the owner creates and shuts down.  See runtime.c.
 */
#ifndef TR_RUNTIME_H
#define TR_RUNTIME_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>

#include "dispatch.h"
#include "inbox.h"
#include "op.h"
#include "pool.h"
#include "stats.h"
#include "tokio_runtime.h"

#define TR__MAX_WORKERS 256

struct tr_runtime {
    tr__opset_t ops;       /* FIRST member: tr__opset_of() */
    tr__hub_t hub;         /* refcount: the owner's + one per port and promise; frees the runtime */
    tr__inbox_t inbox;
    tr__stats_t stats;
    tr__pool_t pool;
    struct ev_loop *loop;
    ev_prepare flush;      /* reports ports and hands the outbox to the pool before blocking */
    pthread_t loop_thread;
    int worker_threads;
    char thread_name[64];

    pthread_mutex_t shutdown_mu;   /* TR__RANK_SHUTDOWN: one shutdown at a time */
    bool loop_joined, pool_joined; /* shutdown_mu */
    pthread_mutex_t exit_mu;       /* TR__RANK_EXIT */
    pthread_cond_t exit_cv;        /* loop_exited became true */
    bool loop_exited;              /* exit_mu */
};

#endif /* TR_RUNTIME_H */
