"""Channels and mutexes shared with C threads through the C API.

C producers and consumers (native_lib.py: plain pthreads using the table of
tokio_runtime_capi.h, no GIL) against Python ones on one Channel: FIFO,
exactly once, backpressure, close, Python objects a C receiver cannot take;
a Mutex held from C; handles outliving their Python objects.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import JOIN

from tokio_runtime import Channel, ChannelClosed, Mutex, _capi
from tokio_runtime._native import lib as tr_lib

native_lib = pytest.importorskip("native_lib")
nffi, nlib = native_lib.load()


def handle(obj, kind):
    return _capi.export(obj, kind)


async def join_producer(p):
    sent = nffi.new("int64_t *")
    rc = await asyncio.to_thread(nlib.producer_join, p, sent)
    return rc, sent[0]


async def test_c_producer_to_async_for_exactly_once_in_order():
    ch = Channel(256)
    p = nlib.producer_start(handle(ch, "channel"), 0, 100_000, 0, -1.0, 1)
    got = [x async for x in ch]
    assert got == list(range(100_000))
    assert await join_producer(p) == (tr_lib.TR_OK, 100_000)


async def test_c_producer_to_recv_many():
    ch = Channel(4096)
    p = nlib.producer_start(handle(ch, "channel"), -(2**62), 50_000, 0, -1.0, 1)
    got = []
    while True:
        try:
            got += await ch.recv_many(1000)
        except ChannelClosed:
            break
    # Both inline ints and boxed ones (below -2**61) arrive as ints.
    assert got == list(range(-(2**62), -(2**62) + 50_000))
    await join_producer(p)


async def test_c_bytes_producer():
    ch = Channel(16)
    p = nlib.producer_start(handle(ch, "channel"), 7, 1000, 1, -1.0, 1)
    got = [x async for x in ch]
    assert got == [str(7 + i).encode() for i in range(1000)]
    await join_producer(p)


async def test_c_and_python_producers_mix():
    ch = Channel(64)
    c_prod = nlib.producer_start(handle(ch, "channel"), 0, 20_000, 0, -1.0, 0)

    async def python_producer():
        for i in range(20_000):
            await ch.send(("py", i))

    async def consumer():
        out = []
        for _ in range(40_000):
            out.append(await ch.recv())
        return out

    _, got = await asyncio.gather(python_producer(), consumer())
    assert [x for x in got if isinstance(x, int)] == list(range(20_000))
    assert [x for x in got if isinstance(x, tuple)] == [("py", i) for i in range(20_000)]
    await join_producer(c_prod)


async def test_python_values_to_a_c_consumer():
    ch = Channel(1000)
    values = [1, -1, 2**61, -(2**63), 2**63 - 1, b"abc", b""]
    for v in values:
        await ch.send(v)
    ch.close()
    h = handle(ch, "channel")
    total, items, nbytes = nffi.new("int64_t *"), nffi.new("int64_t *"), nffi.new("int64_t *")
    rc = await asyncio.to_thread(nlib.consume, h, 0.0, total, items, nbytes)
    nlib.channel_release(h)
    assert rc == tr_lib.TR_ECLOSED
    assert items[0] == len(values)
    assert total[0] == 1 - 1 + 2**61 - 2**63 + 2**63 - 1
    assert nbytes[0] == 3


async def test_a_python_object_first_is_left_for_python():
    ch = Channel(8)
    await ch.send(1)
    await ch.send("not a value")
    await ch.send(2)
    h = handle(ch, "channel")
    value, kind = nffi.new("int64_t *"), nffi.new("int *")
    try:
        assert nlib.channel_recv_one(h, 0.0, value, kind) == tr_lib.TR_OK
        assert (value[0], kind[0]) == (1, tr_lib.TR_ITEM_INT)
        assert nlib.channel_recv_one(h, 0.0, value, kind) == tr_lib.TR_ETYPE
        assert nlib.channel_recv_one(h, -1.0, value, kind) == tr_lib.TR_ETYPE  # no wait
        assert await ch.recv() == "not a value"
        assert nlib.channel_recv_one(h, 0.0, value, kind) == tr_lib.TR_OK
        assert value[0] == 2
        assert nlib.channel_recv_one(h, 0.0, value, kind) == tr_lib.TR_EEMPTY
        assert nlib.channel_recv_one(h, 0.05, value, kind) == tr_lib.TR_TIMEDOUT
    finally:
        nlib.channel_release(h)


async def test_c_receiver_passes_its_wake_to_a_python_receiver():
    """A C thread woken for a Python object leaves it and wakes the next receiver."""
    ch = Channel(8)
    h = handle(ch, "channel")
    value, kind = nffi.new("int64_t *"), nffi.new("int *")
    c_recv = asyncio.ensure_future(asyncio.to_thread(nlib.channel_recv_one, h, JOIN, value, kind))
    deadline = time.monotonic() + JOIN
    while not tr_lib.tr_channel_waiting(ch._ptr, tr_lib.TR_RECV):  # the C thread waits first
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    py_recv = asyncio.ensure_future(ch.recv())
    while not ch._waiting:  # then the coroutine
        await asyncio.sleep(0.001)
    await ch.send("object")  # wakes the C thread, the oldest waiter
    assert await c_recv == tr_lib.TR_ETYPE
    assert await asyncio.wait_for(py_recv, JOIN) == "object"
    nlib.channel_release(h)


async def test_backpressure_and_close_reach_a_blocked_c_sender():
    ch = Channel(4)
    p = nlib.producer_start(handle(ch, "channel"), 0, 1_000_000, 0, -1.0, 0)
    deadline = time.monotonic() + JOIN
    while len(ch) < 4:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    assert len(ch) == 4  # full: the C thread waits for room
    assert await ch.recv() == 0
    ch.close()
    rc, sent = await join_producer(p)
    assert rc == tr_lib.TR_ECLOSED
    assert sent in (4, 5)  # the one slot freed may have been taken before the close
    rest = [x async for x in ch]
    assert rest == list(range(1, sent))


async def test_c_send_timeout_and_try():
    ch = Channel(1)
    h = handle(ch, "channel")
    try:
        assert nlib.channel_send_int(h, 1, 0.0) == tr_lib.TR_OK
        assert nlib.channel_send_int(h, 2, 0.0) == tr_lib.TR_EFULL
        assert nlib.channel_send_int(h, 2, 0.05) == tr_lib.TR_TIMEDOUT
        assert nlib.channel_send_int(h, 2, float("nan")) == tr_lib.TR_EINVAL
        assert await ch.recv() == 1
    finally:
        nlib.channel_release(h)


async def test_channel_handle_outlives_the_python_object():
    ch = Channel(4)
    h = handle(ch, "channel")
    await ch.send(b"boxed")  # left inside: freed with the channel
    del ch
    gc.collect()
    assert nlib.channel_send_int(h, 5, 0.0) == tr_lib.TR_OK
    value, kind = nffi.new("int64_t *"), nffi.new("int *")
    assert nlib.channel_recv_one(h, 0.0, value, kind) == tr_lib.TR_OK
    assert kind[0] == tr_lib.TR_ITEM_BYTES and value[0] == 5
    nlib.channel_release(h)  # the last reference: frees the channel and the 5


async def test_mutex_held_from_c():
    m = Mutex()
    holder = nlib.mutex_hold_start(handle(m, "mutex"), 150)
    deadline = time.monotonic() + JOIN
    while not nlib.mutex_holding(holder):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    assert m.locked()
    start = time.monotonic()
    async with m:
        waited = time.monotonic() - start
        assert not nlib.mutex_holding(holder)
    assert waited > 0.05
    assert await asyncio.to_thread(nlib.mutex_hold_join, holder) == tr_lib.TR_OK
    assert not m.locked()


@pytest.mark.parametrize("kind", ["channel", "mutex", "completion"])
def test_export_refuses_foreign_objects(kind):
    for bad in (None, 3, object(), "channel"):
        with pytest.raises(TypeError, match="expected a tokio_runtime"):
            handle(bad, kind)
    with pytest.raises(TypeError):
        handle(Mutex() if kind != "mutex" else Channel(1), kind)


def test_export_unknown_kind():
    with pytest.raises(ValueError, match="unknown handle kind"):
        handle(Channel(1), "socket")


def test_capsule_and_headers():
    import tokio_runtime

    assert "tokio_runtime._C_API" in repr(tokio_runtime._C_API)
    include = Path(tokio_runtime.get_include())
    assert (include / "tokio_runtime.h").is_file()
    assert "TR_CAPI_VERSION" in (include / "tokio_runtime_capi.h").read_text()


def test_exit_while_a_c_thread_is_blocked_on_a_full_channel(tmp_path):
    """Interpreter exit with a C sender stuck on a full channel: clean and quick."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import native_lib
        from tokio_runtime import Channel, _capi
        nffi, nlib = native_lib.load()
        ch = Channel(2)
        nlib.producer_start(_capi.export(ch, "channel"), 0, 1000, 0, -1.0, 0)
        while len(ch) < 2:
            time.sleep(0.001)
        print("blocked", flush=True)
        """
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "blocked"
    assert proc.stderr == ""
    assert time.monotonic() - start < 30


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        ("TR_ECLOSED", "ChannelClosed"),
        ("TR_EFULL", "ChannelFull"),
        ("TR_EEMPTY", "ChannelEmpty"),
        ("TR_EINVAL", "ValueError"),
        ("TR_TIMEDOUT", "TimeoutError"),
        ("TR_ENOMEM", "MemoryError"),
        ("TR_ETYPE", "TypeError"),
        ("TR_CANCELLED", "RuntimeError"),
        ("TR_ESHUTDOWN", "RuntimeError"),
        ("TR_EDONE", "RuntimeError"),
    ],
)
def test_status_exception_for_the_c_api(status, exc):
    """What TR_RaiseStatus raises: what Python code raises for the same failure."""
    err = _capi.status_exception(getattr(tr_lib, status))
    assert type(err).__name__ == exc
    assert "tokio_runtime" in str(err) or isinstance(err, (TimeoutError, MemoryError))
