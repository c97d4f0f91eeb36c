"""The server side of a WebSocket connection, with no I/O.

:class:`ServerProtocol` is what an in-process server (the ASGI test
transport, a demo server) needs: client frames in, whole messages and the
client's Close out, server frames back. It wraps a wsproto server
:class:`~wsproto.connection.Connection`::

    events = protocol.receive_data(data)   # str, bytes or Close, in order
    protocol.data_to_send()                # pongs, the answer to a Close
    protocol.send_text("hello")            # the frame to write

:func:`check_upgrade_request` judges an opening handshake request and
:func:`~streams.protocol._handshake.accept_key` answers its key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import wsproto
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

__all__ = ["Close", "Refusal", "ServerProtocol", "UnknownEvent", "check_upgrade_request"]


@dataclass(frozen=True)
class Close:
    """The client's Close frame, or the protocol error that ended the connection.

    Attributes:
        code: the close code (1002, 1007... when the client broke the protocol).
        reason: the close reason.
        answered: whether this side had sent its own Close frame first.
    """

    code: int
    reason: str
    answered: bool = False


@dataclass(frozen=True)
class Refusal:
    """The HTTP answer to an invalid upgrade request (from :func:`check_upgrade_request`)."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    reason: str


class UnknownEvent(Exception):
    """wsproto reported an event :class:`ServerProtocol` does not know.

    Attributes:
        event: the wsproto event.
    """

    def __init__(self, event: object) -> None:
        self.event = event
        super().__init__(f"unhandled WebSocket event: {event!r}")


def check_upgrade_request(headers: Sequence[tuple[bytes, bytes]], target: bytes) -> Refusal | None:
    """Judge an opening handshake request (RFC 6455, section 4.2.1).

    Args:
        headers: the request headers.
        target: the request target (path and query).

    Returns:
        ``None`` for a valid upgrade request, else the refusal to send
        (``400``, or ``426`` with the supported version for a wrong
        ``Sec-WebSocket-Version``).
    """
    handshake = wsproto.WSConnection(ConnectionType.SERVER)
    try:
        handshake.initiate_upgrade_connection(list(headers), target)
    except RemoteProtocolError as exc:
        hint = exc.event_hint
        if isinstance(hint, RejectConnection):
            extra = [(bytes(k), bytes(v)) for k, v in hint.headers]
            return Refusal(hint.status_code, extra, str(exc))
        return Refusal(400, [], str(exc))
    return None


class ServerProtocol:
    """The server side of a WebSocket connection, with no I/O.

    Pings are answered (the pong waits in :meth:`data_to_send`), pongs are
    dropped, fragmented messages are joined, a Close frame from the client is
    answered, and a protocol error fails the connection with its close code.
    """

    def __init__(self) -> None:
        self._conn = Connection(ConnectionType.SERVER)
        self._parts: list[str | bytes] = []
        self._out: list[bytes] = []

    @property
    def open(self) -> bool:
        """Whether messages may still be sent (neither side sent a Close frame)."""
        return self._conn.state is ConnectionState.OPEN

    @property
    def closed(self) -> bool:
        """Whether the connection is over: Close frames went both ways, or it failed."""
        return self._conn.state is ConnectionState.CLOSED

    def receive_data(self, data: bytes) -> list[str | bytes | Close]:
        """Feed bytes from the client.

        Returns:
            The complete messages (``str`` or ``bytes``), in order, then a
            :class:`Close` if the connection ended; nothing after it.

        Raises:
            UnknownEvent: wsproto reported an event this class does not know.
        """
        out: list[str | bytes | Close] = []
        if self.closed:
            return out
        conn = self._conn
        conn.receive_data(data)
        for event in conn.events():
            if isinstance(event, TextMessage | BytesMessage):
                part: str | bytes = event.data  # type: ignore[assignment]
                self._parts.append(bytes(part) if isinstance(part, bytearray) else part)
                if event.message_finished:
                    parts, self._parts = self._parts, []
                    if isinstance(event, TextMessage):
                        out.append("".join(parts))  # type: ignore[arg-type]
                    else:
                        out.append(b"".join(parts))  # type: ignore[arg-type]
            elif isinstance(event, Ping):
                if conn.state is ConnectionState.OPEN:
                    self._out.append(conn.send(event.response()))
            elif isinstance(event, Pong):
                pass  # unsolicited pongs are allowed, and this side never pings
            elif isinstance(event, CloseConnection):
                out.append(self._on_close(event))
                break
            else:
                raise UnknownEvent(event)
        return out

    def _on_close(self, event: CloseConnection) -> Close:
        conn = self._conn
        state = conn.state
        answered = state is ConnectionState.CLOSED
        if state is ConnectionState.REMOTE_CLOSING:
            # The client starts the closing handshake: answer it.
            self._out.append(conn.send(event.response()))
        elif state is ConnectionState.OPEN:
            # wsproto reports a protocol error as a CloseConnection event and
            # stays open: fail the connection with that code.
            self._out.append(conn.send(CloseConnection(event.code, event.reason)))
        return Close(int(event.code), event.reason or "", answered)

    def data_to_send(self) -> bytes:
        """Return and forget the bytes owed to the client (pongs, Close frames)."""
        data = b"".join(self._out)
        self._out = []
        return data

    def send_text(self, data: str) -> bytes:
        """Return the frame of a text message."""
        return self._conn.send(TextMessage(data=data))

    def send_bytes(self, data: bytes) -> bytes:
        """Return the frame of a binary message."""
        return self._conn.send(BytesMessage(data=data))

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        """Return this side's Close frame; ``b""`` if a Close frame was sent already."""
        if self._conn.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return b""
        return self._conn.send(CloseConnection(code, reason))
