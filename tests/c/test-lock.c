/*
 * test-lock.c - the lock-rank checker (csrc/lock.h): the rule itself, the
 * bookkeeping across lock, unlock and condition waits, and proof that it
 * fires: deliberate inversions, each in a forked child, must abort with a
 * message naming the place and both ranks.
 */
#include "inbox.h"
#include "lock.h"
#include "task.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"

#ifndef TR_LOCK_CHECK
#error "the C tests are built with -DTR_LOCK_CHECK (see the Makefile)"
#endif

#define BIT(r) (1u << (r))

TEST_IMPL(lock_rank_rule) {
    /* Outer to inner is allowed, anything else is not. */
    ASSERT(!tr__rank_violation(0, TR__RANK_SHUTDOWN));
    ASSERT(!tr__rank_violation(BIT(TR__RANK_SHUTDOWN), TR__RANK_OWNER));
    ASSERT(!tr__rank_violation(BIT(TR__RANK_OWNER), TR__RANK_INBOX));
    ASSERT(!tr__rank_violation(BIT(TR__RANK_OWNER), TR__RANK_PORT));
    ASSERT(!tr__rank_violation(BIT(TR__RANK_INBOX), TR__RANK_POOL));
    ASSERT(!tr__rank_violation(BIT(TR__RANK_SHUTDOWN) | BIT(TR__RANK_OWNER), TR__RANK_HUB));
    ASSERT(tr__rank_violation(BIT(TR__RANK_PORT), TR__RANK_OWNER));
    ASSERT(tr__rank_violation(BIT(TR__RANK_OWNER), TR__RANK_OWNER)); /* same rank */
    ASSERT(tr__rank_violation(BIT(TR__RANK_INBOX), TR__RANK_OWNER));
    ASSERT(tr__rank_violation(BIT(TR__RANK_SHUTDOWN) | BIT(TR__RANK_EXIT), TR__RANK_POOL));

    /* Bookkeeping: nested in order, released in any order. */
    pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
    ASSERT_EQ(tr__ranks_held(), 0);
    tr__lock(&a, TR__RANK_OWNER);
    tr__lock(&b, TR__RANK_PORT);
    ASSERT_EQ(tr__ranks_held(), BIT(TR__RANK_OWNER) | BIT(TR__RANK_PORT));
    tr__unlock(&a, TR__RANK_OWNER);
    ASSERT_EQ(tr__ranks_held(), BIT(TR__RANK_PORT));
    tr__unlock(&b, TR__RANK_PORT);
    ASSERT_EQ(tr__ranks_held(), 0);

    /* A condition wait gives the rank back and takes it again. */
    pthread_cond_t cv;
    tr__cond_init_monotonic(&cv);
    struct timespec ts;
    tr__lock(&a, TR__RANK_OWNER);
    ASSERT_EQ(tr__cond_wait_until(&cv, &a, TR__RANK_OWNER, tr__deadline(0.0, &ts)), ETIMEDOUT);
    ASSERT_EQ(tr__ranks_held(), BIT(TR__RANK_OWNER));
    tr__unlock(&a, TR__RANK_OWNER);
    ASSERT_EQ(tr__ranks_held(), 0);
    pthread_cond_destroy(&cv);
}

/* Run fn in a child with its stderr captured; it must die of SIGABRT and
 * say "lock order violation", then every string of want. */
static void expect_abort(void (*fn)(void), const char *const *want) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        fn();
        _exit(0); /* the checker did not fire */
    }
    close(fds[1]);
    char buf[2048];
    size_t len = 0;
    while (len < sizeof buf - 1) {
        ssize_t k = read(fds[0], buf + len, sizeof buf - 1 - len);
        if (k > 0) len += (size_t)k;
        else if (k == 0 || errno != EINTR) break;
    }
    buf[len] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) ASSERT_EQ(errno, EINTR);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        tt_fail(__FILE__, __LINE__, "child was not aborted (status 0x%x); stderr: %s", status, buf);
    if (!strstr(buf, "lock order violation"))
        tt_fail(__FILE__, __LINE__, "no violation message; stderr: %s", buf);
    for (; *want; want++)
        if (!strstr(buf, *want)) tt_fail(__FILE__, __LINE__, "\"%s\" not in: %s", *want, buf);
}

static void invert_port_owner(void) {
    pthread_mutex_t port = PTHREAD_MUTEX_INITIALIZER, owner = PTHREAD_MUTEX_INITIALIZER;
    tr__lock(&port, TR__RANK_PORT);
    tr__lock(&owner, TR__RANK_OWNER); /* must abort here */
}

static void same_rank_twice(void) {
    pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
    tr__lock(&a, TR__RANK_OWNER);
    tr__lock(&b, TR__RANK_OWNER);
}

static void wait_under_inner_lock(void) {
    pthread_mutex_t owner = PTHREAD_MUTEX_INITIALIZER, hub = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    tr__lock(&owner, TR__RANK_OWNER);
    tr__lock(&hub, TR__RANK_HUB);
    /* Waiting re-takes OWNER while HUB is held: an inversion too. */
    tr__cond_wait_until(&cv, &owner, TR__RANK_OWNER, NULL);
}

static void unlock_not_held(void) {
    pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&a);
    tr__unlock(&a, TR__RANK_POOL);
}

/* The real code: a channel call (owner lock) made under the inbox lock. */
static void channel_under_inbox(void) {
    tr__inbox_t ib;
    tr__inbox_init(&ib);
    tr_channel_t *ch = NULL;
    if (tr_channel_new(4, &ch) != TR_OK) _exit(3);
    (void)tr__inbox_lock_running(&ib);
    (void)tr_channel_try_send(ch, 1, NULL); /* must abort inside channel.c */
}

TEST_IMPL(lock_rank_fires) {
    expect_abort(invert_port_owner, (const char *const[]){"test-lock.c:", "taking OWNER (rank 2)",
                                                         "holding PORT (rank 5)", NULL});
    expect_abort(same_rank_twice, (const char *const[]){"taking OWNER (rank 2) while holding OWNER",
                                                       NULL});
    expect_abort(wait_under_inner_lock,
                 (const char *const[]){"waiting on OWNER (rank 2) while holding HUB (rank 6)", NULL});
    expect_abort(unlock_not_held, (const char *const[]){"unlocking POOL", NULL});
    expect_abort(channel_under_inbox, (const char *const[]){"channel.c:", "taking OWNER (rank 2)",
                                                           "holding INBOX (rank 3)", NULL});
}
