"""A bounded multi-producer multi-consumer channel living in C.

The C channel (``tr_channel_t``) holds the queue: a ring of 64-bit keys, its
capacity, the closed flag and the waiters, all under one C lock, so threads
and any number of asyncio loops share it safely.  The Python objects stay in
a dict keyed by those keys; an item is stored there before its key enters the
ring and taken out only by the call that took the key out, so every item is
delivered exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Generic, TypeVar

from . import _waiting
from ._default import runtime_or_default
from ._errors import status_error
from ._lifetime import owned
from ._native import ffi, lib
from ._runtime import Runtime, check_runtime_arg, ports_of
from ._validate import int_in_range, timeout_seconds

T = TypeVar("T")

#: Largest capacity (the C ring grows on demand, so a big one costs nothing
#: until it fills).
MAX_CAPACITY = 2**40
#: Keys copied out of C per call by ``recv_many``.
RECV_MANY_CHUNK = 4096
#: Never a key (keys count from 1): what ``tr_channel_take`` returns when it
#: took nothing.
_NO_KEY = 0

# Bound once: the per-item paths below are what channel throughput is made of.
_take = lib.tr_channel_take
_try_send = lib.tr_channel_try_send
_get_running_loop = asyncio._get_running_loop
_OK = lib.TR_OK


class ChannelError(Exception):
    """Base class of the channel exceptions."""


class ChannelClosed(ChannelError):
    """The channel is closed (for a receive: closed and drained)."""


class ChannelFull(ChannelError):
    """``try_send`` found the channel full."""


class ChannelEmpty(ChannelError):
    """``try_recv`` found the channel empty."""


class Channel(Generic[T]):
    """A bounded FIFO channel of Python objects, for tasks and threads alike.

    Any number of senders and receivers, on any asyncio loops and plain
    threads, may use it at once.  Items come out in the order they went in,
    each exactly once.

    * ``await send(item)`` waits while the channel is full; ``await recv()``
      waits while it is empty.  Cancelling either is safe at any moment: a
      cancelled ``send`` never enqueues its item, a cancelled ``recv`` never
      takes one (an item whose wake it got is left for the next receiver).
    * ``send_blocking``/``recv_blocking`` are for plain threads; they raise
      ``RuntimeError`` on a thread whose asyncio loop is running (that would
      deadlock), and ``TimeoutError`` when ``timeout`` passes.
    * ``try_send``/``try_recv`` never wait (``ChannelFull``/``ChannelEmpty``).
    * After :meth:`close`, sends raise ``ChannelClosed``; receivers still get
      the items queued before it, then ``ChannelClosed``; ``async for`` ends.

    ``runtime`` is the runtime whose dispatcher wakes waiting coroutines
    (default: the default runtime, looked up at the first wait).  If it is
    shut down, waiting coroutines get ``CancelledError`` and later waits raise
    ``RuntimeError``; blocking and non-blocking calls keep working.
    """

    __slots__ = ("__weakref__", "_cap", "_items", "_next_key", "_ptr", "_runtime")

    def __init__(self, capacity: int, *, runtime: Runtime | None = None) -> None:
        cap = int_in_range("capacity", capacity, 1, MAX_CAPACITY)
        check_runtime_arg(runtime)
        out = ffi.new("tr_channel_t **")
        rc = lib.tr_channel_new(cap, out)
        if rc != lib.TR_OK:
            raise status_error(rc)
        self._ptr = owned(out[0], lib.tr_channel_release)
        self._cap = cap
        self._items: dict[int, T] = {}
        self._next_key = itertools.count(1).__next__  # atomic under the GIL
        self._runtime = runtime

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<Channel {len(self)}/{self._cap}{state}>"

    # -- state -----------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """The most items it holds at once."""
        return self._cap

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return bool(lib.tr_channel_closed(self._ptr))

    def __len__(self) -> int:
        """Items queued right now (a snapshot: others may change it)."""
        return int(lib.tr_channel_len(self._ptr))

    def close(self) -> None:
        """Close the channel.  Idempotent; safe from any thread.

        Waiting senders get ``ChannelClosed`` (their items are not queued);
        waiting receivers get the items still queued, then ``ChannelClosed``.
        """
        lib.tr_channel_close(self._ptr)

    # -- sending ---------------------------------------------------------------
    def _put(self, item: T) -> int:
        key = self._next_key()
        self._items[key] = item
        return key

    def _sent(self, key: int, rc: int) -> None:
        if rc == lib.TR_OK:
            return
        del self._items[key]  # never entered the channel
        if rc == lib.TR_ECLOSED:
            raise ChannelClosed("send on a closed channel")
        if rc == lib.TR_EFULL:
            raise ChannelFull(f"channel is full ({self._cap} items)")
        if rc == lib.TR_TIMEDOUT:
            raise TimeoutError("send_blocking() timed out")
        raise status_error(rc)

    def try_send(self, item: T) -> None:
        """Queue ``item`` now, or raise ``ChannelFull``/``ChannelClosed``."""
        key = self._next_key()
        self._items[key] = item
        rc = _try_send(self._ptr, key)
        if rc != _OK:
            self._sent(key, rc)

    async def send(self, item: T) -> None:
        """Queue ``item``, waiting while the channel is full.

        Raises ``ChannelClosed`` if it is (or becomes) closed before the item
        is queued.  If cancelled, the item was not queued.
        """
        ptr = self._ptr
        key = self._put(item)
        try:
            while True:
                rc = _try_send(ptr, key)
                if rc != lib.TR_EFULL:
                    break
                await self._wait(lib.TR_SEND)
        except BaseException:
            del self._items[key]
            raise
        self._sent(key, rc)

    def send_blocking(self, item: T, timeout: float | None = None) -> None:
        """Queue ``item`` from a plain thread, waiting while the channel is full.

        Raises ``TimeoutError`` after ``timeout`` seconds (``None``: no limit),
        ``ChannelClosed`` if closed, ``RuntimeError`` on a thread running an
        asyncio loop.
        """
        limit = -1.0 if timeout is None else timeout_seconds("timeout", timeout)
        if _get_running_loop() is not None:
            _waiting.forbid_running_loop("send_blocking")  # raises
        ptr = self._ptr
        key = self._next_key()
        self._items[key] = item
        rc = _try_send(ptr, key)
        if rc == _OK:
            return
        if rc == lib.TR_EFULL:
            try:
                if not _waiting.on_main_thread():
                    rc = lib.tr_channel_send_blocking(ptr, key, limit)  # all in C
                else:
                    rc = self._retry_on_main_thread(
                        lambda: lib.tr_channel_try_send(ptr, key), lib.TR_EFULL, lib.TR_SEND, limit
                    )
            except BaseException:
                del self._items[key]
                raise
        self._sent(key, rc)

    # -- receiving -------------------------------------------------------------------
    def _received(self, rc: int, key: int) -> T:
        if rc == lib.TR_OK:
            return self._items.pop(key)
        if rc == lib.TR_ECLOSED:
            raise ChannelClosed("channel is closed and drained")
        if rc == lib.TR_EEMPTY:
            raise ChannelEmpty("channel is empty")
        if rc == lib.TR_TIMEDOUT:
            raise TimeoutError("recv_blocking() timed out")
        raise status_error(rc)

    def try_recv(self) -> T:
        """Take the oldest item now, or raise ``ChannelEmpty``/``ChannelClosed``."""
        key = _take(self._ptr, _NO_KEY)
        if key != _NO_KEY:
            return self._items.pop(key)
        out = ffi.new("uint64_t *")  # which of empty or closed (or a late item)
        return self._received(lib.tr_channel_try_recv(self._ptr, out), out[0])

    async def recv(self) -> T:
        """Take the oldest item, waiting while the channel is empty.

        Raises ``ChannelClosed`` once the channel is closed and drained.  If
        cancelled, no item was taken.
        """
        ptr = self._ptr
        while True:
            key = _take(ptr, _NO_KEY)
            if key != _NO_KEY:
                return self._items.pop(key)
            out = ffi.new("uint64_t *")  # which of empty or closed (or a late item)
            rc = lib.tr_channel_try_recv(ptr, out)
            if rc != lib.TR_EEMPTY:
                return self._received(rc, out[0])
            await self._wait(lib.TR_RECV)

    def recv_many(self, max_items: int) -> Coroutine[Any, Any, list[T]]:
        """Take up to ``max_items`` items (at least one), oldest first.

        Waits while the channel is empty; returns whatever is queued then,
        without waiting for more.  Raises ``ChannelClosed`` once the channel
        is closed and drained.  If cancelled, no item was taken.
        ``max_items`` is checked when called, before anything is awaited
        (``TypeError``/``ValueError``).
        """
        return self._recv_many(int_in_range("max_items", max_items, 1, 2**62))

    async def _recv_many(self, want: int) -> list[T]:
        ptr = self._ptr
        chunk = min(want, self._cap, RECV_MANY_CHUNK)
        buf = ffi.new("uint64_t[]", chunk)
        count = ffi.new("size_t *")
        while True:
            rc = lib.tr_channel_recv_many(ptr, buf, chunk, count)
            if rc != lib.TR_EEMPTY:
                break
            await self._wait(lib.TR_RECV)
        if rc != lib.TR_OK:
            return [self._received(rc, 0)]  # raises ChannelClosed
        pop = self._items.pop
        items = [pop(k) for k in ffi.unpack(buf, count[0])]
        # More than one chunk asked for and the last one came full: take
        # what else is there, without waiting.
        while count[0] == chunk and len(items) < want:
            n = min(chunk, want - len(items))
            if lib.tr_channel_recv_many(ptr, buf, n, count) != lib.TR_OK:
                break
            items.extend(pop(k) for k in ffi.unpack(buf, count[0]))
            if count[0] < n:
                break
        return items

    def recv_blocking(self, timeout: float | None = None) -> T:
        """Take the oldest item from a plain thread, waiting while empty.

        Raises ``TimeoutError`` after ``timeout`` seconds (``None``: no limit),
        ``ChannelClosed`` once closed and drained, ``RuntimeError`` on a
        thread running an asyncio loop.
        """
        limit = timeout_seconds("timeout", timeout)
        _waiting.forbid_running_loop("recv_blocking")
        ptr = self._ptr
        out = ffi.new("uint64_t *")
        rc = lib.tr_channel_try_recv(ptr, out)
        if rc == lib.TR_EEMPTY:
            if not _waiting.on_main_thread():
                rc = lib.tr_channel_recv_blocking(ptr, out, limit)  # all in C
            else:
                rc = self._retry_on_main_thread(
                    lambda: lib.tr_channel_try_recv(ptr, out), lib.TR_EEMPTY, lib.TR_RECV, limit
                )
        return self._received(rc, out[0])

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        key = _take(self._ptr, _NO_KEY)
        if key != _NO_KEY:  # no second coroutine when an item is there
            return self._items.pop(key)
        try:
            return await self.recv()
        except ChannelClosed:
            raise StopAsyncIteration from None

    # -- waiting ------------------------------------------------------------------------
    def _retry_on_main_thread(
        self, attempt: Callable[[], int], busy: int, direction: int, timeout: float
    ) -> int:
        """Blocking send or receive on the main thread.

        Calls ``attempt()`` until it stops returning ``busy``, waiting in
        place (see :func:`_waiting.wait_in_slices`) between attempts.
        """
        ptr = self._ptr
        deadline = _waiting.deadline_after(timeout)
        while True:
            rc = attempt()
            if rc != busy:
                return rc
            if not _waiting.wait_in_slices(
                lambda out: lib.tr_channel_wait_thread(ptr, direction, out),
                lambda: lib.tr_channel_notify(ptr, direction),
                deadline,
            ):
                return int(lib.TR_TIMEDOUT)

    async def _wait(self, direction: int) -> None:
        ptr = self._ptr
        await _waiting.wait(
            ports_of(runtime_or_default(self._runtime)),
            lambda port, token, out: lib.tr_channel_wait(ptr, direction, port, token, out),
            lambda: lib.tr_channel_notify(ptr, direction),
        )
