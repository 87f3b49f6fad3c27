"""Cancel against complete: 10,000 operations cancelled as they finish.

Each round starts a mix of operations (native sleeps of zero and of a few
microseconds, ``timeout`` around a sleep, channel receives and sends, mutex
acquisitions, a seed function), makes them completable at once (an item
sent, room made, the lock released, the timers due) and cancels them at
about that moment: in the same step, after a loop iteration, after a native
round trip, from another thread, or from a done-callback of the first
operation to finish.  Whatever wins, nothing may be reported out of band
(``InvalidStateError``, an unraisable exception, "exception was never
retrieved", "Task was destroyed but it is pending!"), every result must be
the right one, no item may be lost or duplicated, the lock must end free,
and no native operation or waiter may be left behind.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

from helpers import Noise, stats, until

import tokio_runtime as tr
from tokio_runtime import Channel, ChannelEmpty, Mutex

ROUNDS = 50
PER_ROUND = 200  # 10,000 operations per loop flavour
KINDS = ("sleep0", "sleep_tiny", "timeout", "recv", "send", "acquire", "with_timeout")
MODES = ("same step", "one iteration", "native round trip", "other thread", "done callback")


async def test_ten_thousand_cancels_at_completion_are_quiet():
    loop = asyncio.get_running_loop()
    rng = random.Random(1234)
    recv_ch: Channel[tuple[int, int]] = Channel(10_000)
    send_ch: Channel[object] = Channel(4)
    lock = Mutex()
    inside = 0
    counts = dict.fromkeys(("ok", "cancelled", "timeout"), 0)
    per_mode = dict.fromkeys(MODES, 0)

    async def acquire_then_release():
        nonlocal inside
        await lock.acquire()
        inside += 1
        assert inside == 1
        inside -= 1
        lock.release()
        return "locked"

    with Noise(loop) as noise:
        for round_ in range(ROUNDS):
            # Filled to capacity: every send waits for room.
            prefill = [("pre", round_, i) for i in range(4)]
            for item in prefill:
                send_ch.try_send(item)
            await lock.acquire()  # every acquire waits for the release
            ops = []  # (kind, expected, awaitable)
            sent_items, send_items = [], []
            for i in range(PER_ROUND):
                kind = KINDS[i % len(KINDS)]
                if kind == "sleep0":
                    ops.append((kind, i, tr.sleep(0, i)))
                elif kind == "sleep_tiny":
                    ops.append((kind, i, tr.sleep(rng.choice((1e-6, 1e-5, 1e-4)), i)))
                elif kind == "timeout":
                    inner = tr.sleep(rng.choice((0, 1e-5, 1e-4)), i)
                    t = asyncio.ensure_future(tr.timeout(rng.choice((0, 1e-5, 1e-4)), inner))
                    ops.append((kind, i, t))
                elif kind == "recv":
                    ops.append((kind, None, asyncio.ensure_future(recv_ch.recv())))
                elif kind == "send":
                    item = ("sent", round_, i)
                    send_items.append(item)
                    ops.append((kind, item, asyncio.ensure_future(send_ch.send(item))))
                elif kind == "acquire":
                    ops.append((kind, "locked", asyncio.ensure_future(acquire_then_release())))
                else:
                    ops.append((kind, "Operation completed", tr.with_timeout(0, 1000)))
            if round_ % 3:
                await asyncio.sleep(0)  # the tasks reach their waits

            # Make everything completable at once ...
            for i in range(sum(k == "recv" for k, _, _ in ops)):
                item = (round_, i)
                recv_ch.try_send(item)
                sent_items.append(item)
            taken_from_send_ch = []
            for _ in range(rng.randint(1, 4)):
                taken_from_send_ch.append(send_ch.try_recv())
            lock.release()

            # ... and cancel all of them, or a random half, about then.
            victims = [a for _, _, a in ops if rng.random() < 0.5 or round_ % 2]
            rng.shuffle(victims)

            def cancel_all(_=None, victims=victims):
                for a in victims:
                    a.cancel()

            mode = MODES[round_ % len(MODES)]
            per_mode[mode] += 1
            if mode == "same step":
                cancel_all()
            elif mode == "one iteration":
                await asyncio.sleep(0)
                cancel_all()
            elif mode == "native round trip":
                await tr.sleep(0)
                cancel_all()
            elif mode == "other thread":
                delay = rng.choice((0, 1e-5, 1e-4, 5e-4))

                def later(delay=delay):
                    time.sleep(delay)
                    loop.call_soon_threadsafe(cancel_all)

                threading.Thread(target=later).start()
            else:
                ops[0][2].add_done_callback(cancel_all)

            # Senders that were not cancelled need room: keep taking items
            # out until every send is over.
            sends = [a for k, _, a in ops if k == "send"]

            async def make_room(sends=sends, taken=taken_from_send_ch):
                while not all(a.done() for a in sends):
                    try:
                        taken.append(send_ch.try_recv())
                    except ChannelEmpty:
                        pass
                    await asyncio.sleep(0)

            room = asyncio.ensure_future(make_room())
            results = await asyncio.gather(*(a for _, _, a in ops), return_exceptions=True)
            await room
            # The other-thread cancel may land after gather: let it, then settle.
            await asyncio.sleep(0.001 if mode == "other thread" else 0)

            got = []
            for (kind, expected, _), r in zip(ops, results):
                if isinstance(r, asyncio.CancelledError):
                    counts["cancelled"] += 1
                elif isinstance(r, TimeoutError):
                    assert kind == "timeout", (kind, r)
                    counts["timeout"] += 1
                elif isinstance(r, BaseException):
                    raise AssertionError(f"{kind}: unexpected {r!r}")
                else:
                    counts["ok"] += 1
                    if kind == "recv":
                        got.append(r)
                    elif kind == "send":
                        assert r is None
                    else:
                        assert r == expected, (kind, r, expected)

            # Received items: each sent exactly once, the rest still queued.
            left = []
            while True:
                try:
                    left.append(recv_ch.try_recv())
                except ChannelEmpty:
                    break
            assert sorted(got + left) == sorted(sent_items)
            assert len(set(got)) == len(got)
            # Sends: a cancelled one never queued its item; prefilled first.
            completed_sends = {
                item for (kind, item, a), r in zip(ops, results) if kind == "send" and r is None
            }
            while True:
                try:
                    taken_from_send_ch.append(send_ch.try_recv())
                except ChannelEmpty:
                    break
            assert taken_from_send_ch[:4] == prefill
            assert sorted(taken_from_send_ch[4:]) == sorted(completed_sends)
            assert set(taken_from_send_ch[4:]) <= set(send_items)
            # Every acquirer that won released; the cancelled ones hold nothing.
            assert not lock.locked()
            assert inside == 0
        ops = results = victims = None
    assert noise.errors == []
    # Every native op finished, and its record reached this loop and freed it
    # (the loop has to run for that: cancelled ops' records come late).
    await until(
        lambda: stats()["pending"] == stats()["waiters"] == stats()["live_ops"] == 0,
        what="every op finished and freed",
    )
    print(f"outcomes {counts}, cancel modes {per_mode}")
    # Both outcomes happened many times: the race was really run.
    assert counts["ok"] > 1000 and counts["cancelled"] > 1000, counts
    assert sum(counts.values()) == ROUNDS * PER_ROUND
