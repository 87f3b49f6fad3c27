"""An exception anywhere in our code never corrupts a channel or a lock.

A ``KeyboardInterrupt`` (or any exception a signal handler raises) lands
between two bytecodes of whatever Python code runs on the main thread, for
instance right after one of our C calls returned.  These tests make that
happen everywhere: a trace function raises ``KeyboardInterrupt`` at the k-th
point of our package's code where CPython would run a signal handler, for
k = 1, 2, ... until the operation runs to its end without reaching k, so
every such point of every path gets its turn.  After each interruption the
channel or lock must still be whole:

* an item whose send was interrupted is delivered exactly once or not at
  all, never half (no ``KeyError`` for a key without its object, no object
  left behind without its key);
* an item whose receive was interrupted is either returned or still
  receivable;
* an acquire that was interrupted does not leave the lock held;
* a wake is never lost: a waiting coroutine or thread still gets its item or
  the lock (at worst after the dispatcher's next sweep).

A real signal storm (SIGINT delivered while the main thread sends, receives
and locks in a loop) closes the file.
"""

from __future__ import annotations

import asyncio
import dis
import os
import signal
import sys
import threading
import time
from collections import Counter

import pytest
import uvloop
from helpers import JOIN, Worker, loop_worker, wait_until

import tokio_runtime
from tokio_runtime import Channel, ChannelClosed, ChannelEmpty, Mutex

# An interrupt that lands right after a coroutine object was made and before
# it is awaited leaves it never awaited: Python warns, which is all it costs.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")

PKG_DIR = os.path.dirname(os.path.abspath(tokio_runtime.__file__))
LIFETIME = os.path.join(PKG_DIR, "_lifetime.py")
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
#: Upper bound on the interrupt points of one operation (a runaway guard).
MAX_POINTS = 4000
#: Opcodes at which CPython checks for pending signals before running them,
#: and the calls after which it checks (3.11; names absent elsewhere are skipped).
_CHECKPOINTS = {dis.opmap[n] for n in ("RESUME", "JUMP_BACKWARD") if n in dis.opmap}
_CALLS = {dis.opmap[n] for n in ("CALL", "CALL_FUNCTION_EX") if n in dis.opmap}
_RETURN_VALUE = dis.opmap["RETURN_VALUE"]


def _under_gc_callback(frame) -> bool:
    """Whether frame runs inside a port's loop-collected weakref callback."""
    while frame is not None:
        if frame.f_code.co_name == "loop_collected":
            return True
        frame = frame.f_back
    return False


