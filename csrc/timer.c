/*
 * timer.c - ops made of libev timers: sleep, ticker, timeout.
 *
 * Layer L5.  The public constructors (tr_sleep, tr_ticker,
 * tr_timeout_sleep) run on any thread; everything else runs on the loop
 * thread.  cancel stops the watchers and finishes at once, so nothing here
 * outlives its op.  Ticker handles (tr_task_*) are read by any thread.
 */
#include <stdlib.h>

#include "clock.h"
#include "op.h"
#include "stats.h"

/* ---- sleep ------------------------------------------------------------------ */

typedef struct sleep_op {
    tr__op_t base;
    ev_timer timer;
    double delay;
    double due; /* ev_now() when started + delay: when libev counts it due */
} sleep_op;

static void sleep_fired(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    sleep_op *s = w->data;
    /* ev_time(), not the cached ev_now(): a timer run late in a long batch
     * of callbacks is late by that much. */
    tr__stats_timer_fired(s->base.set->stats, ev_time() - s->due);
    tr__op_finish(&s->base, TR_OK, 0);
}

/* Arm w to fire `delay` seconds after its op was submitted. */
static double arm_from_submission(tr__op_t *op, ev_timer *w, double delay) {
    double left = delay - tr__op_waited(op);
    if (left < 0) left = 0;
    ev_timer_set(w, left, 0.);
    ev_timer_start(tr__op_loop(op), w);
    return left;
}

static void sleep_start(tr__op_t *op) {
    sleep_op *s = (sleep_op *)op;
    s->due = ev_now(tr__op_loop(op)) + arm_from_submission(op, &s->timer, s->delay);
}

static void sleep_cancel(tr__op_t *op) {
    sleep_op *s = (sleep_op *)op;
    ev_timer_stop(tr__op_loop(op), &s->timer);
    tr__op_finish(op, TR_CANCELLED, 0);
}

static const tr__op_vtable_t sleep_vt = {"sleep", sleep_start, sleep_cancel, NULL};

int tr_sleep(tr_runtime_t *rt, tr_port_t *port, uint64_t token, double seconds) {
    if (!tr__valid_seconds(seconds)) return TR_EINVAL;
    sleep_op *s = (sleep_op *)tr__op_alloc(rt, sizeof *s, &sleep_vt);
    if (!s) return TR_ENOMEM;
    ev_timer_init(&s->timer, sleep_fired, seconds, 0.);
    s->timer.data = s;
    s->delay = seconds;
    return tr__op_submit(rt, port, token, &s->base);
}

/* ---- ticker ------------------------------------------------------------------ */

/* What a ticker shares with whoever holds its handle: written by the loop
 * thread, read lock-free by anyone, freed by whichever lets go last. */
struct tr_task {
    atomic_int refs;
    atomic_uint_fast64_t progress;
    atomic_int status;
};

static void task_unref(tr_task_t *task) {
    if (task && atomic_fetch_sub(&task->refs, 1) == 1) free(task);
}

uint64_t tr_task_progress(const tr_task_t *task) { return atomic_load(&task->progress); }
int tr_task_status(const tr_task_t *task) { return atomic_load(&task->status); }
void tr_task_release(tr_task_t *task) { task_unref(task); }

typedef struct ticker_op {
    tr__op_t base;
    ev_timer timer;
    uint64_t count, ticks;
    double interval;
    tr_task_t *task; /* NULL, or a shared handle (holds a reference) */
} ticker_op;

static void ticker_finish(ticker_op *t, int status) {
    /* The handle says "finished" before the final record is queued: whoever
     * drains that record (the asyncio side, ending an await or a ticks()
     * loop) must find done()/cancelled() already true.  One who sees the
     * status first just awaits the record, which is on its way. */
    tr_task_t *task = t->task;
    t->task = NULL;
    if (task) {
        atomic_store(&task->progress, t->ticks);
        atomic_store(&task->status, status);
    }
    tr__op_finish(&t->base, status, (int64_t)t->ticks);
    task_unref(task);
}

static void ticker_fired(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    ticker_op *t = w->data;
    t->ticks++;
    if (t->ticks >= t->count) {
        ev_timer_stop(loop, w);
        ticker_finish(t, TR_OK);
        return;
    }
    if (t->task) atomic_store(&t->task->progress, t->ticks);
    tr__op_progress(&t->base, (int64_t)t->ticks);
    if (t->interval == 0.) { /* repeat 0 means "one-shot" to libev: re-arm by hand */
        ev_timer_set(w, 0., 0.);
        ev_timer_start(loop, w);
    }
}

static void ticker_start(tr__op_t *op) {
    ticker_op *t = (ticker_op *)op;
    if (t->count == 0) {
        ticker_finish(t, TR_OK);
        return;
    }
    ev_timer_start(tr__op_loop(op), &t->timer);
}

