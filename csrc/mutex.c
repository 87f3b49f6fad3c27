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
 * Layer L5.  Every function: any thread (tr_mutex_lock_blocking blocks it).
 */
#include <math.h>
#include <stdlib.h>

#include "clock.h"
#include "dispatch.h"
#include "op.h"
#include "waiter.h"

struct tr_mutex {
    tr__sync_t base; /* first member */
    bool locked;     /* invariant: unlocked => nobody waits */
    tr__waitq_t q;
};

static void mutex_destroy(tr__sync_t *s) { free(s); }

static void mutex_lost_wake(tr__sync_t *s, int direction) {
    (void)direction;
    /* The lock was handed to a waiter whose port closed: hand it on. */
    tr_mutex_unlock((tr_mutex_t *)s);
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

int tr_mutex_try_lock(tr_mutex_t *m) {
    tr__sync_lock(&m->base);
    int rc = m->locked ? TR_EBUSY : TR_OK;
    m->locked = true;
    tr__sync_unlock(&m->base);
    return rc;
}

int tr_mutex_lock_blocking(tr_mutex_t *m, double timeout) {
    if (isnan(timeout)) return TR_EINVAL;
    struct timespec ts;
    const struct timespec *deadline = tr__deadline(timeout, &ts);
    int rc = TR_OK;
    tr__sync_lock(&m->base);
    if (!m->locked) m->locked = true;
    else if (!tr__waitq_block(&m->base, &m->q, deadline)) rc = TR_TIMEDOUT;
    /* else: handed over by tr_mutex_unlock, still locked, now ours */
    tr__sync_unlock(&m->base);
    return rc;
}

int tr_mutex_wait(tr_mutex_t *m, tr_port_t *port, uint64_t token, tr_waiter_t **waiter) {
    if (!port || token == 0 || !waiter) return TR_EINVAL;
    tr__sync_lock(&m->base);
    int rc = TR_OK;
    if (!m->locked) m->locked = true;
    else rc = tr__waiter_new(&m->base, &m->q, TR_RECV, port, token, waiter);
    tr__sync_unlock(&m->base);
    return rc;
}

int tr_mutex_wait_thread(tr_mutex_t *m, tr_waiter_t **waiter) {
    if (!waiter) return TR_EINVAL;
    tr__sync_lock(&m->base);
    int rc = TR_OK;
    if (!m->locked) m->locked = true;
    else rc = tr__waiter_new_thread(&m->base, &m->q, TR_RECV, waiter);
    tr__sync_unlock(&m->base);
    return rc;
}

int tr_mutex_unlock(tr_mutex_t *m) {
    tr__wakelist_t wl = {0};
    int rc = TR_OK;
    tr__sync_lock(&m->base);
    if (!m->locked) rc = TR_EINVAL;
    else if (!tr__waitq_wake_one(&m->q, &wl)) m->locked = false;
    tr__sync_unlock(&m->base);
    tr__wake_flush(&wl);
    return rc;
}

int tr_mutex_unlock_quiet(tr_mutex_t *m, tr_runtime_t *rt) {
    tr__hub_quiet_begin(rt ? tr__opset_of(rt)->hub : NULL); /* NULL: a plain unlock */
    int rc = tr_mutex_unlock(m);
    bool queued = tr__hub_quiet_end();
    return rc == TR_OK && queued ? TR_PENDING : rc;
}

int tr_mutex_locked(tr_mutex_t *m) {
    tr__sync_lock(&m->base);
    int locked = m->locked;
    tr__sync_unlock(&m->base);
    return locked;
}
