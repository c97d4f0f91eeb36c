"""The public async session: the seed's API over :class:`~streams._session_core.SessionCore`.

:class:`AsyncWebSocketSession` holds no I/O of its own: its engine runs the
connection over the I/O backend chosen for its network stream
(``streams/_io/``), and every method here is a thin delegation to it.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

import anyio

from ._checks import check_choice, check_close_code
from ._codec import decode_json, encode_json, encode_json_text
from ._engine import NORMAL_CLOSE_CODES
from ._engine._fragments import send_after_fragments, send_fragments
from ._exceptions import WebSocketInvalidTypeReceived
from ._operators import TypedStreams
from ._options import SessionOptions
from ._session_core import SessionCore, SessionStatistics
from ._types import (
    DEFAULT_CLOSE_TIMEOUT_SECONDS,
    DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    DEFAULT_QUEUE_SIZE,
    JSON_MODES,
    JSONMode,
    Message,
)
from .protocol import SendingFragments
from .protocol._wsproto import (
    BytesMessage,
    CloseConnection,
    Event,
    LocalProtocolError,
    Ping,
    TextMessage,
)
from .protocol._wsproto import Message as WsprotoMessage

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Iterable, Sequence

    import httpx
    from httpcore import AsyncNetworkStream

    from .protocol._wsproto import Extension

__all__ = ["NORMAL_CLOSE_CODES", "AsyncWebSocketSession", "SessionStatistics"]


def as_event(message: Message) -> TextMessage | BytesMessage:
    """Return ``message`` as the wsproto event httpx-ws's ``receive()`` returns."""
    if isinstance(message, str):
        return TextMessage(data=message)
    return BytesMessage(data=message)


def expect_text(message: Message) -> str:
    """Return ``message`` if it is text, else raise :class:`WebSocketInvalidTypeReceived`."""
    if not isinstance(message, str):
        raise WebSocketInvalidTypeReceived(BytesMessage(data=message))
    return message


def expect_bytes(message: Message) -> builtins.bytes:
    """Return ``message`` if it is binary, else raise :class:`WebSocketInvalidTypeReceived`."""
    if isinstance(message, str):
        raise WebSocketInvalidTypeReceived(TextMessage(data=message))
    return message


