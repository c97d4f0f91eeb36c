"""Transform operators: one new item per item (``map``, ``enumerate``)."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, TypeVar

from .stream import Derived, MessageStream, Stage

__all__ = ["Enumerate", "Map"]

T = TypeVar("T")
U = TypeVar("U")


class Map(Derived[U]):
    """``map(fn)``: ``fn(item)`` for every item; an error is raised at its item's position."""

    __slots__ = ("_fn",)

    def __init__(self, up: MessageStream[Any], fn: Callable[[Any], U]) -> None:
        super().__init__(up)
        self._fn = fn

    async def _produce(self, limit: int) -> list[U]:
        items = await self._up._pull(limit)
        out: list[U] = []
        it = iter(items)
        try:
            out.extend(builtins.map(self._fn, it))
        except Exception as exc:
            self._fail(exc, list(it), out)
        self._record(out, items)
        return out


class Enumerate(Stage[tuple[int, T]]):
    """``enumerate(start)``: ``(index, item)`` pairs; handing pairs back rewinds the count."""

    __slots__ = ("_next",)

    def __init__(self, up: MessageStream[T], start: int) -> None:
        super().__init__(up)
        self._next = start

    async def _produce(self, limit: int) -> list[tuple[int, T]]:
        items: list[T] = await self._up._pull(limit)
        start = self._next
        self._next = start + len(items)
        return list(zip(range(start, start + len(items)), items, strict=True))

    def _give_back(self, items: list[Any]) -> None:
        self._next -= len(items)
        self._up._unread([item for _, item in items])
