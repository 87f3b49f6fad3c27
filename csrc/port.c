/*
 * port.c - completion queues, one per consumer (per asyncio loop).
 *
 * Records are intrusive: an op's final record lives inside the op, so
 * finishing an op never allocates and so can never lose a result.  Only the
 * empty -> non-empty edge of a queue reports the port to the dispatcher; the
 * consumer drains whole batches and re-arms the edge when it empties the queue.
 */
#include "internal.h"

#include <stdlib.h>

void tr__port_ref(tr_port_t *port) { atomic_fetch_add(&port->refs, 1); }

int tr_port_defer_wake(tr_port_t *port, int on) {
    if (!port) return TR_EINVAL;
    atomic_store(&port->defer_wake, on != 0);
    return TR_OK;
}

bool tr__port_closed(tr_port_t *port) {
    pthread_mutex_lock(&port->mu);
    bool closed = port->closed;
    pthread_mutex_unlock(&port->mu);
    return closed;
}

static void close_msg_run(tr_runtime_t *rt, tr__msg_t *msg) {
    tr_port_t *port = TR__CONTAINER_OF(msg, tr_port_t, close_msg);
    tr__cancel_ops(rt, port);
    tr_port_release(port);
}

int tr_port_new(tr_runtime_t *rt, uint64_t id, tr_port_t **out) {
    if (!rt || !out) return TR_EINVAL;
    tr_port_t *port = calloc(1, sizeof *port);
    if (!port) return TR_ENOMEM;
    atomic_init(&port->refs, 1);
    port->rt = rt;
    port->id = id;
    port->close_msg.run = close_msg_run;
    pthread_mutex_init(&port->mu, NULL);
    tr__runtime_ref(rt);
    atomic_fetch_add(&rt->ports, 1);
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

void tr__port_push(tr_port_t *port, tr__record_t *r) {
    bool notify = false;
    r->next = NULL;
    pthread_mutex_lock(&port->mu);
    if (port->closed) {
        pthread_mutex_unlock(&port->mu);
        drop_chain(r);
        return;
    }
    r->queued = true;
    if (port->tail) port->tail->next = r;
    else port->head = r;
    port->tail = r;
    if (!port->notified) port->notified = notify = true;
    pthread_mutex_unlock(&port->mu);
    /* r may already be drained and freed here; port is kept alive by the
     * caller's reference. */
    if (notify) tr__port_ready(port->rt, port);
}

void tr__port_progress(tr_port_t *port, tr__record_t *r, int64_t value) {
    pthread_mutex_lock(&port->mu);
    if (r->queued) { /* coalesce: the consumer sees the latest value */
        r->c.value = value;
        pthread_mutex_unlock(&port->mu);
        return;
    }
    r->c.value = value;
    r->c.status = TR_OK;
    pthread_mutex_unlock(&port->mu);
    tr__port_push(port, r);
}

size_t tr_port_drain(tr_port_t *port, tr_completion_t *out, size_t cap) {
    tr__record_t *done_head = NULL, **done_tail = &done_head;
    size_t n = 0;
    pthread_mutex_lock(&port->mu);
    while (n < cap && port->head) {
        tr__record_t *r = port->head;
        port->head = r->next;
        out[n++] = r->c;
        r->queued = false;
        if (r->release) { /* release outside the lock, in queue order */
            r->next = NULL;
            *done_tail = r;
            done_tail = &r->next;
        }
    }
    if (!port->head) {
        port->tail = NULL;
        port->notified = false; /* the next record reports the port again */
    }
    pthread_mutex_unlock(&port->mu);
    while (done_head) {
        tr__record_t *next = done_head->next;
        done_head->release(done_head);
        done_head = next;
    }
    return n;
}

void tr_port_close(tr_port_t *port) {
    pthread_mutex_lock(&port->mu);
    if (port->closed) {
        pthread_mutex_unlock(&port->mu);
        return;
    }
    port->closed = true;
    /* Records that live on (an op's progress record) still belong to their
     * op, which may queue one again, and so rewrite its links, as soon as the
     * lock is dropped: unlink them here and never touch them afterwards.
     * Only records the queue owns are dropped below, outside the lock. */
    tr__record_t *chain = NULL, **tail = &chain;
    for (tr__record_t *r = port->head, *next; r; r = next) {
        next = r->next;
        r->queued = false;
        if (r->release) {
            *tail = r;
            tail = &r->next;
        }
    }
    *tail = NULL;
    port->head = port->tail = NULL;
    port->notified = false;
    pthread_mutex_unlock(&port->mu);
    drop_chain(chain);
    /* Ops still bound to the port are cancelled on the loop thread; their
     * final records will be dropped on arrival.  Once the runtime is stopped
     * there are none left. */
    tr__port_ref(port);
    if (!tr__post(port->rt, &port->close_msg)) tr_port_release(port);
}

void tr_port_release(tr_port_t *port) {
    if (!port || atomic_fetch_sub(&port->refs, 1) != 1) return;
    tr_runtime_t *rt = port->rt;
    /* Nobody else holds it, so no record can be queued, but it may still sit
     * in the ready list. */
    pthread_mutex_lock(&rt->ready_mu);
    if (port->in_ready) {
        if (port->ready_prev) port->ready_prev->ready_next = port->ready_next;
        else rt->ready_head = port->ready_next;
        if (port->ready_next) port->ready_next->ready_prev = port->ready_prev;
        else rt->ready_tail = port->ready_prev;
    }
    pthread_mutex_unlock(&rt->ready_mu);
    tr__record_t *chain = port->head;
    port->head = port->tail = NULL;
    drop_chain(chain);
    pthread_mutex_destroy(&port->mu);
    free(port);
    atomic_fetch_sub(&rt->ports, 1);
    tr__runtime_unref(rt);
}
