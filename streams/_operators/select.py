"""Selection operators: which items go on (``filter``, ``take``, ``skip``).

Items handed back go to the stream above unchanged (a filtered item is tested
again when read again).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, TypeVar

from .stream import MessageStream, Stage

__all__ = ["Filter", "Skip", "Take"]

T = TypeVar("T")


class Filter(Stage[T]):
    """``filter(predicate)``: the items for which ``predicate`` is true."""

    __slots__ = ("_pred",)

    def __init__(self, up: MessageStream[T], pred: Callable[[T], object]) -> None:
        super().__init__(up)
        self._pred = pred

    async def _produce(self, limit: int) -> list[T]:
        while True:
            items = await self._up._pull(limit)
            if not items:
                return items
            out: list[T] = []
            it = iter(items)
            try:
                out.extend(builtins.filter(self._pred, it))
            except Exception as exc:
                self._fail(exc, list(it), out)
            if out:
                return out


class Take(Stage[T]):
    """``take(n)``: at most ``n`` more items, reading nothing beyond them."""

    __slots__ = ("_left",)

    def __init__(self, up: MessageStream[T], n: int) -> None:
        super().__init__(up)
        self._left = n

    async def _produce(self, limit: int) -> list[T]:
        if self._left <= 0:
            return []
        items: list[T] = await self._up._pull(min(limit, self._left))
        self._left -= len(items)
        return items

    def _give_back(self, items: list[Any]) -> None:
        self._left += len(items)
        self._up._unread(items)


class Skip(Stage[T]):
    """``skip(n)``: drops (consumes) the next ``n`` items."""

    __slots__ = ("_left",)

    def __init__(self, up: MessageStream[T], n: int) -> None:
        super().__init__(up)
        self._left = n

    async def _produce(self, limit: int) -> list[T]:
        while self._left > 0:
            dropped = await self._up._pull(self._left)
            if not dropped:
                return []
            self._left -= len(dropped)
        return await self._up._pull(limit)
