"""The C API example (examples/capi), built and run the way a user would.

A fresh virtual environment gets the tokio_runtime wheel (the session's
``dists`` fixture: the same wheel tests/test_wheel.py checks, built once),
uvloop and setuptools; then ``pip install --no-build-isolation`` builds the
example extension from a copy of examples/capi against the headers of that
*installed* tokio_runtime (``tokio_runtime.get_include()``), with warnings
as errors.  Nothing of the source tree is on the path.

Each check of ``capi_example_checks.py`` then runs in that venv, once on
asyncio and once on uvloop, in its own interpreter.  The ABI check compiles
a tiny extension against a copy of the headers whose ``TR_CAPI_VERSION`` is
changed: importing it must fail with an ImportError naming both versions.

Cost on 2 cores: ~18 s for the file, of which ~9 s build the wheel (shared
with tests/test_wheel.py: whichever runs first pays), ~5 s make the venv and
build the example, and the 19 tests take 0.1-0.6 s each.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import run_ok

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "capi"
CHECKS = [
    "zlib_round_trips",
    "zlib_cancel",
    "c_producer_stream",
    "mixed_producers",
    "python_to_c_consumer",
    "mutex_from_c",
    "shutdown_with_a_blocked_producer",
    "bad_input",
]
LOOPS = ["asyncio", "uvloop"]


#: Run a build step and assert it succeeded (5 minutes at most unless told).
run = functools.partial(run_ok, timeout=300)


@pytest.fixture(scope="module")
def example_venv(dists, tmp_path_factory):
    """A fresh venv with the wheel, uvloop and the example extension built from source."""
    home = tmp_path_factory.mktemp("capi-example")
    run([sys.executable, "-m", "venv", str(home / "env")])
    python = home / "env" / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # The same uvloop as here (pip's cache has it); setuptools builds the example.
    run([*pip, str(dists[2]), f"uvloop=={version('uvloop')}", "setuptools>=70.1"])
    # Build from a copy: an in-tree build would leave build/ and *.egg-info behind.
    src = home / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    env = dict(os.environ, CFLAGS="-Werror")  # the example compiles without a warning
    run([*pip, "--no-build-isolation", str(src)], env=env, cwd=home)
    return python


def in_venv(python, args, cwd):
    """Run python with args in cwd, with nothing of the source tree on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


def test_the_example_is_built_against_the_installed_package(example_venv, tmp_path):
    code = (
        "import tokio_runtime, tr_capi_example, tr_capi_example._ext as e;"
        "print(tokio_runtime.__file__); print(e.__file__); print(tr_capi_example.CAPI_VERSION)"
    )
    proc = in_venv(example_venv, ["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    tr_file, ext_file, capi = proc.stdout.split()
    assert "/site-packages/tokio_runtime/" in tr_file
    assert "/site-packages/tr_capi_example/_ext" in ext_file
    header = (HERE.parent / "csrc" / "include" / "tokio_runtime_capi.h").read_text()
    assert f"#define TR_CAPI_VERSION {capi}\n" in header  # built with the installed header
    # Only the capsule links it to tokio_runtime: no shared-library dependency.
    needed = run(["readelf", "-d", ext_file]).stdout
    assert "tokio_runtime" not in needed and "_native" not in needed


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("check", CHECKS)
def test_example(example_venv, check, loop, tmp_path):
    shutil.copy(HERE / "capi_example_checks.py", tmp_path)
    proc = in_venv(example_venv, ["capi_example_checks.py", check, loop], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith(f"ok {check} {loop}")
    assert proc.stderr == ""


def test_the_readme_walkthrough_runs(example_venv, tmp_path):
    readme = (EXAMPLE / "README.md").read_text()
    walkthrough = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[0]
    proc = in_venv(example_venv, ["-W", "error", "-c", walkthrough], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "4999950000 (100000, 0)",
        "{'ints': 10, 'int_sum': 45, 'bytes_items': 1, 'bytes_total': 3}",
    ]
    assert proc.stderr == ""


TINY = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "tokio_runtime_capi.h"

static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "tiny_abi", NULL, -1, NULL};

PyMODINIT_FUNC PyInit_tiny_abi(void) {
    if (tr_import_capi() < 0) return NULL;
    return PyModule_Create(&mod);
}
"""


def build_tiny(python, include, out):
    """Compile TINY against the headers in include, next to out (a folder)."""
    paths = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"])
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    (out / "tiny_abi.c").write_text(TINY)
    cc = os.environ.get("CC", "cc")
    flags = ["-shared", "-fPIC", "-std=c11", "-Wall", "-Werror"]
    includes = [f"-I{paths.stdout.strip()}", f"-I{include}"]
    run([cc, *flags, *includes, str(out / "tiny_abi.c"), "-o", str(out / f"tiny_abi{suffix}")])


def test_abi_version_mismatch_fails_at_import(example_venv, tmp_path):
    installed = in_venv(
        example_venv, ["-c", "import tokio_runtime; print(tokio_runtime.get_include())"], tmp_path
    )
    include = Path(installed.stdout.strip())
    # Unchanged headers: it imports.
    good = tmp_path / "good"
    good.mkdir()
    build_tiny(example_venv, include, good)
    proc = in_venv(example_venv, ["-c", "import tiny_abi"], good)
    assert proc.returncode == 0, proc.stderr
    # The header defines TR_CAPI_VERSION unconditionally: patch a copy.
    patched = tmp_path / "include"
    shutil.copytree(include, patched)
    header = patched / "tokio_runtime_capi.h"
    text = header.read_text()
    version_line = re.search(r"^#define TR_CAPI_VERSION (\d+)\n", text, flags=re.M)
    assert version_line, "no TR_CAPI_VERSION in the installed header"
    installed_version = version_line.group(1)
    header.write_text(text.replace(version_line.group(0), "#define TR_CAPI_VERSION 999\n"))
    bad = tmp_path / "bad"
    bad.mkdir()
    build_tiny(example_venv, patched, bad)
    proc = in_venv(example_venv, ["-c", "import tiny_abi"], bad)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ImportError: tokio_runtime C API version {installed_version} "), (
        proc.stderr
    )
    assert "built for version 999" in last and "rebuild it" in last
