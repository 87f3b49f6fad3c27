/*
 * clock.h - CLOCK_MONOTONIC time: now, deadlines, condition variables that
 * count on it, and the seconds check every timed API shares (layer L1).
 * Any thread.
 */
#ifndef TR_CLOCK_H
#define TR_CLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

/* CLOCK_MONOTONIC, in seconds. */
double tr__mono_now(void);
/* Absolute CLOCK_MONOTONIC deadline timeout seconds from now, stored in *ts;
 * NULL when timeout is negative or NaN (wait forever). */
const struct timespec *tr__deadline(double timeout, struct timespec *ts);
/* A condition variable whose timed waits take tr__deadline() deadlines. */
void tr__cond_init_monotonic(pthread_cond_t *cv);
/* A duration argument: finite and not negative. */
bool tr__valid_seconds(double s);

#endif /* TR_CLOCK_H */
