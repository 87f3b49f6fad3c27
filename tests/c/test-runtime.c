/*
 * test-runtime.c - creating, naming, shutting down and releasing a runtime,
 * and the dispatcher wait.
 */
#include "task.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

TEST_IMPL(runtime_bad_config) {
    char name64[65];
    memset(name64, 'x', 64);
    name64[64] = '\0';
    const tr_config_t bad[] = {
        {.worker_threads = 0, .thread_name = "tt"},
        {.worker_threads = -1, .thread_name = "tt"},
        {.worker_threads = tr_max_workers() + 1, .thread_name = "tt"},
        {.worker_threads = 1, .thread_name = NULL},
        {.worker_threads = 1, .thread_name = ""},
        {.worker_threads = 1, .thread_name = name64}, /* 64 bytes: one too many */
    };
    ASSERT_GE(tr_max_workers(), 1);
    /* On error *out is untouched: keep a marker in it. */
    tr_runtime_t *marker = (tr_runtime_t *)(void *)name64;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tr_runtime_t *rt = marker;
        ASSERT_EQ(tr_runtime_new(&bad[i], &rt), TR_EINVAL);
        ASSERT(rt == marker);
    }
    tr_runtime_t *rt = marker;
    ASSERT_EQ(tr_runtime_new(NULL, &rt), TR_EINVAL);
    ASSERT(rt == marker);
    tr_config_t good = {.worker_threads = 1, .thread_name = "tt"};
    ASSERT_EQ(tr_runtime_new(&good, NULL), TR_EINVAL);
}

TEST_IMPL(runtime_new_release) {
    tr_runtime_t *rt = tt_runtime(3);
    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.running, 1);
    ASSERT_EQ(s.worker_threads, 3);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.submitted, 0);
    ASSERT_EQ(s.live_ops, 0);
    ASSERT_EQ(s.ports, 0);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tt_stats(rt).ports, 1);
    tr_port_release(port);
    ASSERT_EQ(tt_stats(rt).ports, 0);
    tr_runtime_release(rt);
    tr_runtime_release(NULL); /* allowed, does nothing */
}

TEST_IMPL(runtime_bad_libev_flags) {
    /* LIBEV_FLAGS=8 asks libev for kqueue only, which Linux has not: the
     * runtime falls back to the default backend instead of failing. */
    ASSERT_EQ(setenv("LIBEV_FLAGS", "8", 1), 0);
    tr_runtime_t *rt = tt_runtime(1);
    ASSERT_EQ(unsetenv("LIBEV_FLAGS"), 0);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_sleep(rt, port, 1, 0.0), TR_OK);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 5.0);
    ASSERT_EQ(c.status, TR_OK);
    tr_port_release(port);
    tr_runtime_release(rt);
}

/* Thread names show up (and go away) in /proc/self/task/N/comm; a joined
 * thread may linger there for a moment, hence the polling. */
static bool wait_threads_gone(const char *name, double timeout) {
    double deadline = tt_now() + timeout;
    while (tt_count_threads_named(name) != 0) {
        if (tt_now() > deadline) return false;
        tt_sleep(0.002);
    }
    return true;
}

