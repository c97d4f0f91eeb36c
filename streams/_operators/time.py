"""Time operators: ``throttle``, ``sample``, ``debounce``, ``timeout`` and ``timestamp``.

They read the clock with ``anyio.current_time()`` and wait with anyio cancel
scopes, so they work on asyncio and trio (and on a virtual clock in tests:
trio's ``MockClock``, a virtual-time asyncio loop). aiostream's operators of
the same names are asyncio-only; these speak the pull protocol of
:class:`~streams.MessageStream` instead, one batch at a time.

What they compute depends on when it was computed, so items handed back to
them (after an error or a cancellation downstream) stay in their own buffer
rather than going back upstream: delivered again, they are delivered as they
were. Items they drop are consumed.

``timestamp()`` reads the wall clock (``time.time()``), never in a transport's
callback: the session records the read time of each batch of messages when a
``timestamp()`` asked it to (see ``Inbox.read_times``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import anyio

from .stream import ALL, MessageStream, Stage

if TYPE_CHECKING:
    from .sources import _BatchRoot

__all__ = ["Debounce", "Kept", "Sample", "Throttle", "Timeout", "Timestamp", "Timestamped"]

T = TypeVar("T")


class Timestamped(NamedTuple, Generic[T]):
    """An item of :meth:`MessageStream.timestamp`: the value and when it was received.

    Attributes:
        value: the item.
        received_at: ``time.time()`` when the frame that carried it was read
            off the socket (one clock call per read, shared by the messages of
            that read), not when the consumer took it. For sources without read
            times (a plain async iterable, an anyio channel, a reconnecting feed,
            a merged stream), the time the item reached the ``timestamp()`` stage.
    """

    value: T
    received_at: float


class Kept(Stage[T]):
    """A stage whose items handed back stay in its own buffer (their state is spent)."""

    __slots__ = ()

    def _give_back(self, items: list[Any]) -> None:
        self._unread(items)


class Throttle(Kept[T]):
    """``throttle(interval)``: an item, then ``interval`` seconds of dropped items, and so on."""

    __slots__ = ("_interval", "_next")

    def __init__(self, up: MessageStream[T], interval: float) -> None:
        super().__init__(up)
        self._interval = interval
        self._next = -float("inf")

    async def _produce(self, limit: int) -> list[T]:
        while True:
            items: list[T] = await self._up._pull(ALL)
            if not items:
                return items
            # A batch arrives at one moment: at most its first item goes on.
            now = anyio.current_time()
            if now >= self._next:
                self._next = now + self._interval
                return items[:1]


class Sample(Kept[T]):
    """``sample(interval)``: at each tick, the latest item that arrived since the previous tick.

    The ticks are ``interval`` apart from the first read. The latest item is
    kept in the stage, so a cancellation loses nothing.
    """

    __slots__ = ("_interval", "_latest", "_tick")

    def __init__(self, up: MessageStream[T], interval: float) -> None:
        super().__init__(up)
        self._interval = interval
        self._tick: float | None = None
        self._latest: list[T] = []

    def _take_latest(self) -> list[T]:
        latest, self._latest = self._latest, []
        return latest

    async def _produce(self, limit: int) -> list[T]:
        if self._tick is None:
            self._tick = anyio.current_time() + self._interval
        while True:
            with anyio.CancelScope(deadline=self._tick) as tick:
                try:
                    while True:
                        items: list[T] = await self._up._pull(ALL)
                        if not items:
                            return self._take_latest()  # the pending item, then the end
                        self._latest = items[-1:]
                except Exception as exc:
                    if not self._latest:
                        raise
                    self._exc = exc  # raised after the pending item
                    return self._take_latest()
            if tick.cancelled_caught:
                # The next tick after now, on the grid of the first one.
                missed = (anyio.current_time() - self._tick) // self._interval
                self._tick += (missed + 1) * self._interval
                if self._latest:
                    return self._take_latest()


class Debounce(Kept[T]):
    """``debounce(interval)``: an item once ``interval`` seconds passed without a newer one.

    The pending item is kept in the stage, so a cancellation loses nothing.
    """

    __slots__ = ("_due", "_interval", "_pending")

    def __init__(self, up: MessageStream[T], interval: float) -> None:
        super().__init__(up)
        self._interval = interval
        self._pending: list[T] = []
        self._due = 0.0

    def _take_pending(self) -> list[T]:
        pending, self._pending = self._pending, []
        return pending

    async def _produce(self, limit: int) -> list[T]:
        up = self._up
        while True:
            try:
                if self._pending:
                    with anyio.CancelScope(deadline=self._due) as quiet:
                        items: list[T] = await up._pull(ALL)
                    if quiet.cancelled_caught:
                        return self._take_pending()
                else:
                    items = await up._pull(ALL)
            except Exception as exc:
                if not self._pending:
                    raise
                self._exc = exc  # raised after the pending item
                return self._take_pending()
            if not items:
                return self._take_pending()  # the pending item, then the end
            self._pending = items[-1:]
            self._due = anyio.current_time() + self._interval


class Timeout(Stage[T]):
    """``timeout(seconds)``: ``TimeoutError`` when the next item takes longer than ``seconds``."""

    __slots__ = ("_seconds",)

    def __init__(self, up: MessageStream[T], seconds: float) -> None:
        super().__init__(up)
        self._seconds = seconds

    async def _produce(self, limit: int) -> list[T]:
        items: list[T] | None = None
        with anyio.move_on_after(self._seconds):
            items = await self._up._pull(limit)
        if items is None:
            raise TimeoutError(
                f"no item within {self._seconds} s; iterate again to keep waiting, "
                "or raise the timeout"
            )
        return items


class Timestamp(Kept[Timestamped[T]]):
    """``timestamp()``: each item with the time it was read off the socket.

    Over a session (through any chain of one-stream operators), it asks one
    item at a time and takes that item's read time from the root, which asks
    the session. Over other sources, every item of a batch gets the time the
    batch reached this stage.
    """

    __slots__ = ("_root",)

    def __init__(self, up: MessageStream[T]) -> None:
        super().__init__(up)
        # Found now, so that the session records read times from now on.
        self._root = self._find_root()

    def _find_root(self) -> _BatchRoot | None:
        """The session's root at the top of a chain of one-stream stages, recording read times."""
        from .sources import _BatchRoot  # here: sources imports this package

        stream: MessageStream[Any] = self._up
        while isinstance(stream, Stage):
            stream = stream._up
        if isinstance(stream, _BatchRoot) and stream.record_read_times():
            return stream
        return None

    async def _produce(self, limit: int) -> list[Timestamped[T]]:
        root = self._root
        if root is None:
            items: list[T] = await self._up._pull(limit)
            now = time.time()
            return [Timestamped(item, now) for item in items]
        before = root.read_times
        items = await self._up._pull(1)
        if not items:
            return []
        times = root.read_times
        read_at = times[-1] if times is not before and times else None
        return [Timestamped(items[0], time.time() if read_at is None else read_at)]
