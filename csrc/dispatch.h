/*
 * dispatch.h - the dispatch hub: which ports have records for the
 * dispatcher to deliver (layer L2).
 *
 * A port with new records is "reported": put on the ready list (hub lock),
 * whose ids the dispatcher thread takes with tr__hub_wait.  (A caller of a
 * waking call with a tr_wakes_t buffer is not reported here at all: port.c
 * lists the port in the buffer instead.)  On the loop thread a report is held back on the
 * notify list until the end of the current loop iteration (tr__hub_flush),
 * so a burst of timers firing together costs the dispatcher one wake-up.
 *
 * The hub knows ports only as tr__hub_node_t, embedded in each port.
 *
 * Lifetime: the hub is refcounted (its owner's reference plus one per port
 * and one per promise).  It is embedded in the runtime, and its destroy
 * hook, called when the count reaches zero, frees the runtime: so the
 * runtime's memory (and the inbox and stats embedded in it, which ports
 * also point at) lives as long as the last port and promise, as the public
 * API promises, without any port knowing the runtime.
 *
 * Threads: tr__hub_ready/report/forget/wait/wake: any thread.
 * tr__hub_flush, tr__hub_enter_loop/leave_loop: the loop thread.
 * init/close: the runtime's owner.
 */
#ifndef TR_DISPATCH_H
#define TR_DISPATCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct tr__hub_node tr__hub_node_t;
struct tr__hub_node {
    uint64_t id;                                /* what the dispatcher is told */
    tr__hub_node_t *ready_prev, *ready_next;    /* ready list (hub lock) */
    bool in_ready;                              /* hub lock */
    tr__hub_node_t *notify_next;                /* notify list (loop thread) */
    bool notify_queued;                         /* loop thread */
    /* The notify list keeps its nodes' owners alive: hold on queueing,
     * drop after the report. */
    void (*hold)(tr__hub_node_t *n);
    void (*drop)(tr__hub_node_t *n);
};

typedef struct tr__hub tr__hub_t;
struct tr__hub {
    atomic_int refs;
    void (*destroy)(tr__hub_t *hub); /* refs reached 0; the hub's lock is gone */
    pthread_mutex_t mu;              /* TR__RANK_HUB; guards the ready list and flags */
    pthread_cond_t cv;
    tr__hub_node_t *ready_head, *ready_tail;
    bool done;                       /* the runtime is shut down */
    bool kick;                       /* tr__hub_wake */
    tr__hub_node_t *notify_head, *notify_tail; /* loop thread */
};

void tr__hub_init(tr__hub_t *hub, void (*destroy)(tr__hub_t *));
void tr__hub_ref(tr__hub_t *hub);
void tr__hub_unref(tr__hub_t *hub);

/* The calling thread is (or stops being) hub's loop thread. */
void tr__hub_enter_loop(tr__hub_t *hub);
void tr__hub_leave_loop(void);

/* A node just got its first record: report it, at the end of the current
 * iteration on hub's loop thread, at once on any other thread. */
void tr__hub_ready(tr__hub_t *hub, tr__hub_node_t *n);
/* Report n now (put it on the ready list and wake the dispatcher). */
void tr__hub_report(tr__hub_t *hub, tr__hub_node_t *n);
/* Report the nodes held back by tr__hub_ready.  Loop thread. */
void tr__hub_flush(tr__hub_t *hub);
/* Take n off the ready list (its owner is being freed). */
void tr__hub_forget(tr__hub_t *hub, tr__hub_node_t *n);

/* The dispatcher side (tr_runtime_wait_ready, _wake_dispatcher). */
int tr__hub_wait(tr__hub_t *hub, uint64_t *ids, int cap, double timeout);
void tr__hub_wake(tr__hub_t *hub);
/* Shutdown is over: a waiting dispatcher returns -1 once the list is empty. */
void tr__hub_close(tr__hub_t *hub);

#endif /* TR_DISPATCH_H */
