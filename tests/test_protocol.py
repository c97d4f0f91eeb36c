"""The no-I/O protocol core: ``ClientProtocol`` against RFC 6455, and against wsproto itself.

No event loop anywhere: bytes go in, messages and bytes come out. Frames from the server are built
by hand here (so that malformed ones can be built too); what the client sends is read back by a
wsproto server ``Connection`` or by the small frame reader below.

``ClientProtocol`` turns unmasked, uncompressed text and binary frames into messages itself
(whole ones and fragments) and hands every other frame to wsproto; :class:`TestEquivalence` feeds
random valid and invalid frame sequences (fragments with control frames and misplaced frames
between them included), cut at random places, both to it and to a plain wsproto client, and
checks that the messages, the pongs, the frames sent back and the close code are the same. The
one documented difference is the size limit: a message past ``max_message_size`` fails with 1009
as soon as a frame header announces it.
"""

from __future__ import annotations

import itertools
import random
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import XorMaskerSimple
from wsproto.utilities import LocalProtocolError

from streams.protocol import ClientProtocol, CloseState, StreamedMessage
from streams.protocol._deflate import DeflateOptions, accept_response, offer_header
from streams.protocol._limits import DEFAULT_MAX_FRAGMENTS
from streams.protocol._mask import fast_mask, mask

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
RESERVED_OPCODES = (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)
KEY = b"\x37\xfa\x21\x3d"
KIB = 1024
MIB = 1024 * KIB


# --------------------------------------------------------------------------- frames from a server


def xor(payload: bytes, key: bytes) -> bytes:
    """Mask or unmask ``payload``, the plain way (RFC 6455, section 5.3)."""
    return bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = False,
    length: int | None = None,
    length_bytes: int | None = None,
) -> bytes:
    """One frame as a server would send it.

    ``length`` overrides the declared payload length and ``length_bytes`` (0, 2 or 8) the size
    of the extended length field, so that malformed headers can be written too.
    """
    n = len(payload) if length is None else length
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 0x10000 else 8
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    if length_bytes == 0:
        header = bytes((first, mask_bit | n))
    elif length_bytes == 2:
        header = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if masked:
        return header + KEY + xor(payload, KEY)
    return header + payload


def text(data: str, **kwargs: int | bool) -> bytes:
    return frame(TEXT, data.encode(), **kwargs)  # type: ignore[arg-type]


def binary(data: bytes, **kwargs: int | bool) -> bytes:
    return frame(BINARY, data, **kwargs)  # type: ignore[arg-type]


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    return frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


def fragments(opcode: int, pieces: Sequence[bytes]) -> list[bytes]:
    """The frames of one message sent in ``pieces``."""
    last = len(pieces) - 1
    return [
        frame(opcode if i == 0 else CONT, piece, fin=i == last) for i, piece in enumerate(pieces)
    ]


