"""The distributions, built as ``make wheel`` builds them, installed elsewhere.

``python -m build`` makes the sdist and then builds the wheel *from that
sdist* (so the sdist is proven to build a working wheel); ``auditwheel
repair`` copies the shared libev into the wheel.  The wheel is installed in a
fresh virtual environment and exercised from a directory outside the source
tree - also in a private mount namespace where the system's libev (library,
archive and header) is hidden, as on a machine without libev.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from conftest import run_ok as run

ROOT = Path(__file__).resolve().parent.parent

SMOKE = r"""
import asyncio
import sys
from importlib.metadata import distribution

import tokio_runtime as tr

assert "/site-packages/tokio_runtime/" in tr.__file__, tr.__file__


async def main():
    assert await tr.sleep(0.01, "slept") == "slept"
    ch = tr.Channel(4)
    await ch.send("ping")
    assert await tr.timeout(1.0, ch.recv()) == "ping"
    assert await tr.channel_demo(3) == ["Message 0", "Message 1", "Message 2"]
    assert await tr.shared_counter_demo(1000) == 1000
    assert await tr.with_timeout(10, 50) == "Operation completed"
    assert tr.get_runtime().stats()["pending"] == 0


asyncio.run(main())
dist = distribution("tokio_runtime")
assert dist.metadata["License-Expression"] == "MIT AND (BSD-2-Clause OR GPL-2.0-or-later)"
eps = [(ep.group, ep.name, ep.value) for ep in dist.entry_points]
assert ("pytest11", "tokio_runtime", "tokio_runtime.pytest_plugin") in eps, eps
print("smoke ok", tr.__file__)
"""


# The distributions themselves come from the session fixture ``dists`` of
# conftest.py (built once, shared with tests/test_capi_example.py).


@pytest.fixture(scope="module")
def venv(dists, tmp_path_factory):
    """A fresh virtual environment with only the repaired wheel (and cffi) installed."""
    home = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(home / "env")])
    python = home / "env" / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", str(dists[2])])
    return python


def test_the_wheel_is_built_from_the_sdist(dists):
    log = dists[3]
    assert "Building sdist" in log and "Building wheel from sdist" in log


def test_the_sdist_has_what_the_build_needs(dists):
    sdist = dists[0]
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in (
        "pyproject.toml",
        "CMakeLists.txt",
        "build_ffi.py",
        "LICENSE",
        "LICENSES/libev.txt",
        "README.md",
        "csrc/include/tokio_runtime.h",
        "csrc/runtime.c",
        "pkg/tokio_runtime/__init__.py",
        "pkg/tokio_runtime/pytest_plugin.py",
        "pkg/tokio_runtime/py.typed",
    ):
        assert needed in names, needed
    assert not any(n.startswith((".venv/", "build/", "dist/", ".ci/")) for n in names)
    assert not any(n.endswith((".so", ".o")) for n in names)


def test_the_wheel_carries_libev_and_complete_metadata(dists):
    wheel = dists[2]
    assert "manylinux" in wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = Parser().parsestr(zf.read("tokio_runtime-0.1.0.dist-info/METADATA").decode())
    assert any(n.startswith("tokio_runtime/_native.") and n.endswith(".so") for n in names)
    assert "tokio_runtime/pytest_plugin.py" in names and "tokio_runtime/py.typed" in names
    # The shared libev is copied in, unless CMake could link a PIC libev.a statically.
    raw_names = zipfile.ZipFile(dists[1]).namelist()
    assert any(n.startswith("tokio_runtime.libs/libev") for n in names) or not any(
        "libev" in n for n in raw_names
    )
    assert meta["License-Expression"] == "MIT AND (BSD-2-Clause OR GPL-2.0-or-later)"
    assert set(meta.get_all("License-File")) == {"LICENSE", "LICENSES/libev.txt"}
    assert meta["Requires-Python"] == ">=3.9"
    assert meta.get_all("Requires-Dist")[0] == "cffi>=1.17"
    assert "Repository, https://github.com/tokio-runtime/tokio_runtime" in meta.get_all(
        "Project-URL"
    )
    classifiers = meta.get_all("Classifier")
    assert "Framework :: AsyncIO" in classifiers and "Framework :: Pytest" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # PEP 639: the expression
    assert "asyncio" in meta["Keywords"]


def installed_module(python):
    out = run([str(python), "-c", "import tokio_runtime._native as m; print(m.__file__)"], cwd="/")
    return Path(out.stdout.strip())


def test_the_installed_module_needs_no_system_libev(venv):
    so = installed_module(venv)
    site = so.parent.parent
    needed = [
        line.split("[", 1)[1].rstrip("]")
        for line in run(["readelf", "-d", str(so)]).stdout.splitlines()
        if "(NEEDED)" in line
    ]
    assert "libev.so.4" not in needed, needed
    ldd = run(["ldd", str(so)]).stdout
    assert "not found" not in ldd
    for line in ldd.splitlines():
        if "libev" in line:  # only the copy auditwheel put next to the package
            resolved = Path(os.path.realpath(line.split("=>")[1].split("(")[0].strip()))
            assert resolved.parent == site / "tokio_runtime.libs", line


def smoke_script(tmp_path):
    script = tmp_path / "smoke.py"
    script.write_text(SMOKE)
    return script


def test_the_wheel_works_outside_the_source_tree(venv, tmp_path):
    proc = run([str(venv), str(smoke_script(tmp_path))], cwd=tmp_path)
    assert proc.stdout.startswith("smoke ok"), proc.stdout
    assert proc.stderr == ""


def libev_files():
    """The system's libev files (each real file once): library, archive, header."""
    patterns = ["/usr/lib/*/libev.so*", "/usr/lib/*/libev.a", "/usr/lib/libev.*"]
    patterns += ["/usr/local/lib/libev.*", "/usr/include/ev.h", "/usr/local/include/ev.h"]
    return sorted({os.path.realpath(p) for pat in patterns for p in glob.glob(pat)})


def test_the_wheel_works_where_libev_is_not_installed(venv, tmp_path):
    files = libev_files()
    assert files, "libev is not installed here at all; nothing to hide"
    if os.geteuid() == 0:
        unshare = ["unshare", "--mount", "--propagation", "private"]
    else:  # an unprivileged user namespace, where the kernel allows one
        unshare = ["unshare", "--user", "--map-root-user", "--mount"]
        if subprocess.run([*unshare, "true"], capture_output=True).returncode != 0:
            pytest.skip("not root, and unprivileged user namespaces are disabled")
    assert shutil.which("unshare"), "unshare (util-linux) is missing"
    hide = " && ".join(f"mount --bind /dev/null {f}" for f in files)
    # First prove the system libev is really unusable in there, then run the smoke test.
    script = (
        f"{hide} && "
        f"! {sys.executable} -c \"import ctypes; ctypes.CDLL('libev.so.4')\" 2>/dev/null && "
        f"exec {venv} {smoke_script(tmp_path)}"
    )
    proc = run([*unshare, "sh", "-c", script], cwd=tmp_path)
    assert proc.stdout.startswith("smoke ok"), proc.stdout
