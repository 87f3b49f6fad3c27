"""Argument checks, done at call time before any future exists.

They mirror how the original PyO3 extension converted its arguments: an int
that does not fit ``u64`` raises ``OverflowError``, anything that is not an
int (a float, a str, None) raises ``TypeError``.  ``bool`` and objects with
``__index__`` (numpy integers) are accepted, as PyO3 accepts them.
"""

from __future__ import annotations

import math
import numbers
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


#: Longest duration accepted anywhere (about 31.7 years): far beyond any real
#: wait, and small enough that deadlines never overflow in C.
MAX_SECONDS = 1e9


def seconds(name: str, value: Any) -> float:
    """Return ``value`` as a finite float in [0, MAX_SECONDS].

    ``TypeError`` for a non-number (``bool`` and ``str`` included),
    ``ValueError`` for a negative, NaN, infinite or too large value.
    """
    if isinstance(value, float):
        s = value
    elif isinstance(value, int) and not isinstance(value, bool):
        # Compared as an int first: a huge one (either sign) is out of range,
        # not an OverflowError from float().
        s = float(value) if -MAX_SECONDS <= value <= MAX_SECONDS else math.inf
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            s = float(value)
        except OverflowError:  # a Fraction beyond any float: out of range
            s = math.inf
    else:
        raise TypeError(f"{name} must be a number of seconds, not '{type(value).__name__}'")
    if not 0.0 <= s <= MAX_SECONDS:  # also False for NaN
        raise ValueError(
            f"{name} must be a finite number between 0 and {MAX_SECONDS:g}, got {value!r}"
        )
    return s


def timeout_seconds(name: str, value: Any) -> float:
    """Like :func:`seconds`, but ``None`` (wait forever) gives ``-1.0``."""
    return -1.0 if value is None else seconds(name, value)


def int_in_range(name: str, value: Any, low: int, high: int) -> int:
    """Return ``value`` as an int in [low, high].

    ``TypeError`` for a non-int (``bool`` included), ``ValueError`` when out
    of range.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{name} must be an int, not '{type(value).__name__}'")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not '{type(value).__name__}'") from None
    if not low <= v <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {v}")
    return v


def callback_or_none(name: str, value: Any) -> Any:
    """``value`` if it is callable or None, else ``TypeError``."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, not '{type(value).__name__}'")
    return value
