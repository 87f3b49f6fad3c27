/*
 * tokio_runtime.h - the one public header of the tokio_runtime C core.
 *
 * A runtime owns one libev loop (made with ev_loop_new, never the default
 * loop) running in its own thread, plus a pool of worker threads.  Work is
 * submitted as *operations* ("ops") from any thread; each op is tagged with a
 * caller-chosen 64-bit token and bound to a *port*.  When an op finishes, a
 * completion record (token, status, value) is queued on its port.
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
    TR_ETHREAD = 7,    /* a thread could not be started */
    TR_EFULL = 8,      /* a channel is full (non-blocking send) */
    TR_EEMPTY = 9,     /* a channel is empty (non-blocking receive) */
    TR_EBUSY = 10,     /* a mutex is locked (non-blocking lock) */
    TR_PENDING = 11,   /* not finished yet: a waiter was queued, a task still runs */
    TR_EDONE = 12,     /* a promise was already completed (this call did nothing) */
    TR_ETYPE = 13      /* a channel's next item is a Python object, not a value (left there) */
};

typedef struct tr_runtime tr_runtime_t;
typedef struct tr_port tr_port_t;
typedef struct tr_channel tr_channel_t;
typedef struct tr_mutex tr_mutex_t;
typedef struct tr_waiter tr_waiter_t;
typedef struct tr_task tr_task_t;
typedef struct tr_promise tr_promise_t;

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
} tr_completion_t;

/* Ports a call made ready, handed to its caller instead of the dispatcher.
 *
 * Every call that can wake a waiting consumer (a channel send or receive, a
 * close, a mutex unlock, ...) takes a `tr_wakes_t *wakes`, which may be
 * NULL.  With NULL, a port that the call gives its first record is reported
 * to its runtime's dispatcher thread, as C threads' completions are.  With a
 * buffer, the call sets wakes->n to 0 on entry and lists the ids of such
 * ports there instead (up to TR_WAKES_MAX; any more are reported to their
 * dispatchers as with NULL): the caller promises to have them drained (an
 * asyncio shim drains its own loop's port at once and calls the other
 * loops' call_soon_threadsafe), which saves the dispatcher's thread hop.
 * A caller that fails to keep that promise (an exception between the call
 * and the drain) only delays the wake: tr_port_stalled lets the dispatcher
 * find such a port at its next sweep.  A buffer belongs to one thread at a
 * time. */
#define TR_WAKES_MAX 8
typedef struct tr_wakes {
    uint32_t n;                 /* ports listed in ids[] */
    uint64_t ids[TR_WAKES_MAX]; /* their ids, as given to tr_port_new */
} tr_wakes_t;

typedef struct tr_stats {
    uint64_t pending;    /* ops submitted and not yet finished, plus queued waiters */
    uint64_t submitted;  /* ops ever accepted */
    uint64_t completed;  /* ops finished with any status but TR_CANCELLED */
    uint64_t cancelled;  /* ops finished with TR_CANCELLED */
    uint64_t live_ops;   /* op structs allocated and not yet freed */
    uint64_t ports;      /* ports allocated and not yet freed */
    uint64_t waiters;    /* channel/mutex waiters queued for a port (also in pending) */
    uint64_t promises;   /* promises allocated and not yet freed */
    uint64_t native_queued;  /* native jobs (tr_promise_run) waiting for a worker */
    uint64_t native_running; /* native jobs whose function is running */
    int32_t worker_threads;
    int32_t running;     /* 1 until shutdown starts */
    /* How late sleep timers (tr_sleep: sleeps and timeout deadlines) fired:
     * from the time due to the moment the loop thread ran the timer and
     * queued its record.  timer_late_hist[b] counts timers whose lateness
     * fell in bucket b; see tr_late_bucket_bounds(). */
    uint64_t timers_fired;
    uint64_t timer_late_max_ns;
    uint64_t timer_late_hist[96];
} tr_stats_t;

/* Buckets of tr_stats_t.timer_late_hist (TR_LATE_BUCKETS of them):
 * log-linear in microseconds, four per power of two, so a bucket's upper
 * bound is at most 25 % above its lower one.  Bucket b holds lateness in
 * [*lo_us, *hi_us); the last bucket has no upper bound (*hi_us is UINT64_MAX).
 * Returns TR_EINVAL for b out of range. */
