/*
 * internal.h - what the C core's files share with each other (prefix tr__).
 *
 * Threading vocabulary used in the comments:
 *   loop thread   the runtime's libev thread; owns every ev_* watcher, the op
 *                 table and the op list.  After tr_runtime_shutdown() has
 *                 joined it, the shutdown caller takes over that role.
 *   worker        one of the pool threads; runs tr__work_t items.
 *   any thread    safe from every thread, including Python callers.
 */
#ifndef TOKIO_RUNTIME_INTERNAL_H
#define TOKIO_RUNTIME_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np */
#endif

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokio_runtime.h"

#define TR__CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ---- messages to the loop thread ---------------------------------------- */
typedef struct tr__msg tr__msg_t;
struct tr__msg {
    tr__msg_t *next;
    void (*run)(tr_runtime_t *rt, tr__msg_t *msg); /* runs on the loop thread */
};

/* Queue msg for the loop thread.  Any thread.  Accepted while the runtime is
 * running or stopping (the shutdown caller runs what the loop thread did not);
 * returns false, without queueing, once it is stopped. */
bool tr__post(tr_runtime_t *rt, tr__msg_t *msg);

/* ---- completion records -------------------------------------------------- */
typedef struct tr__record tr__record_t;
struct tr__record {
    tr__record_t *next;  /* port queue link (port->mu) */
    tr_completion_t c;
    bool queued;         /* in a port queue (port->mu) */
    bool dropped;        /* left without reaching the consumer (port closed) */
    /* Called once the record has left the queue for good (drained or
     * dropped), outside every lock.  NULL for records that live on. */
    void (*release)(tr__record_t *r);
};

/* ---- operations ----------------------------------------------------------- */
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

struct tr__op {
    tr__msg_t msg;              /* the submission message */
    const tr__op_vtable_t *vt;
    tr_runtime_t *rt;
    tr_port_t *port;            /* holds a reference until the final record is queued */
    uint64_t token;
    int state;                  /* loop thread */
    tr__op_t *all_prev, *all_next; /* every started op (loop thread) */
    tr__record_t final;         /* pushed by tr__op_finish; frees the op on release */
    tr__record_t progress;      /* coalesced progress record (tr__op_progress) */
    double submitted;           /* tr__mono_now() at submission */
};

/* Seconds since the op was submitted, as of the inbox batch that started it
 * (the clock libev's timers count from).  Timers subtract it, so a deadline
 * counts from the call, however late the op starts.  Loop thread. */
double tr__op_waited(const tr__op_t *op);

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

/* ---- worker pool ---------------------------------------------------------- */
typedef struct tr__work tr__work_t;
struct tr__work {
    tr__work_t *next;
    void (*run)(tr__work_t *w); /* runs on a worker */
};

typedef struct tr__pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tr__work_t *head, *tail;
    bool quit;
    int waiting;       /* workers blocked on cv */
    int started;
    int exited;        /* workers that returned (mu); signalled on exit_cv */
    pthread_cond_t exit_cv;
    pthread_t *threads;
} tr__pool_t;

int tr__pool_start(tr__pool_t *pool, int n, const char *thread_name, int first_index);
/* Append a chain first..last.  Any thread. */
void tr__pool_push(tr__pool_t *pool, tr__work_t *first, tr__work_t *last);
/* Tell the workers to run everything still queued, then exit.  Idempotent. */
void tr__pool_quit(tr__pool_t *pool);
/* Wait until every worker has exited or the deadline (NULL: none) passes. */
bool tr__pool_wait(tr__pool_t *pool, const struct timespec *deadline);
/* Quit, join every worker, free the pool. */
void tr__pool_stop(tr__pool_t *pool);

/* Batch a work item for the pool; the batch is handed over before the loop
 * blocks again (one lock for many items).  Loop thread. */
void tr__outbox_push(tr_runtime_t *rt, tr__work_t *w);

/* ---- op table (token -> op), loop thread only ---------------------------- */
typedef struct tr__slot {
    uint64_t key; /* 0 = empty */
    tr__op_t *op;
} tr__slot_t;

typedef struct tr__optable {
    tr__slot_t *slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
} tr__optable_t;

int tr__optable_put(tr__optable_t *t, uint64_t key, tr__op_t *op); /* TR_OK, TR_EINVAL (dup), TR_ENOMEM */
tr__op_t *tr__optable_get(const tr__optable_t *t, uint64_t key);
tr__op_t *tr__optable_del(tr__optable_t *t, uint64_t key);
void tr__optable_free(tr__optable_t *t);

/* ---- runtime --------------------------------------------------------------- */
enum { TR__RUNNING, TR__STOPPING, TR__STOPPED };

