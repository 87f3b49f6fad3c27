/*
 * lock.h - the C core's one lock order, and the checker that enforces it in
 * test builds (layer L1; lock.c holds the checker).
 *
 * Every mutex of the core is taken with tr__lock(mu, RANK) and dropped with
 * tr__unlock(mu, RANK); every condition-variable wait goes through
 * tr__cond_wait_until(cv, mu, RANK, deadline).  Any thread.
 *
 * ---- Lock order --------------------------------------------------------------
 * Outermost first.  A thread may take a lock only while every lock it holds
 * ranks strictly lower (no two locks of one rank are ever held together):
 *
 *   1 SHUTDOWN  rt->shutdown_mu (runtime.c).  Held for the whole of a
 *               shutdown, which then runs messages, ops and leftover pool
 *               work itself, and so can reach every lock below.
 *   2 OWNER     a channel's or mutex's lock (tr__sync_t.mu, waiter.c).
 *               Under it: the inbox lock (tr__waiter_new asks whether the
 *               runtime still accepts work) and port locks (tr__waiter_new
 *               and every wake check tr__port_closed()).  Thread waiters
 *               wait on their condition variable with it.
 *   3 INBOX     the inbox lock (inbox.c; was rt->mu).  Under it: the pool
 *               lock (tr_debug_stall_worker and tr_promise_run queue their
 *               work only while the runtime runs).  ev_async_send is called under it (no lock
 *               of ours inside).
 *   4 POOL      pool.c.  Leaf.
 *   5 PORT      a port's queue lock (port.c).  Leaf: records are released,
 *               and the port reported to the hub, after it is dropped.
 *   6 HUB       the dispatch hub's ready list lock (dispatch.c; was
 *               rt->ready_mu).  Leaf.
 *   7 OPDATA    an op's private state (counter.c's shared counter).  Leaf.
 *   8 PROMISES  the op set's list of pending promises (promise.c).  Leaf:
 *               cancelling them (records pushed, references dropped) is
 *               done after it is dropped.
 *   9 EXIT      rt->exit_mu (runtime.c): "the loop thread has returned".  Leaf.
 *
 * The old comment "no port lock nests in an owner lock" was wrong: wakes
 * (tr__waitq_wake_one -> tr__port_closed) and tr__waiter_new take port locks
 * under the owner lock.  What does hold: records are *pushed* (port lock,
 * then hub lock) only after the owner lock is dropped (tr__wake_flush), and a
 * record's release, which may take an owner lock, runs outside port locks.
 *
 * ---- The checker (TR_LOCK_CHECK) ---------------------------------------------
 * Built with -DTR_LOCK_CHECK (the Makefile's C test builds: plain, TSan,
 * ASan), each thread keeps a bitmask of the ranks it holds; taking rank r
 * while holding any rank >= r prints file:line and both ranks and aborts, as
 * does dropping a rank not held.  A condition-variable wait drops its rank
 * for the wait and takes it again after, with the same check (the mutex is
 * re-taken while the thread's other locks are still held).  Without the
 * macro (the Python extension) the wrappers are plain pthread calls.
 */
#ifndef TR_LOCK_H
#define TR_LOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

enum {
    TR__RANK_SHUTDOWN = 1,
    TR__RANK_OWNER,
    TR__RANK_INBOX,
    TR__RANK_POOL,
    TR__RANK_PORT,
    TR__RANK_HUB,
    TR__RANK_OPDATA,
    TR__RANK_PROMISES,
    TR__RANK_EXIT,
    TR__RANK_COUNT /* one past the last */
};

#ifdef TR_LOCK_CHECK
/* Would taking `rank` while holding the ranks in `held` (bit r = rank r)
 * break the order? */
bool tr__rank_violation(unsigned held, int rank);
/* The calling thread's held ranks. */
unsigned tr__ranks_held(void);
void tr__rank_acquire(int rank, const char *file, int line);
void tr__rank_release(int rank, const char *file, int line);
void tr__rank_wait_begin(int rank, const char *file, int line);
#define tr__lock(mu, rank) (tr__rank_acquire((rank), __FILE__, __LINE__), (void)pthread_mutex_lock(mu))
#define tr__unlock(mu, rank) ((void)pthread_mutex_unlock(mu), tr__rank_release((rank), __FILE__, __LINE__))
#define tr__cond_wait_until(cv, mu, rank, deadline) \
    tr__cond_wait_until_at((cv), (mu), (rank), (deadline), __FILE__, __LINE__)
#else
#define tr__lock(mu, rank) ((void)(rank), (void)pthread_mutex_lock(mu))
#define tr__unlock(mu, rank) ((void)(rank), (void)pthread_mutex_unlock(mu))
#define tr__cond_wait_until(cv, mu, rank, deadline) \
    tr__cond_wait_until_at((cv), (mu), (rank), (deadline), NULL, 0)
#endif

/* Wait on cv (mu held, of rank `rank`) until signalled or until the absolute
 * CLOCK_MONOTONIC deadline (NULL: none) passes; cv must have been made with
 * tr__cond_init_monotonic (clock.h).  Returns 0 or ETIMEDOUT; like every
 * condition wait it may return early, so callers loop on their predicate.
 * The one place that chooses between a timed and an untimed wait. */
static inline int tr__cond_wait_until_at(pthread_cond_t *cv, pthread_mutex_t *mu, int rank,
                                         const struct timespec *deadline, const char *file,
                                         int line) {
#ifdef TR_LOCK_CHECK
    tr__rank_wait_begin(rank, file, line);
#else
    (void)rank;
    (void)file;
    (void)line;
#endif
    int err = deadline ? pthread_cond_timedwait(cv, mu, deadline) : pthread_cond_wait(cv, mu);
#ifdef TR_LOCK_CHECK
    tr__rank_acquire(rank, file, line);
#endif
    return err;
}

#endif /* TR_LOCK_H */
