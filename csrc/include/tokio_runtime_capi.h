/*
 * tokio_runtime_capi.h - the C API for other Python extensions.
 *
 * A C extension that wants to run its native work beside asyncio on a
 * tokio_runtime runtime includes this header (its folder is
 * tokio_runtime.get_include()), calls tr_import_capi() once in its module's
 * init function, and then reaches the runtime through the table TR_CAPI:
 *
 *   - completes a Completion that Python made (rt.completion()) with a
 *     status, an int64 or a byte string, from any thread, without the GIL;
 *   - runs a function on the runtime's worker pool that completes one;
 *   - sends int64s and byte strings to a Channel and receives them, from
 *     any thread, without the GIL, mixing with Python senders/receivers;
 *   - takes and releases a Mutex.
 *
 * Nothing is linked: the table's functions live in the tokio_runtime
 * package's own module, which exports the table as the capsule
 * "tokio_runtime._C_API" (the NumPy pattern).  tr_import_capi checks the
 * table's ABI version against the one this header describes and fails
 * with ImportError on a mismatch.
 *
 * Handles.  TR_PromiseFromObject, TR_ChannelFromObject and
 * TR_MutexFromObject (GIL held) turn the Python objects into native
 * handles, each with a reference of its own: the handle stays valid, in any
 * thread, until the extension drops it with the matching *_release, even
 * after the Python object is gone, its loop closed or its runtime shut down.
 * Calls on a handle whose consumer is gone fail cleanly: a promise returns
 * TR_CANCELLED / TR_ECLOSED / TR_ESHUTDOWN, a closed channel TR_ECLOSED.
 *
 * Every table function is safe from any thread, with or without the GIL,
 * and never calls into Python; those that may block say so.  Statuses are
 * the TR_* codes of tokio_runtime.h.  Define TR_CAPI_NO_PYTHON to get the
 * table type without the Python-aware helpers.
 */
#ifndef TOKIO_RUNTIME_CAPI_H
#define TOKIO_RUNTIME_CAPI_H

#ifndef TR_CAPI_NO_PYTHON
/* First, as Python asks: it sets the feature macros (_GNU_SOURCE, ...) the
 * system headers below must see. */
#include <Python.h>
#endif
#include <stddef.h>
#include <stdint.h>

#include "tokio_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever the table below changes in any way. */
#define TR_CAPI_VERSION 1
#define TR_CAPI_CAPSULE "tokio_runtime._C_API"

typedef struct tr_capi {
    uint32_t abi_version;   /* TR_CAPI_VERSION of the installed package */
    uint32_t size;          /* sizeof(tr_capi_t) there */
    /* "TR_OK", "TR_ECLOSED", ...; "unknown" for anything else. */
    const char *(*status_name)(int status);

    /* ---- promises (a Completion's native end) ---------------------------
     * See tr_promise_* in tokio_runtime.h.  complete / complete_bytes return
     * TR_OK if this call completed it; TR_EDONE if it was completed before;
     * TR_CANCELLED, TR_ECLOSED (its loop is gone), TR_ESHUTDOWN if the
     * consumer side gave up first.  Safe to call twice and after anything. */
    int (*promise_complete)(tr_promise_t *p, int status, int64_t value);
    int (*promise_complete_bytes)(tr_promise_t *p, const void *data, size_t len);
    /* TR_PENDING, the status it completed with, or TR_CANCELLED. */
    int (*promise_state)(const tr_promise_t *p);
    /* Non-zero once the awaiting side cancelled (or closed, or shut down). */
    const volatile int *(*promise_cancel_flag)(tr_promise_t *p);
    /* Run fn(arg, cancel flag) on a worker; p completes with its result
     * (tr_promise_run with rt NULL).  fn is never run if p is cancelled
     * first.  drop(arg) (drop may be NULL) is called exactly once when the
     * job is done with arg, whether fn ran or was skipped: give the job a
     * heap arg and free it there.  On an error return drop is not called
     * and arg is still yours. */
    int (*promise_run)(tr_promise_t *p, tr_native_fn fn, void *arg, void (*drop)(void *arg));
    void (*promise_ref)(tr_promise_t *p);
    void (*promise_release)(tr_promise_t *p);

    /* ---- channels --------------------------------------------------------
     * timeout: seconds; 0 does not wait (TR_EFULL / TR_EEMPTY), negative
     * waits without limit (blocks the calling thread: never call a
     * waiting one with the GIL held).  send_*: TR_OK, TR_EFULL, TR_TIMEDOUT,
     * TR_ECLOSED, TR_ENOMEM, TR_EINVAL.  recv: TR_OK (*item is yours: read
     * it with item_*, then item_free it), TR_EEMPTY, TR_TIMEDOUT,
     * TR_ECLOSED (closed and drained), TR_ETYPE (the next item is a Python
     * object a C receiver cannot take; it stays for a Python receiver).
     * A channel belongs to no runtime: a runtime's shutdown does not wake a
     * C thread waiting in it; close the channel, or wait with a timeout. */
    int (*channel_send_int)(tr_channel_t *ch, int64_t value, double timeout);
    int (*channel_send_bytes)(tr_channel_t *ch, const void *data, size_t len, double timeout);
    int (*channel_recv)(tr_channel_t *ch, uint64_t *item, double timeout);
    void (*channel_close)(tr_channel_t *ch);
    int (*channel_closed)(tr_channel_t *ch);
    void (*channel_ref)(tr_channel_t *ch);
    void (*channel_release)(tr_channel_t *ch);
    int (*item_kind)(uint64_t item);                        /* TR_ITEM_INT / _BYTES */
    int64_t (*item_int)(uint64_t item);
    const void *(*item_bytes)(uint64_t item, size_t *len);  /* valid until item_free */
    void (*item_free)(uint64_t item);

    /* ---- mutexes ---------------------------------------------------------
     * The Mutex Python code uses, FIFO with Python's waiters.  Take a fresh
     * ticket per acquisition; lock: TR_OK, TR_EBUSY (timeout 0),
     * TR_TIMEDOUT; unlock: TR_OK, or TR_EINVAL if not held under ticket. */
    uint64_t (*mutex_ticket)(void);
    int (*mutex_lock)(tr_mutex_t *m, double timeout, uint64_t ticket);
    int (*mutex_unlock)(tr_mutex_t *m, uint64_t ticket);
    void (*mutex_ref)(tr_mutex_t *m);
    void (*mutex_release)(tr_mutex_t *m);
} tr_capi_t;

