"""The async WebSocket session: the protocol core driven over an anyio network stream.

Three background tasks run while a session is open:

- the reader reads the network stream, feeds the bytes to the protocol core
  and hands the messages to :attr:`AsyncWebSocketSession.receive_stream`. When
  ``queue_size`` messages wait there it stops reading, so a slow consumer slows
  the peer down through TCP;
- the writer sends what is put into :attr:`AsyncWebSocketSession.send_stream`
  (started the first time ``send_stream`` is used);
- the keepalive task pings the peer and fails the connection when it stays
  silent.

Sends queue whole frames, in call order, for one flusher task that writes
them: concurrent senders never interleave frames, and a burst of sends becomes
one write.

Two shortcuts keep a round trip short, each used only where it behaves like
the plain path (``tests/test_fast_paths.py``):

- on asyncio, a plain TCP connection is read through a
  :class:`~streams._feed.TransportFeed`: each chunk is parsed and its messages
  delivered inside the transport's callback, and the reader task only takes
  over what must wait (a full channel, a protocol failure, the end);
- the first frame after a read is written to the socket at once when nothing
  else is queued or being written, without waiting for the flusher's turn.

Messages go into and out of the receive channel's buffer in bulk (see
:func:`_channel_state`).
"""

from __future__ import annotations

import asyncio.trsock
import builtins
import collections
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Self, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage
from wsproto.events import Message as WsprotoMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from ._codec import decode_json, encode_json, encode_json_text
from ._exceptions import (
    HTTPXWSException,
    WebSocketDisconnect,
    WebSocketInvalidTypeReceived,
    WebSocketKeepaliveTimeout,
    WebSocketNetworkError,
)
from ._feed import TransportFeed, take_over
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
from .protocol import ClientProtocol, CloseState

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx
    from httpcore import AsyncNetworkStream
    from wsproto.extensions import Extension

__all__ = ["AsyncWebSocketSession", "SessionStatistics"]

logger = logging.getLogger("streams")

T = TypeVar("T")

#: Close codes that end iteration quietly: a normal close, "going away", or a
#: Close frame with no status code.
NORMAL_CLOSE_CODES = frozenset({1000, 1001, 1005})

_READ_SIZE = 262_144
_HIGH_WATER = 65_536
# How long a connection the peer broke stays open for the consumer to take the
# messages that came before the error (and answer them) before the Close frame.
_FAILURE_GRACE = 1.0
# Close codes an endpoint may send (RFC 6455 section 7.4 and the IANA
# registry), besides 3000-4999.
_SENDABLE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


class _StreamIO(NamedTuple):
    read: Callable[[int], Awaitable[Any]]
    write: Callable[[builtins.bytes], Awaitable[None]]
    #: Writes what it can of a frame at once, without waiting; returns how
    #: many bytes it took. Only safe when nothing else is waiting to be written.
    write_now: Callable[[builtins.bytes], int] | None = None
    #: How many bytes write_now took but left in a buffer of its own, if it can.
    write_backlog: Callable[[], int] | None = None
    feed: TransportFeed | None = None


def _channel_state(
    send: MemoryObjectSendStream[Message], receive: MemoryObjectReceiveStream[Message]
) -> Any:
    """Return the state shared by an anyio memory stream's two ends, or ``None``.

    Handing messages over one ``send_nowait``/``receive_nowait`` pair at a
    time costs as much as parsing them. When the state has the shape this
    module knows (anyio 4), the session moves messages in and out of its
    buffer in bulk, doing what those two methods do; waiting senders and
    receivers, and any other shape, go through anyio's methods.
    """
    state = getattr(send, "_state", None)
    if (
        state is not None
        and getattr(receive, "_state", None) is state
        and isinstance(getattr(state, "buffer", None), collections.deque)
        and isinstance(getattr(state, "waiting_receivers", None), dict)
        and isinstance(getattr(state, "waiting_senders", None), dict)
        and isinstance(getattr(state, "max_buffer_size", None), (int, float))
        and isinstance(getattr(state, "open_receive_channels", None), int)
        and getattr(send, "_closed", None) is False
        and getattr(receive, "_closed", None) is False
    ):
        return state
    return None


class _ReceiveStream(MemoryObjectReceiveStream[Message]):
    """The session's receive_stream: closing it also wakes the session's receive methods.

    They wait for the reader's signal, not in ``receive()`` (see
    ``_next_message``), so anyio's own wake-up on close does not reach them.
    """

    on_close: Callable[[], None] | None = None

    def close(self) -> None:
        super().close()
        if self.on_close is not None:
            self.on_close()


