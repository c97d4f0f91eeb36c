"""The client side of a WebSocket connection, with no I/O.

:class:`ClientProtocol` wraps a wsproto :class:`~wsproto.connection.Connection`
and adds what a client library needs on top of it: whole messages assembled
from fragments in linear time, a real limit on the size of a message (close
code 1009), and the close state.

The contract is that of a sans-I/O protocol::

    messages = protocol.receive_data(data)   # bytes read from the network
    protocol.data_to_send()                  # bytes to write: pongs, close frames
    protocol.pongs_received()                # payloads of the pongs that arrived

Speed: wsproto parses about 200,000 frames per second. Most frames a client
receives are well-formed, unmasked text or binary frames with no reserved bit,
and the frame walk in :meth:`ClientProtocol.receive_data` turns those into
``str`` or ``bytes`` itself, several times faster: whole messages in one frame,
and uncompressed messages in fragments, which it gathers in a list joined once
at the end (text is checked as UTF-8 as its bytes arrive, as wsproto does).
A message in fragments past ``max_message_size`` (within ``max_fragmented_size``)
is not assembled: it streams, as a :class:`~streams.protocol.StreamedMessage`
whose parts are added as its frames arrive; the frame walk only turns to that
work once a message is over the limit.
Every other frame (control frames, compressed messages, malformed or misplaced
frames) goes to wsproto, byte for byte, so behaviour is wsproto's: the walk only
takes frames wsproto would accept, and makes of them the messages wsproto would.
"""

from __future__ import annotations

import codecs
import enum
from collections.abc import Sequence
from typing import cast

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason

from ._deflate import LimitedPerMessageDeflate
from ._limits import (
    DEFAULT_MAX_FRAGMENTS,
    fragmented_too_big,
    message_too_big,
)
from ._sending import FrameSender
from ._streamed import StreamedMessage
from ._unmade import NOT_MADE, NotMade
from ._walk import _NO_LIMIT, _NO_MESSAGE, FrameWalker

__all__ = ["ClientProtocol", "CloseState"]


class _Same:
    """The default of ``max_fragmented_size``: the same as ``max_message_size``."""


_SAME = _Same()

NORMAL_CLOSURE = 1000

# Close codes a peer may not put on the wire (RFC 6455, section 7.4.1).
_LOCAL_ONLY_CODES = frozenset({1005, 1006, 1015})


class CloseState(enum.IntEnum):
    """Where a connection stands in the closing handshake."""

    #: Messages flow both ways.
    OPEN = 0
    #: This side sent a Close frame and waits for the peer's.
    CLOSING = 1
    #: The closing handshake is over, or the connection failed or was lost.
    CLOSED = 2