class Injector:
    """Raise ``KeyboardInterrupt`` at the k-th point where a signal can land.

    CPython runs a Python-level signal handler (and raises what it raises)
    only at its "eval breaker" checks: when a function starts (``RESUME``),
    on a backward jump, and right after a call returns.  This injector
    traces opcodes and raises at exactly those points, counting only the
    package's own code on the thread that enters it, so every point at which
    Ctrl-C could interrupt our code gets its turn (and none at which it
    could not, such as between a ``with`` block's last statement and its
    ``__exit__``, where a line tracer could raise but a signal cannot).

    With ``target`` (a function of the package), only points reached while
    the first call of ``target`` is on the stack count (so a coroutine on the
    same loop that is not the one under test is left alone).  ``fired`` tells whether
    the k-th point was reached.
    """

    def __init__(self, k: int, target=None) -> None:
        self.k = k
        self.seen = 0
        self.fired = False
        self.target = getattr(target, "__code__", None)
        self.inside = 0 if self.target is not None else 1
        self.target_frame = None
        self.after_call: dict = {}  # frame -> the last opcode it ran was a call

    def _global(self, frame, event, arg):
        filename = frame.f_code.co_filename
        if not filename.startswith(PKG_DIR) or filename == LIFETIME:
            # _lifetime's destructors run when the garbage collector finds
            # an object, at any point of any code: an exception there is
            # "unraisable" and costs at most one native reference (a leak,
            # never a corrupted channel or lock); not what is tested here.
            return None
        if _under_gc_callback(frame):
            # Likewise a loop's weakref callback (its port closing when the
            # collector frees a loop an earlier trial dropped): it runs at
            # any point too, and an exception there is unraisable.
            return None
        frame.f_trace_opcodes = True
        if frame.f_code is self.target:
            # The first call of target is the one under test (a coroutine
            # keeps its frame across resumptions); later ones (another task
            # releasing the same lock) are left alone.
            if self.target_frame is None:
                self.target_frame = frame
            if frame is self.target_frame:
                self.inside += 1  # this call (or resumption) runs until its 'return'
                return self._entered
        if frame.f_code is self.target:
            return None
        return self._local if self.inside else None

    def _entered(self, frame, event, arg):
        if event == "return":
            self.inside -= 1
            self.after_call.pop(frame, None)
            return None
        return self._local(frame, event, arg) and self._entered

    def _local(self, frame, event, arg):
        if event != "opcode":
            if event == "return":
                self.after_call.pop(frame, None)
            return self._local
        op = frame.f_code.co_code[frame.f_lasti]
        # After a call, CPython raises at the call instruction; a tracer can
        # only raise at the next one, which is the same place for any
        # handler except when it is a RETURN_VALUE (3.11 leaves those out of
        # a try's range): those points are the call's, covered by the try
        # like its other ones, and skipped here.
        checkpoint = op in _CHECKPOINTS or (
            self.after_call.get(frame, False) and op != _RETURN_VALUE
        )
        self.after_call[frame] = op in _CALLS
        if checkpoint and self.inside and not self.fired:
            self.seen += 1
            if self.seen == self.k:
                self.fired = True
                self.after_call.clear()
                raise KeyboardInterrupt(f"injected at point {self.k}")
        return self._local

    def __enter__(self) -> Injector:
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc) -> None:
        sys.settrace(None)
        self.after_call.clear()
        self.target_frame = None


def at_every_point(trial, target=None) -> int:
    """Run ``trial(injector)`` with the interrupt at point 1, 2, ... in turn.

    ``trial`` does one operation inside ``with injector:`` and checks the
    state afterwards.  Returns how many points were interrupted; stops once
    a run no longer reaches the injection point.
    """
    for k in range(1, MAX_POINTS):
        inj = Injector(k, target)
        trial(inj)
        if not inj.fired:
            assert k > 1, "the operation ran no code of the package: nothing was tested"
            return k - 1
    raise AssertionError(f"more than {MAX_POINTS} points: a runaway loop?")


def drain_all(ch: Channel) -> list:
    """Everything a channel still holds (it is closed first)."""
    ch.close()
    out = []
    while True:
        try:
            out.append(ch.try_recv())
        except ChannelClosed:
            return out


def assert_whole(ch: Channel, sent: list, maybe: list, received: list) -> None:
    """Every item surely sent arrived once; interrupted ones at most once;
    nothing else arrived; the channel keeps no object without its key."""
    got = received + drain_all(ch)
    assert len(got) == len(set(got)), f"an item arrived twice: {sorted(got)}"
    assert set(sent) <= set(got), f"lost: {sorted(set(sent) - set(got))}"
    assert set(got) <= set(sent) | set(maybe), f"unexpected: {set(got) - set(sent) - set(maybe)}"
    assert len(ch) == 0
    assert ch._items == {}, f"objects left without their keys: {ch._items}"


#: How a test's numbered items travel: small ints inline in the ring, big
#: ints and bytes as boxed native values, other objects as dict keys.  Each
#: kind has its own interrupt bookkeeping (see _channel.py).
ITEM_KINDS = {
    "int": lambda n: n,
    "bigint": lambda n: 2**62 + n,
    "bytes": lambda n: str(n).encode(),
    "object": lambda n: f"o{n}",
    "mixed": lambda n: (n, 2**62 + n, str(n).encode(), f"o{n}")[n % 4],
}


# ---- channel: blocking and non-blocking forms on the main thread ------------------


