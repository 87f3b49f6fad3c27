/*
 * item.c - value items (layer L1, see item.h for the encoding).
 */
#include "item.h"

#include <stdlib.h>
#include <string.h>

typedef struct tr__box {
    int kind;      /* TR_ITEM_INT or TR_ITEM_BYTES */
    int64_t i;     /* TR_ITEM_INT */
    size_t len;    /* TR_ITEM_BYTES */
    unsigned char data[];
} tr__box_t;

#define INLINE_MIN (-(INT64_C(1) << 61))
#define INLINE_MAX ((INT64_C(1) << 61) - 1)

static tr__box_t *box_of(uint64_t item) { return (tr__box_t *)(uintptr_t)(item & TR__ITEM_PAYLOAD); }

/* The last box this thread made that is neither sent nor freed yet (0: none):
 * see tr_item_free_unsent. */
static _Thread_local uint64_t unsent;

/* 0 when out of memory, or when malloc returned an address the encoding
 * cannot hold (never on the 64-bit platforms we build for: user space ends
 * far below 2**62). */
static uint64_t box_item(tr__box_t *box) {
    uint64_t bits = (uint64_t)(uintptr_t)box;
    if (!box) return 0;
    if (bits & ~TR__ITEM_PAYLOAD) {
        free(box);
        return 0;
    }
    unsent = TR__ITEM_BOXED | bits;
    return unsent;
}

uint64_t tr_item_int(int64_t value) {
    if (value >= INLINE_MIN && value <= INLINE_MAX)
        return TR__ITEM_VALUE | ((uint64_t)value + TR__ITEM_INT_BIAS);
    tr__box_t *box = malloc(sizeof *box);
    if (box) {
        box->kind = TR_ITEM_INT;
        box->i = value;
        box->len = 0;
    }
    return box_item(box);
}

uint64_t tr_item_bytes(const void *data, size_t len) {
    if (!data && len) return 0;
    if (len > SIZE_MAX - sizeof(tr__box_t)) return 0;
    tr__box_t *box = malloc(sizeof *box + len);
    if (box) {
        box->kind = TR_ITEM_BYTES;
        box->i = 0;
        box->len = len;
        if (len) memcpy(box->data, data, len);
    }
    return box_item(box);
}

int tr_item_kind(uint64_t item) {
    if (!tr__item_is_value(item)) return TR_ITEM_KEY;
    if (!tr__item_is_boxed(item)) return TR_ITEM_INT;
    return box_of(item)->kind;
}

int64_t tr_item_get_int(uint64_t item) {
    if (!tr__item_is_value(item)) return 0;
    if (tr__item_is_boxed(item)) {
        tr__box_t *box = box_of(item);
        return box->kind == TR_ITEM_INT ? box->i : 0;
    }
    return (int64_t)((item & TR__ITEM_PAYLOAD) - TR__ITEM_INT_BIAS); /* wraps below the bias */
}

const void *tr_item_get_bytes(uint64_t item, size_t *len) {
    if (tr__item_is_boxed(item)) {
        tr__box_t *box = box_of(item);
        if (box->kind == TR_ITEM_BYTES) {
            if (len) *len = box->len;
            return box->data;
        }
    }
    if (len) *len = 0;
    return NULL;
}

void tr_item_free(uint64_t item) {
    if (!tr__item_is_boxed(item)) return;
    if (item == unsent) unsent = 0;
    free(box_of(item));
}

void tr__item_sent(uint64_t item) {
    if (item == unsent) unsent = 0;
}

int tr_item_free_unsent(void) {
    uint64_t item = unsent;
    if (!item) return 0;
    tr_item_free(item);
    return 1;
}

int tr_items_classify(const uint64_t *items, size_t n) {
    int kinds = 0;
    if (!items) return 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t it = items[i];
        kinds |= !tr__item_is_value(it) ? TR_ITEMS_KEYS
                 : tr__item_is_boxed(it) ? TR_ITEMS_BOXED
                                         : TR_ITEMS_INTS;
    }
    return kinds;
}

void tr_items_ints(const uint64_t *items, size_t n, int64_t *out) {
    if (!items || !out) return;
    for (size_t i = 0; i < n; i++) out[i] = tr_item_get_int(items[i]);
}

void tr_items_free(const uint64_t *items, size_t n, int *done) {
    if (items)
        for (size_t i = 0; i < n; i++) tr_item_free(items[i]);
    if (done) *done = 1;
}
