/*
 * channel.c - a bounded multi-producer multi-consumer FIFO of 64-bit items.
 *
 * An item is an opaque key (below 2**63: the channel never looks at it) or
 * a value (item.h: an int64 or a byte string C and Python both read), which
 * the channel owns while it holds it: it frees the values left in it when
 * its last reference goes.  Only the value calls (tr_channel_send_value,
 * tr_channel_recv_value) tell the two apart; every other call moves items
 * as they are.
 *
 * One mutex guards a ring buffer and two wait queues (receivers waiting for
 * an item, senders waiting for room).  Waiters are woken to *retry*, never
 * handed an item: an item leaves the ring only inside a call that returns it
 * to its caller, so a receiver that is cancelled after being woken cannot
 * swallow one; it passes its wake on instead (tr_channel_notify).  Each item
 * put in wakes one receiver and each slot freed wakes one sender, so a burst
 * of sends does not stampede every waiting consumer.
 *
 * The ring normally holds at most cap items, but tr_channel_unget may push
 * it past cap for a while: every check is "len >= cap means full", and a
 * take wakes senders only for the slots actually free.
 *
 * Receipts (tr_channel_sent/_taken) are two thread-locals per thread, set
 * under the channel lock by the put and take paths: the last successful put
 * (channel, item) and the last take (channel, item).  recv_many sets the
 * take receipt to the last item of its batch (that is the last item the
 * thread took; its callers read items[] and *n anyway).  A receipt names
 * its channel by address only, so a channel freed and another allocated at
 * the same address may match an old receipt; callers read receipts right
 * after the call, while they hold their reference.
 *
 * Layer L5.  Every function: any thread (the *_blocking ones block it).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "clock.h"
#include "item.h"
#include "waiter.h"

#define TR__CHANNEL_MAX_CAPACITY ((size_t)1 << 40)
#define TR__RING_MIN 16

struct tr_channel {
    tr__sync_t base; /* first member: a tr__sync_t * is a tr_channel_t * */
    uint64_t *ring;
    size_t slots;    /* allocated ring slots (a power of two); grows on demand */
    size_t cap, head, len;
    bool closed;
    tr__waitq_t recvq, sendq;
};

static void channel_destroy(tr__sync_t *s) {
    tr_channel_t *ch = (tr_channel_t *)s;
    /* Values own their boxes; opaque keys are their owner's business. */
    for (size_t i = 0; i < ch->len; i++) tr_item_free(ch->ring[(ch->head + i) & (ch->slots - 1)]);
    free(ch->ring);
    free(ch);
}

/* Lock held.  Whether a waiter of that direction could proceed now. */
static bool ready(const tr_channel_t *ch, int direction) {
    if (ch->closed) return true;
    return direction == TR_RECV ? ch->len > 0 : ch->len < ch->cap;
}

static void channel_lost_wake(tr__sync_t *s, int direction) {
    tr_channel_notify((tr_channel_t *)s, direction, NULL);
}

/* This thread's receipts. */
typedef struct receipt {
    const tr_channel_t *ch; /* NULL: none */
    uint64_t item;
    uint64_t tag;           /* a take's: tr_channel_take_tagged's tag, else 0 */
} receipt;
static _Thread_local receipt last_put, last_take;

int tr_channel_new(size_t capacity, tr_channel_t **out) {
    if (!out || capacity == 0 || capacity > TR__CHANNEL_MAX_CAPACITY) return TR_EINVAL;
    tr_channel_t *ch = calloc(1, sizeof *ch);
    if (!ch) return TR_ENOMEM;
    /* The ring grows on demand up to capacity: a Channel(10**9) that never
     * holds more than ten items costs sixteen slots, not eight gigabytes. */
    ch->cap = capacity;
    tr__sync_init(&ch->base, channel_lost_wake, channel_destroy);
    *out = ch;
    return TR_OK;
}

void tr_channel_release(tr_channel_t *ch) {
    if (ch) tr__sync_unref(&ch->base);
}

void tr_channel_ref(tr_channel_t *ch) {
    if (ch) tr__sync_ref(&ch->base);
}

/* ---- the ring (lock held) ------------------------------------------------- */

