"""``group_by(key)``: one stream per key, read from one source.

Whichever stream needs items (the stream of groups, or a group) reads the
source when nobody else is reading it, and routes what it read to the groups;
the others wait for a change. A group holds at most ``queue_size`` items that
its consumer has not taken: an item for a full group waits, and so does the
source (no stream reads it) until that group's consumer takes its items.
Nothing here starts a task, so it works on asyncio and trio alike.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import anyio

from .stream import ALL, MessageStream
from .time import Kept

__all__ = ["GroupBy", "GroupStream"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class GroupStream(MessageStream[T]):
    """The items of one key of :meth:`MessageStream.group_by`, in order.

    Attributes:
        key: the key of every item of this stream.

    It ends when the source ends, after its items, and raises the source's
    error (or the ``key`` function's) after them.
    """

    __slots__ = ("_queue", "_router", "key")

    def __init__(self, router: _Router[Any, T], key: Any) -> None:
        super().__init__()
        self._router = router
        self.key = key
        self._queue: collections.deque[T] = collections.deque()

    async def _produce(self, limit: int) -> list[T]:
        router = self._router
        queue = self._queue
        await router.wait_for(lambda: bool(queue))
        if not queue:
            return router.end()
        if limit >= len(queue):
            items = list(queue)
            queue.clear()
        else:
            items = [queue.popleft() for _ in range(limit)]
        router.notify()  # room in this group: routing may go on
        return items

    def __repr__(self) -> str:
        return f"<GroupStream key={self.key!r} queued={len(self._queue)}>"


class _Router(Generic[K, T]):
    """The state shared by the stream of groups and the groups."""

    def __init__(self, up: MessageStream[T], key: Callable[[T], K], queue_size: int) -> None:
        self._up = up
        self._key = key
        self._size = queue_size
        self.groups: dict[K, GroupStream[T]] = {}
        #: Groups made and not yet yielded by the stream of groups.
        self.new: list[tuple[K, GroupStream[T]]] = []
        # Items read and not yet routed (their group was full), in order.
        self._pending: list[T] = []
        self._reading = False
        self._ended = False
        self._error: Exception | None = None
        self._changed: anyio.Event | None = None

    def notify(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    def end(self) -> list[Any]:
        """What a stream with nothing left returns at the end: ``[]``, or the error raised."""
        if self._error is not None:
            raise self._error
        return []

    def _route(self) -> bool:
        """Route the pending items into their groups while there is room; True if any moved."""
        pending = self._pending
        groups = self.groups
        index = 0
        try:
            for item in pending:
                key = self._key(item)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = GroupStream(self, key)
                    self.new.append((key, group))
                elif len(group._queue) >= self._size:
                    break
                group._queue.append(item)
                index += 1
        except Exception as exc:  # the key function failed: the grouping ends there
            self._error = exc
            self._ended = True
            pending.clear()
            return True
        del pending[:index]
        return index > 0

    async def wait_for(self, ready: Callable[[], bool]) -> None:
        """Read and route until ``ready()`` or the end. Cancelling is safe: nothing read is lost."""
        while not ready() and not (self._ended and not self._pending):
            if self._route():
                self.notify()
                continue
            if self._pending or self._reading:
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()
                continue
            self._reading = True
            try:
                items: list[T] = await self._up._pull(ALL)
                if not items:
                    self._ended = True
            except Exception as exc:
                self._error = exc
                self._ended = True
                items = []
            finally:
                self._reading = False
                self.notify()
            self._pending += items


class GroupBy(Kept[tuple[K, GroupStream[T]]]):
    """``group_by(key, queue_size)``: ``(key, stream)`` the first time each key is seen."""

    __slots__ = ("_router",)

    def __init__(self, up: MessageStream[T], key: Callable[[T], K], queue_size: int) -> None:
        super().__init__(up)
        self._router = _Router(up, key, queue_size)

    async def _produce(self, limit: int) -> list[tuple[K, GroupStream[T]]]:
        router = self._router
        await router.wait_for(lambda: bool(router.new))
        if not router.new:
            return router.end()
        new = router.new[:limit]
        del router.new[: len(new)]
        return new
