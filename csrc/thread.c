/*
 * thread.c - thread start and naming (layer L1, see thread.h).  Any thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np */
#endif
#include "thread.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "tokio_runtime.h"

/* "{prefix}-{suffix}" in 15 bytes (the Linux limit): the prefix is cut, never
 * the suffix, so that "tokio-runtime-10" does not become a second "-1". */
static void format_name(char out[16], const char *prefix, const char *suffix) {
    size_t slen = strlen(suffix);
    if (slen > 14) slen = 14;
    size_t plen = strnlen(prefix, 15 - 1 - slen);
    memcpy(out, prefix, plen);
    out[plen] = '-';
    memcpy(out + plen + 1, suffix, slen);
    out[plen + 1 + slen] = '\0';
}

int tr_name_current_thread(const char *prefix, const char *suffix) {
    char buf[16];
    if (prefix == NULL || suffix == NULL) return EINVAL;
    format_name(buf, prefix, suffix);
    return pthread_setname_np(pthread_self(), buf);
}

int tr__thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name, int index) {
    /* Block every signal in the new thread: a process-directed SIGINT must
     * land on the host's main thread, never on a runtime thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0) {
        char suffix[16], buf[16];
        snprintf(suffix, sizeof suffix, "%d", index);
        format_name(buf, name, suffix);
        (void)pthread_setname_np(*t, buf); /* cosmetic: ignore failure */
    }
    return err;
}
