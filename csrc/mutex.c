/*
 * mutex.c - a FIFO lock for threads and event loops alike.
 *
 * Unlocking with waiters queued hands the lock straight to the oldest one
 * (it stays locked throughout), so nobody can barge in between and the queue
 * order is the acquisition order.  A port waiter that is handed the lock but
 * will not use it (its task was cancelled, its loop closed) gives it back
 * with tr_mutex_unlock, which hands it on again: a cancelled acquire never
 * leaves the lock held.
 *
 * The lock remembers its holder's ticket (each acquisition names one, and a
 * waiter carries its own): a hand-off sets it to the woken waiter's, so a
 * caller unsure whether it holds the lock gives it back with
 * tr_mutex_unlock_if(ticket), which does nothing unless it does.
 *
 * Layer L5.  Every function: any thread (tr_mutex_lock_blocking blocks it).
 */
#include <math.h>
#include <stdlib.h>

#include "clock.h"
#include "waiter.h"

struct tr_mutex {
    tr__sync_t base; /* first member */
    bool locked;     /* invariant: unlocked => nobody waits */
    uint64_t holder; /* the ticket it is held under; 0 when unlocked */
    tr__waitq_t q;
};

static void mutex_destroy(tr__sync_t *s) { free(s); }

static void mutex_lost_wake(tr__sync_t *s, int direction) {
    (void)direction;
    /* The lock was handed to a waiter whose port closed: that waiter is the
     * holder, so hand it on unconditionally. */
    tr_mutex_unlock((tr_mutex_t *)s, NULL);
}

int tr_mutex_new(tr_mutex_t **out) {
    if (!out) return TR_EINVAL;
    tr_mutex_t *m = calloc(1, sizeof *m);
    if (!m) return TR_ENOMEM;
    tr__sync_init(&m->base, mutex_lost_wake, mutex_destroy);
    *out = m;
    return TR_OK;
}

void tr_mutex_release(tr_mutex_t *m) {
    if (m) tr__sync_unref(&m->base);
}

void tr_mutex_ref(tr_mutex_t *m) {
    if (m) tr__sync_ref(&m->base);
}

uint64_t tr_mutex_ticket(void) {
    /* Counted down from the top, far from the Python shim's small ones. */
    static atomic_uint_fast64_t next = UINT64_MAX;
    return atomic_fetch_sub(&next, 1);
}

/* Lock held.  Take the lock if it is free. */
static bool acquire_locked(tr_mutex_t *m, uint64_t ticket) {
    if (m->locked) return false;
    m->locked = true;
    m->holder = ticket;
    return true;
}

int tr_mutex_try_lock(tr_mutex_t *m, uint64_t ticket) {
    if (ticket == 0) return TR_EINVAL;
    tr__sync_lock(&m->base);
    int rc = acquire_locked(m, ticket) ? TR_OK : TR_EBUSY;
    tr__sync_unlock(&m->base);
    return rc;
}

int tr_mutex_lock_blocking(tr_mutex_t *m, double timeout, uint64_t ticket) {
    if (isnan(timeout) || ticket == 0) return TR_EINVAL;
    struct timespec ts;
    const struct timespec *deadline = tr__deadline(timeout, &ts);
    int rc = TR_OK;
    tr__sync_lock(&m->base);
    if (!acquire_locked(m, ticket) && !tr__waitq_block(&m->base, &m->q, ticket, deadline))
        rc = TR_TIMEDOUT;
    /* else: handed over by an unlock, still locked, now ours (holder = ticket) */
    tr__sync_unlock(&m->base);
    return rc;
}

int tr_mutex_wait(tr_mutex_t *m, tr_port_t *port, uint64_t token, uint64_t ticket,
                  tr_waiter_t **waiter) {
    if (!port || token == 0 || ticket == 0 || !waiter) return TR_EINVAL;
    tr__sync_lock(&m->base);
    int rc = TR_OK;
    if (!acquire_locked(m, ticket))
        rc = tr__waiter_new(&m->base, &m->q, TR_RECV, port, token, ticket, waiter);
    tr__sync_unlock(&m->base);
    return rc;
}

int tr_mutex_wait_thread(tr_mutex_t *m, uint64_t ticket, tr_waiter_t **waiter) {
    if (ticket == 0 || !waiter) return TR_EINVAL;
    tr__sync_lock(&m->base);
    int rc = TR_OK;
    if (!acquire_locked(m, ticket))
        rc = tr__waiter_new_thread(&m->base, &m->q, TR_RECV, ticket, waiter);
    tr__sync_unlock(&m->base);
    return rc;
}

/* Lock held, m locked: hand it to the oldest waiter that can take it, or
 * unlock it. */
static void release_locked(tr_mutex_t *m, tr__wakelist_t *wl) {
    tr_waiter_t *w = tr__waitq_wake_one(&m->q, wl);
    if (w) {
        m->holder = w->ticket;
    } else {
        m->locked = false;
        m->holder = 0;
    }
}

int tr_mutex_unlock(tr_mutex_t *m, tr_wakes_t *wakes) {
    tr__wakes_reset(wakes);
    tr__wakelist_t wl = {0};
    int rc = TR_OK;
    tr__sync_lock(&m->base);
    if (!m->locked) rc = TR_EINVAL;
    else release_locked(m, &wl);
    tr__sync_unlock(&m->base);
    tr__wake_flush(&wl, wakes);
    return rc;
}

int tr_mutex_unlock_if(tr_mutex_t *m, uint64_t ticket, tr_wakes_t *wakes) {
    tr__wakes_reset(wakes);
    tr__wakelist_t wl = {0};
    int rc = TR_OK;
    tr__sync_lock(&m->base);
    if (!m->locked || m->holder != ticket) rc = TR_EINVAL;
    else release_locked(m, &wl);
    tr__sync_unlock(&m->base);
    tr__wake_flush(&wl, wakes);
    return rc;
}

int tr_mutex_locked(tr_mutex_t *m) {
    tr__sync_lock(&m->base);
    int locked = m->locked;
    tr__sync_unlock(&m->base);
    return locked;
}
