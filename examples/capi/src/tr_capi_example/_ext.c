/*
 * tr_capi_example._ext - an extension module that does its native work
 * beside asyncio through tokio_runtime's public C API, and nothing else.
 *
 * It includes tokio_runtime_capi.h (from tokio_runtime.get_include()), links
 * nothing of tokio_runtime, and reaches the runtime through the function
 * table TR_CAPI, which tr_import_capi() fetches from the capsule
 * "tokio_runtime._C_API" in PyInit.  What it shows:
 *
 *   zcompress_start / zdecompress_start
 *       zlib on a runtime worker thread (TR_CAPI->promise_run), completing a
 *       Completion that Python awaits with the result bytes
 *       (promise_complete_bytes) or an error status (promise_complete).
 *   producer_start / producer_join
 *       a plain pthread that sends int64s (or byte strings) into a
 *       tokio_runtime.Channel with the GIL nowhere in sight: C -> Python.
 *   consumer_sum
 *       receives ints and byte strings from a Channel in C: Python -> C.
 *   mutex_hold
 *       takes a tokio_runtime.Mutex from C, FIFO with Python's waiters.
 *
 * Every blocking call runs with the GIL released; TR_CAPI functions never
 * touch Python, so they are safe there and in threads Python never saw.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first: it sets the feature macros (_GNU_SOURCE ...) */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "tokio_runtime_capi.h"

/* ======================================================================
 * Native jobs: zlib on the runtime's workers
 * ======================================================================
 *
 * TR_CAPI->promise_run(p, fn, arg, drop) queues fn(arg) for a worker; the
 * worker completes p with fn's return value unless fn completed it first
 * (we do, with the bytes).  Ownership of arg:
 *
 *   - drop(arg) is called exactly once when the job is done with arg:
 *     after fn returned, or instead of fn when the job is skipped
 *     (cancelled before a worker took it, runtime shut down).  So arg is a
 *     heap job the job owns, and drop frees it.  Nothing else may free it:
 *     the Python future is done as soon as it is cancelled, possibly while
 *     fn is still reading arg.
 *   - On an error return drop is not called: arg is still ours.
 *
 * The promise: TR_PromiseFromObject gives us a reference; a queued job
 * holds one of its own, so fn may use p (kept in the job, borrowed) and we
 * drop ours right after promise_run.
 */

enum { OP_COMPRESS, OP_DECOMPRESS };

typedef struct job {
    tr_promise_t *promise;  /* borrowed from the job's own reference */
    int op;                 /* OP_* */
    int level;              /* compress: zlib level */
    size_t max_size;        /* decompress: largest output accepted */
    size_t len;
    unsigned char data[];   /* a copy of the input bytes */
} job_t;

static atomic_int live_jobs; /* jobs allocated and not yet dropped: 0 when nothing leaked */

/* The job's drop callback: the job is done with arg (any thread). */
static void job_drop(void *arg) {
    free(arg);
    atomic_fetch_sub(&live_jobs, 1);
}

/* Is the awaiting side gone?  A relaxed atomic read, as tokio_runtime.h
 * recommends (ThreadSanitizer-clean). */
static int cancelled_now(const volatile int *flag) { return __atomic_load_n(flag, __ATOMIC_RELAXED); }

static int z_status(int zrc) { /* a zlib error as a tokio_runtime status */
    return zrc == Z_MEM_ERROR ? TR_ENOMEM : TR_EINVAL; /* EINVAL: ValueError in Python */
}

/* Complete p with a copy of out[0..len) if status is TR_OK, else with the
 * error status.  Either is a no-op if the promise was cancelled meanwhile
 * (the call returns TR_CANCELLED: nobody waits for the result). */
static void complete_with(tr_promise_t *p, int status, const void *out, size_t len) {
    if (status == TR_OK && TR_CAPI->promise_complete_bytes(p, out, len) != TR_ENOMEM) return;
    TR_CAPI->promise_complete(p, status == TR_OK ? TR_ENOMEM : status, 0); /* no copy: ENOMEM */
}

