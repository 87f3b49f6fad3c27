"""1,000 operations left behind by a loop that closes: quiet, freed, and the
runtime serves the next loop.

Run in a fresh interpreter, so that what reaches stderr and the logging
system is exactly what the runtime produced, and the counters start at zero.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import weakref

import pytest
import uvloop
from helpers import stats, wait_until

import tokio_runtime as tr

CLOSED_LOOP_SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, logging, sys, threading, time
    import uvloop
    import tokio_runtime as tr

    factory = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}[sys.argv[1]]
    how, workload = sys.argv[2], sys.argv[3]
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(f"{record.name}: {record.getMessage()}")

    logging.getLogger().addHandler(Collect(logging.INFO))  # INFO and up, any logger
    logging.getLogger().setLevel(logging.INFO)
    unraisable = []
    sys.unraisablehook = lambda u: unraisable.append(repr(u.exc_value))

    rx = tr.Channel(4)          # empty: receivers wait
    tx = tr.Channel(1)          # full: senders wait
    tx.try_send("full")
    lock = tr.Mutex()
    lock.acquire_blocking()     # held: acquirers wait
    ticks = []

    async def leave_1000_behind():
        keep = []
        for i in range(100):
            keep.append(tr.sleep(1000 + i, i))                          # timers
            keep.append(asyncio.ensure_future(tr.timeout(1000, tr.sleep(2000))))
            keep.append(asyncio.ensure_future(rx.recv()))               # channel waits
            keep.append(asyncio.ensure_future(rx.recv_many(3)))
            keep.append(asyncio.ensure_future(tx.send(i)))
            keep.append(asyncio.ensure_future(lock.acquire()))          # lock waits
            keep.append(tr.with_timeout(60_000, 60_000))                # seed functions
            if workload == "busy":  # records keep coming after the close
                keep.append(tr.sleep(0.001 * (i % 5)))
                keep.append(tr.spawn_background(10**9, 0.001, on_tick=ticks.append))
                keep.append(tr.channel_demo(1000) if i % 2 else tr.concurrent_tasks(["a"]))
            else:  # nothing arrives: only the sweep finds the closed loop
                keep.append(tr.sleep(3000))
                keep.append(tr.spawn_background(10, 1000, on_tick=ticks.append))
                keep.append(tr.with_timeout(9_000_000, 9_000_000))
        await asyncio.sleep(0.02)  # every wait is queued, the tickers tick
        assert tr.get_runtime().stats()["pending"] >= 900
        return keep

    def close_the_loop():
        # Only asyncio itself may complain: "Task was destroyed but it is pending!"
        # (for a loop closed without cancelling its tasks).  Recorded, checked below.
        seen = []

        async def main():
            asyncio.get_running_loop().set_exception_handler(
                lambda _loop, ctx: seen.append(ctx["message"])
            )
            return await leave_1000_behind()

        if how == "asyncio.run":  # cancels the tasks; the futures stay pending
            if sys.argv[1] == "uvloop":
                asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            keep = asyncio.run(main())
        else:  # closed with every task still waiting
            loop = factory()
            keep = loop.run_until_complete(main())
            loop.close()
        return keep, seen

    if how == "other thread":
        out = []
        t = threading.Thread(target=lambda: out.append(close_the_loop()))
        t.start()
        t.join()
        keep, seen = out[0]
    else:
        keep, seen = close_the_loop()
    t0 = time.monotonic()
    rt = tr.get_runtime()
    while rt.stats()["pending"] and time.monotonic() - t0 < 10:
        time.sleep(0.001)
    drop_time = time.monotonic() - t0
    s = rt.stats()
    progress_at_close = [h.progress for h in keep if isinstance(h, tr.TaskHandle)]
    time.sleep(0.05)
    assert [h.progress for h in keep if isinstance(h, tr.TaskHandle)] == progress_at_close
    assert all(h.done() and h.cancelled() for h in keep if isinstance(h, tr.TaskHandle))
    del keep
    gc.collect()

    # The waits gave their place up: the next loop gets the item, the room, the lock.
    async def next_loop():
        rx.try_send("for the next loop")
        got = await tr.timeout(5, rx.recv())
        assert tx.try_recv() == "full"
        await tr.timeout(5, tx.send("again"))
        lock.release()
        await tr.timeout(5, lock.acquire())
        lock.release()
        results = await asyncio.gather(
            tr.sleep(0, "s"), tr.shared_counter_demo(50), tr.channel_demo(3)
        )
        return got, results

    loop = factory()
    got, results = loop.run_until_complete(next_loop())
    loop.close()
    assert got == "for the next loop", got
    assert results == ["s", 50, ["Message 0", "Message 1", "Message 2"]], results
    assert not lock.locked() and len(rx) == 0 and tx.try_recv() == "again"
    # Every op struct is freed once its record is drained or, for a closed
    # loop's port, dropped by the sweep.
    t0 = time.monotonic()
    while rt.stats()["live_ops"] and time.monotonic() - t0 < 5:
        gc.collect()
        time.sleep(0.01)
    end = rt.stats()
    other = [m for m in seen if m != "Task was destroyed but it is pending!"]
    print(f"drop_time={drop_time:.3f} pending={s['pending']} waiters={s['waiters']} "
          f"live_ops={end['live_ops']} end_pending={end['pending']} records={records} "
          f"unraisable={unraisable} loop_messages={other} ticks={len(ticks)}")
    """
)


@pytest.mark.parametrize("workload", ["busy", "quiet"])
@pytest.mark.parametrize("how", ["asyncio.run", "closed with tasks waiting", "other thread"])
@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_a_thousand_operations_left_on_a_closed_loop(flavour, how, workload):
    proc = subprocess.run(
        [sys.executable, "-c", CLOSED_LOOP_SCRIPT, flavour, how, workload],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # nothing printed: no "Event loop is closed", no warning
    fields = dict(kv.split("=", 1) for kv in proc.stdout.split(" ", 6)[:6])
    assert float(fields["drop_time"]) < 1.0, proc.stdout  # the sweep runs every 0.25 s
    assert fields["pending"] == "0" and fields["waiters"] == "0", proc.stdout
    assert fields["live_ops"] == "0" and fields["end_pending"] == "0", proc.stdout
    assert "records=[] unraisable=[] loop_messages=[]" in proc.stdout, proc.stdout


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_a_closed_loop_and_its_port_are_freed(flavour):
    """Nothing keeps a closed loop alive: not its port, not the dispatcher
    (which used to hold the last port it had reported, and so that port's
    loop, until some other port reported)."""
    factory = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}[flavour]
    loop = factory()
    ports_before = stats()["ports"]

    async def use():
        return await tr.timeout(1, tr.sleep(0, "done"))  # the port reported itself

    assert loop.run_until_complete(use()) == "done"
    assert stats()["ports"] == ports_before + 1
    loop.close()
    gone = weakref.ref(loop)
    del loop

    def freed():
        gc.collect()
        return gone() is None and stats()["ports"] <= ports_before

    wait_until(freed, timeout=5, what="the closed loop and its port to be freed")
