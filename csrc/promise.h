/*
 * promise.h - promises: results that native code hands to a consumer, and
 * native jobs on the worker pool that complete them (layer L5).
 *
 * The public functions (tr_promise_*) are in tokio_runtime.h.  The two
 * below are for the runtime (L6): a port's close and a shutdown cancel the
 * pending promises, so native code that still holds them learns it
 * (TR_ECLOSED, TR_ESHUTDOWN) and a running job sees its cancel flag.
 */
#ifndef TR_PROMISE_H
#define TR_PROMISE_H

#include "op.h"

/* Cancel the pending promises of port (the op set's port_closing hook).
 * Any thread. */
void tr__promises_port_closing(tr__opset_t *set, tr_port_t *port);
/* Cancel every pending promise with TR_ESHUTDOWN and refuse new ones.
 * Any thread; idempotent. */
void tr__promises_halt(tr__opset_t *set);

#endif /* TR_PROMISE_H */