static void do_compress(job_t *job) {
    uLongf out_len = compressBound((uLong)job->len);
    unsigned char *out = malloc(out_len ? out_len : 1);
    if (!out) {
        TR_CAPI->promise_complete(job->promise, TR_ENOMEM, 0);
        return;
    }
    int zrc = compress2(out, &out_len, job->data, (uLong)job->len, job->level);
    complete_with(job->promise, zrc == Z_OK ? TR_OK : z_status(zrc), out, out_len);
    free(out);
}

/* inflate in steps, polling the cancel flag between them: a long job that
 * nobody awaits any more stops early (its result would be dropped). */
static void do_decompress(job_t *job, const volatile int *cancelled) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) {
        TR_CAPI->promise_complete(job->promise, TR_ENOMEM, 0);
        return;
    }
    /* The buffer grows up to limit = max_size + 1 bytes: filling that means
     * the output is larger than allowed. */
    size_t limit = job->max_size + 1, cap = job->len * 4 + 64, len = 0;
    if (cap > limit) cap = limit;
    unsigned char *out = malloc(cap);
    int status = out ? TR_OK : TR_ENOMEM, zrc = Z_OK;
    zs.next_in = job->data;
    zs.avail_in = (uInt)job->len; /* the start function caps len below 4 GiB */
    while (status == TR_OK && zrc != Z_STREAM_END) {
        if (cancelled_now(cancelled)) {
            status = TR_CANCELLED;
            break;
        }
        if (len == cap) { /* grow, within the limit */
            if (cap >= limit) {
                status = TR_EINVAL; /* more than max_size bytes */
                break;
            }
            size_t ncap = cap * 2 < limit ? cap * 2 : limit;
            unsigned char *n = realloc(out, ncap);
            if (!n) {
                status = TR_ENOMEM;
                break;
            }
            out = n;
            cap = ncap;
        }
        size_t room = cap - len;
        if (room > (1u << 20)) room = 1u << 20; /* at most 1 MiB between polls */
        zs.next_out = out + len;
        zs.avail_out = (uInt)room;
        zrc = inflate(&zs, Z_NO_FLUSH);
        len += room - zs.avail_out;
        if (zrc == Z_BUF_ERROR && zs.avail_in == 0) {
            status = TR_EINVAL; /* truncated input */
        } else if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) {
            status = z_status(zrc);
        }
    }
    inflateEnd(&zs);
    if (status == TR_OK && len > job->max_size) status = TR_EINVAL;
    complete_with(job->promise, status, out, len);
    free(out);
}

/* The tr_native_fn a worker runs.  It completes the promise itself (with
 * bytes, or an error status); the value it returns would complete it
 * otherwise, and is dropped.  job_drop frees the job afterwards. */
static int64_t job_fn(void *arg, const volatile int *cancelled) {
    job_t *job = arg;
    if (cancelled_now(cancelled)) return 0; /* cancelled as it started */
    if (job->op == OP_COMPRESS)
        do_compress(job);
    else
        do_decompress(job, cancelled);
    return 0;
}

/* Copy data and hand the job to a worker.  None, or NULL with an exception. */
static PyObject *job_start(PyObject *completion, Py_buffer *data, int op, int level,
                           size_t max_size) {
    if ((size_t)data->len > (size_t)UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "data is larger than zlib's 4 GiB limit");
        return NULL;
    }
    tr_promise_t *promise;
    if (TR_PromiseFromObject(completion, &promise) < 0) return NULL; /* TypeError ... */
    job_t *job = malloc(sizeof *job + (size_t)data->len);
    if (!job) {
        TR_CAPI->promise_release(promise);
        return PyErr_NoMemory();
    }
    memcpy(job->data, data->buf, (size_t)data->len); /* Python may reuse its buffer now */
    job->len = (size_t)data->len;
    job->op = op;
    job->level = level;
    job->max_size = max_size;
    job->promise = promise;
    atomic_fetch_add(&live_jobs, 1);
    int rc = TR_CAPI->promise_run(promise, job_fn, job, job_drop);
    TR_CAPI->promise_release(promise); /* the queued job holds its own reference */
    if (rc != TR_OK) {
        /* Not accepted, and drop will not be called: the job is still ours.
         * TR_EINVAL: the completion already has a job; TR_CANCELLED,
         * TR_EDONE, ...: it is finished; TR_ESHUTDOWN: the runtime stopped. */
        job_drop(job);
        return TR_RaiseStatus(rc);
    }
    Py_RETURN_NONE;
}

