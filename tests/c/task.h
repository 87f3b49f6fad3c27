/*
 * task.h - what every C test file shares: the test list, assertion macros and
 * a few helpers (util.c).
 *
 * The runner runs each test in a forked child, so a failed assertion simply
 * aborts: the child dies, the runner reports "not ok" and goes on with the
 * next test, and nothing a broken test left running can disturb the others.
 */
#ifndef TR_TEST_TASK_H
#define TR_TEST_TASK_H

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tokio_runtime.h"

/* ---- the one list of tests, in the order they run ------------------------ */
#define TT_TEST_LIST(X)              \
    X(runtime_bad_config)            \
    X(runtime_new_release)           \
    X(runtime_bad_libev_flags)       \
    X(runtime_thread_names)          \
    X(runtime_name_current_thread)   \
    X(runtime_shutdown_idempotent)   \
    X(runtime_submit_after_shutdown) \
    X(runtime_wait_ready_timeout)    \
    X(runtime_wake_dispatcher)       \
    X(runtime_release_before_ports)  \
    X(sleep_basic)                   \
    X(sleep_zero)                    \
    X(sleep_lateness_stats)          \
    X(deferred_wake)                 \
    X(deferred_wake_deadlines)       \
    X(burst_reported_once)           \
    X(late_bucket_bounds)            \
    X(sleep_invalid)                 \
    X(sleep_cancel_before_fire)      \
    X(sleep_cancel_after_fire)       \
    X(sleep_cancel_race)             \
    X(sleep_duplicate_token)         \
    X(ticker_progress)               \
    X(ticker_zero_interval)          \
    X(ticker_count_zero)             \
    X(ticker_cancel)                 \
    X(ticker_task_progress)          \
    X(ticker_task_finish)            \
    X(ticker_task_outlives_runtime)  \
    X(timeout_tie_rule)              \
    X(timeout_ties_many)             \
    X(timeout_invalid_and_cancel)    \
    X(counter_zero)                  \
    X(counter_small)                 \
    X(counter_large)                 \
    X(counter_invalid)               \
    X(counter_cancel_after_submit)   \
    X(counter_cancel_mid_flight)     \
    X(counter_cancel_storm)          \
    X(chan_new_invalid)              \
    X(chan_fifo_order)               \
    X(chan_take)                     \
    X(chan_ring_growth)              \
    X(chan_close_semantics)          \
    X(chan_recv_many)                \
    X(chan_blocking_timeout)         \
    X(chan_blocking_wakeup)          \
    X(chan_stress_mpmc)              \
    X(chan_wait_port)                \
    X(chan_wait_invalid)             \
    X(chan_wait_thread)              \
    X(chan_wait_one_per_item)        \
    X(chan_wait_close)               \
    X(chan_notify_passes_wake)       \
    X(chan_wait_closed_port_skipped) \
    X(chan_wait_dropped_record)      \
    X(chan_wait_shutdown)            \
    X(chan_wakes)                    \
    X(chan_wakes_overflow)           \
    X(chan_receipts)                 \
    X(chan_unget)                    \
    X(chan_unget_wakes)              \
    X(chan_waiting)                  \
    X(waiter_release_cell)           \
    X(item_int_inline)               \
    X(item_int_boxed)                \
    X(item_bytes)                    \
    X(item_keys)                     \
    X(items_batch)                   \
    X(chan_value_basic)              \
    X(chan_value_timeouts)           \
    X(chan_value_blocking)           \
    X(chan_value_keys_fifo)          \
    X(chan_value_etype_passes_wake)  \
    X(chan_value_close)              \
    X(chan_value_took_receipt)       \
    X(chan_value_release_frees)      \
    X(chan_value_stress)             \
    X(mutex_basic)                   \
    X(mutex_lock_timeout)            \
    X(mutex_fifo_threads)            \
    X(mutex_wait_thread_keeps_place) \
    X(mutex_wait_port)               \
    X(mutex_unlock_wakes)            \
    X(mutex_fifo_mixed)              \
    X(mutex_wait_release_woken)      \
    X(mutex_wait_closed_port)        \
    X(mutex_wait_dropped_record)     \
    X(mutex_wait_shutdown)           \
    X(mutex_stress)                  \
    X(mutex_tickets)                 \
    X(mutex_hand_off_in_flight_close) \
    X(port_new_invalid)              \
    X(port_close_drops_records)      \
    X(port_close_cancels_ops)        \
    X(port_close_then_submit)        \
    X(port_close_ticker_race)        \
    X(port_release_with_records)     \
    X(port_release_ops_in_flight)    \
    X(port_many)                     \
    X(port_drain_cap1)               \
    X(port_drain_two_phase)          \
    X(port_close_keeps_in_flight)    \
    X(port_close_progress_in_flight) \
    X(port_stalled)                  \
    X(promise_new_invalid)           \
    X(promise_complete)              \
    X(promise_complete_status)       \
    X(promise_complete_bytes)        \
    X(promise_cancel)                \
    X(promise_refs)                  \
    X(promise_many_records)          \
    X(promise_run_basic)             \
    X(promise_run_cancel_queued)     \
    X(promise_run_cancel_running)    \
    X(promise_run_complete_running)  \
    X(promise_run_invalid)           \
    X(promise_run_drop)              \
    X(promise_run_fifo)              \
    X(promise_port_close)            \
    X(promise_port_release_with_record) \
    X(promise_release_close_race)    \
    X(promise_new_close_race)        \
    X(promise_shutdown_job)          \
    X(promise_shutdown_queued)       \
    X(promise_c_thread_many)         \
    X(promise_race_complete_cancel)  \
    X(capi_table)                    \
    X(capi_channel)                  \
    X(capi_mutex)                    \
    X(capi_promise)                  \
    X(shutdown_ops_in_flight)        \
    X(shutdown_dispatcher_sees_end)  \
    X(shutdown_release_with_records) \
    X(shutdown_timeout_stalled)      \
    X(shutdown_timeout_idle)         \
    X(shutdown_timeout_then_release) \
    X(stall_worker)                  \
    X(optable_basic)                 \
    X(optable_wraparound)            \
    X(optable_random_model)          \
    X(lock_rank_rule)                \
    X(lock_rank_fires)