# --------------------------------------------------------------------------- what the client sent


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split what the client sent into ``(opcode, payload)``: masked, final frames only."""
    frames: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        assert first & 0x80, "the client sent a fragment"
        assert second & 0x80, "the client sent an unmasked frame"
        n = second & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        key = data[pos : pos + 4]
        pos += 4
        frames.append((first & 0x0F, xor(data[pos : pos + n], key)))
        pos += n
    assert pos == len(data), "the client sent a partial frame"
    return frames


Sent = tuple[str, bytes | int]


def summary(data: bytes) -> list[Sent]:
    """What the client sent back, as ``("pong", payload)`` and ``("close", code)`` items."""
    out: list[Sent] = []
    for opcode, payload in client_frames(data):
        if opcode == PONG:
            out.append(("pong", payload))
        elif opcode == CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if payload else 1005
            out.append(("close", code))
        else:
            raise AssertionError(f"unexpected frame sent back: opcode {opcode:#x}")
    return out


def server_events(data: bytes) -> list[Event]:
    """Parse what the client sent with a wsproto server; refuse frames wsproto would reject."""
    server = Connection(ConnectionType.SERVER)
    server.receive_data(data)
    events = list(server.events())
    for event in events:
        if isinstance(event, CloseConnection):
            # A protocol error is a CloseConnection without a change of state.
            assert server.state is ConnectionState.REMOTE_CLOSING, event
    return events


def feed(proto: ClientProtocol, data: bytes, cuts: Iterable[int] = ()) -> list[str | bytes]:
    """Feed ``data`` cut at the offsets ``cuts``; return every message."""
    out: list[str | bytes] = []
    prev = 0
    for cut in [*cuts, len(data)]:
        out += proto.receive_data(data[prev:cut])
        prev = cut
    return out


def one_byte_at_a_time(proto: ClientProtocol, data: bytes) -> list[str | bytes]:
    return feed(proto, data, range(1, len(data)))


def assert_failed(proto: ClientProtocol, code: int) -> None:
    """The client failed the connection with ``code`` and told the server so."""
    assert proto.failed
    assert proto.close_code == code
    assert proto.state is CloseState.CLOSED
    assert not proto.close_received
    assert summary(proto.data_to_send()) == [("close", code)]


def assert_open(proto: ClientProtocol) -> None:
    assert not proto.failed
    assert proto.close_code is None
    assert proto.state is CloseState.OPEN


# --------------------------------------------------------------------------- the reference


@dataclass
class Outcome:
    """What a client made of a stream of bytes from the server."""

    messages: list[str | bytes] = field(default_factory=list)
    pongs_received: list[bytes] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    close_code: int | None = None
    state: CloseState = CloseState.OPEN


def boundaries(size: int, cuts: Iterable[int], close_at: int | None) -> list[int]:
    """Every offset where a read ends (and where the local close happens), ending with ``size``."""
    points = {cut for cut in cuts if 0 < cut < size}
    if close_at is not None and close_at < size:
        points.add(close_at)
    return [*sorted(points), size]


def run_client(
    stream: bytes,
    cuts: Iterable[int] = (),
    close_at: int | None = None,
    *,
    max_message_size: int | None = None,
    extensions: Sequence[PerMessageDeflate] = (),
) -> Outcome:
    """Feed ``stream`` to a ``ClientProtocol``; send a Close once ``close_at`` bytes are in."""
    proto = ClientProtocol(max_message_size=max_message_size, extensions=extensions)
    outcome = Outcome()
    sent = b""
    prev = 0
    for point in boundaries(len(stream), cuts, close_at):
        outcome.messages += proto.receive_data(stream[prev:point])
        sent += proto.data_to_send()
        prev = point
        if point == close_at:
            sent += proto.send_close(1000)
    outcome.pongs_received = proto.pongs_received()
    outcome.sent = summary(sent)
    outcome.close_code = proto.close_code
    outcome.state = proto.state
    return outcome


def run_wsproto(
    stream: bytes,
    cuts: Iterable[int] = (),
    close_at: int | None = None,
    *,
    extensions: Sequence[PerMessageDeflate] = (),
) -> Outcome:
    """Feed ``stream`` to a plain wsproto client, assembling messages from its events here.

    Pings are answered while the connection is open, a peer's Close is echoed (an empty one for
    "no status"), and a protocol error sends a Close frame with wsproto's code, as a client must.
    """
    conn = Connection(ConnectionType.CLIENT, list(extensions))
    outcome = Outcome()
    text_parts: list[str] = []
    byte_parts: list[bytes] = []

    def local_close() -> None:
        if conn.state is ConnectionState.OPEN:
            conn.send(CloseConnection(1000))
            outcome.sent.append(("close", 1000))
            outcome.state = CloseState.CLOSING

    prev = 0
    for point in boundaries(len(stream), cuts, close_at):
        if outcome.close_code is None:
            before = conn.state
            conn.receive_data(stream[prev:point])
            for event in conn.events():
                if isinstance(event, TextMessage):
                    text_parts.append(event.data)
                    if event.message_finished:
                        outcome.messages.append("".join(text_parts))
                        text_parts = []
                elif isinstance(event, BytesMessage):
                    byte_parts.append(bytes(event.data))
                    if event.message_finished:
                        outcome.messages.append(b"".join(byte_parts))
                        byte_parts = []
                elif isinstance(event, Ping):
                    if conn.state is ConnectionState.OPEN:
                        conn.send(event.response())
                        outcome.sent.append(("pong", bytes(event.payload)))
                elif isinstance(event, Pong):
                    outcome.pongs_received.append(bytes(event.payload))
                elif isinstance(event, CloseConnection):
                    outcome.close_code = int(event.code)
                    outcome.state = CloseState.CLOSED
                    if conn.state is before:  # a protocol error
                        if conn.state is ConnectionState.OPEN:
                            conn.send(CloseConnection(event.code))
                            outcome.sent.append(("close", int(event.code)))
                    elif conn.state is ConnectionState.REMOTE_CLOSING:  # the peer's Close
                        conn.send(CloseConnection(event.code, event.reason))
                        outcome.sent.append(("close", int(event.code)))
                    break
        prev = point
        if point == close_at:
            local_close()
    return outcome


def reference(
    stream: bytes,
    frames: Sequence[Frame],
    cuts: Sequence[int],
    close_at: int | None,
    max_message_size: int | None,
) -> Outcome:
    """What ``ClientProtocol`` must do: wsproto, plus the size limit checked at frame headers.

    With a limit, the stream is cut at the end of the header of the first frame that takes a
    message past it; if wsproto has not failed by then, the connection fails there with 1009.
    """
    end = None if max_message_size is None else first_overflow(frames, max_message_size)
    if end is None or end > len(stream):
        return run_wsproto(stream, cuts, close_at)
    outcome = run_wsproto(
        stream[:end], cuts, close_at if close_at is not None and close_at < end else None
    )
    if outcome.close_code is None:
        if outcome.state is CloseState.OPEN:
            outcome.sent.append(("close", 1009))
        outcome.close_code = 1009
        outcome.state = CloseState.CLOSED
    return outcome


def like_wsproto(
    stream: bytes, extensions: Callable[[], list[PerMessageDeflate]] = list
) -> Outcome:
    """Check that ``ClientProtocol`` and wsproto agree on ``stream`` however it arrives.

    Whole, cut at any one byte, one byte at a time, and on every prefix (so that a failure
    happens at the same byte). ``extensions`` makes fresh extensions for each run.
    Returns what both made of the whole stream.
    """
    expected = run_wsproto(stream, extensions=extensions())
    assert run_client(stream, extensions=extensions()) == expected
    for cut in range(len(stream) + 1):
        assert run_client(stream, [cut], extensions=extensions()) == expected, f"cut at {cut}"
        prefix = stream[:cut]
        assert run_client(prefix, extensions=extensions()) == run_wsproto(
            prefix, extensions=extensions()
        ), f"prefix of {cut}"
    every_byte = range(1, len(stream))
    assert run_client(stream, every_byte, extensions=extensions()) == expected
    return expected


def wsproto_failure(
    stream: bytes, extensions: Sequence[PerMessageDeflate] = ()
) -> tuple[int, str] | None:
    """The close code and reason a plain wsproto client fails ``stream`` with, if it does."""
    conn = Connection(ConnectionType.CLIENT, list(extensions))
    conn.receive_data(stream)
    for event in conn.events():
        if isinstance(event, CloseConnection):
            if conn.state is ConnectionState.OPEN:  # a protocol error, not the peer's Close
                return int(event.code), event.reason or ""
            return None
    return None


def spy_on_wsproto(proto: ClientProtocol) -> list[bytes]:
    """Record every piece of data ``proto`` hands to its wsproto connection."""
    seen: list[bytes] = []
    receive = proto._wsproto().receive_data

    def spy(data: bytes | None) -> None:
        seen.append(bytes(data or b""))
        receive(data)

    proto._wsproto().receive_data = spy  # type: ignore[method-assign]
    return seen


def deflate_session() -> tuple[Connection, Callable[[], list[PerMessageDeflate]]]:
    """A wsproto server compressing with permessage-deflate, and a maker of client extensions."""
    options = DeflateOptions()
    server_extension = PerMessageDeflate()
    answer = server_extension.accept(offer_header(options))
    assert isinstance(answer, str)
    header = f"permessage-deflate; {answer}" if answer else "permessage-deflate"
    server = Connection(ConnectionType.SERVER, [server_extension])
    return server, lambda: [accept_response(header, options, None)]


# --------------------------------------------------------------------------- random streams


@dataclass
class Frame:
    """One frame of a generated stream.

    ``kind`` says what wsproto makes of its header: ``"data"`` (a valid text, binary or
    continuation header; the message may still be invalid), ``"control"`` (a valid Ping or Pong),
    or ``"stop"`` (a Close frame, or a header wsproto rejects).
    """

    data: bytes
    kind: str = "stop"
    opcode: int = 0
    fin: bool = True
    header: int = 2
    length: int = 0


def data_frame(opcode: int, payload: bytes, fin: bool = True) -> Frame:
    raw = frame(opcode, payload, fin=fin)
    return Frame(raw, "data", opcode, fin, len(raw) - len(payload), len(payload))


def control_frame(opcode: int, payload: bytes) -> Frame:
    return Frame(frame(opcode, payload), "control", opcode)


def first_overflow(frames: Sequence[Frame], limit: int) -> int | None:
    """The end offset of the header of the first frame that takes a message past ``limit``.

    ``None`` if no frame does before wsproto stops reading (a Close frame, a bad header, or a
    data frame out of place, which wsproto fails at its first byte).
    """
    offset = 0
    in_message = False
    size = 0
    for f in frames:
        if f.kind == "stop":
            return None
        if f.kind == "data":
            if (f.opcode == CONT) != in_message:
                return None
            size = f.length if f.opcode != CONT else size + f.length
            in_message = not f.fin
            if size > limit:
                return offset + f.header
        offset += len(f.data)
    return None


ALPHABET = "aZ0 ~\x7f\u00e9\u00ff\u0100\u07ff\u0800\u20ac\ufffd\U00010000\U0001d11e\U0010ffff"
INVALID_UTF8 = (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82a")
TRUNCATED_UTF8 = (b"\xc3", b"\xe2\x82", b"\xf0\x9d\x84")


def random_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.6:
        return rng.randint(0, 20)
    if roll < 0.85:
        return rng.randint(100, 300)
    if roll < 0.98:
        return rng.choice((125, 126, 127, 0xFFFF))
    return rng.randint(0x10000, 0x10100)


def random_text(rng: random.Random, size: int) -> bytes:
    """About ``size`` bytes of valid UTF-8, with 1- to 4-byte characters."""
    return "".join(rng.choices(ALPHABET, k=(size + 1) // 2)).encode()


def invalid_utf8(rng: random.Random, payload: bytes) -> bytes:
    """``payload`` (valid UTF-8) with an invalid sequence put at a character boundary, or ending
    with a code point cut short."""
    if rng.random() < 0.25:
        return payload + rng.choice(TRUNCATED_UTF8)
    text_ = payload.decode()
    at = rng.randint(0, len(text_))
    return text_[:at].encode() + rng.choice(INVALID_UTF8) + text_[at:].encode()


def split(rng: random.Random, payload: bytes, count: int) -> list[bytes]:
    """``payload`` in ``count`` pieces cut at random bytes (code points may be cut), some empty."""
    cuts = sorted(rng.randint(0, len(payload)) for _ in range(count - 1))
    edges = [0, *cuts, len(payload)]
    return [payload[a:b] for a, b in itertools.pairwise(edges)]


def random_message(rng: random.Random, frames: list[Frame]) -> None:
    """A text or binary message, whole or in fragments, maybe with control frames inside.

    Mostly valid; sometimes with invalid UTF-8, or broken: a frame that does not belong (a bad
    frame, a Close, a new data frame, a malformed continuation) between two fragments, or left
    unfinished, so that whatever comes next arrives inside it.
    """
    opcode = rng.choice((TEXT, BINARY))
    size = random_size(rng)
    payload = random_text(rng, size) if opcode == TEXT else rng.randbytes(size)
    if opcode == TEXT and rng.random() < 0.1:
        payload = invalid_utf8(rng, payload)
    roll = rng.random()
    count = 1 if roll < 0.45 else rng.randint(1, 6) if roll < 0.9 else rng.randint(7, 40)
    pieces = split(rng, payload, count)
    for i, piece in enumerate(pieces):
        frames.append(data_frame(opcode if i == 0 else CONT, piece, fin=i == count - 1))
        if i == count - 1:
            break
        roll = rng.random()
        if roll < 0.3:
            frames.append(
                control_frame(rng.choice((PING, PONG)), rng.randbytes(rng.randint(0, 125)))
            )
        elif roll < 0.36:
            frames.append(intruder(rng))
        elif roll < 0.39:
            return  # never finished


def intruder(rng: random.Random) -> Frame:
    """A frame that breaks the fragmented message it arrives in."""
    roll = rng.random()
    if roll < 0.25:
        return bad_frame(rng)
    if roll < 0.4:
        return random_close(rng)
    if roll < 0.7:  # a new message inside the message: 1002 once a payload byte is in
        payload = rng.randbytes(rng.choice((0, 3, 130, 0x10000)))
        return data_frame(rng.choice((TEXT, BINARY)), payload, fin=rng.random() < 0.5)
    # A malformed continuation.
    payload = rng.randbytes(rng.choice((0, 5, 200)))
    choice = rng.randrange(4)
    if choice == 0:
        return Frame(frame(CONT, payload[:125], masked=True))
    if choice == 1:
        return Frame(frame(CONT, payload, rsv=rng.choice((RSV1, RSV2, RSV3))))
    if choice == 2:
        n = rng.choice((0, 5, 125))
        return Frame(frame(CONT, bytes(n), length_bytes=2, length=n))
    return Frame(frame(CONT, bytes(10), length_bytes=8, length=rng.choice((0, 126, 0xFFFF))))


def bad_frame(rng: random.Random) -> Frame:
    """A frame wsproto rejects at its header (or a data frame that may be out of place)."""
    size = rng.choice((0, 5, 130, 300))
    payload = rng.randbytes(size)
    choice = rng.randrange(9)
    if choice == 0:
        return Frame(frame(rng.choice((TEXT, BINARY, CONT, PING)), payload[:125], masked=True))
    if choice == 1:
        rsv = rng.choice((RSV1, RSV2, RSV3, RSV1 | RSV3))
        return Frame(frame(rng.choice((TEXT, BINARY, CONT, PING)), payload[:125], rsv=rsv))
    if choice == 2:
        return Frame(frame(rng.choice(RESERVED_OPCODES), payload[:125]))
    if choice == 3:  # a length in more bytes than needed
        n = rng.choice((0, 1, 125))
        return Frame(frame(rng.choice((TEXT, BINARY)), payload[:n], length_bytes=2, length=n))
    if choice == 4:
        n = rng.choice((0, 125, 126, 0xFFFF))
        return Frame(binary(b"x" * 8, length_bytes=8, length=n))
    if choice == 5:  # 64-bit length with the most significant bit set
        return Frame(binary(b"", length_bytes=8, length=(1 << 63) | rng.randint(0, 1 << 20)))
    if choice == 6:  # a control frame over 125 bytes, or fragmented
        if rng.random() < 0.5:
            return Frame(frame(rng.choice((PING, PONG, CLOSE)), bytes(126 + rng.randint(0, 9))))
        return Frame(frame(rng.choice((PING, PONG, CLOSE)), payload[:10], fin=False))
    if choice == 7:  # a data frame that may be out of place
        return data_frame(rng.choice((TEXT, BINARY, CONT)), payload, fin=rng.random() < 0.5)
    # A header cut short for good.
    return Frame(rng.choice((b"\x89\x7e", b"\x8a\x7f\x00", b"\x83\x7e", b"\x09\x05")))


def random_close(rng: random.Random) -> Frame:
    roll = rng.random()
    if roll < 0.2:
        return Frame(close_frame())
    if roll < 0.3:
        return Frame(frame(CLOSE, b"\x03"))
    if roll < 0.5:
        code = rng.choice((0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 0xFFFF))
        return Frame(close_frame(code))
    if roll < 0.6:
        return Frame(close_frame(1000, b"bad \xff utf-8"))
    code = rng.choice((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 3000, 4999))
    return Frame(close_frame(code, random_text(rng, rng.randint(0, 40))[:123]))


def random_frames(rng: random.Random) -> list[Frame]:
    frames: list[Frame] = []
    for _ in range(rng.randint(1, 10)):
        roll = rng.random()
        if roll < 0.55:
            random_message(rng, frames)
        elif roll < 0.75:
            frames.append(
                control_frame(rng.choice((PING, PONG)), rng.randbytes(rng.randint(0, 125)))
            )
        elif roll < 0.85:
            frames.append(bad_frame(rng))
        else:
            frames.append(random_close(rng))
            if rng.random() < 0.5:
                break
    return frames


def random_cuts(rng: random.Random, size: int) -> list[int]:
    """Where reads end: every byte, every few bytes, or a few random places."""
    roll = rng.random()
    if roll < 0.1 and size < 2000:
        return list(range(1, size))
    if roll < 0.25:
        step = rng.randint(2, 300)
        if size // step < 3000:
            return list(range(rng.randint(1, step), size, step))
    return sorted(rng.randint(0, size) for _ in range(rng.randint(0, 12)))


# =========================================================================== tests


class TestFraming:
    """Base framing (RFC 6455, section 5.2)."""

    @pytest.mark.parametrize("size", [0, 1, 125])
    def test_client_reads_7bit_length(self, size: int) -> None:
        proto = ClientProtocol()
        assert proto.receive_data(binary(bytes(size)) + text("é" * size)) == [
            bytes(size),
            "é" * size,
        ]
        assert_open(proto)

    @pytest.mark.parametrize("size", [126, 127, 1000, 0xFFFF])
    def test_client_reads_16bit_length(self, size: int) -> None:
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        stream = binary(data) + text("a" * size)
        assert stream[1] == 126
        assert ClientProtocol().receive_data(stream) == [data, "a" * size]

    @pytest.mark.parametrize("size", [0x10000, 0x10001, 200_000])
    def test_client_reads_64bit_length(self, size: int) -> None:
        data = random.Random(size).randbytes(size)
        stream = binary(data) + text("b" * size)
        assert stream[1] == 127
        proto = ClientProtocol(max_message_size=None)
        assert proto.receive_data(stream) == [data, "b" * size]

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    @pytest.mark.parametrize(
        ("length_bytes", "size"), [(2, 0), (2, 125), (8, 0), (8, 125), (8, 126), (8, 0xFFFF)]
    )
    def test_client_rejects_non_minimal_length(
        self, opcode: int, length_bytes: int, size: int
    ) -> None:
        stream = frame(opcode, b"a" * size, length_bytes=length_bytes) + text("after")
        proto = ClientProtocol()
        assert proto.receive_data(text("before") + stream) == ["before"]
        assert_failed(proto, 1002)
        assert run_wsproto(stream).close_code == 1002

    def test_client_rejects_non_minimal_length_of_continuation(self) -> None:
        stream = frame(TEXT, b"ab", fin=False) + frame(CONT, b"c", length_bytes=2)
        proto = ClientProtocol()
        assert proto.receive_data(stream) == []
        assert_failed(proto, 1002)

    @pytest.mark.parametrize("max_message_size", [65536, None])
    def test_client_rejects_64bit_length_with_msb_set(self, max_message_size: int | None) -> None:
        header = bytes((0x82, 127)) + ((1 << 63) | 5).to_bytes(8, "big")
        proto = ClientProtocol(max_message_size=max_message_size)
        assert proto.receive_data(header + b"hello") == []
        assert_failed(proto, 1002)
        assert run_wsproto(header + b"hello").close_code == 1002

    @pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3])
    @pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, PONG, CLOSE])
    def test_client_rejects_reserved_bits_without_extension(self, rsv: int, opcode: int) -> None:
        proto = ClientProtocol()
        payload = b"\x03\xe8" if opcode == CLOSE else b"data"
        assert proto.receive_data(text("ok") + frame(opcode, payload, rsv=rsv)) == ["ok"]
        assert_failed(proto, 1002)

    def test_client_rejects_reserved_bit_on_continuation(self) -> None:
        proto = ClientProtocol()
        stream = frame(BINARY, b"a", fin=False) + frame(CONT, b"b", rsv=RSV1)
        assert proto.receive_data(stream) == []
        assert_failed(proto, 1002)

    @pytest.mark.parametrize("opcode", RESERVED_OPCODES)
    def test_client_rejects_reserved_opcode(self, opcode: int) -> None:
        proto = ClientProtocol()
        assert proto.receive_data(binary(b"ok") + frame(opcode, b"x") + binary(b"no")) == [b"ok"]
        assert_failed(proto, 1002)

    @pytest.mark.parametrize(
        "head", [b"\x89\x7e", b"\x8a\x7f", b"\x88\x7e\x00", b"\x09\x7f", b"\x83\x7e", b"\x8f\x7f"]
    )
    def test_client_rejects_bad_control_header_before_its_extended_length(
        self, head: bytes
    ) -> None:
        # A control frame cannot have a 16- or 64-bit length, and a reserved opcode is wrong
        # whatever follows: wsproto fails on the first two bytes, and so must the client.
        assert run_wsproto(head).close_code == 1002
        proto = ClientProtocol()
        assert proto.receive_data(head) == []
        assert_failed(proto, 1002)

    def test_client_waits_for_extended_length_of_data_frame(self) -> None:
        proto = ClientProtocol()
        stream = binary(b"z" * 300)
        assert proto.receive_data(stream[:3]) == []
        assert_open(proto)
        assert proto.receive_data(stream[3:]) == [b"z" * 300]

    @pytest.mark.parametrize("opcode", [TEXT, BINARY, CONT, PING, PONG, CLOSE])
    def test_client_rejects_masked_frame(self, opcode: int) -> None:
        payload = b"\x03\xe8" if opcode == CLOSE else b"data"
        masked = frame(opcode, payload, masked=True)
        proto = ClientProtocol()
        assert proto.receive_data(text("first") + masked + text("second")) == ["first"]
        assert_failed(proto, 1002)
        assert run_wsproto(masked).close_code == 1002

    def test_client_rejects_masked_frame_from_its_header(self) -> None:
        # The header alone is enough: the mask key and payload never need to arrive.
        proto = ClientProtocol()
        assert proto.receive_data(frame(BINARY, bytes(300), masked=True)[:4]) == []
        assert_failed(proto, 1002)

    @staticmethod
    def mixed_stream() -> bytes:
        return b"".join(
            [
                text("héllo €𝄞"),
                binary(bytes(range(200))),
                frame(PING, b"are you there"),
                *fragments(TEXT, [b"fr", "ag€".encode()[:4], "ag€".encode()[4:] + b"!"]),
                binary(b""),
                frame(PONG, b"unsolicited"),
                text("é" * 150),
                binary(b"x" * 70_000),
                *fragments(BINARY, [b"", b"\x00" * 130, b"", b"\x01"]),
                text(""),
                close_frame(1000, b"bye"),
            ]
        )

    MIXED_MESSAGES = (
        "héllo €𝄞",
        bytes(range(200)),
        "frag€!",
        b"",
        "é" * 150,
        b"x" * 70_000,
        b"\x00" * 130 + b"\x01",
        "",
    )

    def whole(self) -> Outcome:
        expected = run_client(self.mixed_stream())
        assert expected.messages == list(self.MIXED_MESSAGES)
        assert expected.pongs_received == [b"unsolicited"]
        assert expected.sent == [("pong", b"are you there"), ("close", 1000)]
        assert expected.close_code == 1000
        assert expected == run_wsproto(self.mixed_stream())
        return expected

    def test_client_reads_frames_split_at_every_byte_boundary(self) -> None:
        stream = self.mixed_stream()
        expected = self.whole()
        # Every boundary but those deep inside the 64-bit frame, of which a sample.
        long_frame = stream.index(b"x" * 1000)
        points = [*range(long_frame + 10), *range(long_frame + 69_990, len(stream) + 1)]
        points += random.Random(0).sample(range(long_frame, long_frame + 70_000), 200)
        for cut in points:
            assert run_client(stream, [cut]) == expected, f"cut at {cut}"

    def test_client_reads_frames_one_byte_at_a_time(self) -> None:
        stream = self.mixed_stream()
        assert run_client(stream, range(1, len(stream))) == self.whole()

    def test_client_reads_frames_in_random_chunks(self) -> None:
        stream = self.mixed_stream()
        expected = self.whole()
        rng = random.Random(1)
        for _ in range(100):
            cuts = sorted(rng.randint(0, len(stream)) for _ in range(rng.randint(1, 40)))
            assert run_client(stream, cuts) == expected, cuts

    def test_client_reads_empty_reads(self) -> None:
        proto = ClientProtocol()
        stream = text("abc")
        assert proto.receive_data(b"") == []
        assert proto.receive_data(stream[:1]) == []
        assert proto.receive_data(b"") == []
        assert proto.receive_data(stream[1:3]) == []
        assert proto.receive_data(b"") == []
        assert proto.receive_data(stream[3:]) == ["abc"]

    @pytest.mark.parametrize(
        "tail",
        [
            text("last"),
            frame(TEXT, b"ok \xff"),  # invalid UTF-8 right after a run: 1007
            text("a" * 126),  # a 16-bit length after a run
            frame(TEXT, b"masked", masked=True),  # a masked frame after a run: 1002
            frame(TEXT, b"x", rsv=RSV1),  # a reserved bit after a run: 1002
            frame(TEXT, b"part", fin=False) + frame(CONT, b"!"),
        ],
    )
    def test_client_reads_runs_of_small_messages_like_wsproto(self, tail: bytes) -> None:
        # Whole small frames, text and binary, a ping in the run, then a frame of another kind.
        small = [text(f"m{i}") if i % 3 else binary(bytes([i]) * i) for i in range(60)]
        stream = b"".join([*small[:30], frame(PING, b"p"), *small[30:], tail, text("after")])
        expected = run_wsproto(stream)
        assert len(expected.messages) >= 60
        assert run_client(stream) == expected
        for cut in range(0, len(stream), 7):
            assert run_client(stream, [cut]) == expected, f"cut at {cut}"

    @pytest.mark.parametrize("limit", [0, 1, 10, 124, 125])
    def test_client_checks_a_small_limit_in_runs_of_small_messages(self, limit: int) -> None:
        stream = b"".join(text("x" * size) for size in (0, 1, 10, 124, 125))
        outcome = run_client(stream, max_message_size=limit)
        assert outcome.messages == ["x" * size for size in (0, 1, 10, 124, 125) if size <= limit]
        assert outcome.close_code == (1009 if limit < 125 else None)


class TestFragmentation:
    """Fragmented messages (RFC 6455, section 5.4)."""

    def test_client_assembles_text_fragments(self) -> None:
        stream = b"".join(fragments(TEXT, [b"Hel", b"lo, ", "wörld".encode()]))
        proto = ClientProtocol()
        assert proto.receive_data(stream) == ["Hello, wörld"]
        assert_open(proto)

    def test_client_assembles_binary_fragments(self) -> None:
        pieces = [bytes([i]) * (i * 50) for i in range(1, 6)]
        stream = b"".join(fragments(BINARY, pieces))
        assert ClientProtocol().receive_data(stream) == [b"".join(pieces)]

    def test_client_assembles_single_final_fragment(self) -> None:
        # A first frame with FIN set after a fragmented message: an ordinary message again.
        stream = b"".join([*fragments(TEXT, [b"a", b"b"]), text("c"), *fragments(BINARY, [b"d"])])
        assert ClientProtocol().receive_data(stream) == ["ab", "c", b"d"]

    def test_client_handles_control_frames_inside_fragmented_message(self) -> None:
        first, middle, last = fragments(TEXT, [b"one ", b"two ", b"three"])
        stream = b"".join(
            [first, frame(PING, b"p1"), middle, frame(PONG, b"late"), frame(PING, b""), last]
        )
        for cuts in ((), range(1, len(stream))):
            proto = ClientProtocol()
            assert feed(proto, stream, cuts) == ["one two three"]
            assert summary(proto.data_to_send()) == [("pong", b"p1"), ("pong", b"")]
            assert proto.pongs_received() == [b"late"]
            assert_open(proto)

    def test_client_accepts_close_inside_fragmented_message(self) -> None:
        first, last = fragments(BINARY, [b"never", b"finished"])
        proto = ClientProtocol()
        assert proto.receive_data(first + close_frame(1001) + last) == []
        assert proto.close_code == 1001
        assert proto.close_received

    @pytest.mark.parametrize("payload", [b"", b"orphan", b"x" * 200])
    def test_client_rejects_continuation_without_start(self, payload: bytes) -> None:
        proto = ClientProtocol()
        assert proto.receive_data(text("done") + frame(CONT, payload) + text("no")) == ["done"]
        assert_failed(proto, 1002)

    def test_client_rejects_continuation_after_finished_message(self) -> None:
        stream = b"".join([*fragments(TEXT, [b"a", b"b"]), frame(CONT, b"c")])
        proto = ClientProtocol()
        assert proto.receive_data(stream) == ["ab"]
        assert_failed(proto, 1002)

    @pytest.mark.parametrize(
        "intruder",
        [text("whole"), binary(b"whole"), frame(TEXT, b"new", fin=False), text(""), binary(b"")],
        ids=["text", "binary", "fragment", "empty-text", "empty-binary"],
    )
    def test_client_rejects_new_data_frame_inside_fragmented_message(self, intruder: bytes) -> None:
        stream = frame(TEXT, b"started", fin=False) + intruder + frame(CONT, b"end")
        for cuts in ((), range(1, len(stream))):
            proto = ClientProtocol()
            assert feed(proto, stream, cuts) == []
            assert_failed(proto, 1002)
        assert run_wsproto(stream).close_code == 1002

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_client_assembles_empty_fragments(self, opcode: int) -> None:
        empty = b"".join(fragments(opcode, [b"", b"", b""]))
        padded = b"".join(fragments(opcode, [b"", b"ab", b"", b"", b"c", b""]))
        expected: list[str | bytes] = ["", "abc"] if opcode == TEXT else [b"", b"abc"]
        assert ClientProtocol().receive_data(empty + padded) == expected

    @staticmethod
    def fragmented(size: int, piece: int) -> tuple[bytes, bytes]:
        payload = random.Random(size).randbytes(size)
        pieces = [payload[i : i + piece] for i in range(0, size, piece)]
        return b"".join(fragments(BINARY, pieces)), payload

    @staticmethod
    def assemble(stream: bytes) -> tuple[float, list[str | bytes]]:
        """Feed ``stream`` in 64 KiB reads; return the CPU time taken and the messages.

        CPU time, not wall time: the time other processes take on a busy machine does not count.
        """
        proto = ClientProtocol(max_message_size=None)
        start = time.process_time()
        messages = feed(proto, stream, range(65536, len(stream), 65536))
        return time.process_time() - start, messages

    def growth(self, small_size: int, large_size: int, piece: int) -> float:
        """How much longer the large message takes than as many bytes in small messages.

        About 1 when assembly is linear; about ``large_size / small_size`` when each fragment
        is joined to the message as it comes. Each time is the best of several runs.
        """
        small_stream, small = self.fragmented(small_size, piece)
        large_stream, large = self.fragmented(large_size, piece)
        repeat = large_size // small_size
        small_runs = [self.assemble(small_stream) for _ in range(3 * repeat)]
        large_runs = [self.assemble(large_stream) for _ in range(3)]
        assert all(messages == [small] for _, messages in small_runs)
        assert all(messages == [large] for _, messages in large_runs)
        return min(t for t, _ in large_runs) / (repeat * min(t for t, _ in small_runs))

    def test_client_assembles_fragments_in_linear_time(self) -> None:
        # 2 MiB against 8 x 256 KiB, in 512-byte fragments: measured 1.2 to 1.4. Joining the
        # fragments one by one as they come measured 15 to 17.
        ratio = self.growth(256 * KIB, 2 * MIB, 512)
        assert ratio < 4, ratio

    @pytest.mark.slow
    def test_client_assembles_4mib_in_64_byte_fragments_in_linear_time(self) -> None:
        # 65,536 frames, gathered by the frame walk. 4 MiB against 8 x 512 KiB: measured 1.3;
        # joining the fragments one by one as they come measured 20 to 22.
        ratio = self.growth(512 * KIB, 4 * MIB, 64)
        assert ratio < 4, ratio


class TestUTF8:
    """Text messages must be valid UTF-8 (RFC 6455, section 8.1)."""

    @pytest.mark.parametrize("invalid", [*INVALID_UTF8, b"\xe2\x82"])
    @pytest.mark.parametrize("chunked", [False, True])
    def test_client_rejects_invalid_utf8_in_single_frame(
        self, invalid: bytes, chunked: bool
    ) -> None:
        stream = text("ok") + frame(TEXT, b"abc" + invalid + b"def") + text("after")
        proto = ClientProtocol()
        cuts = range(1, len(stream)) if chunked else ()
        assert feed(proto, stream, cuts) == ["ok"]
        assert_failed(proto, 1007)

    @pytest.mark.parametrize("invalid", INVALID_UTF8)
    def test_client_rejects_invalid_utf8_across_fragments(self, invalid: bytes) -> None:
        stream = b"".join(fragments(TEXT, [b"valid", b"still valid " + invalid, b"end"]))
        proto = ClientProtocol()
        assert proto.receive_data(stream) == []
        assert_failed(proto, 1007)

    def test_client_rejects_code_point_cut_at_end_of_message(self) -> None:
        euro = "€".encode()
        stream = b"".join(fragments(TEXT, [b"price: ", euro[:2]]))
        proto = ClientProtocol()
        assert proto.receive_data(stream) == []
        assert_failed(proto, 1007)

    def test_client_accepts_code_points_split_across_fragments(self) -> None:
        message = "a€𝄞ñ\U0010ffffz"
        payload = message.encode()
        for cut in range(len(payload) + 1):
            for second in range(cut, len(payload) + 1):
                pieces = [payload[:cut], payload[cut:second], payload[second:]]
                stream = b"".join(fragments(TEXT, pieces))
                assert ClientProtocol().receive_data(stream) == [message], pieces

    def test_client_fails_fast_on_invalid_first_fragment(self) -> None:
        # The rest of the message never arrives: the first fragment alone fails the connection.
        proto = ClientProtocol(max_message_size=None)
        assert proto.receive_data(frame(TEXT, b"ab\xffcd" + b"x" * 1000, fin=False)) == []
        assert_failed(proto, 1007)
        assert proto.receive_data(frame(CONT, b"y" * 10_000)) == []

    def test_client_fails_fast_on_invalid_chop_of_text_frame(self) -> None:
        # One text frame arriving in three reads, the second with an invalid byte: the
        # connection fails as the second read arrives, not when the frame is complete.
        payload = b"a" * 1000 + b"b" * 500 + b"\xff" + b"b" * 499 + b"c" * 1000
        stream = frame(TEXT, payload)
        head = len(stream) - len(payload)
        proto = ClientProtocol()
        assert proto.receive_data(stream[: head + 1000]) == []
        assert_open(proto)
        assert proto.receive_data(stream[head + 1000 : head + 2000]) == []
        assert_failed(proto, 1007)
        assert proto.receive_data(stream[head + 2000 :]) == []

    def test_client_fails_fast_on_invalid_chop_of_fragment(self) -> None:
        first = frame(TEXT, b"a" * 100, fin=False)
        second = frame(CONT, "€".encode() * 100 + b"\xc3\x28" + b"b" * 100, fin=False)
        proto = ClientProtocol()
        assert proto.receive_data(first + second[:200]) == []
        assert_open(proto)
        assert proto.receive_data(second[200:310]) == []
        assert_failed(proto, 1007)

    def test_client_accepts_noncharacters_and_boundaries(self) -> None:
        edge = "\x00\x7f\x80\u07ff\u0800\ud7ff\ue000\ufffe\uffff\U00010000\U0010ffff"
        assert ClientProtocol().receive_data(text(edge)) == [edge]


class TestLimits:
    """The message size limit (close code 1009, RFC 6455 section 7.4.1)."""

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    @pytest.mark.parametrize("size", [101, 126, 0x10000])
    def test_client_rejects_oversized_message_from_header(self, opcode: int, size: int) -> None:
        # Only the header arrives: the payload is never waited for.
        stream = frame(opcode, b"a" * size)
        head = len(stream) - size
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(text("small") + stream[:head]) == ["small"]
        assert_failed(proto, 1009)
        assert proto.receive_data(stream[head:]) == []

    def test_client_rejects_oversized_first_fragment_from_header(self) -> None:
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(frame(BINARY, bytes(101), fin=False)[:2]) == []
        assert_failed(proto, 1009)

    def test_client_rejects_oversized_fragmented_message(self) -> None:
        first, second, third = fragments(BINARY, [bytes(40), bytes(40), bytes(40)])
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(first + second + third[:2]) == []
        assert_failed(proto, 1009)

    def test_client_rejects_oversized_fragmented_text_from_header(self) -> None:
        pieces = [b"a" * 60, b"b" * 41]
        first, second = fragments(TEXT, pieces)
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(first) == []
        assert_open(proto)
        assert proto.receive_data(second[:2]) == []
        assert_failed(proto, 1009)

    @pytest.mark.parametrize("limit", [0, 1, 125, 126, 0xFFFF, 0x10000])
    def test_client_accepts_message_exactly_at_limit(self, limit: int) -> None:
        proto = ClientProtocol(max_message_size=limit)
        half = limit // 2
        stream = text("a" * limit) + b"".join(
            fragments(BINARY, [bytes(half), b"", bytes(limit - half)])
        )
        assert proto.receive_data(stream) == ["a" * limit, bytes(limit)]
        assert_open(proto)

    @pytest.mark.parametrize("limit", [0, 125, 0xFFFF, 0x10000])
    def test_client_rejects_message_one_byte_over_limit(self, limit: int) -> None:
        proto = ClientProtocol(max_message_size=limit)
        assert proto.receive_data(binary(bytes(limit + 1))) == []
        assert_failed(proto, 1009)

    def test_client_accepts_any_size_without_limit(self) -> None:
        big = bytes(3 * MIB)
        stream = binary(big) + b"".join(fragments(TEXT, [b"x" * MIB, b"y" * MIB]))
        proto = ClientProtocol(max_message_size=None)
        assert proto.receive_data(stream) == [big, "x" * MIB + "y" * MIB]
        assert_open(proto)

    def test_client_limits_each_message_on_its_own(self) -> None:
        stream = b"".join(
            [*fragments(TEXT, [b"a" * 60, b"b" * 40]), *fragments(BINARY, [bytes(50), bytes(50)])]
        )
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(stream) == ["a" * 60 + "b" * 40, bytes(100)]
        assert_open(proto)

    def test_client_does_not_count_control_frames_in_message_size(self) -> None:
        first, last = fragments(BINARY, [bytes(50), bytes(50)])
        stream = first + frame(PING, bytes(125)) + frame(PONG, bytes(125)) + last
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(stream) == [bytes(100)]
        assert_open(proto)

    @pytest.mark.parametrize(
        "stream",
        [
            frame(BINARY, bytes(300), masked=True),
            frame(TEXT, bytes(300), rsv=RSV1),
            frame(BINARY, bytes(300), rsv=RSV2, fin=False),
            frame(CONT, bytes(300)),
            frame(TEXT, b"a", fin=False) + frame(BINARY, bytes(300)),
            frame(TEXT, b"a", fin=False) + frame(CONT, bytes(300), rsv=RSV1),
        ],
        ids=["masked", "rsv1", "rsv2", "orphan-continuation", "nested", "rsv1-continuation"],
    )
    def test_client_reports_protocol_error_before_size_limit(self, stream: bytes) -> None:
        # A frame both malformed and too big is a protocol error (1002), as wsproto says.
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(stream) == []
        assert_failed(proto, 1002)
        assert run_wsproto(stream).close_code == 1002

    def test_client_limits_compressed_message_by_inflated_size(self) -> None:
        # Random bytes grow a little when compressed: the wire size is over the limit, the
        # message is not, and only the message counts.
        payload = random.Random(7).randbytes(1000)
        server, extension = deflate_pair(max_message_size=1000)
        stream = server.send(BytesMessage(data=payload))
        assert stream[0] & RSV1
        assert len(stream) - 4 > 1000
        proto = ClientProtocol(max_message_size=1000, extensions=[extension])
        assert proto.receive_data(stream) == [payload]
        assert_open(proto)


class TestControlFrames:
    """Ping, Pong (RFC 6455, sections 5.5.2 and 5.5.3)."""

    @pytest.mark.parametrize("payload", [b"", b"x", bytes(range(125))])
    def test_client_answers_ping_with_same_payload(self, payload: bytes) -> None:
        proto = ClientProtocol()
        assert proto.receive_data(frame(PING, payload)) == []
        events = server_events(proto.data_to_send())
        assert len(events) == 1
        assert isinstance(events[0], Pong)
        assert events[0].payload == payload
        assert proto.pongs_received() == []
        assert proto.data_to_send() == b""

    def test_client_answers_each_ping_in_order(self) -> None:
        proto = ClientProtocol()
        stream = frame(PING, b"1") + text("between") + frame(PING, b"2") + frame(PING, b"3")
        assert one_byte_at_a_time(proto, stream) == ["between"]
        assert summary(proto.data_to_send()) == [("pong", b"1"), ("pong", b"2"), ("pong", b"3")]

    def test_client_reports_unsolicited_pong(self) -> None:
        proto = ClientProtocol()
        stream = frame(PONG, b"heartbeat") + frame(PONG, b"") + binary(b"data")
        assert proto.receive_data(stream) == [b"data"]
        assert proto.pongs_received() == [b"heartbeat", b""]
        assert proto.pongs_received() == []
        assert proto.data_to_send() == b""
        assert_open(proto)

    @pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
    @pytest.mark.parametrize("size", [126, 200])
    def test_client_rejects_control_frame_over_125_bytes(self, opcode: int, size: int) -> None:
        payload = b"\x03\xe8" + b"r" * (size - 2)
        proto = ClientProtocol()
        assert proto.receive_data(frame(opcode, payload)) == []
        assert_failed(proto, 1002)

    @pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
    def test_client_rejects_fragmented_control_frame(self, opcode: int) -> None:
        stream = frame(opcode, b"\x03\xe8", fin=False) + frame(CONT, b"rest")
        proto = ClientProtocol()
        assert proto.receive_data(stream) == []
        assert_failed(proto, 1002)

    def test_client_does_not_answer_ping_after_sending_close(self) -> None:
        proto = ClientProtocol()
        proto.send_close()
        assert proto.receive_data(frame(PING, b"late")) == []
        assert proto.data_to_send() == b""
        assert proto.state is CloseState.CLOSING


class TestClose:
    """The closing handshake (RFC 6455, sections 5.5.1 and 7)."""

    @pytest.mark.parametrize(
        ("code", "reason"),
        [
            (1000, ""),
            (1001, "going away"),
            (1011, "oops"),
            (1012, ""),
            (3000, "é" * 30),
            (4999, "x"),
        ],
    )
    def test_client_reports_peer_close_and_echoes_it(self, code: int, reason: str) -> None:
        proto = ClientProtocol()
        assert proto.receive_data(text("last") + close_frame(code, reason.encode())) == ["last"]
        assert proto.close_received
        assert not proto.failed
        assert proto.close_code == code
        assert proto.close_reason == reason
        assert proto.state is CloseState.CLOSED
        assert not proto.can_send
        events = server_events(proto.data_to_send())
        assert len(events) == 1
        assert isinstance(events[0], CloseConnection)
        assert events[0].code == code
        assert events[0].reason == reason

    def test_client_reports_no_final_close_until_closed(self) -> None:
        proto = ClientProtocol()
        assert proto.final_close is None
        assert proto.ending == (1000, "")
        proto.send_close(1000, "bye")
        assert proto.state is CloseState.CLOSING
        assert proto.final_close is None
        proto.receive_data(close_frame(1000, b"bye"))
        assert proto.final_close == (1000, "bye")
        assert proto.ending == (1000, "bye")

    def test_client_closed_locally_keeps_its_code_over_the_peers(self) -> None:
        proto = ClientProtocol()
        assert client_frames(proto.send_close(1011, "keepalive ping timeout")) == [
            (CLOSE, (1011).to_bytes(2, "big") + b"keepalive ping timeout")
        ]
        proto.closed_locally(1011, "keepalive ping timeout")
        assert proto.state is CloseState.CLOSED
        assert proto.final_close == (1011, "keepalive ping timeout")
        assert proto.ending == (1011, "keepalive ping timeout")

    def test_client_lost_without_close_is_abnormal(self) -> None:
        proto = ClientProtocol()
        proto.receive_eof()
        assert proto.final_close == (1006, "")

    def test_client_echoes_close_without_status_as_empty_close(self) -> None:
        proto = ClientProtocol()
        assert proto.receive_data(close_frame()) == []
        assert proto.close_code == 1005
        assert proto.close_reason == ""
        assert proto.close_received
        assert client_frames(proto.data_to_send()) == [(CLOSE, b"")]

    @pytest.mark.parametrize(
        "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 0xFFFF]
    )
    def test_client_rejects_invalid_close_code(self, code: int) -> None:
        proto = ClientProtocol()
        assert proto.receive_data(close_frame(code, b"reason")) == []
        assert_failed(proto, 1002)

    def test_client_accepts_registered_close_code_1014(self) -> None:
        # 1014 (Bad Gateway) is registered like 1012 and 1013; wsproto alone refuses it.
        proto = ClientProtocol()
        assert proto.receive_data(text("last") + close_frame(1014, b"upstream down")) == ["last"]
        assert not proto.failed
        assert proto.close_code == 1014
        assert proto.close_reason == "upstream down"
        assert client_frames(proto.data_to_send()) == [(CLOSE, b"\x03\xf6upstream down")]

    def test_client_rejects_one_byte_close_payload(self) -> None:
        proto = ClientProtocol()
        assert proto.receive_data(frame(CLOSE, b"\x03")) == []
        assert_failed(proto, 1002)

    @pytest.mark.parametrize("reason", [b"\xff", b"ok \xc0\xaf", "€".encode()[:2]])
    def test_client_rejects_invalid_utf8_in_close_reason(self, reason: bytes) -> None:
        proto = ClientProtocol()
        assert proto.receive_data(close_frame(1000, reason)) == []
        assert_failed(proto, 1007)

    def test_client_completes_closing_handshake_it_started(self) -> None:
        proto = ClientProtocol()
        events = server_events(proto.send_close(1001, "leaving"))
        assert [(e.code, e.reason) for e in events if isinstance(e, CloseConnection)] == [
            (1001, "leaving")
        ]
        assert proto.state is CloseState.CLOSING
        assert proto.close_code is None
        assert not proto.can_send
        # Messages the server sent before it saw our Close are still delivered.
        stream = text("in flight") + binary(b"also") + frame(PONG, b"p")
        assert one_byte_at_a_time(proto, stream) == ["in flight", b"also"]
        assert proto.pongs_received() == [b"p"]
        assert proto.state is CloseState.CLOSING
        assert proto.receive_data(close_frame(1001) + text("after")) == []
        assert proto.close_received
        assert proto.state is CloseState.CLOSED  # type: ignore[comparison-overlap]
        assert proto.close_code == 1001
        assert proto.data_to_send() == b""
        assert proto.send_close() == b""

    def test_client_fails_during_closing_handshake_without_second_close(self) -> None:
        proto = ClientProtocol()
        proto.send_close()
        assert proto.receive_data(frame(TEXT, b"\xff")) == []
        assert proto.failed
        assert proto.close_code == 1007
        assert proto.state is CloseState.CLOSED
        assert proto.data_to_send() == b""

    def test_client_returns_nothing_after_protocol_error(self) -> None:
        proto = ClientProtocol()
        stream = text("a") + frame(TEXT, b"b", masked=True) + text("c") + frame(PING, b"no")
        assert proto.receive_data(stream) == ["a"]
        assert proto.receive_data(text("d") + frame(PING, b"no") + close_frame(1000)) == []
        assert_failed(proto, 1002)
        assert proto.pongs_received() == []

    def test_client_returns_nothing_after_peer_close(self) -> None:
        proto = ClientProtocol()
        stream = binary(b"a") + close_frame(1000) + binary(b"b") + frame(PING, b"no")
        assert proto.receive_data(stream) == [b"a"]
        assert proto.receive_data(binary(b"c") + frame(TEXT, b"\xff")) == []
        assert proto.close_code == 1000
        assert not proto.failed
        assert summary(proto.data_to_send()) == [("close", 1000)]

    def test_client_drops_partial_message_at_peer_close(self) -> None:
        proto = ClientProtocol()
        stream = frame(BINARY, bytes(100))
        assert proto.receive_data(stream[:50]) == []
        assert proto.receive_data(stream[50:] + close_frame(1000)) == [bytes(100)]
        proto = ClientProtocol()
        assert proto.receive_data(frame(TEXT, b"part", fin=False) + close_frame(1000)) == []
        assert proto.close_code == 1000

    def test_client_reports_abnormal_closure_on_eof(self) -> None:
        proto = ClientProtocol()
        assert proto.receive_data(text("hi") + binary(b"partial")[:4]) == ["hi"]
        proto.receive_eof()
        assert proto.close_code == 1006
        assert proto.close_reason == ""
        assert proto.state is CloseState.CLOSED
        assert not proto.close_received
        assert proto.data_to_send() == b""

    def test_client_reports_abnormal_closure_on_eof_while_closing(self) -> None:
        proto = ClientProtocol()
        proto.send_close()
        proto.receive_eof()
        assert proto.close_code == 1006
        assert proto.state is CloseState.CLOSED

    def test_client_keeps_close_code_after_eof(self) -> None:
        proto = ClientProtocol()
        proto.receive_data(close_frame(4000, b"done"))
        proto.receive_eof()
        assert (proto.close_code, proto.close_reason) == (4000, "done")
        failed = ClientProtocol()
        failed.receive_data(frame(CONT, b"x"))
        failed.receive_eof()
        assert failed.close_code == 1002


class TestFragmentAssembly:
    """Plain fragmented messages, assembled without wsproto (RFC 6455, section 5.4).

    The frame walk gathers the fragments of an uncompressed text or binary message itself;
    only the control frames between them go to wsproto.
    """

    CONTROLS = (frame(PING, b"p1"), frame(PONG, b"late"), frame(PING, b""))

    def stream(self) -> bytes:
        ping, pong, empty_ping = self.CONTROLS
        pieces = [b"h\xc3", b"\xa9llo \xe2\x82", b"\xac\xf0\x9d\x84\x9e"]  # "héllo €𝄞", cut
        first, middle, last = fragments(TEXT, pieces)
        big = fragments(BINARY, [bytes(range(130)), b"", b"\xff" * 200])
        return b"".join(
            [first, ping, middle, pong, last, big[0], empty_ping, *big[1:], text("whole")]
        )

    MESSAGES = ("héllo €𝄞", bytes(range(130)) + b"\xff" * 200, "whole")

    @pytest.mark.parametrize("step", [0, 1, 7, 64, 131])
    def test_client_assembles_fragments_without_wsproto(self, step: int) -> None:
        proto = ClientProtocol()
        seen = spy_on_wsproto(proto)
        stream = self.stream()
        cuts = range(step, len(stream), step) if step else ()
        assert feed(proto, stream, cuts) == list(self.MESSAGES)
        assert b"".join(seen) == b"".join(self.CONTROLS)
        assert summary(proto.data_to_send()) == [("pong", b"p1"), ("pong", b"")]
        assert proto.pongs_received() == [b"late"]
        assert_open(proto)

    def test_client_matches_wsproto_on_fragments_at_every_cut(self) -> None:
        expected = like_wsproto(self.stream())
        assert expected.messages == list(self.MESSAGES)

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_client_assembles_fragments_longer_than_a_read(self, opcode: int) -> None:
        payload = ("aé€𝄞" * 800).encode()
        pieces = [payload[i : i + 1000] for i in range(0, len(payload), 1000)]
        stream = b"".join(fragments(opcode, pieces))
        proto = ClientProtocol(max_message_size=None)
        seen = spy_on_wsproto(proto)
        message = feed(proto, stream, range(100, len(stream), 100))
        assert message == [payload.decode() if opcode == TEXT else payload]
        assert seen == []
        assert_open(proto)

    def test_client_assembles_whole_text_frame_across_reads_itself(self) -> None:
        message = "é€𝄞" * 50
        stream = text(message)
        for cut in range(len(stream) + 1):
            proto = ClientProtocol()
            seen = spy_on_wsproto(proto)
            assert feed(proto, stream, [cut]) == [message], cut
            assert seen == []

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_client_assembles_many_small_fragments(self, opcode: int) -> None:
        payload = random_text(random.Random(3), 64 * KIB) if opcode == TEXT else bytes(64 * KIB)
        pieces = [payload[i : i + 64] for i in range(0, len(payload), 64)]
        stream = b"".join(fragments(opcode, pieces))
        proto = ClientProtocol(max_message_size=None)
        seen = spy_on_wsproto(proto)
        messages = feed(proto, stream, range(4 * KIB, len(stream), 4 * KIB))
        assert messages == [payload.decode() if opcode == TEXT else payload]
        assert seen == []

    def test_client_keeps_message_types_apart(self) -> None:
        stream = b"".join(
            [
                *fragments(TEXT, [b"t", b"e", b"xt"]),
                *fragments(BINARY, [b"b", b"in"]),
                *fragments(TEXT, [b""]),
                *fragments(BINARY, [b"", b""]),
                text("w"),
            ]
        )
        expected = like_wsproto(stream)
        assert expected.messages == ["text", b"bin", "", b"", "w"]


class TestMisplacedFragments:
    """Frames out of place around fragmented messages (RFC 6455, section 5.4): 1002, as wsproto.

    wsproto never sees a message the frame walk assembles, so the walk must notice a new
    message starting inside it, or a continuation with nothing to continue, and fail exactly
    where and as wsproto would.
    """

    @pytest.mark.parametrize(
        "before",
        [
            b"",
            text("whole"),
            b"".join(fragments(BINARY, [b"a", b"b"])),
            b"".join(fragments(TEXT, [b"a", b"b"])) + frame(PING, b"p"),
        ],
        ids=["nothing", "whole", "fragments", "fragments-ping"],
    )
    def test_client_rejects_continuation_with_no_message(self, before: bytes) -> None:
        stream = before + frame(CONT, b"orphan") + text("never")
        assert like_wsproto(stream).close_code == 1002
        proto = ClientProtocol()
        proto.receive_data(stream)
        assert (proto.close_code, proto.close_reason) == wsproto_failure(stream)

    INTRUDERS: ClassVar[dict[str, bytes]] = {
        "text": text("new"),
        "binary": binary(b"new"),
        "text-fragment": frame(TEXT, b"new", fin=False),
        "binary-fragment": frame(BINARY, b"new", fin=False),
        "empty-text": text(""),
        "empty-binary": binary(b""),
        "16-bit": binary(bytes(130)),
        "masked": text("new", masked=True),
        "rsv2": binary(b"new", rsv=RSV2),
        "non-minimal": frame(TEXT, b"new", length_bytes=2),
    }

    @pytest.mark.parametrize("intruder", INTRUDERS.values(), ids=INTRUDERS.keys())
    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_client_rejects_new_message_inside_assembled_one(
        self, opcode: int, intruder: bytes
    ) -> None:
        stream = b"".join(
            [
                text("before"),
                frame(opcode, b"abc", fin=False),
                frame(PING, b"p"),
                frame(CONT, b"def", fin=False),
                intruder,
                frame(CONT, b"end"),
            ]
        )
        expected = like_wsproto(stream)
        assert expected.messages == ["before"]
        assert expected.sent == [("pong", b"p"), ("close", 1002)]
        proto = ClientProtocol()
        proto.receive_data(stream)
        assert (proto.close_code, proto.close_reason) == wsproto_failure(stream)

    def test_client_fails_on_new_message_at_its_first_payload_byte(self) -> None:
        # wsproto checks the message type once a frame has payload to give: the header of
        # the new message is not enough, its first byte is.
        first = frame(TEXT, b"started", fin=False)
        proto = ClientProtocol()
        assert proto.receive_data(first + binary(b"xyz")[:2]) == []
        assert_open(proto)
        assert proto.receive_data(b"x") == []
        assert_failed(proto, 1002)
        assert run_wsproto(first + binary(b"xyz")[:2]).close_code is None
        assert run_wsproto(first + binary(b"xyz")[:3]).close_code == 1002

    def test_client_fails_on_empty_new_message_at_its_header(self) -> None:
        proto = ClientProtocol()
        assert proto.receive_data(frame(BINARY, b"started", fin=False) + text("")[:1]) == []
        assert_open(proto)
        assert proto.receive_data(text("")[1:]) == []
        assert_failed(proto, 1002)

    MALFORMED: ClassVar[dict[str, bytes]] = {
        "masked": frame(CONT, b"cd", masked=True),
        "rsv1": frame(CONT, b"cd", rsv=RSV1),
        "rsv2": frame(CONT, b"cd", rsv=RSV2),
        "rsv3": frame(CONT, b"cd", rsv=RSV3),
        "16-bit-for-2": frame(CONT, b"cd", length_bytes=2),
        "64-bit-for-126": frame(CONT, bytes(126), length_bytes=8),
    }

    @pytest.mark.parametrize("malformed", MALFORMED.values(), ids=MALFORMED.keys())
    @pytest.mark.parametrize("fin", [True, False])
    def test_client_rejects_malformed_continuation(self, malformed: bytes, fin: bool) -> None:
        if not fin:
            malformed = bytes((malformed[0] & 0x7F,)) + malformed[1:]
        stream = frame(TEXT, b"ab", fin=False) + malformed + frame(CONT, b"end")
        assert like_wsproto(stream).close_code == 1002
        proto = ClientProtocol()
        assert proto.receive_data(stream) == []
        assert proto.close_reason == wsproto_failure(stream)[1]  # type: ignore[index]

    def test_client_rejects_misplaced_frame_after_partial_fragment(self) -> None:
        # The fragment before the intruder arrived over several reads.
        first = frame(BINARY, bytes(300), fin=False)
        stream = first + text("intruder")
        proto = ClientProtocol()
        assert feed(proto, stream, [10, 100, len(first)]) == []
        assert_failed(proto, 1002)


class TestIncrementalUTF8:
    """Text in fragments is checked as its bytes arrive (RFC 6455, sections 5.6 and 8.1)."""

    def test_client_fails_fast_inside_a_fragment_longer_than_a_read(self) -> None:
        second = frame(CONT, b"b" * 500 + b"\xff" + b"b" * 499, fin=False)
        stream = frame(TEXT, b"a" * 100, fin=False) + second + frame(CONT, b"end")
        bad = stream.index(b"\xff")
        proto = ClientProtocol()
        reads = [stream[i : i + 100] for i in range(0, len(stream), 100)]
        for i, read in enumerate(reads):
            assert proto.receive_data(read) == []
            if i < bad // 100:
                assert_open(proto)
        assert_failed(proto, 1007)
        assert run_wsproto(stream[: bad // 100 * 100]).close_code is None
        assert run_wsproto(stream[: bad + 1]).close_code == 1007

    @pytest.mark.parametrize("invalid", INVALID_UTF8)
    def test_client_fails_before_later_fragments_arrive(self, invalid: bytes) -> None:
        stream = b"".join(fragments(TEXT, [b"ok", b"x" + invalid + b"y", b"never"])[:2])
        proto = ClientProtocol()
        assert proto.receive_data(stream) == []
        assert_failed(proto, 1007)
        assert run_wsproto(stream).close_code == 1007

    @pytest.mark.parametrize("char", ["é", "€", "𝄞", "\U0010ffff"])
    def test_client_accepts_code_point_cut_across_fragments_and_reads(self, char: str) -> None:
        encoded = char.encode()
        for at in range(1, len(encoded)):
            pieces = [b"a" + encoded[:at], b"", encoded[at:] + b"z"]
            stream = b"".join(fragments(TEXT, pieces))
            assert like_wsproto(stream).messages == [f"a{char}z"]

    def test_client_fails_on_the_byte_that_breaks_a_cut_code_point(self) -> None:
        # "\xe2\x82" may still become a code point; the "z" of the next fragment cannot.
        stream = b"".join(fragments(TEXT, [b"a\xe2\x82", b"z"]))
        assert like_wsproto(stream).close_code == 1007
        proto = ClientProtocol()
        assert proto.receive_data(stream[:-1]) == []
        assert_open(proto)
        assert proto.receive_data(stream[-1:]) == []
        assert_failed(proto, 1007)

    @pytest.mark.parametrize("tail", [b"\xc3", b"\xe2\x82", b"\xf0\x9d\x84"])
    @pytest.mark.parametrize("empty_last", [True, False])
    def test_client_rejects_code_point_cut_at_end_of_message(
        self, tail: bytes, empty_last: bool
    ) -> None:
        pieces = [b"abc", b"d" + tail, b""] if empty_last else [b"abc", b"d" + tail]
        stream = b"".join(fragments(TEXT, pieces))
        assert like_wsproto(stream).close_code == 1007

    def test_client_rejects_code_point_cut_at_end_of_frame_across_reads(self) -> None:
        stream = frame(TEXT, b"abc\xe2\x82")
        proto = ClientProtocol()
        assert proto.receive_data(stream[:-1]) == []
        assert_open(proto)
        assert proto.receive_data(stream[-1:]) == []
        assert_failed(proto, 1007)
        assert like_wsproto(stream).close_code == 1007


class TestFragmentLimits:
    """The size limit across the fragments of a message (close code 1009)."""

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_client_fails_at_header_of_fragment_past_limit(self, opcode: int) -> None:
        first, second, third = fragments(opcode, [b"a" * 60, b"b" * 30, b"c" * 11])
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(first + second + third[:1]) == []
        assert_open(proto)
        assert proto.receive_data(third[1:2]) == []
        assert_failed(proto, 1009)

    def test_client_fails_at_extended_length_past_limit(self) -> None:
        first, second = fragments(BINARY, [bytes(100), bytes(126)])
        assert second[1] == 126
        proto = ClientProtocol(max_message_size=200)
        assert proto.receive_data(first + second[:3]) == []
        assert_open(proto)
        assert proto.receive_data(second[3:4]) == []
        assert_failed(proto, 1009)

    @pytest.mark.parametrize("step", [1, 37, 1000])
    def test_client_accepts_fragments_up_to_limit_across_reads(self, step: int) -> None:
        pieces = [bytes(300), b"", bytes(200), bytes(500)]
        stream = b"".join(fragments(BINARY, pieces)) + text("next")
        proto = ClientProtocol(max_message_size=1000)
        assert feed(proto, stream, range(step, len(stream), step)) == [bytes(1000), "next"]
        assert_open(proto)

    def test_client_fails_on_one_byte_past_limit_in_last_fragment(self) -> None:
        stream = b"".join(fragments(TEXT, [b"a" * 500, b"b" * 500, b"", b"c"]))
        proto = ClientProtocol(max_message_size=1000)
        assert one_byte_at_a_time(proto, stream) == []
        assert_failed(proto, 1009)

    STREAMS: ClassVar[dict[str, bytes]] = {
        "new-message": frame(TEXT, b"a", fin=False) + binary(bytes(300)),
        "new-fragment": frame(BINARY, b"a", fin=False) + frame(TEXT, bytes(300), fin=False),
        "masked": frame(TEXT, b"a", fin=False) + frame(CONT, bytes(300), masked=True),
        "rsv1": frame(BINARY, b"a", fin=False) + frame(CONT, bytes(300), rsv=RSV1),
        "orphan": b"".join(fragments(TEXT, [b"a", b"b"])) + frame(CONT, bytes(300)),
    }

    @pytest.mark.parametrize("stream", STREAMS.values(), ids=STREAMS.keys())
    def test_client_reports_protocol_error_before_size_inside_message(self, stream: bytes) -> None:
        for cuts in ((), range(1, len(stream))):
            proto = ClientProtocol(max_message_size=100)
            feed(proto, stream, cuts)
            assert_failed(proto, 1002)
        assert run_wsproto(stream).close_code == 1002

    def test_client_reports_invalid_utf8_before_later_size(self) -> None:
        stream = frame(TEXT, b"ab\xff", fin=False) + frame(CONT, bytes(200))
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(stream) == []
        assert_failed(proto, 1007)

    def test_client_reports_size_before_invalid_utf8_in_same_frame(self) -> None:
        stream = frame(TEXT, b"ab", fin=False) + frame(CONT, b"\xff" * 200)
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(stream) == []
        assert_failed(proto, 1009)


def sent_close(proto: ClientProtocol) -> tuple[int, str]:
    """The code and reason of the Close frame the client sent (checked by a wsproto server)."""
    closes = [e for e in server_events(proto.data_to_send()) if isinstance(e, CloseConnection)]
    assert len(closes) == 1
    return int(closes[0].code), closes[0].reason or ""


class TestTooBigReason:
    """A message over the limit names its size and the limit, locally and in the Close frame."""

    def test_whole_message_names_its_size_and_the_limit(self) -> None:
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(binary(bytes(101))[:2]) == []
        reason = "message of 101 bytes exceeds max_message_size_bytes=100"
        assert (proto.close_code, proto.close_reason) == (1009, reason)
        assert sent_close(proto) == (1009, reason)

    def test_message_with_fragments_to_come_is_more_than_the_limit(self) -> None:
        first, second, _ = fragments(TEXT, [b"a" * 60, b"b" * 41, b"c"])
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(first + second) == []
        reason = "message of more than 100 bytes exceeds max_message_size_bytes=100"
        assert (proto.close_code, proto.close_reason) == (1009, reason)
        assert sent_close(proto) == (1009, reason)

    def test_last_fragment_past_the_limit_gives_the_whole_size(self) -> None:
        stream = b"".join(fragments(BINARY, [bytes(60), bytes(45)]))
        proto = ClientProtocol(max_message_size=100)
        assert proto.receive_data(stream) == []
        reason = "message of 105 bytes exceeds max_message_size_bytes=100"
        assert sent_close(proto) == (1009, reason)

    @pytest.mark.parametrize("protocol_limit", [1000, None])
    def test_compressed_message_names_the_limit_not_the_extension(
        self, protocol_limit: int | None
    ) -> None:
        # wsproto reports the extension's refusal as "error in extension".
        server, extension = deflate_pair(max_message_size=1000)
        stream = server.send(BytesMessage(data=bytes(5000)))
        assert stream[0] & RSV1
        proto = ClientProtocol(max_message_size=protocol_limit, extensions=[extension])
        assert proto.receive_data(stream) == []
        reason = "message of more than 1000 bytes exceeds max_message_size_bytes=1000"
        assert (proto.close_code, proto.close_reason) == (1009, reason)
        assert sent_close(proto) == (1009, reason)


def empty_fragments(opcode: int, count: int, last: bytes = b"") -> bytes:
    """One message in ``count`` frames: all empty but the last, which holds ``last``."""
    return b"".join(fragments(opcode, [b""] * (count - 1) + [last]))


class TestFragmentCount:
    """The number of frames a message may arrive in (close code 1009).

    Every frame of a message being assembled is kept until the message ends: without a count,
    a message of millions of empty frames grows memory while its size stays under the limit.
    """

    def test_default_is_4096_as_in_websockets(self) -> None:
        assert DEFAULT_MAX_FRAGMENTS == 4096
        proto = ClientProtocol()
        assert proto.receive_data(empty_fragments(BINARY, 4096, b"end")) == [b"end"]
        assert_open(proto)
        proto.receive_data(empty_fragments(BINARY, 4097, b"end"))
        assert_failed(proto, 1009)

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_client_accepts_message_in_exactly_max_fragments(self, opcode: int) -> None:
        stream = b"".join(fragments(opcode, [b"a", b"", b"b", b"c"]))
        proto = ClientProtocol(max_fragments=4)
        assert proto.receive_data(stream) == ["abc" if opcode == TEXT else b"abc"]
        assert_open(proto)

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_client_fails_at_the_header_of_the_frame_past_the_count(self, opcode: int) -> None:
        head = b"".join(fragments(opcode, [b"a", b"", b"b", b"c", b"d"])[:4])
        proto = ClientProtocol(max_fragments=4)
        assert proto.receive_data(head) == []
        assert_open(proto)
        assert proto.receive_data(frame(CONT, b"", fin=False)[:2]) == []
        reason = (
            "too many fragments: 5 frames for 3 bytes, over max_fragments=4 plus one per 64 bytes"
        )
        assert (proto.close_code, proto.close_reason) == (1009, reason)
        assert sent_close(proto) == (1009, reason)

    def test_count_starts_again_with_each_message(self) -> None:
        stream = empty_fragments(TEXT, 4, b"x") * 3
        proto = ClientProtocol(max_fragments=4)
        assert proto.receive_data(stream) == ["x", "x", "x"]
        assert_open(proto)

    def test_control_frames_between_fragments_do_not_count(self) -> None:
        first, *rest = fragments(BINARY, [b"a", b"b", b"c"])
        stream = first + frame(PING, b"1") + frame(PING, b"2") + b"".join(rest)
        proto = ClientProtocol(max_fragments=3)
        assert proto.receive_data(stream) == [b"abc"]
        assert summary(proto.data_to_send()) == [("pong", b"1"), ("pong", b"2")]

    def test_count_holds_one_byte_at_a_time(self) -> None:
        proto = ClientProtocol(max_fragments=4)
        assert one_byte_at_a_time(proto, empty_fragments(BINARY, 4, b"ok")) == [b"ok"]
        one_byte_at_a_time(proto, empty_fragments(BINARY, 5, b"no"))
        assert_failed(proto, 1009)

    def test_a_large_frame_read_in_many_pieces_is_one_fragment(self) -> None:
        # Counted per frame, not per read: a big message trickling in stays whole.
        stream = b"".join(fragments(BINARY, [bytes(10_000), bytes(10_000)]))
        proto = ClientProtocol(max_message_size=None, max_fragments=2)
        assert feed(proto, stream, range(7, len(stream), 7)) == [bytes(20_000)]
        assert_open(proto)

    def test_compressed_message_in_too_many_frames_fails(self) -> None:
        server, extension = deflate_pair(max_message_size=None)
        stream = b"".join(
            server.send(BytesMessage(data=b"", message_finished=False)) for _ in range(4)
        ) + server.send(BytesMessage(data=b"end", message_finished=True))
        assert stream[0] & RSV1
        ok = ClientProtocol(max_fragments=5, extensions=[deflate_pair(None)[1]])
        assert ok.receive_data(stream) == [b"end"]
        proto = ClientProtocol(max_fragments=4, extensions=[extension])
        assert proto.receive_data(stream) == []
        assert_failed(proto, 1009)

    def test_millions_of_empty_fragments_stop_at_the_count(self) -> None:
        # A flood of empty continuation frames: the connection fails at frame 4097, and
        # nothing the peer sends afterwards is kept.
        chunk = frame(CONT, b"", fin=False) * 100_000
        proto = ClientProtocol()
        assert proto.receive_data(frame(BINARY, b"", fin=False)) == []
        for _ in range(10):  # a million frames
            assert proto.receive_data(chunk) == []
        assert proto.close_reason.startswith("too many fragments: 4097 frames for 0 bytes")
        assert_failed(proto, 1009)
        assert proto._bin_parts == []

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_many_frames_of_64_bytes_are_accepted(self, opcode: int) -> None:
        # Autobahn 9.3.1 and 9.4.1: 4 MiB in 65,536 frames of 64 bytes.
        stream = b"".join(fragments(opcode, [b"a" * 64] * 65_536))
        proto = ClientProtocol(max_message_size=4 * MIB)
        assert proto.receive_data(stream) == ["a" * 4 * MIB if opcode == TEXT else b"a" * 4 * MIB]
        assert_open(proto)

    def test_past_the_count_each_frame_must_bring_64_bytes(self) -> None:
        # Frames of one byte: 4,096 of them, then one more per 64 bytes.
        proto = ClientProtocol()
        count = 0
        for piece in fragments(BINARY, [b"x"] * 10_000):
            proto.receive_data(piece)
            count += 1
            if proto.failed:
                break
        assert count == 4162  # the first count past 4,096 + count // 64
        assert count - 4096 > count // 64
        assert (count - 1) - 4096 <= (count - 1) // 64
        assert proto.close_reason == (
            "too many fragments: 4162 frames for 4162 bytes, over max_fragments=4096"
            " plus one per 64 bytes"
        )
        assert_failed(proto, 1009)


class TestCompressedSessionFragments:
    """Fragmented messages once permessage-deflate is agreed (RFC 7692, section 6).

    Compressed messages (RSV1 on their first frame) go entirely to wsproto; plain ones are
    assembled by the frame walk as in any session.
    """

    def test_client_assembles_plain_fragments_itself(self) -> None:
        server, extensions = deflate_session()
        before = server.send(TextMessage(data="compressed " * 20))
        ping = frame(PING, b"p")
        plain = fragments(BINARY, [b"plain", b" ", b"bytes"])
        after = server.send(TextMessage(data="compressed again " * 20))  # context takeover
        assert before[0] & RSV1
        assert after[0] & RSV1
        stream = b"".join([before, plain[0], ping, *plain[1:], after])
        proto = ClientProtocol(extensions=extensions())
        seen = spy_on_wsproto(proto)
        messages = proto.receive_data(stream)
        assert messages == ["compressed " * 20, b"plain bytes", "compressed again " * 20]
        assert b"".join(seen) == before + ping + after
        assert like_wsproto(stream, extensions).messages == messages

    def test_client_leaves_compressed_fragments_to_wsproto(self) -> None:
        server, extensions = deflate_session()
        stream = b"".join(
            [
                server.send(BytesMessage(data=b"one " * 50, message_finished=False)),
                frame(PING, b"p"),
                server.send(BytesMessage(data=b"two " * 50, message_finished=False)),
                server.send(BytesMessage(data=b"", message_finished=True)),
            ]
        )
        assert stream[0] & RSV1
        proto = ClientProtocol(extensions=extensions())
        seen = spy_on_wsproto(proto)
        assert proto.receive_data(stream) == [b"one " * 50 + b"two " * 50]
        assert b"".join(seen) == stream
        assert like_wsproto(stream, extensions).messages == [b"one " * 50 + b"two " * 50]

    def test_client_rejects_plain_message_inside_compressed_one(self) -> None:
        server, extensions = deflate_session()
        started = server.send(TextMessage(data="compressed", message_finished=False))
        for intruder in (text("plain"), frame(BINARY, b"plain", fin=False)):
            assert like_wsproto(started + intruder, extensions).close_code == 1002

    @pytest.mark.parametrize(
        "intruder",
        [
            frame(TEXT, b"x", rsv=RSV1),
            frame(BINARY, b"x", rsv=RSV1, fin=False),
            frame(CONT, b"x", rsv=RSV1),
            frame(TEXT, b"x"),
        ],
        ids=["compressed", "compressed-fragment", "rsv1-continuation", "plain"],
    )
    def test_client_rejects_misplaced_frame_inside_plain_message(self, intruder: bytes) -> None:
        _, extensions = deflate_session()
        stream = frame(BINARY, b"plain", fin=False) + frame(PING, b"") + intruder
        expected = like_wsproto(stream, extensions)
        assert expected.close_code == 1002
        proto = ClientProtocol(extensions=extensions())
        proto.receive_data(stream)
        assert (proto.close_code, proto.close_reason) == wsproto_failure(stream, extensions())


class TestFragmentsWhileClosing:
    """Fragmented messages around the closing handshake (RFC 6455, section 7)."""

    def stream(self) -> bytes:
        first, middle, last = fragments(TEXT, [b"in ", b"fli", b"ght"])
        return first + frame(PING, b"late") + middle + frame(PONG, b"p") + last

    def test_client_assembles_fragments_after_sending_close(self) -> None:
        proto = ClientProtocol()
        proto.send_close(1000)
        assert one_byte_at_a_time(proto, self.stream()) == ["in flight"]
        assert proto.data_to_send() == b""  # no pong once a Close was sent
        assert proto.pongs_received() == [b"p"]
        assert proto.state is CloseState.CLOSING
        assert proto.receive_data(close_frame(1000)) == []
        assert proto.state is CloseState.CLOSED  # type: ignore[comparison-overlap]
        assert proto.close_code == 1000

    def test_client_matches_wsproto_when_closing_at_any_byte(self) -> None:
        stream = self.stream() + b"".join(fragments(BINARY, [b"a", b"b"])) + close_frame(1000)
        for close_at in range(len(stream) + 1):
            for cuts in ((), range(1, len(stream))):
                expected = run_wsproto(stream, cuts, close_at)
                assert run_client(stream, cuts, close_at) == expected, close_at

    @pytest.mark.parametrize(
        ("bad", "code"),
        [(text("new"), 1002), (frame(CONT, b"\xff"), 1007), (frame(CONT, b"x", rsv=RSV2), 1002)],
        ids=["new-message", "invalid-utf8", "rsv2"],
    )
    def test_client_fails_inside_fragments_while_closing(self, bad: bytes, code: int) -> None:
        proto = ClientProtocol()
        proto.send_close(1000)
        assert proto.receive_data(frame(TEXT, b"a", fin=False) + bad) == []
        assert proto.failed
        assert proto.close_code == code
        assert proto.state is CloseState.CLOSED
        assert proto.data_to_send() == b""  # a Close frame went already

    def test_client_reads_nothing_after_failing_inside_fragments(self) -> None:
        proto = ClientProtocol()
        partial = frame(TEXT, b"ok" + b"\xff" + b"x" * 100, fin=False)
        assert proto.receive_data(partial[:10]) == []
        assert_failed(proto, 1007)
        later = partial[10:] + frame(CONT, b"end") + frame(PING, b"p") + text("no")
        assert proto.receive_data(later) == []
        assert proto.pongs_received() == []
        assert proto.data_to_send() == b""

    def test_client_reads_nothing_after_peer_close_inside_fragments(self) -> None:
        proto = ClientProtocol()
        first, last = fragments(BINARY, [bytes(200), b"end"])
        assert proto.receive_data(first[:50]) == []
        assert proto.receive_data(first[50:] + close_frame(1001)) == []
        assert proto.receive_data(last + text("no") + frame(PING, b"p")) == []
        assert proto.close_received
        assert proto.close_code == 1001
        assert summary(proto.data_to_send()) == [("close", 1001)]


class TestSending:
    """Frames the client sends: masked (RFC 6455, section 5.3), parsed back by a wsproto server."""

    @pytest.mark.parametrize("size", [0, 1, 125, 126, 0xFFFF, 0x10000, 100_000])
    def test_client_sends_text_message(self, size: int) -> None:
        message = ("aé€𝄞" * size)[:size]
        events = server_events(ClientProtocol().send_text(message))
        assert len(events) == 1
        assert isinstance(events[0], TextMessage)
        assert events[0].data == message
        assert events[0].message_finished

    @pytest.mark.parametrize("size", [0, 3, 125, 126, 1023, 1024, 1025, 0xFFFF, 0x10000, 100_003])
    def test_client_sends_binary_message(self, size: int) -> None:
        payload = random.Random(size).randbytes(size)
        data = ClientProtocol().send_bytes(payload)
        assert data[1] & 0x80
        events = server_events(data)
        assert len(events) == 1
        assert isinstance(events[0], BytesMessage)
        assert events[0].data == payload

    def test_client_masks_with_fresh_keys(self) -> None:
        proto = ClientProtocol()
        frames = [proto.send_bytes(b"same payload") for _ in range(2000)]
        keys = {data[2:6] for data in frames}
        assert len(keys) > 1900
        assert client_frames(b"".join(frames)) == [(BINARY, b"same payload")] * 2000

    @pytest.mark.parametrize("size", [*range(10), 1023, 1024, 1025, 4099])
    def test_mask_matches_wsproto(self, size: int) -> None:
        rng = random.Random(size)
        payload = rng.randbytes(size)
        for _ in range(4):
            key = rng.randbytes(4)
            expected = bytes(XorMaskerSimple(key).process(bytearray(payload)))
            assert mask(payload, key) == expected == xor(payload, key)
            # The accelerated masker (websockets' C one, when installed) agrees.
            assert fast_mask(payload, key) == expected

    @pytest.mark.parametrize("payload", [b"", b"ping!", bytes(125)])
    def test_client_sends_ping(self, payload: bytes) -> None:
        events = server_events(ClientProtocol().send_ping(payload))
        assert len(events) == 1
        assert isinstance(events[0], Ping)
        assert events[0].payload == payload

    @pytest.mark.parametrize(
        ("code", "reason"), [(1000, None), (1000, ""), (1001, "bye"), (4000, "€" * 10)]
    )
    def test_client_sends_close(self, code: int, reason: str | None) -> None:
        proto = ClientProtocol()
        events = server_events(proto.send_close(code, reason))
        assert len(events) == 1
        assert isinstance(events[0], CloseConnection)
        assert (events[0].code, events[0].reason) == (code, reason or "")
        assert proto.state is CloseState.CLOSING
        assert not proto.can_send
        assert proto.send_close(1000) == b""

    def test_client_sends_events(self) -> None:
        proto = ClientProtocol()
        stream = b"".join(
            [
                proto.send_event(TextMessage(data="frag", message_finished=False)),
                proto.send_event(Ping(payload=b"inside")),
                proto.send_event(TextMessage(data="mented", message_finished=True)),
                proto.send_text("whole"),
                proto.send_event(BytesMessage(data=b"\x00", message_finished=False)),
                proto.send_bytes(b"\x01"),  # continues the message, as with wsproto
                proto.send_bytes(b"\x02"),
                proto.send_event(Pong(payload=b"unsolicited")),
                proto.send_event(BytesMessage(data=b"one")),
                proto.send_event(CloseConnection(code=1000, reason="done")),
            ]
        )
        events = server_events(stream)
        assert events == [
            TextMessage(data="frag", frame_finished=True, message_finished=False),
            Ping(payload=b"inside"),
            TextMessage(data="mented", frame_finished=True, message_finished=True),
            TextMessage(data="whole", frame_finished=True, message_finished=True),
            BytesMessage(data=b"\x00", frame_finished=True, message_finished=False),
            BytesMessage(data=b"\x01", frame_finished=True, message_finished=True),
            BytesMessage(data=b"\x02", frame_finished=True, message_finished=True),
            Pong(payload=b"unsolicited"),
            BytesMessage(data=b"one", frame_finished=True, message_finished=True),
            CloseConnection(code=1000, reason="done"),
        ]
        assert proto.state is CloseState.CLOSING

    def test_client_frames_whole_messages_itself_after_fragmented_one(self) -> None:
        # Fragments go through wsproto; once a message is finished (here by send_text), whole
        # messages are framed by the client again, without wsproto.
        proto = ClientProtocol()
        through_wsproto: list[Event] = []
        send = proto._wsproto().send

        def spy(event: Event) -> bytes:
            through_wsproto.append(event)
            return send(event)

        proto._wsproto().send = spy  # type: ignore[method-assign]
        stream = b"".join(
            [
                proto.send_event(TextMessage(data="a", message_finished=False)),
                proto.send_text("b"),
                proto.send_text("c"),
                proto.send_bytes(b"d"),
                proto.send_event(BytesMessage(data=b"e", message_finished=False)),
                proto.send_bytes(b"f"),
                proto.send_bytes(b"g"),
            ]
        )
        assert [type(event) for event in through_wsproto] == [
            TextMessage,
            TextMessage,
            BytesMessage,
            BytesMessage,
        ]
        assert [event.data for event in server_events(stream)] == [  # type: ignore[attr-defined]
            "a",
            "b",
            "c",
            b"d",
            b"e",
            b"f",
            b"g",
        ]

    @pytest.mark.parametrize(
        "send",
        [
            lambda p: p.send_text("late"),
            lambda p: p.send_bytes(b"late"),
            lambda p: p.send_ping(b"late"),
            lambda p: p.send_event(TextMessage(data="late")),
            lambda p: p.send_event(Pong(payload=b"late")),
        ],
        ids=["text", "bytes", "ping", "event", "pong"],
    )
    @pytest.mark.parametrize("how", ["sent", "received", "failed"])
    def test_client_refuses_to_send_after_close(
        self, send: Callable[[ClientProtocol], bytes], how: str
    ) -> None:
        proto = ClientProtocol()
        if how == "sent":
            proto.send_close()
        elif how == "received":
            proto.receive_data(close_frame(1000))
        else:
            proto.receive_data(frame(CONT, b"x"))
        assert not proto.can_send
        with pytest.raises(LocalProtocolError):
            send(proto)
        assert proto.send_close() == b""

    def test_client_send_close_after_peer_close_is_empty(self) -> None:
        proto = ClientProtocol()
        proto.receive_data(close_frame(1001))
        assert summary(proto.data_to_send()) == [("close", 1001)]
        assert proto.send_close(1000) == b""
        assert proto.state is CloseState.CLOSED


# --------------------------------------------------------------------------- equivalence


def deflate_pair(max_message_size: int | None) -> tuple[Connection, PerMessageDeflate]:
    """A wsproto server compressing with permessage-deflate, and the client's agreed extension."""
    options = DeflateOptions()
    server_extension = PerMessageDeflate()
    answer = server_extension.accept(offer_header(options))
    assert isinstance(answer, str)
    header = f"permessage-deflate; {answer}" if answer else "permessage-deflate"
    server = Connection(ConnectionType.SERVER, [server_extension])
    return server, accept_response(header, options, max_message_size)


