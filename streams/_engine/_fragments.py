"""Messages fragment by fragment: receiving the parts of a streamed message, sending parts.

A message past ``max_message_size_bytes`` (within ``max_fragmented_size_bytes``)
takes its place in the receive channel as a
:class:`~streams.protocol.StreamedMessage`; its parts are added to it as its
frames are parsed. The reader hands them over (:meth:`Inbox.hand_parts`) and
stops reading while more than :data:`~streams._engine._parts.PARTS_HIGH_WATER`
bytes of them wait; :func:`receive_fragments` takes them out.

:func:`send_fragments` frames the parts of an outgoing message one by one,
waiting for the network between them; whole messages sent meanwhile wait
for its end.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from contextlib import aclosing
from typing import TYPE_CHECKING

import anyio

from .._exceptions import WebSocketInvalidTypeReceived
from .._types import Message
from ..protocol import SendingFragments, StreamedMessage

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["FragmentReceiver", "send_after_fragments", "send_fragments", "streamed_error"]


def streamed_error(message: StreamedMessage) -> WebSocketInvalidTypeReceived:
    """The error of a receive that met a streamed message (left first in line)."""
    return WebSocketInvalidTypeReceived(
        message.as_event(),
        "the next message is larger than max_message_size_bytes and arrives in parts:"
        " receive it with receive_fragments()",
    )


class FragmentReceiver:
    """The parts of the next message, as they arrive (``session.receive_fragments()``).

    Leaving early (:meth:`aclose`, or dropping the iterator) drops the rest
    of a streamed message as it arrives.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # None until the message is taken from the channel; then the streamed
        # message, or a whole message's one part.
        self._message: StreamedMessage | Message | None = None
        self._parts: list[Message] = []
        self._done = False

    def __aiter__(self) -> FragmentReceiver:
        return self

    async def __anext__(self) -> Message:
        """Return the next part.

        Raises:
            StopAsyncIteration: the message ended.
            WebSocketDisconnect: the connection closed before the message or its end.
            WebSocketNetworkError: the network failed.

        Cancelling is safe: the next call goes on where this one stopped.
        """
        if self._parts:
            return self._parts.pop()
        if self._done:
            raise StopAsyncIteration
        engine = self._engine
        inbox = engine.inbox
        message = self._message
        if message is None:
            try:
                message = self._message = await inbox.next_message()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                raise engine.end_error() from None
            if not isinstance(message, StreamedMessage):
                self._done = True
                return message
            inbox.streamed_taken()
        assert isinstance(message, StreamedMessage)
        while True:
            parts = message.take()
            if parts:
                inbox.parts_taken()
                parts.reverse()
                self._parts = parts
                return parts.pop()
            if message.finished:
                self._done = True
                raise StopAsyncIteration
            if inbox.ended:
                # The connection closed (or failed) before the message's end.
                self._done = True
                raise engine.end_error()
            await inbox.wait_arrival()

    async def aclose(self) -> None:
        """Drop the rest of the message (the next receive gets the message after it)."""
        self._drop()

    def _drop(self) -> None:
        self._done = True
        self._parts = []
        message = self._message
        if isinstance(message, StreamedMessage) and not message.finished:
            message.discarded = True
            message.take()
            self._engine.inbox.parts_taken()

    def __del__(self) -> None:
        self._drop()


async def send_fragments(engine: Engine, parts: AsyncIterable[Message] | Iterable[Message]) -> None:
    """Send the parts of one message as fragments (see ``AsyncWebSocketSession``)."""
    outbox = engine.outbox
    while outbox.fragments_done is not None:
        # Another fragmented message goes out first.
        await outbox.fragments_done.wait()
    done = outbox.fragments_done = anyio.Event()
    protocol = engine.protocol
    sender = _FragmentSender(engine)
    try:
        await engine.wait_turn()
        protocol.begin_fragments()
        async with aclosing(_aiter(parts)) as each:
            async for part in each:
                await sender.send(part)
        await sender.finish()
    except BaseException:
        if sender.started and protocol.can_send:
            # Half a message is on the wire and its end will never come:
            # close the connection (1011), as websockets does.
            engine.inbox.stop_waiting()
            outbox.queue(protocol.send_close(1011, "fragmented message interrupted"))
        raise
    finally:
        protocol.end_fragments()
        outbox.fragments_done = None
        done.set()


class _FragmentSender:
    """Frames the parts of one message, each when the next comes (the last one ends it)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._kind: type[str] | type[bytes] | None = None
        self._held: Message | None = None
        #: A fragment went out and the message is not finished.
        self.started = False

    async def send(self, part: Message) -> None:
        kind = self._kind
        if kind is None:
            if not isinstance(part, (str, bytes)):
                raise TypeError(f"send_fragments() sends str or bytes parts, not {part!r}")
            self._kind = type(part)
        elif not isinstance(part, kind):
            raise TypeError(
                f"every part of a message must be {kind.__name__} like its first, not {part!r}"
            )
        held = self._held
        self._held = part
        if held is not None:
            await self._queue(held, final=False)

    async def finish(self) -> None:
        if self._held is not None:
            await self._queue(self._held, final=True)
            self._engine.messages_out += 1

    async def _queue(self, part: Message, final: bool) -> None:
        engine = self._engine
        engine.check_can_send()
        engine.outbox.queue(engine.protocol.send_fragment(part, not self.started, final))
        self.started = not final
        await engine.wait_for_room()


async def send_after_fragments(engine: Engine, message: Message, compress: bool) -> None:
    """Send a whole message once the fragmented message being sent is finished."""
    outbox = engine.outbox
    while True:
        if outbox.fragments_done is not None:
            await outbox.fragments_done.wait()
        engine.check_can_send()
        try:
            engine.send_message(message, compress)
        except SendingFragments:
            continue
        return


async def _aiter(parts: AsyncIterable[Message] | Iterable[Message]) -> AsyncGenerator[Message]:
    if isinstance(parts, AsyncIterable):
        async for part in parts:
            yield part
    else:
        for part in parts:
            yield part
