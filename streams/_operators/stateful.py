"""Operators that remember earlier items: ``scan`` and ``distinct_until_changed``.

Their state has already moved past the items they delivered, so items handed
back to them stay in their own buffer (see :class:`~.time.Kept`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .stream import MessageStream
from .time import Kept

__all__ = ["DistinctUntilChanged", "Scan"]

T = TypeVar("T")
A = TypeVar("A")

_NOTHING: Any = object()


class Scan(Kept[A]):
    """``scan(fn, initial)``: the running ``acc = fn(acc, item)``, one per item."""

    __slots__ = ("_acc", "_fn")

    def __init__(self, up: MessageStream[T], fn: Callable[[A, T], A], initial: A) -> None:
        super().__init__(up)
        self._fn = fn
        self._acc = initial

    async def _produce(self, limit: int) -> list[A]:
        items: list[Any] = await self._up._pull(limit)
        out: list[A] = []
        fn = self._fn
        acc = self._acc
        for index, item in enumerate(items):
            try:
                acc = fn(acc, item)
            except Exception as exc:
                self._acc = acc
                self._fail(exc, items[index + 1 :], out)
                return out
            out.append(acc)
        self._acc = acc
        return out


class DistinctUntilChanged(Kept[T]):
    """``distinct_until_changed(key)``: drops an item whose key equals the previous item's."""

    __slots__ = ("_key", "_last")

    def __init__(self, up: MessageStream[T], key: Callable[[T], object] | None) -> None:
        super().__init__(up)
        self._key = key
        self._last: object = _NOTHING

    async def _produce(self, limit: int) -> list[T]:
        key = self._key
        while True:
            items: list[T] = await self._up._pull(limit)
            if not items:
                return items
            out: list[T] = []
            last = self._last
            for index, item in enumerate(items):
                try:
                    current = item if key is None else key(item)
                except Exception as exc:
                    self._last = last
                    self._fail(exc, items[index + 1 :], out)
                    return out
                if last is _NOTHING or current != last:
                    out.append(item)
                last = current
            self._last = last
            if out:
                return out
