"""The build: build_ffi.py, CMake's libev check and its regeneration rule."""

from __future__ import annotations

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
