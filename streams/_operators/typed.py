"""The typed-stream methods of a message source: mixed into the session and the feed."""

from __future__ import annotations

import builtins
from typing import Any, Literal, TypeVar, cast, overload

from .._types import Message
from .decode import JSONStreamMode, OnDecodeError, bytes_stream, json_stream, text_stream
from .send import JSONSender, TextBytesSink, json_sender
from .sources import BatchSource, message_stream
from .stream import MessageStream

__all__ = ["TypedStreams"]

T = TypeVar("T")


class TypedStreams:
    """The typed-stream methods of a message source.

    Mixed into :class:`~streams.AsyncWebSocketSession` and
    :class:`~streams.ReconnectingWebSocket`: each method returns a new
    :class:`MessageStream` (or :class:`JSONSender`) over ``self``, which must
    be a :class:`BatchSource` with ``send_text`` and ``send_bytes``.
    """

    __slots__ = ()

    def messages(self) -> MessageStream[Message]:
        """Return the messages as a :class:`MessageStream` of ``str | bytes``.

        Iterating it consumes the source's messages, like ``async for msg in ws``.
        """
        return message_stream(cast(BatchSource, self))

    def text(self) -> MessageStream[str]:
        """Return the text messages as a :class:`MessageStream` of ``str``.

        A binary message raises :class:`~streams.WebSocketInvalidTypeReceived`
        at its position.
        """
        return text_stream(cast(BatchSource, self))

    @overload
    def json(
        self,
        type: builtins.type[T],
        *,
        mode: JSONStreamMode = "text",
        on_error: OnDecodeError = "raise",
    ) -> MessageStream[T]: ...

    @overload
    def json(
        self,
        type: Any = ...,
        *,
        mode: JSONStreamMode = "text",
        on_error: OnDecodeError = "raise",
    ) -> MessageStream[Any]: ...

    def json(
        self,
        type: Any = Any,
        *,
        mode: JSONStreamMode = "text",
        on_error: OnDecodeError = "raise",
    ) -> MessageStream[Any]:
        """Return the messages decoded from JSON by msgspec, as a typed stream.

        Example::

            class Tick(msgspec.Struct):
                sym: str
                px: float

            async for tick in ws.json(Tick):
                print(tick.sym, tick.px)

        Args:
            type: the type to decode and validate into (a msgspec Struct, a
                dataclass, ``dict[str, float]``...); ``Any`` by default.
            mode: ``"text"`` frames, ``"binary"`` frames, or ``"any"``. A frame
                of another kind raises :class:`~streams.WebSocketInvalidTypeReceived`.
            on_error: ``"raise"`` (the default) raises
                :class:`~streams.WebSocketDecodeError`, which carries the raw
                message and msgspec's reason; a callable is called with that
                error instead and the stream goes on.

        Returns:
            A :class:`MessageStream` of ``type``.
        """
        return json_stream(cast(BatchSource, self), type, mode=mode, on_error=on_error)

    @overload
    def sender(
        self, type: builtins.type[T], *, mode: Literal["text", "binary"] = "text"
    ) -> JSONSender[T]: ...

    @overload
    def sender(
        self, type: Any = ..., *, mode: Literal["text", "binary"] = "text"
    ) -> JSONSender[Any]: ...

    def sender(
        self, type: Any = Any, *, mode: Literal["text", "binary"] = "text"
    ) -> JSONSender[Any]:
        """Return an anyio send stream that sends each item as JSON (encoded by msgspec).

        Example::

            async with ws.sender(Tick) as out:
                await out.send(Tick("ABC", 1.5))

        Args:
            type: the item type, for static typing.
            mode: ``"text"`` or ``"binary"`` frames.
        """
        return json_sender(cast(TextBytesSink, self), type, mode=mode)

    # Last: the method named ``bytes`` shadows the builtin in the class body.
    def bytes(self) -> MessageStream[builtins.bytes]:
        """Return the binary messages as a :class:`MessageStream` of ``bytes``.

        A text message raises :class:`~streams.WebSocketInvalidTypeReceived`
        at its position.
        """
        return bytes_stream(cast(BatchSource, self))
