"""Argument checks, done at call time before any future exists.

They mirror how the original PyO3 extension converted its arguments: an int
that does not fit ``u64`` raises ``OverflowError``, anything that is not an
int (a float, a str, None) raises ``TypeError``.  ``bool`` and objects with
``__index__`` (numpy integers) are accepted, as PyO3 accepts them.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

U64_MAX = 2**64 - 1


def u64(name: str, value: Any) -> int:
    """Return ``value`` as an int in [0, 2**64), or raise like PyO3 does."""
    try:
        v = operator.index(value)
    except TypeError:
        kind = type(value).__name__
        raise TypeError(
            f"argument '{name}': '{kind}' object cannot be interpreted as an integer"
        ) from None
    if v < 0:
        raise OverflowError(f"argument '{name}': can't convert negative int to unsigned")
    if v > U64_MAX:
        raise OverflowError(f"argument '{name}': int too big to convert")
    return v


def str_list(name: str, value: Any) -> list[str]:
    """Return ``value`` (a sequence of str, not a str) as a list."""
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Sequence):
        raise TypeError(
            f"argument '{name}': expected a sequence of str, got '{type(value).__name__}'"
        )
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(
                f"argument '{name}': item {i} is '{type(item).__name__}', expected 'str'"
            )
    return items


def check_worker_threads(value: Any) -> int:
    """Validate a worker thread count (1 .. tr_max_workers())."""
    from ._native import lib

    if isinstance(value, bool):
        raise TypeError("worker_threads must be an int, not bool")
    n = operator.index(value) if not isinstance(value, int) else value
    limit = lib.tr_max_workers()
    if not 1 <= n <= limit:
        raise ValueError(f"worker_threads must be between 1 and {limit}, got {n}")
    return int(n)


def check_thread_name(value: Any) -> str:
    """Validate a thread name prefix: a non-empty str without NUL, < 64 bytes."""
    if not isinstance(value, str):
        raise TypeError(f"thread_name must be a str, not '{type(value).__name__}'")
    encoded = value.encode("utf-8", "strict")
    if not encoded or b"\0" in encoded or len(encoded) >= 64:
        raise ValueError("thread_name must be 1 to 63 bytes of UTF-8 without NUL")
    return value
