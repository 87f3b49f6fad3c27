/*
 * util.c - helpers shared by the C tests (declared in task.h).
 */
#include "runtime.h" /* the loop barrier posts to rt->inbox */
#include "task.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void tt_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" failed\n", stderr);
    fflush(stderr);
    abort();
}

double tt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void tt_sleep(double seconds) {
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void tt_start_settled(pthread_t *tid, void *(*fn)(void *), void *arg, atomic_bool *started) {
    ASSERT_EQ(pthread_create(tid, NULL, fn, arg), 0);
    while (!atomic_load(started)) sched_yield();
    tt_sleep(TT_SETTLE);
}

double tt_scale(void) {
    const char *s = getenv("TR_TEST_SCALE");
    if (!s || !*s) return 1.0;
    /* valgrind runs one thread at a time: big stress sizes only cost time
     * there, and memcheck finds the same bugs in smaller ones. */
    if (strcmp(s, "valgrind") == 0) return 0.1;
    double v = strtod(s, NULL);
    return v > 0 ? v : 1.0;
}

size_t tt_scaled(size_t n) {
    double v = (double)n * tt_scale();
    return v < 1.0 ? 1 : (size_t)v;
}

tr_runtime_t *tt_runtime(int workers) {
    tr_config_t cfg = {.worker_threads = workers, .thread_name = "tt"};
    tr_runtime_t *rt = NULL;
    ASSERT_EQ(tr_runtime_new(&cfg, &rt), TR_OK);
    ASSERT_NOT_NULL(rt);
    return rt;
}

tr_port_t *tt_port(tr_runtime_t *rt, uint64_t id) {
    tr_port_t *port = NULL;
    ASSERT_EQ(tr_port_new(rt, id, &port), TR_OK);
    ASSERT_NOT_NULL(port);
    return port;
}

tr_stats_t tt_stats(tr_runtime_t *rt) {
    tr_stats_t s;
    tr_runtime_stats(rt, &s);
    return s;
}

/* Copy up to cap records and acknowledge them at once.  Loop until it
 * returns 0: only a drain that finds the queue empty re-arms its edge. */
size_t tt_drain(tr_port_t *port, tr_completion_t *out, size_t cap) {
    size_t n = tr_port_drain(port, out, cap, 0);
    if (n) ASSERT_EQ(tr_port_drain(port, NULL, 0, n), 0);
    return n;
}

size_t tt_wait_finals(tr_runtime_t *rt, tr_port_t *port, size_t want, double timeout,
                      tt_visit_fn visit, void *ctx) {
    double deadline = tt_now() + timeout;
    size_t finals = 0;
    bool ended = false;
    for (;;) {
        /* Always drain before waiting: the port's ready edge may have been
         * taken by an earlier wait (ours or for another port), and a port is
         * reported again only after it was drained empty. */
        tr_completion_t c;
        while (finals < want && tt_drain(port, &c, 1) == 1) {
            if (c.final) finals++;
            if (visit) visit(&c, ctx);
        }
        if (finals >= want || ended) return finals;
        double left = deadline - tt_now();
        if (left <= 0) return finals;
        uint64_t ids[16];
        /* 0 may come early (tr_runtime_wake_dispatcher): the loop just
         * drains again.  -1: shut down and nothing left to report, so one
         * last drain is all there is. */
        if (tr_runtime_wait_ready(rt, ids, 16, left) < 0) ended = true;
    }
}

static void keep_final(tr_completion_t *c, void *ctx) {
    if (!c->final) return;
    *(tr_completion_t *)ctx = *c;
}

void tt_wait_one_at(const char *file, int line, tr_runtime_t *rt, tr_port_t *port,
                    tr_completion_t *out, double timeout) {
    memset(out, 0, sizeof *out);
    if (tt_wait_finals(rt, port, 1, timeout, keep_final, out) != 1)
        tt_fail(file, line, "waiting %gs for a final record", timeout);
}

void tt_expect_quiet_at(const char *file, int line, tr_runtime_t *rt, tr_port_t *port,
                        double seconds) {
    tt_ledger_t l;
    tt_ledger_init(&l, 0);
    /* Waiting for one final record also drains progress records. */
    tt_wait_finals(rt, port, 1, seconds, tt_ledger_visit, &l);
    size_t seen = l.total_finals + l.progress;
    tt_ledger_free(&l);
    if (seen) tt_fail(file, line, "quiet port (%zu records arrived)", seen);
}

/* A message through the loop thread's inbox, waited for. */
typedef struct loop_barrier {
    tr__msg_t msg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} loop_barrier;

static void barrier_run(tr__msg_t *msg, void *ctx) {
    (void)ctx;
    loop_barrier *b = TR__CONTAINER_OF(msg, loop_barrier, msg);
    pthread_mutex_lock(&b->mu);
    b->done = true;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void loop_barrier_pass(tr_runtime_t *rt) {
    loop_barrier b = {.done = false};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    b.msg.run = barrier_run;
    if (tr__inbox_post(&rt->inbox, &b.msg)) { /* false: stopped, so nothing runs any more */
        pthread_mutex_lock(&b.mu);
        while (!b.done) pthread_cond_wait(&b.cv, &b.mu);
        pthread_mutex_unlock(&b.mu);
    }
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
}

bool tt_wait_idle(tr_runtime_t *rt, double timeout) {
    double deadline = tt_now() + timeout;
    while (tt_stats(rt).pending != 0) {
        if (tt_now() > deadline) return false;
        tt_sleep(0.001);
    }
    /* pending drops as an op finishes, before its record is queued (or
     * dropped, freeing the op) and before it lets go of its port.  Finishing
     * is one step on the loop thread, so once a message posted now has run
     * there, every op counted out above is through it. */
    loop_barrier_pass(rt);
    return true;
}

void tt_ledger_init(tt_ledger_t *l, size_t n) {
    memset(l, 0, sizeof *l);
    l->n = n;
    /* +1 so that n == 0 still gets real allocations */
    l->finals = calloc(n + 1, sizeof *l->finals);
    l->status = calloc(n + 1, sizeof *l->status);
    l->value = calloc(n + 1, sizeof *l->value);
    ASSERT(l->finals && l->status && l->value);
}

void tt_ledger_free(tt_ledger_t *l) {
    free(l->finals);
    free(l->status);
    free(l->value);
    memset(l, 0, sizeof *l);
}

void tt_ledger_visit(tr_completion_t *c, void *ctx) {
    tt_ledger_t *l = ctx;
    if (!c->final) {
        l->progress++;
        return;
    }
    l->total_finals++;
    if (c->token == 0 || c->token > l->n) {
        l->stray++;
        return;
    }
    size_t i = (size_t)c->token - 1;
    l->finals[i]++;
    l->status[i] = c->status;
    l->value[i] = c->value;
}

int tt_count_threads_named(const char *name) {
    DIR *d = opendir("/proc/self/task");
    ASSERT_NOT_NULL(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue; /* the thread exited meanwhile */
        if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
        if (strcmp(comm, name) == 0) n++;
    }
    closedir(d);
    return n;
}

size_t tt_heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0;
#endif
}