class ClientProtocol(FrameWalker, FrameSender):
    """The client side of a WebSocket connection, with no I/O.

    Args:
        max_message_size: the largest message accepted, in bytes (after
            decompression). A larger one fails the connection with close code
            1009. ``None`` means no limit.
        max_fragments: the frames a message may arrive in whatever their
            size; past these, one more per ``FRAGMENT_BYTES`` (64) bytes of
            payload. More fail the connection with close code 1009. ``None``
            means no limit.
        extensions: the wsproto extensions agreed during the handshake, for
            example a permessage-deflate extension.
        defer_failure: when the peer breaks the protocol, hold the Close frame
            until :meth:`release_failure` (or :meth:`send_close`) instead of
            putting it in :meth:`data_to_send` at once, so that the messages
            that arrived before the error can still be answered.

    Attributes:
        close_code: why the connection closed, once it has: the code of the
            peer's Close frame, the code this side failed the connection with
            (1002, 1007, 1009...), or 1006 if the connection was lost without a
            Close frame. ``None`` while open.
        close_reason: the reason that goes with ``close_code``.
        close_received: whether the peer's Close frame arrived.
        failed: whether this side failed the connection because the peer broke
            the protocol (the Close frame carrying the error is in
            :meth:`data_to_send`).
    """

    # Many sessions stay open at once: no per-instance dict.
    __slots__ = (
        "_bin_parts",
        "_close_override",
        "_compressed",
        "_conn",
        "_decoder",
        "_defer_failure",
        "_extensions",
        "_fast_send",
        "_fragmenting",
        "_fragments",
        "_frame_final",
        "_frame_left",
        "_head",
        "_inflated_limit",
        "_inflated_reason",
        "_key_index",
        "_key_pool",
        "_message",
        "_message_size",
        "_min_compress",
        "_out",
        "_parts",
        "_parts_size",
        "_pending_failure",
        "_pongs",
        "_sending_fragments",
        "_slow_left",
        "_streamed",
        "_text_parts",
        "close_code",
        "close_reason",
        "close_received",
        "failed",
        "last_streamed",
        "max_fragmented_size",
        "max_fragments",
        "max_message_size",
        "state",
        "streamed_count",
    )

    def __init__(
        self,
        *,
        max_message_size: int | None = 65536,
        max_fragmented_size: int | _Same | None = _SAME,
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        extensions: Sequence[Extension] = (),
        defer_failure: bool = False,
    ) -> None:
        # wsproto's connection is made on first use (see _wsproto()).
        self._conn: Connection | NotMade = NOT_MADE
        self._extensions = tuple(extensions)
        streams_past = max_fragmented_size is None or (
            not isinstance(max_fragmented_size, _Same)
            and max_message_size is not None
            and max_fragmented_size > max_message_size
        )
        if streams_past:
            # A compressed message past max_message_size streams too: the
            # extension inflates up to the larger limit.
            for ext in extensions:
                if isinstance(ext, LimitedPerMessageDeflate):
                    ext.max_message_size = cast(int | None, max_fragmented_size)
        # The limit an extension applies after inflating, for the close reason.
        self._inflated_limit = next(
            (
                ext.max_message_size
                for ext in extensions
                if isinstance(ext, LimitedPerMessageDeflate) and ext.max_message_size is not None
            ),
            max_message_size,
        )
        self._inflated_reason = fragmented_too_big if streams_past else message_too_big
        self._defer_failure = defer_failure
        self._close_override: int | None = None
        self._pending_failure: tuple[int, str] | None = None
        self._compressed = any(ext.enabled() for ext in extensions)
        self.max_message_size = _NO_LIMIT if max_message_size is None else max_message_size
        if isinstance(max_fragmented_size, _Same):
            self.max_fragmented_size = self.max_message_size
        else:
            self.max_fragmented_size = (
                _NO_LIMIT if max_fragmented_size is None else max_fragmented_size
            )
        self.max_fragments = _NO_LIMIT if max_fragments is None else max_fragments
        self.state = CloseState.OPEN
        self.close_code: int | None = None
        self.close_reason = ""
        self.close_received = False
        self.failed = False
        #: Messages that streamed so far (see ``max_fragmented_size``).
        self.streamed_count = 0
        self._out: list[bytes] = []
        self._pongs: list[bytes] = []
        # A frame header cut short at the end of the last read.
        self._head = b""
        # Bytes of the current frame still to go to wsproto.
        self._slow_left = 0
        # The message in progress: _NO_MESSAGE, _TEXT or _BINARY (assembled by
        # the frame walk), or _WSPROTO (a fragmented message wsproto assembles).
        self._message = _NO_MESSAGE
        # Size so far of the message the frame walk assembles. (The size of a
        # compressed message is limited by the extension, after inflating;
        # here it is counted on the wire, to judge its number of frames.)
        self._message_size = 0
        # Frames so far of the message in progress (assembled here or by wsproto).
        self._fragments = 0
        # The message the frame walk assembles: its parts (decoded as they
        # arrive for text), the payload bytes of its current frame still to
        # come in later reads, and whether that frame ends the message.
        self._bin_parts: list[bytes | memoryview] = []
        self._text_parts: list[str] = []
        self._decoder: codecs.IncrementalDecoder | None = None
        self._frame_left = 0
        self._frame_final = False
        # The message in progress once it went past max_message_size, if it streams.
        self._streamed: StreamedMessage | None = None
        #: The last message that streamed, for the I/O layer to hand its
        #: parts over (it sets this back to ``None`` once the message finished).
        self.last_streamed: StreamedMessage | None = None
        # Parts of the message wsproto is assembling, and their size.
        self._parts: list[str | bytes] = []
        self._parts_size = 0
        self._init_sending(extensions)

    def _wsproto(self) -> Connection:
        """wsproto's connection, made on first use (see :mod:`._unmade`)."""
        conn = self._conn
        if isinstance(conn, NotMade):
            conn = self._conn = Connection(ConnectionType.CLIENT, list(self._extensions))
        return conn

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes) -> list[str | bytes]:
        """Feed bytes read from the network.

        Args:
            data: the bytes, as read.

        Returns:
            The messages completed by these bytes, in order: ``str`` for text
            messages, ``bytes`` for binary ones. Messages that came before a
            protocol error are returned; nothing after it is.
        """
        out: list[str | bytes] = []
        if self.failed or self.close_received or not data:
            return out
        if self._slow_left:
            if len(data) <= self._slow_left:
                self._slow_left -= len(data)
                self._to_wsproto(data, out)
                return out
            chunk, data = data[: self._slow_left], data[self._slow_left :]
            self._slow_left = 0
            self._to_wsproto(chunk, out)
            if self.failed or self.close_received:
                return out
        elif self._frame_left:
            left = self._frame_left
            payload = self._payload if self._streamed is None else self._stream_payload
            if len(data) < left:
                self._frame_left = left - len(data)
                payload(data, False, out)
                return out
            self._frame_left = 0
            if self._streamed is None:
                # (A view: the message's parts are copied once, when joined.)
                done = self._payload(memoryview(data)[:left], self._frame_final, out)
            else:
                done = self._stream_payload(data[:left], self._frame_final, out)
            if not done:
                return out
            data = data[left:]
        if self._head:
            data = self._head + data
            self._head = b""
        self._walk(data, out)
        return out

    def _to_wsproto(self, data: bytes, out: list[str | bytes]) -> None:
        conn = self._wsproto()
        before = conn.state
        conn.receive_data(data)
        for event in conn.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._on_message(event, out)
            elif isinstance(event, Ping):
                if conn.state is ConnectionState.OPEN:
                    self._out.append(conn.send(event.response()))
            elif isinstance(event, Pong):
                self._pongs.append(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                if conn.state is before:
                    # wsproto reports a protocol error as a CloseConnection
                    # event without a state change.
                    reason = event.reason or ""
                    if (
                        event.code == CloseReason.MESSAGE_TOO_BIG
                        and self._inflated_limit is not None
                    ):
                        # wsproto has no size limit: an extension's limit
                        # stopped inflating there ("error in extension").
                        reason = self._inflated_reason(self._inflated_limit)
                    self._fail(event.code, reason)
                else:
                    self._on_close(event)
                return

    def _on_message(self, event: TextMessage | BytesMessage, out: list[str | bytes]) -> None:
        raw = event.data
        data: str | bytes = bytes(raw) if isinstance(raw, bytearray) else raw
        streamed = self._streamed
        if streamed is not None:
            # A message wsproto assembles (compressed) that went past max_message_size.
            if data and not streamed.discarded:
                streamed.parts.append(data)
                streamed.buffered += len(data)
            if event.message_finished:
                streamed.finished = True
                self._streamed = None
            return
        if event.message_finished and not self._parts and len(data) <= self.max_message_size:
            out.append(data)
            return
        if data:
            # (wsproto may report a frame's payload piece by piece, and some
            # pieces inflate to nothing.)
            self._parts.append(data)
            self._parts_size += len(data)
        if (
            self._parts_size > self.max_message_size
            and self.max_fragmented_size > self.max_message_size
        ):
            # Past max_message_size, within max_fragmented_size (the
            # extension's limit): the message streams.
            streamed = self.last_streamed = StreamedMessage(
                isinstance(event, TextMessage), self._parts
            )
            self._parts = []
            self._parts_size = 0
            self.streamed_count += 1
            if event.message_finished:
                streamed.finished = True
            else:
                self._streamed = streamed
            out.append(streamed)  # type: ignore[arg-type]  # a placeholder the consumer checks
        elif event.message_finished:
            parts = self._parts
            self._parts = []
            self._parts_size = 0
            if isinstance(event, TextMessage):
                out.append("".join(parts))  # type: ignore[arg-type]
            else:
                out.append(b"".join(parts))  # type: ignore[arg-type]

    def _on_close(self, event: CloseConnection) -> None:
        self.close_received = True
        self._parts = []
        self._parts_size = 0
        self._drop_message()
        if self._close_override is not None:
            event = CloseConnection(self._close_override, event.reason)
        self.close_code = int(event.code)
        self.close_reason = event.reason or ""
        if self._conn.state is ConnectionState.REMOTE_CLOSING:
            code = event.code
            if code in _LOCAL_ONLY_CODES:
                # Echo "no status" as an empty Close frame.
                self._out.append(self._wsproto().send(CloseConnection(CloseReason.NO_STATUS_RCVD)))
            else:
                self._out.append(self._wsproto().send(CloseConnection(code, event.reason)))
        self.state = CloseState.CLOSED

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: send a Close frame with ``code`` and stop reading."""
        self.failed = True
        self._parts = []
        self._parts_size = 0
        self._drop_message()
        if self._conn.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            if self._defer_failure and self._conn.state is ConnectionState.OPEN:
                self._pending_failure = (code, reason)
            else:
                self._out.append(self._wsproto().send(CloseConnection(code, reason)))
        if self.close_code is None:
            self.close_code = int(code)
            self.close_reason = reason
        self.state = CloseState.CLOSED

    @property
    def failure_pending(self) -> bool:
        """Whether a failure's Close frame waits for :meth:`release_failure`."""
        return self._pending_failure is not None

    def release_failure(self) -> None:
        """Queue the Close frame of a deferred failure (see ``defer_failure``)."""
        if self._pending_failure is not None:
            code, reason = self._pending_failure
            self._pending_failure = None
            if self._conn.state is ConnectionState.OPEN:
                self._out.append(self._wsproto().send(CloseConnection(code, reason)))

    def receive_eof(self) -> None:
        """Tell the protocol that the peer closed the TCP connection."""
        if self.close_code is None:
            self.close_code = CloseReason.ABNORMAL_CLOSURE
            self.close_reason = ""
        self.state = CloseState.CLOSED

    def closed_locally(self, code: int, reason: str) -> None:
        """Record that this side ended the connection with ``code``, whatever the peer sent.

        For a failure found outside the protocol (a keepalive timeout, a slow
        consumer, a quiet feed): after its Close frame (:meth:`send_close`) was
        sent, the connection is closed with that code and reason.
        """
        self.close_code = code
        self.close_reason = reason
        self.receive_eof()

    @property
    def final_close(self) -> tuple[int, str] | None:
        """The close code and reason once the connection is closed, else ``None``."""
        if self.state is CloseState.CLOSED and self.close_code is not None:
            return self.close_code, self.close_reason
        return None

    @property
    def ending(self) -> tuple[int, str]:
        """The close code and reason a session ends with: 1000 and no reason if none is known."""
        if self.close_code is None:
            return NORMAL_CLOSURE, ""
        return self.close_code, self.close_reason

    def pongs_received(self) -> list[bytes]:
        """Return and forget the payloads of the pongs received so far."""
        pongs = self._pongs
        self._pongs = []
        return pongs

    def data_to_send(self) -> bytes:
        """Return and forget the bytes this side owes the peer (pongs, Close frames)."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out = []
        return data

    # -------------------------------------------------------------------- sending

    def send_close(self, code: int = 1000, reason: str | None = None) -> bytes:
        """Return a Close frame and enter the closing state; ``b""`` if one was sent already."""
        if self._conn.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return b""
        if self._pending_failure is not None:
            # The connection already failed: its Close frame carries the error's code.
            self.release_failure()
            return self.data_to_send()
        data = bytes(self._wsproto().send(CloseConnection(code, reason or None)))
        if self.state is CloseState.OPEN:
            self.state = CloseState.CLOSING
        return data
