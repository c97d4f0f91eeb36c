"""The receiving half of a reconnecting feed: every connection's messages, in order.

The supervisor (``_supervisor.py``) moves each session's batches into the
feed's inbox channel; :class:`FeedReceiving` hands them to the application,
one at a time or in batches (for typed streams), keeping what a typed stream
put back in front.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio

from ._feedtimes import FeedReadTimes
from ._types import Message

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["FeedReceiving"]


class FeedReceiving:
    """The receiving half of :class:`~streams.ReconnectingWebSocket`."""

    __slots__ = ()

    _loop: Supervisor
    _leftover: collections.deque[Message]

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        if not self._leftover:
            batch = await self._receive_batch()
            if not batch:
                raise StopAsyncIteration
            self._leftover.extend(batch)
        return self._leftover.popleft()

    async def receive(self) -> Message:
        """Return the next message, whichever connection it came on.

        Raises:
            DisconnectSignal: the feed ended because of the policy (after every
                message received before).
            anyio.EndOfStream: the feed was closed.

        Cancelling is safe: no message is lost.
        """
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None

    def _unread_batch(self, messages: list[Message]) -> None:
        """Put messages back in front of the next :meth:`_receive_batch` (for typed streams)."""
        self._leftover.extendleft(reversed(messages))

    async def _receive_batch(self, limit: int = 0) -> list[Message]:
        """Every message available now (at most ``limit`` if given), waiting for one.

        Returns ``[]`` once the feed was closed. Cancelling is safe: no message is lost.
        """
        leftover = self._leftover
        if not leftover:
            batch = await self._loop.take_batch()
            if 0 < limit < len(batch):
                leftover.extend(batch[limit:])
                del batch[limit:]
            return batch
        if 0 < limit < len(leftover):
            return [leftover.popleft() for _ in range(limit)]
        batch = list(leftover)
        leftover.clear()
        return batch

    def _read_times(self, count: int) -> list[float | None]:
        """When each of the last ``count`` messages taken was read off its socket (``time.time()``).

        The first call starts recording: until then the times are ``None``.
        """
        loop = self._loop
        if loop.read_times is None:
            loop.read_times = FeedReadTimes()
            if loop.session is not None:
                loop.read_times.start(loop.session)
            return [None] * count
        return loop.read_times.times(count, loop.inbox_count + len(self._leftover))
