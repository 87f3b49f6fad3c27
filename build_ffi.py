"""Generate the CFFI out-of-line (API mode) module source for tokio_runtime.

CMake runs this as ``python build_ffi.py OUTPUT.c``; it only emits C source
(``ffi.emit_c_code``), and CMake compiles that together with ``csrc/*.c``.

The declarations come from the block between ``CFFI-BEGIN`` and ``CFFI-END``
in ``csrc/include/tokio_runtime.h``, so the public header stays the single
source of truth for the C API.
"""

from __future__ import annotations

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


def make_ffi() -> FFI:
    """Build the FFI object for the ``tokio_runtime._native`` module."""
    ffi = FFI()
    ffi.cdef(cdef_source())
    ffi.set_source("tokio_runtime._native", '#include "tokio_runtime.h"')
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