class _Leftover:
    """Messages parsed by ``_on_data`` that the reader task must deliver from ``index`` on."""

    __slots__ = ("index", "messages")

    def __init__(self, messages: list[Message], index: int) -> None:
        self.messages = messages
        self.index = index


def _byte_stream_io(stream: AsyncNetworkStream) -> _StreamIO:
    """Return how to read and write a network stream.

    httpcore's network stream of an upgraded HTTP/1.1 connection wraps an
    anyio byte stream, and each of its reads and writes enters a cancel scope
    and an exception-mapping block. When the stream is that one, read and
    write the anyio stream underneath (after the bytes httpcore read past the
    response headers); any other stream (the ASGI test transport, a custom
    transport's) is used through its own methods.

    On a plain (not TLS) TCP connection there is more:

    - on asyncio, the transport is read through a :class:`TransportFeed`,
      which parses each chunk as it arrives (see :meth:`AsyncWebSocketSession._on_data`);
    - on POSIX, ``write_now`` writes to the socket's descriptor (see
      :meth:`AsyncWebSocketSession._queue`).

    Read functions return ``b""`` at the end of the stream; errors are the
    underlying stream's.
    """
    inner = getattr(stream, "_stream", None)
    byte_stream = getattr(inner, "_stream", None)
    if not (
        type(stream).__name__ == "AsyncHTTP11UpgradeStream"
        and type(inner).__name__ == "AnyIOStream"
        and isinstance(byte_stream, anyio.abc.ByteStream)
        and isinstance(getattr(stream, "_leading_data", None), bytes)
    ):

        async def read_stream(max_bytes: int) -> builtins.bytes:
            return await stream.read(max_bytes)

        return _StreamIO(read_stream, stream.write)

    leading: builtins.bytes = stream._leading_data  # type: ignore[attr-defined]
    stream._leading_data = b""  # type: ignore[attr-defined]
    if not isinstance(byte_stream, anyio.abc.SocketStream):
        return _StreamIO(_anyio_read(byte_stream, leading), byte_stream.send)

    write_fd = _fd_writer(byte_stream)
    feed = take_over(byte_stream, leading)
    if feed is not None:
        if write_fd is not None:
            return _StreamIO(feed.read, byte_stream.send, write_fd, None, feed)
        # uvloop: write to the transport when its buffer is empty; what the
        # kernel does not take stays there (write_backlog), ahead of the queue.
        transport = feed.transport

        def write_transport(frame: builtins.bytes) -> int:
            if transport.get_write_buffer_size() or transport.is_closing():
                return 0
            transport.write(frame)
            return len(frame)

        return _StreamIO(
            feed.read, byte_stream.send, write_transport, transport.get_write_buffer_size, feed
        )
    return _StreamIO(_anyio_read(byte_stream, leading), byte_stream.send, write_fd)


def _fd_writer(byte_stream: anyio.abc.SocketStream) -> Callable[[builtins.bytes], int] | None:
    """Return a function writing to the stream's socket descriptor, if there is a usable one."""
    raw = byte_stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    # uvloop's pseudo-socket keeps its descriptor number after the transport
    # closed it: no direct writes there.
    if os.name != "posix" or not isinstance(raw, (socket.socket, asyncio.trsock.TransportSocket)):
        return None
    fileno = raw.fileno

    def write_fd(frame: builtins.bytes) -> int:
        # Every write of the stream returns once its bytes are in the kernel
        # (anyio's asyncio transports have a write buffer limit of 0 and their
        # writes wait for it to empty), so a write here cannot overtake one. A
        # closed socket's fileno() is -1: a descriptor number reused by another
        # socket is never written.
        fd = fileno()
        if fd < 0:
            return 0
        try:
            return os.write(fd, frame)
        except (BlockingIOError, InterruptedError):
            return 0

    return write_fd


