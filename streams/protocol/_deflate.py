"""permessage-deflate (RFC 7692), with no I/O: the offer, the server's answer, a bounded inflater.

The client offers compression with :func:`offer_header`, checks the server's
``Sec-WebSocket-Extensions`` answer with :func:`accept_response`, and hands the
:class:`LimitedPerMessageDeflate` it returns to wsproto.

wsproto's own :class:`~wsproto.extensions.PerMessageDeflate` inflates a
message however large it grows: a few kilobytes on the wire can inflate to
gigabytes. :class:`LimitedPerMessageDeflate` inflates at most
``max_message_size + 1`` bytes per message and fails the connection with close
code 1009 as soon as a message grows past the limit, so memory stays bounded
by the limit, not by the compression ratio.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from .._checks import check_int

if TYPE_CHECKING:
    from zlib import _Decompress

__all__ = [
    "DeflateOptions",
    "LimitedPerMessageDeflate",
    "accept_response",
    "offer_header",
]

EXTENSION_NAME = "permessage-deflate"

# What every compressed message lacks on the wire (RFC 7692, section 7.2.2).
_TAIL = b"\x00\x00\xff\xff"

# zlib cannot compress with a raw 8-bit window ("Invalid initialization
# option"), so 8 is refused for our own compressor; inflating with a 9-bit
# window reads anything compressed with an 8-bit one.
_MIN_COMPRESS_BITS = 9


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """What a client offers for permessage-deflate (RFC 7692).

    The defaults offer what browsers offer: compression both ways with context
    takeover and 15-bit windows, and let the server ask for a smaller client window.

    Attributes:
        enabled: whether to offer permessage-deflate at all.
        client_max_window_bits: the client's compression window: ``True``
            (the default) offers ``client_max_window_bits`` with no value, so
            the server may choose a window from 9 to 15 bits; an ``int`` from 9
            to 15 caps it; ``None`` does not offer the parameter (the server may
            then not choose, and the client uses 15 bits).
        server_max_window_bits: the largest window (8 to 15 bits) the server
            may compress with, or ``None`` to let the server use 15 bits.
            Smaller windows save the server's memory, not the client's.
        client_no_context_takeover: compress every message on its own (less
            compression, no memory kept between messages).
        server_no_context_takeover: ask the server to compress every message
            on its own; a server that does not agree declines compression.
        compression_level: zlib's level for what the client sends, 0 (none)
            to 9 (smallest, slowest); -1, the default, is zlib's 6.
        memory_level: zlib's memory level for the client's compressor, 1 to 9
            (default 8). The compressor keeps ``2 ** (window_bits + 2) +
            2 ** (memory_level + 9)`` bytes per session: 256 KiB at the
            defaults, 2 KiB + 1 KiB with ``client_max_window_bits=9,
            memory_level=1``; the inflater keeps ``2 ** window_bits`` (32 KiB
            at 15 bits) plus about 7 KiB.
        min_size: messages shorter than this many bytes (UTF-8 bytes for text)
            are sent uncompressed: compressing a few bytes costs more than it
            saves. 0, the default, compresses every message.

    Raises:
        ValueError: a window size, level or size out of range.
    """

    enabled: bool = True
    client_max_window_bits: int | Literal[True] | None = True
    server_max_window_bits: int | None = None
    client_no_context_takeover: bool = False
    server_no_context_takeover: bool = False
    compression_level: int = -1
    memory_level: int = 8
    min_size: int = 0

    def __post_init__(self) -> None:
        bits = self.client_max_window_bits
        if (
            bits is not None
            and bits is not True
            and (bits is False or not _MIN_COMPRESS_BITS <= bits <= 15)
        ):
            raise ValueError(f"client_max_window_bits must be True, None or 9 to 15, not {bits!r}")
        bits = self.server_max_window_bits
        if bits is not None and (isinstance(bits, bool) or not 8 <= bits <= 15):
            raise ValueError(f"server_max_window_bits must be None or 8 to 15, not {bits!r}")
        check_int("compression_level", self.compression_level, -1, 9)
        check_int("memory_level", self.memory_level, 1, 9)
        check_int("min_size", self.min_size, 0)


def offer_header(options: DeflateOptions) -> str:
    """Return the ``Sec-WebSocket-Extensions`` value offering ``options``.

    For the default options: ``"permessage-deflate; client_max_window_bits"``.
    """
    params = [EXTENSION_NAME]
    if options.client_max_window_bits is True:
        params.append("client_max_window_bits")
    elif options.client_max_window_bits is not None:
        params.append(f"client_max_window_bits={options.client_max_window_bits}")
    if options.server_max_window_bits is not None:
        params.append(f"server_max_window_bits={options.server_max_window_bits}")
    if options.client_no_context_takeover:
        params.append("client_no_context_takeover")
    if options.server_no_context_takeover:
        params.append("server_no_context_takeover")
    return "; ".join(params)


# RFC 7230 token, and the pieces of an extension list (RFC 6455, section 9.1).
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_ITEM = re.compile(rf"\s*({_TOKEN})\s*(?:=\s*({_TOKEN}|{_QUOTED})\s*)?")
_WINDOW_BITS = re.compile(r"[1-9][0-9]*")

_FLAG_PARAMS = frozenset({"client_no_context_takeover", "server_no_context_takeover"})
_BITS_PARAMS = frozenset({"client_max_window_bits", "server_max_window_bits"})


def _parse_extensions(header: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Parse an extension list into ``[(name, [(param, value or None), ...]), ...]``.

    Raises:
        ValueError: the header is not a valid extension list.
    """
    extensions: list[tuple[str, list[tuple[str, str | None]]]] = []
    pos, end = 0, len(header)
    while True:
        match = _ITEM.match(header, pos)
        if match is None or match.group(2) is not None:
            raise ValueError(f"malformed Sec-WebSocket-Extensions header: {header!r}")
        name, pos = match.group(1), match.end()
        params: list[tuple[str, str | None]] = []
        while pos < end and header[pos] == ";":
            match = _ITEM.match(header, pos + 1)
            if match is None:
                raise ValueError(f"malformed Sec-WebSocket-Extensions header: {header!r}")
            value = match.group(2)
            if value is not None and value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params.append((match.group(1), value))
            pos = match.end()
        extensions.append((name, params))
        if pos == end:
            return extensions
        if header[pos] != ",":
            raise ValueError(f"malformed Sec-WebSocket-Extensions header: {header!r}")
        pos += 1


