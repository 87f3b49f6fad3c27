/*
 * port.c - completion queues, one per consumer (layer L3, see port.h for the
 * threading rules).
 *
 * Records are intrusive: an op's final record lives inside the op, so
 * finishing an op never allocates and so can never lose a result.  Only the
 * empty -> non-empty edge of a queue reports the port to the dispatcher; the
 * consumer drains whole batches and re-arms the edge when it empties the queue.
 */
#include "port.h"

#include <stdlib.h>

#include "list.h"
#include "lock.h"

void tr__port_ref(tr_port_t *port) { atomic_fetch_add(&port->refs, 1); }

static void node_hold(tr__hub_node_t *n) { tr__port_ref(TR__CONTAINER_OF(n, tr_port_t, node)); }
static void node_drop(tr__hub_node_t *n) { tr_port_release(TR__CONTAINER_OF(n, tr_port_t, node)); }

int tr_port_defer_wake(tr_port_t *port, int on) {
    if (!port) return TR_EINVAL;
    atomic_store(&port->defer_wake, on != 0);
    return TR_OK;
}

bool tr__port_closed(tr_port_t *port) {
    tr__lock(&port->mu, TR__RANK_PORT);
    bool closed = port->closed;
    tr__unlock(&port->mu, TR__RANK_PORT);
    return closed;
}

int tr__port_new(tr__hub_t *hub, tr__inbox_t *inbox, tr__stats_t *stats, uint64_t id,
                 void (*close_run)(tr__msg_t *msg, void *ctx), tr_port_t **out) {
    tr_port_t *port = calloc(1, sizeof *port);
    if (!port) return TR_ENOMEM;
    atomic_init(&port->refs, 1);
    port->hub = hub;
    port->inbox = inbox;
    port->stats = stats;
    port->node.id = id;
    port->node.hold = node_hold;
    port->node.drop = node_drop;
    port->close_msg.run = close_run;
    pthread_mutex_init(&port->mu, NULL);
    tr__hub_ref(hub);
    atomic_fetch_add(&stats->ports, 1);
    *out = port;
    return TR_OK;
}

/* A record left the queue without reaching the consumer. */
static void drop_chain(tr__record_t *r) {
    while (r) {
        tr__record_t *next = r->next;
        r->dropped = true;
        if (r->release) r->release(r);
        r = next;
    }
}

void tr__port_push_to(tr_port_t *port, tr__record_t *r, tr_wakes_t *wakes) {
    bool notify = false;
    tr__lock(&port->mu, TR__RANK_PORT);
    if (port->closed) {
        tr__unlock(&port->mu, TR__RANK_PORT);
        r->next = NULL;
        drop_chain(r);
        return;
    }
    r->queued = true;
    TR__SLIST_APPEND(port->head, port->tail, r, next);
    if (!port->notified) port->notified = notify = true;
    tr__unlock(&port->mu, TR__RANK_PORT);
    /* r may already be drained and freed here; port is kept alive by the
     * caller's reference. */
    if (!notify) return;
    if (wakes && wakes->n < TR_WAKES_MAX) {
        /* The caller has it drained: notified stays true until then. */
        wakes->ids[wakes->n++] = port->node.id;
        return;
    }
    tr__hub_ready(port->hub, &port->node);
}

void tr__port_progress(tr_port_t *port, tr__record_t *r, int64_t value) {
    tr__lock(&port->mu, TR__RANK_PORT);
    if (r->queued) { /* coalesce: the consumer sees the latest value */
        r->c.value = value;
        tr__unlock(&port->mu, TR__RANK_PORT);
        return;
    }
    r->c.value = value;
    r->c.status = TR_OK;
    tr__unlock(&port->mu, TR__RANK_PORT);
    tr__port_push(port, r);
}

/* Release records taken off a queue (acknowledged), in order, outside the
 * port lock. */
static void release_chain(tr__record_t *r) {
    while (r) {
        tr__record_t *next = r->next;
        r->release(r);
        r = next;
    }
}

