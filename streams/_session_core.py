"""The plumbing of a session: its engine, life cycle, channels and counters.

:class:`SessionCore` builds the :class:`~streams._engine.Engine` of one
connection (once the handshake said what was agreed), starts and stops it,
and gives the receive side to iteration and typed streams. The seed's API
(``receive_*``, ``send_*``, ``ping``, ``close``) is :class:`~streams.AsyncWebSocketSession`'s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._engine import Engine
from ._engine._fragments import FragmentReceiver, streamed_error
from ._engine._inbox import messages
from ._exceptions import HTTPXWSException
from ._io import open_io
from ._options import SessionOptions
from ._types import Message
from .protocol import ClientProtocol, StreamedMessage

if TYPE_CHECKING:
    import httpx
    from httpcore import AsyncNetworkStream

    from .protocol._wsproto import Extension

__all__ = ["SessionCore", "SessionStatistics"]


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
        overflow_dropped: messages dropped by the ``overflow`` policy
            (``"drop_oldest"`` or ``"drop_newest"``).
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
    overflow_dropped: int = 0


class SessionCore:
    """The engine of one session, its life cycle and its receive side (see the module docstring).

    Args:
        stream: the network stream of the upgraded connection.
        options: the session's options.
        response: the handshake response.
        extensions: the extensions agreed during the handshake.
        subprotocol: the subprotocol agreed (read from ``response`` when not given).
    """

    subprotocol: str | None
    response: httpx.Response | None

    def __init__(
        self,
        stream: AsyncNetworkStream,
        options: SessionOptions,
        *,
        response: httpx.Response | None = None,
        extensions: Sequence[Extension] = (),
        subprotocol: str | None = None,
    ) -> None:
        self.stream = stream
        self.response = response
        if subprotocol is None and response is not None:
            subprotocol = response.headers.get("sec-websocket-protocol")
        self.subprotocol = subprotocol
        self._options = options
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
            max_fragmented_size=options.fragmented_limit,
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
            overflow_dropped=inbox.overflow_dropped,
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
        inbox = engine.inbox
        try:
            batch = await inbox.receive_batch(limit)
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            engine.end_of_stream()
            return []
        if inbox.detour:
            for index, message in enumerate(batch):
                if inbox.detour and isinstance(message, StreamedMessage):
                    inbox.unread(batch[index:])
                    if index:
                        return batch[:index]
                    raise streamed_error(message)
        return batch

    def _read_times(self, count: int) -> list[float | None]:
        """When each of the last ``count`` messages taken was read (``time.time()``).

        The first call starts recording: until then, and for messages read
        before, the times are ``None``.
        """
        return (self._engine or self._build()).inbox.read_times(count)

    def _unread_batch(self, messages: list[Message]) -> None:
        """Put messages back in front: the next receive of any kind returns them first."""
        (self._engine or self._build()).inbox.unread(messages)

    def __aiter__(self) -> AsyncIterator[Message]:
        return messages((self._engine or self._build()).inbox, self.__anext__)

    async def __anext__(self) -> Message:
        """Return the next message; a normal close ends the iteration, an abnormal one raises."""
        engine = self._engine or self._build()
        inbox = engine.inbox
        message = inbox.take_now()
        if message is not None:
            return message
        try:
            message = await inbox.next_message()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            engine.end_of_stream()
            raise StopAsyncIteration from None
        if inbox.detour and isinstance(message, StreamedMessage):
            inbox.unread([message])
            raise streamed_error(message)
        return message

    async def _receive_message(self, timeout: float | None) -> Message:
        engine = self._engine or self._build()
        inbox = engine.inbox
        try:
            if timeout is None:
                message = await inbox.next_message()
            else:
                with anyio.fail_after(timeout):
                    message = await inbox.next_message()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise engine.end_error() from None
        if inbox.detour and isinstance(message, StreamedMessage):
            inbox.unread([message])
            raise streamed_error(message)
        return message

    def receive_fragments(self) -> FragmentReceiver:
        """Receive the next message part by part, as its frames arrive.

        A message larger than ``max_message_size_bytes`` (in fragments, each
        within it) and within ``max_fragmented_size_bytes`` is never held
        whole: its parts come as they are read, and the network is not read
        further while 1 MiB of them wait (backpressure). Any other message
        comes as one part. A text message's parts are ``str`` (never split
        inside a character), a binary message's are ``bytes``.

        Leaving the loop early drops the rest of the message (the iterator's
        ``aclose()`` does it at once). A streamed message that ``receive()`` or iteration met
        (raising :class:`~streams.WebSocketInvalidTypeReceived`) is still
        first in line, for this method.

        Returns:
            An async iterator of the message's parts.

        Raises:
            WebSocketDisconnect: the connection is closed (before the message,
                or before its end, even normally).
            WebSocketNetworkError: the network failed.

        Cancelling is safe: iterating again goes on with the message.
        """
        return FragmentReceiver(self._engine or self._build())
