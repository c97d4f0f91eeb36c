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

    async def _receive_batch(self) -> list[Message]:
        """Every message available now, waiting for one; ``[]`` once the feed was closed.

        Cancelling is safe: no message is lost.
        """
        if self._leftover:
            batch = list(self._leftover)
            self._leftover.clear()
            return batch
        return await self._loop.take_batch()
