/*
 * tokio_runtime.h - the one public header of the tokio_runtime C core.
 *
 * A runtime owns one libev loop (made with ev_loop_new, never the default
 * loop) running in its own thread, plus a pool of worker threads.  Work is
 * submitted as *operations* ("ops") from any thread; each op is tagged with a
 * caller-chosen 64-bit token and bound to a *port*.  When an op finishes, a
 * completion record (token, status, value, payload) is queued on its port.
 * Ports tell the runtime's dispatcher when they go from empty to non-empty, so
 * a consumer (the Python shim) is woken once per batch, not once per record.
 *
 * Nothing here includes or calls Python.  Thread-safety is stated per function.
 *
 * The block between CFFI-BEGIN and CFFI-END is fed verbatim to cffi's cdef()
 * by build_ffi.py: keep it to plain declarations (no macros, no #if).
 */
#ifndef TOKIO_RUNTIME_H
#define TOKIO_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CFFI-BEGIN */

/* Status of a completion record, and return codes of the API (TR_OK or TR_E*). */
enum tr_status {
    TR_OK = 0,
    TR_CANCELLED = 1,  /* the op was cancelled (by tr_cancel, port close or shutdown) */
    TR_TIMEDOUT = 2,   /* a timeout op's deadline passed first */
    TR_ENOMEM = 3,     /* an allocation failed; nothing was leaked */
    TR_EINVAL = 4,     /* an argument is out of range */
    TR_ESHUTDOWN = 5,  /* the runtime is shutting down or shut down */
    TR_ECLOSED = 6,    /* the port or channel is closed */
    TR_ETHREAD = 7     /* a thread could not be started */
};

typedef struct tr_runtime tr_runtime_t;
typedef struct tr_port tr_port_t;

typedef struct tr_config {
    int worker_threads;      /* 1..TR_MAX_WORKERS (see tr_max_workers()) */
    const char *thread_name; /* threads are named "{thread_name}-{n}", cut to 15 bytes */
} tr_config_t;

/* One completion record, as copied out by tr_port_drain(). */
typedef struct tr_completion {
    uint64_t token;   /* the token given at submission */
    int32_t status;   /* enum tr_status */
    int32_t final;    /* 1: the op is finished; 0: a progress record (more follow) */
    int64_t value;    /* op-specific result (a count, a tick number, ...) */
    void *payload;    /* NULL, or owned by the drainer: free with tr_payload_free() */
} tr_completion_t;

/* A payload holding a vector of NUL-terminated strings (channel_demo's result).
 * Every payload starts with its own destructor; tr_payload_free() calls it. */
typedef struct tr_strvec {
    void (*destroy)(void *self);
    size_t len;
    char **items;
} tr_strvec_t;

typedef struct tr_stats {
    uint64_t pending;    /* ops submitted and not yet finished */
    uint64_t submitted;  /* ops ever accepted */
    uint64_t completed;  /* ops finished with any status but TR_CANCELLED */
    uint64_t cancelled;  /* ops finished with TR_CANCELLED */
    uint64_t live_ops;   /* op structs allocated and not yet freed */
    uint64_t ports;      /* ports allocated and not yet freed */
    int32_t worker_threads;
    int32_t running;     /* 1 until shutdown starts */
} tr_stats_t;

/* ---- runtime -------------------------------------------------------------
 * tr_runtime_new: start the loop thread and the workers.  Any thread.
 * Returns TR_OK, TR_EINVAL (bad config), TR_ENOMEM or TR_ETHREAD; on error
 * nothing is left running and *out is untouched. */
int tr_runtime_new(const tr_config_t *config, tr_runtime_t **out);

/* Cancel every pending op (their ports get TR_CANCELLED records), stop and
 * join every thread, and free the libev loop.  Idempotent; any thread but the
 * runtime's own.  Blocks until the threads are joined. */
void tr_runtime_shutdown(tr_runtime_t *rt);

/* The owner is done with it: shut it down (as above) and drop the owner's
 * reference.  The memory is freed when the last port is released too.  Any
 * thread but the runtime's own. */
void tr_runtime_release(tr_runtime_t *rt);

/* Snapshot of the counters.  Any thread; values are read without a lock and
 * may be a few operations apart from each other. */
void tr_runtime_stats(tr_runtime_t *rt, tr_stats_t *out);

/* For the dispatcher (one thread per runtime): wait until some ports have
 * records to deliver, store up to cap of their ids in ids[] and return how
 * many.  Returns 0 when timeout (seconds; negative = forever) passes, and -1
 * once the runtime is shut down and no port is left to report.  Each port is
 * reported once per empty -> non-empty edge, until it is drained. */