def _window_bits(name: str, value: str | None) -> int:
    if value is None or _WINDOW_BITS.fullmatch(value) is None or not 8 <= int(value) <= 15:
        raise ValueError(f"invalid {name} in the server's permessage-deflate: {value!r}")
    return int(value)


def accept_response(
    header: str, options: DeflateOptions, max_message_size: int | None
) -> LimitedPerMessageDeflate:
    """Check the server's ``Sec-WebSocket-Extensions`` answer to :func:`offer_header`.

    The answer must hold exactly one permessage-deflate whose parameters are
    a valid answer to ``options`` (RFC 7692, section 7): known parameters,
    each at most once, window sizes from 8 to 15, no ``server_max_window_bits``
    above the one offered, no ``client_max_window_bits`` unless offered, and
    ``server_no_context_takeover`` and ``server_max_window_bits`` when offered.

    Args:
        header: every ``Sec-WebSocket-Extensions`` value of the response,
            joined with ``", "``.
        options: what was offered.
        max_message_size: the largest message accepted after inflating, in
            bytes; ``None`` for no limit.

    Returns:
        The agreed extension, enabled, to hand to wsproto.

    Raises:
        ValueError: the answer is invalid (the connection must then be failed);
            the message says why.
    """
    extensions = _parse_extensions(header)
    names = [name.lower() for name, _ in extensions]
    others = sorted({name for name in names if name != EXTENSION_NAME})
    if others:
        raise ValueError(f"the server accepted extensions that were not offered: {others}")
    if len(extensions) > 1:
        raise ValueError("the server accepted permessage-deflate more than once")

    values: dict[str, str | None] = {}
    for param, value in extensions[0][1]:
        param = param.lower()
        if param in values:
            raise ValueError(f"duplicate {param} in the server's permessage-deflate")
        if param in _FLAG_PARAMS:
            if value is not None:
                raise ValueError(f"{param} takes no value, got {value!r}")
        elif param not in _BITS_PARAMS:
            raise ValueError(f"unknown parameter {param!r} in the server's permessage-deflate")
        values[param] = value

    server_no_context_takeover = "server_no_context_takeover" in values
    if options.server_no_context_takeover and not server_no_context_takeover:
        raise ValueError("server_no_context_takeover was requested but not accepted")
    client_no_context_takeover = (
        "client_no_context_takeover" in values or options.client_no_context_takeover
    )

    server_bits: int | None = None
    if "server_max_window_bits" in values:
        server_bits = _window_bits("server_max_window_bits", values["server_max_window_bits"])
        if options.server_max_window_bits is not None and server_bits > (
            options.server_max_window_bits
        ):
            raise ValueError(
                f"server_max_window_bits={server_bits} is above the"
                f" {options.server_max_window_bits} offered"
            )
    elif options.server_max_window_bits is not None:
        raise ValueError("server_max_window_bits was requested but not accepted")

    client_bits: int | None = None
    offered = options.client_max_window_bits
    if "client_max_window_bits" in values:
        if offered is None:
            raise ValueError("client_max_window_bits in the answer, but it was not offered")
        client_bits = _window_bits("client_max_window_bits", values["client_max_window_bits"])
        if offered is not True and client_bits > offered:
            raise ValueError(f"client_max_window_bits={client_bits} is above the {offered} offered")
        if client_bits < _MIN_COMPRESS_BITS:
            raise ValueError("client_max_window_bits=8 is not supported (zlib needs 9 or more)")
    elif offered is not None and offered is not True:
        client_bits = offered

    return LimitedPerMessageDeflate(
        max_message_size,
        client_no_context_takeover=client_no_context_takeover,
        client_max_window_bits=client_bits,
        server_no_context_takeover=server_no_context_takeover,
        server_max_window_bits=server_bits,
        compression_level=options.compression_level,
        memory_level=options.memory_level,
        min_size=options.min_size,
    )


class LimitedPerMessageDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, with a limit on the size of an inflated message.

    An instance is an agreed extension: it is enabled from the start, ready
    for ``wsproto.Connection(..., extensions=[ext])``. Compressing is
    wsproto's. Inflating is bounded: each piece of a message inflates to at
    most what the limit still allows plus one byte, counted across all the
    frames of the message (and the ``00 00 ff ff`` tail appended at its end);
    one byte more than ``max_message_size`` fails the connection with close
    code 1009 (``MESSAGE_TOO_BIG``) before anything more is inflated. Corrupt
    compressed data fails it with 1007, RSV1 on a control or continuation
    frame with 1002.

    Control frames arriving between the fragments of a compressed message
    leave the message's state alone (wsproto's class forgets there that the
    message is compressed).

    Args:
        max_message_size: the largest inflated message accepted, in bytes;
            ``None`` for no limit.
        client_no_context_takeover: the client compresses each message on its own.
        client_max_window_bits: the client's compression window (9 to 15 bits).
        server_no_context_takeover: the server compresses each message on its own.
        server_max_window_bits: the server's compression window (8 to 15 bits).
        compression_level: zlib's level for compressing (-1 is zlib's default).
        memory_level: zlib's memory level for compressing.
        min_size: messages shorter than this are sent uncompressed (by the
            protocol core, which reads it here).
    """

    def __init__(
        self,
        max_message_size: int | None,
        *,
        client_no_context_takeover: bool = False,
        client_max_window_bits: int | None = None,
        server_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        compression_level: int = -1,
        memory_level: int = 8,
        min_size: int = 0,
    ) -> None:
        if max_message_size is not None and max_message_size < 0:
            raise ValueError(f"max_message_size must be >= 0, not {max_message_size}")
        if server_max_window_bits == 8:
            # wsproto refuses 8; a 9-bit window inflates 8-bit data just as well.
            server_max_window_bits = 9
        super().__init__(
            client_no_context_takeover=client_no_context_takeover,
            client_max_window_bits=client_max_window_bits,
            server_no_context_takeover=server_no_context_takeover,
            server_max_window_bits=server_max_window_bits,
        )
        self.max_message_size = max_message_size
        self.compression_level = compression_level
        self.memory_level = memory_level
        self.min_size = min_size
        # The inflater (kept between messages with context takeover).
        self._inflater: _Decompress | None = None
        # Whether the frame being read is a data frame (not a control frame).
        self._data_frame = False
        # Whether the message being read is compressed; None between messages.
        self._message_compressed: bool | None = None
        # Bytes inflated so far for the message being read.
        self._inflated = 0
        # Agreed: mark the extension enabled, as wsproto's handshake does.
        self.finalize(self.name)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}; max_message_size={self.max_message_size}>"

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        # wsproto compresses, with a compressor made on demand at zlib's
        # defaults: make it here first with the levels asked for.
        if (
            self._compressor is None
            and self._compressible_opcode(opcode)
            and opcode is not Opcode.CONTINUATION
        ):
            bits = self.client_max_window_bits if proto.client else self.server_max_window_bits
            self._compressor = zlib.compressobj(
                self.compression_level, zlib.DEFLATED, -int(bits), self.memory_level
            )
        return super().frame_outbound(proto, opcode, rsv, data, fin)

    def _inflater_bits(self, proto: FrameDecoder | FrameProtocol) -> int:
        return self.server_max_window_bits if proto.client else self.client_max_window_bits

    def _peer_no_context_takeover(self, proto: FrameDecoder | FrameProtocol) -> bool:
        if proto.client:
            return self.server_no_context_takeover
        return self.client_no_context_takeover

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        """Note whether a message starts compressed; refuse RSV1 where it may not be."""
        if opcode.iscontrol():
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self._data_frame = False
            return RsvBits(False, False, False)
        self._data_frame = True
        if opcode is Opcode.CONTINUATION:
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            if self._message_compressed is None:
                # No message to continue: wsproto fails the connection (1002).
                self._message_compressed = False
        elif self._message_compressed is not None:
            # A new message inside another: let the bytes through untouched
            # so that wsproto fails the connection (1002).
            self._message_compressed = False
        else:
            self._message_compressed = rsv.rsv1
            self._inflated = 0
            if rsv.rsv1 and self._inflater is None:
                self._inflater = zlib.decompressobj(-self._inflater_bits(proto))
        return RsvBits(True, False, False)

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        """Inflate ``data`` without going past the limit; the reason to close if it would."""
        inflater = self._inflater
        assert inflater is not None
        limit = self.max_message_size
        try:
            if limit is None:
                out = inflater.decompress(data)
                self._inflated += len(out)
                return out
            parts = []
            while True:
                room = limit - self._inflated
                # One byte more than the room left tells "too big" from "just fits".
                chunk = inflater.decompress(data, room + 1)
                if len(chunk) > room:
                    return CloseReason.MESSAGE_TOO_BIG
                self._inflated += len(chunk)
                parts.append(chunk)
                data = inflater.unconsumed_tail
                if not data:
                    return parts[0] if len(parts) == 1 else b"".join(parts)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        """Inflate a piece of a compressed message (data passes through otherwise)."""
        if not self._data_frame or not self._message_compressed:
            return data
        return self._inflate(data)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        """At the end of a compressed message, inflate the tail the sender left out."""
        if not self._data_frame or not fin:
            return None
        compressed = self._message_compressed
        self._message_compressed = None
        if not compressed:
            return None
        result = self._inflate(_TAIL)
        self._inflated = 0
        assert self._inflater is not None
        if self._peer_no_context_takeover(proto) or self._inflater.eof:
            # A new context for the next message (also after a final block).
            self._inflater = None
        return result
