"""Blocking reads and writes of a network stream, with a shortcut for plain TCP sockets.

httpcore's sync stream sets the socket's timeout on every call, so each read
or write costs three system calls (mode, ``poll``, ``recv``/``send``), and
threads reading and writing one socket switch its mode under each other. For
the upgraded stream of a plain TCP connection made by httpcore, the session
uses the socket directly, left in blocking mode: ``recv`` alone when the
read may wait for ever, ``poll`` then ``recv`` when it has a deadline, and
``sendall`` to write. Any other stream (a custom or mocked transport's)
goes through its own ``read`` and ``write``, always with a finite timeout.

A TLS socket made by httpcore is used directly too, with one difference: an
OpenSSL connection must not read and write in two threads at once (the
record layer and post-handshake messages are shared state, and a clash reads
as a spurious end of stream). The wait for data happens outside a lock
(``pending()``, then ``poll``); the ``recv`` of data that is there, and every
``sendall``, hold the lock.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import httpcore

__all__ = ["FOREVER", "StreamIO", "stream_io"]

#: A wait "for ever" is a long finite one for streams that take a timeout.
FOREVER: Final = 86_400.0


class StreamIO(NamedTuple):
    #: ``read(max_bytes, timeout)``: the bytes (``b""`` at the end of the
    #: stream); raises :class:`TimeoutError` when nothing came in time.
    read: Callable[[int, float], bytes]
    #: ``write(data)``: returns once every byte is written.
    write: Callable[[bytes], None]


def stream_io(stream: Any) -> StreamIO:
    """Return how to read and write ``stream`` (see the module's docstring)."""
    inner = getattr(stream, "_stream", None)
    sock = getattr(inner, "_sock", None)
    leading = getattr(stream, "_leading_data", None)
    if (
        type(stream).__name__ == "HTTP11UpgradeStream"
        and type(inner).__name__ == "SyncStream"
        and isinstance(sock, socket.socket)
        and type(sock) in (socket.socket, ssl.SSLSocket)
        and isinstance(leading, bytes)
        and hasattr(select, "poll")
    ):
        stream._leading_data = b""
        if isinstance(sock, ssl.SSLSocket):
            return _tls_io(sock, leading)
        return _socket_io(sock, leading)

    def read(max_bytes: int, timeout: float) -> bytes:
        try:
            data: bytes = stream.read(max_bytes, timeout)
        except httpcore.ReadTimeout as exc:
            raise TimeoutError(str(exc)) from exc
        return data

    def write(data: bytes) -> None:
        stream.write(data, FOREVER)

    return StreamIO(read, write)


def _socket_io(sock: socket.socket, leading: bytes) -> StreamIO:
    sock.settimeout(None)
    recv = sock.recv
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    poll = poller.poll

    def read(max_bytes: int, timeout: float) -> bytes:
        nonlocal leading
        if leading:
            data, leading = leading[:max_bytes], leading[max_bytes:]
            return data
        if timeout < FOREVER and not poll(max(int(timeout * 1000 + 0.999), 0)):
            raise TimeoutError(f"no data within {timeout} s")
        return recv(max_bytes)

    return StreamIO(read, sock.sendall)


def _tls_io(sock: ssl.SSLSocket, leading: bytes) -> StreamIO:
    # Non-blocking for good: a recv under the lock never waits for a record
    # still on its way (or for application data after a session ticket).
    sock.setblocking(False)
    recv = sock.recv
    send = sock.send
    pending = sock.pending
    readable = select.poll()
    readable.register(sock, select.POLLIN | select.POLLPRI)
    writable = select.poll()
    writable.register(sock, select.POLLOUT)
    lock = threading.Lock()

    def read(max_bytes: int, timeout: float) -> bytes:
        nonlocal leading
        if leading:
            data, leading = leading[:max_bytes], leading[max_bytes:]
            return data
        deadline = time.monotonic() + timeout
        while True:
            if not pending():
                left = deadline - time.monotonic()
                if left <= 0 or not readable.poll(
                    -1 if timeout >= FOREVER else max(int(left * 1000 + 0.999), 0)
                ):
                    raise TimeoutError(f"no data within {timeout} s")
            with lock:
                try:
                    return recv(max_bytes)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue  # a partial record, or no application data yet

    def write(data: bytes) -> None:
        view = memoryview(data)
        with lock:
            while view:
                try:
                    view = view[send(view) :]
                except ssl.SSLWantWriteError:
                    writable.poll()
                except ssl.SSLWantReadError:
                    readable.poll()

    return StreamIO(read, write)
