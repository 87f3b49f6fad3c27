/*
 * lock.c - the lock-rank checker of lock.h (layer L1).  Compiled only with
 * TR_LOCK_CHECK (the C test builds); empty otherwise.  Any thread: the state
 * is per thread.
 */
#include "lock.h"

#ifdef TR_LOCK_CHECK

#include <stdio.h>
#include <stdlib.h>

static _Thread_local unsigned held; /* bit r: rank r is held */

static const char *const rank_names[TR__RANK_COUNT] = {
    "?", "SHUTDOWN", "OWNER", "INBOX", "POOL", "PORT", "HUB", "OPDATA", "EXIT",
};

static const char *rank_name(int rank) {
    return rank > 0 && rank < TR__RANK_COUNT ? rank_names[rank] : "?";
}

bool tr__rank_violation(unsigned held_ranks, int rank) { return (held_ranks >> rank) != 0; }

unsigned tr__ranks_held(void) { return held; }

static int highest(unsigned mask) {
    int r = -1;
    for (int i = 0; i < 32; i++)
        if (mask & (1u << i)) r = i;
    return r;
}

void tr__rank_acquire(int rank, const char *file, int line) {
    if (rank <= 0 || rank >= TR__RANK_COUNT) {
        fprintf(stderr, "tokio_runtime: lock order violation at %s:%d: bad rank %d\n", file, line,
                rank);
        abort();
    }
    if (tr__rank_violation(held, rank)) {
        int top = highest(held);
        fprintf(stderr,
                "tokio_runtime: lock order violation at %s:%d: taking %s (rank %d) while "
                "holding %s (rank %d); held mask 0x%x\n",
                file, line, rank_name(rank), rank, rank_name(top), top, held);
        abort();
    }
    held |= 1u << rank;
}

void tr__rank_release(int rank, const char *file, int line) {
    if (rank <= 0 || rank >= TR__RANK_COUNT || !(held & (1u << rank))) {
        fprintf(stderr,
                "tokio_runtime: lock order violation at %s:%d: unlocking %s (rank %d), which "
                "this thread does not hold; held mask 0x%x\n",
                file, line, rank_name(rank), rank, held);
        abort();
    }
    held &= ~(1u << rank);
}

void tr__rank_wait_begin(int rank, const char *file, int line) {
    tr__rank_release(rank, file, line);
    /* The wait re-takes the mutex while the other locks stay held. */
    if (tr__rank_violation(held, rank)) {
        int top = highest(held);
        fprintf(stderr,
                "tokio_runtime: lock order violation at %s:%d: waiting on %s (rank %d) while "
                "holding %s (rank %d)\n",
                file, line, rank_name(rank), rank, rank_name(top), top);
        abort();
    }
}

#endif /* TR_LOCK_CHECK */

typedef int tr__lock_c_nonempty; /* ISO C wants a non-empty translation unit */