/* Every this many deferred ops, the submitter wakes the loop thread anyway:
 * a long burst in one asyncio turn (100,000 sleeps take ~0.1 s to submit)
 * must not leave its first ops unstarted until the turn ends. */
#define TR__DEFER_MAX 128

/* Buckets of tr_stats_t.timer_late_hist (the public struct spells out 96). */
#define TR_LATE_BUCKETS 96

struct tr_runtime {
    atomic_int refs;
    struct ev_loop *loop;
    ev_async wake;         /* "the inbox has messages" */
    ev_prepare flush;      /* hands the outbox to the pool before blocking */
    pthread_t loop_thread;
    int worker_threads;
    char thread_name[64];
    tr__pool_t pool;

    pthread_mutex_t mu;    /* guards inbox and state */
    tr__msg_t *inbox_head, *inbox_tail;
    int state;
    unsigned wake_owed;    /* deferred ops in the inbox that no wake was sent for */

    pthread_mutex_t shutdown_mu; /* one shutdown at a time */
    pthread_cond_t exit_cv;      /* loop_exited became true (mu) */
    bool loop_exited;            /* mu */
    bool loop_joined, pool_joined; /* shutdown_mu */

    /* loop thread only */
    tr__optable_t ops;
    tr__op_t *all_ops;     /* list of started, unfinished ops */
    tr__work_t *outbox_head, *outbox_tail;
    bool halting;          /* shutdown seen: cancel whatever starts */
    double batch_now;      /* tr__mono_now() when the current inbox batch was taken */
    tr_port_t *notify_head, *notify_tail; /* ports to report at the end of the iteration */

    /* dispatcher (ready_mu) */
    pthread_mutex_t ready_mu;
    pthread_cond_t ready_cv;
    tr_port_t *ready_head, *ready_tail;
    bool dispatch_done;
    bool dispatch_kick;

    atomic_uint_fast64_t pending, submitted, completed, cancelled, live_ops, ports, waiters;
    /* written by the loop thread, read by tr_runtime_stats() */
    atomic_uint_fast64_t timers_fired, timer_late_max_ns, timer_late_hist[TR_LATE_BUCKETS];
};

void tr__runtime_ref(tr_runtime_t *rt);
void tr__runtime_unref(tr_runtime_t *rt); /* frees at zero; the owner has shut it down */
/* Report a port to the dispatcher.  Any thread. */
void tr__dispatch_ready(tr_runtime_t *rt, tr_port_t *port);
/* A port just got its first record: report it.  On rt's loop thread the
 * report waits for the end of the current iteration (tr__notify_flush), so a
 * burst of timers firing together costs the dispatcher one wake-up and the
 * asyncio loop one drain; any other thread reports at once. */
void tr__port_ready(tr_runtime_t *rt, tr_port_t *port);
/* Report the ports held back by tr__port_ready.  Loop thread. */
void tr__notify_flush(tr_runtime_t *rt);
/* While a thread runs a *_quiet call for rt, tr__dispatch_ready queues rt's
 * ports without waking the dispatcher; tr__quiet_end says whether it did. */
void tr__quiet_begin(tr_runtime_t *rt);
bool tr__quiet_end(void);
/* Cancel every started op bound to port (all ops when port is NULL).  Loop thread. */
void tr__cancel_ops(tr_runtime_t *rt, tr_port_t *port);

/* ---- ports ------------------------------------------------------------------ */
struct tr_port {
    atomic_int refs;
    tr_runtime_t *rt;          /* holds a reference */
    uint64_t id;
    pthread_mutex_t mu;        /* guards the queue and the flags below */
    tr__record_t *head, *tail;
    bool notified;             /* reported to the dispatcher, not yet drained empty */
    bool closed;
    atomic_bool defer_wake;    /* tr_port_defer_wake */
    /* rt->notify list (loop thread): reported to the dispatcher once the
     * loop thread's current iteration is over; holds a reference. */
    tr_port_t *notify_next;
    bool notify_queued;
    /* ready list (rt->ready_mu) */
    tr_port_t *ready_prev, *ready_next;
    bool in_ready;
    tr__msg_t close_msg;       /* cancels the port's ops on the loop thread */
};

void tr__port_ref(tr_port_t *port);
/* Whether tr_port_close() was called.  Any thread. */
bool tr__port_closed(tr_port_t *port);
/* Queue a record, or drop it if the port is closed.  Any thread. */
void tr__port_push(tr_port_t *port, tr__record_t *r);
/* Update a still-queued progress record, or queue it.  Any thread. */
void tr__port_progress(tr_port_t *port, tr__record_t *r, int64_t value);

/* ---- waiters, shared by channels and mutexes (waiter.c) ------------------ */

/* What channels and mutexes have in common: a refcount, one lock guarding
 * their state and their wait queues, and what to do with a wake that reached
 * nobody (its port closed under it). */