def compressed_stream(rng: random.Random) -> tuple[bytes, str]:
    """Compressed and plain messages from a wsproto server, pings, maybe a bad frame.

    Messages may come in fragments with control frames between them; a bad frame may break
    one. Returns the stream and the ``Sec-WebSocket-Extensions`` answer that agreed compression.
    """
    options = DeflateOptions()
    server_extension = PerMessageDeflate()
    answer = server_extension.accept(offer_header(options))
    assert isinstance(answer, str)
    server = Connection(ConnectionType.SERVER, [server_extension])
    parts: list[bytes] = []

    def control() -> bytes:
        return frame(rng.choice((PING, PONG)), rng.randbytes(rng.randint(0, 30)))

    for _ in range(rng.randint(1, 8)):
        roll = rng.random()
        size = random_size(rng)
        is_text = rng.random() < 0.5
        payload = random_text(rng, size) if is_text else rng.randbytes(size)
        count = rng.randint(1, 3) if rng.random() < 0.8 else rng.randint(4, 20)
        if roll < 0.4:  # compressed by the server, maybe in fragments
            events: list[TextMessage | BytesMessage]
            if is_text:
                chars = payload.decode()
                cuts = sorted(rng.randint(0, len(chars)) for _ in range(count - 1))
                edges = [0, *cuts, len(chars)]
                events = [
                    TextMessage(data=chars[a:b], message_finished=i == count - 1)
                    for i, (a, b) in enumerate(itertools.pairwise(edges))
                ]
            else:
                events = [
                    BytesMessage(data=piece, message_finished=i == count - 1)
                    for i, piece in enumerate(split(rng, payload, count))
                ]
            for event in events:
                parts.append(server.send(event))
                if not event.message_finished and rng.random() < 0.3:
                    parts.append(control())
        elif roll < 0.75:  # plain frames (no RSV1): the client assembles these itself
            pieces = fragments(TEXT if is_text else BINARY, split(rng, payload, count))
            for i, piece in enumerate(pieces):
                parts.append(piece)
                if i < len(pieces) - 1 and rng.random() < 0.3:
                    parts.append(control())
        elif roll < 0.9:
            parts.append(control())
        else:
            bad = [
                frame(PING, b"x", rsv=RSV1),
                frame(BINARY, b"x", rsv=RSV2),
                frame(TEXT, b"a", fin=False) + frame(CONT, b"b", rsv=RSV1),
                frame(TEXT, b"a", fin=False) + control() + frame(CONT, b"b", masked=True),
                frame(BINARY, b"a", fin=False) + frame(TEXT, b"b", rsv=RSV1),
                frame(BINARY, b"a", fin=False) + control() + frame(BINARY, b"b"),
                frame(TEXT, "€".encode()[:2], fin=False) + frame(CONT, b""),
                frame(CONT, b"x"),
                frame(TEXT, b"\xff"),
            ]
            if rng.random() < 0.3:
                # A compressed message left unfinished, and a plain one inside it.
                parts.append(server.send(BytesMessage(data=payload, message_finished=False)))
                parts.append(rng.choice((text("inside"), frame(BINARY, b"in", fin=False))))
                break
            parts.append(rng.choice(bad))
    return b"".join(parts), f"permessage-deflate; {answer}" if answer else "permessage-deflate"


