"""The README's Python examples run as written, each in a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
#: C extensions the examples import, built from the README's ```c blocks
#: (each names its file in its first line: /* _name.c: ... */).
C_EXAMPLES = re.findall(r"```c\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def c_examples(tmp_path_factory):
    """Build every C example as an extension module; return the folder."""
    import sysconfig

    import tokio_runtime

    folder = tmp_path_factory.mktemp("readme-c")
    for code in C_EXAMPLES:
        name = re.match(r"/\* (\w+)\.c:", code).group(1)
        source = folder / f"{name}.c"
        source.write_text(code)
        target = folder / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
        subprocess.run(
            [
                "gcc", "-shared", "-fPIC", "-std=c11", "-D_GNU_SOURCE",
                "-Wall", "-Wextra", "-Werror",
                f"-I{sysconfig.get_paths()['include']}",
                f"-I{tokio_runtime.get_include()}",
                str(source), "-o", str(target),
            ],
            check=True,
        )  # fmt: skip
    return folder


def test_the_readme_has_examples():
    # Quick start, Runtime, sleep/timeout, background tasks, Channel, Mutex, seed functions.
    assert len(EXAMPLES) >= 7


def test_the_readme_has_a_c_api_example():
    assert any("tr_import_capi()" in code for code in C_EXAMPLES)


@pytest.mark.parametrize("code", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_readme_example_runs(code, c_examples, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(c_examples))
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.strip()  # every example prints what it shows
