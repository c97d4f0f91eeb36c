"""The frame walk: bytes split into frames and messages without wsproto, within the limits.

:class:`FrameWalker` is the receiving fast path of
:class:`~streams.protocol.ClientProtocol` (see its module): well-formed,
unmasked data frames with no reserved bit become ``str`` or ``bytes`` here
(whole messages, or fragments gathered and joined once; a message past
``max_message_size`` streams as a :class:`~streams.protocol.StreamedMessage`);
every other frame goes to wsproto, byte for byte, through the protocol.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

from wsproto.connection import Connection
from wsproto.frame_protocol import CloseReason

from ._limits import FRAGMENT_BYTES, fragmented_too_big, message_too_big, too_many_fragments
from ._runs import small_messages
from ._streamed import StreamedMessage
from ._unmade import NotMade

__all__ = ["FrameWalker"]

_NO_LIMIT = 1 << 63

# The message in progress (ClientProtocol._message): none, a text or binary
# message the frame walk assembles (the values are the opcodes), or a message
# wsproto assembles.
_NO_MESSAGE = 0
_TEXT = 1
_BINARY = 2
_WSPROTO = -1

_UTF8Decoder = codecs.getincrementaldecoder("utf-8")

_BAD_GATEWAY = (1014).to_bytes(2, "big")
_INTERNAL_ERROR = (1011).to_bytes(2, "big")


class FrameWalker:
    """The frame walk of the client protocol (a base of :class:`ClientProtocol`)."""

    if not TYPE_CHECKING:
        # The attributes are ClientProtocol's slots (mypy would check them
        # against this empty tuple).
        __slots__ = ()

    _conn: Connection | NotMade
    max_message_size: int
    max_fragmented_size: int
    max_fragments: int
    failed: bool
    close_received: bool
    streamed_count: int
    last_streamed: StreamedMessage | None
    _head: bytes
    _slow_left: int
    _message: int
    _message_size: int
    _fragments: int
    _bin_parts: list[bytes | memoryview]
    _text_parts: list[str]
    _decoder: codecs.IncrementalDecoder | None
    _frame_left: int
    _frame_final: bool
    _streamed: StreamedMessage | None
    _close_override: int | None
    _compressed: bool

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (see :meth:`ClientProtocol._fail`)."""
        raise NotImplementedError

    def _to_wsproto(self, data: bytes, out: list[str | bytes]) -> None:
        """Hand bytes to wsproto (see :meth:`ClientProtocol._to_wsproto`)."""
        raise NotImplementedError

    def _wsproto(self) -> Connection:
        """wsproto's connection, made on first use (see :meth:`ClientProtocol._wsproto`)."""
        raise NotImplementedError

    def _walk(self, data: bytes, out: list[str | bytes]) -> None:
        """Split ``data`` into frames, from a frame boundary."""
        append = out.append
        limit = self.max_message_size
        message = self._message
        n = len(data)
        pos = 0
        while pos < n:
            if not message and limit >= 125 and n - pos > 1 and data[pos + 1] < 126:
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
                    # (A view: the parts are copied once, when they are joined.)
                    self._payload(memoryview(data)[start:], False, out)
                    return
                if message == _BINARY:
                    parts = self._bin_parts
                    # A message whole in this frame is its slice; a part, a view.
                    parts.append(
                        data[start:end] if final and not parts else memoryview(data)[start:end]
                    )
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

    def _payload(self, chunk: bytes | memoryview, last: bool, out: list[str | bytes]) -> bool:
        """Add payload bytes to the message assembled here; return False if they failed it.

        Args:
            chunk: the bytes, part or all of a frame's payload (a view of the read, for
                a message that goes on: its parts are copied once, when joined).
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
                bytes(part) if isinstance(part, memoryview) else part
                for part in (self._text_parts if text else self._bin_parts)
                if part
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
        conn = self._wsproto()
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