TEST_IMPL(runtime_thread_names) {
    /* The loop thread is {name}-0, the workers {name}-1 .. {name}-N. */
    tr_config_t cfg = {.worker_threads = 3, .thread_name = "ttname"};
    tr_runtime_t *rt;
    ASSERT_EQ(tr_runtime_new(&cfg, &rt), TR_OK);
    const char *names[] = {"ttname-0", "ttname-1", "ttname-2", "ttname-3"};
    for (int i = 0; i < 4; i++) ASSERT_EQ(tt_count_threads_named(names[i]), 1);
    ASSERT_EQ(tt_count_threads_named("ttname-4"), 0);
    tr_runtime_release(rt);
    for (int i = 0; i < 4; i++) ASSERT(wait_threads_gone(names[i], 2.0));

    /* Linux keeps 15 bytes: the prefix is cut, never the number, so
     * "-1" and "-10" stay apart. */
    cfg.worker_threads = 10;
    cfg.thread_name = "abcdefghijklmnopqrstuvwxyz";
    ASSERT_EQ(tr_runtime_new(&cfg, &rt), TR_OK);
    char name[32];
    for (int i = 0; i <= 10; i++) {
        snprintf(name, sizeof name, "%.*s-%d", i < 10 ? 13 : 12, cfg.thread_name, i);
        ASSERT_EQ(strlen(name), 15);
        ASSERT_EQ(tt_count_threads_named(name), 1);
    }
    tr_runtime_release(rt);
    ASSERT(wait_threads_gone("abcdefghijklm-1", 2.0));
    ASSERT(wait_threads_gone("abcdefghijkl-10", 2.0));
}

typedef struct name_job {
    const char *prefix, *suffix;
    int rc;
    char got[32];
} name_job;

static void *name_self(void *arg) {
    name_job *job = arg;
    job->rc = tr_name_current_thread(job->prefix, job->suffix);
    pthread_getname_np(pthread_self(), job->got, sizeof job->got);
    return NULL;
}

TEST_IMPL(runtime_name_current_thread) {
    name_job jobs[] = {
        {"ttx", "helper", 0, ""},
        {"averylongprefixname", "12", 0, ""},
    };
    const char *want[] = {"ttx-helper", "averylongpre-12"};
    for (int i = 0; i < 2; i++) {
        pthread_t t;
        ASSERT_EQ(pthread_create(&t, NULL, name_self, &jobs[i]), 0);
        ASSERT_EQ(pthread_join(t, NULL), 0);
        ASSERT_EQ(jobs[i].rc, 0);
        ASSERT_STR_EQ(jobs[i].got, want[i]);
    }
    ASSERT_EQ(tr_name_current_thread(NULL, "x"), EINVAL);
    ASSERT_EQ(tr_name_current_thread("x", NULL), EINVAL);
}

static void *shutdown_thread(void *arg) {
    tr_runtime_shutdown(arg);
    return NULL;
}

TEST_IMPL(runtime_shutdown_idempotent) {
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *port = tt_port(rt, 1);
    ASSERT_EQ(tr_sleep(rt, port, 1, 30.0), TR_OK);
    /* Several threads race to shut down; all return once it is done. */
    pthread_t t[3];
    for (int i = 0; i < 3; i++) ASSERT_EQ(pthread_create(&t[i], NULL, shutdown_thread, rt), 0);
    tr_runtime_shutdown(rt);
    for (int i = 0; i < 3; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
    tr_runtime_shutdown(rt); /* and once more, after the fact */

    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.running, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.cancelled, 1);
    tr_completion_t c;
    tt_wait_one(rt, port, &c, 1.0); /* already queued by the shutdown */
    ASSERT_EQ(c.token, 1);
    ASSERT_EQ(c.status, TR_CANCELLED);
    ASSERT_EQ(tt_stats(rt).live_ops, 0);
    tr_port_release(port);
    tr_runtime_release(rt); /* shuts down a third time: still fine */
}