static PyObject *zcompress_start(PyObject *m, PyObject *args, PyObject *kw) {
    (void)m;
    static char *kwlist[] = {"completion", "data", "level", NULL};
    PyObject *completion;
    Py_buffer data;
    int level = Z_DEFAULT_COMPRESSION;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oy*|i:zcompress_start", kwlist, &completion,
                                     &data, &level))
        return NULL;
    PyObject *res = NULL;
    if (level < -1 || level > 9)
        PyErr_Format(PyExc_ValueError, "level must be -1..9, not %d", level);
    else
        res = job_start(completion, &data, OP_COMPRESS, level, 0);
    PyBuffer_Release(&data);
    return res;
}

static PyObject *zdecompress_start(PyObject *m, PyObject *args, PyObject *kw) {
    (void)m;
    static char *kwlist[] = {"completion", "data", "max_size", NULL};
    PyObject *completion;
    Py_buffer data;
    Py_ssize_t max_size = 256 << 20;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oy*|n:zdecompress_start", kwlist, &completion,
                                     &data, &max_size))
        return NULL;
    PyObject *res = NULL;
    if (max_size < 1)
        PyErr_SetString(PyExc_ValueError, "max_size must be at least 1");
    else
        res = job_start(completion, &data, OP_DECOMPRESS, 0, (size_t)max_size);
    PyBuffer_Release(&data);
    return res;
}

/* ======================================================================
 * A native producer thread: C -> Channel -> Python
 * ====================================================================== */

typedef struct producer {
    atomic_int refs;        /* the thread's and the Python handle's */
    atomic_int done;        /* set when the thread has finished sending */
    pthread_t thread;
    tr_channel_t *ch;       /* the thread's own reference */
    int64_t start, count;
    int close_after, as_bytes;
    int64_t sent;           /* read after the join */
    int status;             /* the last send's status (TR_OK if all went in) */
} producer_t;

static atomic_int live_producers; /* producer structs not yet freed */

static void producer_unref(producer_t *p) {
    if (atomic_fetch_sub(&p->refs, 1) == 1) {
        free(p);
        atomic_fetch_sub(&live_producers, 1);
    }
}

static void *producer_main(void *arg) {
    producer_t *p = arg;
    int rc = TR_OK;
    for (int64_t i = 0; i < p->count; i++) {
        int64_t v = p->start + i;
        if (p->as_bytes) {
            char text[24];
            int n = snprintf(text, sizeof text, "%lld", (long long)v);
            rc = TR_CAPI->channel_send_bytes(p->ch, text, (size_t)n, -1.0);
        } else {
            /* Waits (no limit, no GIL) while the channel is full.  Only a
             * receiver or a close ends that wait: a channel belongs to no
             * runtime, so shutting a runtime down does not. */
            rc = TR_CAPI->channel_send_int(p->ch, v, -1.0);
        }
        if (rc != TR_OK) break; /* TR_ECLOSED: somebody closed it */
        p->sent++;
    }
    if (p->close_after) TR_CAPI->channel_close(p->ch); /* the consumer's end of stream */
    p->status = rc;
    TR_CAPI->channel_release(p->ch);
    atomic_store(&p->done, 1);
    producer_unref(p);
    return NULL;
}

typedef struct {
    PyObject_HEAD
    producer_t *p;
    int joined;   /* 1 while a join is under way, 2 once joined */
} ProducerObject;

