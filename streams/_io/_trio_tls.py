"""On trio over TLS: the TLS stream's own SSLObject encrypts the session's bytes, on the socket.

httpcore opens TLS on trio with ``trio.SSLStream``, which does the handshake. Afterwards every
read and write through that stream pays for its locks, conflict detectors and retry loop, a
read returns one TLS record, and a write must wait for the flusher task. This backend drives
the stream's SSLObject and memory BIOs itself, straight over the socket: a read returns every
record already received, and the first frame after a read is encrypted and written at once,
as on plain TCP.

The SSLObject and its BIOs are private attributes of trio's ``SSLStream`` (``_ssl_object``,
``_incoming``, ``_outgoing``), reached through httpcore's trio stream (``_stream``): this module
is the one place that reads them (the socket beneath is the public ``transport_stream``). When their
shapes are not the known ones, :func:`direct_tls` returns ``None`` and the stream is read and
written through its public interface. ``tests/test_http_transport.py`` fails loudly if this
path turns off (the backend's name is then ``"trio-tls-stream"``).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = ["DirectTLS", "direct_tls"]

#: The most plaintext one TLS record holds: one ``SSLObject.read`` returns at most this.
RECORD_SIZE = 16_384


def direct_tls(
    inner: Any, reader: Callable[[trio.socket.SocketType], Callable[[int], Awaitable[bytes]]]
) -> DirectTLS | None:
    """Return the direct reader and writer of httpcore's trio TLS stream ``inner``, else ``None``.

    ``reader`` makes the read function of the socket beneath.

    ``None`` when the stream is not TLS straight over a TCP socket (TLS through an HTTPS
    proxy's tunnel, for one), or when trio's or httpcore's private shapes changed.
    """
    tls = getattr(inner, "_stream", None)
    if not isinstance(tls, trio.SSLStream):
        return None
    transport = tls.transport_stream
    ssl_object = getattr(tls, "_ssl_object", None)
    incoming = getattr(tls, "_incoming", None)
    outgoing = getattr(tls, "_outgoing", None)
    if (
        not isinstance(transport, trio.SocketStream)
        or not isinstance(ssl_object, ssl.SSLObject)
        or not isinstance(incoming, ssl.MemoryBIO)
        or not isinstance(outgoing, ssl.MemoryBIO)
    ):
        return None
    sock = transport.socket
    return DirectTLS(ssl_object, incoming, outgoing, sock, reader(sock))


class DirectTLS:
    """Reads and writes one TLS connection with its SSLObject, on its trio socket.

    Ciphertext that the socket did not take at once waits in a buffer of its own, written in
    order before anything encrypted later (:meth:`backlog` says how much waits).
    """

    __slots__ = (
        "_in_flight",
        "_incoming",
        "_outgoing",
        "_pending",
        "_recv",
        "_send_lock",
        "_sock",
        "_ssl",
    )

    def __init__(
        self,
        ssl_object: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        sock: trio.socket.SocketType,
        recv: Callable[[int], Awaitable[bytes]],
    ) -> None:
        self._ssl = ssl_object
        self._incoming = incoming
        self._outgoing = outgoing
        self._sock = sock
        self._recv = recv
        # Ciphertext waiting for the socket, oldest first.
        self._pending = bytearray()
        # Bytes taken from _pending by the task sending them, not yet all sent.
        self._in_flight = 0
        self._send_lock = trio.Lock()

    async def read(self, max_bytes: int) -> bytes:
        """Return the next plaintext (every record already received, up to ``max_bytes``).

        Returns ``b""`` at the end of the connection: a close_notify, or the peer closing TCP
        (as httpcore's https-compatible stream does, a missing close_notify is not an error;
        the WebSocket's closing handshake says whether the end was clean).
        """
        ssl_object = self._ssl
        while True:
            try:
                data = ssl_object.read(RECORD_SIZE)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return b""
            else:
                if data and self._incoming.pending:
                    data = self._read_more(data, max_bytes)
                if self._outgoing.pending:
                    await self._send_out()  # what the read produced (a key update's answer)
                return data
            if self._outgoing.pending:
                await self._send_out()
            received = await self._recv(max_bytes)
            if not received:
                return b""
            self._incoming.write(received)

    def _read_more(self, data: bytes, max_bytes: int) -> bytes:
        """``data`` and the records after it that were already received, up to ``max_bytes``."""
        parts = [data]
        size = len(data)
        while size < max_bytes:
            try:
                more = self._ssl.read(min(RECORD_SIZE, max_bytes - size))
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break  # the end is seen by the next read
            if not more:
                break
            parts.append(more)
            size += len(more)
        return b"".join(parts)

    def write_now(self, frame: bytes) -> int:
        """Encrypt ``frame`` and write what the socket takes without waiting; return its length.

        What the socket does not take waits in :meth:`backlog` for :meth:`write`. Only called
        when nothing else is queued or being written by the engine.

        Raises:
            OSError: the frame could not be encrypted (nothing of it was taken).
        """
        try:
            self._ssl.write(frame)
        except ssl.SSLError as exc:
            raise OSError(f"TLS write failed: {exc}") from exc
        self._pending += self._outgoing.read()
        if not self._send_lock.locked():
            fd = self._sock.fileno()  # -1 once closed: the next write raises
            if fd >= 0:
                try:
                    sent = os.write(fd, self._pending)
                except OSError:
                    sent = 0  # full (the flusher waits), or broken (its write raises)
                del self._pending[:sent]
        return len(frame)

    def backlog(self) -> int:
        """How many bytes of ciphertext wait to be written."""
        return len(self._pending) + self._in_flight

    async def write(self, data: bytes) -> None:
        """Encrypt ``data`` and write it after what waits; return once the socket took it all."""
        if data:
            self._ssl.write(data)
            self._pending += self._outgoing.read()
        await self._send_out()

    async def _send_out(self) -> None:
        """Write the waiting ciphertext, in order; one task at a time."""
        async with self._send_lock:
            while True:
                if self._outgoing.pending:
                    self._pending += self._outgoing.read()
                if not self._pending:
                    return
                # Taken out of the buffer, which write_now() may grow meanwhile.
                data = bytes(self._pending)
                self._pending.clear()
                self._in_flight = len(data)
                view = memoryview(data)
                try:
                    while view:
                        view = view[await self._sock.send(view) :]
                        self._in_flight = len(view)
                except BaseException:
                    # Cancelled or failed: what was not sent stays first in line.
                    self._pending[0:0] = view
                    raise
                finally:
                    self._in_flight = 0