/* Make room for `more` items beyond len.  TR_ENOMEM: nothing changed. */
static int ring_reserve(tr_channel_t *ch, size_t more) {
    if (more <= ch->slots - ch->len) return TR_OK;
    if (more > (SIZE_MAX / sizeof(uint64_t)) / 2 - ch->len) return TR_ENOMEM;
    size_t need = ch->len + more;
    size_t n = ch->slots ? ch->slots * 2 : TR__RING_MIN;
    while (n < need) n *= 2;
    uint64_t *ring = malloc(n * sizeof *ring);
    if (!ring) return TR_ENOMEM;
    for (size_t i = 0; i < ch->len; i++) ring[i] = ch->ring[(ch->head + i) & (ch->slots - 1)];
    free(ch->ring);
    ch->ring = ring;
    ch->slots = n;
    ch->head = 0;
    return TR_OK;
}

static int ring_put(tr_channel_t *ch, uint64_t item) {
    int rc = ring_reserve(ch, 1);
    if (rc != TR_OK) return rc;
    ch->ring[(ch->head + ch->len) & (ch->slots - 1)] = item;
    ch->len++;
    return TR_OK;
}

/* Room reserved: item becomes the head. */
static void ring_push_front(tr_channel_t *ch, uint64_t item) {
    ch->head = (ch->head - 1) & (ch->slots - 1);
    ch->ring[ch->head] = item;
    ch->len++;
}

static uint64_t ring_take(tr_channel_t *ch) {
    uint64_t item = ch->ring[ch->head];
    ch->head = (ch->head + 1) & (ch->slots - 1);
    ch->len--;
    return item;
}

/* Lock held.  Put item in if there is room; wake one receiver for it. */
static int put_locked(tr_channel_t *ch, uint64_t item, tr__wakelist_t *wl) {
    if (ch->closed) return TR_ECLOSED;
    if (ch->len >= ch->cap) return TR_EFULL;
    int rc = ring_put(ch, item);
    if (rc != TR_OK) return rc;
    last_put = (receipt){ch, item, 0};
    tr__item_sent(item);
    tr__waitq_wake_one(&ch->recvq, wl);
    return TR_OK;
}

/* Lock held.  Take up to max items; wake one sender per slot freed (none
 * while unget keeps the ring at or over capacity). */
static int take_locked(tr_channel_t *ch, uint64_t *items, size_t max, size_t *n,
                       tr__wakelist_t *wl) {
    size_t k = 0;
    while (k < max && ch->len > 0) items[k++] = ring_take(ch);
    *n = k;
    if (k == 0) return ch->closed ? TR_ECLOSED : TR_EEMPTY;
    last_take = (receipt){ch, items[k - 1], 0};
    size_t room = ch->len < ch->cap ? ch->cap - ch->len : 0;
    for (size_t i = 0; i < k && i < room; i++)
        if (!tr__waitq_wake_one(&ch->sendq, wl)) break;
    return TR_OK;
}

/* ---- public ------------------------------------------------------------------ */

int tr_channel_try_send(tr_channel_t *ch, uint64_t item, tr_wakes_t *wakes) {
    tr__wakes_reset(wakes);
    tr__wakelist_t wl = {0};
    tr__sync_lock(&ch->base);
    int rc = put_locked(ch, item, &wl);
    tr__sync_unlock(&ch->base);
    tr__wake_flush(&wl, wakes);
    return rc;
}

int tr_channel_recv_many(tr_channel_t *ch, uint64_t *items, size_t max, size_t *n,
                         tr_wakes_t *wakes) {
    tr__wakes_reset(wakes);
    if (!items || !n || max == 0) return TR_EINVAL;
    tr__wakelist_t wl = {0};
    tr__sync_lock(&ch->base);
    int rc = take_locked(ch, items, max, n, &wl);
    tr__sync_unlock(&ch->base);
    tr__wake_flush(&wl, wakes);
    return rc;
}

int tr_channel_try_recv(tr_channel_t *ch, uint64_t *item, tr_wakes_t *wakes) {
    size_t n;
    return tr_channel_recv_many(ch, item, 1, &n, wakes);
}

uint64_t tr_channel_take(tr_channel_t *ch, uint64_t none, tr_wakes_t *wakes) {
    uint64_t item;
    return tr_channel_try_recv(ch, &item, wakes) == TR_OK ? item : none;
}

