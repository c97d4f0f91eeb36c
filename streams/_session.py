"""The public async session: the engine assembled with the seed's API and the typed streams.

:class:`AsyncWebSocketSession` holds no I/O of its own: an :class:`~streams._engine.Engine`
runs the connection over the I/O backend chosen for its network stream
(``streams/_io/``), and every method here is a thin delegation to it.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage
from wsproto.events import Message as WsprotoMessage
from wsproto.utilities import LocalProtocolError

from ._codec import decode_json, encode_json, encode_json_text
from ._engine import NORMAL_CLOSE_CODES, Engine
from ._exceptions import HTTPXWSException, WebSocketInvalidTypeReceived
from ._io import open_io
from ._options import SessionOptions
from ._stream import TypedStreams
from ._types import (
    DEFAULT_CLOSE_TIMEOUT_SECONDS,
    DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    DEFAULT_QUEUE_SIZE,
    JSONMode,
    Message,
)
from .protocol import ClientProtocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx
    from httpcore import AsyncNetworkStream
    from wsproto.extensions import Extension

__all__ = ["NORMAL_CLOSE_CODES", "AsyncWebSocketSession", "SessionStatistics"]

# Close codes an endpoint may send (RFC 6455 section 7.4 and the IANA
# registry), besides 3000-4999.
_SENDABLE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


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


class SessionStatistics(msgspec.Struct, frozen=True):
    """Counters of a session, from :meth:`AsyncWebSocketSession.statistics`.

    Attributes:
        messages_received: messages read from the network.
        messages_sent: messages written to the network.
        bytes_received: bytes read from the network, frames included.
        bytes_sent: bytes written to the network, frames included.
        messages_queued: messages waiting in the receive channel.
        queue_size: the bound of the receive channel.
        reader_paused: whether the reader waits for the consumer (backpressure).
        messages_dropped: messages that arrived after :meth:`~AsyncWebSocketSession.close`
            was called while the receive channel was full (so that a consumer
            that stopped reading never stalls the closing handshake).
        ping_rtt: the round-trip time of the last answered ping, in seconds.
    """

    messages_received: int
    messages_sent: int
    bytes_received: int
    bytes_sent: int
    messages_queued: int
    queue_size: int
    reader_paused: bool
    messages_dropped: int
    ping_rtt: float | None


class AsyncWebSocketSession(TypedStreams):
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

    subprotocol: str | None
    response: httpx.Response | None

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
        self.stream = stream
        self.response = response
        if subprotocol is None and response is not None:
            subprotocol = response.headers.get("sec-websocket-protocol")
        self.subprotocol = subprotocol
        self._options = SessionOptions(
            max_message_size_bytes=max_message_size_bytes,
            queue_size=queue_size,
            keepalive_ping_interval_seconds=keepalive_ping_interval_seconds,
            keepalive_ping_timeout_seconds=keepalive_ping_timeout_seconds,
            close_timeout=close_timeout,
        )
        self._extensions: Sequence[Extension] = extensions
        # Built on first use, once _configure() has said what the handshake agreed.
        self._engine: Engine | None = None

    def _configure(
        self,
        *,
        options: SessionOptions,
        extensions: Sequence[Extension],
        subprotocol: str | None,
    ) -> None:
        """Set what the connect call and the handshake agreed, before the session is used."""
        assert self._engine is None, "configure a session before using it"
        # The keywords a session_class subclass passed to __init__ win.
        self._options = options.replace(
            max_message_size_bytes=self._options.max_message_size_bytes,
            queue_size=self._options.queue_size,
            keepalive_ping_interval_seconds=self._options.keepalive_ping_interval_seconds,
            keepalive_ping_timeout_seconds=self._options.keepalive_ping_timeout_seconds,
        )
        self._extensions = extensions
        self.subprotocol = subprotocol

    def _build(self) -> Engine:
        options = self._options
        protocol = ClientProtocol(
            max_message_size=options.max_message_size_bytes,
            extensions=self._extensions,
            defer_failure=True,
        )
        engine = self._engine = Engine(open_io(self.stream), protocol, options)
        return engine

    @property
    def _protocol(self) -> ClientProtocol:
        return (self._engine or self._build()).protocol

    @property
    def receive_stream(self) -> MemoryObjectReceiveStream[Message]:
        """The messages received, ``str`` or ``bytes``, in order (see the class docstring)."""
        return (self._engine or self._build()).inbox.receive_stream

    @property
    def send_stream(self) -> MemoryObjectSendStream[Message]:
        """The sending channel: each ``str`` or ``bytes`` sent into it goes out as one message.

        An anyio memory object stream bounded by ``queue_size``; the messages
        go out in order. Closing it (every clone) starts the closing handshake
        with code 1000.
        """
        engine = self._engine or self._build()
        engine.want_writer()
        return engine.send_stream

    # ------------------------------------------------------------- life cycle

    async def __aenter__(self) -> Self:
        await (self._engine or self._build()).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        assert self._engine is not None, "the session was not entered"
        await self._engine.stop(exc_type, exc_val, exc_tb)
        return None

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed, else ``None``.

        The code of the peer's Close frame, the code this side failed the
        connection with (1002, 1007, 1009...), or 1006 if it was lost.
        """
        return (self._engine or self._build()).close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason once the connection is closed, else ``None``."""
        return (self._engine or self._build()).close_reason

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (by either side, or lost).

        Cancelling is safe.
        """
        await (self._engine or self._build()).closed.wait()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed: no more messages will arrive."""
        return (self._engine or self._build()).closed.is_set()

    def statistics(self) -> SessionStatistics:
        """Return the session's counters: messages and bytes in and out, queue, last ping RTT."""
        engine = self._engine or self._build()
        inbox, reader = engine.inbox, engine.reader
        return SessionStatistics(
            messages_received=reader.messages_in,
            messages_sent=engine.messages_out,
            bytes_received=reader.bytes_in,
            bytes_sent=engine.outbox.bytes_out,
            messages_queued=inbox.waiting,
            queue_size=inbox.queue_size,
            reader_paused=inbox.paused,
            messages_dropped=inbox.dropped,
            ping_rtt=engine.ping_rtt,
        )

    # ------------------------------------------------------------------- reading

    def _end_error(self) -> HTTPXWSException:
        """The exception that reports the end of the session."""
        return (self._engine or self._build()).end_error()

    def _end_of_stream(self) -> None:
        """Called when the receive channel ended: return for a normal close, else raise."""
        (self._engine or self._build()).end_of_stream()

    async def _receive_batch(self, limit: int = 0) -> list[Message]:
        """Return every message available now (at most ``limit`` if given), waiting for one.

        Returns:
            At least one message; an empty list once the session ended normally.

        Raises:
            WebSocketDisconnect: the session ended with an abnormal close code.
            WebSocketNetworkError: the network failed.

        Cancelling is safe: no message is lost.
        """
        engine = self._engine or self._build()
        try:
            return await engine.inbox.receive_batch(limit)
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            engine.end_of_stream()
            return []

    def _unread_batch(self, messages: list[Message]) -> None:
        """Put messages back in front: the next receive of any kind returns them first."""
        (self._engine or self._build()).inbox.unread(messages)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        """Return the next message; a normal close ends the iteration, an abnormal one raises."""
        engine = self._engine or self._build()
        inbox = engine.inbox
        message = inbox.take_now()
        if message is not None:
            return message
        try:
            return await inbox.next_message()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            engine.end_of_stream()
            raise StopAsyncIteration from None

    async def _receive_message(self, timeout: float | None) -> Message:
        engine = self._engine or self._build()
        try:
            if timeout is None:
                return await engine.inbox.next_message()
            with anyio.fail_after(timeout):
                return await engine.inbox.next_message()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise engine.end_error() from None

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
        if mode == "text":
            data: Message = await self.receive_text(timeout)
        elif mode == "binary":
            data = await self.receive_bytes(timeout)
        else:
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")
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

    async def send_text(self, data: str) -> None:
        """Send a text message.

        Returns once the frame is queued for the network, after every frame
        sent before it; waits while more than 64 KiB are queued.

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.

        Cancelling is safe: the message is queued before any wait, so it is sent even if
        the call is cancelled while waiting for room.
        """
        engine = self._engine or self._build()
        engine.check_can_send()
        engine.send_message(data)
        await engine.wait_for_room()

    async def send_bytes(self, data: builtins.bytes) -> None:
        """Send a binary message.

        Returns once the frame is queued for the network, after every frame
        sent before it; waits while more than 64 KiB are queued.

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.

        Cancelling is safe: the message is queued before any wait, so it is sent even if
        the call is cancelled while waiting for room.
        """
        engine = self._engine or self._build()
        engine.check_can_send()
        engine.send_message(data)
        await engine.wait_for_room()

    async def send_json(self, data: Any, mode: JSONMode = "text") -> None:
        """Send a value as JSON, encoded with msgspec.

        Args:
            data: anything msgspec encodes: dicts, lists, msgspec Structs,
                dataclasses, datetimes...
            mode: ``"text"`` sends a text frame, ``"binary"`` a binary one.

        Raises:
            TypeError: msgspec cannot encode ``data``.
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.

        Cancelling is safe: the message is queued before any wait, so it is sent even if
        the call is cancelled while waiting for room.
        """
        if mode == "text":
            await self.send_text(encode_json_text(data))
        elif mode == "binary":
            await self.send_bytes(encode_json(data))
        else:
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")

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
        if not (code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999):
            raise ValueError(f"close code {code} may not be sent (RFC 6455, section 7.4)")
        await (self._engine or self._build()).close(code, reason)
