/*
 * thread.h - starting and naming the runtime's threads (layer L1).
 * Any thread.  The public tr_name_current_thread() is defined in thread.c.
 */
#ifndef TR_THREAD_H
#define TR_THREAD_H

#include <pthread.h>

/* Start a thread with every signal blocked (signals belong to the host's
 * main thread), named "{name}-{index}" (cut to the 15-byte Linux limit by
 * shortening the name, never the index).  Returns 0 or an errno value. */
int tr__thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name, int index);

#endif /* TR_THREAD_H */