int tr_late_bucket_bounds(int b, uint64_t *lo_us, uint64_t *hi_us);

/* ---- runtime -------------------------------------------------------------
 * tr_runtime_new: start the loop thread and the workers.  Any thread.
 * Returns TR_OK, TR_EINVAL (bad config), TR_ENOMEM or TR_ETHREAD; on error
 * nothing is left running and *out is untouched. */
int tr_runtime_new(const tr_config_t *config, tr_runtime_t **out);

/* Cancel every pending op (their ports get TR_CANCELLED records), stop and
 * join every thread, and free the libev loop.  Idempotent; any thread but the
 * runtime's own.  Blocks until the threads are joined. */
void tr_runtime_shutdown(tr_runtime_t *rt);

/* The same, waiting at most timeout seconds (negative: forever) for the
 * threads to stop.  TR_OK: everything is joined and freed.  TR_TIMEDOUT: no
 * new work is accepted and every op is being cancelled, but a thread is still
 * busy; call it again (or tr_runtime_shutdown) to finish the job.
 * TR_EINVAL: timeout is NaN.  Port waiters of channels and mutexes are not
 * touched: their owner (the Python shim) releases them. */
int tr_runtime_shutdown_timeout(tr_runtime_t *rt, double timeout);

/* The owner is done with it: shut it down (as above) and drop the owner's
 * reference.  The memory is freed when the last port and the last promise
 * are released too.  Any
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

/* Wake the loop thread for ops submitted with deferred wake-ups (see
 * tr_port_defer_wake); nothing if none are waiting.  Any thread. */
void tr_runtime_kick(tr_runtime_t *rt);

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

/* Drain in two steps, so that a consumer interrupted half-way (an exception
 * between two records) loses nothing: first remove the `ack` oldest records,
 * the ones the previous call copied out and the consumer has delivered since
 * (at most what that call returned; 0 on a fresh start), then copy up to cap
 * records from the head into out[] (oldest first) WITHOUT removing them, and
 * return how many.  Records copied but never acknowledged are copied again
 * by the next call, so the consumer must deliver idempotently.  A drain loop:
 * `n = drain(p, out, cap, 0); while (n) { deliver(out, n); n = drain(p, out,
 * cap, n); }`.  When the queue becomes empty, the port is re-armed: the next
 * record reports it again.  One consumer thread per port at a time. */
size_t tr_port_drain(tr_port_t *port, tr_completion_t *out, size_t cap, size_t ack);

/* For the dispatcher's periodic sweep: 1 if the port has had records queued
 * since the previous call without any tr_port_drain call in between (its
 * consumer was told and did not drain, or nobody was told: a tr_wakes_t
 * caller was interrupted), else 0.  The sweep then has the port drained.
 * Any thread. */
int tr_port_stalled(tr_port_t *port);

/* Deferred wake-ups (on != 0): ops submitted for this port do not wake the
 * runtime's loop thread; the submitter promises to call tr_runtime_kick()
 * soon after (an asyncio shim does it once per loop iteration), so a burst of
 * submissions costs one wake-up.  Deadlines still count from each
 * submission, not from the kick.  Returns TR_OK, or TR_EINVAL for NULL. */
int tr_port_defer_wake(tr_port_t *port, int on);

/* Close the port: queued and future records are dropped and
 * every op still bound to it is cancelled.  Records a tr_port_drain call
 * copied out and that are not acknowledged yet stay (the consumer may be
 * delivering them right now); the next tr_port_drain acknowledges them as
 * usual, or tr_port_release drops them.  Idempotent; any thread. */
void tr_port_close(tr_port_t *port);

/* Drop the caller's reference.  Any thread. */
void tr_port_release(tr_port_t *port);

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
 * grows and the final record (TR_OK, value == count) comes last.
 * If task is not NULL, *task receives a handle (owned by the caller, free it
 * with tr_task_release) whose progress and status any thread can read while
 * the consumer is busy; it is set only when TR_OK is returned. */
int tr_ticker(tr_runtime_t *rt, tr_port_t *port, uint64_t token, uint64_t count,
              double interval, tr_task_t **task);

/* Ticks done so far.  Any thread, lock-free. */
uint64_t tr_task_progress(const tr_task_t *task);
/* TR_PENDING while the task runs, then its final status (TR_OK or
 * TR_CANCELLED), set just before the final record is queued: whoever drains
 * that record finds it set.  Any thread, lock-free. */