#define TEST_IMPL(name) void tt_test_##name(void)
#define TT_DECLARE_(name) TEST_IMPL(name);
TT_TEST_LIST(TT_DECLARE_)
#undef TT_DECLARE_

/* ---- assertions ----------------------------------------------------------- */
_Noreturn void tt_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define ASSERT(expr)                                                       \
    do {                                                                   \
        if (!(expr)) tt_fail(__FILE__, __LINE__, "assertion %s", #expr);   \
    } while (0)

/* Integers of any width and signedness: compared and printed as intmax_t. */
#define ASSERT_CMP(a, op, b)                                                        \
    do {                                                                            \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                            \
        if (!(a_ op b_))                                                            \
            tt_fail(__FILE__, __LINE__, "%s %s %s (%jd vs %jd)", #a, #op, #b, a_, b_); \
    } while (0)

#define ASSERT_EQ(a, b) ASSERT_CMP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_CMP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_CMP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_CMP(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_CMP(a, >, b)
#define ASSERT_GE(a, b) ASSERT_CMP(a, >=, b)

/* Durations and other doubles. */
#define ASSERT_DBL_CMP(a, op, b)                                                  \
    do {                                                                          \
        double a_ = (a), b_ = (b);                                                \
        if (!(a_ op b_))                                                          \
            tt_fail(__FILE__, __LINE__, "%s %s %s (%g vs %g)", #a, #op, #b, a_, b_); \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                             \
    do {                                                                                \
        const char *a_ = (a), *b_ = (b);                                                \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                            \
            tt_fail(__FILE__, __LINE__, "%s == %s (\"%s\" vs \"%s\")", #a, #b,          \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                            \
    } while (0)

#define ASSERT_NULL(p) ASSERT((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT((p) != NULL)

/* ---- helpers (util.c) ------------------------------------------------------ */

/* CLOCK_MONOTONIC, in seconds. */
double tt_now(void);
void tt_sleep(double seconds);
/* Seconds a started thread is given to block inside the call under test:
 * nothing public tells a queued thread from a runnable one. */
#define TT_SETTLE 0.05
/* Start fn(arg) on *tid, wait until it sets *started (just before the call
 * under test), then give it TT_SETTLE seconds to block there. */
void tt_start_settled(pthread_t *tid, void *(*fn)(void *), void *arg, atomic_bool *started);

/* Stress sizes are multiplied by the scale, TR_TEST_SCALE: a number (default
 * 1; less for a slow machine, more for a soak run), or "valgrind" for 0.1.
 * tt_scaled() never returns 0. */
double tt_scale(void);
size_t tt_scaled(size_t n);

/* A runtime whose threads are named "tt-{n}"; fails the test on error. */
tr_runtime_t *tt_runtime(int workers);
tr_port_t *tt_port(tr_runtime_t *rt, uint64_t id);

/* Called for every record taken off a port, progress and final alike. */
typedef void (*tt_visit_fn)(tr_completion_t *c, void *ctx);

/* Take records off port (one at a time, oldest first) until `want` final
 * records were seen or `timeout` seconds pass; waits the way a dispatcher
 * does, with tr_runtime_wait_ready.  Returns the number of final records
 * seen, which is never more than want: later records stay queued. */
size_t tt_wait_finals(tr_runtime_t *rt, tr_port_t *port, size_t want, double timeout,
                      tt_visit_fn visit, void *ctx);

/* The next final record on port (progress records are skipped); fails the
 * test if none comes within timeout. */
#define tt_wait_one(rt, port, out, timeout) tt_wait_one_at(__FILE__, __LINE__, rt, port, out, timeout)
void tt_wait_one_at(const char *file, int line, tr_runtime_t *rt, tr_port_t *port,
                    tr_completion_t *out, double timeout);

/* tr_port_drain in one step: copy up to cap records and acknowledge them at
 * once (a second call, cap 0), as a consumer that delivers each batch before
 * it drains again does.  Returns how many were copied. */
size_t tt_drain(tr_port_t *port, tr_completion_t *out, size_t cap);

/* No record arrives on port for `seconds`: fails the test otherwise. */
#define tt_expect_quiet(rt, port, seconds) tt_expect_quiet_at(__FILE__, __LINE__, rt, port, seconds)
void tt_expect_quiet_at(const char *file, int line, tr_runtime_t *rt, tr_port_t *port,
                        double seconds);

/* Wait until no op is pending and the ops that were have queued (or
 * dropped) their records and let go of their ports; false if timeout passes
 * first. */
bool tt_wait_idle(tr_runtime_t *rt, double timeout);

tr_stats_t tt_stats(tr_runtime_t *rt);

/* Which final records arrived, for tokens 1..n (a tt_visit_fn via ctx). */
typedef struct tt_ledger {
    size_t n;
    uint32_t *finals;   /* per token: final records seen (must end at 1) */
    int32_t *status;    /* per token: status of the last final record */
    int64_t *value;     /* per token: its value */
    size_t total_finals, progress, stray; /* stray: token outside 1..n */
} tt_ledger_t;

void tt_ledger_init(tt_ledger_t *l, size_t n);
void tt_ledger_free(tt_ledger_t *l);
void tt_ledger_visit(tr_completion_t *c, void *ctx);

/* Bytes of heap in use (glibc's mallinfo2: every arena, mmapped chunks
 * included), or 0 where that is unknown.  A sanitizer's or valgrind's
 * allocator may not report through it: a test that checks memory went
 * back compares only when the number grew with its own allocations (ASan
 * and valgrind check those builds for leaks anyway). */
size_t tt_heap_in_use(void);

/* Number of threads of this process whose name (/proc/self/task/N/comm)
 * is exactly `name`. */
int tt_count_threads_named(const char *name);

#endif /* TR_TEST_TASK_H */