@pytest.mark.parametrize("kind", list(ITEM_KINDS))
@pytest.mark.parametrize("form", ["try_send", "send_blocking", "send_blocking_full"])
def test_interrupted_sends_deliver_once_or_not_at_all(form, kind):
    make = ITEM_KINDS[kind]
    ch: Channel = Channel(1)
    sent, maybe, received = [], [], []
    stop = threading.Event()

    def consumer():  # a thread taking items as they come
        while not stop.is_set() or len(ch):
            try:
                received.append(ch.recv_blocking(timeout=0.01))
            except TimeoutError:
                pass

    counter = iter(range(10**9))

    def trial(inj):
        n = next(counter)
        item = make(n)
        if form == "send_blocking_full":
            ch.try_send(make(-n - 1))  # full: the send waits for the consumer
            sent.append(make(-n - 1))
        try:
            with inj:
                if form == "try_send":
                    ch.try_send(item)
                else:
                    ch.send_blocking(item, timeout=JOIN)
            sent.append(item)
        except KeyboardInterrupt:
            maybe.append(item)
        wait_until(lambda: len(ch) == 0, what="the consumer took everything")
        # The channel still works in both directions after the interrupt.
        ch.send_blocking(make(-(10**6) - n), timeout=JOIN)
        sent.append(make(-(10**6) - n))
        wait_until(lambda: len(ch) == 0, what="the consumer took the probe")

    worker = Worker(consumer)
    if form != "try_send":
        worker.start()
    else:
        worker = None
    try:
        if worker is None:  # try_send into an empty channel; take them here

            def trial_try(inj):
                item = make(next(counter))
                try:
                    with inj:
                        ch.try_send(item)
                    sent.append(item)
                except KeyboardInterrupt:
                    maybe.append(item)
                while len(ch):
                    received.append(ch.try_recv())

            points = at_every_point(trial_try)
        else:
            points = at_every_point(trial)
    finally:
        stop.set()
        if worker is not None:
            worker.finish()
    assert_whole(ch, sent, maybe, received)
    print(f"{form}/{kind}: interrupted at {points} points; {len(maybe)} sends interrupted")


@pytest.mark.parametrize("kind", list(ITEM_KINDS))
@pytest.mark.parametrize("form", ["try_recv", "recv_blocking", "recv_blocking_empty"])
def test_interrupted_receives_never_strand_an_item(form, kind):
    make = ITEM_KINDS[kind]
    ch: Channel = Channel(4)
    sent, received = [], []
    counter = iter(range(10**9))

    def trial(inj):
        item = make(next(counter))
        if form == "recv_blocking_empty":
            # The receive waits; a thread sends a moment later.
            sender = threading.Timer(0.005, ch.send_blocking, (item,))
            sender.start()
        else:
            ch.try_send(item)
        sent.append(item)
        try:
            with inj:
                got = ch.try_recv() if form == "try_recv" else ch.recv_blocking(timeout=JOIN)
            received.append(got)
        except KeyboardInterrupt:
            pass
        if form == "recv_blocking_empty":
            sender.join()
        # Whatever the interrupt hit, the item is returned or still there.
        while len(ch):
            received.append(ch.try_recv())
        assert Counter(received) == Counter(sent), "an item was stranded"

    points = at_every_point(trial)
    assert_whole(ch, sent, [], received)
    print(f"{form}/{kind}: interrupted at {points} points")


def test_an_interrupted_blocking_send_leaves_no_dead_waiter():
    """A send interrupted while queued must not swallow the wake meant for
    it: the next sender gets the room."""
    ch: Channel[int] = Channel(1)

    def trial(inj):
        ch.try_send(0)  # full
        taker = threading.Timer(0.005, ch.try_recv)
        taker.start()
        try:
            with inj:
                ch.send_blocking(1, timeout=JOIN)
            assert ch.try_recv() == 1
        except KeyboardInterrupt:
            pass
        taker.join()
        wait_until(lambda: len(ch) <= 1, what="room")
        while len(ch):
            ch.try_recv()
        ch.try_send(2)
        # A second producer must get in as soon as there is room.
        t = threading.Timer(0.005, ch.try_recv)
        t.start()
        ch.send_blocking(3, timeout=5.0)
        t.join()
        assert ch.try_recv() == 3
        with pytest.raises(ChannelEmpty):
            ch.try_recv()

    at_every_point(trial)
    assert ch._items == {}