int tr_runtime_wait_ready(tr_runtime_t *rt, uint64_t *ids, int cap, double timeout);

/* Wake a thread blocked in tr_runtime_wait_ready() (it returns 0).  Any thread. */
void tr_runtime_wake_dispatcher(tr_runtime_t *rt);

/* Cancel the op with this token, and every child it has.  Exactly one of
 * "finished" and "cancelled" wins: cancelling an op that already finished, or
 * an unknown token, does nothing.  Asynchronous (the loop thread does it);
 * any thread.  Returns TR_OK, TR_ENOMEM or TR_ESHUTDOWN. */
int tr_cancel(tr_runtime_t *rt, uint64_t token);

/* Largest accepted worker_threads. */
int tr_max_workers(void);

/* ---- ports ---------------------------------------------------------------
 * A port is a completion queue for one consumer (one asyncio loop).
 * tr_port_new: any thread.  The caller owns one reference. */
int tr_port_new(tr_runtime_t *rt, uint64_t id, tr_port_t **out);

/* Copy up to cap queued records into out[] (oldest first) and return how many.
 * When the queue becomes empty, the port is re-armed: the next record reports
 * it to the dispatcher again.  Any thread; meant for the consumer's thread. */
size_t tr_port_drain(tr_port_t *port, tr_completion_t *out, size_t cap);

/* Close the port: queued and future records are dropped (payloads freed) and
 * every op still bound to it is cancelled.  Idempotent; any thread. */
void tr_port_close(tr_port_t *port);

/* Drop the caller's reference.  Any thread. */
void tr_port_release(tr_port_t *port);

/* Free a payload taken out of a completion record.  NULL is allowed. */
void tr_payload_free(void *payload);

/* ---- operations ----------------------------------------------------------
 * All take (runtime, port, token) and return TR_OK when the op was accepted
 * (exactly one final record will then reach the port, unless the port is
 * closed first), or TR_EINVAL / TR_ENOMEM / TR_ESHUTDOWN when it was not (no
 * record will come).  Durations are seconds: finite and >= 0.  Tokens must be
 * non-zero and unique among the runtime's pending ops.  Any thread. */

/* A libev timer.  Final record: TR_OK, value 0. */
int tr_sleep(tr_runtime_t *rt, tr_port_t *port, uint64_t token, double seconds);

/* A repeating timer that fires count times, interval apart.  After each tick
 * a progress record carries the number of ticks so far; records are
 * coalesced, so one record may account for several ticks, but value only
 * grows and the final record (TR_OK, value == count) comes last. */
int tr_ticker(tr_runtime_t *rt, tr_port_t *port, uint64_t token, uint64_t count,
              double interval);

/* n concurrent child timers (delays[i] seconds each), joined: the final
 * record (TR_OK, value n) comes when the last child fires.  Cancelling it
 * stops every child still armed. */
int tr_sleep_all(tr_runtime_t *rt, tr_port_t *port, uint64_t token,
                 const double *delays, size_t n);

/* A timer of op_seconds raced against a timeout of timeout_seconds.  The
 * operation wins ties (like tokio::time::timeout, which polls the inner future
 * first): TR_OK when op_seconds <= timeout_seconds, else TR_TIMEDOUT, each at
 * the time of the earlier timer; the loser is stopped. */
int tr_timeout_sleep(tr_runtime_t *rt, tr_port_t *port, uint64_t token,
                     double op_seconds, double timeout_seconds);

/* tasks child tasks; each sleeps delay seconds on a libev timer, then a worker
 * thread locks a shared mutex and adds 1 to a shared counter.  Final record:
 * TR_OK with value == the counter (== tasks).  Cancelling it stops the armed
 * timers; increments already handed to workers are skipped. */
int tr_counter_demo(tr_runtime_t *rt, tr_port_t *port, uint64_t token, uint64_t tasks,
                    double delay);

/* A bounded channel of the given capacity between a producer task, which
 * sends "Message {i}" for i in [0, messages) and sleeps interval after each
 * send, then closes the channel, and a consumer task that receives until the
 * channel is closed and drained.  Final record: TR_OK with a tr_strvec_t
 * payload of the received messages, in order. */
int tr_channel_demo(tr_runtime_t *rt, tr_port_t *port, uint64_t token, uint64_t messages,
                    size_t capacity, double interval);

/* Name the calling thread "{prefix}-{suffix}" (cut to 15 bytes), so that
 * non-runtime helper threads line up in top -H.  Returns 0 or an errno. */
int tr_name_current_thread(const char *prefix, const char *suffix);

/* CFFI-END */

#ifdef __cplusplus
}
#endif

#endif /* TOKIO_RUNTIME_H */
