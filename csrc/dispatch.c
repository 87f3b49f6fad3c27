/*
 * dispatch.c - the dispatch hub (layer L2, see dispatch.h for the threading
 * rules).
 */
#include "dispatch.h"

#include <errno.h>

#include "clock.h"
#include "list.h"
#include "lock.h"

void tr__hub_init(tr__hub_t *hub, void (*destroy)(tr__hub_t *)) {
    atomic_init(&hub->refs, 1);
    hub->destroy = destroy;
    pthread_mutex_init(&hub->mu, NULL);
    tr__cond_init_monotonic(&hub->cv);
    hub->ready_head = hub->ready_tail = NULL;
    hub->notify_head = hub->notify_tail = NULL;
    hub->done = hub->kick = false;
}

void tr__hub_ref(tr__hub_t *hub) { atomic_fetch_add(&hub->refs, 1); }

void tr__hub_unref(tr__hub_t *hub) {
    if (atomic_fetch_sub(&hub->refs, 1) != 1) return;
    pthread_cond_destroy(&hub->cv);
    pthread_mutex_destroy(&hub->mu);
    hub->destroy(hub);
}

/* The hub whose loop thread this is (NULL on any other thread). */
static _Thread_local tr__hub_t *loop_hub;

void tr__hub_enter_loop(tr__hub_t *hub) { loop_hub = hub; }
void tr__hub_leave_loop(void) { loop_hub = NULL; }

void tr__hub_report(tr__hub_t *hub, tr__hub_node_t *n) {
    tr__lock(&hub->mu, TR__RANK_HUB);
    if (!n->in_ready) {
        n->in_ready = true;
        TR__DLIST_APPEND(hub->ready_head, hub->ready_tail, n, ready_prev, ready_next);
        pthread_cond_signal(&hub->cv);
    }
    tr__unlock(&hub->mu, TR__RANK_HUB);
}

void tr__hub_ready(tr__hub_t *hub, tr__hub_node_t *n) {
    if (loop_hub != hub) {
        tr__hub_report(hub, n);
        return;
    }
    if (n->notify_queued) return;
    n->notify_queued = true;
    n->hold(n);
    TR__SLIST_APPEND(hub->notify_head, hub->notify_tail, n, notify_next);
}

void tr__hub_flush(tr__hub_t *hub) {
    tr__hub_node_t *n = hub->notify_head;
    hub->notify_head = hub->notify_tail = NULL;
    while (n) {
        tr__hub_node_t *next = n->notify_next;
        n->notify_queued = false;
        tr__hub_report(hub, n);
        n->drop(n);
        n = next;
    }
}

void tr__hub_forget(tr__hub_t *hub, tr__hub_node_t *n) {
    tr__lock(&hub->mu, TR__RANK_HUB);
    if (n->in_ready) TR__DLIST_UNLINK(hub->ready_head, hub->ready_tail, n, ready_prev, ready_next);
    tr__unlock(&hub->mu, TR__RANK_HUB);
}

void tr__hub_wake(tr__hub_t *hub) {
    tr__lock(&hub->mu, TR__RANK_HUB);
    hub->kick = true;
    pthread_cond_signal(&hub->cv);
    tr__unlock(&hub->mu, TR__RANK_HUB);
}

void tr__hub_close(tr__hub_t *hub) {
    tr__lock(&hub->mu, TR__RANK_HUB);
    hub->done = true;
    pthread_cond_broadcast(&hub->cv);
    tr__unlock(&hub->mu, TR__RANK_HUB);
}

/* Take up to cap ready nodes off the list (hub lock held). */
static int take_locked(tr__hub_t *hub, uint64_t *ids, int cap) {
    int n = 0;
    while (n < cap && hub->ready_head) {
        tr__hub_node_t *p = hub->ready_head;
        TR__DLIST_UNLINK(hub->ready_head, hub->ready_tail, p, ready_prev, ready_next);
        p->in_ready = false;
        ids[n++] = p->id;
    }
    return n;
}

int tr__hub_wait(tr__hub_t *hub, uint64_t *ids, int cap, double timeout) {
    struct timespec ts;
    const struct timespec *deadline = tr__deadline(timeout, &ts);
    tr__lock(&hub->mu, TR__RANK_HUB);
    while (!hub->ready_head && !hub->done && !hub->kick)
        if (tr__cond_wait_until(&hub->cv, &hub->mu, TR__RANK_HUB, deadline) == ETIMEDOUT) break;
    hub->kick = false;
    int n = take_locked(hub, ids, cap);
    bool done = hub->done && n == 0;
    tr__unlock(&hub->mu, TR__RANK_HUB);
    return done ? -1 : n;
}
