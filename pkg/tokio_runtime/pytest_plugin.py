"""pytest plugin: the ``tokio_runtime`` fixture (a fresh runtime per test).

Installed with the package and registered through the ``pytest11`` entry
point, so pytest loads it in every session of the environment.  Loading it
costs nothing: the native module is imported only when a test asks for the
fixture, and sessions that never do are left alone.

Use it with pytest-asyncio (or any runner of async tests)::

    async def test_sleep(tokio_runtime):
        assert await tokio_runtime.sleep(0.01, "done") == "done"

Guarantees:

* Each test that requests ``tokio_runtime`` gets its own
  :class:`tokio_runtime.Runtime` (``WORKER_THREADS`` worker threads,
  threads named ``tokio-test-{n}``), never shared with another test nor with
  the process-wide default runtime (``tokio_runtime.get_runtime()``, which the
  module-level functions and the seed functions use).
* After a test body that passed, the runtime must have no operation in flight
  (``stats()["pending"] == 0``).  Operations finishing on their own get
  ``LEAK_GRACE_SECONDS`` to do so; if some are still pending after that, the
  test fails (as a failure of the test itself, not a teardown error) with a
  message giving the count and the runtime's counters.  A test that already
  failed is not checked again.
* Whatever the outcome, the runtime is shut down when the fixture is torn
  down: its pending operations are cancelled and all of its threads joined.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._runtime import Runtime

#: How long a test's in-flight operations may take to finish before it fails.
LEAK_GRACE_SECONDS = 1.0
#: Worker threads of each test's runtime.
WORKER_THREADS = 2
#: Thread name prefix of each test's runtime.
THREAD_NAME = "tokio-test"

_RUNTIME = pytest.StashKey["Runtime"]()


def wait_until_idle(runtime: Runtime, grace: float = LEAK_GRACE_SECONDS) -> int:
    """Poll ``runtime`` until nothing is pending or ``grace`` seconds pass.

    Returns the last ``stats()["pending"]`` seen (0 when the runtime is idle).
    """
    deadline = time.monotonic() + grace
    while True:
        pending: int = runtime.stats()["pending"]
        if pending == 0 or time.monotonic() >= deadline:
            return pending
        time.sleep(0.005)


@pytest.fixture
def tokio_runtime(request: pytest.FixtureRequest) -> Generator[Runtime, None, None]:
    """A fresh :class:`tokio_runtime.Runtime` for this test, shut down after it.

    The test fails if operations it started are still pending once its body
    has returned (after a grace period of ``LEAK_GRACE_SECONDS``).
    """
    from ._runtime import Runtime  # only now: sessions without the fixture never load it

    runtime = Runtime(worker_threads=WORKER_THREADS, thread_name=THREAD_NAME)
    request.node.stash[_RUNTIME] = runtime
    try:
        yield runtime
    finally:
        del request.node.stash[_RUNTIME]
        runtime.shutdown()


# A plain implementation marked trylast runs after pytest's own, which runs
# the test body; if the body raised, pytest stops there and this never runs.
# (Unlike a new-style wrapper, this works with every pytest and pluggy.)
@pytest.hookimpl(trylast=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """After a passing test body, fail the test if its runtime still has work."""
    runtime = item.stash.get(_RUNTIME, None)
    if runtime is None:
        return
    pending = wait_until_idle(runtime)
    if pending:
        stats = runtime.stats()
        pytest.fail(
            f"tokio_runtime: {pending} native operation(s) still pending "
            f"{LEAK_GRACE_SECONDS:g} s after the test returned (leaked: a future never "
            "awaited nor cancelled, a background task still running, or a channel or "
            "mutex wait left behind); runtime counters: "
            + ", ".join(f"{k}={stats[k]}" for k in ("submitted", "completed", "cancelled")),
            pytrace=False,
        )