static void Producer_dealloc(ProducerObject *self) {
    if (self->p) {
        if (self->joined == 0) pthread_detach(self->p->thread); /* it frees itself */
        producer_unref(self->p);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Producer_done(ProducerObject *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(atomic_load(&self->p->done));
}

static PyGetSetDef Producer_getset[] = {
    {"done", (getter)Producer_done, NULL, "Whether the thread has stopped sending.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ProducerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tr_capi_example._ext.Producer",
    .tp_basicsize = sizeof(ProducerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A native producer thread (from producer_start); join it with producer_join.",
    .tp_dealloc = (destructor)Producer_dealloc,
    .tp_getset = Producer_getset,
};

static PyObject *producer_start(PyObject *m, PyObject *args, PyObject *kw) {
    (void)m;
    static char *kwlist[] = {"channel", "count", "start", "close", "as_bytes", NULL};
    PyObject *channel;
    long long count, start = 0;
    int close_after = 0, as_bytes = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OL|Lpp:producer_start", kwlist, &channel, &count,
                                     &start, &close_after, &as_bytes))
        return NULL;
    if (count < 0) {
        PyErr_SetString(PyExc_ValueError, "count must be >= 0");
        return NULL;
    }
    tr_channel_t *ch;
    if (TR_ChannelFromObject(channel, &ch) < 0) return NULL; /* TypeError if not a Channel */
    producer_t *p = calloc(1, sizeof *p);
    ProducerObject *handle = PyObject_New(ProducerObject, &ProducerType);
    if (!p || !handle) {
        free(p);
        Py_XDECREF(handle);
        TR_CAPI->channel_release(ch);
        return PyErr_NoMemory();
    }
    handle->p = NULL;
    handle->joined = 0;
    atomic_init(&p->refs, 2);
    atomic_init(&p->done, 0);
    p->ch = ch;
    p->start = start;
    p->count = count;
    p->close_after = close_after;
    p->as_bytes = as_bytes;
    p->status = TR_OK;
    atomic_fetch_add(&live_producers, 1);
    int err = pthread_create(&p->thread, NULL, producer_main, p);
    if (err) {
        TR_CAPI->channel_release(ch);
        free(p);
        atomic_fetch_sub(&live_producers, 1);
        Py_DECREF(handle);
        errno = err;
        return PyErr_SetFromErrno(PyExc_RuntimeError);
    }
    handle->p = p;
    return (PyObject *)handle;
}

static PyObject *producer_join(PyObject *m, PyObject *arg) {
    (void)m;
    if (!PyObject_TypeCheck(arg, &ProducerType)) {
        PyErr_Format(PyExc_TypeError, "expected a Producer, not '%.100s'", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    ProducerObject *self = (ProducerObject *)arg;
    if (self->joined == 1) {
        PyErr_SetString(PyExc_RuntimeError, "another thread is joining this producer");
        return NULL;
    }
    if (self->joined == 0) {
        self->joined = 1; /* under the GIL: a second joiner sees it */
        Py_BEGIN_ALLOW_THREADS
        pthread_join(self->p->thread, NULL);
        Py_END_ALLOW_THREADS
        self->joined = 2;
    }
    return Py_BuildValue("(Li)", (long long)self->p->sent, self->p->status);
}

/* ======================================================================
 * A native consumer: Python -> Channel -> C
 * ====================================================================== */

static PyObject *consumer_sum(PyObject *m, PyObject *args, PyObject *kw) {
    (void)m;
    static char *kwlist[] = {"channel", "timeout", NULL};
    PyObject *channel, *timeout_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:consumer_sum", kwlist, &channel, &timeout_obj))
        return NULL;
    double timeout = -1.0; /* None: wait without limit */
    if (timeout_obj != Py_None) {
        timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1.0 && PyErr_Occurred()) return NULL;
        if (!(timeout >= 0)) {
            PyErr_SetString(PyExc_ValueError, "timeout must be None or >= 0");
            return NULL;
        }
    }
    tr_channel_t *ch;
    if (TR_ChannelFromObject(channel, &ch) < 0) return NULL;

    uint64_t sum = 0; /* unsigned: wraps instead of overflowing */
    long long ints = 0, blobs = 0, nbytes = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        uint64_t item;
        rc = TR_CAPI->channel_recv(ch, &item, timeout);
        if (rc != TR_OK) break; /* TR_ECLOSED: closed and drained, the normal end */
        if (TR_CAPI->item_kind(item) == TR_ITEM_INT) {
            sum += (uint64_t)TR_CAPI->item_int(item);
            ints++;
        } else {
            size_t len;
            TR_CAPI->item_bytes(item, &len);
            nbytes += (long long)len;
            blobs++;
        }
        TR_CAPI->item_free(item); /* ours once received */
    }
    Py_END_ALLOW_THREADS
    TR_CAPI->channel_release(ch);
    if (rc == TR_ETYPE) {
        PyErr_SetString(PyExc_TypeError,
                        "the channel's next item is a Python object, not an int or bytes "
                        "(it stays in the channel for a Python receiver)");
        return NULL;
    }
    if (rc != TR_ECLOSED) return TR_RaiseStatus(rc); /* TR_TIMEDOUT: TimeoutError */
    return Py_BuildValue("{sLsLsLsL}", "ints", ints, "int_sum", (long long)sum, "bytes_items",
                         blobs, "bytes_total", nbytes);
}

/* ======================================================================
 * A Mutex held from C
 * ====================================================================== */

static PyObject *mutex_hold(PyObject *m, PyObject *args, PyObject *kw) {
    (void)m;
    static char *kwlist[] = {"mutex", "seconds", "timeout", NULL};
    PyObject *mutex;
    double seconds, timeout = -1.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Od|d:mutex_hold", kwlist, &mutex, &seconds,
                                     &timeout))
        return NULL;
    if (!(seconds >= 0 && seconds < 3600)) {
        PyErr_SetString(PyExc_ValueError, "seconds must be in [0, 3600)");
        return NULL;
    }
    tr_mutex_t *mx;
    if (TR_MutexFromObject(mutex, &mx) < 0) return NULL;
    uint64_t ticket = TR_CAPI->mutex_ticket(); /* a fresh one per acquisition */
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = TR_CAPI->mutex_lock(mx, timeout, ticket); /* FIFO with Python's waiters */
    if (rc == TR_OK) {
        struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        rc = TR_CAPI->mutex_unlock(mx, ticket); /* hands it to the oldest waiter */
    }
    Py_END_ALLOW_THREADS
    TR_CAPI->mutex_release(mx);
    if (rc != TR_OK) return TR_RaiseStatus(rc); /* TR_TIMEDOUT: TimeoutError */
    Py_RETURN_NONE;
}