int tr_task_status(const tr_task_t *task);
/* Drop the caller's handle.  The task itself runs on.  Any thread. */
void tr_task_release(tr_task_t *task);

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

/* For tests: occupy one worker thread for seconds (it cannot be cancelled),
 * as a slow native task would.  Returns TR_OK, TR_EINVAL or TR_ESHUTDOWN. */
int tr_debug_stall_worker(tr_runtime_t *rt, double seconds);

/* ---- waiters -------------------------------------------------------------
 * An asynchronous wait on a channel or a mutex, queued for a port.  When it
 * is woken, its record (token, TR_OK, final) reaches the port; the consumer
 * then retries (a channel) or owns the lock (a mutex).  The caller owns one
 * reference and must give it back with tr_waiter_release() exactly once,
 * whatever happened, after the record arrived or when it stops waiting.
 *
 * tr_waiter_release returns 1 if the waiter had been woken (the wake is the
 * caller's: if it will not act on it, it must pass it on, with
 * tr_channel_notify or tr_mutex_unlock) and 0 if it was still queued (it is
 * removed; no record will come).  A wake that cannot reach its port is
 * passed on automatically, exactly once: a waiter whose port is closed is
 * skipped, and a record dropped because its port was closed or let go
 * passes its wake on, unless tr_waiter_release had already returned 1 for
 * it.  tr_waiter_release then returns 0: there is nothing left to pass on.
 * Any thread. */
int tr_waiter_release(tr_waiter_t *waiter);

/* tr_waiter_release for a waiter kept in a cell that several parties may
 * race to release (a coroutine's cleanup and a closed loop's sweep): takes
 * the waiter out of *cell atomically (leaving NULL) and releases it.
 * Returns what tr_waiter_release returns, or -1 if *cell was already NULL
 * (released before, or never set: a wait call that failed or was never made
 * leaves NULL in a zeroed cell).  Any thread. */
int tr_waiter_release_cell(tr_waiter_t **cell);

/* A thread waiter waits in steps, keeping its place in the queue between
 * them (so its caller can get back to its own work, e.g. let Python run a
 * signal handler, without losing its turn).  It is made by
 * tr_channel_wait_thread / tr_mutex_wait_thread and released, like a port
 * waiter, with tr_waiter_release.  tr_waiter_wait blocks the calling thread
 * until the waiter is woken (TR_OK) or timeout seconds pass (TR_TIMEDOUT,
 * still queued; negative: no limit); TR_EINVAL for a port waiter or a NaN
 * timeout.  Any thread, one at a time per waiter. */
int tr_waiter_wait(tr_waiter_t *waiter, double timeout);

/* ---- channels ------------------------------------------------------------
 * A bounded FIFO of 64-bit items, safe from any number of threads.  Blocking
 * calls release nothing but the channel lock while they wait.  Every function
 * is safe from any thread.  An item is an opaque key (below 2**63) or a
 * value (see "values" below), which the channel owns while it holds it: never
 * put a made-up number of 2**63 or more into a channel. */
enum tr_direction { TR_RECV = 0, TR_SEND = 1 };

/* capacity: 1 .. 2**40.  The caller owns one reference. */
int tr_channel_new(size_t capacity, tr_channel_t **out);
void tr_channel_release(tr_channel_t *ch);
/* Every call that may wake a waiter takes `wakes` (NULL, or see tr_wakes_t). */

/* TR_OK, TR_EFULL or TR_ECLOSED. */
int tr_channel_try_send(tr_channel_t *ch, uint64_t item, tr_wakes_t *wakes);
/* TR_OK (*item set), TR_EEMPTY, or TR_ECLOSED (closed and drained). */
int tr_channel_try_recv(tr_channel_t *ch, uint64_t *item, tr_wakes_t *wakes);
/* tr_channel_try_recv for the common case, in one return value: the oldest
 * item, or `none` if there is nothing to take (empty, or closed and drained;
 * ask tr_channel_try_recv which).  For callers that never send `none`. */
uint64_t tr_channel_take(tr_channel_t *ch, uint64_t none, tr_wakes_t *wakes);
/* Up to max items, oldest first, into items[]; *n is how many.  TR_OK (n >= 1),
 * TR_EEMPTY or TR_ECLOSED (closed and drained). */