uint64_t tr_channel_take_tagged(tr_channel_t *ch, uint64_t empty, uint64_t closed, uint64_t tag,
                                tr_wakes_t *wakes) {
    uint64_t item;
    int rc = tr_channel_try_recv(ch, &item, wakes);
    if (rc == TR_OK) {
        last_take.tag = tag; /* this thread's receipt, set by the take just made */
        return item;
    }
    return rc == TR_ECLOSED ? closed : empty;
}

/* Put item in, waiting for room until deadline (NULL: none; `try`: not at
 * all).  Shared by the blocking and the value sends. */
static int send_until(tr_channel_t *ch, uint64_t item, bool try, const struct timespec *deadline,
                      tr_wakes_t *wakes) {
    tr__wakelist_t wl = {0};
    int rc;
    tr__sync_lock(&ch->base);
    for (;;) {
        rc = put_locked(ch, item, &wl);
        if (rc != TR_EFULL || try) break;
        if (!tr__waitq_block(&ch->base, &ch->sendq, 0, deadline)) {
            rc = TR_TIMEDOUT;
            break;
        }
    }
    tr__sync_unlock(&ch->base);
    tr__wake_flush(&wl, wakes);
    return rc;
}

int tr_channel_send_blocking(tr_channel_t *ch, uint64_t item, double timeout,
                             tr_wakes_t *wakes) {
    tr__wakes_reset(wakes);
    if (isnan(timeout)) return TR_EINVAL;
    struct timespec ts;
    return send_until(ch, item, false, tr__deadline(timeout, &ts), wakes);
}

/* Take one item, waiting until deadline (NULL: none; `try`: not at all).
 * values_only: take it only if it is a value; an opaque key at the head is
 * left there (TR_ETYPE), and the wake this caller may have had for it is
 * passed on to the next receiver. */
static int recv_until(tr_channel_t *ch, uint64_t *item, bool try, bool values_only,
                      const struct timespec *deadline, tr_wakes_t *wakes) {
    tr__wakelist_t wl = {0};
    size_t n;
    int rc;
    tr__sync_lock(&ch->base);
    for (;;) {
        if (values_only && ch->len > 0 && !tr__item_is_value(ch->ring[ch->head])) {
            tr__waitq_wake_one(&ch->recvq, &wl);
            rc = TR_ETYPE;
            break;
        }
        rc = take_locked(ch, item, 1, &n, &wl);
        if (rc != TR_EEMPTY || try) break;
        if (!tr__waitq_block(&ch->base, &ch->recvq, 0, deadline)) {
            rc = TR_TIMEDOUT;
            break;
        }
    }
    tr__sync_unlock(&ch->base);
    tr__wake_flush(&wl, wakes);
    return rc;
}

int tr_channel_recv_blocking(tr_channel_t *ch, uint64_t *item, double timeout,
                             tr_wakes_t *wakes) {
    tr__wakes_reset(wakes);
    if (!item || isnan(timeout)) return TR_EINVAL;
    struct timespec ts;
    return recv_until(ch, item, false, false, tr__deadline(timeout, &ts), wakes);
}

int tr_channel_send_value(tr_channel_t *ch, uint64_t item, double timeout, tr_wakes_t *wakes) {
    tr__wakes_reset(wakes);
    if (!ch || !tr__item_is_value(item) || isnan(timeout)) return TR_EINVAL;
    struct timespec ts;
    return send_until(ch, item, timeout == 0, tr__deadline(timeout, &ts), wakes);
}

int tr_channel_recv_value(tr_channel_t *ch, uint64_t *item, double timeout, tr_wakes_t *wakes) {
    tr__wakes_reset(wakes);
    if (!ch || !item || isnan(timeout)) return TR_EINVAL;
    struct timespec ts;
    return recv_until(ch, item, timeout == 0, true, tr__deadline(timeout, &ts), wakes);
}

void tr_channel_took_value(tr_channel_t *ch, uint64_t item) {
    if (last_take.ch == ch && last_take.item == item) last_take = (receipt){NULL, 0, 0};
    tr_item_free(item);
}

int tr_channel_sent(tr_channel_t *ch, uint64_t item) {
    return ch != NULL && last_put.ch == ch && last_put.item == item;
}

