"""Grouping operators: lists of items (``chunks``, ``batch``). Lists handed back are flattened."""

from __future__ import annotations

from typing import Any, TypeVar

import anyio

from .stream import ALL, MessageStream, Stage

__all__ = ["Batch", "Chunks"]

T = TypeVar("T")


class _Lists(Stage[list[T]]):
    __slots__ = ()

    def _give_back(self, items: list[Any]) -> None:
        self._up._unread([item for chunk in items for item in chunk])


class Chunks(_Lists[T]):
    """``chunks()``: the items in the lists they arrive in."""

    __slots__ = ()

    async def _produce(self, limit: int) -> list[list[T]]:
        items: list[T] = await self._up._pull(ALL)
        return [list(items)] if items else []


class Batch(_Lists[T]):
    """``batch(size, timeout)``: lists of up to ``size`` items.

    It pulls everything upstream has (so each source batch is converted in one
    go) and hands the surplus straight back upstream: nothing is held here
    between pulls.
    """

    __slots__ = ("_size", "_timeout")

    def __init__(self, up: MessageStream[T], size: int, timeout: float | None) -> None:
        super().__init__(up)
        self._size = size
        self._timeout = timeout

    def _take(self, acc: list[T], items: list[T]) -> None:
        room = self._size - len(acc)
        if len(items) > room:
            self._up._unread(items[room:])
            items = items[:room]
        acc += items

    async def _produce(self, limit: int) -> list[list[T]]:
        up = self._up
        first: list[T] = await up._pull(ALL)
        if not first:
            return []
        acc: list[T] = []
        self._take(acc, first)
        try:
            if self._timeout is None:
                await self._fill(acc)
            else:
                with anyio.CancelScope(deadline=anyio.current_time() + self._timeout):
                    await self._fill(acc)
        except Exception as exc:
            self._exc = exc  # raised after this list
        except BaseException:
            up._unread(acc)
            raise
        return [acc]

    async def _fill(self, acc: list[T]) -> None:
        while len(acc) < self._size:
            more: list[T] = await self._up._pull(ALL)
            if not more:
                return
            self._take(acc, more)