int tr_channel_recv_many(tr_channel_t *ch, uint64_t *items, size_t max, size_t *n,
                         tr_wakes_t *wakes);
/* Wait up to timeout seconds (negative: forever) for room / an item.
 * TR_OK, TR_TIMEDOUT, TR_ECLOSED, or TR_EINVAL (NaN timeout, NULL item).
 * Items stay strictly FIFO; blocked threads are woken oldest first, but one
 * that is woken may lose the item to a concurrent try_* call and queue again. */
int tr_channel_send_blocking(tr_channel_t *ch, uint64_t item, double timeout,
                             tr_wakes_t *wakes);
int tr_channel_recv_blocking(tr_channel_t *ch, uint64_t *item, double timeout,
                             tr_wakes_t *wakes);
/* Receipts, for a caller interrupted between a successful call and its own
 * bookkeeping (a Python exception raised right after the C call returned).
 * Each thread remembers the last item it put into a channel and the last
 * item it took (by try_send, send_blocking, take, try_recv, recv_blocking;
 * recv_many returns its items through items[] and *n, which the caller can
 * read).  tr_channel_sent(ch, item): 1 if this thread's last successful put
 * was `item` into ch, else 0.  tr_channel_taken(ch): the item this thread
 * last took from ch, if its last take was from ch, else 0; either way it
 * forgets it (so a receipt is read at most once).  Calling thread only. */
int tr_channel_sent(tr_channel_t *ch, uint64_t item);
uint64_t tr_channel_taken(tr_channel_t *ch);
/* Tagged receipts, for a caller that cannot tell an old receipt from the
 * one of the take it was interrupted in (the Python shim, whose receive
 * returns the item it took without another C call): tr_channel_take_tagged
 * takes like tr_channel_take, returning `empty` when the channel is empty
 * and `closed` when it is closed and drained, and stamps this thread's
 * take receipt with tag (every other take stamps 0);
 * tr_channel_taken_tagged(ch, tag) returns the receipt's item only if it is
 * from ch and stamped with tag, forgetting it then (else 0, and the receipt
 * stays).  A caller using a fresh tag per receive knows a receipt it gets
 * back is its own.  Calling thread. */
uint64_t tr_channel_take_tagged(tr_channel_t *ch, uint64_t empty, uint64_t closed, uint64_t tag,
                                tr_wakes_t *wakes);
uint64_t tr_channel_taken_tagged(tr_channel_t *ch, uint64_t tag);
/* Put items[0..n) back at the head of the channel, in that order, ahead of
 * everything queued: for a receiver that took them but could not hand them
 * over (interrupted).  They are accepted even if that makes the channel
 * hold more than its capacity for a while, and even if it is closed; each
 * wakes a receiver.  TR_OK or TR_ENOMEM (nothing put back). */
int tr_channel_unget(tr_channel_t *ch, const uint64_t *items, size_t n, tr_wakes_t *wakes);
/* Queue an asynchronous waiter for room (TR_SEND) or an item (TR_RECV), or
 * for close.  TR_OK: ready now, no waiter (retry at once).  TR_PENDING:
 * *waiter is queued.  TR_ESHUTDOWN: the port's runtime is shut down;
 * TR_ECLOSED: the port is closed; TR_EINVAL: bad direction, NULL port or
 * waiter, token 0; TR_ENOMEM. */
int tr_channel_wait(tr_channel_t *ch, int direction, tr_port_t *port, uint64_t token,
                    tr_waiter_t **waiter);
/* The same for the calling thread: TR_OK (ready now, no waiter), TR_PENDING
 * (*waiter queued: wait with tr_waiter_wait, then retry), TR_EINVAL or
 * TR_ENOMEM. */
int tr_channel_wait_thread(tr_channel_t *ch, int direction, tr_waiter_t **waiter);
/* Pass on an unused wake: wake one waiter of that direction if it could now
 * proceed. */
void tr_channel_notify(tr_channel_t *ch, int direction, tr_wakes_t *wakes);
/* Wake every waiter; later sends fail, queued items stay receivable.
 * Idempotent. */
void tr_channel_close(tr_channel_t *ch, tr_wakes_t *wakes);
int tr_channel_closed(tr_channel_t *ch);
size_t tr_channel_len(tr_channel_t *ch);
/* 1 if some waiter (a thread or a port) is queued for that direction right
 * now, else 0 (also for a bad direction): a snapshot, for a caller deciding
 * whether a send (TR_RECV waiters) or a receive (TR_SEND waiters) may wake
 * somebody and so is worth a wakes buffer. */
