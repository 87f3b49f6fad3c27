/*
 * pool.h - the worker threads and the work items they run (layer L2).
 *
 * One FIFO of intrusive work items.  tr__pool_push: any thread.  Work runs
 * on a worker, with no lock held.  tr__pool_start/quit/wait/stop: the
 * runtime's owner (creation and shutdown).  A tr__workbatch_t collects items
 * on one thread (the loop thread's outbox) to hand over under one lock.
 */
#ifndef TR_POOL_H
#define TR_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "list.h"

typedef struct tr__work tr__work_t;
struct tr__work {
    tr__work_t *next;
    void (*run)(tr__work_t *w); /* runs on a worker; may free w */
    /* A worker takes up to a batch of items per lock, but a solo item (a
     * user's function, whose length nobody knows) alone: otherwise three
     * long jobs queued together would run one after another on one worker
     * while the others idle. */
    bool solo;
};

typedef struct tr__pool {
    pthread_mutex_t mu; /* TR__RANK_POOL; guards everything below but threads */
    pthread_cond_t cv;
    tr__work_t *head, *tail;
    bool quit;
    int waiting;       /* workers blocked on cv */
    int started;
    int exited;        /* workers that returned; signalled on exit_cv */
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

/* Items collected by one thread, not yet handed to a pool (no lock). */
typedef struct tr__workbatch {
    tr__work_t *head, *tail;
} tr__workbatch_t;

static inline void tr__workbatch_add(tr__workbatch_t *b, tr__work_t *w) {
    TR__SLIST_APPEND(b->head, b->tail, w, next);
}

/* Hand the whole batch to the pool (one lock for many items). */
static inline void tr__pool_push_batch(tr__pool_t *pool, tr__workbatch_t *b) {
    if (b->head) {
        tr__pool_push(pool, b->head, b->tail);
        b->head = b->tail = NULL;
    }
}

/* Run the batch on the calling thread, items added meanwhile included (for
 * when the pool is gone). */
void tr__workbatch_run(tr__workbatch_t *b);

#endif /* TR_POOL_H */
