"""Helpers shared by the test modules: threads, loops in threads, polling."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time

from conftest import wait_for_pending

import tokio_runtime
from tokio_runtime._default import get_runtime

#: Generous bound for anything that should take milliseconds.
JOIN = 30.0


# ---- helpers ---------------------------------------------------------------------


class Worker(threading.Thread):
    """A thread that keeps what its target returned or raised."""

    def __init__(self, fn, *args, name=None):
        super().__init__(daemon=True, name=name)
        self.fn, self.args = fn, args
        self.result = None
        self.error = None

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:  # re-raised by finish()
            self.error = exc

    def finish(self, timeout=JOIN):
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} still running after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


def on_new_loop(factory, coro_fn, *args):
    """Run ``coro_fn(*args)`` to completion on a fresh loop (in this thread)."""
    loop = factory()
    try:
        return loop.run_until_complete(coro_fn(*args))
    finally:
        loop.close()


def loop_worker(factory, coro_fn, *args, name=None):
    w = Worker(on_new_loop, factory, coro_fn, *args, name=name)
    w.start()
    return w


def stats():
    return get_runtime().stats()


async def until(pred, timeout=10.0, what="condition"):
    """Yield to the loop until ``pred()`` holds (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


async def idle():
    """Every native wait of the default runtime is gone."""
    await until(lambda: stats()["waiters"] == 0, what="waiters == 0")
    assert wait_for_pending(0) == 0
    assert stats()["waiters"] == 0


async def queued_then_wait(make, queued, timeout):
    """Start ``make()`` as a task; once it has run up to its first wait, set
    ``queued`` (a threading.Event); then await it for at most ``timeout``."""
    task = asyncio.ensure_future(make())
    await asyncio.sleep(0)  # the task ran its first step: it waits now
    queued.set()
    return await asyncio.wait_for(task, timeout)


def dying_loop_worker(make, parked, go):
    """A thread whose own loop runs ``make()`` as a task until it waits.

    Sets ``parked`` then; once ``go`` is set, lets the dispatcher queue its
    drain, runs the loop just long enough to drain (delivering the wake) and
    closes it before the task can run again.  ``finish()`` returns the task,
    which never completes.
    """

    def run():
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda _loop, ctx: None)
        task = loop.create_task(make())
        loop.run_until_complete(asyncio.sleep(0.01))
        parked.set()
        assert go.wait(JOIN)
        time.sleep(0.2)  # the dispatcher has queued the drain on this loop by now
        loop.call_soon(loop.stop)  # runs the drain, stops before the task runs
        loop.run_forever()
        loop.close()
        return task

    worker = Worker(run)
    worker.start()
    return worker


async def with_deadline(kind, seconds, awaitable):
    """Await ``awaitable`` under ``asyncio.wait_for`` or ``tokio_runtime.timeout``.

    Both raise the built-in ``TimeoutError`` here (3.10's ``wait_for`` raises
    ``asyncio.TimeoutError``, a different class before 3.11).
    """
    if kind == "asyncio.wait_for":
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:
            raise TimeoutError from None
    return await tokio_runtime.timeout(seconds, awaitable)


def park_on_a_loop_then_close_it(factory, coro_fn, *args):
    """Start ``coro_fn`` as a task on a new loop in a thread, let it reach its
    wait, then close the loop without cancelling it.  Returns the task."""
    seen = []

    def run():
        loop = factory()
        # "Task was destroyed but it is pending!" is expected later: keep quiet.
        loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
        task = loop.create_task(coro_fn(*args))
        loop.run_until_complete(asyncio.sleep(0.01))
        assert not task.done()
        loop.close()
        return task

    w = Worker(run)
    w.start()
    return w.finish()


def threads_gone(prefix: str, timeout: float = 5.0) -> bool:
    """Whether every thread named ``prefix...`` has exited, polling a moment.

    The native threads are joined by the time shutdown returns; the
    dispatcher is a Python thread, and ``Thread.join`` returns just before
    its OS thread leaves ``/proc``.
    """
    deadline = time.monotonic() + timeout
    while native_threads(prefix):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def native_threads(prefix: str) -> list[str]:
    """Names of this process's threads that start with ``prefix``."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:  # exited meanwhile (ENOENT or ESRCH)
            continue
        if name.startswith(prefix):
            names.append(name)
    return sorted(names)


class Noise:
    """Everything a run reports out of band, collected instead of printed.

    Within ``with Noise(loop) as noise:``, unraisable exceptions
    (``sys.unraisablehook``), the loop's exception handler calls ("Task was
    destroyed but it is pending!", "exception was never retrieved", a
    delivery error, an ``InvalidStateError`` in a callback) and log records
    of level WARNING and above land in ``noise.errors``.  Leaving the block
    collects garbage first, so a destroyed pending task or an unretrieved
    exception is reported while the hooks are still in place.
    """

    def __init__(self, *loops):
        self.loops = loops
        self.errors = []

    def _unraisable(self, u):
        self.errors.append(("unraisable", repr(u.exc_value), u.err_msg, repr(u.object)))

    def handler(self, _loop, ctx):
        self.errors.append(("loop", ctx.get("message"), repr(ctx.get("exception"))))

    def __enter__(self):
        self._old_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        for loop in self.loops:
            loop.set_exception_handler(self.handler)
        noise = self

        class Collect(logging.Handler):
            def emit(self, record):
                noise.errors.append(("log", record.name, record.getMessage()))

        self._log = Collect(logging.WARNING)
        logging.getLogger().addHandler(self._log)
        return self

    def __exit__(self, *exc):
        gc.collect()
        logging.getLogger().removeHandler(self._log)
        for loop in self.loops:
            loop.set_exception_handler(None)
        sys.unraisablehook = self._old_hook
        return False


def rss_bytes():
    """This process's resident set size, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
