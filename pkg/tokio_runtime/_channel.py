"""A bounded multi-producer multi-consumer channel living in C.

The C channel (``tr_channel_t``) holds the queue: a ring of 64-bit keys, its
capacity, the closed flag and the waiters, all under one C lock, so threads
and any number of asyncio loops share it safely.  The Python objects stay in
a dict keyed by those keys; an item is stored there before its key enters the
ring and taken out only by the call that took the key out, so every item is
delivered exactly once.

Interrupts.  A ``KeyboardInterrupt`` (any exception a signal handler
raises) can land between any two bytecodes of the code below, for instance
right after a C call returned.  Every path is ordered so that such an
exception leaves the channel whole: a send's object goes into the dict
before its key goes into the ring, and on any exception it is taken out
again unless C's receipt (``tr_channel_sent``) says the key went in; a
receive reads the object before deleting it, and on any exception puts the
key (and the object, if it was deleted) back at the head of the ring
(``tr_channel_unget``).  A receive knows whether its take happened from C's
receipt, stamped with a tag fresh for each receive
(``tr_channel_take_tagged``/``tr_channel_taken_tagged``), or from the
buffer C wrote the item into.  So an interrupted send is delivered exactly
once or not at all, and an interrupted receive leaves its item receivable.

Wakes.  A call that may wake a waiting coroutine passes this thread's
``tr_wakes_t`` when some coroutine waits on the channel (``_waiting``, a
hint: a missed one only sends the wake through the dispatcher), and has the
ports it woke drained at once (see ``_dispatch``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any, Generic, TypeVar

from . import _waiting
from ._default import runtime_or_default
from ._dispatch import call_waking, deliver_wakes, wakes_buffer
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
#: Never a key either: what a take returns for "closed and drained".
_CLOSED_KEY = 1
#: A fresh tag per receive, for its take's receipt (never 0: untagged).
_tags = itertools.count(1).__next__

# Bound once: the per-item paths below are what channel throughput is made of.
_take = lib.tr_channel_take_tagged
_taken = lib.tr_channel_taken_tagged
_try_send = lib.tr_channel_try_send
_get_running_loop = asyncio._get_running_loop
_OK = lib.TR_OK
_EFULL = lib.TR_EFULL
_EEMPTY = lib.TR_EEMPTY
#: "No object yet" in a receive's local, for its interrupt handler.
_MISSING: Any = object()
_NULL = ffi.NULL
#: Whether a waiter of a direction is queued: asked only when the hint says
#: some coroutine waits, since the hint stays set until the woken coroutine
#: runs (a producer thread holding the GIL can fill the channel meanwhile).
_waiters = lib.tr_channel_waiting
_RECV = lib.TR_RECV
_SEND = lib.TR_SEND
#: Value items (see tokio_runtime.h, "values"): keys from bit 63 up are not
#: keys of ``_items`` but ints and bytes that C senders and receivers
#: understand.  Ints in [-2**61, 2**61) are encoded here, in Python; other
#: int64s and bytes are boxed by C.
_VALUE = 1 << 63
#: Items from here up are boxed values; below it (and from _VALUE up) an
#: inline int v is the item _INT_BIAS + v (item.h).
_BOXED = 3 << 62
_INT_BIAS = (1 << 63) + (1 << 61)
_SIGN = 1 << 61
_I64 = 1 << 63
_ITEM_INT = lib.TR_ITEM_INT
_ITEMS_KEYS = lib.TR_ITEMS_KEYS
_ITEMS_INTS = lib.TR_ITEMS_INTS
_item_int = lib.tr_item_int
_item_bytes = lib.tr_item_bytes
_item_free = lib.tr_item_free
_took = lib.tr_channel_took_value
#: Run an iterator to its end in C (for map() over a dict method).
_consume: Callable[[Iterable[Any]], None] = collections.deque(maxlen=0).extend


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
    * An exception that interrupts any of these calls (Ctrl-C) leaves the
      channel whole: an interrupted send is delivered exactly once or not at
      all, an interrupted receive leaves its item in the channel.
    * A coroutine woken by a send or a receive on its own loop runs in the
      same or the next loop iteration, as with ``asyncio.Queue``; one on
      another loop or thread is woken directly by the caller's thread.
    * ``int`` (64-bit: from -2**63 to 2**63-1) and ``bytes`` items travel
      as native *values*, so C code using the C API (``tokio_runtime_capi.h``)
      can send and receive them on the same channel, mixed with Python
      senders and receivers, in one FIFO order.  A receiver gets an equal
      ``int`` or ``bytes`` (not the same object).  Other objects (``bool``,
      ``int`` subclasses, ``bytearray``, anything else) travel as themselves;
      a C receiver that finds one first gets ``TR_ETYPE`` and leaves it for
      a Python receiver.

    ``runtime`` is the runtime whose ports wake waiting coroutines (default:
    the default runtime, looked up at the first wait).  If it is shut down,
    waiting coroutines get ``CancelledError`` and later waits raise
    ``RuntimeError``; blocking and non-blocking calls keep working.
    """

    __slots__ = ("__weakref__", "_cap", "_items", "_next_key", "_ptr", "_runtime", "_waiting")

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
        self._next_key = itertools.count(2).__next__  # atomic under the GIL; 0, 1 are not keys
        self._runtime = runtime
        self._waiting = 0  # coroutines waiting on it (a hint, see the module docs)

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
        call_waking(lib.tr_channel_close, self._ptr)

    # -- sending ---------------------------------------------------------------
    def _send_error(self, rc: int, what: str) -> BaseException:
        if rc == lib.TR_ECLOSED:
            return ChannelClosed("send on a closed channel")
        if rc == _EFULL:
            return ChannelFull(f"channel is full ({self._cap} items)")
        if rc == lib.TR_TIMEDOUT:
            return TimeoutError(f"{what}() timed out")
        return status_error(rc)

    def _key(self, item: Any) -> int:
        """The ring item for ``item``, its object stored if it needs the dict.

        For the put-back paths; the sends do the same in two steps (see
        ``_key_for``) so that an interrupt between them strands nothing.
        """
        key = self._key_for(item)
        if key < _VALUE:
            self._items[key] = item
        return key

    def _key_for(self, item: Any) -> int:
        """The ring item for ``item``: a value, or a new (unused) key of ``_items``.

        Stores nothing in the dict: the caller does, after it holds the key
        in a local its exception handler sees.  (The sends encode small ints
        inline before calling this: it is their hot path.)
        """
        cls = item.__class__
        if cls is int and -_SIGN <= item < _SIGN:
            return int(item + _INT_BIAS)
        if cls is bytes or (cls is int and -_I64 <= item < _I64):
            return self._box(item)
        return self._next_key()

    @staticmethod
    def _box(item: Any) -> int:
        """A boxed value for ``bytes`` or an int64 outside the inline range.

        C remembers the box as this thread's unsent one until a channel
        takes it, so a send interrupted before it even stored the key frees
        it (``_unsend(0)``).
        """
        key = _item_bytes(item, len(item)) if item.__class__ is bytes else _item_int(item)
        if not key:
            raise MemoryError("tokio_runtime: no memory for a channel value")
        return key  # type: ignore[no-any-return]

    def _unsend(self, key: int) -> None:
        """After any exception in a send: undo it unless the item went in.

        ``key`` is 0 if the send had not stored it: then only a box made
        for it may be left (a dict key is stored before its object goes in).
        """
        if not key:
            lib.tr_item_free_unsent()
        elif not lib.tr_channel_sent(self._ptr, key):
            if key < _VALUE:
                self._items.pop(key, None)
            else:
                _item_free(key)  # a boxed value that never got in (inline: nothing)

    def try_send(self, item: T) -> None:
        """Queue ``item`` now, or raise ``ChannelFull``/``ChannelClosed``."""
        key = 0
        try:
            v: Any = item  # (typed: its class is tested, not its type)
            if v.__class__ is int and -_SIGN <= v < _SIGN:
                key = v + _INT_BIAS
            else:
                key = self._key_for(v)
                if key < _VALUE:  # an object's key: the object goes in now
                    self._items[key] = item
            if self._waiting and _waiters(self._ptr, _RECV):
                rc = call_waking(_try_send, self._ptr, key)
            else:
                rc = _try_send(self._ptr, key, _NULL)
            if rc != _OK:
                raise self._send_error(rc, "try_send")
        except BaseException:
            self._unsend(key)
            raise

    async def send(self, item: T) -> None:
        """Queue ``item``, waiting while the channel is full.

        Raises ``ChannelClosed`` if it is (or becomes) closed before the item
        is queued.  If cancelled, the item was not queued.
        """
        ptr = self._ptr
        key = 0
        try:
            v: Any = item  # (typed: its class is tested, not its type)
            if v.__class__ is int and -_SIGN <= v < _SIGN:
                key = v + _INT_BIAS
            else:
                key = self._key_for(v)
                if key < _VALUE:  # an object's key: the object goes in now
                    self._items[key] = item
            while True:
                if self._waiting and _waiters(ptr, _RECV):
                    rc = call_waking(_try_send, ptr, key)
                else:
                    rc = _try_send(ptr, key, _NULL)
                if rc != _EFULL:
                    break
                await self._wait(lib.TR_SEND)
            if rc != _OK:
                raise self._send_error(rc, "send")
        except BaseException:
            self._unsend(key)
            raise

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
        key = 0
        try:
            v: Any = item  # (typed: its class is tested, not its type)
            if v.__class__ is int and -_SIGN <= v < _SIGN:
                key = v + _INT_BIAS
            else:
                key = self._key_for(v)
                if key < _VALUE:  # an object's key: the object goes in now
                    self._items[key] = item
            if self._waiting and _waiters(ptr, _RECV):
                rc = call_waking(_try_send, ptr, key)
            else:
                rc = _try_send(ptr, key, _NULL)  # the fast path: nobody to wake
            if rc == _EFULL:
                wakes = wakes_buffer()
                if not _waiting.on_main_thread():
                    rc = lib.tr_channel_send_blocking(ptr, key, limit, wakes)  # all in C
                else:
                    rc = self._retry_on_main_thread(
                        lambda: _try_send(ptr, key, wakes), _EFULL, lib.TR_SEND, limit
                    )
                if wakes.n:
                    deliver_wakes(wakes)
            if rc != _OK:
                raise self._send_error(rc, "send_blocking")
        except BaseException:
            self._unsend(key)
            raise

    # -- receiving -------------------------------------------------------------------
    def _recv_error(self, rc: int, what: str) -> BaseException:
        if rc == lib.TR_ECLOSED:
            return ChannelClosed("channel is closed and drained")
        if rc == _EEMPTY:
            return ChannelEmpty("channel is empty")
        if rc == lib.TR_TIMEDOUT:
            return TimeoutError(f"{what}() timed out")
        return status_error(rc)

    def _untake(self, item: Any, key: int, tag: int) -> None:
        """After any exception in a tagged receive: put back what it took.

        ``key`` is the receive's local (0 if it was not set yet), ``item``
        its object (``_MISSING`` if not read yet), ``tag`` its receipt tag.
        C's receipt with this tag names the item this receive took, unless
        it took none or got as far as ``tr_channel_took_value`` (which
        forgets it, after which only ``item`` is left).

        The receipt's item goes back.  For a key, its object too if the
        receive had deleted it from the dict (it reads before it deletes);
        a value is still whole (an inline int is the item itself; a box is
        freed only by ``tr_channel_took_value``).  No receipt but ``item``
        read from a boxed value: its box is gone, so the object goes back
        as a new value.
        """
        taken = _taken(self._ptr, tag)
        if taken:
            if taken < _VALUE:
                items = self._items
                if taken not in items:
                    if item is _MISSING:  # pragma: no cover - read before deleted
                        return
                    items[taken] = item
            self._unget([taken])
        elif item is not _MISSING and key >= _BOXED:
            self._unget([self._key(item)])

    def _untake_out(self, item: Any, key: int) -> None:
        """After any exception in a receive into a buffer: put back what it took.

        ``key`` is what C wrote into the buffer (0: nothing taken).  For a
        boxed value, the untagged receipt still naming it tells that
        ``tr_channel_took_value`` has not freed it yet.
        """
        if not key:
            return
        if key < _VALUE:
            items = self._items
            if key not in items:
                if item is _MISSING:  # pragma: no cover - read before deleted
                    return
                items[key] = item
        elif key >= _BOXED and _taken(self._ptr, 0) != key:
            if item is not _MISSING:
                self._unget([self._key(item)])
            return
        self._unget([key])

    def _value(self, key: int) -> T:
        """The int or bytes of a value item; reads only (the box stays).

        A receive then calls ``_took(ptr, key)`` itself, right after
        storing the result in its own local, so that an interrupt between
        any two steps leaves something ``_untake`` can tell apart.
        """
        value: Any
        if key < _BOXED:
            value = key - _INT_BIAS
        elif lib.tr_item_kind(key) == _ITEM_INT:
            value = lib.tr_item_get_int(key)
        else:
            size = ffi.new("size_t *")
            value = ffi.buffer(lib.tr_item_get_bytes(key, size), size[0])[:]
        return value  # type: ignore[no-any-return]  # an int or bytes: what was sent

    def _unget(self, keys: list[int]) -> None:
        rc = call_waking(lib.tr_channel_unget, self._ptr, keys, len(keys))
        if rc != _OK:  # pragma: no cover - out of memory while putting back
            raise status_error(rc)

    def try_recv(self) -> T:
        """Take the oldest item now, or raise ``ChannelEmpty``/``ChannelClosed``."""
        items = self._items
        item = _MISSING
        key = 0
        tag = _tags()
        try:
            if self._waiting and _waiters(self._ptr, _SEND):
                key = call_waking(_take, self._ptr, _NO_KEY, _CLOSED_KEY, tag)
            else:
                key = _take(self._ptr, _NO_KEY, _CLOSED_KEY, tag, _NULL)
            if key >= _VALUE:
                if key < _BOXED:  # an inline int: nothing to free
                    item = key - _INT_BIAS
                    return item  # type: ignore[no-any-return]  # the int that was sent
                item = self._value(key)
                _took(self._ptr, key)  # forget the receipt, free the box
                return item
            if key > _CLOSED_KEY:
                item = items[key]
                del items[key]
                return item
            if key == _NO_KEY:
                raise ChannelEmpty("channel is empty")
            raise ChannelClosed("channel is closed and drained")
        except BaseException:
            self._untake(item, key, tag)
            raise

    async def recv(self) -> T:
        """Take the oldest item, waiting while the channel is empty.

        Raises ``ChannelClosed`` once the channel is closed and drained.  If
        cancelled, no item was taken.
        """
        ptr, items = self._ptr, self._items
        item = _MISSING
        key = 0
        tag = _tags()
        try:
            while True:
                if self._waiting and _waiters(ptr, _SEND):
                    key = call_waking(_take, ptr, _NO_KEY, _CLOSED_KEY, tag)
                else:
                    key = _take(ptr, _NO_KEY, _CLOSED_KEY, tag, _NULL)
                if key >= _VALUE:
                    if key < _BOXED:  # an inline int: nothing to free
                        item = key - _INT_BIAS
                        return item  # type: ignore[no-any-return]  # the int that was sent
                    item = self._value(key)
                    _took(ptr, key)  # forget the receipt, free the box
                    return item
                if key > _CLOSED_KEY:
                    item = items[key]
                    del items[key]
                    return item
                if key == _CLOSED_KEY:
                    raise ChannelClosed("channel is closed and drained")
                await self._wait(lib.TR_RECV)
        except BaseException:
            self._untake(item, key, tag)
            raise

    def recv_many(self, max_items: int) -> Coroutine[Any, Any, list[T]]:
        """Take up to ``max_items`` items (at least one), oldest first.

        Waits while the channel is empty; returns whatever is queued then,
        without waiting for more.  Raises ``ChannelClosed`` once the channel
        is closed and drained.  If cancelled (or interrupted), no item was
        taken.  ``max_items`` is checked when called, before anything is
        awaited (``TypeError``/``ValueError``).
        """
        return self._recv_many(int_in_range("max_items", max_items, 1, 2**62))

    async def _recv_many(self, want: int) -> list[T]:
        ptr, items = self._ptr, self._items
        chunk = min(want, self._cap, RECV_MANY_CHUNK)
        buf = ffi.new("uint64_t[]", chunk)
        count = ffi.new("size_t *")
        done = ffi.new("int *")  # set by C when the values' boxes are freed
        wakes = wakes_buffer()
        taken: list[int] = []  # ring items taken, in order
        base = 0  # len(taken) before the last C call (see the except clause)
        kinds = 0
        out: list[Any] | None = None
        try:
            while True:
                count[0] = 0
                rc = lib.tr_channel_recv_many(ptr, buf, chunk, count, wakes)
                if wakes.n:
                    deliver_wakes(wakes)
                if rc != _EEMPTY:
                    break
                await self._wait(lib.TR_RECV)
            if rc != _OK:
                raise self._recv_error(rc, "recv_many")
            kinds = lib.tr_items_classify(buf, count[0])
            taken.extend(ffi.unpack(buf, count[0]))
            count[0] = 0
            # More than one chunk asked for and the last one came full: take
            # what else is there, without waiting.
            while len(taken) < want and len(taken) % chunk == 0:
                n = min(chunk, want - len(taken))
                base = len(taken)
                rc = lib.tr_channel_recv_many(ptr, buf, n, count, wakes)
                if wakes.n:
                    deliver_wakes(wakes)
                if rc != _OK:
                    break
                kinds |= lib.tr_items_classify(buf, count[0])
                taken.extend(ffi.unpack(buf, count[0]))
                got, count[0] = count[0], 0
                if got < n:
                    break
            if kinds == _ITEMS_KEYS:  # Python objects only
                # Read, then delete, each in one C-level call: an interrupt
                # can land only between the two, where the handler can undo.
                out = list(map(items.__getitem__, taken))
                _consume(map(items.__delitem__, taken))
            elif kinds == _ITEMS_INTS:  # small ints only (from C or Python)
                out = [k - _INT_BIAS for k in taken]
            else:
                value = self._value
                out = [items[k] if k < _VALUE else value(k) for k in taken]
                _consume(map(items.__delitem__, [k for k in taken if k < _VALUE]))
                boxed = [k for k in taken if k >= _BOXED]
                if boxed:
                    lib.tr_items_free(boxed, len(boxed), done)
            return out
        except BaseException:
            # Every item taken goes back, in order, with its object.  (Its
            # untagged receipt is nobody's: tagged receives ignore it.)
            keys = list(taken)
            if count[0] and len(taken) == base:  # a chunk taken, not yet moved to `taken`
                keys += ffi.unpack(buf, count[0])
            if out is not None:
                for i, (k, v) in enumerate(zip(taken, out)):
                    if k < _VALUE:
                        items.setdefault(k, v)
                    elif done[0] and k >= _BOXED:  # its box is gone: a new one
                        keys[i] = self._key(v)
            if keys:
                self._unget(keys)
            raise

    def recv_blocking(self, timeout: float | None = None) -> T:
        """Take the oldest item from a plain thread, waiting while empty.

        Raises ``TimeoutError`` after ``timeout`` seconds (``None``: no limit),
        ``ChannelClosed`` once closed and drained, ``RuntimeError`` on a
        thread running an asyncio loop.
        """
        limit = timeout_seconds("timeout", timeout)
        _waiting.forbid_running_loop("recv_blocking")
        ptr, items = self._ptr, self._items
        out = ffi.new("uint64_t *")
        item = _MISSING
        try:
            if self._waiting and _waiters(ptr, _SEND):
                rc = call_waking(lib.tr_channel_try_recv, ptr, out)
            else:
                rc = lib.tr_channel_try_recv(ptr, out, _NULL)
            if rc == _EEMPTY:
                wakes = wakes_buffer()
                if not _waiting.on_main_thread():
                    rc = lib.tr_channel_recv_blocking(ptr, out, limit, wakes)  # all in C
                else:
                    rc = self._retry_on_main_thread(
                        lambda: lib.tr_channel_try_recv(ptr, out, wakes),
                        _EEMPTY,
                        lib.TR_RECV,
                        limit,
                    )
                if wakes.n:
                    deliver_wakes(wakes)
            if rc != _OK:
                raise self._recv_error(rc, "recv_blocking")
            key = out[0]
            if key >= _VALUE:
                item = self._value(key)
                _took(self._ptr, key)  # forget the receipt, free the box
                return item
            item = items[key]
            del items[key]
            return item
        except BaseException:
            self._untake_out(item, out[0])
            raise

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if not self._waiting:  # the common case: an item is there, nobody waits
            items = self._items
            item = _MISSING
            key = 0
            tag = _tags()
            try:
                key = _take(self._ptr, _NO_KEY, _CLOSED_KEY, tag, _NULL)
                if key >= _VALUE:  # no second coroutine when an item is there
                    if key < _BOXED:  # an inline int: nothing to free
                        item = key - _INT_BIAS
                        return item  # type: ignore[no-any-return]  # the int that was sent
                    item = self._value(key)
                    _took(self._ptr, key)  # forget the receipt, free the box
                    return item
                if key > _CLOSED_KEY:
                    item = items[key]
                    del items[key]
                    return item
                if key == _CLOSED_KEY:
                    raise StopAsyncIteration
            except StopAsyncIteration:
                raise
            except BaseException:
                self._untake(item, key, tag)
                raise
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
                lambda: self._notify(direction),
                deadline,
            ):
                return int(lib.TR_TIMEDOUT)

    def _notify(self, direction: int) -> None:
        """Pass an unused wake on to the next waiter of ``direction``."""
        call_waking(lib.tr_channel_notify, self._ptr, direction)

    async def _wait(self, direction: int) -> None:
        ptr = self._ptr
        self._waiting += 1
        try:
            await _waiting.wait(
                ports_of(runtime_or_default(self._runtime)),
                lambda port, token, out: lib.tr_channel_wait(ptr, direction, port, token, out),
                lambda: self._notify(direction),
            )
        finally:
            self._waiting -= 1
