/*
 * optable.c - token -> op map owned by the loop thread.
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones, so a long-lived runtime never degrades).  Tokens are mostly
 * sequential, so they are spread with a Fibonacci multiply.  Load stays at
 * most 1/2.
 *
 * Layer L1 (see optable.h).  Loop thread only.
 */
#include "optable.h"

#include "tokio_runtime.h"

#include <stdlib.h>

static size_t slot_of(uint64_t key, size_t mask) {
    uint64_t h = key * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h ^ (h >> 32)) & mask;
}

static int grow(tr__optable_t *t) {
    size_t ncap = t->cap ? t->cap * 2 : 64;
    tr__slot_t *slots = calloc(ncap, sizeof *slots);
    if (!slots) return TR_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].key) continue;
        size_t j = slot_of(t->slots[i].key, ncap - 1);
        while (slots[j].key) j = (j + 1) & (ncap - 1);
        slots[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->cap = ncap;
    return TR_OK;
}

int tr__optable_put(tr__optable_t *t, uint64_t key, void *op) {
    if (key == 0) return TR_EINVAL;
    if ((t->count + 1) * 2 > t->cap && grow(t) != TR_OK) return TR_ENOMEM;
    size_t mask = t->cap - 1;
    size_t i = slot_of(key, mask);
    while (t->slots[i].key) {
        if (t->slots[i].key == key) return TR_EINVAL;
        i = (i + 1) & mask;
    }
    t->slots[i].key = key;
    t->slots[i].op = op;
    t->count++;
    return TR_OK;
}

void *tr__optable_get(const tr__optable_t *t, uint64_t key) {
    if (!t->cap || key == 0) return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = slot_of(key, mask); t->slots[i].key; i = (i + 1) & mask)
        if (t->slots[i].key == key) return t->slots[i].op;
    return NULL;
}

void *tr__optable_del(tr__optable_t *t, uint64_t key) {
    if (!t->cap || key == 0) return NULL;
    size_t mask = t->cap - 1;
    size_t i = slot_of(key, mask);
    while (t->slots[i].key != key) {
        if (!t->slots[i].key) return NULL;
        i = (i + 1) & mask;
    }
    void *op = t->slots[i].op;
    /* Backward shift: pull later members of the probe run into the hole
     * unless that would move them before their home slot. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; t->slots[j].key; j = (j + 1) & mask) {
        size_t home = slot_of(t->slots[j].key, mask);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole].key = 0;
    t->slots[hole].op = NULL;
    t->count--;
    return op;
}

void tr__optable_free(tr__optable_t *t) {
    free(t->slots);
    t->slots = NULL;
    t->cap = t->count = 0;
}
