/*
 * optable.h - the token -> op map (layer L1).  Loop thread only (or the
 * shutdown caller that took its role); the tests use it directly.
 *
 * It maps tokens to op pointers (op.h), stored as void * and never
 * dereferenced: the table needs nothing from the op layer.
 */
#ifndef TR_OPTABLE_H
#define TR_OPTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct tr__slot {
    uint64_t key; /* 0 = empty */
    void *op;
} tr__slot_t;

typedef struct tr__optable {
    tr__slot_t *slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
} tr__optable_t;

int tr__optable_put(tr__optable_t *t, uint64_t key, void *op); /* TR_OK, TR_EINVAL (dup), TR_ENOMEM */
void *tr__optable_get(const tr__optable_t *t, uint64_t key);
void *tr__optable_del(tr__optable_t *t, uint64_t key);
void tr__optable_free(tr__optable_t *t);

#endif /* TR_OPTABLE_H */
