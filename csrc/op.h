/*
 * op.h - operations: the vtable contract every kind of op implements, and
 * their life from submission to the final record (layer L4).
 *
 * Every op is started, cancelled and finished on the loop thread, so "which
 * of complete and cancel wins" is decided by plain program order there, with
 * no lock.  Other threads only submit (through the inbox) and cancel by
 * token (a message).
 *
 * The op set (tr__opset_t) is everything ops need from their runtime.  It is
 * the FIRST member of struct tr_runtime (runtime.c checks it), which is how
 * code below the runtime turns a public tr_runtime_t * into something it
 * knows: tr__opset_of().  The runtime's memory outlives every op record (the
 * records sit in ports, whose hub reference keeps it alive), so op->set
 * stays valid until the op is freed.
 *
 * Public functions defined in op.c: tr_cancel, and tr_port_new (a port is
 * created here because closing it cancels its ops, which is the op layer's
 * business).
 */
#ifndef TR_OP_H
#define TR_OP_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dispatch.h"
#include "inbox.h"
#include "optable.h"
#include "pool.h"
#include "port.h"
#include "stats.h"
#include "tokio_runtime.h"

typedef struct tr__op tr__op_t;

typedef struct tr__op_vtable {
    const char *name;
    /* Loop thread.  Begin the work; may finish the op at once. */
    void (*start)(tr__op_t *op);
    /* Loop thread.  Stop the work (timers, children); must lead, now or later,
     * to exactly one tr__op_finish(op, TR_CANCELLED, ...). */
    void (*cancel)(tr__op_t *op);
    /* Free what the op owns besides its own struct.  Called by tr__op_finish on
     * the loop thread; every watcher is stopped by then.  Also called by
     * tr__op_discard, on any thread, for an op that never reached the loop
     * (state still TR__OP_QUEUED): it must not touch the loop then.  May be
     * NULL. */
    void (*cleanup)(tr__op_t *op);
} tr__op_vtable_t;

enum { TR__OP_QUEUED, TR__OP_RUNNING, TR__OP_CANCELLING, TR__OP_FINISHED };

typedef struct tr__opset tr__opset_t;
struct tr__opset {
    struct ev_loop *loop;   /* the loop ops run on (NULL after shutdown) */
    tr__inbox_t *inbox;     /* submissions */
    tr__hub_t *hub;
    tr__stats_t *stats;
    /* loop thread only */
    tr__optable_t table;    /* token -> started op */
    tr__op_t *all_head, *all_tail; /* started, unfinished ops, newest first */
    tr__workbatch_t outbox; /* work for the pool, handed over per iteration */
    bool halting;           /* shutdown seen: cancel whatever starts */
    double batch_now;       /* tr__mono_now() when the current inbox batch was taken */
    /* Set by the runtime at creation: work submitted straight to the pool
     * from any thread (promise jobs), and what else a port's closing ends
     * (its pending promises; called on the loop thread, NULL: nothing). */
    tr__pool_t *pool;
    void (*port_closing)(tr__opset_t *set, tr_port_t *port);
    /* Pending promises (promise.c), so that a port's close and a shutdown
     * can cancel them; guarded by promise_mu (TR__RANK_PROMISES). */
    pthread_mutex_t promise_mu;
    tr_promise_t *promises, *promises_tail;
    bool promises_halted;   /* shutdown: no new promise is accepted */
};

/* The op set at the head of a runtime. */
static inline tr__opset_t *tr__opset_of(tr_runtime_t *rt) { return (tr__opset_t *)(void *)rt; }

void tr__opset_init(tr__opset_t *set, struct ev_loop *loop, tr__inbox_t *inbox, tr__hub_t *hub,
                    tr__stats_t *stats);
/* Free the loop-thread parts (at shutdown). */
void tr__opset_free(tr__opset_t *set);
/* Free the rest (with the runtime's memory). */
void tr__opset_destroy(tr__opset_t *set);

struct tr__op {
    tr__msg_t msg;              /* the submission message */
    const tr__op_vtable_t *vt;
    tr__opset_t *set;
    tr_port_t *port;            /* holds a reference until the final record is queued */
    uint64_t token;
    int state;                  /* loop thread */
    tr__op_t *all_prev, *all_next; /* set->all_* (loop thread) */
    tr__record_t final;         /* pushed by tr__op_finish; frees the op on release */
    tr__record_t progress;      /* coalesced progress record (tr__op_progress) */
    double submitted;           /* tr__mono_now() at submission */
};

/* Allocate a zeroed op of `size` bytes (>= sizeof(tr__op_t)).  Any thread. */
tr__op_t *tr__op_alloc(tr_runtime_t *rt, size_t size, const tr__op_vtable_t *vt);
/* Free an op that was never submitted.  Any thread. */
void tr__op_discard(tr__op_t *op);
/* Validate and queue an op for the loop thread; on error the op is freed.
 * Any thread. */
int tr__op_submit(tr_runtime_t *rt, tr_port_t *port, uint64_t token, tr__op_t *op);
/* Finish: unregister, count, clean up, and queue the final record (which then
 * owns the op's memory).  The op must not be touched afterwards.  Loop thread. */
void tr__op_finish(tr__op_t *op, int status, int64_t value);
/* Queue (or update, if still queued) the op's progress record.  Loop thread. */
void tr__op_progress(tr__op_t *op, int64_t value);
/* Seconds since the op was submitted, as of the inbox batch that started it
 * (the clock libev's timers count from).  Timers subtract it, so a deadline
 * counts from the call, however late the op starts.  Loop thread. */
double tr__op_waited(const tr__op_t *op);
/* Cancel every started op bound to port (all ops when port is NULL).  Loop thread. */
void tr__ops_cancel(tr__opset_t *set, tr_port_t *port);

/* The loop the op runs on.  Loop thread. */
static inline struct ev_loop *tr__op_loop(const tr__op_t *op) { return op->set->loop; }
/* Batch a work item for the pool; the batch is handed over before the loop
 * blocks again (one lock for many items).  Loop thread. */
static inline void tr__op_to_pool(tr__op_t *op, tr__work_t *w) { tr__workbatch_add(&op->set->outbox, w); }

#endif /* TR_OP_H */