uint64_t tr_channel_taken(tr_channel_t *ch) {
    receipt r = last_take;
    last_take = (receipt){NULL, 0, 0};
    return ch != NULL && r.ch == ch ? r.item : 0;
}

uint64_t tr_channel_taken_tagged(tr_channel_t *ch, uint64_t tag) {
    receipt r = last_take;
    if (ch == NULL || r.ch != ch || r.tag != tag) return 0;
    last_take = (receipt){NULL, 0, 0};
    return r.item;
}

int tr_channel_unget(tr_channel_t *ch, const uint64_t *items, size_t n, tr_wakes_t *wakes) {
    tr__wakes_reset(wakes);
    if (n == 0) return TR_OK;
    if (!items) return TR_EINVAL;
    tr__wakelist_t wl = {0};
    tr__sync_lock(&ch->base);
    /* Room first (one allocation at most), so a failure puts nothing back. */
    int rc = ring_reserve(ch, n);
    if (rc == TR_OK) {
        for (size_t i = n; i-- > 0;) ring_push_front(ch, items[i]);
        for (size_t i = 0; i < n; i++)
            if (!tr__waitq_wake_one(&ch->recvq, &wl)) break;
    }
    tr__sync_unlock(&ch->base);
    tr__wake_flush(&wl, wakes);
    return rc;
}

int tr_channel_wait(tr_channel_t *ch, int direction, tr_port_t *port, uint64_t token,
                    tr_waiter_t **waiter) {
    if ((direction != TR_RECV && direction != TR_SEND) || !port || token == 0 || !waiter)
        return TR_EINVAL;
    tr__sync_lock(&ch->base);
    int rc = TR_OK;
    if (!ready(ch, direction))
        rc = tr__waiter_new(&ch->base, direction == TR_RECV ? &ch->recvq : &ch->sendq, direction,
                            port, token, 0, waiter);
    tr__sync_unlock(&ch->base);
    return rc;
}

int tr_channel_wait_thread(tr_channel_t *ch, int direction, tr_waiter_t **waiter) {
    if ((direction != TR_RECV && direction != TR_SEND) || !waiter) return TR_EINVAL;
    tr__sync_lock(&ch->base);
    int rc = TR_OK;
    if (!ready(ch, direction))
        rc = tr__waiter_new_thread(&ch->base, direction == TR_RECV ? &ch->recvq : &ch->sendq,
                                   direction, 0, waiter);
    tr__sync_unlock(&ch->base);
    return rc;
}

void tr_channel_notify(tr_channel_t *ch, int direction, tr_wakes_t *wakes) {
    tr__wakes_reset(wakes);
    if (direction != TR_RECV && direction != TR_SEND) return;
    tr__wakelist_t wl = {0};
    tr__sync_lock(&ch->base);
    if (ready(ch, direction)) tr__waitq_wake_one(direction == TR_RECV ? &ch->recvq : &ch->sendq, &wl);
    tr__sync_unlock(&ch->base);
    tr__wake_flush(&wl, wakes);
}

void tr_channel_close(tr_channel_t *ch, tr_wakes_t *wakes) {
    tr__wakes_reset(wakes);
    tr__wakelist_t wl = {0};
    tr__sync_lock(&ch->base);
    if (!ch->closed) {
        ch->closed = true;
        tr__waitq_wake_all(&ch->recvq, &wl);
        tr__waitq_wake_all(&ch->sendq, &wl);
    }
    tr__sync_unlock(&ch->base);
    tr__wake_flush(&wl, wakes);
}

int tr_channel_closed(tr_channel_t *ch) {
    tr__sync_lock(&ch->base);
    int closed = ch->closed;
    tr__sync_unlock(&ch->base);
    return closed;
}

int tr_channel_waiting(tr_channel_t *ch, int direction) {
    if (direction != TR_RECV && direction != TR_SEND) return 0;
    tr__sync_lock(&ch->base);
    int waiting = (direction == TR_RECV ? ch->recvq.head : ch->sendq.head) != NULL;
    tr__sync_unlock(&ch->base);
    return waiting;
}

size_t tr_channel_len(tr_channel_t *ch) {
    tr__sync_lock(&ch->base);
    size_t len = ch->len;
    tr__sync_unlock(&ch->base);
    return len;
}

size_t tr_channel_capacity(tr_channel_t *ch) { return ch->cap; }
