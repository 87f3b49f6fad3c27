"""Shared fixtures: every asyncio test runs on stdlib asyncio and on uvloop.

Like uvloop's own suite, one set of tests runs against both loops: the
``pytest_asyncio_loop_factories`` hook parametrizes every asyncio test with
``[asyncio]`` and ``[uvloop]``.  After each test, the default runtime must
drop back to no pending native operation: a leaked op fails the test that
leaked it.
"""

from __future__ import annotations

import asyncio
import os
import time

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
