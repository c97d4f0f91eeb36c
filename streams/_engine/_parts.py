"""The parts of streamed messages on their way to the consumer, under backpressure.

:class:`PartsHandOff` is the part of the :class:`~streams._engine._inbox.Inbox`
for messages that stream (past ``max_message_size_bytes``): it counts those in
the channel, turns the consumer's fast path off while one waits there (only
``receive_fragments()`` takes it), and makes the reader wait while more than
:data:`PARTS_HIGH_WATER` bytes of parts wait for the consumer.
"""

from __future__ import annotations

import anyio

from ..protocol import StreamedMessage

__all__ = ["PARTS_HIGH_WATER", "PartsHandOff"]

#: The bytes of a streamed message's parts that may wait for the consumer
#: before the reader stops reading (backpressure).
PARTS_HIGH_WATER = 1 << 20


class PartsHandOff:
    """The streamed messages' side of the inbox (a base of ``Inbox``)."""

    _stream_closed: bool
    closing: bool
    delivering: bool
    paused: bool
    pauses: int
    _delivery_scope: anyio.CancelScope | None

    def wake(self) -> None:
        """Wake the consumer (see ``Inbox.wake``)."""
        raise NotImplementedError

    def _init_parts(self) -> None:
        # Streamed messages put in the channel (or about to be), and taken by
        # receive_fragments().
        self._streamed_in = 0
        self._streamed_out = 0
        #: The consumer's fast path is off (checked per message): receive_stream
        #: was closed, or a streamed message waits (only receive_fragments() takes it).
        self.detour = False
        # Set when the consumer took parts of a streamed message, for the reader.
        self._parts_taken: anyio.Event | None = None

    def streamed_started(self, count: int) -> None:
        """Reader: ``count`` messages streamed so far; before they go in the channel."""
        self._streamed_in = count
        self._set_detour()

    def streamed_taken(self) -> None:
        """Consumer: receive_fragments() took a streamed message from the channel."""
        self._streamed_out += 1
        self._set_detour()

    def _set_detour(self) -> None:
        self.detour = self._stream_closed or self._streamed_in > self._streamed_out

    async def hand_parts(self, streamed: StreamedMessage) -> None:
        """Reader: parts of ``streamed`` arrived; wait while too many wait for the consumer.

        While this side closes, or once nobody receives, they are dropped instead.
        """
        self.wake()
        while streamed.buffered > PARTS_HIGH_WATER and not self.closing and self.delivering:
            self.paused = True
            self.pauses += 1
            taken = self._parts_taken = anyio.Event()
            try:
                with anyio.CancelScope() as scope:
                    self._delivery_scope = scope
                    await taken.wait()
            finally:
                self.paused = False
                self._delivery_scope = None
        if self.closing or not self.delivering:
            streamed.discarded = True
            streamed.take()

    def parts_taken(self) -> None:
        """Consumer: parts were taken (or dropped): a reader waiting for room reads on."""
        taken = self._parts_taken
        if taken is not None:
            self._parts_taken = None
            taken.set()