class TestEquivalence:
    """``ClientProtocol`` behaves exactly like wsproto, plus the size limit at frame headers."""

    CASES = 60

    @staticmethod
    def check(
        stream: bytes,
        frames: Sequence[Frame],
        rng: random.Random,
        limit: int | None,
        label: str,
    ) -> None:
        cuts = random_cuts(rng, len(stream))
        close_at = rng.randint(0, len(stream)) if rng.random() < 0.2 else None
        expected = reference(stream, frames, cuts, close_at, limit)
        actual = run_client(stream, cuts, close_at, max_message_size=limit)
        assert actual == expected, f"{label}: cuts={cuts} close_at={close_at} limit={limit}"

    @pytest.mark.parametrize("seed", range(10))
    def test_client_matches_wsproto_on_random_streams(self, seed: int) -> None:
        rng = random.Random(seed)
        for case in range(self.CASES):
            frames = random_frames(rng)
            stream = b"".join(f.data for f in frames)
            if rng.random() < 0.2:
                stream = stream[: rng.randint(0, len(stream))]
            self.check(stream, frames, rng, None, f"seed={seed} case={case}")

    @pytest.mark.parametrize("seed", range(10))
    def test_client_matches_wsproto_with_size_limit(self, seed: int) -> None:
        rng = random.Random(1000 + seed)
        for case in range(self.CASES):
            frames = random_frames(rng)
            stream = b"".join(f.data for f in frames)
            if rng.random() < 0.2:
                stream = stream[: rng.randint(0, len(stream))]
            limit = rng.choice((0, 1, 10, 125, 126, 200, 300, 0xFFFF, 0x10000))
            self.check(stream, frames, rng, limit, f"seed={seed} case={case}")

    @pytest.mark.slow
    @pytest.mark.parametrize("seed", range(100, 200))
    def test_client_matches_wsproto_long_run(self, seed: int) -> None:
        self.test_client_matches_wsproto_on_random_streams(seed)
        self.test_client_matches_wsproto_with_size_limit(seed)
        self.test_client_matches_wsproto_with_compression(seed)

    def test_reference_oracle_detects_differences(self) -> None:
        # The comparison can fail: a client that ignored the limit would not match it.
        stream = binary(bytes(50)) + text("x" * 200) + binary(b"never")
        frames = [data_frame(BINARY, bytes(50)), data_frame(TEXT, b"x" * 200)]
        expected = reference(stream, frames, [], None, 100)
        assert expected.messages == [bytes(50)]
        assert expected.close_code == 1009
        assert run_client(stream, max_message_size=100) == expected
        assert run_client(stream, max_message_size=None) != expected

    @pytest.mark.parametrize("seed", range(4))
    def test_client_matches_wsproto_with_compression(self, seed: int) -> None:
        rng = random.Random(2000 + seed)
        for case in range(25):
            stream, header = compressed_stream(rng)
            cuts = random_cuts(rng, len(stream))
            options = DeflateOptions()
            expected = run_wsproto(
                stream, cuts, extensions=[accept_response(header, options, None)]
            )
            actual = run_client(stream, cuts, extensions=[accept_response(header, options, None)])
            assert actual == expected, f"seed={seed} case={case} cuts={cuts}"