# ---- channel: async forms, woken on the same loop, another loop, a thread ----------


@pytest.mark.parametrize("loop_kind", list(LOOPS))
@pytest.mark.parametrize("peer", ["same_loop", "other_loop", "thread"])
def test_interrupted_async_send_wakes_its_receiver(loop_kind, peer):
    """``await ch.send(x)`` with a receiver already waiting, interrupted at
    every point: the receiver gets every item that was sent, once."""
    loop = LOOPS[loop_kind]()
    ch: Channel[int] = Channel(1)
    sent, maybe, received = [], [], []
    delays: list[float] = []
    counter = iter(range(10**9))

    async def receive_forever():
        try:
            while True:
                received.append(await ch.recv())
        except ChannelClosed:
            pass

    if peer == "same_loop":
        receiver = loop.create_task(receive_forever())
    elif peer == "other_loop":
        worker = loop_worker(LOOPS[loop_kind], receive_forever, name="receiver-loop")
    else:

        def receive_blocking():
            try:
                while True:
                    received.append(ch.recv_blocking())
            except ChannelClosed:
                pass

        worker = Worker(receive_blocking)
        worker.start()

    async def settle():
        # Whatever went in comes out: the receiver takes everything queued,
        # interrupted sends' items included (their wake must not be lost).
        deadline = time.monotonic() + JOIN
        while (len(ch) or not set(sent) <= set(received)) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)

    def trial(inj):
        item = next(counter)
        loop.run_until_complete(asyncio.sleep(0.002))  # the receiver waits again
        try:
            with inj:
                loop.run_until_complete(ch.send(item))
            sent.append(item)
        except KeyboardInterrupt:
            maybe.append(item)
        # Every item sent reaches the receiver (a wake may be delayed by at
        # most the dispatcher's sweep, never lost).
        t0 = time.monotonic()
        loop.run_until_complete(settle())
        assert set(sent) <= set(received), f"lost {set(sent) - set(received)}"
        assert len(ch) == 0, "an item sat in the channel with its receiver waiting"
        delays.append(time.monotonic() - t0)

    try:
        points = at_every_point(trial, Channel.send)
        ch.close()
        if peer == "same_loop":
            loop.run_until_complete(receiver)
        else:
            worker.finish()
    finally:
        loop.close()
    assert_whole(ch, sent, maybe, received)
    slow = sum(d > 0.1 for d in delays)
    print(f"send/{peer}: {points} points, {len(maybe)} interrupted, {slow} waited for a sweep")


@pytest.mark.parametrize("kind", list(ITEM_KINDS))
@pytest.mark.parametrize("loop_kind", list(LOOPS))
def test_interrupted_async_recv_never_strands_an_item(loop_kind, kind):
    make = ITEM_KINDS[kind]
    loop = LOOPS[loop_kind]()
    ch: Channel = Channel(2)
    sent, received = [], []
    counter = iter(range(10**9))

    def trial(inj):
        item = make(next(counter))
        sender = threading.Timer(0.002, ch.try_send, (item,))  # the receive waits, then wakes
        sender.start()
        sent.append(item)
        try:
            with inj:
                received.append(loop.run_until_complete(ch.recv()))
        except KeyboardInterrupt:
            pass
        sender.join()
        loop.run_until_complete(asyncio.sleep(0.005))
        while len(ch):
            received.append(ch.try_recv())
        assert Counter(received) == Counter(sent), "an item was stranded"

    try:
        at_every_point(trial, Channel.recv)
    finally:
        loop.close()
    assert_whole(ch, sent, [], received)


