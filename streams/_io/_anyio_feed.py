"""Reading a plain TCP connection on asyncio from the transport's callbacks.

anyio's asyncio socket stream reads through a task: each read resumes the
transport's reading, waits for ``data_received`` to wake the task, and pauses
reading again. For a WebSocket that answers messages one by one, that task
step is a good part of a round trip. :class:`TransportFeed` takes the
transport's protocol over once the handshake is done and gives each chunk to
the session's parser as it arrives, inside ``data_received``; the reader task
only takes the chunks the parser could not finish at once (a full receive
channel, the end of the connection), and reading is paused until it has.

Everything else stays anyio's: writes go through the anyio stream, whose flow
control sees the transport's ``pause_writing``/``resume_writing`` and
``connection_lost`` (forwarded to anyio's protocol), and closing the anyio
stream closes the transport.
"""

from __future__ import annotations

import asyncio
import asyncio.trsock
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from .._engine._io import ByteIO

__all__ = ["TransportFeed", "anyio_io", "take_over"]

#: What the session's callback returns for a chunk it could not finish: the
#: chunk itself or what is left of it, for the reader task. ``None`` means done.
Leftover = Any


class TransportFeed(asyncio.Protocol):
    """The transport's protocol: chunks go to ``on_data``, else to :meth:`read`.

    ``on_data(chunk)`` is called while the reader task waits in :meth:`read`
    with nothing queued; it returns ``None`` when it handled the chunk, or
    what the reader task must still handle, which :meth:`read` then returns.
    """

    def __init__(
        self, transport: asyncio.Transport, inner: asyncio.Protocol, leading: list[bytes]
    ) -> None:
        #: The transport, now read through this feed.
        self.transport = transport
        self._inner = inner
        self._items: deque[Leftover] = deque(leading)
        self._eof = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.on_data: Callable[[bytes], Leftover] | None = None

    async def read(self, max_bytes: int = 0) -> Leftover:
        """Return the next chunk (or leftover) for the reader task, ``b""`` at the end.

        Reading is resumed while this waits and paused once something is queued.
        Raises the connection's error, if it was lost with one.
        """
        items = self._items
        if not items and not self._eof:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            transport = self.transport
            if not transport.is_closing():
                transport.resume_reading()
            try:
                await waiter
            finally:
                self._waiter = None
        if items:
            return items.popleft()
        if self._error is not None:
            raise self._error
        return b""

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------- callbacks

    def data_received(self, data: bytes) -> None:
        if type(data) is not bytes:  # the proactor loop may give a bytearray
            data = bytes(data)
        item: Leftover = data
        on_data = self.on_data
        if on_data is not None and not self._items and self._waiter is not None:
            try:
                item = on_data(data)
            except Exception as exc:
                self._error = exc
                self._eof = True
                self._wake()
                return
            if item is None:
                return
        self._items.append(item)
        if not self.transport.is_closing():
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # Keep the transport open for writing: the closing handshake may
        # still need to send a frame.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self._error is None:
            self._error = exc
        self._eof = True
        self._wake()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def take_over(byte_stream: Any, leading: bytes) -> TransportFeed | None:
    """Install a :class:`TransportFeed` on an anyio asyncio socket stream's transport.

    Returns ``None`` (and changes nothing) when the stream is not one, or is
    already at its end: the stream is then read through anyio as usual.
    ``leading`` is what was read past the handshake response; it comes first,
    then whatever anyio had read but not handed out.
    """
    if type(byte_stream).__module__ != "anyio._backends._asyncio":
        return None
    transport = getattr(byte_stream, "_transport", None)
    inner = getattr(byte_stream, "_protocol", None)
    queue = getattr(inner, "read_queue", None)
    if (
        transport is None
        or not isinstance(inner, asyncio.Protocol)
        or not isinstance(queue, deque)
        or getattr(inner, "is_at_eof", True)
        or getattr(inner, "exception", None) is not None
        or transport.is_closing()
        or transport.get_protocol() is not inner
    ):
        return None
    chunks = [leading] if leading else []
    chunks.extend(bytes(chunk) for chunk in queue)
    queue.clear()
    read_event = getattr(inner, "read_event", None)
    if isinstance(read_event, asyncio.Event):
        read_event.clear()
    feed = TransportFeed(transport, inner, chunks)
    transport.pause_reading()
    transport.set_protocol(feed)
    return feed


def anyio_io(stream: Any) -> ByteIO | None:
    """Return how to read and write httpcore's upgraded stream over anyio, or ``None``.

    httpcore's network stream of an upgraded HTTP/1.1 connection wraps an
    anyio byte stream, and each of its reads and writes enters a cancel scope
    and an exception-mapping block. When the stream is that one, read and
    write the anyio stream underneath (after the bytes httpcore read past the
    response headers). On a plain TCP connection on asyncio, the transport is
    read through a :class:`TransportFeed`, and on POSIX ``write_now`` writes
    to the socket's descriptor.
    """
    inner = getattr(stream, "_stream", None)
    byte_stream = getattr(inner, "_stream", None)
    if not (
        type(stream).__name__ == "AsyncHTTP11UpgradeStream"
        and type(inner).__name__ == "AnyIOStream"
        and isinstance(byte_stream, anyio.abc.ByteStream)
        and isinstance(getattr(stream, "_leading_data", None), bytes)
    ):
        return None
    leading: bytes = stream._leading_data
    stream._leading_data = b""
    close = stream.aclose
    if not isinstance(byte_stream, anyio.abc.SocketStream):
        return ByteIO(_anyio_read(byte_stream, leading), byte_stream.send, close, name="anyio")
    write_fd = _fd_writer(byte_stream)
    feed = take_over(byte_stream, leading)
    if feed is None:
        return ByteIO(
            _anyio_read(byte_stream, leading), byte_stream.send, close, write_fd, name="anyio"
        )

    def set_on_data(on_data: Callable[[bytes], Leftover] | None) -> None:
        feed.on_data = on_data

    if write_fd is not None:
        return ByteIO(feed.read, byte_stream.send, close, write_fd, None, set_on_data, "feed")
    # uvloop: write to the transport when its buffer is empty; what the
    # kernel does not take stays there (write_backlog), ahead of the queue.
    transport = feed.transport

    def write_transport(frame: bytes) -> int:
        if transport.get_write_buffer_size() or transport.is_closing():
            return 0
        transport.write(frame)
        return len(frame)

    return ByteIO(
        feed.read,
        byte_stream.send,
        close,
        write_transport,
        transport.get_write_buffer_size,
        set_on_data,
        "feed",
    )


def _fd_writer(byte_stream: anyio.abc.SocketStream) -> Callable[[bytes], int] | None:
    """Return a function writing to the stream's socket descriptor, if there is a usable one."""
    raw = byte_stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    # uvloop's pseudo-socket keeps its descriptor number after the transport
    # closed it: no direct writes there.
    if os.name != "posix" or not isinstance(raw, (socket.socket, asyncio.trsock.TransportSocket)):
        return None
    fileno = raw.fileno

    def write_fd(frame: bytes) -> int:
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
    byte_stream: anyio.abc.ByteStream, leading: bytes
) -> Callable[[int], Awaitable[bytes]]:
    """Return a read function of an anyio byte stream that returns ``leading`` first."""
    receive = byte_stream.receive

    async def read(max_bytes: int) -> bytes:
        nonlocal leading
        if leading:
            data, leading = leading, b""
            return data
        try:
            return await receive(max_bytes)
        except anyio.EndOfStream:
            return b""

    return read