def _binary_frame(payload: bytes, *, first: bool, final: bool) -> bytes:
    b0 = (0x80 if final else 0) | (0x2 if first else 0x0)
    length = len(payload)
    if length < 126:
        return bytes([b0, length]) + payload
    return bytes([b0, 126]) + length.to_bytes(2, "big") + payload


def test_a_binary_message_over_several_reads_arrives_whole_as_bytes() -> None:
    payload = bytes(range(256)) * 200  # 51,200 bytes in three frames, fed in small reads
    frames = (
        _binary_frame(payload[:1000], first=True, final=False)
        + _binary_frame(payload[1000:30000], first=False, final=False)
        + _binary_frame(payload[30000:], first=False, final=True)
    )
    protocol = ClientProtocol(max_message_size=1 << 20)
    got: list[str | bytes] = []
    for start in range(0, len(frames), 777):
        got += protocol.receive_data(frames[start : start + 777])
    assert len(got) == 1
    assert type(got[0]) is bytes
    assert got[0] == payload


def test_parts_assembled_before_a_message_streams_are_handed_over_as_bytes() -> None:
    # Its first fragments fit max_message_size and are kept (as views of the reads);
    # the next one takes it past the limit: the message streams, from those parts on.
    protocol = ClientProtocol(max_message_size=4096, max_fragmented_size=1 << 20)
    first, second = b"a" * 3000, b"b" * 3000
    frames = _binary_frame(first, first=True, final=False) + _binary_frame(
        second, first=False, final=True
    )
    out = protocol.receive_data(frames[:1500]) + protocol.receive_data(frames[1500:])
    (streamed,) = out
    assert isinstance(streamed, StreamedMessage)
    parts = streamed.take()
    assert all(type(part) is bytes for part in parts)
    assert b"".join(parts) == first + second  # type: ignore[arg-type]
    assert streamed.finished
