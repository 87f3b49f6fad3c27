"""Exit with loops running in daemon threads is silent (issue 14, item 6);
a non-daemon thread blocked in ``recv_blocking()`` keeps the process alive.

Each child runs ``asyncio.run`` (or ``uvloop.run``) in a few daemon threads,
whose main coroutines await runtime operations (a native sleep, a channel
receive, a lock, a timeout around a receive, a background task) when the
main thread ends.  The child must exit 0 with nothing on stdout or stderr:
no ``Exception in thread ...: CancelledError`` from a loop the exit hook
cancelled, and no hang.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

CHILDREN = 20  # per loop flavour
PARALLEL = 4
CHILD_TIMEOUT = 30.0  # seconds; a hang fails, a slow machine does not

DAEMON_LOOPS = textwrap.dedent(
    """
    import asyncio, sys, threading
    import uvloop
    import tokio_runtime as tr

    run = uvloop.run if sys.argv[1] == "uvloop" else asyncio.run
    ch, lock = tr.Channel(1), tr.Mutex()
    lock.acquire_blocking()
    waits = {
        "sleep": lambda: tr.sleep(10),
        "recv": ch.recv,
        "lock": lock.acquire,
        "timeout": lambda: tr.timeout(10, ch.recv()),
        "background": lambda: tr.spawn_background(1000, 0.01),
    }
    ready = threading.Barrier(len(waits) + 1)

    def in_a_daemon_thread(what):
        async def main():
            wait = asyncio.ensure_future(waits[what]())
            await asyncio.sleep(0)  # its first step ran: it waits on the runtime
            ready.wait()
            await wait

        run(main())

    for what in waits:
        threading.Thread(target=in_a_daemon_thread, args=(what,), daemon=True).start()
    ready.wait()  # every loop is awaiting its operation: leave now
    """
)


def run_child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_exit_is_silent_with_loops_awaiting_runtime_ops_in_daemon_threads(flavour):
    with ThreadPoolExecutor(PARALLEL) as pool:
        procs = list(pool.map(lambda _: run_child(DAEMON_LOOPS, flavour), range(CHILDREN)))
    noisy = [(p.returncode, p.stdout, p.stderr[-800:]) for p in procs]
    noisy = [n for n in noisy if n != (0, "", "")]
    assert noisy == [], f"{len(noisy)} of {CHILDREN} children were not silent: {noisy[0]}"


NON_DAEMON = textwrap.dedent(
    """
    import asyncio, sys, threading, time
    import uvloop
    import tokio_runtime as tr

    run = uvloop.run if sys.argv[1] == "uvloop" else asyncio.run
    ch = tr.Channel(1)

    def receiver():  # not a daemon: the interpreter waits for it
        try:
            ch.recv_blocking()
        except tr.ChannelClosed:
            print("receiver: channel closed", flush=True)

    def closer():  # a daemon: it does not keep the process alive by itself
        time.sleep(1.0)
        ch.close()

    async def main():
        await tr.sleep(0)

    threading.Thread(target=receiver).start()
    threading.Thread(target=closer, daemon=True).start()
    run(main())
    print("main: done", flush=True)
    """
)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_a_non_daemon_thread_in_recv_blocking_keeps_the_process_alive(flavour):
    # Like a thread blocked in queue.Queue.get(): the main thread ends, the
    # process waits for the receiver, which ends once another thread closes
    # the channel; then the exit is as clean as ever.
    proc = run_child(NON_DAEMON, flavour)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == "main: done\nreceiver: channel closed\n"