typedef struct tr__sync tr__sync_t;
struct tr__sync {
    atomic_int refs;
    pthread_mutex_t mu;
    void (*lost_wake)(tr__sync_t *s, int direction); /* any thread, lock not held */
    void (*destroy)(tr__sync_t *s);                 /* refs reached 0 */
};

typedef struct tr__waitq {
    tr_waiter_t *head, *tail;
} tr__waitq_t;

enum { TR__WAIT_PORT, TR__WAIT_THREAD };

struct tr_waiter {
    tr_waiter_t *prev, *next;  /* in q (owner lock) */
    tr__waitq_t *q;            /* the queue it is in, NULL once out (owner lock) */
    int kind;
    int direction;             /* TR_RECV / TR_SEND; which queue of a channel */
    /* TR__WAIT_PORT: heap, refcounted (the caller + the queue or its record) */
    atomic_int refs;
    tr__sync_t *owner;         /* holds a reference */
    tr_port_t *port;           /* holds a reference while queued; NULL once its
                                * record is pushed (a queued record must not
                                * keep its port alive) */
    tr__record_t rec;          /* pushed to port when woken */
    /* Who acts on a wake, decided once under the owner lock: the caller
     * (tr_waiter_release returned 1), or the owner's lost_wake (the port
     * was closed first).  Never both, never neither. */
    bool claimed;              /* owner lock */
    bool passed;               /* owner lock */
    /* TR__WAIT_THREAD: on the blocked thread's stack (tr__waitq_block), or
     * on the heap with one reference, the caller's (tr__waiter_new_thread) */
    pthread_cond_t cv;
    bool woken;
};

void tr__sync_init(tr__sync_t *s, void (*lost_wake)(tr__sync_t *, int),
                   void (*destroy)(tr__sync_t *));
void tr__sync_unref(tr__sync_t *s);

/* A woken port waiter, collected under the owner lock and delivered after it
 * is dropped (tr__wake_flush), so no port lock nests in an owner lock. */
typedef struct tr__wakelist {
    tr_waiter_t *head, *tail; /* in wake order, so records arrive oldest first */
} tr__wakelist_t;

/* Owner lock held: append w. */
void tr__waitq_push(tr__waitq_t *q, tr_waiter_t *w);
/* Owner lock held: wake the oldest waiter whose consumer can still act on
 * it (thread waiters are signalled now, port waiters collected into wl;
 * waiters whose port is closed are dropped on the way).  false: none. */
bool tr__waitq_wake_one(tr__waitq_t *q, tr__wakelist_t *wl);
/* Owner lock held: wake every waiter. */
void tr__waitq_wake_all(tr__waitq_t *q, tr__wakelist_t *wl);
/* Owner lock NOT held: push the collected records. */
void tr__wake_flush(tr__wakelist_t *wl);

/* Owner lock held: a new port waiter queued in q.  The caller has checked
 * port, token and out.  TR_PENDING, TR_ENOMEM, TR_ECLOSED or TR_ESHUTDOWN. */
int tr__waiter_new(tr__sync_t *owner, tr__waitq_t *q, int direction, tr_port_t *port,
                   uint64_t token, tr_waiter_t **out);
/* Owner lock held: a new thread waiter queued in q, for a caller that waits
 * in several steps (tr_waiter_wait) and keeps its place in between.
 * TR_PENDING or TR_ENOMEM. */
int tr__waiter_new_thread(tr__sync_t *owner, tr__waitq_t *q, int direction, tr_waiter_t **out);
/* Owner lock held: block the calling thread in q until woken or until the
 * deadline (NULL: none).  true: woken (it is out of q); false: timed out (it
 * was taken out of q, unwoken). */
bool tr__waitq_block(tr__sync_t *owner, tr__waitq_t *q, const struct timespec *deadline);

/* Absolute CLOCK_MONOTONIC deadline timeout seconds from now; NULL when
 * timeout is negative (wait forever). */
const struct timespec *tr__deadline(double timeout, struct timespec *ts);
/* CLOCK_MONOTONIC, in seconds. */
double tr__mono_now(void);
/* A condition variable whose timed waits take tr__deadline() deadlines. */
void tr__cond_init_monotonic(pthread_cond_t *cv);

/* ---- small helpers ------------------------------------------------------------ */
bool tr__valid_seconds(double s);

/* Count a sleep timer that fired late_seconds after it was due (timer.c).
 * Loop thread. */
void tr__timer_fired(tr_runtime_t *rt, double late_seconds);
/* Start a thread with every signal blocked (signals belong to the host's
 * main thread), named "{name}-{index}". */
int tr__thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name, int index);

#endif /* TOKIO_RUNTIME_INTERNAL_H */
