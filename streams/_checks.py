"""Argument checks shared by the public API: one wording for every bad argument.

Each check raises at once (before anything starts) with a message that names the
argument, what it accepts and what it got.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "check_choice",
    "check_close_code",
    "check_int",
    "check_minimum",
    "check_on_error",
    "check_seconds",
    "check_sync_callable",
]

# Close codes an endpoint may send (RFC 6455 section 7.4 and the IANA
# registry), besides 3000-4999.
_SENDABLE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

S = TypeVar("S", bound=str)
E = TypeVar("E")


def _or_list(choices: tuple[str, ...]) -> str:
    quoted = [repr(choice) for choice in choices]
    if len(quoted) == 1:
        return quoted[0]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def check_choice(name: str, value: S, choices: tuple[str, ...]) -> S:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: e.g. ``mode must be 'text' or 'binary', not 'xml'``.
    """
    if value not in choices:
        raise ValueError(f"{name} must be {_or_list(choices)}, not {value!r}")
    return value


def check_minimum(name: str, value: float, minimum: float) -> None:
    """Check that ``value >= minimum``.

    Raises:
        ValueError: e.g. ``size must be >= 1``.
    """
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}")


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """Check that ``value`` is an ``int`` (not a ``bool``) from ``minimum`` to ``maximum``.

    Raises:
        TypeError: ``value`` is not an int, e.g. ``queue_size must be an int, not 1.5``.
        ValueError: out of range, e.g. ``queue_size must be 0 or more, not -1``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum} or more" if maximum is None else f"from {minimum} to {maximum}"
        raise ValueError(f"{name} must be {bounds}, not {value!r}")


def check_seconds(name: str, value: float | None, *, zero: bool = False) -> None:
    """Check a duration: a number of seconds (more than 0, or 0 too with ``zero``) or ``None``.

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: ``value`` is negative, NaN, or 0 without ``zero``.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
    if math.isnan(value) or value < 0 or (value == 0 and not zero):
        least = "0 or more" if zero else "more than 0"
        raise ValueError(f"{name} must be {least} seconds or None, not {value!r}")


def check_close_code(code: int) -> None:
    """Check that ``code`` may be sent in a Close frame (RFC 6455, section 7.4).

    Raises:
        ValueError: e.g. ``close code 1006 may not be sent``.
    """
    if not (code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999):
        raise ValueError(f"close code {code} may not be sent (RFC 6455, section 7.4)")


def check_on_error(on_error: Any) -> Callable[[E], object] | None:
    """Check an ``on_error`` argument: ``"raise"`` gives ``None``, a callable is returned as is.

    Raises:
        ValueError: ``on_error`` is neither.
    """
    if on_error == "raise":
        return None
    if not callable(on_error):
        raise ValueError(f"on_error must be 'raise' or a callable, not {on_error!r}")
    return on_error  # type: ignore[no-any-return]


def check_sync_callable(fn: object) -> None:
    """Check that ``fn`` is a plain (synchronous) callable.

    Raises:
        TypeError: ``fn`` is an ``async def`` function, or not callable.
    """
    if inspect.iscoroutinefunction(fn):
        raise TypeError(
            "operators take synchronous functions; for an async function, use an aiostream pipe"
            " (pipe.map) or a loop"
        )
    if not callable(fn):
        raise TypeError(f"expected a callable, got {type(fn).__name__}")
