/*
 * op.c - the op lifecycle: alloc, submit, start, progress, cancel, finish
 * (layer L4, see op.h for the threading rules).
 */
#include "op.h"

#include <stdlib.h>

#include "clock.h"
#include "list.h"

void tr__opset_init(tr__opset_t *set, struct ev_loop *loop, tr__inbox_t *inbox, tr__hub_t *hub,
                    tr__stats_t *stats) {
    set->loop = loop;
    set->inbox = inbox;
    set->hub = hub;
    set->stats = stats;
    pthread_mutex_init(&set->promise_mu, NULL);
}

void tr__opset_free(tr__opset_t *set) {
    tr__optable_free(&set->table);
    set->loop = NULL;
}

void tr__opset_destroy(tr__opset_t *set) { pthread_mutex_destroy(&set->promise_mu); }

static void op_release_final(tr__record_t *r) {
    tr__op_t *op = TR__CONTAINER_OF(r, tr__op_t, final);
    atomic_fetch_sub(&op->set->stats->live_ops, 1);
    free(op);
}

tr__op_t *tr__op_alloc(tr_runtime_t *rt, size_t size, const tr__op_vtable_t *vt) {
    tr__op_t *op = calloc(1, size);
    if (!op) return NULL;
    op->vt = vt;
    op->set = tr__opset_of(rt);
    op->state = TR__OP_QUEUED;
    op->final.release = op_release_final;
    op->final.c.final = 1;
    op->progress.c.final = 0;
    atomic_fetch_add(&op->set->stats->live_ops, 1);
    return op;
}

void tr__op_discard(tr__op_t *op) {
    if (op->vt->cleanup) op->vt->cleanup(op);
    atomic_fetch_sub(&op->set->stats->live_ops, 1);
    free(op);
}

/* The one cancel step: a running op is told to stop. */
static void op_cancel(tr__op_t *op) {
    op->state = TR__OP_CANCELLING;
    op->vt->cancel(op);
}

static void op_start_msg(tr__msg_t *msg, void *ctx) {
    tr__opset_t *set = ctx;
    tr__op_t *op = TR__CONTAINER_OF(msg, tr__op_t, msg);
    int rc = tr__optable_put(&set->table, op->token, op);
    TR__DLIST_PUSH_FRONT(set->all_head, set->all_tail, op, all_prev, all_next);
    op->state = TR__OP_RUNNING;
    if (rc != TR_OK) {
        /* The table could not take it (duplicate token or no memory): it
         * never ran, so report why instead of pretending it did. */
        tr__op_finish(op, rc, 0);
        return;
    }
    /* Nobody is left to run it for: the runtime is shutting down, or the
     * port is closed (its close message cancels only the ops started before
     * it ran; one starting later would run to its end for nobody). */
    if (set->halting || tr__port_closed(op->port)) {
        op_cancel(op);
        return;
    }
    op->vt->start(op);
}

int tr__op_submit(tr_runtime_t *rt, tr_port_t *port, uint64_t token, tr__op_t *op) {
    tr__opset_t *set = tr__opset_of(rt);
    if (token == 0 || port == NULL || port->inbox != set->inbox) {
        tr__op_discard(op);
        return TR_EINVAL;
    }
    op->token = token;
    op->port = port;
    op->final.c.token = token;
    op->progress.c.token = token;
    op->msg.run = op_start_msg;
    op->submitted = tr__mono_now();
    tr__port_ref(port);

    if (!tr__inbox_lock_running(set->inbox)) {
        tr__inbox_unlock(set->inbox);
        tr_port_release(port);
        tr__op_discard(op);
        return TR_ESHUTDOWN;
    }
    /* Counted before the loop thread can see (and finish) it. */
    atomic_fetch_add(&set->stats->submitted, 1);
    atomic_fetch_add(&set->stats->pending, 1);
    tr__inbox_enqueue_locked(set->inbox, &op->msg,
                             atomic_load_explicit(&port->defer_wake, memory_order_relaxed));
    tr__inbox_unlock(set->inbox);
    return TR_OK;
}

void tr__op_finish(tr__op_t *op, int status, int64_t value) {
    tr__opset_t *set = op->set;
    tr_port_t *port = op->port;
    if (tr__optable_get(&set->table, op->token) == op) tr__optable_del(&set->table, op->token);
    TR__DLIST_UNLINK(set->all_head, set->all_tail, op, all_prev, all_next);
    op->state = TR__OP_FINISHED;
    if (op->vt->cleanup) op->vt->cleanup(op);
    atomic_fetch_add(status == TR_CANCELLED ? &set->stats->cancelled : &set->stats->completed, 1);
    atomic_fetch_sub(&set->stats->pending, 1);
    op->final.c.status = status;
    op->final.c.value = value;
    tr__port_push(port, &op->final); /* from here on the port owns the op */
    tr_port_release(port);
}

double tr__op_waited(const tr__op_t *op) {
    double waited = op->set->batch_now - op->submitted;
    return waited > 0 ? waited : 0;
}

void tr__op_progress(tr__op_t *op, int64_t value) { tr__port_progress(op->port, &op->progress, value); }

void tr__ops_cancel(tr__opset_t *set, tr_port_t *port) {
    tr__op_t *op = set->all_head;
    while (op) {
        /* Cancelling op finishes at most op itself, so next stays valid. */
        tr__op_t *next = op->all_next;
        if ((port == NULL || op->port == port) && op->state == TR__OP_RUNNING) op_cancel(op);
        op = next;
    }
}

/* ---- cancel by token ------------------------------------------------------ */

typedef struct cancel_msg {
    tr__msg_t msg;
    uint64_t token;
} cancel_msg;

static void cancel_msg_run(tr__msg_t *msg, void *ctx) {
    tr__opset_t *set = ctx;
    cancel_msg *cm = TR__CONTAINER_OF(msg, cancel_msg, msg);
    tr__op_t *op = tr__optable_get(&set->table, cm->token);
    free(cm);
    if (op && op->state == TR__OP_RUNNING) op_cancel(op);
}

int tr_cancel(tr_runtime_t *rt, uint64_t token) {
    cancel_msg *cm = malloc(sizeof *cm);
    if (!cm) return TR_ENOMEM;
    cm->token = token;
    cm->msg.run = cancel_msg_run;
    if (!tr__inbox_post(tr__opset_of(rt)->inbox, &cm->msg)) {
        free(cm);
        return TR_ESHUTDOWN;
    }
    return TR_OK;
}

/* ---- ports: closing one cancels its ops ----------------------------------- */

static void port_close_run(tr__msg_t *msg, void *ctx) {
    tr_port_t *port = TR__CONTAINER_OF(msg, tr_port_t, close_msg);
    tr__opset_t *set = ctx;
    tr__ops_cancel(set, port);
    if (set->port_closing) set->port_closing(set, port);
    tr_port_release(port); /* the reference tr_port_close took */
}

int tr_port_new(tr_runtime_t *rt, uint64_t id, tr_port_t **out) {
    if (!rt || !out) return TR_EINVAL;
    tr__opset_t *set = tr__opset_of(rt);
    return tr__port_new(set->hub, set->inbox, set->stats, id, port_close_run, out);
}
