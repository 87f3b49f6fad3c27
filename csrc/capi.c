/*
 * capi.c - the table of tokio_runtime_capi.h: the C API other extensions
 * reach through the "tokio_runtime._C_API" capsule (layer L7).
 *
 * Only public functions of the core, plus thin adapters where the table's
 * calling convention is simpler than the core's (a timeout of 0 meaning
 * "do not wait", no wakes buffer: a C thread's wakes go through the
 * dispatcher).  Any thread.
 */
#define TR_CAPI_NO_PYTHON
#include "tokio_runtime_capi.h"

static const char *status_name(int status) {
    static const char *const names[] = {
        "TR_OK",        "TR_CANCELLED", "TR_TIMEDOUT", "TR_ENOMEM", "TR_EINVAL",
        "TR_ESHUTDOWN", "TR_ECLOSED",   "TR_ETHREAD",  "TR_EFULL",  "TR_EEMPTY",
        "TR_EBUSY",     "TR_PENDING",   "TR_EDONE",    "TR_ETYPE",
    };
    if (status < 0 || (size_t)status >= sizeof names / sizeof names[0]) return "unknown";
    return names[status];
}

static int promise_run(tr_promise_t *p, tr_native_fn fn, void *arg, void (*drop)(void *arg)) {
    return tr_promise_run(NULL, p, fn, arg, drop);
}

/* Make the value, send it, and free it again unless the channel took it. */
static int send_owned(tr_channel_t *ch, uint64_t item, double timeout) {
    if (!item) return TR_ENOMEM;
    int rc = tr_channel_send_value(ch, item, timeout, NULL);
    if (rc != TR_OK) tr_item_free(item);
    return rc;
}

static int channel_send_int(tr_channel_t *ch, int64_t value, double timeout) {
    if (!ch) return TR_EINVAL;
    return send_owned(ch, tr_item_int(value), timeout);
}

static int channel_send_bytes(tr_channel_t *ch, const void *data, size_t len, double timeout) {
    if (!ch || (!data && len)) return TR_EINVAL;
    return send_owned(ch, tr_item_bytes(data, len), timeout);
}

static int channel_recv(tr_channel_t *ch, uint64_t *item, double timeout) {
    return tr_channel_recv_value(ch, item, timeout, NULL);
}

static void channel_close(tr_channel_t *ch) {
    if (ch) tr_channel_close(ch, NULL);
}

static int channel_closed(tr_channel_t *ch) { return ch ? tr_channel_closed(ch) : 1; }

static int mutex_lock(tr_mutex_t *m, double timeout, uint64_t ticket) {
    if (!m) return TR_EINVAL;
    if (timeout == 0) return tr_mutex_try_lock(m, ticket);
    return tr_mutex_lock_blocking(m, timeout, ticket);
}

static int mutex_unlock(tr_mutex_t *m, uint64_t ticket) {
    return m ? tr_mutex_unlock_if(m, ticket, NULL) : TR_EINVAL;
}

static const tr_capi_t table = {
    .abi_version = TR_CAPI_VERSION,
    .size = sizeof(tr_capi_t),
    .status_name = status_name,
    .promise_complete = tr_promise_complete,
    .promise_complete_bytes = tr_promise_complete_bytes,
    .promise_state = tr_promise_state,
    .promise_cancel_flag = tr_promise_cancel_flag,
    .promise_run = promise_run,
    .promise_ref = tr_promise_ref,
    .promise_release = tr_promise_release,
    .channel_send_int = channel_send_int,
    .channel_send_bytes = channel_send_bytes,
    .channel_recv = channel_recv,
    .channel_close = channel_close,
    .channel_closed = channel_closed,
    .channel_ref = tr_channel_ref,
    .channel_release = tr_channel_release,
    .item_kind = tr_item_kind,
    .item_int = tr_item_get_int,
    .item_bytes = tr_item_get_bytes,
    .item_free = tr_item_free,
    .mutex_ticket = tr_mutex_ticket,
    .mutex_lock = mutex_lock,
    .mutex_unlock = mutex_unlock,
    .mutex_ref = tr_mutex_ref,
    .mutex_release = tr_mutex_release,
};

const void *tr_capi_table(void) { return &table; }
