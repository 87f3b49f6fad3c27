/*
 * channel.c - a bounded multi-producer multi-consumer channel of void *.
 *
 * One mutex guards a ring buffer and two FIFO lists of waiters.  A waiter is
 * woken exactly once, after the lock is released, on the thread whose call
 * completed it; a waiter that was cancelled first is never woken.  A send that
 * meets a waiting receiver hands its item over directly, so FIFO holds across
 * buffer and waiters.
 */
#include "internal.h"

#include <stdlib.h>

struct tr__chan {
    pthread_mutex_t mu;
    void **buf;
    size_t cap, len, head;
    bool closed;
    tr__chan_waiter_t *senders, *receivers; /* circular lists, oldest first */
    void (*item_free)(void *);
};

static void wl_push(tr__chan_waiter_t **list, tr__chan_waiter_t *w) {
    w->queued = true;
    if (!*list) {
        w->prev = w->next = w;
        *list = w;
        return;
    }
    tr__chan_waiter_t *first = *list, *last = first->prev;
    w->prev = last;
    w->next = first;
    last->next = w;
    first->prev = w;
}

static void wl_remove(tr__chan_waiter_t **list, tr__chan_waiter_t *w) {
    if (w->next == w) *list = NULL;
    else {
        w->prev->next = w->next;
        w->next->prev = w->prev;
        if (*list == w) *list = w->next;
    }
    w->prev = w->next = NULL;
    w->queued = false;
}

static tr__chan_waiter_t *wl_pop(tr__chan_waiter_t **list) {
    tr__chan_waiter_t *w = *list;
    if (w) wl_remove(list, w);
    return w;
}

int tr__chan_new(size_t capacity, void (*item_free)(void *), tr__chan_t **out) {
    if (capacity == 0 || capacity > SIZE_MAX / sizeof(void *)) return TR_EINVAL;
    tr__chan_t *ch = calloc(1, sizeof *ch);
    if (!ch) return TR_ENOMEM;
    ch->buf = malloc(capacity * sizeof *ch->buf);
    if (!ch->buf) {
        free(ch);
        return TR_ENOMEM;
    }
    ch->cap = capacity;
    ch->item_free = item_free;
    pthread_mutex_init(&ch->mu, NULL);
    *out = ch;
    return TR_OK;
}

void tr__chan_free(tr__chan_t *ch) {
    if (!ch) return;
    for (size_t i = 0; i < ch->len; i++)
        if (ch->item_free) ch->item_free(ch->buf[(ch->head + i) % ch->cap]);
    pthread_mutex_destroy(&ch->mu);
    free(ch->buf);
    free(ch);
}

static void buf_push(tr__chan_t *ch, void *item) {
    ch->buf[(ch->head + ch->len) % ch->cap] = item;
    ch->len++;
}

static void *buf_pop(tr__chan_t *ch) {
    void *item = ch->buf[ch->head];
    ch->head = (ch->head + 1) % ch->cap;
    ch->len--;
    return item;
}

/* Shared by send and try_send: complete a send of item without waiting, if
 * possible.  Returns the receiver to wake through *wake. */
static int send_now_locked(tr__chan_t *ch, void *item, tr__chan_waiter_t **wake) {
    *wake = NULL;
    if (ch->closed) return TR_ECLOSED;
    tr__chan_waiter_t *r = wl_pop(&ch->receivers);
    if (r) { /* a receiver waits only when the buffer is empty: hand over */
        r->item = item;
        r->status = TR_OK;
        *wake = r;
        return TR_OK;
    }
    if (ch->len < ch->cap) {
        buf_push(ch, item);
        return TR_OK;
    }
    return TR__PENDING;
}

/* Shared by recv and try_recv: the oldest item, refilled from the oldest
 * waiting sender. */
static int recv_now_locked(tr__chan_t *ch, void **item, tr__chan_waiter_t **wake) {
    *wake = NULL;
    if (ch->len == 0) return ch->closed ? TR_ECLOSED : TR__PENDING;
    *item = buf_pop(ch);
    tr__chan_waiter_t *s = wl_pop(&ch->senders);
    if (s) {
        buf_push(ch, s->item);
        s->status = TR_OK;
        *wake = s;
    }
    return TR_OK;
}

int tr__chan_send(tr__chan_t *ch, tr__chan_waiter_t *w) {
    tr__chan_waiter_t *wake;
    pthread_mutex_lock(&ch->mu);
    int rc = send_now_locked(ch, w->item, &wake);
    w->sender = true;
    if (rc == TR__PENDING) wl_push(&ch->senders, w);
    pthread_mutex_unlock(&ch->mu);
    if (wake) wake->wake(wake);
    return rc;
}

int tr__chan_try_send(tr__chan_t *ch, void *item) {
    tr__chan_waiter_t *wake;
    pthread_mutex_lock(&ch->mu);
    int rc = send_now_locked(ch, item, &wake);
    pthread_mutex_unlock(&ch->mu);
    if (wake) wake->wake(wake);
    return rc;
}

int tr__chan_recv(tr__chan_t *ch, tr__chan_waiter_t *w) {
    tr__chan_waiter_t *wake;
    pthread_mutex_lock(&ch->mu);
    int rc = recv_now_locked(ch, &w->item, &wake);
    w->sender = false;
    if (rc == TR__PENDING) wl_push(&ch->receivers, w);
    pthread_mutex_unlock(&ch->mu);
    if (wake) wake->wake(wake);
    return rc;
}

int tr__chan_try_recv(tr__chan_t *ch, void **item) {
    tr__chan_waiter_t *wake;
    pthread_mutex_lock(&ch->mu);
    int rc = recv_now_locked(ch, item, &wake);
    pthread_mutex_unlock(&ch->mu);
    if (wake) wake->wake(wake);
    return rc;
}

bool tr__chan_cancel(tr__chan_t *ch, tr__chan_waiter_t *w) {
    pthread_mutex_lock(&ch->mu);
    bool removed = w->queued;
    if (removed) wl_remove(w->sender ? &ch->senders : &ch->receivers, w);
    pthread_mutex_unlock(&ch->mu);
    return removed;
}

void tr__chan_close(tr__chan_t *ch) {
    pthread_mutex_lock(&ch->mu);
    if (ch->closed) {
        pthread_mutex_unlock(&ch->mu);
        return;
    }
    ch->closed = true;
    tr__chan_waiter_t *receivers = ch->receivers, *senders = ch->senders;
    ch->receivers = ch->senders = NULL;
    /* Mark them unqueued under the lock, so a racing cancel sees "already
     * completed" and waits for the wake instead. */
    tr__chan_waiter_t *lists[2] = {receivers, senders};
    for (int l = 0; l < 2; l++) {
        tr__chan_waiter_t *w = lists[l];
        if (!w) continue;
        w->prev->next = NULL; /* open the circle */
        for (; w; w = w->next) {
            w->queued = false;
            w->status = TR_ECLOSED;
        }
    }
    pthread_mutex_unlock(&ch->mu);
    for (int l = 0; l < 2; l++) {
        tr__chan_waiter_t *w = lists[l];
        while (w) {
            tr__chan_waiter_t *next = w->next; /* w may be reused once woken */
            w->prev = w->next = NULL;
            w->wake(w);
            w = next;
        }
    }
}

size_t tr__chan_len(tr__chan_t *ch) {
    pthread_mutex_lock(&ch->mu);
    size_t n = ch->len;
    pthread_mutex_unlock(&ch->mu);
    return n;
}
