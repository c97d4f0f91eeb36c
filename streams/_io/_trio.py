"""On trio: httpcore's trio streams, read and written beneath httpcore's per-call wrappers.

httpcore's trio stream enters a cancel scope and an exception-mapping block on
every read and write. This backend wraps it so that the engine can find it
after the upgrade; then, on plain TCP, the engine reads the trio socket
itself (``recv``), writes with ``send``, and writes the first frame after a
read straight to the socket's descriptor when nothing else is queued (the
reply goes out without waking the flusher). On TLS straight over TCP, the
TLS stream's SSLObject is driven the same way (:mod:`._trio_tls`); TLS in an
HTTPS proxy's tunnel is read and written through httpcore's stream.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import trio

from .._engine._io import ByteIO
from ._probe import answer_probe, through_wrapper
from ._trio_tls import direct_tls

__all__ = ["TrioBackend", "TrioStream", "trio_io"]


class TrioStream(httpcore.AsyncNetworkStream):
    """httpcore's trio stream, found after the upgrade by ``get_extra_info("streams.trio")``."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        # True while a probe read is asked for (see streams._io._probe).
        self.probe = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if answer_probe(self):
            return b""
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> TrioStream:
        return TrioStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "streams.trio":
            return self
        return self._inner.get_extra_info(info)


def socket_reader(sock: trio.socket.SocketType) -> Callable[[int], Awaitable[bytes]]:
    """Return a read function of ``sock`` that waits for it to be readable before reading.

    trio's ``recv()`` tries the socket first and waits only if nothing is there: on a
    connection that answers as fast as it is asked, one failed ``recv`` per read. This one
    waits first, unless the last read filled the buffer (more is likely waiting). The
    descriptor is read with ``os.read``, on POSIX; elsewhere it is trio's ``recv()``.
    """
    if os.name != "posix":
        return sock.recv
    fileno = sock.fileno
    wait_readable = trio.lowlevel.wait_readable
    checkpoint = trio.lowlevel.checkpoint
    full = False

    async def recv(max_bytes: int) -> bytes:
        nonlocal full
        if full:
            full = False
            try:
                data = os.read(_open_fd(fileno()), max_bytes)
            except BlockingIOError:
                pass
            else:
                full = len(data) == max_bytes
                await checkpoint()  # a read is a checkpoint, as trio's are
                return data
        while True:
            await wait_readable(sock)
            try:
                data = os.read(_open_fd(fileno()), max_bytes)
            except BlockingIOError:
                continue  # woken, but another read took it
            full = len(data) == max_bytes
            return data

    return recv


def _open_fd(fd: int) -> int:
    if fd < 0:
        raise trio.ClosedResourceError("the socket was closed")
    return fd


def trio_io(stream: httpcore.AsyncNetworkStream) -> ByteIO | None:
    """Return the engine's I/O for a stream opened by :class:`TrioBackend`, else ``None``."""
    ours = stream.get_extra_info("streams.trio")
    if not isinstance(ours, TrioStream):
        return None
    inner = ours._inner
    sock = inner.get_extra_info("socket")
    if inner.get_extra_info("ssl_object") is not None:
        tls = direct_tls(inner, socket_reader)
        if tls is not None:
            return ByteIO(
                read=through_wrapper(stream, ours, tls.read),
                write=tls.write,
                close=stream.aclose,
                write_now=tls.write_now if os.name == "posix" else None,
                write_backlog=tls.backlog,
                name="trio-tls",
            )
    if inner.get_extra_info("ssl_object") is not None or not isinstance(
        sock, trio.socket.SocketType
    ):

        async def read_inner(max_bytes: int) -> bytes:
            return await inner.read(max_bytes)

        async def write_inner(data: bytes) -> None:
            await inner.write(data)

        return ByteIO(
            read=through_wrapper(stream, ours, read_inner),
            write=write_inner,
            close=stream.aclose,
            name="trio-tls-stream",
        )

    recv = socket_reader(sock)

    async def send_all(data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = await sock.send(view)
            view = view[sent:]

    fileno = sock.fileno

    def write_now(frame: bytes) -> int:
        # send_all returns once every byte is in the kernel, and the outbox
        # calls this only when nothing is queued or being written: it cannot
        # overtake a write. A closed socket's fileno() is -1.
        fd = fileno()
        if fd < 0:
            return 0
        try:
            return os.write(fd, frame)
        except (BlockingIOError, InterruptedError):
            return 0

    return ByteIO(
        read=through_wrapper(stream, ours, recv),
        write=send_all,
        close=stream.aclose,
        write_now=write_now if os.name == "posix" else None,
        name="trio",
    )


class TrioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's trio backend, its streams wrapped in :class:`TrioStream`."""

    def __init__(self) -> None:
        self._inner = httpcore.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> TrioStream:
        return TrioStream(
            await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> TrioStream:
        return TrioStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