size_t tr_port_drain(tr_port_t *port, tr_completion_t *out, size_t cap, size_t ack) {
    tr__record_t *done_head = NULL, *done_tail = NULL;
    tr__record_t *drop_head = NULL, *drop_tail = NULL;
    size_t n = 0;
    tr__lock(&port->mu, TR__RANK_PORT);
    port->drains++;
    if (ack > port->inflight) ack = port->inflight;
    if (port->closed) {
        /* Only records the last drain copied out are left (tr_port_close),
         * each with its place in that copy: the acknowledged ones are
         * released as usual, the rest were never delivered and never will
         * be, so they are dropped now, as close dropped the others. */
        for (tr__record_t *r = port->head, *next; r; r = next) {
            next = r->next;
            r->queued = false;
            if (r->pos < ack) TR__SLIST_APPEND(done_head, done_tail, r, next);
            else TR__SLIST_APPEND(drop_head, drop_tail, r, next);
        }
        port->head = port->tail = NULL;
        port->inflight = 0;
        tr__unlock(&port->mu, TR__RANK_PORT);
        release_chain(done_head);
        drop_chain(drop_head);
        return 0;
    }
    /* Phase 1: remove what the consumer acknowledged. */
    for (size_t k = 0; k < ack; k++) {
        tr__record_t *r = port->head;
        port->head = r->next;
        r->queued = false;
        if (r->release) TR__SLIST_APPEND(done_head, done_tail, r, next); /* released below, in order */
    }
    /* Phase 2: copy from the head without removing.  A progress record in
     * flight stays queued, so tr__port_progress only updates its value. */
    for (tr__record_t *r = port->head; r && n < cap; r = r->next) out[n++] = r->c;
    port->inflight = n;
    if (!port->head) {
        port->tail = NULL;
        port->notified = false; /* the next record reports the port again */
    }
    tr__unlock(&port->mu, TR__RANK_PORT);
    release_chain(done_head);
    return n;
}

int tr_port_stalled(tr_port_t *port) {
    tr__lock(&port->mu, TR__RANK_PORT);
    int stalled = port->head != NULL && port->drains == port->drains_seen;
    port->drains_seen = port->drains;
    tr__unlock(&port->mu, TR__RANK_PORT);
    return stalled;
}

void tr_port_close(tr_port_t *port) {
    tr__lock(&port->mu, TR__RANK_PORT);
    if (port->closed) {
        tr__unlock(&port->mu, TR__RANK_PORT);
        return;
    }
    port->closed = true;
    /* The records the last drain copied out stay (the consumer may be
     * delivering them; the next drain acks them), each marked with its
     * place in that copy.  Records that live on (an op's progress record)
     * still belong to their op, which may queue one again, and so rewrite
     * its links, as soon as the lock is dropped, or be freed with its final
     * record: unlink them here, in flight or not, and never touch them
     * afterwards.  Only records the queue owns are dropped below, outside
     * the lock. */
    tr__record_t *keep = NULL, *keep_tail = NULL;
    tr__record_t *chain = NULL, *chain_tail = NULL;
    size_t i = 0;
    for (tr__record_t *r = port->head, *next; r; r = next, i++) {
        next = r->next;
        if (!r->release) {
            r->queued = false;
        } else if (i < port->inflight) {
            r->pos = i;
            TR__SLIST_APPEND(keep, keep_tail, r, next);
        } else {
            r->queued = false;
            TR__SLIST_APPEND(chain, chain_tail, r, next);
        }
    }
    port->head = keep;
    port->tail = keep_tail;
    port->notified = false;
    tr__unlock(&port->mu, TR__RANK_PORT);
    drop_chain(chain);
    /* Ops still bound to the port are cancelled on the loop thread (the
     * close message); their final records will be dropped on arrival.  Once
     * the runtime is stopped there are none left. */
    tr__port_ref(port);
    if (!tr__inbox_post(port->inbox, &port->close_msg)) tr_port_release(port);
}

void tr_port_release(tr_port_t *port) {
    if (!port || atomic_fetch_sub(&port->refs, 1) != 1) return;
    tr__hub_t *hub = port->hub;
    tr__stats_t *stats = port->stats;
    /* Nobody else holds it, so no record can be queued, but it may still sit
     * in the ready list. */
    tr__hub_forget(hub, &port->node);
    tr__record_t *chain = port->head;
    port->head = port->tail = NULL;
    drop_chain(chain);
    pthread_mutex_destroy(&port->mu);
    free(port);
    atomic_fetch_sub(&stats->ports, 1);
    tr__hub_unref(hub); /* may free the runtime, stats included */
}
