/*
 * clock.c - CLOCK_MONOTONIC helpers (layer L1, see clock.h).  Any thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, pthread_condattr_setclock */
#endif
#include "clock.h"

#include <math.h>

double tr__mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const struct timespec *tr__deadline(double timeout, struct timespec *ts) {
    if (timeout < 0 || isnan(timeout)) return NULL;
    clock_gettime(CLOCK_MONOTONIC, ts);
    if (timeout > 1e9) timeout = 1e9; /* ~31 years: far enough, and no overflow */
    double whole = floor(timeout);
    ts->tv_sec += (time_t)whole;
    ts->tv_nsec += (long)((timeout - whole) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec += 1;
        ts->tv_nsec -= 1000000000L;
    }
    return ts;
}

void tr__cond_init_monotonic(pthread_cond_t *cv) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

bool tr__valid_seconds(double s) { return isfinite(s) && s >= 0.0; }
