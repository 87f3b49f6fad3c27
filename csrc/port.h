/*
 * port.h - completion queues, one per consumer (per asyncio loop), and the
 * records they carry (layer L3).
 *
 * A port points at the dispatch hub (which it reports itself to, and whose
 * reference keeps the runtime's memory alive), the inbox (where its close
 * message goes) and the stats; never at the runtime.  What closing a port
 * must cancel is not a port matter: its creator passes the close message's
 * run function (op.c: cancel the port's ops on the loop thread).
 *
 * Threads: everything here, any thread.  Public functions of the port
 * (tr_port_drain, _stalled, _close, _release, _defer_wake) are defined in port.c but
 * tr_port_new, which needs a runtime, is in op.c.
 */
#ifndef TR_PORT_H
#define TR_PORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dispatch.h"
#include "inbox.h"
#include "stats.h"
#include "tokio_runtime.h"

typedef struct tr__record tr__record_t;
struct tr__record {
    tr__record_t *next;  /* port queue link (port->mu) */
    tr_completion_t c;
    bool queued;         /* in a port queue (port->mu) */
    bool dropped;        /* left without reaching the consumer (port closed) */
    /* Closed port only: its place among the records the last tr_port_drain
     * copied out when the port closed (the next drain acks by it). */
    size_t pos;
    /* Called once the record has left the queue for good (drained or
     * dropped), outside every port lock.  NULL for records that live on. */
    void (*release)(tr__record_t *r);
};

struct tr_port {
    atomic_int refs;
    tr__hub_t *hub;            /* holds a reference */
    tr__inbox_t *inbox;        /* kept alive by the hub reference */
    tr__stats_t *stats;        /* likewise */
    pthread_mutex_t mu;        /* TR__RANK_PORT; guards the queue and the flags below */
    tr__record_t *head, *tail;
    bool notified;             /* reported to the dispatcher, not yet drained empty */
    bool closed;
    /* Two-phase drain: the records at the head that the last tr_port_drain
     * copied out and that are not acknowledged yet (they stay queued).  Once
     * closed, the queue holds only such records (those with a release), each
     * with its pos. */
    size_t inflight;
    uint64_t drains, drains_seen; /* tr_port_drain calls; as of tr_port_stalled */
    atomic_bool defer_wake;    /* tr_port_defer_wake */
    tr__hub_node_t node;       /* the port as the hub knows it (id = port id) */
    tr__msg_t close_msg;       /* run on the loop thread after tr_port_close */
};

/* A new port (one reference, the caller's).  close_run is the close message's
 * run function: it gets the port's close_msg, and must drop the reference
 * tr_port_close took for it (tr_port_release). */
int tr__port_new(tr__hub_t *hub, tr__inbox_t *inbox, tr__stats_t *stats, uint64_t id,
                 void (*close_run)(tr__msg_t *msg, void *ctx), tr_port_t **out);
void tr__port_ref(tr_port_t *port);
/* Whether tr_port_close() was called. */
bool tr__port_closed(tr_port_t *port);
/* Queue a record, or drop it if the port is closed.  If that makes the port
 * non-empty, report it to the hub, or, with a wakes buffer that has room,
 * list its id there instead (the caller has it drained; tokio_runtime.h). */
void tr__port_push_to(tr_port_t *port, tr__record_t *r, tr_wakes_t *wakes);
static inline void tr__port_push(tr_port_t *port, tr__record_t *r) { tr__port_push_to(port, r, NULL); }
/* A public waking call starts with this: an empty wakes buffer. */
static inline void tr__wakes_reset(tr_wakes_t *wakes) {
    if (wakes) wakes->n = 0;
}
/* Update a still-queued progress record, or queue it. */
void tr__port_progress(tr_port_t *port, tr__record_t *r, int64_t value);

#endif /* TR_PORT_H */
