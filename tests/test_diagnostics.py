"""Diagnostics go to the ``tokio_runtime`` logger; only the demos print.

(The shutdown-timeout warning is checked in test_runtime_api.py:
``test_shutdown_timeout_with_a_stuck_worker_logs_and_finishes_later``.)
"""

from __future__ import annotations

import ast
import asyncio
import logging
import time
from pathlib import Path

from tokio_runtime import Runtime

PACKAGE = Path(__file__).resolve().parent.parent / "pkg" / "tokio_runtime"


def test_operations_dropped_with_their_closed_loop_are_logged(caplog):
    rt = Runtime(worker_threads=1, thread_name="tr-logged")
    try:
        loop = asyncio.new_event_loop()

        async def start_two_timers():
            rt.sleep(60)
            rt.sleep(60)

        loop.run_until_complete(start_two_timers())
        assert rt.stats()["pending"] == 2

        def logged():
            return [r for r in caplog.records if "closed with 2 operations pending" in r.message]

        with caplog.at_level(logging.DEBUG, logger="tokio_runtime"):
            loop.close()  # the timers' results can never be delivered now
            # The dispatcher sweeps every 0.25 s.  The C side may cancel the
            # timers before that thread has written its log line: wait for both.
            deadline = time.monotonic() + 5
            while (rt.stats()["pending"] or not logged()) and time.monotonic() < deadline:
                time.sleep(0.01)
        assert rt.stats()["pending"] == 0  # the native timers were cancelled
        records = logged()
        assert len(records) == 1, caplog.records
        assert records[0].name == "tokio_runtime" and records[0].levelno == logging.DEBUG
    finally:
        rt.shutdown()


def calls(path, name):
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ]


def test_only_the_demos_print_and_nothing_writes_to_stderr_or_warns():
    modules = {p.name: p for p in PACKAGE.glob("*.py")}
    # The documented output: the seed demo's ticks, and the command-line demo.
    assert len(calls(modules["demos.py"], "print")) == 1
    assert calls(modules["__main__.py"], "print")
    for name, path in modules.items():
        text = path.read_text()
        if name not in ("demos.py", "__main__.py"):
            assert calls(path, "print") == [], name
        assert "sys.stderr" not in text and "sys.stdout" not in text, name
        assert "warnings.warn" not in text, name
        for line in text.splitlines():
            if "getLogger(" in line:
                assert 'getLogger("tokio_runtime")' in line, (name, line)
