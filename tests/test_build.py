"""The build: build_ffi.py, CMake's libev check and its regeneration rule."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CMAKE = shutil.which("cmake")
needs_cmake = pytest.mark.skipif(CMAKE is None, reason="cmake is not on PATH")


def test_build_ffi_emits_the_module_source(tmp_path):
    out = tmp_path / "gen" / "_native.c"
    subprocess.run(
        [sys.executable, str(ROOT / "build_ffi.py"), str(out)], check=True, capture_output=True
    )
    text = out.read_text()
    assert '#include "tokio_runtime.h"' in text
    for name in ("tr_runtime_new", "tr_port_drain", "tr_counter_demo", "tr_channel_wait"):
        assert name in text
    assert "PyInit__native" in text


def test_build_ffi_usage_error():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "build_ffi.py")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "usage" in proc.stderr


@needs_cmake
def test_cmake_names_the_package_when_libev_is_missing(tmp_path):
    proc = subprocess.run(
        [
            CMAKE,
            "-S",
            str(ROOT),
            "-B",
            str(tmp_path),
            "-DCMAKE_IGNORE_PREFIX_PATH=/usr;/usr/local;/opt/homebrew",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "libev was not found" in proc.stderr
    assert "apt-get install libev-dev" in proc.stderr
    assert "libev-devel" in proc.stderr and "brew install libev" in proc.stderr


@needs_cmake
def test_cmake_regenerates_the_module_when_the_header_changes(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "tests", "__pycache__")
    )
    build = tmp_path / "build"
    subprocess.run(
        [CMAKE, "-S", str(src), "-B", str(build), f"-DPython_EXECUTABLE={sys.executable}"],
        check=True,
        capture_output=True,
        timeout=300,
    )

    def build_log():
        return subprocess.run(
            [CMAKE, "--build", str(build)], check=True, capture_output=True, text=True, timeout=300
        ).stdout

    assert "Generating CFFI module source" in build_log()
    assert "Generating CFFI module source" not in build_log()  # nothing changed
    header = src / "csrc" / "include" / "tokio_runtime.h"
    time.sleep(1.1)  # make the new mtime unmistakable
    header.write_text(header.read_text())
    assert "Generating CFFI module source" in build_log()


def _load_build_ffi():
    sys.path.insert(0, str(ROOT))
    try:
        import build_ffi
    finally:
        sys.path.remove(str(ROOT))
    return build_ffi


#: Functions that wait for another thread, an event or a join: they must let
#: the GIL go, or every other Python thread stalls (or deadlocks) meanwhile.
MAY_BLOCK = {
    "tr_runtime_new",
    "tr_runtime_shutdown",
    "tr_runtime_shutdown_timeout",
    "tr_runtime_release",
    "tr_runtime_wait_ready",
    "tr_port_release",
    "tr_channel_send_blocking",
    "tr_channel_recv_blocking",
    "tr_channel_wait_thread",
    "tr_mutex_lock_blocking",
    "tr_mutex_wait_thread",
    "tr_waiter_wait",
    "tr_debug_stall_worker",
}


def test_only_calls_that_return_at_once_keep_the_gil():
    from tokio_runtime._native import lib

    build_ffi = _load_build_ffi()
    declared = set(build_ffi.declared_functions(build_ffi.cdef_source()))
    assert MAY_BLOCK <= declared  # the list above names real functions
    assert build_ffi.KEEP_GIL <= declared
    assert not build_ffi.KEEP_GIL & MAY_BLOCK
    for name in build_ffi.KEEP_GIL | MAY_BLOCK:
        assert hasattr(lib, name)


def test_preamble_lists_exactly_the_keep_gil_wrappers():
    build_ffi = _load_build_ffi()
    text = build_ffi.module_preamble()
    listed = set(re.findall(r'"_cffi_f_(tr_\w+)"', text))
    assert listed == set(build_ffi.KEEP_GIL)
    assert "#define Py_BEGIN_ALLOW_THREADS" in text


def test_build_ffi_refuses_a_keep_gil_name_it_does_not_declare(tmp_path, monkeypatch):
    build_ffi = _load_build_ffi()
    monkeypatch.setattr(build_ffi, "KEEP_GIL", build_ffi.KEEP_GIL | {"tr_no_such_function"})
    with pytest.raises(SystemExit, match="tr_no_such_function"):
        build_ffi.make_ffi()
