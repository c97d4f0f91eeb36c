"""On asyncio: an httpcore network backend of the library's own, on asyncio transports.

httpcore lets a library bring its own network backend. This one opens plain
TCP, Unix socket and TLS connections with the event loop's transports (the
loop's own SSL transport for ``wss://``, uvloop's too) and reads them with a
buffered protocol. Once a connection is upgraded, the engine parses bytes in
the protocol's callback as they arrive, and writes a frame straight to the
transport when nothing else is queued: no task switch between the socket and
the parser, on ``ws://`` and ``wss://`` alike. An idle connection runs no
task at all: the engine's reader task is started only once the callback hands
it something (see :meth:`_Protocol.parse_alone`).

Read buffers are one per thread, shared by every connection: a callback
copies out what it was given before the next one runs, so an idle connection
holds no read buffer. While data comes in bulk (a read fills the shared
buffer: large messages, floods), a plain TCP connection reads through the
transport's own ``recv()`` instead, which makes each read's ``bytes`` directly:
one copy fewer per byte; it goes back to the shared buffer when reads get small.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import httpcore

from .._engine._io import ByteIO, Leftover, OnData, StartReader
from ._asyncio_tls import share_read_buffer
from ._probe import answer_probe, held_bytes, through_wrapper

__all__ = ["AsyncioBackend", "AsyncioStream", "asyncio_io"]

#: The size of the shared read buffer, and so of the largest read.
READ_BUFFER_SIZE = 262_144
#: Reads through the transport's recv() smaller than this go back to the shared buffer.
BULK_END = READ_BUFFER_SIZE // 4

_local = threading.local()


def _read_buffer() -> memoryview:
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(READ_BUFFER_SIZE))
    return view


class _Protocol(asyncio.BufferedProtocol):
    """Buffers what a transport reads for :meth:`AsyncioStream.read`, or hands it to ``on_data``.

    Reading is paused as soon as something waits to be read and nobody is
    waiting for it: the peer is slowed down through TCP, never buffered here.
    ``on_data`` parses while a reader waits, or while none was started yet
    (``start_reader`` is set): then what waits to be read starts one.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        # Read data and leftovers waiting for a reader, oldest first (rarely more than one).
        self.items: list[bytes | Leftover] = []
        self.eof = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.on_data: OnData | None = None
        # Set while the callback parses alone: called (once) when something waits to be read.
        self.start_reader: StartReader | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self.writing_paused = False
        self.lost = False
        self._bulk: _BulkReads | None = None
        # Over TLS, asyncio's SSL transport joins the records of a read in
        # either mode: reading in bulk saves nothing there.
        self.tls = False

    # ----------------------------------------------------------- callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self.transport = transport = cast(asyncio.Transport, transport)
        # A write returns once its bytes are in the kernel (as with anyio).
        transport.set_write_buffer_limits(high=0)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_read_buffer()[:nbytes]))
        if nbytes == READ_BUFFER_SIZE and self.on_data is not None and not self.tls:
            self.read_in_bulk(True)

    def read_in_bulk(self, bulk: bool) -> None:
        """Read through the transport's own ``recv()`` (bulk) or the shared buffer."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if bulk:
            if self._bulk is None:
                self._bulk = _BulkReads(self)
            transport.set_protocol(self._bulk)
        else:
            transport.set_protocol(self)

    def data_received(self, data: bytes) -> None:
        item: bytes | Leftover = data
        on_data = self.on_data
        if (
            on_data is not None
            and not self.items
            and (self.waiter is not None or self.start_reader is not None)
        ):
            try:
                leftover = on_data(data)
            except Exception as exc:
                self.error = exc
                self.eof = True
                self._wake()
                return
            if leftover is None:
                return
            item = leftover
        self.items.append(item)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        # Keep a TCP transport open for writing: a Close frame may still go
        # out. (TLS cannot half-close: there asyncio ignores the answer.)
        transport = self.transport
        return transport is None or transport.get_extra_info("ssl_object") is None

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.error is None:
            self.error = exc
        self.eof = True
        self.lost = True
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif self.start_reader is not None:
            start_reader, self.start_reader = self.start_reader, None
            start_reader()

    # ----------------------------------------------------------- for streams

    def parse_alone(self, on_data: OnData, start_reader: StartReader, held: bytes) -> None:
        """Parse in the callback with no reader; call ``start_reader`` once one is needed.

        ``held`` (what httpcore's wrapper held) and what was read since come
        first, parsed here as the callback would have.
        """
        self.on_data = on_data
        self.start_reader = start_reader
        queued = self.items
        self.items = []
        if held:
            queued.insert(0, held)
        for data in queued:
            assert isinstance(data, bytes), "nothing was parsed before"
            self.data_received(data)
        if self.items:
            return  # the reader was asked for; reading stays paused until it waits
        if self.eof:
            self._wake()
            return
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def new_waiter(self) -> asyncio.Future[None]:
        """Return the future the next callback sets, and resume reading; reset ``waiter`` after."""
        transport = self.transport
        assert transport is not None
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        if not transport.is_closing():
            transport.resume_reading()
        return waiter

    async def wait_readable(self) -> None:
        """Wait until something is queued or the connection ended; reading resumes meanwhile."""
        if self.items or self.eof:
            return
        try:
            await self.new_waiter()
        finally:
            self.waiter = None

    async def drain(self) -> None:
        """Wait until the transport's write buffer is empty (or the connection is lost)."""
        while self.writing_paused and not self.lost:
            waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._drain_waiter = None
        if self.lost:
            raise self.error or ConnectionResetError("the connection was lost")


_EXTRA = {"client_addr": "sockname", "server_addr": "peername"}


class _BulkReads(asyncio.Protocol):
    """The protocol a connection reads through while data comes in bulk (see the module)."""

    __slots__ = ("_owner",)

    def __init__(self, owner: _Protocol) -> None:
        self._owner = owner

    def data_received(self, data: bytes) -> None:
        owner = self._owner
        owner.data_received(data)
        if len(data) < BULK_END:
            owner.read_in_bulk(False)

    def eof_received(self) -> bool:
        return self._owner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._owner.pause_writing()

    def resume_writing(self) -> None:
        self._owner.resume_writing()


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection on an asyncio transport, as httpcore sees it.

    ``get_extra_info("streams.asyncio")`` returns the stream itself, through
    any wrapper of httpcore's: that is how the engine finds it after the upgrade.
    """

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        # True while a probe read is asked for (see asyncio_io).
        self.probe = False
        #: Over TLS: whether the SSL transport reads into the thread's shared
        #: buffer rather than 256 KiB of its own (see streams._io._asyncio_tls).
        self.shares_tls_buffer = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if answer_probe(self):
            return b""
        protocol = self._protocol
        try:
            async with asyncio.timeout(timeout):
                await protocol.wait_readable()
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(f"no data in {timeout} s") from exc
        items = protocol.items
        if items:
            data = items.pop(0)
            assert isinstance(data, bytes), "bytes parsed by the engine are not httpcore's"
            if len(data) > max_bytes:
                items.insert(0, data[max_bytes:])
                data = data[:max_bytes]
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error) or repr(protocol.error))
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        transport = self._transport
        if transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        transport.write(buffer)
        try:
            async with asyncio.timeout(timeout):
                await self._protocol.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(f"could not write in {timeout} s") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or repr(exc)) from exc

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"TLS handshake not done in {timeout} s") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc) or repr(exc)) from exc
        protocol.transport = transport = cast(asyncio.Transport, transport)
        protocol.tls = True
        stream = AsyncioStream(transport, protocol)
        stream.shares_tls_buffer = share_read_buffer(transport)
        return stream

    def get_extra_info(self, info: str) -> Any:
        if info == "streams.asyncio":
            return self
        transport = self._transport
        if info == "is_readable":
            return bool(self._protocol.items) or self._protocol.eof
        if info in ("ssl_object", "socket"):
            return transport.get_extra_info(info)
        if info in _EXTRA:
            return transport.get_extra_info(_EXTRA[info])
        return None

    # ------------------------------------------------------------ engine I/O

    async def _engine_read(self, max_bytes: int) -> bytes | Leftover:
        protocol = self._protocol
        if not protocol.items and not protocol.eof:
            # wait_readable(), inlined: one coroutine frame fewer per waiting reader.
            try:
                await protocol.new_waiter()
            finally:
                protocol.waiter = None
        if protocol.items:
            return protocol.items.pop(0)
        if protocol.error is not None:
            raise protocol.error
        return b""

    async def _engine_write(self, data: bytes) -> None:
        transport = self._transport
        if data:
            if transport.is_closing():
                raise ConnectionResetError("the connection is closed")
            transport.write(data)
        await self._protocol.drain()

    def _write_now(self, frame: bytes) -> int:
        transport = self._transport
        if transport.get_write_buffer_size() or transport.is_closing():
            return 0
        transport.write(frame)
        return len(frame)

    def _set_on_data(self, on_data: OnData | None) -> None:
        protocol = self._protocol
        protocol.on_data = on_data
        if on_data is None:
            protocol.start_reader = None


def asyncio_io(stream: httpcore.AsyncNetworkStream) -> ByteIO | None:
    """Return the engine's I/O for a stream opened by :class:`AsyncioBackend`, else ``None``.

    ``stream`` may wrap ours (httpcore's upgrade stream does, holding the
    bytes it read past the response). Those come first: ``parse_in_callback``
    takes them all before it parses anything else; without it, the first reads
    go through ``stream`` until one reaches ours, which answers that probe with
    nothing. From then on the engine reads ours directly.
    """
    ours = stream.get_extra_info("streams.asyncio")
    if not isinstance(ours, AsyncioStream):
        return None
    io = ByteIO(
        read=through_wrapper(stream, ours, ours._engine_read),
        write=ours._engine_write,
        close=stream.aclose,
        write_now=ours._write_now,
        write_backlog=ours._transport.get_write_buffer_size,
        set_on_data=ours._set_on_data,
        name="asyncio",
    )

    async def parse_in_callback(on_data: OnData, start_reader: StartReader) -> None:
        held = await held_bytes(stream, ours)
        io.read = ours._engine_read  # the wrapper holds nothing more
        io.parse_in_callback = None  # (once)
        ours._protocol.parse_alone(on_data, start_reader, held)

    io.parse_in_callback = parse_in_callback
    return io


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio transports (see the module's docstring)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncioStream:
        local = (local_address, 0) if local_address else None
        loop = asyncio.get_running_loop()
        return await _open(
            lambda factory: loop.create_connection(factory, host, port, local_addr=local),
            timeout,
            socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        return await _open(
            lambda factory: loop.create_unix_connection(factory, path), timeout, socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _open(
    connect: Callable[[Callable[[], _Protocol]], Awaitable[tuple[Any, Any]]],
    timeout: float | None,
    socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
) -> AsyncioStream:
    """Open a connection with the loop's ``connect``; map its failures to httpcore's errors."""
    protocol = _Protocol()
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await connect(lambda: protocol)
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"no connection in {timeout} s") from exc
    except OSError as exc:
        raise httpcore.ConnectError(str(exc) or repr(exc)) from exc
    _apply_options(transport, socket_options)
    return AsyncioStream(transport, protocol)


def _apply_options(
    transport: asyncio.Transport, options: Iterable[httpcore.SOCKET_OPTION] | None
) -> None:
    """Set socket options on a connected transport's socket (not those needed before connect)."""
    if not options:
        return
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is None:
        return
    for option in options:
        sock.setsockopt(*option)