int tr_channel_waiting(tr_channel_t *ch, int direction);
size_t tr_channel_capacity(tr_channel_t *ch);

/* Another reference for another holder (a C thread); drop it with
 * tr_channel_release.  Any thread. */
void tr_channel_ref(tr_channel_t *ch);

/* ---- values: items C and Python both understand --------------------------
 * Channel items below 2**63 are opaque keys (the Python shim keeps the
 * Python object of each in a dict; raw C users pick their own).  Items with
 * bit 63 set are *values*: an int64 or a byte string, made by tr_item_int /
 * tr_item_bytes.  Ints in [-2**61, 2**61) live in the item itself; other
 * ints and every byte string live in a heap box the item owns.  Whoever
 * holds a value item frees it exactly once with tr_item_free: the maker until
 * a send accepts it, the channel while it is queued (a channel frees the
 * values still in it when its last reference goes), the receiver after it.
 * The Python shim sends Python ints (not bools) and bytes as values and
 * receives values as int and bytes, so C and Python producers and consumers
 * mix on one channel.  Every function here: any thread, no lock. */
enum tr_item_kind { TR_ITEM_KEY = 0, TR_ITEM_INT = 1, TR_ITEM_BYTES = 2 };
/* A value item for v, or 0 if out of memory (only ints outside the inline
 * range allocate). */
uint64_t tr_item_int(int64_t v);
/* A value item holding a copy of data[0..len), or 0 if out of memory. */
uint64_t tr_item_bytes(const void *data, size_t len);
/* TR_ITEM_KEY, TR_ITEM_INT or TR_ITEM_BYTES. */
int tr_item_kind(uint64_t item);
/* The int of an int item (0 for any other). */
int64_t tr_item_get_int(uint64_t item);
/* The bytes of a bytes item (valid until it is freed) and *len, or NULL and
 * *len = 0 for any other.  len may be NULL. */
const void *tr_item_get_bytes(uint64_t item, size_t *len);
/* Free a value item's box (nothing for an inline int or an opaque key). */
void tr_item_free(uint64_t item);
/* For a sender interrupted between making a boxed item and learning it (a
 * Python exception right after tr_item_int/_bytes returned): each thread
 * remembers the last box it made until a channel accepts it or it is freed;
 * this frees that box, if any, and returns 1 (else 0).  Calling thread. */
int tr_item_free_unsent(void);
/* For a batch receiver (the shim's recv_many): which kinds items[0..n)
 * holds, as TR_ITEMS_* bits. */
enum { TR_ITEMS_KEYS = 1, TR_ITEMS_INTS = 2, TR_ITEMS_BOXED = 4 };
int tr_items_classify(const uint64_t *items, size_t n);
/* out[i] = tr_item_get_int(items[i]) for i < n. */
void tr_items_ints(const uint64_t *items, size_t n, int64_t *out);
/* tr_item_free every item of items[0..n), then set *done to 1 (done may be
 * NULL): the caller's memory says whether the boxes are gone, even if its
 * thread is interrupted right after the call returns. */
void tr_items_free(const uint64_t *items, size_t n, int *done);

/* Send a value item (TR_EINVAL for an opaque key), waiting up to timeout
 * seconds for room (0: not at all, TR_EFULL; negative: no limit).  TR_OK:
 * the channel owns it now.  Any other return: the caller still owns it
 * (TR_EFULL, TR_TIMEDOUT, TR_ECLOSED, TR_EINVAL, TR_ENOMEM). */
int tr_channel_send_value(tr_channel_t *ch, uint64_t item, double timeout, tr_wakes_t *wakes);
/* Take the oldest item if it is a value, waiting up to timeout seconds for
 * one (0: not at all, TR_EEMPTY; negative: no limit).  TR_OK: *item is the
 * caller's (free it with tr_item_free).  TR_ETYPE: the oldest item is a
 * Python object, which a C receiver cannot take: it stays first in the
 * channel, for a Python receiver (who is woken).  TR_ECLOSED: closed and
 * drained; TR_TIMEDOUT; TR_EINVAL. */
