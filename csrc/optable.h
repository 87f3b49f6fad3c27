/*
 * optable.h - the token -> op map (layer L1).  Loop thread only (or the
 * shutdown caller that took its role); the tests use it directly.
 *
 * It stores op pointers and never dereferences them, so it needs only the
 * name of the op type (op.h defines it).
 */
#ifndef TR_OPTABLE_H
#define TR_OPTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct tr__op tr__op_t;

typedef struct tr__slot {
    uint64_t key; /* 0 = empty */
    tr__op_t *op;
} tr__slot_t;

typedef struct tr__optable {
    tr__slot_t *slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
} tr__optable_t;

int tr__optable_put(tr__optable_t *t, uint64_t key, tr__op_t *op); /* TR_OK, TR_EINVAL (dup), TR_ENOMEM */
tr__op_t *tr__optable_get(const tr__optable_t *t, uint64_t key);
tr__op_t *tr__optable_del(tr__optable_t *t, uint64_t key);
void tr__optable_free(tr__optable_t *t);

#endif /* TR_OPTABLE_H */
