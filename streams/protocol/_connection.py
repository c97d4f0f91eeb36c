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
    FRAGMENT_BYTES,
    fragmented_too_big,
    message_too_big,
    too_many_fragments,
)
from ._runs import small_messages
from ._sending import FrameSender
from ._streamed import StreamedMessage

__all__ = ["ClientProtocol", "CloseState"]

_NO_LIMIT = 1 << 63


class _Same:
    """The default of ``max_fragmented_size``: the same as ``max_message_size``."""


_SAME = _Same()

# The message in progress (ClientProtocol._message): none, a text or binary
# message the frame walk assembles (the values are the opcodes), or a message
# wsproto assembles.
_NO_MESSAGE = 0
_TEXT = 1
_BINARY = 2
_WSPROTO = -1

_UTF8Decoder = codecs.getincrementaldecoder("utf-8")

NORMAL_CLOSURE = 1000

_BAD_GATEWAY = (1014).to_bytes(2, "big")
_INTERNAL_ERROR = (1011).to_bytes(2, "big")

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


class ClientProtocol(FrameSender):
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

    def __init__(
        self,
        *,
        max_message_size: int | None = 65536,
        max_fragmented_size: int | _Same | None = _SAME,
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        extensions: Sequence[Extension] = (),
        defer_failure: bool = False,
    ) -> None:
        self._conn = Connection(ConnectionType.CLIENT, list(extensions))
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
        self._bin_parts: list[bytes] = []
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
            if not payload(data[:left], self._frame_final, out):
                return out
            data = data[left:]
        if self._head:
            data = self._head + data
            self._head = b""
        self._walk(data, out)
        return out

    def _walk(self, data: bytes, out: list[str | bytes]) -> None:
        """Split ``data`` into frames, from a frame boundary."""
        append = out.append
        limit = self.max_message_size
        message = self._message
        n = len(data)
        pos = 0
        while pos < n:
            if not message and limit >= 125:
                pos = small_messages(data, pos, n, append)
                if pos >= n:
                    return
            if n - pos < 2:
                self._head = data[pos:]
                return
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            if length < 126:
                start = pos + 2
                minimal = True
            elif length == 126:
                if n - pos < 4:
                    self._short_header(data[pos:], out)
                    return
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
                minimal = length > 125
            else:
                if n - pos < 10:
                    self._short_header(data[pos:], out)
                    return
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
                minimal = 0xFFFF < length < _NO_LIMIT
            if b1 & 0x80:
                # Masked: wsproto refuses it, but the frame still has a key.
                start += 4
            end = start + length
            if (b0 == 0x81 or b0 == 0x82) and b1 < 0x80 and minimal and not message and end <= n:
                # A whole message in one unmasked frame, all in this read.
                if length > limit:
                    self._fail(CloseReason.MESSAGE_TOO_BIG, message_too_big(limit, length))
                    return
                if b0 == 0x81:
                    try:
                        append(data[start:end].decode())
                    except UnicodeDecodeError:
                        self._fail(CloseReason.INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8")
                        return
                else:
                    append(data[start:end])
                pos = end
                continue
            op = b0 & 0x7F  # the opcode and the reserved bits
            if (
                b1 < 0x80
                and minimal
                and ((op == 0 and message > 0) or ((op == 1 or op == 2) and not message))
            ):
                # An uncompressed message assembled here: its first frame (which
                # may also be its last) or a continuation frame.
                final = b0 > 0x7F
                if op:
                    message = self._message = op
                    if op == _TEXT:
                        self._decoder = _UTF8Decoder()
                    size = length
                    self._fragments = 1
                else:
                    size = self._message_size + length
                    fragments = self._fragments = self._fragments + 1
                    if fragments > self.max_fragments and self._too_many_fragments(size):
                        return
                self._message_size = size
                if size > limit:
                    # Past max_message_size: the message streams, within
                    # max_fragmented_size and with no frame over the limit.
                    if not self._stream_frame(data, start, end, final, length, out):
                        return
                    message = self._message
                    pos = end
                    continue
                if end > n:
                    # The frame goes on in the next reads.
                    self._frame_left = end - n
                    self._frame_final = final
                    self._payload(data[start:], False, out)
                    return
                if message == _BINARY:
                    self._bin_parts.append(data[start:end])
                    if final:
                        append(b"".join(self._bin_parts))
                        self._bin_parts = []
                        message = self._message = _NO_MESSAGE
                elif not self._payload(data[start:end], final, out):
                    return
                elif final:
                    message = _NO_MESSAGE
                pos = end
                continue
            if message > 0 and op & 0x0F < 3:
                # Any other data frame inside the message assembled here.
                self._hand_over()
            self._follow(b0, b1, minimal, length)
            if self.failed:
                return
            message = self._message
            if end > n:
                self._slow_left = end - n
                self._to_wsproto(data[pos:], out)
                return
            frame = data[pos:end]
            if b0 == 0x88 and b1 > 1 and b1 < 0x7E and frame[2:4] == _BAD_GATEWAY:
                frame = self._registered_close(frame)
            self._to_wsproto(frame, out)
            if self.failed or self.close_received:
                return
            pos = end

    def _registered_close(self, frame: bytes) -> bytes:
        """Let a Close frame with code 1014 through wsproto, which does not know that code.

        1014 (Bad Gateway) is registered with IANA for servers, like 1012 and
        1013, which wsproto accepts. wsproto sees 1011 in its place, and the
        close is reported (and echoed) with 1014.
        """
        self._close_override = 1014
        return frame[:2] + _INTERNAL_ERROR + frame[4:]

    def _payload(self, chunk: bytes, last: bool, out: list[str | bytes]) -> bool:
        """Add payload bytes to the message assembled here; return False if they failed it.

        Args:
            chunk: the bytes, part or all of a frame's payload.
            last: whether they end the message, which is then added to ``out``.
        """
        decoder = self._decoder
        if decoder is None:
            self._bin_parts.append(chunk)
            if last:
                out.append(b"".join(self._bin_parts))
                self._bin_parts = []
                self._message = _NO_MESSAGE
            return True
        try:
            # Fails as soon as the bytes that make the text invalid arrive; a
            # code point cut at the end waits for the rest, unless ``last``.
            self._text_parts.append(decoder.decode(chunk, last))
        except UnicodeDecodeError:
            self._fail(CloseReason.INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8")
            return False
        if last:
            out.append("".join(self._text_parts))
            self._text_parts = []
            self._decoder = None
            self._message = _NO_MESSAGE
        return True

    def _stream_frame(
        self, data: bytes, start: int, end: int, final: bool, length: int, out: list[str | bytes]
    ) -> bool:
        """Take a frame of a message past ``max_message_size``; return False to stop the walk.

        The message streams (its parts go to a :class:`StreamedMessage`) if
        the frame is within ``max_message_size`` and the message within
        ``max_fragmented_size``; else the connection fails (1009). False also
        when the frame goes on in the next reads.
        """
        size = self._message_size
        if length > self.max_message_size or size > self.max_fragmented_size:
            self._fail(CloseReason.MESSAGE_TOO_BIG, self._too_big(size, final, length))
            return False
        if self._streamed is None:
            text = self._message == _TEXT
            parts: list[str | bytes] = [
                part for part in (self._text_parts if text else self._bin_parts) if part
            ]
            self._text_parts = []
            self._bin_parts = []
            streamed = self._streamed = self.last_streamed = StreamedMessage(text, parts)
            self.streamed_count += 1
            out.append(streamed)  # type: ignore[arg-type]  # a placeholder the consumer checks
        if end > len(data):
            self._frame_left = end - len(data)
            self._frame_final = final
            self._stream_payload(data[start:], False, out)
            return False
        return self._stream_payload(data[start:end], final, out)

    def _too_big(self, size: int, final: bool, length: int) -> str:
        """The close reason for a frame or a message over the limits."""
        limit = self.max_message_size
        if length > limit:
            return message_too_big(limit, length if final and length == size else None)
        if self.max_fragmented_size <= limit:
            # The size is known only if this frame ends the message.
            return message_too_big(limit, size if final else None)
        return fragmented_too_big(self.max_fragmented_size, size if final else None)

    def _stream_payload(self, chunk: bytes, last: bool, out: list[str | bytes]) -> bool:
        """Add payload bytes to the message that streams; return False if they failed it."""
        streamed = self._streamed
        assert streamed is not None
        part: str | bytes = chunk
        decoder = self._decoder
        if decoder is not None:
            try:
                part = decoder.decode(chunk, last)
            except UnicodeDecodeError:
                self._fail(CloseReason.INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8")
                return False
        if part and not streamed.discarded:
            streamed.parts.append(part)
            streamed.buffered += len(chunk)
        if last:
            streamed.finished = True
            self._streamed = None
            self._decoder = None
            self._message = _NO_MESSAGE
        return True

    def _hand_over(self) -> None:
        """Hand the message assembled here over to wsproto, for a frame it must judge.

        A data frame the walk does not take arrived inside the message: a new
        message, or a malformed continuation. wsproto fails the connection
        (1002) for either, but only knowing that a message is in progress. An
        empty first fragment of the same type tells it so (and tells an
        extension that the message is not compressed); the event it makes of
        that fragment is dropped.
        """
        conn = self._conn
        conn.receive_data(bytes((self._message, 0)))
        for _ in conn.events():
            pass
        self._drop_message()
        self._message = _WSPROTO

    def _drop_message(self) -> None:
        """Forget the message assembled here, if any."""
        self._streamed = None
        self._bin_parts = []
        self._text_parts = []
        self._decoder = None
        self._frame_left = 0

    def _short_header(self, head: bytes, out: list[str | bytes]) -> None:
        """Keep a frame header cut short at the end of a read, for the next read."""
        if head[0] & 0x0F > 2:
            # A control frame with a 16- or 64-bit length, or a reserved
            # opcode: wsproto rejects the first two bytes already (1002).
            self._to_wsproto(head, out)
        else:
            self._head = head

    def _too_many_fragments(self, size: int) -> bool:
        """Fail the connection if the message in progress has too many frames for ``size``.

        Args:
            size: the payload of the message so far, in bytes (on the wire,
                for a compressed message).
        """
        fragments = self._fragments
        if fragments - self.max_fragments <= size // FRAGMENT_BYTES:
            return False
        self._fail(
            CloseReason.MESSAGE_TOO_BIG, too_many_fragments(fragments, size, self.max_fragments)
        )
        return True

    def _follow(self, b0: int, b1: int, minimal: bool, length: int) -> None:
        """Follow wsproto's message state through the header of a frame that goes to it.

        The only well-formed data frames the walk leaves to wsproto are those of
        compressed messages, whose size the extension limits after inflating.
        """
        opcode = b0 & 0x0F
        if opcode > 2 or not minimal or b1 & 0x80:
            # Control frames are checked by wsproto, and so are malformed headers
            # and masked frames.
            return
        rsv = b0 & 0x70
        if rsv and not (self._compressed and rsv == 0x40 and opcode != 0):
            # A reserved bit no extension agreed to: wsproto fails (1002).
            return
        if opcode != 0:
            if not self._message:
                # The first frame of a compressed message. (Inside another
                # message, wsproto fails: 1002.)
                self._message = _NO_MESSAGE if b0 & 0x80 else _WSPROTO
                self._fragments = 1
                self._message_size = length
        elif self._message:
            fragments = self._fragments = self._fragments + 1
            size = self._message_size = self._message_size + length
            if fragments > self.max_fragments and self._too_many_fragments(size):
                return
            if b0 & 0x80:
                # The last frame of a compressed message. (With no message to
                # continue, wsproto fails: 1002.)
                self._message = _NO_MESSAGE

    def _to_wsproto(self, data: bytes, out: list[str | bytes]) -> None:
        conn = self._conn
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
                self._out.append(self._conn.send(CloseConnection(CloseReason.NO_STATUS_RCVD)))
            else:
                self._out.append(self._conn.send(CloseConnection(code, event.reason)))
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
                self._out.append(self._conn.send(CloseConnection(code, reason)))
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
                self._out.append(self._conn.send(CloseConnection(code, reason)))

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
        data = bytes(self._conn.send(CloseConnection(code, reason or None)))
        if self.state is CloseState.OPEN:
            self.state = CloseState.CLOSING
        return data
