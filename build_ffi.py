"""Generate the CFFI out-of-line (API mode) module source for tokio_runtime.

CMake runs this as ``python build_ffi.py OUTPUT.c``; it only emits C source
(``ffi.emit_c_code``), and CMake compiles that together with ``csrc/*.c``.

The declarations come from the block between ``CFFI-BEGIN`` and ``CFFI-END``
in ``csrc/include/tokio_runtime.h``, so the public header stays the single
source of truth for the C API.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = HERE / "csrc" / "include" / "tokio_runtime.h"


def cdef_source(header: Path = HEADER) -> str:
    """Return the cdef() text: the header's CFFI block, without comments."""
    text = header.read_text(encoding="utf-8")
    try:
        block = text.split("/* CFFI-BEGIN */", 1)[1].split("/* CFFI-END */", 1)[0]
    except IndexError:
        raise SystemExit(f"{header}: CFFI-BEGIN / CFFI-END markers not found") from None
    return block


#: C functions that return at once: they take only short internal locks and
#: never wait for another thread, an event or memory the caller must free
#: first.  Their wrappers keep the GIL.  Releasing and re-taking it costs a
#: few hundred nanoseconds even uncontended, and, when another Python thread
#: waits for the GIL, a futex wake and often a switch per call: that hand-off
#: capped a channel at ~0.4 M items/s.  Every other function (anything that
#: may block: ``*_blocking``, ``*_wait_thread``, ``tr_waiter_wait``,
#: ``tr_runtime_wait_ready``, shutdown, release) drops the GIL as cffi does
#: by default.  No C thread ever takes the GIL, so holding it while taking a
#: core lock cannot deadlock.
KEEP_GIL = frozenset(
    {
        "tr_cancel",
        "tr_capi_table",
        "tr_channel_capacity",
        "tr_channel_close",
        "tr_channel_closed",
        "tr_channel_len",
        "tr_channel_notify",
        "tr_channel_recv_many",
        "tr_channel_ref",
        "tr_channel_sent",
        "tr_channel_take",
        "tr_channel_take_tagged",
        "tr_channel_taken",
        "tr_channel_taken_tagged",
        "tr_channel_took_value",
        "tr_channel_try_recv",
        "tr_channel_try_send",
        "tr_channel_unget",
        "tr_channel_wait",
        "tr_channel_waiting",
        "tr_item_bytes",
        "tr_item_free",
        "tr_item_free_unsent",
        "tr_item_get_bytes",
        "tr_item_get_int",
        "tr_item_int",
        "tr_item_kind",
        "tr_items_classify",
        "tr_items_free",
        "tr_items_ints",
        "tr_late_bucket_bounds",
        "tr_max_workers",
        "tr_mutex_locked",
        "tr_mutex_ref",
        "tr_mutex_ticket",
        "tr_mutex_try_lock",
        "tr_mutex_unlock",
        "tr_mutex_unlock_if",
        "tr_mutex_wait",
        "tr_port_drain",
        "tr_promise_bytes",
        "tr_promise_cancel",
        "tr_promise_cancel_flag",
        "tr_promise_complete",
        "tr_promise_complete_bytes",
        "tr_promise_new",
        "tr_promise_ref",
        "tr_promise_release",
        "tr_promise_run",
        "tr_promise_settled",
        "tr_promise_submit",
        "tr_promise_state",
        "tr_port_defer_wake",
        "tr_port_stalled",
        "tr_runtime_kick",
        "tr_runtime_stats",
        "tr_runtime_wake_dispatcher",
        "tr_sleep",
        "tr_task_progress",
        "tr_task_status",
        "tr_ticker",
        "tr_timeout_sleep",
        "tr_waiter_release",
        "tr_waiter_release_cell",
    }
)


def declared_functions(cdef: str) -> list[str]:
    """The names of the functions the cdef declares, in order."""
    return re.findall(r"\b(tr_\w+)\s*\(", re.sub(r"/\*.*?\*/", "", cdef, flags=re.S))


def module_preamble(keep_gil: frozenset[str] = KEEP_GIL) -> str:
    """C code placed before cffi's wrappers: per-function GIL handling.

    cffi wraps every call in ``Py_BEGIN_ALLOW_THREADS`` /
    ``Py_END_ALLOW_THREADS`` inside a wrapper named ``_cffi_f_<function>``.
    The two macros are redefined here to look the wrapper's ``__func__`` up
    once (cached in a static per wrapper) and skip the release for the
    functions in :data:`KEEP_GIL`.
    """
    names = ",\n".join(f'    "_cffi_f_{name}"' for name in sorted(keep_gil))
    return f"""#include <string.h>
#include "tokio_runtime.h"

static const char *const tr__keep_gil_wrappers[] = {{
{names},
}};

static int tr__wrapper_keeps_gil(const char *wrapper) {{
    size_t n = sizeof tr__keep_gil_wrappers / sizeof tr__keep_gil_wrappers[0];
    for (size_t i = 0; i < n; i++)
        if (strcmp(wrapper, tr__keep_gil_wrappers[i]) == 0) return 1;
    return 0;
}}

#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
/* The GIL is held on entry, so the cached static needs no atomics. */
#define Py_BEGIN_ALLOW_THREADS {{ \\
    static int tr__keep = -1; \\
    if (tr__keep < 0) tr__keep = tr__wrapper_keeps_gil(__func__); \\
    PyThreadState *_save = tr__keep ? NULL : PyEval_SaveThread();
#define Py_END_ALLOW_THREADS \\
    if (_save) PyEval_RestoreThread(_save); }}
"""


def make_ffi() -> FFI:
    """Build the FFI object for the ``tokio_runtime._native`` module."""
    cdef = cdef_source()
    unknown = KEEP_GIL.difference(declared_functions(cdef))
    if unknown:
        raise SystemExit(f"KEEP_GIL names undeclared functions: {sorted(unknown)}")
    ffi = FFI()
    ffi.cdef(cdef)
    ffi.set_source("tokio_runtime._native", module_preamble())
    return ffi


def main(argv: list[str]) -> int:
    """Write the module source to ``argv[1]``; return the exit status."""
    if len(argv) != 2:
        print("usage: build_ffi.py OUTPUT.c", file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    make_ffi().emit_c_code(str(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
