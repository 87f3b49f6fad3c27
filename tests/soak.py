"""Soak test: a random mixed workload for N seconds, checking invariants as it goes.

    python tests/soak.py --seconds 60 [--seed S] [--loops 4] [--producers 2]

Several event loops (stdlib asyncio and uvloop, each in its own thread, each
closed and replaced by a new one every few seconds) and plain producer and
consumer threads share the default runtime, one channel and one mutex.  The
loops' tasks pick operations at random: native sleeps, ``timeout``,
``spawn_background`` tickers (some cancelled), gathers cancelled part-way,
channel sends and receives under deadlines and cancellation, the mutex, the
five seed functions, and now and then a private ``Runtime`` built and shut
down.  Checked throughout and at the end:

* every item sent into the shared channel (by a send that returned) is
  received exactly once; a cancelled or timed-out send queued nothing;
* nobody is ever inside the mutex together with somebody else;
* every result is the right one (values, counts, tick sequences, messages);
* no unraisable exception, loop exception-handler call, thread exception or
  warning log record;
* at the end ``stats()["pending"]`` returns to 0 and no waiter is queued;
* resident memory stays bounded.

Prints a progress line about every 5 s and a summary; exits 1 on any
violation.  Not collected by pytest (no ``test_`` prefix); ``make soak``
runs it, and tests/test_soak.py runs it for a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import logging
import os
import random
import sys
import threading
import time
import traceback

import uvloop

import tokio_runtime as tr
from tokio_runtime._default import get_runtime

MIB = 1024 * 1024
RSS_BOUND = 64 * MIB  # growth allowed after the warm-up
OUT = sys.stdout


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seed = args.seed
        self.stop = threading.Event()
        self.violations: list[str] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.counts_lock = threading.Lock()
        self.channel: tr.Channel[tuple[str, int, int]] = tr.Channel(32)
        self.lock = tr.Mutex()
        self.inside = 0
        # Items sent minus items received, per item; an entry is dropped when
        # it reaches 0.  A receive may be counted before its send (another
        # thread), so an entry may dip below 0 for a moment, but never stays.
        self.balance: dict[tuple[str, int, int], int] = {}
        self.balance_lock = threading.Lock()
        self.n_sent = 0
        self.n_received = 0
        self.seq = collections.Counter()

    # -- bookkeeping (any thread) -------------------------------------------------
    def violation(self, what: str) -> None:
        self.violations.append(what)
        print(f"VIOLATION: {what}", file=OUT, flush=True)

    def count(self, key: str, n: int = 1) -> None:
        with self.counts_lock:
            self.counts[key] += n

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.violation(what)

    def sent(self, item: tuple[str, int, int]) -> None:
        self._move(item, 1)

    def received(self, items: list[tuple[str, int, int]]) -> None:
        for item in items:
            self._move(item, -1)

    def _move(self, item: tuple[str, int, int], n: int) -> None:
        with self.balance_lock:
            v = self.balance.get(item, 0) + n
            if v:
                self.balance[item] = v
            else:
                del self.balance[item]
            if n > 0:
                self.n_sent += 1
            else:
                self.n_received += 1

    def next_item(self, kind: str, who: int) -> tuple[str, int, int]:
        with self.counts_lock:
            self.seq[(kind, who)] += 1
            return (kind, who, self.seq[(kind, who)])

    # -- the shared mutex ---------------------------------------------------------------
    def enter(self, who: str) -> None:
        self.inside += 1
        if self.inside != 1:
            self.violation(f"{who}: {self.inside} holders inside the mutex")

    def leave(self) -> None:
        self.inside -= 1
        self.count("mutex")

    # -- plain threads ----------------------------------------------------------------------
    def producer(self, pid: int) -> None:
        rng = random.Random(self.seed * 1000 + pid)
        while not self.stop.is_set():
            item = self.next_item("thread", pid)
            try:
                self.channel.send_blocking(item, timeout=rng.choice((0.001, 0.01, 0.1)))
            except TimeoutError:
                self.count("send timeouts")
                continue
            except tr.ChannelClosed:
                return
            self.sent(item)
            self.count("ops")
            if rng.random() < 0.2:
                if self.lock.acquire_blocking(timeout=rng.choice((0.001, 0.05))):
                    try:
                        self.enter(f"producer {pid}")
                        time.sleep(0)
                    finally:
                        self.leave()
                        self.lock.release()
            if rng.random() < 0.05:
                time.sleep(rng.random() * 0.002)

    def consumer(self) -> None:
        rng = random.Random(self.seed * 1000 + 999)
        while True:
            try:
                self.received([self.channel.recv_blocking(timeout=0.05)])
                self.count("ops")
            except TimeoutError:
                if self.stop.is_set():
                    return
            except tr.ChannelClosed:
                return
            if rng.random() < 0.1:
                with self.lock:
                    self.enter("consumer")
                    self.leave()

    # -- event loops ------------------------------------------------------------------------------
    def loop_thread(self, lid: int) -> None:
        rng = random.Random(self.seed * 1000 + 500 + lid)
        epoch = 0
        while not self.stop.is_set():
            flavour = "uvloop" if (lid + epoch) % 2 else "asyncio"
            loop = uvloop.new_event_loop() if flavour == "uvloop" else asyncio.new_event_loop()
            loop.set_exception_handler(
                lambda _loop, ctx, lid=lid: self.violation(
                    f"loop {lid}: exception handler: {ctx.get('message')} {ctx.get('exception')!r}"
                )
            )
            until = time.monotonic() + rng.uniform(1.0, 3.0)
            try:
                loop.run_until_complete(self.epoch(lid, rng, until))
            except BaseException as exc:
                self.violation(f"loop {lid} ({flavour}): {exc!r}\n{traceback.format_exc()}")
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
            self.count("loops")
            epoch += 1

    async def epoch(self, lid: int, rng: random.Random, until: float) -> None:
        workers = [self.worker(lid, w, random.Random(rng.random()), until) for w in range(4)]
        await asyncio.gather(*workers)

    async def worker(self, lid: int, wid: int, rng: random.Random, until: float) -> None:
        ops = [
            (self.op_sleeps, 20),
            (self.op_timeout, 10),
            (self.op_ticker, 5),
            (self.op_cancelled_gather, 8),
            (self.op_channel_send, 12),
            (self.op_channel_recv, 12),
            (self.op_mutex, 10),
            (self.op_seed, 8),
            (self.op_local_channel, 5),
            (self.op_private_runtime, 1),
        ]
        fns = [fn for fn, _ in ops]
        weights = [w for _, w in ops]
        while time.monotonic() < until and not self.stop.is_set():
            fn = rng.choices(fns, weights)[0]
            await fn(lid, rng)

    # -- operations --------------------------------------------------------------------------------
    async def op_sleeps(self, lid: int, rng: random.Random) -> None:
        n = rng.randint(1, 50)
        delays = [rng.choice((0, 0, 1e-5, 1e-4, 1e-3)) for _ in range(n)]
        got = await asyncio.gather(*(tr.sleep(d, (lid, i)) for i, d in enumerate(delays)))
        self.expect(got == [(lid, i) for i in range(n)], f"sleep results {got[:3]}...")
        self.count("ops", n)

    async def op_timeout(self, lid: int, rng: random.Random) -> None:
        inner = rng.choice((0, 1e-4, 1e-3, 0.01))
        limit = rng.choice((0, 1e-4, 1e-3, 0.01, 5.0))
        try:
            got = await tr.timeout(limit, tr.sleep(inner, "in time"))
            self.expect(got == "in time", f"timeout result {got!r}")
        except TimeoutError:
            self.expect(limit < 5.0, f"timed out under a 5 s limit around a {inner} s sleep")
            self.count("timeouts")
        self.count("ops")

    async def op_ticker(self, lid: int, rng: random.Random) -> None:
        k = rng.randint(0, 30)
        ticks: list[int] = []
        handle = tr.spawn_background(k, rng.choice((0, 1e-4, 1e-3)), on_tick=ticks.append)
        cancel = rng.random() < 0.4
        if cancel:
            await tr.sleep(rng.choice((0, 1e-4, 1e-3)))
            handle.cancel()
        try:
            got = await handle
            self.expect(got == k and ticks == list(range(1, k + 1)), f"ticker {got} {ticks}")
        except asyncio.CancelledError:
            self.expect(cancel and handle.cancelled(), "ticker cancelled by nobody")
            self.expect(ticks == list(range(1, len(ticks) + 1)), f"ticks out of order {ticks}")
            self.expect(len(ticks) <= handle.progress <= k, f"progress {handle.progress}")
            self.count("cancelled")
        self.count("ops", 1 + len(ticks))

    async def op_cancelled_gather(self, lid: int, rng: random.Random) -> None:
        n = rng.randint(1, 40)
        futs = [tr.sleep(rng.choice((0, 1e-4, 1e-3, 1.0)), i) for i in range(n)]
        gathered = asyncio.gather(*futs, return_exceptions=True)
        await tr.sleep(rng.choice((0, 1e-4, 5e-4)))
        for f in rng.sample(futs, rng.randint(0, n)):
            f.cancel()
        for f in futs:  # the long ones too
            if not f.done() and rng.random() < 0.9:
                f.cancel()
        leftovers = [f for f in futs if not f.done()]
        for f in leftovers:
            f.cancel()
        results = await gathered
        for i, r in enumerate(results):
            self.expect(r == i or isinstance(r, asyncio.CancelledError), f"gather item {i}: {r!r}")
        self.count("cancelled", sum(isinstance(r, asyncio.CancelledError) for r in results))
        self.count("ops", n)

    async def op_channel_send(self, lid: int, rng: random.Random) -> None:
        for _ in range(rng.randint(1, 10)):
            item = self.next_item("loop", lid)
            how = rng.random()
            try:
                if how < 0.3:
                    await tr.timeout(rng.choice((0, 1e-4, 1e-3, 0.01)), self.channel.send(item))
                elif how < 0.5:
                    task = asyncio.ensure_future(self.channel.send(item))
                    await tr.sleep(rng.choice((0, 1e-4)))
                    task.cancel()
                    await task
                else:
                    await self.channel.send(item)
            except (TimeoutError, asyncio.CancelledError):
                self.count("cancelled")  # the item was not queued
                continue
            except tr.ChannelClosed:
                return
            self.sent(item)
            self.count("ops")

    async def op_channel_recv(self, lid: int, rng: random.Random) -> None:
        how = rng.random()
        try:
            if how < 0.3:
                got = [await tr.timeout(rng.choice((0, 1e-4, 1e-3, 0.01)), self.channel.recv())]
            elif how < 0.5:
                task = asyncio.ensure_future(self.channel.recv_many(rng.randint(1, 16)))
                await tr.sleep(rng.choice((0, 1e-4, 1e-3)))
                task.cancel()
                got = await task
            else:
                got = await tr.timeout(
                    rng.choice((1e-3, 0.01, 0.05)), self.channel.recv_many(rng.randint(1, 16))
                )
        except (TimeoutError, asyncio.CancelledError):
            self.count("cancelled")  # nothing was taken
            return
        except tr.ChannelClosed:
            return
        self.received(got)
        self.count("ops", len(got))

    async def op_mutex(self, lid: int, rng: random.Random) -> None:
        async def section() -> None:
            async with self.lock:
                self.enter(f"loop {lid}")
                try:
                    if rng.random() < 0.5:
                        await tr.sleep(0)
                finally:
                    self.leave()

        try:
            if rng.random() < 0.3:
                await tr.timeout(rng.choice((0, 1e-4, 1e-3)), section())
            else:
                await section()
        except TimeoutError:
            self.count("cancelled")
        self.count("ops")

    async def op_seed(self, lid: int, rng: random.Random) -> None:
        which = rng.randrange(5)
        if which == 0:
            a, b = rng.randint(0, 3), rng.randint(0, 3)
            try:
                got = await tr.with_timeout(a, b)
                self.expect(a <= b and got == "Operation completed", f"with_timeout({a}, {b})")
            except TimeoutError as exc:
                want = f"Operation timed out after {b}ms (operation would take {a}ms)"
                self.expect(a > b and str(exc) == want, f"with_timeout({a}, {b}): {exc}")
        elif which == 1:
            n = rng.randint(0, 300)
            self.expect(await tr.shared_counter_demo(n) == n, f"shared_counter_demo({n})")
        elif which == 2:
            urls = [f"u{i}" for i in range(rng.randint(0, 3))]
            got = await tr.concurrent_tasks(urls)
            self.expect(got == [f"Fetched: {u}" for u in urls], f"concurrent_tasks {got}")
        elif which == 3:
            n = rng.randint(0, 4)
            got = await tr.channel_demo(n)
            self.expect(got == [f"Message {i}" for i in range(n)], f"channel_demo {got}")
        else:
            n = rng.randint(0, 3)
            got = await tr.spawn_background_task(n, rng.randint(0, 2))
            self.expect(got == f"Spawned background task with {n} iterations", got)
        self.count("ops")

    async def op_local_channel(self, lid: int, rng: random.Random) -> None:
        ch: tr.Channel[int] = tr.Channel(rng.randint(1, 4))
        n = rng.randint(0, 50)

        async def produce() -> None:
            for i in range(n):
                await ch.send(i)
            ch.close()

        producer = asyncio.ensure_future(produce())
        got = [i async for i in ch]
        await producer
        self.expect(got == list(range(n)), f"local channel {got}")
        self.count("ops", 2 * n)

    async def op_private_runtime(self, lid: int, rng: random.Random) -> None:
        with tr.Runtime(worker_threads=1, thread_name=f"soak-{lid}") as rt:
            got = await asyncio.gather(rt.sleep(0, "a"), rt.timeout(1, rt.sleep(0, "b")))
            self.expect(got == ["a", "b"], f"private runtime {got}")
            pending = rt.sleep(10)
        try:
            await pending
            self.violation("a sleep outlived its runtime's shutdown")
        except asyncio.CancelledError:
            pass
        self.count("runtimes")

    # -- the run -----------------------------------------------------------------------------------
    def run(self) -> int:
        seconds = self.args.seconds
        start = time.monotonic()
        threads = [
            threading.Thread(target=self.loop_thread, args=(i,), name=f"soak-loop-{i}", daemon=True)
            for i in range(self.args.loops)
        ]
        threads += [
            threading.Thread(
                target=self.producer, args=(i,), name=f"soak-producer-{i}", daemon=True
            )
            for i in range(self.args.producers)
        ]
        # Daemons: a thread stuck in a deadlock must not keep the process alive.
        threads.append(threading.Thread(target=self.consumer, name="soak-consumer", daemon=True))
        for t in threads:
            t.start()
        warm = min(2.0, seconds / 3)
        base_rss = None
        next_report = start + 5.0
        last_ops = -1
        while (now := time.monotonic()) < start + seconds and not self.violations:
            time.sleep(0.05)
            if base_rss is None and now >= start + warm:
                base_rss = rss_bytes()
            if now >= next_report:
                next_report += 5.0
                self.report(now - start)
                if self.counts["ops"] == last_ops:
                    self.violation("no operation completed in 5 s: stuck")
                last_ops = self.counts["ops"]
                if base_rss is not None and rss_bytes() - base_rss > RSS_BOUND:
                    self.violation(f"RSS grew by {(rss_bytes() - base_rss) / MIB:.1f} MiB")
        self.stop.set()
        deadline = time.monotonic() + 30
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                self.violation(f"{t.name} did not stop")
        self.finish(base_rss if base_rss is not None else rss_bytes())
        elapsed = time.monotonic() - start
        c = self.counts
        print(
            f"soak {'FAILED' if self.violations else 'OK'}: {elapsed:.1f} s, seed {self.seed}, "
            f"{c['ops']} operations, {self.n_sent} items sent and received exactly once, "
            f"{c['mutex']} mutex entries, {c['cancelled']} cancellations, "
            f"{c['timeouts']} timeouts, {c['loops']} loops, {c['runtimes']} private runtimes, "
            f"RSS {rss_bytes() / MIB:.1f} MiB, {len(self.violations)} violations",
            file=OUT,
        )
        # The plain closing line that test-output readers understand.
        failed = 1 if self.violations else 0
        print(f"soak: {1 - failed} passed, {failed} failed", file=OUT, flush=True)
        return failed

    def report(self, elapsed: float) -> None:
        c, s = self.counts, get_runtime().stats()
        print(
            f"[{elapsed:6.1f} s] {c['ops']} ops, {self.n_sent} sent / "
            f"{self.n_received} received, {c['mutex']} mutex, {c['cancelled']} cancelled, "
            f"{c['loops']} loops, pending {s['pending']}, RSS {rss_bytes() / MIB:.1f} MiB",
            file=OUT,
            flush=True,
        )

    def finish(self, base_rss: int) -> None:
        self.channel.close()
        while True:
            try:
                self.received([self.channel.try_recv()])
            except tr.ChannelClosed:
                break
        if self.balance:
            lost = [item for item, n in self.balance.items() if n > 0]
            extra = [item for item, n in self.balance.items() if n < 0]
            self.violation(f"channel: lost {lost[:5]}, duplicated or unknown {extra[:5]}")
        self.expect(self.inside == 0 and not self.lock.locked(), "the mutex is left held")
        rt = get_runtime()
        deadline = time.monotonic() + 5
        while rt.stats()["pending"] and time.monotonic() < deadline:
            time.sleep(0.01)
        s = rt.stats()
        self.expect(s["pending"] == 0, f"{s['pending']} operations still pending")
        self.expect(s["waiters"] == 0, f"{s['waiters']} waiters still queued")
        gc.collect()
        grown = rss_bytes() - base_rss
        self.expect(grown < RSS_BOUND, f"RSS grew by {grown / MIB:.1f} MiB")


class Ticks:
    """Stdout for the run: spawn_background_task's tick lines are counted, not shown."""

    def __init__(self, out) -> None:
        self.out = out
        self.lines = 0

    def write(self, s: str) -> int:
        if s.startswith("Background task iteration: "):
            self.lines += 1
        elif s != "\n":
            self.out.write(s)
        return len(s)

    def flush(self) -> None:
        self.out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=random.randrange(2**32))
    parser.add_argument("--loops", type=int, default=4)
    parser.add_argument("--producers", type=int, default=2)
    args = parser.parse_args(argv)
    soak = Soak(args)

    sys.unraisablehook = lambda u: soak.violation(
        f"unraisable: {u.err_msg} {u.exc_value!r} in {u.object!r}"
    )
    threading.excepthook = lambda a: soak.violation(
        f"thread {a.thread.name if a.thread else '?'}: {a.exc_value!r}"
    )

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            soak.violation(f"log {record.name}: {record.getMessage()}")

    logging.getLogger().addHandler(Collect(logging.WARNING))
    sys.stdout = Ticks(OUT)
    print(
        f"soak: {args.seconds:g} s, seed {args.seed}, {args.loops} loops, "
        f"{args.producers} producers",
        file=OUT,
        flush=True,
    )
    return soak.run()


if __name__ == "__main__":
    sys.exit(main())
