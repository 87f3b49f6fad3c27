/*
 * waiter.c - wait queues shared by channels and mutexes (layer L4, see
 * waiter.h for the threading rules).
 *
 * A waiter is either a blocked thread (on its own stack, woken by its own
 * condition variable) or a port waiter (on the heap, woken by pushing its
 * record to a port, which the asyncio side drains).  Both kinds sit in one
 * FIFO, so threads and event loops queue for the same channel or lock fairly.
 *
 * The hard part is a wake that nobody uses.  A port waiter can be woken at
 * the very moment its asyncio task is cancelled, or its loop closes: the
 * wake is then handed back (tr_waiter_release tells the caller it had been
 * woken; a record dropped by a closed port calls the owner's lost_wake), so
 * an item or a lock never sits unclaimed while others wait.
 */
#include "waiter.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "clock.h"
#include "list.h"
#include "lock.h"

void tr__sync_init(tr__sync_t *s, void (*lost_wake)(tr__sync_t *, int),
                   void (*destroy)(tr__sync_t *)) {
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->mu, NULL);
    s->lost_wake = lost_wake;
    s->destroy = destroy;
}

void tr__sync_ref(tr__sync_t *s) { atomic_fetch_add(&s->refs, 1); }

void tr__sync_unref(tr__sync_t *s) {
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    pthread_mutex_destroy(&s->mu);
    s->destroy(s);
}

/* ---- the queue (owner lock held) ------------------------------------------ */

void tr__waitq_push(tr__waitq_t *q, tr_waiter_t *w) {
    w->q = q;
    TR__DLIST_APPEND(q->head, q->tail, w, prev, next);
}

static void waitq_unlink(tr_waiter_t *w) {
    TR__DLIST_UNLINK(w->q->head, w->q->tail, w, prev, next);
    w->q = NULL;
}

static void wakelist_add(tr__wakelist_t *wl, tr_waiter_t *w, bool dead) {
    w->rec.dropped = dead; /* reused as "drop, do not push" until flushed */
    /* Appended, not pushed in front: waiters woken together (a close, a
     * recv_many) get their records in queue order. */
    TR__SLIST_APPEND(wl->head, wl->tail, w, next);
}

/* Take w out of its queue as woken.  Returns false if it could not act on
 * the wake (its port is closed): it is then only disposed of. */
static bool wake(tr_waiter_t *w, tr__wakelist_t *wl) {
    waitq_unlink(w);
    if (w->kind == TR__WAIT_THREAD) {
        w->woken = true;
        /* Signalled under the owner lock: the stack frame holding w may be
         * gone as soon as the lock is dropped. */
        pthread_cond_signal(&w->cv);
        return true;
    }
    bool dead = tr__port_closed(w->port);
    if (dead) w->passed = true; /* the caller of wake_one goes on to the next */
    wakelist_add(wl, w, dead);
    return !dead;
}

tr_waiter_t *tr__waitq_wake_one(tr__waitq_t *q, tr__wakelist_t *wl) {
    while (q->head) {
        tr_waiter_t *w = q->head;
        if (wake(w, wl)) return w;
    }
    return NULL;
}

void tr__waitq_wake_all(tr__waitq_t *q, tr__wakelist_t *wl) {
    while (q->head) wake(q->head, wl);
}

/* ---- port waiters --------------------------------------------------------- */

static void waiter_unref(tr_waiter_t *w) {
    if (atomic_fetch_sub(&w->refs, 1) != 1) return;
    if (w->kind == TR__WAIT_THREAD) pthread_cond_destroy(&w->cv);
    tr_port_release(w->port); /* NULL for a thread waiter */
    tr__sync_unref(w->owner);
    free(w);
}

/* The waiter stopped counting as pending: woken or taken out unwoken. */
static void waiter_settled(tr_waiter_t *w) {
    tr__stats_t *stats = w->port->stats;
    atomic_fetch_sub(&stats->waiters, 1);
    atomic_fetch_sub(&stats->pending, 1);
}

static void waiter_record_release(tr__record_t *r) {
    tr_waiter_t *w = TR__CONTAINER_OF(r, tr_waiter_t, rec);
    if (r->dropped) {
        /* The port closed (or was let go) before the record was drained:
         * nobody will act on it through the port.  Pass it on, unless the
         * caller already took it with tr_waiter_release (and so passes it
         * on, or uses it, itself). */
        tr__sync_t *owner = w->owner;
        tr__sync_lock(owner);
        bool pass = !w->claimed;
        w->passed = pass;
        tr__sync_unlock(owner);
        if (pass) owner->lost_wake(owner, w->direction);
    }
    waiter_unref(w);
}

