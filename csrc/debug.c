/*
 * debug.c - hooks for tests (layer L7, on top of the runtime):
 * tr_debug_stall_worker keeps one worker busy for a while.  Any thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nanosleep */
#endif
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "inbox.h"
#include "list.h"
#include "pool.h"
#include "runtime.h"

typedef struct stall_work {
    tr__work_t work;
    double seconds;
} stall_work;

static void stall_run(tr__work_t *w) {
    stall_work *s = TR__CONTAINER_OF(w, stall_work, work);
    struct timespec ts = {(time_t)s->seconds, (long)((s->seconds - (double)(time_t)s->seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    free(s);
}

int tr_debug_stall_worker(tr_runtime_t *rt, double seconds) {
    if (!tr__valid_seconds(seconds) || seconds > 3600.0) return TR_EINVAL;
    stall_work *s = calloc(1, sizeof *s);
    if (!s) return TR_ENOMEM;
    s->seconds = seconds;
    s->work.run = stall_run;
    s->work.solo = true; /* it occupies its worker */
    /* Under the inbox lock: the pool is stopped only after the state left
     * RUNNING (lock order: inbox, then pool). */
    bool running = tr__inbox_lock_running(&rt->inbox);
    if (running) tr__pool_push(&rt->pool, &s->work, &s->work);
    tr__inbox_unlock(&rt->inbox);
    if (!running) {
        free(s);
        return TR_ESHUTDOWN;
    }
    return TR_OK;
}
