/*
 * inbox.h - the message queue into the loop thread, its ev_async wake-up and
 * the runtime's accepting state (layer L2).
 *
 * Other threads append messages (one lock, one ev_async_send on the
 * empty -> non-empty edge, or later for deferred submissions); the loop
 * thread takes the whole queue at once and runs it.  The state says what is
 * accepted: RUNNING (everything), STOPPING (messages, not new ops: shutdown
 * has begun), STOPPED (nothing: the loop is gone).
 *
 * Threads: tr__inbox_post/submit/kick/running: any thread.
 * tr__inbox_take / tr__inbox_run: the loop thread (or the shutdown caller
 * once it has joined the loop thread).  init/attach/stop/take_last/detach/
 * destroy: the runtime's owner.  The inbox lives inside the runtime, whose
 * memory outlives every port (dispatch.h): a port may post after shutdown
 * and is told no.
 */
#ifndef TR_INBOX_H
#define TR_INBOX_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>

#include "list.h"
#include "lock.h"

/* Every this many deferred ops, the submitter wakes the loop thread anyway:
 * a long burst in one asyncio turn (100,000 sleeps take ~0.1 s to submit)
 * must not leave its first ops unstarted until the turn ends. */
#define TR__DEFER_MAX 128

typedef struct tr__msg tr__msg_t;
struct tr__msg {
    tr__msg_t *next;
    /* Runs on the loop thread; ctx is what the runner passes to
     * tr__inbox_run (the runtime's op set).  May free msg. */
    void (*run)(tr__msg_t *msg, void *ctx);
};

enum { TR__RUNNING, TR__STOPPING, TR__STOPPED };

typedef struct tr__inbox {
    pthread_mutex_t mu;    /* TR__RANK_INBOX; guards everything below */
    tr__msg_t *head, *tail;
    int state;
    unsigned wake_owed;    /* deferred ops in the queue that no wake was sent for */
    struct ev_loop *loop;  /* NULL until attached and once detached */
    ev_async wake;         /* "the inbox has messages" */
} tr__inbox_t;

void tr__inbox_init(tr__inbox_t *ib);
void tr__inbox_destroy(tr__inbox_t *ib);
/* Start the wake-up watcher on loop: cb runs on the loop thread with
 * w->data == data.  Before the loop thread starts. */
void tr__inbox_attach(tr__inbox_t *ib, struct ev_loop *loop, void (*cb)(struct ev_loop *, ev_async *, int),
                      void *data);
/* Stop the watcher (the state is STOPPED, or the loop thread never ran). */
void tr__inbox_detach(tr__inbox_t *ib);

/* Queue msg.  Accepted while running or stopping (the shutdown caller runs
 * what the loop thread did not); false, without queueing, once stopped. */
bool tr__inbox_post(tr__inbox_t *ib, tr__msg_t *msg);
/* Submission in three steps, so a caller can count the op under the same
 * lock that queues it: lock (returns whether the state is RUNNING; the lock
 * is held either way), enqueue, unlock.  With `defer` the wake-up waits for
 * tr__inbox_kick() or for every TR__DEFER_MAX-th deferred message.  The lock
 * and unlock are macros, so the lock checker reports the caller's file:line. */
#define tr__inbox_lock_running(ib) (tr__lock(&(ib)->mu, TR__RANK_INBOX), (ib)->state == TR__RUNNING)
#define tr__inbox_unlock(ib) tr__unlock(&(ib)->mu, TR__RANK_INBOX)

/* Append msg and wake the loop thread (mu held; the loop is alive: it is
 * destroyed only after the state has become STOPPED under this same lock).
 * With `defer` (an op of a port that defers wake-ups) the wake waits for
 * tr__inbox_kick(), or for every TR__DEFER_MAX-th deferred op: a burst of ops
 * costs one wake-up, not one per op the loop thread happened to catch.  Queue
 * not empty and nothing owed: a wake is on its way already and takes msg
 * along.  Inline: it is on the submit hot path. */
static inline void tr__inbox_enqueue_locked(tr__inbox_t *ib, tr__msg_t *msg, bool defer) {
    bool unannounced = ib->head == NULL || ib->wake_owed;
    TR__SLIST_APPEND(ib->head, ib->tail, msg, next);
    if (defer ? unannounced && ++ib->wake_owed >= TR__DEFER_MAX : unannounced) {
        ib->wake_owed = 0;
        ev_async_send(ib->loop, &ib->wake);
    }
}

/* Send the wake owed to deferred messages, if any. */
void tr__inbox_kick(tr__inbox_t *ib);
/* Whether new work is accepted (state RUNNING). */
bool tr__inbox_running(tr__inbox_t *ib);

/* Loop thread: take every queued message; *stopping: shutdown has begun. */
tr__msg_t *tr__inbox_take(tr__inbox_t *ib, bool *stopping);
/* Run a taken batch in order, passing ctx to each message. */
void tr__inbox_run(tr__msg_t *batch, void *ctx);

/* Shutdown: stop accepting new ops and wake the loop thread so it drains
 * and returns.  false if the inbox is STOPPED already. */
bool tr__inbox_stop(tr__inbox_t *ib);
/* Shutdown, loop thread joined: take every queued message; when there was
 * none and `idle` (the caller has nothing else left to run), turn STOPPED in
 * the same lock, so nobody posts after it. */
tr__msg_t *tr__inbox_take_last(tr__inbox_t *ib, bool idle);

#endif /* TR_INBOX_H */