def _anyio_read(
    byte_stream: anyio.abc.ByteStream, leading: builtins.bytes
) -> Callable[[int], Awaitable[builtins.bytes]]:
    """Return a read function of an anyio byte stream that returns ``leading`` first."""
    receive = byte_stream.receive

    async def read(max_bytes: int) -> builtins.bytes:
        nonlocal leading
        if leading:
            data, leading = leading, b""
            return data
        try:
            return await receive(max_bytes)
        except anyio.EndOfStream:
            return b""

    return read


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
        io = _byte_stream_io(stream)
        self._read = io.read
        self._write = io.write
        self._write_now = io.write_now
        self._write_backlog = io.write_backlog
        self._feed = io.feed
        if io.feed is not None:
            io.feed.on_data = self._on_data
        self.response = response
        if subprotocol is None and response is not None:
            subprotocol = response.headers.get("sec-websocket-protocol")
        self.subprotocol = subprotocol
        self._protocol = ClientProtocol(
            max_message_size=max_message_size_bytes, extensions=extensions, defer_failure=True
        )
        self._queue_size = queue_size
        self._keepalive_interval = keepalive_ping_interval_seconds
        self._keepalive_timeout = keepalive_ping_timeout_seconds
        self._close_timeout = close_timeout
        self._to_consumer, receive_stream = anyio.create_memory_object_stream[Message](queue_size)
        self._channel = _channel_state(self._to_consumer, receive_stream)
        if self._channel is not None:
            # The same channel end, which also wakes _next_message() when closed.
            own = _ReceiveStream(self._channel)
            own.on_close = self._wake_receivers
            receive_stream.close()
            receive_stream = own
        self.receive_stream: MemoryObjectReceiveStream[Message] = receive_stream
        self._send_stream, self._from_producer = anyio.create_memory_object_stream[Message](
            queue_size
        )
        # Outgoing bytes, in order, waiting for the flusher.
        self._out: list[builtins.bytes] = []
        self._out_size = 0
        self._flush_wanted = anyio.Event()
        self._flush_pending = False
        self._drained: anyio.Event | None = None
        self._writing = False
        # A frame was written by _queue() itself since the last read.
        self._wrote_directly = False
        # The reader waits until queued answers to pings are written.
        self._must_drain = False
        # False once every receive_stream clone was closed.
        self._delivering = True
        self._flusher_done = False
        self._write_failed = False
        # Pings waiting for their pong, oldest first: payload -> (waiters, sent at).
        self._pings: dict[builtins.bytes, tuple[list[anyio.Event], float]] = {}
        self._closed = anyio.Event()
        self._error: HTTPXWSException | None = None
        self._writer_wanted = False
        self._task_group: anyio.abc.TaskGroup | None = None
        # Statistics.
        self._messages_in = 0
        self._messages_out = 0
        self._bytes_in = 0
        self._bytes_out = 0
        self._ping_rtt: float | None = None
        # Liveness book-keeping for keepalive: reads that returned bytes, and
        # times the reader waited for the consumer.
        self._reads = 0
        self._pauses = 0
        self._paused = False
        # The reader's wait for room in the receive channel, cancelled by
        # close() so that a full channel never stalls the closing handshake.
        self._delivery_scope: anyio.CancelScope | None = None
        self._dropped = 0
        self._closing_locally = False
        # Messages handed back by a typed stream that read ahead of its need.
        self._unread: list[Message] = []
        # Set when messages arrive (or the channel ends), for _next_message();
        # made by the event loop's own Event class, without anyio's look-up.
        self._arrival: anyio.Event | None = None
        self._new_event: Callable[[], anyio.Event] = type(self._closed)

    @property
    def send_stream(self) -> MemoryObjectSendStream[Message]:
        """The sending channel: each ``str`` or ``bytes`` sent into it goes out as one message.

        An anyio memory object stream bounded by ``queue_size``; the messages
        go out in order. Closing it (every clone) starts the closing handshake
        with code 1000.
        """
        if not self._writer_wanted:
            self._writer_wanted = True
            if self._task_group is not None:
                self._task_group.start_soon(self._writer, name="streams writer")
        return self._send_stream

    def _configure(
        self,
        *,
        close_timeout: float | None,
        extensions: Sequence[Extension],
        subprotocol: str | None,
    ) -> None:
        """Set what the handshake agreed, before the session is entered."""
        self._close_timeout = close_timeout
        self.subprotocol = subprotocol
        if extensions:
            self._protocol = ClientProtocol(
                max_message_size=self._protocol.max_message_size,
                extensions=extensions,
                defer_failure=True,
            )

    # ------------------------------------------------------------- life cycle

    async def __aenter__(self) -> Self:
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._reader, name="streams reader")
        task_group.start_soon(self._flusher, name="streams flusher")
        if self._writer_wanted:
            task_group.start_soon(self._writer, name="streams writer")
        if self._keepalive_interval is not None:
            task_group.start_soon(self._keepalive, name="streams keepalive")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None, "the session was not entered"
        cancelled = isinstance(exc_val, anyio.get_cancelled_exc_class())
        try:
            with anyio.CancelScope(shield=True):
                if not cancelled:
                    await self.close()
                elif not self._closed.is_set():
                    # Cancelled: the background tasks are being cancelled too
                    # (perhaps before they ever ran). Queue the Close frame;
                    # it is written below, without waiting for the peer.
                    self._closing_locally = True
                    data = self._protocol.send_close(CloseReason.NORMAL_CLOSURE)
                    if data:
                        self._queue(data)
        finally:
            task_group.cancel_scope.cancel()
            try:
                # The block's own exception is not handed to the task group,
                # which would wrap it in an exception group: it propagates as
                # itself when this method returns.
                await task_group.__aexit__(None, None, None)
            finally:
                self._task_group = None
                self._flusher_done = True
                if not self._closed.is_set():
                    with anyio.CancelScope(shield=True):
                        await self._finish()
                # The session's own ends of the channels; clones handed to
                # other tasks stay open until their owners close them.
                for channel in (
                    self._to_consumer,
                    self.receive_stream,
                    self._send_stream,
                    self._from_producer,
                ):
                    channel.close()
        return None

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed, else ``None``.

        The code of the peer's Close frame, the code this side failed the
        connection with (1002, 1007, 1009...), or 1006 if it was lost.
        """
        if self._protocol.state is CloseState.CLOSED:
            return self._protocol.close_code
        return None

    @property
    def close_reason(self) -> str | None:
        """The close reason once the connection is closed, else ``None``."""
        if self._protocol.state is CloseState.CLOSED:
            return self._protocol.close_reason
        return None

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (by either side, or lost).

        Cancelling is safe.
        """
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed: no more messages will arrive."""
        return self._closed.is_set()

    def statistics(self) -> SessionStatistics:
        """Return the session's counters: messages and bytes in and out, queue, last ping RTT."""
        return SessionStatistics(
            messages_received=self._messages_in,
            messages_sent=self._messages_out,
            bytes_received=self._bytes_in,
            bytes_sent=self._bytes_out,
            messages_queued=self.receive_stream.statistics().current_buffer_used,
            queue_size=self._queue_size,
            reader_paused=self._paused,
            messages_dropped=self._dropped,
            ping_rtt=self._ping_rtt,
        )

    # ------------------------------------------------------------------- reading

    async def _reader(self) -> None:
        protocol = self._protocol
        read = self._read
        try:
            while True:
                try:
                    data = await read(_READ_SIZE)
                except Exception as exc:
                    if protocol.state is not CloseState.CLOSED:
                        self._set_error(WebSocketNetworkError(f"read failed: {exc!r}"), exc)
                        protocol.receive_eof()
                    break
                if isinstance(data, _Leftover):
                    # Parsed by _on_data, which could not finish it.
                    messages, index = data.messages, data.index
                elif data:
                    messages, index = self._parse(data), 0
                else:
                    protocol.receive_eof()
                    if not protocol.close_received and not protocol.failed:
                        self._set_error(WebSocketNetworkError("connection lost"))
                    break
                if not await self._settle(messages, index):
                    break
        finally:
            self._to_consumer.close()
            self._wake_receivers()
            with anyio.CancelScope(shield=True):
                await self._finish()

    def _parse(self, data: builtins.bytes) -> list[Message]:
        """Parse bytes from the network, queue the answers to its control frames."""
        protocol = self._protocol
        self._reads += 1
        self._bytes_in += len(data)
        self._wrote_directly = False
        messages = protocol.receive_data(data)
        if protocol._pongs:
            self._on_pongs(protocol.pongs_received())
        if protocol._out:
            self._queue(protocol.data_to_send())
            # A peer that sends pings but does not read its pongs is not read
            # further until they are written.
            self._must_drain = self._out_size > _HIGH_WATER
        if messages:
            self._messages_in += len(messages)
        return messages

    async def _settle(self, messages: list[Message], index: int) -> bool:
        """Do what follows a parse: deliver ``messages[index:]``, fail, or see the end.

        Returns:
            False once the connection is closed.
        """
        protocol = self._protocol
        if self._must_drain:
            self._must_drain = False
            await self._drain()
        if messages and self._delivering:
            self._delivering = await self._deliver(messages, index)
        if protocol.failure_pending:
            # The peer broke the protocol after sending these messages:
            # let the consumer take (and answer) them, then fail.
            if messages and self._delivering:
                await self._await_consumer()
            protocol.release_failure()
            self._queue(protocol.data_to_send())
        return protocol.state is not CloseState.CLOSED

    def _on_data(self, data: builtins.bytes) -> _Leftover | None:
        """Parse bytes as they arrive, while the reader task waits (see :class:`TransportFeed`).

        Returns:
            ``None`` when everything that follows the parse is done; else what
            the reader task must still do (a full channel, a failure, the end).
        """
        messages = self._parse(data)
        protocol = self._protocol
        index = 0
        if (
            not self._must_drain
            and not protocol.failure_pending
            and protocol.state is not CloseState.CLOSED
        ):
            if not messages or not self._delivering:
                return None
            try:
                index = self._push(messages, 0)
            except anyio.BrokenResourceError:
                self._delivering = self._abandoned()
                return None
            if index == len(messages):
                return None
        return _Leftover(messages, index)

    def _push(self, messages: list[Message], index: int) -> int:
        """Put ``messages[index:]`` in the receive channel, as many as fit without waiting.

        Returns:
            The index of the first message left out (``len(messages)`` if none).

        Raises:
            anyio.BrokenResourceError: every receive_stream clone is closed.
        """
        count = len(messages)
        state = self._channel
        if state is None or self._to_consumer._closed:
            send_nowait = self._to_consumer.send_nowait
            try:
                while index < count:
                    send_nowait(messages[index])
                    index += 1
            except anyio.WouldBlock:
                pass
            return index
        if not state.open_receive_channels:
            self._wake_receivers()
            raise anyio.BrokenResourceError
        if state.waiting_receivers:
            # A receiver waits, so the buffer is empty: anyio hands it the first.
            send_nowait = self._to_consumer.send_nowait
            try:
                while index < count and state.waiting_receivers:
                    send_nowait(messages[index])
                    index += 1
            except anyio.WouldBlock:
                return index
        buffer = state.buffer
        room = state.max_buffer_size - len(buffer)
        if room >= count - index:
            buffer.extend(messages[index:] if index else messages)
            index = count
        elif room > 0:
            end = index + int(room)
            buffer.extend(messages[index:end])
            index = end
        if self._arrival is not None:
            self._wake_receivers()
        return index

    async def _deliver(self, messages: list[Message], index: int) -> bool:
        """Hand ``messages[index:]`` to the consumer; return False if nobody will ever read them.

        Messages go into the channel without yielding to the event loop while
        there is room; only a full channel makes the reader wait.
        """
        count = len(messages)
        while True:
            try:
                index = self._push(messages, index)
            except anyio.BrokenResourceError:
                return self._abandoned()
            if index == count:
                return True
            if self._closing_locally:
                # This side is closing and the consumer is not reading:
                # waiting for it would stall the closing handshake. Drop
                # the rest (a close from the peer drops nothing).
                self._dropped += count - index
                return True
            self._paused = True
            self._pauses += 1
            try:
                with anyio.CancelScope() as scope:
                    self._delivery_scope = scope
                    await self._to_consumer.send(messages[index])
            except anyio.BrokenResourceError:
                return self._abandoned()
            finally:
                self._paused = False
                self._delivery_scope = None
            if scope.cancelled_caught:
                self._dropped += count - index
                return True
            index += 1

    def _abandoned(self) -> bool:
        # Every receive_stream clone was closed: keep the connection (control
        # frames are still answered) and drop what arrives.
        logger.debug("receive stream closed by the consumer; discarding messages")
        return False

    async def _await_consumer(self) -> None:
        """Wait (briefly) until the consumer has taken the messages waiting in the channel."""
        # A consumer woken by the last messages runs before this task's next step.
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        used = self.receive_stream.statistics
        delay = 0.0005
        with anyio.move_on_after(_FAILURE_GRACE):
            while used().current_buffer_used:
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.01)
            # A few turns for the consumer to answer what it took (trio runs
            # the tasks woken together in a random order).
            for _ in range(4):
                await anyio.lowlevel.checkpoint()

    async def _finish(self) -> None:
        """After the last frame: wait (bounded) for the peer to close TCP, then close the stream."""
        protocol = self._protocol
        if protocol.state is CloseState.OPEN and not self._write_failed:
            # The reader was stopped (cancelled) on an open connection: close it properly.
            self._closing_locally = True
            data = protocol.send_close(CloseReason.NORMAL_CLOSURE)
            if data:
                self._queue(data)
        # Frames still queued (a Close frame among them) go out first.
        await self._flush_last()
        if self._feed is not None:
            self._feed.on_data = None  # what still arrives is only read to the end
        if protocol.close_received and not protocol.failed:
            # RFC 6455 7.1.1: the server closes the TCP connection first.
            with anyio.move_on_after(self._close_timeout):
                try:
                    while await self._read(_READ_SIZE):
                        pass
                except Exception:
                    pass
        await self._close_stream()
        if protocol.state is not CloseState.CLOSED:
            # The reader stopped (cancelled) before the closing handshake ended.
            protocol.receive_eof()
        self._closed.set()
        logger.debug(
            "connection closed: code=%s reason=%r", protocol.close_code, protocol.close_reason
        )
        for waiters, _ in self._pings.values():
            for event in waiters:
                event.set()
        self._pings.clear()

    def _set_error(self, error: HTTPXWSException, cause: BaseException | None = None) -> None:
        if self._error is None:
            if cause is not None:
                error.__cause__ = cause
            self._error = error

    def _on_pongs(self, payloads: list[builtins.bytes]) -> None:
        """Wake the waiters of each pong's ping, and of every ping sent before it.

        A peer answers pings in order (and may answer only the latest of
        several), so a pong acknowledges the earlier pings too.
        """
        now = time.monotonic()
        pings = self._pings
        for payload in payloads:
            if payload not in pings:
                continue  # unsolicited, or for a ping already acknowledged
            while pings:
                sent, (waiters, sent_at) = next(iter(pings.items()))
                del pings[sent]
                for event in waiters:
                    event.set()
                if sent == payload:
                    self._ping_rtt = now - sent_at
                    break

    def _end_error(self) -> HTTPXWSException:
        """The exception that reports the end of the session."""
        if self._error is not None:
            return self._error
        protocol = self._protocol
        code = protocol.close_code
        if code is None:
            return WebSocketDisconnect(CloseReason.NORMAL_CLOSURE, "")
        return WebSocketDisconnect(code, protocol.close_reason)

    def _end_of_stream(self) -> None:
        """Called when the receive channel ended: return for a normal close, else raise."""
        error = self._end_error()
        if isinstance(error, WebSocketDisconnect) and error.code in NORMAL_CLOSE_CODES:
            return
        raise error

    async def _receive_batch(self, limit: int = 0) -> list[Message]:
        """Return every message available now (at most ``limit`` if given), waiting for one.

        Returns:
            At least one message; an empty list once the session ended normally.

        Raises:
            WebSocketDisconnect: the session ended with an abnormal close code.
            WebSocketNetworkError: the network failed.

        Cancelling is safe: no message is lost.
        """
        if self._unread:
            if 0 < limit < len(self._unread):
                batch = self._unread[:limit]
                del self._unread[:limit]
            else:
                batch = self._unread
                self._unread = []
            return batch
        try:
            first = await self._next_message()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._end_of_stream()
            return []
        batch = [first]
        if limit == 1:
            return batch
        left = limit - 1 if limit > 0 else -1
        stream = self.receive_stream
        state = self._channel
        if state is not None and not state.waiting_senders and not stream._closed:
            # What a receive_nowait() per message does, in one go.
            buffer = state.buffer
            if 0 < left < len(buffer):
                batch += [buffer.popleft() for _ in range(left)]
            else:
                batch += buffer
                buffer.clear()
            return batch
        receive_nowait = stream.receive_nowait
        append = batch.append
        try:
            while left:
                append(receive_nowait())
                left -= 1
        except (anyio.WouldBlock, anyio.EndOfStream):
            pass
        return batch

    async def _next_message(self) -> Message:
        """Return the next message, waiting for one.

        While the channel is empty this waits for the reader's signal, not in
        ``receive_stream.receive()``, whose checkpoint before waiting would
        cost a turn of the event loop on every round trip.

        Raises:
            anyio.EndOfStream: the channel ended.
            anyio.ClosedResourceError: ``receive_stream`` was closed.
        """
        stream = self.receive_stream
        state = self._channel
        while True:
            if self._unread:
                return self._unread.pop(0)
            if state is not None and state.buffer and not state.waiting_senders:
                if stream._closed:
                    raise anyio.ClosedResourceError
                message: Message = state.buffer.popleft()
                return message
            try:
                return stream.receive_nowait()
            except anyio.WouldBlock:
                pass
            if state is None or state.max_buffer_size < 1:
                return await stream.receive()
            arrival = self._arrival
            if arrival is None:
                arrival = self._arrival = self._new_event()
            await arrival.wait()

    def _wake_receivers(self) -> None:
        """Wake the session's receive methods waiting in :meth:`_next_message`."""
        arrival = self._arrival
        if arrival is not None:
            self._arrival = None
            arrival.set()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        """Return the next message; a normal close ends the iteration, an abnormal one raises."""
        state = self._channel
        if (
            state is not None
            and state.buffer
            and not self._unread
            and not state.waiting_senders
            and not self.receive_stream._closed
        ):
            # What receive_nowait() does (a closed receive_stream raises below).
            message: Message = state.buffer.popleft()
            return message
        try:
            return await self._next_message()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._end_of_stream()
            raise StopAsyncIteration from None

    def _unread_batch(self, messages: list[Message]) -> None:
        """Put messages back in front: the next receive of any kind returns them first."""
        if not messages:
            return
        state = self._channel
        if (
            state is not None
            and not self._unread
            and not state.waiting_receivers
            and not self.receive_stream._closed
        ):
            # In front of the channel itself, where receive_stream finds them too.
            state.buffer.extendleft(reversed(messages))
        else:
            self._unread[:0] = messages
        self._wake_receivers()

    async def _receive_message(self, timeout: float | None) -> Message:
        try:
            if timeout is None:
                return await self._next_message()
            with anyio.fail_after(timeout):
                return await self._next_message()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise self._end_error() from None

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
    #
    # Frames are queued in order and written by the flusher task, which joins
    # everything queued since its last write into one write. A send returns as
    # soon as its frame is queued, without a trip through the event loop, unless
    # more than _HIGH_WATER bytes wait: then it waits until they are written.

    def _queue(self, frame: builtins.bytes) -> None:
        """Queue bytes for the network, after everything queued before.

        On a plain TCP connection with nothing queued or being written, the
        first frame after each read (or after the flusher's last turn) is
        written to the socket at once, without waiting for the flusher's turn
        in the event loop: what a reply to a message wants. The next frames
        are queued and go out together, one write per burst.
        """
        write_now = self._write_now
        if (
            write_now is not None
            and not self._out
            and not self._writing
            and not self._wrote_directly
        ):
            try:
                written = write_now(frame)
            except (OSError, RuntimeError):
                # Let the stream's own write raise it, as the flusher's.
                self._write_now = None
                written = 0
            if written:
                self._bytes_out += written
                if written == len(frame):
                    self._wrote_directly = True
                    backlog = self._write_backlog
                    if backlog is None or not backlog():
                        return
                    # Part of it waits in the transport: an empty write makes
                    # the flusher wait until it is out, so that flush() waits
                    # for it too.
                    frame = b""
                else:
                    frame = frame[written:]
        self._out.append(frame)
        self._out_size += len(frame)
        if not self._flush_pending:
            self._flush_pending = True
            self._flush_wanted.set()

    async def _drain(self) -> None:
        """Wait until everything queued is written, or the connection failed."""
        while (self._out or self._writing) and not self._flusher_done:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()

    async def _flusher(self) -> None:
        write = self._write
        try:
            while True:
                await self._flush_wanted.wait()
                self._flush_wanted = anyio.Event()
                self._flush_pending = False
                self._wrote_directly = False
                while self._out:
                    chunks = self._out
                    size = self._out_size
                    self._out = []
                    self._out_size = 0
                    self._writing = True
                    try:
                        await write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                    finally:
                        self._writing = False
                    self._bytes_out += size
                if self._drained is not None:
                    self._drained.set()
                    self._drained = None
        except Exception as exc:
            self._out = []
            self._out_size = 0
            self._write_failed = True
            self._write_now = None
            if self._protocol.state is not CloseState.CLOSED:
                self._set_error(WebSocketNetworkError(f"write failed: {exc!r}"), exc)
                # Nothing more can be sent: drop the connection, which ends the reader.
                self._protocol.receive_eof()
                await self._close_stream()
        finally:
            # Cancelled, frames still queued stay queued: _finish() writes them,
            # after what a cancelled write may have left in the transport.
            self._flusher_done = True
            self._write_now = None
            if self._drained is not None:
                self._drained.set()
                self._drained = None

    async def _flush_last(self) -> None:
        """Write what is still queued, even if the flusher was cancelled.

        Bounded by ``close_timeout``.
        """
        with anyio.move_on_after(self._close_timeout):
            await self._drain()
            if self._out and not self._write_failed:
                data = b"".join(self._out)
                self._out = []
                self._out_size = 0
                try:
                    await self._write(data)
                except Exception:
                    return
                self._bytes_out += len(data)

    def _check_can_send(self) -> None:
        if self._error is not None or not self._protocol.can_send or self._flusher_done:
            raise self._end_error()

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
        self._check_can_send()
        try:
            frame = self._protocol.send_event(event)
        except LocalProtocolError as exc:
            raise self._end_error() from exc
        self._queue(frame)
        if isinstance(event, WsprotoMessage) and event.message_finished:
            self._messages_out += 1
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
        self._check_can_send()
        self._queue(self._protocol.send_text(data))
        self._messages_out += 1
        if self._out_size > _HIGH_WATER:
            await self._drain()

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
        self._check_can_send()
        self._queue(self._protocol.send_bytes(data))
        self._messages_out += 1
        if self._out_size > _HIGH_WATER:
            await self._drain()

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
        await self._drain()
        if self._error is not None:
            raise self._error

    async def _writer(self) -> None:
        """Send what arrives in send_stream; close the session when it ends."""
        source = self._from_producer
        protocol = self._protocol
        async with source:
            while True:
                try:
                    message = await source.receive()
                except anyio.EndOfStream:
                    break
                try:
                    while True:
                        self._check_can_send()
                        if isinstance(message, str):
                            self._queue(protocol.send_text(message))
                        else:
                            self._queue(protocol.send_bytes(message))
                        self._messages_out += 1
                        message = source.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    pass
                except HTTPXWSException:
                    # The session ended: nothing more can be sent.
                    return
                if self._out_size > _HIGH_WATER:
                    await self._drain()
        if not self._closed.is_set():
            await self.close()

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
        if not payload:
            payload = secrets.token_bytes(8)
        self._check_can_send()
        frame = self._protocol.send_ping(payload)
        event = anyio.Event()
        entry = self._pings.get(payload)
        if entry is None:
            self._pings[payload] = ([event], time.monotonic())
        else:
            entry[0].append(event)
        self._queue(frame)
        return event

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
        if self._task_group is None and not self._closed.is_set():
            # Never entered: nothing runs, close the stream directly.
            try:
                await self.stream.aclose()
            finally:
                self._closed.set()
            return
        if not self._closed.is_set() and not self._flusher_done:
            self._closing_locally = True
            data = self._protocol.send_close(code, reason)
            if self._delivery_scope is not None:
                self._delivery_scope.cancel()
            if data:
                logger.debug("sending close: code=%s reason=%r", code, reason)
                self._queue(data)
        try:
            with anyio.move_on_after(self._close_timeout):
                await self._closed.wait()
        finally:
            if not self._closed.is_set():
                await self._abort()

    async def _close_stream(self) -> None:
        """Close the network stream, even when cancelled; its errors no longer matter."""
        self._write_now = None
        with anyio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except Exception:
                pass

    async def _abort(self) -> None:
        """Drop the connection now."""
        if self._protocol.close_code is None:
            self._protocol.receive_eof()
        await self._close_stream()
        self._to_consumer.close()
        self._wake_receivers()
        self._closed.set()

    # ----------------------------------------------------------------- keepalive

    async def _keepalive(self) -> None:
        interval = self._keepalive_interval
        timeout = self._keepalive_timeout
        assert interval is not None
        while not self._closed.is_set():
            await anyio.sleep(interval)
            reads, pauses = self._reads, self._pauses
            try:
                pong = await self.ping()
            except HTTPXWSException:
                return
            if timeout is None:
                continue
            with anyio.move_on_after(timeout):
                await pong.wait()
            if pong.is_set() or self._closed.is_set():
                continue
            # No pong. Bytes that arrived, or a reader waiting for a slow
            # consumer (and so not reading the pong), show the peer is alive.
            # A process that was not scheduled for a while wakes up with this
            # deadline and the socket's bytes due together: let the reader
            # take them before judging.
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            if self._reads != reads or self._pauses != pauses or self._paused:
                continue
            logger.debug("keepalive ping timeout: the peer is not answering")
            self._set_error(WebSocketKeepaliveTimeout("keepalive ping timeout"))
            protocol = self._protocol
            data = protocol.send_close(CloseReason.INTERNAL_ERROR, "keepalive ping timeout")
            if data and not self._flusher_done:
                self._queue(data)
                with anyio.move_on_after(1):
                    await self._drain()
            protocol.close_code = CloseReason.INTERNAL_ERROR
            protocol.close_reason = "keepalive ping timeout"
            protocol.receive_eof()
            await self._abort()
            return