TEST_IMPL(runtime_submit_after_shutdown) {
    tr_runtime_t *rt = tt_runtime(1);
    tr_port_t *port = tt_port(rt, 1);
    tr_runtime_shutdown(rt);
    ASSERT_EQ(tr_sleep(rt, port, 1, 0.0), TR_ESHUTDOWN);
    ASSERT_EQ(tr_ticker(rt, port, 2, 3, 0.0, NULL), TR_ESHUTDOWN);
    /* A refused ticker hands out no handle (and leaks none). */
    tr_task_t *marker = (tr_task_t *)(void *)&rt, *task = marker;
    ASSERT_EQ(tr_ticker(rt, port, 3, 3, 0.0, &task), TR_ESHUTDOWN);
    ASSERT(task == marker);
    ASSERT_EQ(tr_timeout_sleep(rt, port, 4, 0.0, 1.0), TR_ESHUTDOWN);
    ASSERT_EQ(tr_counter_demo(rt, port, 5, 10, 0.0), TR_ESHUTDOWN);
    ASSERT_EQ(tr_debug_stall_worker(rt, 0.0), TR_ESHUTDOWN);
    ASSERT_EQ(tr_cancel(rt, 1), TR_ESHUTDOWN);
    /* Argument checks still come first. */
    ASSERT_EQ(tr_sleep(rt, port, 1, -1.0), TR_EINVAL);

    tr_stats_t s = tt_stats(rt);
    ASSERT_EQ(s.submitted, 0);
    ASSERT_EQ(s.pending, 0);
    ASSERT_EQ(s.live_ops, 0);
    ASSERT_EQ(s.running, 0);

    /* The dispatcher learns that it is over, at once, every time. */
    uint64_t ids[4];
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, -1.0), -1);
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 5.0), -1);
    tr_runtime_wake_dispatcher(rt);
    tr_port_close(port); /* nothing to cancel any more */
    tr_port_close(port);
    tr_port_release(port);
    tr_runtime_release(rt);
}

TEST_IMPL(runtime_wait_ready_timeout) {
    tr_runtime_t *rt = tt_runtime(1);
    uint64_t ids[4];
    double t0 = tt_now();
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 0.0), 0);
    ASSERT_DBL_CMP(tt_now() - t0, <, 1.0);
    t0 = tt_now();
    ASSERT_EQ(tr_runtime_wait_ready(rt, ids, 4, 0.05), 0);
    double took = tt_now() - t0;
    ASSERT_DBL_CMP(took, >=, 0.045);
    ASSERT_DBL_CMP(took, <, 2.0);
    tr_runtime_release(rt);
}

typedef struct waiter_job {
    tr_runtime_t *rt;
    int rc;
    double took;
} waiter_job;

static void *wait_forever(void *arg) {
    waiter_job *job = arg;
    uint64_t ids[4];
    double t0 = tt_now();
    job->rc = tr_runtime_wait_ready(job->rt, ids, 4, -1.0);
    job->took = tt_now() - t0;
    return NULL;
}

TEST_IMPL(runtime_wake_dispatcher) {
    tr_runtime_t *rt = tt_runtime(1);
    waiter_job job = {rt, 99, 0};
    pthread_t t;
    /* A wake returns 0 from a wait with no timeout. */
    ASSERT_EQ(pthread_create(&t, NULL, wait_forever, &job), 0);
    tt_sleep(0.02);
    tr_runtime_wake_dispatcher(rt);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(job.rc, 0);

    /* A shutdown returns -1 from it. */
    job.rc = 99;
    ASSERT_EQ(pthread_create(&t, NULL, wait_forever, &job), 0);
    tt_sleep(0.02);
    tr_runtime_shutdown(rt);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(job.rc, -1);
    tr_runtime_release(rt);
}

TEST_IMPL(runtime_release_before_ports) {
    /* The owner lets go first; the port keeps the memory alive, and its
     * cancelled record is still there to drain. */
    tr_runtime_t *rt = tt_runtime(2);
    tr_port_t *port = tt_port(rt, 1);
    tr_port_t *idle = tt_port(rt, 2);
    ASSERT_EQ(tr_sleep(rt, port, 1, 30.0), TR_OK);
    ASSERT_EQ(tr_counter_demo(rt, port, 2, 3, 0.0), TR_OK);
    tr_runtime_release(rt);
    tr_completion_t c[4];
    size_t n = tt_drain(port, c, 4);
    ASSERT_EQ(n, 2);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(c[i].final, 1);
        ASSERT(c[i].status == TR_CANCELLED || (c[i].token == 2 && c[i].status == TR_OK));
    }
    tr_port_release(idle);
    tr_port_release(port); /* the last reference: frees the runtime */
}
