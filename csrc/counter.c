/*
 * counter.c - shared state: many tasks, one C integer behind one C mutex.
 *
 * Each task is its own libev timer; when it fires, its increment is handed to
 * the worker pool (batched per loop iteration), and a worker locks the shared
 * mutex and adds one.  The tasks live in one array owned by the op, so a
 * million of them cost one allocation.
 *
 * Layer L5.  tr_counter_demo: any thread; timers, start, cancel and the done
 * message: the loop thread; counter_work: a worker.
 */
#include <stdlib.h>

#include "clock.h"
#include "inbox.h"
#include "list.h"
#include "lock.h"
#include "op.h"
#include "pool.h"

typedef struct counter_op counter_op;

typedef struct counter_task {
    ev_timer timer; /* data -> the op */
    tr__work_t work;
} counter_task;

struct counter_op {
    tr__op_t base;
    uint64_t tasks;
    double delay;
    counter_task *kids;
    pthread_mutex_t mu; /* TR__RANK_OPDATA; the shared state: */
    uint64_t value;     /* guarded by mu */
    /* Tasks not done yet (armed, batched, or with a worker).  Whoever brings
     * it to zero finishes the op: a worker through done_msg, or cancel. */
    atomic_uint_fast64_t outstanding;
    atomic_bool cancelled;
    tr__msg_t done_msg;
};

static void counter_done(tr__msg_t *msg, void *ctx) {
    (void)ctx;
    counter_op *c = TR__CONTAINER_OF(msg, counter_op, done_msg);
    tr__lock(&c->mu, TR__RANK_OPDATA);
    uint64_t value = c->value;
    tr__unlock(&c->mu, TR__RANK_OPDATA);
    if (atomic_load(&c->cancelled)) tr__op_finish(&c->base, TR_CANCELLED, (int64_t)value);
    else tr__op_finish(&c->base, TR_OK, (int64_t)value);
}

static void counter_work(tr__work_t *w) { /* worker */
    counter_task *task = TR__CONTAINER_OF(w, counter_task, work);
    counter_op *c = task->timer.data;
    if (!atomic_load_explicit(&c->cancelled, memory_order_relaxed)) {
        tr__lock(&c->mu, TR__RANK_OPDATA);
        c->value++;
        tr__unlock(&c->mu, TR__RANK_OPDATA);
    }
    if (atomic_fetch_sub(&c->outstanding, 1) == 1) tr__inbox_post(c->base.set->inbox, &c->done_msg);
}

static void counter_fired(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    counter_task *task = TR__CONTAINER_OF(w, counter_task, timer);
    counter_op *c = w->data;
    tr__op_to_pool(&c->base, &task->work);
}

static void counter_start(tr__op_t *op) {
    counter_op *c = (counter_op *)op;
    if (c->tasks == 0) {
        tr__op_finish(op, TR_OK, 0);
        return;
    }
    c->kids = malloc(c->tasks * sizeof *c->kids);
    if (!c->kids) {
        tr__op_finish(op, TR_ENOMEM, 0);
        return;
    }
    atomic_store(&c->outstanding, c->tasks);
    for (uint64_t i = 0; i < c->tasks; i++) {
        counter_task *task = &c->kids[i];
        ev_timer_init(&task->timer, counter_fired, c->delay, 0.);
        task->timer.data = c;
        task->work.run = counter_work;
        task->work.solo = false; /* kids is malloc'd: every field set here */
        ev_timer_start(tr__op_loop(op), &task->timer);
    }
}

static void counter_cancel(tr__op_t *op) {
    counter_op *c = (counter_op *)op;
    atomic_store(&c->cancelled, true);
    if (!c->kids) { /* never started */
        tr__op_finish(op, TR_CANCELLED, 0);
        return;
    }
    uint64_t stopped = 0;
    for (uint64_t i = 0; i < c->tasks; i++) {
        if (ev_is_active(&c->kids[i].timer)) {
            ev_timer_stop(tr__op_loop(op), &c->kids[i].timer);
            stopped++;
        }
    }
    /* If the armed timers were the last tasks, no worker will report: finish
     * here.  Otherwise the last worker's done_msg does. */
    if (stopped && atomic_fetch_sub(&c->outstanding, stopped) == stopped) {
        tr__lock(&c->mu, TR__RANK_OPDATA);
        uint64_t value = c->value;
        tr__unlock(&c->mu, TR__RANK_OPDATA);
        tr__op_finish(op, TR_CANCELLED, (int64_t)value);
    }
}

static void counter_cleanup(tr__op_t *op) {
    counter_op *c = (counter_op *)op;
    free(c->kids);
    c->kids = NULL;
    pthread_mutex_destroy(&c->mu);
}

static const tr__op_vtable_t counter_vt = {"counter_demo", counter_start, counter_cancel, counter_cleanup};

int tr_counter_demo(tr_runtime_t *rt, tr_port_t *port, uint64_t token, uint64_t tasks, double delay) {
    if (!tr__valid_seconds(delay)) return TR_EINVAL;
    if (tasks > SIZE_MAX / sizeof(counter_task) || tasks > (uint64_t)INT64_MAX) return TR_ENOMEM;
    counter_op *c = (counter_op *)tr__op_alloc(rt, sizeof *c, &counter_vt);
    if (!c) return TR_ENOMEM;
    c->tasks = tasks;
    c->delay = delay;
    pthread_mutex_init(&c->mu, NULL);
    c->done_msg.run = counter_done;
    return tr__op_submit(rt, port, token, &c->base);
}
