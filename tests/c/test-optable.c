/*
 * test-optable.c - the token -> op table, checked against a plain array.
 *
 * The ops stored are fake pointers: the table never dereferences them.
 */
#include "optable.h"
#include "task.h"

#include <stdlib.h>

#define OP(k) ((void *)(uintptr_t)((k) * 16))

/* Slot index of key, or -1. */
static long slot_index(const tr__optable_t *t, uint64_t key) {
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].key == key) return (long)i;
    return -1;
}

static void check_shape(const tr__optable_t *t) {
    size_t used = 0;
    for (size_t i = 0; i < t->cap; i++) used += t->slots[i].key != 0;
    ASSERT_EQ(used, t->count);
    ASSERT((t->cap & (t->cap - 1)) == 0); /* a power of two (or 0) */
    ASSERT_LE(t->count * 2, t->cap);      /* load at most 1/2 */
}

TEST_IMPL(optable_basic) {
    tr__optable_t t = {0};
    ASSERT_NULL(tr__optable_get(&t, 1)); /* empty, no slots yet */
    ASSERT_NULL(tr__optable_del(&t, 1));
    ASSERT_EQ(tr__optable_put(&t, 0, OP(1)), TR_EINVAL); /* 0 marks empty slots */
    ASSERT_EQ(tr__optable_put(&t, 5, OP(5)), TR_OK);
    ASSERT_EQ(tr__optable_put(&t, 5, OP(6)), TR_EINVAL); /* duplicate */
    ASSERT(tr__optable_get(&t, 5) == OP(5));
    ASSERT_NULL(tr__optable_get(&t, 0));
    ASSERT_NULL(tr__optable_get(&t, 6));

    /* Growth: sequential tokens, as a runtime hands them out. */
    size_t n = 100000;
    for (uint64_t k = 6; k < 6 + n; k++) ASSERT_EQ(tr__optable_put(&t, k, OP(k)), TR_OK);
    check_shape(&t);
    ASSERT_EQ(t.count, n + 1);
    for (uint64_t k = 5; k < 6 + n; k++) ASSERT(tr__optable_get(&t, k) == OP(k));
    /* Delete every other one, then the rest. */
    for (uint64_t k = 5; k < 6 + n; k += 2) ASSERT(tr__optable_del(&t, k) == OP(k));
    check_shape(&t);
    for (uint64_t k = 5; k < 6 + n; k++)
        ASSERT(tr__optable_get(&t, k) == ((k - 5) % 2 ? OP(k) : NULL));
    for (uint64_t k = 6; k < 6 + n; k += 2) ASSERT(tr__optable_del(&t, k) == OP(k));
    ASSERT_EQ(t.count, 0);
    check_shape(&t);
    ASSERT_NULL(tr__optable_del(&t, 7));
    tr__optable_free(&t);
    ASSERT_EQ(t.cap, 0);
    ASSERT_NULL(t.slots);
}

/* Keys whose home slot (in a table of 64) is `home`, found by asking the
 * table itself where a lone key lands. */
static void keys_with_home(size_t home, uint64_t *out, size_t n, uint64_t *next_key) {
    tr__optable_t probe = {0};
    size_t found = 0;
    while (found < n) {
        uint64_t k = (*next_key)++;
        ASSERT_EQ(tr__optable_put(&probe, k, OP(k)), TR_OK);
        ASSERT_EQ(probe.cap, 64);
        if (slot_index(&probe, k) == (long)home) out[found++] = k;
        tr__optable_del(&probe, k);
    }
    tr__optable_free(&probe);
}