@pytest.mark.parametrize("kind", list(ITEM_KINDS))
def test_interrupted_recv_many_never_strands_an_item(kind):
    make = ITEM_KINDS[kind]
    loop = asyncio.new_event_loop()
    ch: Channel = Channel(8)
    sent, received = [], []
    counter = iter(range(10**9))

    def trial(inj):
        batch = [make(next(counter)) for _ in range(5)]
        for item in batch:
            ch.try_send(item)
        sent.extend(batch)
        try:
            with inj:
                got = loop.run_until_complete(ch.recv_many(8))
            assert got == batch, "recv_many returned items out of order"
            received.extend(got)
        except KeyboardInterrupt:
            pass
        left = []
        while len(ch):
            left.append(ch.try_recv())
        # An interrupted recv_many puts all its items back, in order.
        assert left in ([], batch), f"left behind: {left}"
        received.extend(left)
        assert Counter(received) == Counter(sent), "an item was stranded or doubled"

    try:
        at_every_point(trial, Channel._recv_many)
    finally:
        loop.close()
    assert_whole(ch, sent, [], received)


# ---- mutex ---------------------------------------------------------------------------


def assert_free_for_others(m: Mutex) -> None:
    """Another thread can take and give back the lock at once."""
    ok = []
    t = threading.Thread(target=lambda: ok.append(m.acquire_blocking(timeout=5.0)))
    t.start()
    t.join()
    assert ok == [True], "the lock is held by nobody"
    m.release()


@pytest.mark.parametrize("form", ["free", "contended"])
def test_interrupted_acquire_blocking_never_leaves_the_lock_held(form):
    m = Mutex()

    def trial(inj):
        if form == "contended":
            assert m.acquire_blocking(timeout=JOIN)
            threading.Timer(0.005, m.release).start()
        got = False
        try:
            with inj:
                got = m.acquire_blocking(timeout=JOIN)
        except KeyboardInterrupt:
            pass
        if got:
            m.release()
        wait_until(lambda: not m.locked(), what="the lock is free", timeout=JOIN)
        assert_free_for_others(m)

    at_every_point(trial)


@pytest.mark.parametrize("loop_kind", list(LOOPS))
@pytest.mark.parametrize("form", ["free", "contended"])
def test_interrupted_async_acquire_never_leaves_the_lock_held(loop_kind, form):
    loop = LOOPS[loop_kind]()
    m = Mutex()

    async def acquire():
        await m.acquire()
        return True

    def trial(inj):
        if form == "contended":
            assert m.acquire_blocking(timeout=JOIN)
            loop.call_later(0.002, m.release)
        got = False
        try:
            with inj:
                got = loop.run_until_complete(acquire())
        except KeyboardInterrupt:
            pass
        if got:
            m.release()
        loop.run_until_complete(asyncio.sleep(0.005))
        wait_until(lambda: not m.locked(), what="the lock is free", timeout=JOIN)
        assert_free_for_others(m)

    try:
        at_every_point(trial, Mutex.acquire)
    finally:
        loop.close()


