"""Argument checks shared by the public API: one wording for every bad argument.

Each check raises at once (before anything starts) with a message that names the
argument, what it accepts and what it got.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["check_choice", "check_minimum", "check_on_error", "check_sync_callable"]

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
