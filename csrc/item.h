/*
 * item.h - value items: int64s and byte strings that C producers and
 * consumers and the Python shim all understand (layer L1).
 *
 * A channel carries 64-bit items.  Bit 63 clear: an opaque key (the shim's
 * key of a Python object in its dict).  Bit 63 set: a value, in one of two
 * encodings:
 *
 *   10 + 62 bits   an int v in [-2**61, 2**61), in the item itself as
 *                  2**63 + 2**61 + v: no allocation.  (An offset, not two's
 *                  complement, so that Python encodes and decodes it with
 *                  one addition.)
 *   11 + 62 bits   a pointer to a heap box (tr__box_t) holding an int64 that
 *                  does not fit inline, or a byte string (TR__ITEM_BOXED).
 *
 * A boxed item owns its box: whoever holds the item (a sender until the
 * send succeeds, the channel while it is queued, the receiver after it)
 * frees it exactly once with tr_item_free.  The public functions are
 * declared in tokio_runtime.h and defined in item.c.  Any thread.
 */
#ifndef TR_ITEM_H
#define TR_ITEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokio_runtime.h"

#define TR__ITEM_VALUE (UINT64_C(1) << 63)
#define TR__ITEM_BOXED (UINT64_C(3) << 62)
#define TR__ITEM_PAYLOAD ((UINT64_C(1) << 62) - 1)
#define TR__ITEM_INT_BIAS (UINT64_C(1) << 61) /* inline: payload = v + bias */

static inline bool tr__item_is_value(uint64_t item) { return (item & TR__ITEM_VALUE) != 0; }
static inline bool tr__item_is_boxed(uint64_t item) {
    return (item & TR__ITEM_BOXED) == TR__ITEM_BOXED;
}

/* A channel accepted item: if it is this thread's unsent box, it is not
 * any more (tr_item_free_unsent).  Calling thread. */
void tr__item_sent(uint64_t item);

#endif /* TR_ITEM_H */