int tr__waiter_new(tr__sync_t *owner, tr__waitq_t *q, int direction, tr_port_t *port,
                   uint64_t token, uint64_t ticket, tr_waiter_t **out) {
    if (!tr__inbox_running(port->inbox)) return TR_ESHUTDOWN;
    if (tr__port_closed(port)) return TR_ECLOSED;
    tr_waiter_t *w = calloc(1, sizeof *w);
    if (!w) return TR_ENOMEM;
    atomic_init(&w->refs, 2); /* the caller's, and the queue's (then the record's) */
    w->kind = TR__WAIT_PORT;
    w->direction = direction;
    w->ticket = ticket;
    w->owner = owner;
    tr__sync_ref(owner);
    w->port = port;
    tr__port_ref(port);
    w->rec.c.token = token;
    w->rec.c.final = 1;
    w->rec.release = waiter_record_release;
    atomic_fetch_add(&port->stats->waiters, 1);
    atomic_fetch_add(&port->stats->pending, 1);
    tr__waitq_push(q, w);
    *out = w;
    return TR_PENDING;
}

void tr__wake_flush(tr__wakelist_t *wl, tr_wakes_t *wakes) {
    tr_waiter_t *w = wl->head;
    wl->head = wl->tail = NULL;
    while (w) {
        tr_waiter_t *next = w->next;
        waiter_settled(w);
        if (w->rec.dropped) {
            w->rec.dropped = false;
            waiter_unref(w); /* its port was closed: the wake went elsewhere */
        } else {
            /* The waiter's port reference moves here, for the push only:
             * a queued record must not keep its port alive (a port let go
             * with it still queued would never be freed), and the port
             * must outlive tr__port_push even if the record is drained and
             * the waiter freed before the push returns. */
            tr_port_t *port = w->port;
            w->port = NULL;
            w->rec.c.status = TR_OK;
            tr__port_push_to(port, &w->rec, wakes); /* the record now holds the ref */
            tr_port_release(port);
        }
        w = next;
    }
}

int tr_waiter_release(tr_waiter_t *w) {
    tr__sync_t *owner = w->owner;
    tr__sync_lock(owner);
    bool queued = w->q != NULL;
    if (queued) waitq_unlink(w);
    /* Woken, and the wake not passed on already for a closed port: it is
     * the caller's from here on (a record dropped later passes nothing). */
    bool woken = !queued && !w->passed;
    if (woken) w->claimed = true;
    tr__sync_unlock(owner);
    if (queued && w->kind == TR__WAIT_PORT) {
        waiter_settled(w);
        waiter_unref(w); /* the queue's reference */
    }
    waiter_unref(w); /* the caller's */
    return woken ? 1 : 0;
}

int tr_waiter_release_cell(tr_waiter_t **cell) {
    tr_waiter_t *w = atomic_exchange((_Atomic(tr_waiter_t *) *)cell, NULL);
    return w ? tr_waiter_release(w) : -1;
}

/* ---- thread waiters that keep their place ------------------------------------ */

int tr__waiter_new_thread(tr__sync_t *owner, tr__waitq_t *q, int direction, uint64_t ticket,
                          tr_waiter_t **out) {
    tr_waiter_t *w = calloc(1, sizeof *w);
    if (!w) return TR_ENOMEM;
    atomic_init(&w->refs, 1); /* only the caller's: it always releases it */
    w->kind = TR__WAIT_THREAD;
    w->direction = direction;
    w->ticket = ticket;
    w->owner = owner;
    tr__sync_ref(owner);
    tr__cond_init_monotonic(&w->cv);
    tr__waitq_push(q, w);
    *out = w;
    return TR_PENDING;
}

int tr_waiter_wait(tr_waiter_t *w, double timeout) {
    if (w->kind != TR__WAIT_THREAD || isnan(timeout)) return TR_EINVAL;
    struct timespec ts;
    const struct timespec *deadline = tr__deadline(timeout, &ts);
    tr__sync_t *owner = w->owner;
    tr__sync_lock(owner);
    while (!w->woken)
        if (tr__cond_wait_until(&w->cv, &owner->mu, TR__RANK_OWNER, deadline) == ETIMEDOUT)
            break; /* still queued, in the same place */
    bool woken = w->woken;
    tr__sync_unlock(owner);
    return woken ? TR_OK : TR_TIMEDOUT;
}

/* ---- thread waiters --------------------------------------------------------- */

bool tr__waitq_block(tr__sync_t *owner, tr__waitq_t *q, uint64_t ticket,
                     const struct timespec *deadline) {
    tr_waiter_t w = {0};
    w.kind = TR__WAIT_THREAD;
    w.ticket = ticket;
    tr__cond_init_monotonic(&w.cv);
    tr__waitq_push(q, &w);
    while (!w.woken) {
        int err = tr__cond_wait_until(&w.cv, &owner->mu, TR__RANK_OWNER, deadline);
        if (err == ETIMEDOUT && !w.woken) {
            waitq_unlink(&w);
            break;
        }
    }
    pthread_cond_destroy(&w.cv);
    return w.woken;
}