@pytest.mark.parametrize("loop_kind", list(LOOPS))
@pytest.mark.parametrize("peer", ["same_loop", "other_loop", "thread"])
def test_interrupted_release_hands_the_lock_on(loop_kind, peer, monkeypatch):
    """``release()`` with a waiter queued, interrupted at every point: once
    it has reached C the waiter gets the lock (the wake is never lost, at
    worst delayed to the dispatcher's sweep); before that (the documented
    gap, as with ``threading.Lock``) the lock is still held under the
    holder's ticket, and giving it back then hands it over as usual."""
    from tokio_runtime import _mutex
    from tokio_runtime._native import ffi, lib

    tickets: list[int] = []
    real_tickets = _mutex._tickets

    def recording():
        tickets.append(real_tickets())
        return tickets[-1]

    monkeypatch.setattr(_mutex, "_tickets", recording)
    loop = LOOPS[loop_kind]()
    m = Mutex()
    entered = []
    gaps = [0]
    slow = [0]

    async def take_once(i):
        async with m:
            entered.append(i)

    def trial(inj):
        i = len(entered)
        assert m.acquire_blocking(timeout=JOIN)
        ticket = tickets[-1]
        if peer == "same_loop":
            task = loop.create_task(take_once(i))
            loop.run_until_complete(asyncio.sleep(0.002))  # it waits now
        elif peer == "other_loop":
            worker = loop_worker(LOOPS[loop_kind], take_once, i)
        else:

            def take_blocking():
                with m:
                    entered.append(i)

            worker = Worker(take_blocking)
            worker.start()
        if peer != "thread":
            wait_until(lambda: tokio_runtime.get_runtime().stats()["waiters"] > 0)
        else:
            time.sleep(0.005)
        with inj:
            loop.run_until_complete(_release(m))
        # Still held under our ticket: release() never reached C.
        if lib.tr_mutex_unlock_if(m._ptr, ticket, ffi.NULL) == lib.TR_OK:
            gaps[0] += 1
        t0 = time.monotonic()
        if peer == "same_loop":
            loop.run_until_complete(asyncio.wait_for(task, JOIN))
        else:
            worker.finish()
        assert entered[i:] == [i], "the waiter never got the lock"
        slow[0] += time.monotonic() - t0 > 0.1
        wait_until(lambda: not m.locked(), what="the lock is free")

    try:
        points = at_every_point(trial, Mutex.release)
    finally:
        loop.close()
    assert_free_for_others(m)
    assert gaps[0] < points, "no interrupt came after the unlock: nothing was tested"
    print(f"release/{peer}: {points} points, {gaps[0]} before C, {slow[0]} waited for a sweep")


async def _release(m: Mutex) -> bool:
    """``m.release()`` on the running loop; True if it was interrupted."""
    try:
        m.release()
    except KeyboardInterrupt:
        return True
    return False


# ---- a real signal storm ----------------------------------------------------------------


def test_sigint_storm_on_the_main_thread_keeps_the_channel_whole():
    """Thousands of SIGINTs while the main thread sends (a full channel: it
    waits in slices, is woken, retries): every item is delivered once or not
    at all, and the channel keeps no object without its key.

    The handler raises only while the main thread is inside ``send_blocking``
    (it disarms itself when it fires), so that the interrupts land in our
    code, not in the test's bookkeeping around it.
    """
    ch: Channel[int] = Channel(2)
    sent, maybe, received = [], [], []
    stop = threading.Event()
    armed = [False]
    fired = [0]
    main_id = threading.main_thread().ident

    def handler(signum, frame):
        if armed[0]:
            armed[0] = False
            fired[0] += 1
            raise KeyboardInterrupt

    def storm():
        while not stop.is_set():
            signal.pthread_kill(main_id, signal.SIGINT)
            time.sleep(0.0002)

    def consumer():
        while not stop.is_set() or len(ch):
            try:
                received.append(ch.recv_blocking(timeout=0.01))
            except TimeoutError:
                pass

    old = signal.signal(signal.SIGINT, handler)
    storm_t = threading.Thread(target=storm, daemon=True)
    cons = Worker(consumer)
    cons.start()
    storm_t.start()
    deadline = time.monotonic() + 3.0
    item = 0
    try:
        while time.monotonic() < deadline:
            item += 1
            try:
                armed[0] = True
                ch.send_blocking(item, timeout=JOIN)
                armed[0] = False
                sent.append(item)
            except KeyboardInterrupt:
                maybe.append(item)
    finally:
        armed[0] = False
        stop.set()
        storm_t.join()
        time.sleep(0.05)  # a last SIGINT lands on the disarmed handler
        signal.signal(signal.SIGINT, old)
    cons.finish()
    assert fired[0] > 10, "the storm did not interrupt anything"
    assert_whole(ch, sent, maybe, received)
    print(f"{len(sent)} sent, {len(maybe)} interrupted sends, {fired[0]} interrupts")