int tr_channel_recv_value(tr_channel_t *ch, uint64_t *item, double timeout, tr_wakes_t *wakes);
/* For the shim's receive path: it read the value item it took from ch and
 * is done with it: forget this thread's take receipt if it names (ch, item),
 * then tr_item_free(item).  Calling thread. */
void tr_channel_took_value(tr_channel_t *ch, uint64_t item);

/* ---- promises and native jobs ---------------------------------------------
 * A promise is the native end of one result a consumer awaits (the Python
 * shim's Completion and run_native): made for a (port, token) like an op,
 * completed once by whoever holds it, from any thread, with no lock of the
 * caller's and no Python.  Its one final record (token, status, value)
 * reaches the port like any completion made by a C thread (through the
 * dispatcher, or directly to a drain already under way).
 *
 * Promises are not ops: tr_cancel does not know their tokens (the consumer
 * cancels a promise with tr_promise_cancel).
 *
 * Exactly one of "completed" and "cancelled" wins.  The consumer cancels
 * with tr_promise_cancel; a port's close cancels its pending promises
 * (TR_ECLOSED), a shutdown every one (TR_ESHUTDOWN).  A late completion
 * does nothing and returns what won: TR_EDONE (completed before),
 * TR_CANCELLED, TR_ECLOSED or TR_ESHUTDOWN.  A cancelled promise's record
 * has status TR_CANCELLED.
 *
 * References: the creator owns one; tr_promise_ref adds one for each other
 * holder (a C thread); each is dropped once with tr_promise_release, after
 * which the pointer must not be used.  A promise stays valid (every call
 * fails cleanly) after its runtime shut down, until its last reference is
 * dropped. */

/* A native function run by a worker thread: arg is the caller's, cancelled
 * points at an int that becomes non-zero once the promise is cancelled (poll
 * it in long loops and return early; the result is then discarded).  Read
 * it with a relaxed atomic load (__atomic_load_n) to stay ThreadSanitizer-
 * clean; a volatile read works too.  The return value is the result. */
typedef int64_t (*tr_native_fn)(void *arg, const volatile int *cancelled);

/* A pending promise for (port, token).  TR_OK; TR_EINVAL (NULL, token 0, a
 * port of another runtime); TR_ECLOSED (closed port); TR_ESHUTDOWN;
 * TR_ENOMEM.  Tokens share the runtime's op token space. */
int tr_promise_new(tr_runtime_t *rt, tr_port_t *port, uint64_t token, tr_promise_t **out);
void tr_promise_ref(tr_promise_t *p);
void tr_promise_release(tr_promise_t *p);
/* Complete with status (TR_OK, or an error status the consumer raises: any
 * TR_* but TR_PENDING; TR_CANCELLED cancels the consumer's future and sets
 * the cancel flag) and value.  TR_OK: this call completed it.  Else see above; TR_EINVAL for a
 * bad status. */
int tr_promise_complete(tr_promise_t *p, int status, int64_t value);
/* Complete with TR_OK and a copy of data[0..len) (the record's value is
 * len).  TR_ENOMEM: not completed (try again, or complete with a status). */
int tr_promise_complete_bytes(tr_promise_t *p, const void *data, size_t len);
/* The consumer gives up: TR_OK if this call cancelled it (the cancel flag is
 * set), else what won. */
int tr_promise_cancel(tr_promise_t *p);
/* TR_PENDING; the status it was completed with; or TR_CANCELLED (by anyone). */
int tr_promise_state(const tr_promise_t *p);
/* 1 once the final record is on its way (the promise is finished and no
 * job's function still runs for it), else 0.  For a consumer that stopped
 * waiting (its loop closed) but must keep a job's argument alive. */
int tr_promise_settled(const tr_promise_t *p);
/* The flag a job's function polls (see tr_native_fn); valid while the
 * caller holds a reference. */
const volatile int *tr_promise_cancel_flag(tr_promise_t *p);
/* The byte result, for the consumer after the final record (TR_OK) arrived:
 * valid while it holds its reference.  NULL (and *len 0) for no byte result. */
