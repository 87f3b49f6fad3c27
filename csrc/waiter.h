/*
 * waiter.h - wait queues shared by channels and mutexes (layer L4).
 *
 * An owner (channel or mutex) is a tr__sync_t: a refcount, one lock (rank
 * OWNER) guarding its state and its wait queues, and what to do with a wake
 * that reached nobody.  A waiter is a blocked thread or a port waiter (a
 * record pushed to a port when woken).  Wakes are collected under the owner
 * lock into a tr__wakelist_t and their records pushed after it is dropped
 * (tr__wake_flush).  A wake does take port locks under the owner lock (to
 * skip waiters whose port is closed), and tr__waiter_new takes the inbox
 * lock and a port lock under it: see the lock order in lock.h.
 *
 * Waiters count in the runtime's stats and ask its inbox whether it still
 * runs, both through their port; they never see the runtime.
 *
 * Threads: any thread; "owner lock held" marks what must be called under
 * the owner's lock.  Public: tr_waiter_release, _release_cell, tr_waiter_wait
 * (waiter.c).
 */
#ifndef TR_WAITER_H
#define TR_WAITER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "lock.h"
#include "port.h"
#include "tokio_runtime.h"

typedef struct tr__sync tr__sync_t;
struct tr__sync {
    atomic_int refs;
    pthread_mutex_t mu;                              /* TR__RANK_OWNER */
    void (*lost_wake)(tr__sync_t *s, int direction); /* any thread, lock not held */
    void (*destroy)(tr__sync_t *s);                  /* refs reached 0 */
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
    uint64_t ticket;           /* a mutex acquisition's ticket (0 for a channel) */
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
void tr__sync_ref(tr__sync_t *s);
void tr__sync_unref(tr__sync_t *s);
/* Macros, so the lock checker reports the caller's file:line. */
#define tr__sync_lock(s) tr__lock(&(s)->mu, TR__RANK_OWNER)
#define tr__sync_unlock(s) tr__unlock(&(s)->mu, TR__RANK_OWNER)

/* Woken port waiters, collected under the owner lock and delivered after it
 * is dropped (tr__wake_flush). */
typedef struct tr__wakelist {
    tr_waiter_t *head, *tail; /* in wake order, so records arrive oldest first */
} tr__wakelist_t;

/* Owner lock held: append w. */
void tr__waitq_push(tr__waitq_t *q, tr_waiter_t *w);
/* Owner lock held: wake the oldest waiter whose consumer can still act on
 * it (thread waiters are signalled now, port waiters collected into wl;
 * waiters whose port is closed are dropped on the way).  Returns the waiter
 * woken (read it only until the owner lock is dropped: a thread waiter's
 * frame may go then), or NULL: none. */
tr_waiter_t *tr__waitq_wake_one(tr__waitq_t *q, tr__wakelist_t *wl);
/* Owner lock held: wake every waiter. */
void tr__waitq_wake_all(tr__waitq_t *q, tr__wakelist_t *wl);
/* Owner lock NOT held: push the collected records; ports they make ready
 * go to wakes if it is not NULL (tr__port_push_to). */
void tr__wake_flush(tr__wakelist_t *wl, tr_wakes_t *wakes);

/* Owner lock held: a new port waiter queued in q.  The caller has checked
 * port, token and out.  TR_PENDING, TR_ENOMEM, TR_ECLOSED or TR_ESHUTDOWN.
 * ticket: stored in the waiter (a mutex's; 0 for a channel). */
int tr__waiter_new(tr__sync_t *owner, tr__waitq_t *q, int direction, tr_port_t *port,
                   uint64_t token, uint64_t ticket, tr_waiter_t **out);
/* Owner lock held: a new thread waiter queued in q, for a caller that waits
 * in several steps (tr_waiter_wait) and keeps its place in between.
 * TR_PENDING or TR_ENOMEM. */
int tr__waiter_new_thread(tr__sync_t *owner, tr__waitq_t *q, int direction, uint64_t ticket,
                          tr_waiter_t **out);
/* Owner lock held: block the calling thread in q until woken or until the
 * deadline (NULL: none).  true: woken (it is out of q); false: timed out (it
 * was taken out of q, unwoken). */
bool tr__waitq_block(tr__sync_t *owner, tr__waitq_t *q, uint64_t ticket,
                     const struct timespec *deadline);

#endif /* TR_WAITER_H */
