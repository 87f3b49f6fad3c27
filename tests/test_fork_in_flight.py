"""fork() while the runtime is busy: each child gets a fresh, working runtime
and never touches the parent's; the parent's work in flight is unaffected.

test_fork.py covers the quiet cases (a bare ``os.fork`` and a ``fork`` Pool
after the parent's work finished).  Here the parent keeps a loop thread busy
(a ticker, sleeps, a channel fed by a thread, a contended mutex) while it
forks, so locks may be held and records in flight at the moment of fork.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time

import pytest
from conftest import wait_for_pending
from helpers import JOIN, Worker

import tokio_runtime as tr
from tokio_runtime._default import get_runtime

# Python 3.12+ warns about fork() in any multi-threaded process; forking with
# the runtime's threads alive is exactly what these tests are about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


def runtime_thread_names(prefix="tokio-runtime"):
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except FileNotFoundError:
            continue
        if name.startswith(prefix):
            names.append(name)
    return sorted(names)


def check_in_child(parent_rt, private_rt):
    """What a forked child must find; returns a list of problems (empty: all good)."""
    problems = []
    if runtime_thread_names():  # only this thread came along
        problems.append(f"parent threads visible: {runtime_thread_names()}")
    for name, call in [
        ("parent default stats", parent_rt.stats),
        ("parent default sleep", lambda: asyncio.run(_on(parent_rt))),
        ("private sleep", lambda: asyncio.run(_on(private_rt))),
    ]:
        try:
            call()
            problems.append(f"{name}: no error")
        except RuntimeError as exc:
            if "parent process" not in str(exc):
                problems.append(f"{name}: {exc}")
    private_rt.shutdown()  # nothing to do here: must not hang on the parent's threads
    tr.configure(worker_threads=2, thread_name="child-rt")  # allowed: not started here yet

    async def work():
        ch, lock = tr.Channel(4), tr.Mutex()
        t = threading.Thread(target=lambda: [ch.send_blocking(i) for i in range(100)])
        t.start()
        got = [await ch.recv() for _ in range(100)]
        t.join()
        async with lock:
            pass
        handle = tr.spawn_background(5, 0.001)
        return (
            got == list(range(100)),
            await tr.shared_counter_demo(500),
            await tr.channel_demo(2),
            await handle,
            await tr.timeout(5, tr.sleep(0.001, "slept")),
        )

    rt = get_runtime()
    if rt is parent_rt:
        problems.append("the child reused the parent's default runtime")
    s = rt.stats()
    if (s["pending"], s["submitted"], s["worker_threads"]) != (0, 0, 2):
        problems.append(f"not a fresh runtime: {s}")
    result = asyncio.run(work())
    if result != (True, 500, ["Message 0", "Message 1"], 5, "slept"):
        problems.append(f"wrong results {result}")
    if runtime_thread_names("child-rt") != [f"child-rt-{i}" for i in range(4)]:
        problems.append(f"threads: {runtime_thread_names('child-rt')}")
    if wait_for_pending(0) != 0:
        problems.append("pending operations left in the child")
    return problems


class Busy:
    """A loop thread and a producer thread working the default runtime."""

    def __init__(self):
        self.stop = threading.Event()
        self.ch = tr.Channel(8)
        self.lock = tr.Mutex()
        self.sent = 0
        self.received = []
        self.locked = 0
        self.loop_worker = Worker(self._loop_main, name="busy-loop")
        self.producer = Worker(self._produce, name="busy-producer")

    def _produce(self):
        i = 0
        while not self.stop.is_set():
            try:
                self.ch.send_blocking(i, timeout=0.05)
            except TimeoutError:
                continue
            with self.lock:
                self.locked += 1
            i += 1
        self.sent = i
        self.ch.close()

    def _loop_main(self):
        async def run():
            ticker = tr.spawn_background(10**9, 0.001)
            while True:
                results = await asyncio.gather(
                    tr.sleep(0, "a"), tr.sleep(0.0005, "b"), tr.with_timeout(0, 5)
                )
                assert results == ["a", "b", "Operation completed"]
                try:
                    self.received.extend(await self.ch.recv_many(4))
                except tr.ChannelClosed:
                    break
                async with self.lock:
                    self.locked += 1
            ticker.cancel()
            assert ticker.progress > 0
            return True

        return asyncio.run(run())

    def __enter__(self):
        self.loop_worker.start()
        self.producer.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.producer.finish()
        assert self.loop_worker.finish() is True
        # The parent's work went on through every fork, item by item.
        assert self.received == list(range(self.sent))
        assert self.sent > 0 and self.locked > 0
        return False


def wait_child(pid, timeout=JOIN):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.005)


def test_bare_fork_while_the_runtime_is_busy():
    parent_rt = get_runtime()
    with tr.Runtime(worker_threads=1, thread_name="private") as private_rt, Busy() as busy:
        codes = []
        for _ in range(10):
            time.sleep(0.02)  # somewhere in the busy threads' work
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    signal.alarm(20)  # never outlive the test
                    problems = check_in_child(parent_rt, private_rt)
                    if problems:
                        os.write(2, (repr(problems) + "\n").encode())
                    code = 0 if not problems else 2
                finally:
                    os._exit(code)
            codes.append(wait_child(pid))
        assert codes == [0] * 10
        assert busy.loop_worker.is_alive()  # still working after all the forks
    assert get_runtime() is parent_rt
    assert parent_rt.stats()["running"]
    assert wait_for_pending(0) == 0


def _mp_child(queue, parent_rt, private_rt, parent_pid):
    queue.put((os.getpid() != parent_pid, check_in_child(parent_rt, private_rt)))


def test_multiprocessing_fork_processes_while_the_runtime_is_busy():
    ctx = multiprocessing.get_context("fork")
    parent_rt = get_runtime()
    with tr.Runtime(worker_threads=1, thread_name="private") as private_rt, Busy():
        queue = ctx.Queue()
        procs = [
            ctx.Process(target=_mp_child, args=(queue, parent_rt, private_rt, os.getpid()))
            for _ in range(4)
        ]
        for p in procs:
            p.start()
            time.sleep(0.02)
        reports = [queue.get(timeout=JOIN) for _ in procs]
        for p in procs:
            p.join(JOIN)
        assert [p.exitcode for p in procs] == [0] * 4
        assert reports == [(True, [])] * 4
        # The private runtime still works in the parent.
        assert asyncio.run(_on(private_rt)) == "private"
    assert get_runtime() is parent_rt
    assert wait_for_pending(0) == 0


async def _on(rt):
    return await rt.sleep(0, "private")