const void *tr_promise_bytes(const tr_promise_t *p, size_t *len);
/* Run fn(arg, cancel flag) on a worker thread and complete p with TR_OK and
 * its result.  Workers take jobs in FIFO order with the runtime's other
 * pool work.  Cancelled before a worker takes it: fn never runs.  Cancelled
 * while it runs: the flag is set and its result dropped.  drop (NULL: none)
 * is called with arg exactly once when the job is done with it: after fn
 * returned, or instead of fn when it is skipped (cancelled first, runtime
 * shut down), on a worker or the shutting-down thread, before the final
 * record is queued; so arg may be heap memory the job owns.  The final
 * record comes only after that, so arg may also be freed by whoever awaits
 * the record.  rt: NULL, or p's runtime (TR_EINVAL for another).  TR_OK;
 * TR_EINVAL (NULL fn, a second job for p); TR_EDONE, TR_CANCELLED,
 * TR_ECLOSED, TR_ESHUTDOWN (p finished or the runtime stopped: fn will not
 * run).  On any error drop is not called: arg is still the caller's.  A
 * shutdown cancels running jobs (flag set) and waits for their functions to
 * return. */
int tr_promise_run(tr_runtime_t *rt, tr_promise_t *p, tr_native_fn fn, void *arg,
                   void (*drop)(void *arg));
int tr_promise_submit(tr_promise_t *p, tr_native_fn fn, void *arg, void (*drop)(void *arg));

/* The public C API table for other extensions (tokio_runtime_capi.h), as an
 * address: the Python package wraps it in a capsule. */
const void *tr_capi_table(void);

/* ---- mutexes -------------------------------------------------------------
 * A FIFO lock with direct hand-off: unlocking gives the lock to the oldest
 * waiter, thread or port alike.  Not tied to a thread: any thread may unlock.
 *
 * Each acquisition names a `ticket` (any non-zero number the caller picks,
 * unique among its acquisitions in flight), and the lock remembers the
 * ticket of its holder: a caller that cannot tell whether its acquisition
 * went through (interrupted right after the call returned, or its waiter's
 * hand-off raced with its cancellation) gives the lock back with
 * tr_mutex_unlock_if(ticket), which does nothing if the lock is not held
 * under that ticket.  Every function is safe from any thread. */
int tr_mutex_new(tr_mutex_t **out);
void tr_mutex_release(tr_mutex_t *m);
/* TR_OK (now held under ticket) or TR_EBUSY.  TR_EINVAL: ticket 0. */
int tr_mutex_try_lock(tr_mutex_t *m, uint64_t ticket);
/* TR_OK, TR_TIMEDOUT (negative timeout: forever) or TR_EINVAL (NaN, ticket 0). */
int tr_mutex_lock_blocking(tr_mutex_t *m, double timeout, uint64_t ticket);
/* TR_OK: held now, no waiter.  TR_PENDING: *waiter queued; its record means
 * the lock was handed to it (held under ticket).  TR_ESHUTDOWN: the port's
 * runtime is shut down; TR_ECLOSED, TR_EINVAL, TR_ENOMEM as for
 * tr_channel_wait. */
int tr_mutex_wait(tr_mutex_t *m, tr_port_t *port, uint64_t token, uint64_t ticket,
                  tr_waiter_t **waiter);
/* The same for the calling thread: TR_OK (held now), TR_PENDING (*waiter
 * queued: tr_waiter_wait returning TR_OK means the lock was handed to it),
 * TR_EINVAL or TR_ENOMEM. */
int tr_mutex_wait_thread(tr_mutex_t *m, uint64_t ticket, tr_waiter_t **waiter);
/* TR_OK, or TR_EINVAL if it was not locked. */
int tr_mutex_unlock(tr_mutex_t *m, tr_wakes_t *wakes);
/* Unlock only if held under ticket: TR_OK, or TR_EINVAL (not held under it:
 * nothing done). */
int tr_mutex_unlock_if(tr_mutex_t *m, uint64_t ticket, tr_wakes_t *wakes);
int tr_mutex_locked(tr_mutex_t *m);
/* Another reference for another holder; drop it with tr_mutex_release. */
void tr_mutex_ref(tr_mutex_t *m);
/* A ticket no other caller of tr_mutex_ticket gets, far from the small
 * ones the Python shim counts: for C code that takes a Mutex Python also
 * uses. */
uint64_t tr_mutex_ticket(void);

/* Name the calling thread "{prefix}-{suffix}" (cut to 15 bytes), so that
 * non-runtime helper threads line up in top -H.  Returns 0 or an errno. */
int tr_name_current_thread(const char *prefix, const char *suffix);

/* CFFI-END */

#ifdef __cplusplus
}
#endif

#endif /* TOKIO_RUNTIME_H */
