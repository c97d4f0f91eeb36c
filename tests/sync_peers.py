"""In-process WebSocket peers for the sync API: a network stream over a socket pair, whose other
end is served by :class:`streams.protocol.ServerProtocol` in a thread, and an httpx transport
handler that answers the upgrade with it (for :class:`httpx.MockTransport` and custom transports).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import httpcore
import httpx

from streams.protocol import Close, ServerProtocol
from streams.protocol._handshake import accept_key

#: What a peer does with each message: return the frames to send back.
Behaviour = Callable[[ServerProtocol, str | bytes], bytes]


def echo(protocol: ServerProtocol, message: str | bytes) -> bytes:
    if isinstance(message, str):
        return protocol.send_text(message)
    return protocol.send_bytes(message)


class SocketStream(httpcore.NetworkStream):
    """A blocking httpcore network stream over a socket (what a custom transport returns)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self.sock.sendall(buffer)
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    def close(self) -> None:
        self.sock.close()

    def get_extra_info(self, info: str) -> Any:
        return self.sock if info == "socket" else None


def serve(sock: socket.socket, behaviour: Behaviour = echo) -> threading.Thread:
    """Serve one WebSocket connection on ``sock`` in a daemon thread (the handshake is done)."""

    def run() -> None:
        protocol = ServerProtocol()
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                out = b""
                closing = False
                for event in protocol.receive_data(data):
                    if isinstance(event, Close):
                        closing = True  # the server closes TCP first
                        break
                    out += behaviour(protocol, event)
                out += protocol.data_to_send()
                try:
                    sock.sendall(out)
                except OSError:
                    return  # the client has gone
                if closing:
                    return

    thread = threading.Thread(target=run, name="test peer", daemon=True)
    thread.start()
    return thread


def upgrade(request: httpx.Request, behaviour: Behaviour = echo) -> httpx.Response:
    """Answer an upgrade request with a 101 whose network stream reaches a peer in a thread."""
    ours, theirs = socket.socketpair()
    serve(theirs, behaviour)
    return httpx.Response(
        101,
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Accept": accept_key(request.headers["sec-websocket-key"]),
        },
        extensions={"network_stream": SocketStream(ours)},
    )


def stream_pair(behaviour: Behaviour = echo) -> SocketStream:
    """A network stream whose peer (in a thread) already accepted: for hand-built sessions."""
    ours, theirs = socket.socketpair()
    serve(theirs, behaviour)
    return SocketStream(ours)
