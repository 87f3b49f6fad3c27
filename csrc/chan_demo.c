/*
 * chan_demo.c - a producer task and a consumer task around a bounded channel.
 *
 * Both tasks are state machines on the loop thread.  A channel wake-up
 * happens inside the other task's channel call, so instead of re-entering the
 * woken task there, the wake records the outcome and feeds a libev event to
 * resume it from the loop (ev_feed_event); cancel clears that event with
 * ev_clear_pending, so no resumption can outlive the op.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct chan_op {
    tr__op_t base;
    tr__chan_t *ch;
    uint64_t total, next; /* producer: messages to send, index of the next */
    double interval;
    ev_timer pause;       /* producer's sleep after each send */
    tr__chan_waiter_t tx, rx;
    ev_prepare tx_resume, rx_resume; /* never started: only fed events */
    bool tx_blocked, rx_blocked;     /* waiting inside the channel */
    bool tx_woken, rx_woken;         /* woken, resumption fed but not run */
    tr_strvec_t *out;
    size_t out_cap;
} chan_op;

static void fail(chan_op *c, int status) { tr__op_finish(&c->base, status, 0, NULL); }

/* The producer's sleep after a send.  A one-shot timer that has fired keeps
 * its (elapsed) remaining time, so it must be set again before each start. */
static void start_pause(chan_op *c) {
    ev_timer_set(&c->pause, c->interval, 0.);
    ev_timer_start(c->base.rt->loop, &c->pause);
}

static void consumer_step(chan_op *c) {
    for (;;) {
        int rc = tr__chan_recv(c->ch, &c->rx);
        if (rc == TR__PENDING) {
            c->rx_blocked = true;
            return;
        }
        if (rc == TR_ECLOSED) { /* closed and drained: the result is ready */
            tr_strvec_t *out = c->out;
            c->out = NULL;
            tr__op_finish(&c->base, TR_OK, (int64_t)out->len, out);
            return;
        }
        if (tr__strvec_push(c->out, &c->out_cap, c->rx.item) != TR_OK) {
            free(c->rx.item);
            fail(c, TR_ENOMEM);
            return;
        }
    }
}

static void producer_step(chan_op *c) {
    if (c->next == c->total) { /* the sender is dropped: close */
        tr__chan_close(c->ch);
        return;
    }
    char *msg = malloc(32);
    if (!msg) {
        fail(c, TR_ENOMEM);
        return;
    }
    snprintf(msg, 32, "Message %llu", (unsigned long long)c->next);
    c->tx.item = msg;
    int rc = tr__chan_send(c->ch, &c->tx);
    if (rc == TR__PENDING) {
        c->tx_blocked = true;
        return;
    }
    /* TR_ECLOSED cannot happen: only this producer closes the channel. */
    c->next++;
    start_pause(c);
}

static void pause_done(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    producer_step(w->data);
}

/* Wake-ups: run inside a channel call on the loop thread. */
static void tx_wake(tr__chan_waiter_t *w) {
    chan_op *c = w->ctx;
    c->tx_blocked = false;
    c->tx_woken = true;
    ev_feed_event(c->base.rt->loop, &c->tx_resume, EV_CUSTOM);
}

static void rx_wake(tr__chan_waiter_t *w) {
    chan_op *c = w->ctx;
    c->rx_blocked = false;
    c->rx_woken = true;
    ev_feed_event(c->base.rt->loop, &c->rx_resume, EV_CUSTOM);
}

static void tx_resumed(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)loop;
    (void)revents;
    chan_op *c = w->data;
    c->tx_woken = false;
    /* Only the producer closes, so a woken send always went through. */
    c->next++;
    start_pause(c);
}

static void rx_resumed(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)loop;
    (void)revents;
    chan_op *c = w->data;
    c->rx_woken = false;
    if (c->rx.status == TR_OK) {
        if (tr__strvec_push(c->out, &c->out_cap, c->rx.item) != TR_OK) {
            free(c->rx.item);
            fail(c, TR_ENOMEM);
            return;
        }
    }
    consumer_step(c); /* after TR_ECLOSED this finishes the op */
}

static void chan_start(tr__op_t *op) {
    chan_op *c = (chan_op *)op;
    consumer_step(c);
    producer_step(c);
}

/* Stop both tasks, giving back every item that is not in the channel. */
static void chan_stop(chan_op *c) {
    struct ev_loop *loop = c->base.rt->loop;
    ev_timer_stop(loop, &c->pause);
    if (c->tx_blocked && tr__chan_cancel(c->ch, &c->tx)) free(c->tx.item);
    if (c->rx_blocked) tr__chan_cancel(c->ch, &c->rx);
    ev_clear_pending(loop, &c->tx_resume);
    if (c->rx_woken && c->rx.status == TR_OK) free(c->rx.item);
    ev_clear_pending(loop, &c->rx_resume);
    c->tx_blocked = c->rx_blocked = c->tx_woken = c->rx_woken = false;
}

static void chan_cancel(tr__op_t *op) {
    chan_op *c = (chan_op *)op;
    if (c->ch) chan_stop(c);
    tr__op_finish(op, TR_CANCELLED, 0, NULL);
}

static void chan_cleanup(tr__op_t *op) {
    chan_op *c = (chan_op *)op;
    /* A discarded op (its submission failed) never reached the loop, and we
     * may be on any thread: there is nothing to stop, and the loop is not
     * ours to touch. */
    if (c->ch && op->state != TR__OP_QUEUED) chan_stop(c);
    tr__chan_free(c->ch); /* frees messages still queued */
    c->ch = NULL;
    tr_payload_free(c->out);
    c->out = NULL;
}

static const tr__op_vtable_t chan_vt = {"channel_demo", chan_start, chan_cancel, chan_cleanup};

int tr_channel_demo(tr_runtime_t *rt, tr_port_t *port, uint64_t token, uint64_t messages,
                    size_t capacity, double interval) {
    if (!tr__valid_seconds(interval) || capacity == 0 || messages > (uint64_t)INT64_MAX) return TR_EINVAL;
    chan_op *c = (chan_op *)tr__op_alloc(rt, sizeof *c, &chan_vt);
    if (!c) return TR_ENOMEM;
    c->total = messages;
    c->interval = interval;
    c->out = tr__strvec_new();
    int rc = c->out ? tr__chan_new(capacity, free, &c->ch) : TR_ENOMEM;
    if (rc != TR_OK) {
        tr__op_discard(&c->base);
        return rc;
    }
    ev_timer_init(&c->pause, pause_done, interval, 0.);
    c->pause.data = c;
    ev_prepare_init(&c->tx_resume, tx_resumed);
    ev_prepare_init(&c->rx_resume, rx_resumed);
    c->tx_resume.data = c->rx_resume.data = c;
    c->tx.wake = tx_wake;
    c->rx.wake = rx_wake;
    c->tx.ctx = c->rx.ctx = c;
    return tr__op_submit(rt, port, token, &c->base);
}