class AsyncWebSocketSession(SessionCore, TypedStreams):
    """An open WebSocket session: a pair of typed anyio channels and the methods of httpx-ws.

    It is an async context manager: entering starts the background tasks,
    leaving closes the session (close code 1000 unless it is closed already).
    An exception raised inside the ``async with`` block comes out as itself,
    never wrapped in an exception group.

    Usually made by :func:`streams.aconnect_ws`; the constructor is that of
    httpx-ws, for ``session_class`` subclasses.

    Args:
        stream: the network stream of the upgraded connection (httpcore's).
        max_message_size_bytes: the largest message accepted; a larger one
            closes the connection with code 1009.
        queue_size: how many received messages may wait for the consumer
            before the session stops reading the network.
        keepalive_ping_interval_seconds: how often to ping the peer; ``None``
            disables keepalive.
        keepalive_ping_timeout_seconds: how long the peer may stay silent after
            a ping before the connection is declared dead (close 1011,
            :class:`~streams.WebSocketNetworkError`); ``None`` never times out.
        response: the handshake response.
        close_timeout: how long to wait for the peer's Close frame, then for
            the end of the TCP connection, before dropping it.
        extensions: the extensions agreed during the handshake.
        subprotocol: the subprotocol agreed during the handshake (read from
            ``response`` when not given).

    Attributes:
        subprotocol: the subprotocol the server accepted, or ``None``.
        response: the handshake response, or ``None``.
        receive_stream: the messages received, ``str`` or ``bytes``, in order.
            An anyio memory object stream bounded by ``queue_size``; it ends
            (:class:`anyio.EndOfStream`) when the connection closes, after the
            messages that arrived before.
        send_stream: an anyio memory object stream: each ``str`` or ``bytes``
            sent into it goes out as one message, in order. Closing it (every
            clone) starts the closing handshake with code 1000.
    """

    def __init__(
        self,
        stream: AsyncNetworkStream,
        *,
        max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
        keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
        response: httpx.Response | None = None,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
        extensions: Sequence[Extension] = (),
        subprotocol: str | None = None,
    ) -> None:
        super().__init__(
            stream,
            SessionOptions(
                max_message_size_bytes=max_message_size_bytes,
                queue_size=queue_size,
                keepalive_ping_interval_seconds=keepalive_ping_interval_seconds,
                keepalive_ping_timeout_seconds=keepalive_ping_timeout_seconds,
                close_timeout=close_timeout,
            ),
            response=response,
            extensions=extensions,
            subprotocol=subprotocol,
        )

    async def receive(self, timeout: float | None = None) -> Event:
        """Receive the next message as a wsproto event.

        Most of the time, :meth:`receive_text`, :meth:`receive_bytes`,
        :meth:`receive_json` or ``async for`` are simpler.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.

        Returns:
            A :class:`wsproto.events.TextMessage` or :class:`wsproto.events.BytesMessage`.

        Raises:
            TimeoutError: no message arrived in time.
            WebSocketDisconnect: the connection is closed (raised at once on
                every call after the close).
            WebSocketNetworkError: the network failed or the peer went silent.

        Cancelling is safe: a message is never lost.
        """
        message = await self._receive_message(timeout)
        return as_event(message)

    async def receive_text(self, timeout: float | None = None) -> str:
        """Receive a text message.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.

        Returns:
            The text.

        Raises:
            TimeoutError: no message arrived in time.
            WebSocketDisconnect: the connection is closed.
            WebSocketNetworkError: the network failed.
            WebSocketInvalidTypeReceived: the message was binary (it is
                consumed; the exception's ``event`` holds it).

        Cancelling is safe: a message is never lost.
        """
        message = await self._receive_message(timeout)
        return expect_text(message)

    async def receive_bytes(self, timeout: float | None = None) -> builtins.bytes:
        """Receive a binary message.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.

        Returns:
            The bytes.

        Raises:
            TimeoutError: no message arrived in time.
            WebSocketDisconnect: the connection is closed.
            WebSocketNetworkError: the network failed.
            WebSocketInvalidTypeReceived: the message was text (it is consumed;
                the exception's ``event`` holds it).

        Cancelling is safe: a message is never lost.
        """
        message = await self._receive_message(timeout)
        return expect_bytes(message)

    async def receive_json(self, timeout: float | None = None, mode: JSONMode = "text") -> Any:
        """Receive a JSON message, decoded with msgspec.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.
            mode: ``"text"`` to expect a text frame, ``"binary"`` a binary one.

        Returns:
            The decoded value (dicts, lists, str, int, float, bool, None).

        Raises:
            TimeoutError: no message arrived in time.
            WebSocketDisconnect: the connection is closed.
            WebSocketNetworkError: the network failed.
            WebSocketInvalidTypeReceived: the frame was not of the kind ``mode`` says.
            WebSocketDecodeError: the message is not valid JSON (it carries the
                raw payload).

        Cancelling is safe: a message is never lost.
        """
        if check_choice("mode", mode, JSON_MODES) == "text":
            data: Message = await self.receive_text(timeout)
        else:
            data = await self.receive_bytes(timeout)
        return decode_json(data)

    # ------------------------------------------------------------------- sending

    async def send(self, event: Event) -> None:
        """Send a wsproto event: a message (or a fragment of one), a ping, a pong, a Close.

        Most of the time, :meth:`send_text`, :meth:`send_bytes`,
        :meth:`send_json` and :meth:`ping` are simpler. Unlike them, this
        returns once the frame is written to the network.

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.

        Cancelling is safe, but a frame queued before the cancellation is still sent.
        """
        if isinstance(event, CloseConnection):
            await self.close(event.code, event.reason)
            return
        if isinstance(event, Ping):
            await self.ping(bytes(event.payload))
            await self.flush()
            return
        engine = self._engine or self._build()
        engine.check_can_send()
        try:
            frame = engine.protocol.send_event(event)
        except LocalProtocolError as exc:
            raise engine.end_error() from exc
        engine.outbox.queue(frame)
        if isinstance(event, WsprotoMessage) and event.message_finished:
            engine.messages_out += 1
        # Unlike send_text() and send_bytes(), this waits until the frame is
        # written, so that a failing network raises here.
        await self.flush()

    async def send_text(self, data: str, *, compress: bool = True) -> None:
        """Send a text message.

        Args:
            data: the text.
            compress: ``False`` sends it uncompressed even when permessage-deflate
                was agreed: for small or already-compressed payloads.

        Returns once the frame is queued for the network, after every frame
        sent before it; waits while more than 64 KiB are queued, and while a
        message is sent by :meth:`send_fragments`.

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.

        Cancelling is safe: the message is queued before any wait for room, so it
        is sent even if the call is cancelled while waiting for room; with
        ``send_rate``, a call cancelled while waiting for its turn sends nothing.
        """
        await self._send_message(data, compress)

    async def send_bytes(self, data: builtins.bytes, *, compress: bool = True) -> None:
        """Send a binary message.

        Args:
            data: the bytes.
            compress: ``False`` sends it uncompressed even when permessage-deflate
                was agreed: for small or already-compressed payloads.

        Returns once the frame is queued for the network, after every frame
        sent before it; waits while more than 64 KiB are queued, and while a
        message is sent by :meth:`send_fragments`.

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.

        Cancelling is safe: the message is queued before any wait for room, so it
        is sent even if the call is cancelled while waiting for room; with
        ``send_rate``, a call cancelled while waiting for its turn sends nothing.
        """
        await self._send_message(data, compress)

    async def _send_message(self, data: Message, compress: bool) -> None:
        """Send one whole message (``send_text`` / ``send_bytes``): its turn, the frame, room."""
        engine = self._engine or self._build()
        if engine.rate is not None:
            await engine.rate.take()
        engine.check_can_send()
        try:
            engine.send_message(data, compress)
        except SendingFragments:
            await send_after_fragments(engine, data, compress)
        await engine.wait_for_room()

    async def send_json(self, data: Any, mode: JSONMode = "text", *, compress: bool = True) -> None:
        """Send a value as JSON, encoded with msgspec.

        Args:
            data: anything msgspec encodes: dicts, lists, msgspec Structs,
                dataclasses, datetimes...
            mode: ``"text"`` sends a text frame, ``"binary"`` a binary one.
            compress: ``False`` sends it uncompressed even when permessage-deflate
                was agreed.

        Raises:
            TypeError: msgspec cannot encode ``data``.
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.

        Cancelling is safe: the message is queued before any wait, so it is sent even if
        the call is cancelled while waiting for room.
        """
        if check_choice("mode", mode, JSON_MODES) == "text":
            await self.send_text(encode_json_text(data), compress=compress)
        else:
            await self.send_bytes(encode_json(data), compress=compress)

    async def send_fragments(self, parts: AsyncIterable[Message] | Iterable[Message]) -> None:
        """Send one message in fragments, one per part, as the parts come.

        Each part is framed and queued as it comes from ``parts``, waiting
        while more than 64 KiB are queued (backpressure from the socket), so
        a message of any size is sent with bounded memory. Whole messages sent
        meanwhile (``send_text``, ``send_bytes``, ``send_stream``...) and
        other ``send_fragments`` calls wait for its end: messages never
        interleave. Pongs, pings and the Close frame may go between fragments.

        Args:
            parts: an iterable or async iterable of ``str`` (a text message)
                or ``bytes`` (a binary one), all of the same kind. Nothing is
                sent if it is empty.

        Raises:
            TypeError: a part is not ``str`` or ``bytes``, or not of the kind
                of the first.
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed, for example
                because :meth:`close` was called meanwhile: its Close frame
                goes out after the fragment being written, and the message
                stays unfinished.

        An error raised by ``parts`` once the message started, a wrong part,
        or cancelling then, leaves half a message on the wire: the connection
        is closed with code 1011 and the error propagates. Before the first
        fragment, nothing is sent.
        """
        await send_fragments(self._engine or self._build(), parts)

    async def flush(self) -> None:
        """Wait until every frame sent so far is written to the network.

        Raises:
            WebSocketNetworkError: the network failed before everything was written.

        Cancelling is safe: the frames stay queued.
        """
        engine = self._engine or self._build()
        await engine.outbox.drain()
        if engine.error is not None:
            raise engine.error

    async def ping(self, payload: builtins.bytes = b"") -> anyio.Event:
        """Send a Ping frame.

        Args:
            payload: the payload identifying this ping; a random one if empty.

        Returns:
            An :class:`anyio.Event` set when the matching Pong arrives, or the
            pong of a later ping (pongs come in order), or when the connection
            closes (so a waiter never hangs).

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.

        Cancelling is safe.
        """
        return await (self._engine or self._build()).ping(payload)

    # ------------------------------------------------------------------- closing

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the session: send a Close frame, wait for the peer's, then close TCP.

        Called when leaving the ``async with`` block. Calling it again, or after
        the peer closed, does nothing more than wait for the end.

        Args:
            code: the close code to send: 1000-1003, 1007-1014 or 3000-4999.
            reason: the close reason to send (at most 123 bytes of UTF-8 are sent).

        Raises:
            ValueError: ``code`` may not be sent on the wire (1005, 1006, 999...).

        Waits at most ``close_timeout`` seconds for the peer, then drops the
        connection. Cancelling is safe: the connection is then dropped.
        """
        check_close_code(code)
        await (self._engine or self._build()).close(code, reason)
