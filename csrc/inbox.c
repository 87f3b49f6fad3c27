/*
 * inbox.c - the loop thread's message queue (layer L2, see inbox.h for the
 * threading rules).
 */
#include "inbox.h"

void tr__inbox_init(tr__inbox_t *ib) {
    pthread_mutex_init(&ib->mu, NULL);
    ib->head = ib->tail = NULL;
    ib->state = TR__RUNNING;
    ib->wake_owed = 0;
    ib->loop = NULL;
}

void tr__inbox_destroy(tr__inbox_t *ib) { pthread_mutex_destroy(&ib->mu); }

void tr__inbox_attach(tr__inbox_t *ib, struct ev_loop *loop, void (*cb)(struct ev_loop *, ev_async *, int),
                      void *data) {
    ib->loop = loop;
    ev_async_init(&ib->wake, cb);
    ib->wake.data = data;
    ev_async_start(loop, &ib->wake);
}

void tr__inbox_detach(tr__inbox_t *ib) {
    if (ib->loop) ev_async_stop(ib->loop, &ib->wake);
    ib->loop = NULL;
}

bool tr__inbox_post(tr__inbox_t *ib, tr__msg_t *msg) {
    tr__lock(&ib->mu, TR__RANK_INBOX);
    bool open = ib->state != TR__STOPPED;
    if (open) tr__inbox_enqueue_locked(ib, msg, false);
    tr__unlock(&ib->mu, TR__RANK_INBOX);
    return open;
}

void tr__inbox_kick(tr__inbox_t *ib) {
    tr__lock(&ib->mu, TR__RANK_INBOX);
    if (ib->wake_owed && ib->state != TR__STOPPED) ev_async_send(ib->loop, &ib->wake);
    ib->wake_owed = 0;
    tr__unlock(&ib->mu, TR__RANK_INBOX);
}

bool tr__inbox_running(tr__inbox_t *ib) {
    bool running = tr__inbox_lock_running(ib);
    tr__inbox_unlock(ib);
    return running;
}

tr__msg_t *tr__inbox_take(tr__inbox_t *ib, bool *stopping) {
    tr__lock(&ib->mu, TR__RANK_INBOX);
    tr__msg_t *batch = ib->head;
    ib->head = ib->tail = NULL;
    ib->wake_owed = 0; /* whatever was owed is taken now */
    *stopping = ib->state != TR__RUNNING;
    tr__unlock(&ib->mu, TR__RANK_INBOX);
    return batch;
}

void tr__inbox_run(tr__msg_t *m, void *ctx) {
    while (m) {
        tr__msg_t *next = m->next; /* m may be freed by its own run() */
        m->run(m, ctx);
        m = next;
    }
}

bool tr__inbox_stop(tr__inbox_t *ib) {
    tr__lock(&ib->mu, TR__RANK_INBOX);
    bool stoppable = ib->state != TR__STOPPED;
    if (ib->state == TR__RUNNING) {
        ib->state = TR__STOPPING; /* no new submissions from here on */
        ev_async_send(ib->loop, &ib->wake);
    }
    tr__unlock(&ib->mu, TR__RANK_INBOX);
    return stoppable;
}

tr__msg_t *tr__inbox_take_last(tr__inbox_t *ib, bool idle) {
    tr__lock(&ib->mu, TR__RANK_INBOX);
    tr__msg_t *batch = ib->head;
    ib->head = ib->tail = NULL;
    if (!batch && idle) ib->state = TR__STOPPED;
    tr__unlock(&ib->mu, TR__RANK_INBOX);
    return batch;
}