/* ======================================================================
 * Small things
 * ====================================================================== */

static PyObject *status_name(PyObject *m, PyObject *arg) {
    (void)m;
    long status = PyLong_AsLong(arg);
    if (status == -1 && PyErr_Occurred()) return NULL;
    return PyUnicode_FromString(TR_CAPI->status_name(status < INT_MIN || status > INT_MAX
                                                          ? -1
                                                          : (int)status));
}

static PyObject *live_counts(PyObject *m, PyObject *Py_UNUSED(ignored)) {
    (void)m;
    return Py_BuildValue("{sisi}", "jobs", atomic_load(&live_jobs), "producers",
                         atomic_load(&live_producers));
}

/* For benchmarks: a tr_native_fn that does nothing, for tokio_runtime.run_native. */
static int64_t noop_fn(void *arg, const volatile int *cancelled) {
    (void)arg;
    (void)cancelled;
    return 1;
}

static PyObject *noop_fn_address(PyObject *m, PyObject *Py_UNUSED(ignored)) {
    (void)m;
    return PyLong_FromVoidPtr((void *)(uintptr_t)&noop_fn);
}

static PyMethodDef methods[] = {
    {"zcompress_start", (PyCFunction)(void (*)(void))zcompress_start, METH_VARARGS | METH_KEYWORDS,
     "zcompress_start(completion, data, level=-1)\n\n"
     "Compress a copy of data with zlib on a runtime worker; the completion\n"
     "completes with the compressed bytes."},
    {"zdecompress_start", (PyCFunction)(void (*)(void))zdecompress_start,
     METH_VARARGS | METH_KEYWORDS,
     "zdecompress_start(completion, data, max_size=256 MiB)\n\n"
     "Decompress on a runtime worker; bad data (or output over max_size)\n"
     "completes the completion with TR_EINVAL (ValueError)."},
    {"producer_start", (PyCFunction)(void (*)(void))producer_start, METH_VARARGS | METH_KEYWORDS,
     "producer_start(channel, count, start=0, close=False, as_bytes=False) -> Producer\n\n"
     "Start a thread sending start, start+1, ... (count of them) into channel:\n"
     "int64s, or their decimal text as bytes; close the channel at the end if asked."},
    {"producer_join", producer_join, METH_O,
     "producer_join(producer) -> (sent, status)\n\n"
     "Wait for the thread (GIL released): how many items went in, and the last\n"
     "send's status (TR_OK, or e.g. TR_ECLOSED if the channel was closed)."},
    {"consumer_sum", (PyCFunction)(void (*)(void))consumer_sum, METH_VARARGS | METH_KEYWORDS,
     "consumer_sum(channel, timeout=None) -> dict\n\n"
     "Receive in C (GIL released) until the channel is closed and drained:\n"
     "{'ints', 'int_sum', 'bytes_items', 'bytes_total'}.  TimeoutError if a\n"
     "receive waits longer than timeout; TypeError on a Python object."},
    {"mutex_hold", (PyCFunction)(void (*)(void))mutex_hold, METH_VARARGS | METH_KEYWORDS,
     "mutex_hold(mutex, seconds, timeout=-1.0)\n\n"
     "Lock a tokio_runtime.Mutex from C, sleep, unlock (GIL released)."},
    {"status_name", status_name, METH_O, "status_name(code) -> 'TR_OK', 'TR_ECLOSED', ..."},
    {"live_counts", live_counts, METH_NOARGS,
     "live_counts() -> {'jobs': n, 'producers': n}: native objects not yet freed."},
    {"noop_fn_address", noop_fn_address, METH_NOARGS,
     "The address of an int64_t fn(void *, const volatile int *) that returns 1,\n"
     "for tokio_runtime.run_native (cast it with cffi)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tr_capi_example._ext",
    .m_doc = "An example extension using tokio_runtime's C API (tokio_runtime_capi.h).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__ext(void) {
    /* The C API table: ImportError if tokio_runtime is missing or was built
     * with another TR_CAPI_VERSION than the header we were compiled with. */
    if (tr_import_capi() < 0) return NULL;
    if (PyType_Ready(&ProducerType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&module);
    if (!mod) return NULL;
    static const struct {
        const char *name;
        int value;
    } statuses[] = {
        {"TR_OK", TR_OK},           {"TR_CANCELLED", TR_CANCELLED}, {"TR_TIMEDOUT", TR_TIMEDOUT},
        {"TR_ENOMEM", TR_ENOMEM},   {"TR_EINVAL", TR_EINVAL},       {"TR_ESHUTDOWN", TR_ESHUTDOWN},
        {"TR_ECLOSED", TR_ECLOSED}, {"TR_EFULL", TR_EFULL},         {"TR_ETYPE", TR_ETYPE},
    };
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        if (PyModule_AddIntConstant(mod, statuses[i].name, statuses[i].value) < 0) {
            Py_DECREF(mod);
            return NULL;
        }
    }
    if (PyModule_AddIntConstant(mod, "CAPI_VERSION", TR_CAPI_VERSION) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