static void ticker_cancel(tr__op_t *op) {
    ticker_op *t = (ticker_op *)op;
    ev_timer_stop(tr__op_loop(op), &t->timer);
    ticker_finish(t, TR_CANCELLED);
}

/* Only for an op that never reached the loop: its handle must not be left
 * saying "running" forever. */
static void ticker_cleanup(tr__op_t *op) {
    ticker_op *t = (ticker_op *)op;
    if (t->task) {
        atomic_store(&t->task->status, TR_CANCELLED);
        task_unref(t->task);
        t->task = NULL;
    }
}

static const tr__op_vtable_t ticker_vt = {"ticker", ticker_start, ticker_cancel, ticker_cleanup};

int tr_ticker(tr_runtime_t *rt, tr_port_t *port, uint64_t token, uint64_t count, double interval,
              tr_task_t **task) {
    if (!tr__valid_seconds(interval) || count > (uint64_t)INT64_MAX) return TR_EINVAL;
    ticker_op *t = (ticker_op *)tr__op_alloc(rt, sizeof *t, &ticker_vt);
    if (!t) return TR_ENOMEM;
    t->count = count;
    t->interval = interval;
    if (task) {
        t->task = calloc(1, sizeof *t->task);
        if (!t->task) {
            tr__op_discard(&t->base);
            return TR_ENOMEM;
        }
        atomic_init(&t->task->refs, 2); /* the op's and the caller's */
        atomic_init(&t->task->progress, 0);
        atomic_init(&t->task->status, TR_PENDING);
    }
    /* A repeating timer is re-armed from its previous deadline, so the ticks
     * do not drift by the time each callback takes. */
    ev_timer_init(&t->timer, ticker_fired, interval, interval);
    t->timer.data = t;
    tr_task_t *handle = t->task;
    int rc = tr__op_submit(rt, port, token, &t->base);
    if (task) {
        if (rc == TR_OK) *task = handle;
        else task_unref(handle); /* the discarded op dropped its own reference */
    }
    return rc;
}

/* ---- timeout: an operation timer raced against a deadline ------------------- */

typedef struct timeout_op {
    tr__op_t base;
    ev_timer work, limit;
    double work_delay, limit_delay;
    bool work_wins_ties;
} timeout_op;

static void timeout_stop_both(timeout_op *t) {
    ev_timer_stop(tr__op_loop(&t->base), &t->work);
    ev_timer_stop(tr__op_loop(&t->base), &t->limit);
}

static void timeout_work_fired(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    timeout_op *t = w->data;
    /* Both due in this iteration (an op that started late has both clamped
     * to 0): the earlier deadline wins, not whichever libev runs first. */
    bool limit_first = ev_is_pending(&t->limit) && !t->work_wins_ties;
    timeout_stop_both(t);
    tr__op_finish(&t->base, limit_first ? TR_TIMEDOUT : TR_OK, 0);
}

static void timeout_limit_fired(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    timeout_op *t = w->data;
    timeout_stop_both(t);
    /* Both timers were armed at the same ev_now(); when the operation's is
     * not later, it is due in this same iteration and must win (libev runs
     * same-iteration callbacks in no promised order). */
    tr__op_finish(&t->base, t->work_wins_ties ? TR_OK : TR_TIMEDOUT, 0);
}

static void timeout_start(tr__op_t *op) {
    timeout_op *t = (timeout_op *)op;
    arm_from_submission(op, &t->work, t->work_delay);
    arm_from_submission(op, &t->limit, t->limit_delay);
}

static void timeout_cancel(tr__op_t *op) {
    timeout_stop_both((timeout_op *)op);
    tr__op_finish(op, TR_CANCELLED, 0);
}

static const tr__op_vtable_t timeout_vt = {"timeout", timeout_start, timeout_cancel, NULL};

int tr_timeout_sleep(tr_runtime_t *rt, tr_port_t *port, uint64_t token, double op_seconds,
                     double timeout_seconds) {
    if (!tr__valid_seconds(op_seconds) || !tr__valid_seconds(timeout_seconds)) return TR_EINVAL;
    timeout_op *t = (timeout_op *)tr__op_alloc(rt, sizeof *t, &timeout_vt);
    if (!t) return TR_ENOMEM;
    ev_timer_init(&t->work, timeout_work_fired, op_seconds, 0.);
    ev_timer_init(&t->limit, timeout_limit_fired, timeout_seconds, 0.);
    t->work.data = t->limit.data = t;
    t->work_delay = op_seconds;
    t->limit_delay = timeout_seconds;
    t->work_wins_ties = op_seconds <= timeout_seconds;
    return tr__op_submit(rt, port, token, &t->base);
}
