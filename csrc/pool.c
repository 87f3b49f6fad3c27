/*
 * pool.c - the worker threads: one FIFO of intrusive work items (layer L2,
 * see pool.h for the threading rules).
 *
 * Producers append whole chains under one lock; workers take up to
 * TR__POOL_BATCH items per lock (a solo item alone), so a burst of a
 * million small items costs thousands of lock round trips, not millions.
 */
#include "pool.h"

#include <errno.h>
#include <stdlib.h>

#include "clock.h"
#include "lock.h"
#include "thread.h"
#include "tokio_runtime.h"

#define TR__POOL_BATCH 64

static void *worker_main(void *arg) {
    tr__pool_t *pool = arg;
    for (;;) {
        tr__lock(&pool->mu, TR__RANK_POOL);
        while (!pool->head && !pool->quit) {
            pool->waiting++;
            tr__cond_wait_until(&pool->cv, &pool->mu, TR__RANK_POOL, NULL);
            pool->waiting--;
        }
        tr__work_t *batch = pool->head;
        if (!batch) { /* quit, and nothing left to run */
            pool->exited++;
            pthread_cond_broadcast(&pool->exit_cv);
            tr__unlock(&pool->mu, TR__RANK_POOL);
            return NULL;
        }
        tr__work_t *last = batch;
        for (int i = 1; i < TR__POOL_BATCH && !last->solo && last->next && !last->next->solo; i++)
            last = last->next;
        pool->head = last->next;
        if (!pool->head) pool->tail = NULL;
        last->next = NULL;
        /* More left: pass the baton so another idle worker takes a share. */
        if (pool->head && pool->waiting) pthread_cond_signal(&pool->cv);
        tr__unlock(&pool->mu, TR__RANK_POOL);
        while (batch) {
            tr__work_t *next = batch->next; /* run() may free the item */
            batch->run(batch);
            batch = next;
        }
    }
}

int tr__pool_start(tr__pool_t *pool, int n, const char *thread_name, int first_index) {
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    tr__cond_init_monotonic(&pool->exit_cv);
    pool->head = pool->tail = NULL;
    pool->quit = false;
    pool->waiting = 0;
    pool->started = 0;
    pool->exited = 0;
    pool->threads = calloc((size_t)n, sizeof *pool->threads);
    if (!pool->threads) {
        pthread_cond_destroy(&pool->exit_cv);
        pthread_cond_destroy(&pool->cv);
        pthread_mutex_destroy(&pool->mu);
        return TR_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        if (tr__thread_start(&pool->threads[i], worker_main, pool, thread_name, first_index + i) != 0) {
            tr__pool_stop(pool);
            return TR_ETHREAD;
        }
        pool->started++;
    }
    return TR_OK;
}

void tr__pool_push(tr__pool_t *pool, tr__work_t *first, tr__work_t *last) {
    tr__lock(&pool->mu, TR__RANK_POOL);
    TR__SLIST_APPEND_CHAIN(pool->head, pool->tail, first, last, next);
    if (pool->waiting) pthread_cond_signal(&pool->cv);
    tr__unlock(&pool->mu, TR__RANK_POOL);
}

void tr__pool_quit(tr__pool_t *pool) {
    tr__lock(&pool->mu, TR__RANK_POOL);
    pool->quit = true;
    pthread_cond_broadcast(&pool->cv);
    tr__unlock(&pool->mu, TR__RANK_POOL);
}

bool tr__pool_wait(tr__pool_t *pool, const struct timespec *deadline) {
    tr__lock(&pool->mu, TR__RANK_POOL);
    while (pool->exited < pool->started)
        if (tr__cond_wait_until(&pool->exit_cv, &pool->mu, TR__RANK_POOL, deadline) == ETIMEDOUT) break;
    bool all = pool->exited >= pool->started;
    tr__unlock(&pool->mu, TR__RANK_POOL);
    return all;
}

void tr__pool_stop(tr__pool_t *pool) {
    tr__pool_quit(pool);
    for (int i = 0; i < pool->started; i++) pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    pool->threads = NULL;
    pool->started = 0;
    pthread_cond_destroy(&pool->exit_cv);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
}

void tr__workbatch_run(tr__workbatch_t *b) {
    while (b->head) {
        tr__work_t *w = b->head;
        b->head = w->next;
        if (!b->head) b->tail = NULL;
        w->run(w);
    }
}