#ifndef TR_CAPI_NO_PYTHON
/* The table, once tr_import_capi() succeeded.  Static: each translation
 * unit that uses it calls tr_import_capi() (cheap after the first). */
static const tr_capi_t *TR_CAPI = NULL;
static PyObject *tr__capi_export = NULL;

/* Import the table (GIL held, e.g. in PyInit_*).  0, or -1 with
 * ImportError (package missing, or built for another ABI version). */
static int tr_import_capi(void) {
    if (TR_CAPI) return 0;
    const tr_capi_t *api = (const tr_capi_t *)PyCapsule_Import(TR_CAPI_CAPSULE, 0);
    if (!api) return -1;
    if (api->abi_version != TR_CAPI_VERSION || api->size < sizeof(tr_capi_t)) {
        PyErr_Format(PyExc_ImportError,
                     "tokio_runtime C API version %u (table of %u bytes) is installed, but this "
                     "extension was built for version %u: rebuild it against the installed "
                     "tokio_runtime (tokio_runtime.get_include())",
                     (unsigned)api->abi_version, (unsigned)api->size, (unsigned)TR_CAPI_VERSION);
        return -1;
    }
    PyObject *mod = PyImport_ImportModule("tokio_runtime._capi");
    if (!mod) return -1;
    tr__capi_export = PyObject_GetAttrString(mod, "export");
    Py_DECREF(mod);
    if (!tr__capi_export) return -1;
    TR_CAPI = api;
    return 0;
}

static int tr__capi_handle(PyObject *obj, const char *kind, void **out) {
    if (!TR_CAPI) {
        PyErr_SetString(PyExc_RuntimeError, "tokio_runtime: call tr_import_capi() first");
        return -1;
    }
    PyObject *addr = PyObject_CallFunction(tr__capi_export, "Os", obj, kind);
    if (!addr) return -1;
    void *p = PyLong_AsVoidPtr(addr);
    Py_DECREF(addr);
    if (!p) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "tokio_runtime: NULL handle");
        return -1;
    }
    *out = p;
    return 0;
}

/* GIL held.  0 and a new handle (release it with TR_CAPI->*_release), or
 * -1 with TypeError (not that kind of object).  A finished completion is
 * not an error: its handle is returned, and completing it says so
 * (TR_EDONE, TR_CANCELLED, ...); a handle of a shut-down runtime's
 * completion likewise fails cleanly when used (TR_ESHUTDOWN). */
static inline int TR_PromiseFromObject(PyObject *completion, tr_promise_t **out) {
    return tr__capi_handle(completion, "completion", (void **)out);
}
static inline int TR_ChannelFromObject(PyObject *channel, tr_channel_t **out) {
    return tr__capi_handle(channel, "channel", (void **)out);
}
static inline int TR_MutexFromObject(PyObject *mutex, tr_mutex_t **out) {
    return tr__capi_handle(mutex, "mutex", (void **)out);
}

/* GIL held.  Raise the exception tokio_runtime's Python code raises for
 * status (the package maps it: TR_ECLOSED is ChannelClosed, TR_EINVAL
 * ValueError, TR_TIMEDOUT TimeoutError, TR_ETYPE TypeError, TR_ENOMEM
 * MemoryError, the others, TR_CANCELLED included, RuntimeError)
 * and return NULL (for `return TR_RaiseStatus(rc);`). */
static inline PyObject *TR_RaiseStatus(int status) {
    PyObject *mod = PyImport_ImportModule("tokio_runtime._capi");
    if (!mod) return NULL;
    PyObject *exc = PyObject_CallMethod(mod, "status_exception", "i", status);
    Py_DECREF(mod);
    if (!exc) return NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}
#endif /* TR_CAPI_NO_PYTHON */

#ifdef __cplusplus
}
#endif

#endif /* TOKIO_RUNTIME_CAPI_H */