TEST_IMPL(optable_wraparound) {
    /* Probe runs that cross the end of the slot array, and deletions that
     * must pull entries back across it. */
    uint64_t last[4], first[2], next_key = 1;
    keys_with_home(63, last, 4, &next_key);
    keys_with_home(0, first, 2, &next_key);

    tr__optable_t t = {0};
    for (int i = 0; i < 4; i++) ASSERT_EQ(tr__optable_put(&t, last[i], OP(last[i])), TR_OK);
    for (int i = 0; i < 2; i++) ASSERT_EQ(tr__optable_put(&t, first[i], OP(first[i])), TR_OK);
    ASSERT_EQ(t.cap, 64);
    /* last[] fills 63, 0, 1, 2 (in order); first[] follows at 3, 4. */
    ASSERT_EQ(slot_index(&t, last[0]), 63);
    ASSERT_EQ(slot_index(&t, last[1]), 0);
    ASSERT_EQ(slot_index(&t, last[2]), 1);
    ASSERT_EQ(slot_index(&t, last[3]), 2);
    ASSERT_EQ(slot_index(&t, first[0]), 3);
    ASSERT_EQ(slot_index(&t, first[1]), 4);

    /* Deleting the run's head shifts everybody back by one, across the end,
     * but never before a key's home. */
    ASSERT(tr__optable_del(&t, last[0]) == OP(last[0]));
    ASSERT_EQ(slot_index(&t, last[1]), 63);
    ASSERT_EQ(slot_index(&t, last[2]), 0);
    ASSERT_EQ(slot_index(&t, last[3]), 1);
    ASSERT_EQ(slot_index(&t, first[0]), 2);
    ASSERT_EQ(slot_index(&t, first[1]), 3);

    ASSERT(tr__optable_del(&t, last[2]) == OP(last[2]));
    ASSERT(tr__optable_del(&t, last[1]) == OP(last[1]));
    ASSERT_EQ(slot_index(&t, last[3]), 63);
    ASSERT_EQ(slot_index(&t, first[0]), 0);
    ASSERT_EQ(slot_index(&t, first[1]), 1);
    /* Emptying slot 63 must leave first[] where they are: moving into it
     * would put them before their home. */
    ASSERT(tr__optable_del(&t, last[3]) == OP(last[3]));
    ASSERT_EQ(slot_index(&t, first[0]), 0);
    ASSERT_EQ(slot_index(&t, first[1]), 1);
    ASSERT_EQ(t.slots[63].key, 0);
    for (int i = 0; i < 2; i++) ASSERT(tr__optable_get(&t, first[i]) == OP(first[i]));
    ASSERT_EQ(t.count, 2);
    check_shape(&t);
    tr__optable_free(&t);
}

/* xorshift64*: a fixed, seeded sequence, so a failure replays. */
static uint64_t rnd(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

TEST_IMPL(optable_random_model) {
    enum { KEYS = 3000 };
    void **model = calloc(KEYS + 1, sizeof *model); /* by key; NULL = absent */
    ASSERT_NOT_NULL(model);
    tr__optable_t t = {0};
    uint64_t seed = UINT64_C(0x9E3779B97F4A7C15);
    size_t count = 0, steps = tt_scaled(400000);
    for (size_t step = 0; step < steps; step++) {
        /* Phases that favour puts, then deletes, so the table grows large,
         * shrinks to nearly nothing, and grows again. */
        bool filling = (step / 50000) % 2 == 0;
        uint64_t r = rnd(&seed);
        uint64_t key = 1 + r % KEYS;
        unsigned what = (unsigned)(r >> 40) % 10;
        void *op = OP(key + step * KEYS); /* a fresh value each time */
        if (what < (filling ? 6u : 2u)) {
            int rc = tr__optable_put(&t, key, op);
            if (model[key]) {
                ASSERT_EQ(rc, TR_EINVAL);
            } else {
                ASSERT_EQ(rc, TR_OK);
                model[key] = op;
                count++;
            }
        } else if (what < 8) {
            ASSERT(tr__optable_del(&t, key) == model[key]);
            if (model[key]) count--;
            model[key] = NULL;
        } else {
            ASSERT(tr__optable_get(&t, key) == model[key]);
        }
        ASSERT_EQ(t.count, count);
        if (step % 10000 == 0) {
            check_shape(&t);
            for (uint64_t k = 1; k <= KEYS; k++) ASSERT(tr__optable_get(&t, k) == model[k]);
        }
    }
    for (uint64_t k = 1; k <= KEYS; k++) {
        ASSERT(tr__optable_get(&t, k) == model[k]);
        ASSERT(tr__optable_del(&t, k) == model[k]);
    }
    ASSERT_EQ(t.count, 0);
    tr__optable_free(&t);
    free(model);
}
