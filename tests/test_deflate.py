"""permessage-deflate (RFC 7692): negotiation, round trips and the inflated size limit.

No event loop: a client-side wsproto ``Connection`` carrying the extension talks to a
server-side one carrying wsproto's own ``PerMessageDeflate``, agreed through
``PerMessageDeflate.accept``, the way a wsproto server answers an offer.
"""

from __future__ import annotations

import random
import struct
import tracemalloc
import zlib
from collections.abc import Iterable

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, TextMessage
from wsproto.extensions import PerMessageDeflate

from streams.protocol._deflate import (
    DeflateOptions,
    LimitedPerMessageDeflate,
    accept_response,
    offer_header,
)

KIB = 1024
MIB = 1024 * KIB
DEFAULTS = DeflateOptions()


# --------------------------------------------------------------------------- helpers


def negotiate(
    options: DeflateOptions = DEFAULTS,
    max_message_size: int | None = MIB,
    **server: bool | int | None,
) -> tuple[Connection, Connection, LimitedPerMessageDeflate]:
    """Agree as a wsproto server would; return (client, server, the client's extension)."""
    server_ext = PerMessageDeflate(**server)  # type: ignore[arg-type]
    answer = server_ext.accept(offer_header(options))
    assert isinstance(answer, str)
    header = f"permessage-deflate; {answer}" if answer else "permessage-deflate"
    client_ext = accept_response(header, options, max_message_size)
    client = Connection(ConnectionType.CLIENT, [client_ext])
    server_conn = Connection(ConnectionType.SERVER, [server_ext])
    return client, server_conn, client_ext


def deliver(data: bytes, to: Connection) -> list[Event]:
    to.receive_data(data)
    return list(to.events())


def messages(events: Iterable[Event]) -> list[str | bytes]:
    """Assemble message events into whole messages."""
    out: list[str | bytes] = []
    parts: list[str | bytes] = []
    for event in events:
        if isinstance(event, Message):
            parts.append(event.data if isinstance(event, TextMessage) else bytes(event.data))
            if event.message_finished:
                out.append("".join(parts) if isinstance(parts[0], str) else b"".join(parts))  # type: ignore[arg-type]
                parts = []
    return out


def close_codes(events: Iterable[Event]) -> list[int]:
    return [int(e.code) for e in events if isinstance(e, CloseConnection)]


def server_frame(
    payload: bytes, *, opcode: int = 0x2, fin: bool = True, rsv1: bool = True
) -> bytes:
    """An unmasked frame, as a server sends it."""
    head = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes([head, n]) + payload
    if n < 1 << 16:
        return bytes([head, 126]) + struct.pack("!H", n) + payload
    return bytes([head, 127]) + struct.pack("!Q", n) + payload


def deflate(data: bytes | Iterable[bytes], wbits: int = 15) -> bytes:
    """Compress one message as permessage-deflate does: sync flush, tail removed."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -wbits)
    chunks = [data] if isinstance(data, bytes) else data
    out = b"".join(compressor.compress(chunk) for chunk in chunks)
    out += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def bomb(size: int) -> bytes:
    """A compressed message of ``size`` zero bytes, built without holding them."""
    chunk = bytes(MIB)
    full, rest = divmod(size, MIB)
    return deflate([*(chunk for _ in range(full)), bytes(rest)])


def text_payload(n: int, seed: int = 0) -> str:
    """``n`` characters of text (some outside ASCII) that compress, but not to nothing."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz éèüö€😀"
    return "".join(rng.choice(alphabet) for _ in range(n))


# --------------------------------------------------------------------------- the offer


class TestOffer:
    def test_default_offer_lets_the_server_pick_the_client_window(self) -> None:
        assert offer_header(DeflateOptions()) == "permessage-deflate; client_max_window_bits"

    def test_offer_carries_every_parameter(self) -> None:
        options = DeflateOptions(
            client_max_window_bits=10,
            server_max_window_bits=12,
            client_no_context_takeover=True,
            server_no_context_takeover=True,
        )
        assert offer_header(options) == (
            "permessage-deflate; client_max_window_bits=10; server_max_window_bits=12;"
            " client_no_context_takeover; server_no_context_takeover"
        )

    def test_offer_without_client_max_window_bits(self) -> None:
        assert offer_header(DeflateOptions(client_max_window_bits=None)) == "permessage-deflate"

    def test_options_are_frozen(self) -> None:
        options = DeflateOptions()
        with pytest.raises(AttributeError):
            options.enabled = False  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("client_max_window_bits", 8),
            ("client_max_window_bits", 16),
            ("client_max_window_bits", False),
            ("server_max_window_bits", 7),
            ("server_max_window_bits", 16),
            ("server_max_window_bits", True),
        ],
    )
    def test_options_reject_window_bits_out_of_range(self, field: str, value: object) -> None:
        with pytest.raises(ValueError, match=field):
            DeflateOptions(**{field: value})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the answer


class TestAcceptResponse:
    def test_plain_answer_agrees_with_defaults(self) -> None:
        ext = accept_response("permessage-deflate", DeflateOptions(), 1000)
        assert ext.enabled()
        assert ext.max_message_size == 1000
        assert ext.client_max_window_bits == 15
        assert ext.server_max_window_bits == 15
        assert not ext.client_no_context_takeover
        assert not ext.server_no_context_takeover

    def test_answer_sets_every_parameter(self) -> None:
        ext = accept_response(
            "permessage-deflate; client_max_window_bits=10; server_max_window_bits=11;"
            " client_no_context_takeover; server_no_context_takeover",
            DeflateOptions(),
            None,
        )
        assert (ext.client_max_window_bits, ext.server_max_window_bits) == (10, 11)
        assert ext.client_no_context_takeover
        assert ext.server_no_context_takeover
        assert ext.max_message_size is None

    def test_quoted_values_and_spacing_and_case_are_accepted(self) -> None:
        ext = accept_response(
            ' Permessage-Deflate ;Server_Max_Window_Bits = "12" ; client_max_window_bits=9 ',
            DeflateOptions(),
            None,
        )
        assert (ext.client_max_window_bits, ext.server_max_window_bits) == (9, 12)

    def test_offered_client_window_applies_when_the_server_is_silent(self) -> None:
        ext = accept_response("permessage-deflate", DeflateOptions(client_max_window_bits=10), 1)
        assert ext.client_max_window_bits == 10

    def test_smaller_client_window_than_offered_is_taken(self) -> None:
        options = DeflateOptions(client_max_window_bits=12)
        ext = accept_response("permessage-deflate; client_max_window_bits=9", options, 1)
        assert ext.client_max_window_bits == 9

    def test_client_no_context_takeover_offered_holds_without_answer(self) -> None:
        options = DeflateOptions(client_no_context_takeover=True)
        assert accept_response("permessage-deflate", options, 1).client_no_context_takeover

    def test_server_window_of_8_inflates_with_9(self) -> None:
        options = DeflateOptions(server_max_window_bits=8)
        ext = accept_response("permessage-deflate; server_max_window_bits=8", options, 1)
        assert ext.server_max_window_bits == 9

    def test_server_may_choose_no_context_takeover_unasked(self) -> None:
        ext = accept_response("permessage-deflate; server_no_context_takeover", DeflateOptions(), 1)
        assert ext.server_no_context_takeover

    @pytest.mark.parametrize(
        ("header", "options", "message"),
        [
            ("", DeflateOptions(), "malformed"),
            ("permessage-deflate;", DeflateOptions(), "malformed"),
            ("permessage-deflate; =1", DeflateOptions(), "malformed"),
            ('permessage-deflate; server_max_window_bits="10', DeflateOptions(), "malformed"),
            ("permessage-deflate=1", DeflateOptions(), "malformed"),
            ("permessage-deflate; foo", DeflateOptions(), "unknown parameter 'foo'"),
            ("permessage-deflate; foo=1", DeflateOptions(), "unknown parameter"),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                DeflateOptions(),
                "duplicate server_no_context_takeover",
            ),
            (
                "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
                DeflateOptions(),
                "duplicate server_max_window_bits",
            ),
            (
                "permessage-deflate; client_no_context_takeover=1",
                DeflateOptions(),
                "takes no value",
            ),
            ("permessage-deflate; server_max_window_bits", DeflateOptions(), "invalid"),
            ("permessage-deflate; server_max_window_bits=7", DeflateOptions(), "invalid"),
            ("permessage-deflate; server_max_window_bits=16", DeflateOptions(), "invalid"),
            ("permessage-deflate; server_max_window_bits=010", DeflateOptions(), "invalid"),
            ("permessage-deflate; server_max_window_bits=a", DeflateOptions(), "invalid"),
            ("permessage-deflate; client_max_window_bits", DeflateOptions(), "invalid"),
            ("permessage-deflate; client_max_window_bits=0", DeflateOptions(), "invalid"),
            (
                "permessage-deflate; server_max_window_bits=12",
                DeflateOptions(server_max_window_bits=10),
                "above the 10 offered",
            ),
            (
                "permessage-deflate",
                DeflateOptions(server_max_window_bits=10),
                "server_max_window_bits was requested",
            ),
            (
                "permessage-deflate",
                DeflateOptions(server_no_context_takeover=True),
                "server_no_context_takeover was requested",
            ),
            (
                "permessage-deflate; client_max_window_bits=10",
                DeflateOptions(client_max_window_bits=None),
                "not offered",
            ),
            (
                "permessage-deflate; client_max_window_bits=12",
                DeflateOptions(client_max_window_bits=10),
                "above the 10 offered",
            ),
            (
                "permessage-deflate; client_max_window_bits=8",
                DeflateOptions(),
                "client_max_window_bits=8",
            ),
            (
                "permessage-deflate, permessage-deflate",
                DeflateOptions(),
                "more than once",
            ),
            ("permessage-deflate, x-webkit-deflate-frame", DeflateOptions(), "not offered"),
            ("x-custom; a=1", DeflateOptions(), r"not offered: \['x-custom'\]"),
        ],
    )
    def test_invalid_answer_is_refused(
        self, header: str, options: DeflateOptions, message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            accept_response(header, options, 1000)


# --------------------------------------------------------------------------- round trips


class TestRoundTrip:
    @pytest.mark.parametrize(
        "options",
        [
            DeflateOptions(),
            DeflateOptions(client_max_window_bits=9, server_max_window_bits=9),
            DeflateOptions(client_no_context_takeover=True, server_no_context_takeover=True),
            DeflateOptions(client_max_window_bits=None),
        ],
        ids=["defaults", "9-bit-windows", "no-context-takeover", "no-client-bits"],
    )
    def test_messages_round_trip_compressed(self, options: DeflateOptions) -> None:
        client, server, _ = negotiate(options)
        sent: list[str | bytes] = [
            text_payload(20_000),
            b"\x00\x01\x02" * 5000,
            "",
            b"",
            "short",
            bytes(range(256)) * 40,
        ]
        for msg in sent:
            wire = client.send(TextMessage(msg) if isinstance(msg, str) else BytesMessage(msg))
            assert wire[0] & 0x40, "the client's frame is not compressed"
            echoed = messages(deliver(wire, server))
            assert echoed == [msg]
            back = server.send(TextMessage(msg) if isinstance(msg, str) else BytesMessage(msg))
            assert back[0] & 0x40, "the server's frame is not compressed"
            assert messages(deliver(back, client)) == [msg]

    def test_compression_shrinks_repetitive_messages(self) -> None:
        client, _, _ = negotiate()
        wire = client.send(TextMessage("abc" * 10_000))
        assert len(wire) < 200

    def test_message_arriving_in_small_reads(self) -> None:
        client, server, _ = negotiate()
        msg = text_payload(50_000)
        wire = server.send(TextMessage(msg))
        events: list[Event] = []
        for i in range(0, len(wire), 7):
            events += deliver(wire[i : i + 7], client)
        assert messages(events) == [msg]

    def test_fragmented_compressed_message_with_ping_between_fragments(self) -> None:
        client, server, _ = negotiate()
        msg = text_payload(30_000)
        thirds = [msg[:10_000], msg[10_000:20_000], msg[20_000:]]
        wire = server.send(TextMessage(thirds[0], message_finished=False))
        wire += server.send(Ping(b"between"))
        wire += server.send(TextMessage(thirds[1], message_finished=False))
        wire += server.send(Ping(b"again"))
        wire += server.send(TextMessage(thirds[2], message_finished=True))
        events = deliver(wire, client)
        assert [e.payload for e in events if isinstance(e, Ping)] == [b"between", b"again"]
        assert messages(events) == [msg]
        assert close_codes(events) == []

    def test_uncompressed_message_passes_through(self) -> None:
        client, _, _ = negotiate()
        events = deliver(server_frame(b"plain", rsv1=False), client)
        assert messages(events) == [b"plain"]

    def test_server_context_takeover_makes_repeats_smaller(self) -> None:
        client, server, _ = negotiate()
        msg = text_payload(5000)
        first = server.send(TextMessage(msg))
        second = server.send(TextMessage(msg))
        assert len(second) < len(first) / 4
        assert messages(deliver(first + second, client)) == [msg, msg]

    def test_server_no_context_takeover_resets_the_inflater(self) -> None:
        client, server, ext = negotiate(DeflateOptions(server_no_context_takeover=True))
        assert ext.server_no_context_takeover
        msg = text_payload(5000)
        first = server.send(TextMessage(msg))
        second = server.send(TextMessage(msg))
        assert first == second
        assert messages(deliver(first + second, client)) == [msg, msg]

    def test_inflater_keeps_context_between_messages(self) -> None:
        # A second message referring back into the first inflates only with takeover.
        client, _, _ = negotiate()
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        msg = b"0123456789abcdef" * 64

        def one() -> bytes:
            return (compressor.compress(msg) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]

        wire = server_frame(one()) + server_frame(one())
        assert messages(deliver(wire, client)) == [msg, msg]

    def test_client_context_takeover_on_and_off(self) -> None:
        msg = text_payload(5000)
        client, _, _ = negotiate()
        assert len(client.send(TextMessage(msg))) > 4 * len(client.send(TextMessage(msg)))
        client, server, ext = negotiate(DeflateOptions(client_no_context_takeover=True))
        assert ext.client_no_context_takeover
        first, second = client.send(TextMessage(msg)), client.send(TextMessage(msg))
        # Masks differ, lengths do not: each message is compressed on its own.
        assert len(first) == len(second)
        assert messages(deliver(first + second, server)) == [msg, msg]

    def test_server_asking_client_no_context_takeover_is_obeyed(self) -> None:
        client, server, ext = negotiate(client_no_context_takeover=True)
        assert ext.client_no_context_takeover
        msg = text_payload(3000)
        first, second = client.send(TextMessage(msg)), client.send(TextMessage(msg))
        assert len(first) == len(second)
        assert messages(deliver(first + second, server)) == [msg, msg]


class TestProtocolErrors:
    def test_rsv1_on_a_control_frame_fails_with_1002(self) -> None:
        client, _, _ = negotiate()
        assert close_codes(deliver(server_frame(b"", opcode=0x9), client)) == [1002]

    def test_rsv1_on_a_continuation_frame_fails_with_1002(self) -> None:
        client, _, _ = negotiate()
        wire = server_frame(deflate(b"abc"), fin=False) + server_frame(b"x", opcode=0x0)
        assert close_codes(deliver(wire, client)) == [1002]

    def test_continuation_without_a_message_fails_with_1002(self) -> None:
        client, _, _ = negotiate()
        assert close_codes(deliver(server_frame(b"x", opcode=0x0, rsv1=False), client)) == [1002]

    def test_new_message_inside_a_compressed_one_fails_with_1002(self) -> None:
        client, _, _ = negotiate()
        wire = server_frame(deflate(b"abc"), fin=False) + server_frame(deflate(b"def"))
        assert close_codes(deliver(wire, client)) == [1002]

    def test_corrupt_compressed_data_fails_with_1007(self) -> None:
        client, _, _ = negotiate()
        assert close_codes(deliver(server_frame(b"\xff\xff\xff\xff"), client)) == [1007]

    def test_compressed_invalid_utf8_fails_with_1007(self) -> None:
        client, _, _ = negotiate()
        wire = server_frame(deflate(b"ok \xc3\x28 not ok"), opcode=0x1)
        assert close_codes(deliver(wire, client)) == [1007]


# --------------------------------------------------------------------------- size limit


class TestSizeLimit:
    def test_message_of_exactly_the_limit_is_accepted(self) -> None:
        client, server, _ = negotiate(max_message_size=10_000)
        wire = server.send(BytesMessage(b"a" * 10_000))
        assert messages(deliver(wire, client)) == [b"a" * 10_000]

    def test_one_byte_over_the_limit_fails_with_1009(self) -> None:
        client, server, _ = negotiate(max_message_size=10_000)
        events = deliver(server.send(BytesMessage(b"a" * 10_001)), client)
        assert close_codes(events) == [1009]
        assert messages(events) == []

    def test_limit_counts_every_fragment_of_a_message(self) -> None:
        client, server, _ = negotiate(max_message_size=10_000)
        wire = b"".join(
            server.send(BytesMessage(b"b" * 1000, message_finished=i == 10)) for i in range(11)
        )
        assert close_codes(deliver(wire, client)) == [1009]

    def test_limit_is_per_message(self) -> None:
        client, server, _ = negotiate(max_message_size=10_000)
        wire = b"".join(server.send(BytesMessage(b"c" * 9000)) for _ in range(20))
        events = deliver(wire, client)
        assert close_codes(events) == []
        assert messages(events) == [b"c" * 9000] * 20

    def test_tail_of_the_message_is_limited_too(self) -> None:
        # A sync flush ends with the header of an empty stored block; give it a
        # length of 4 instead, and the 00 00 ff ff appended at the end of the
        # message are its 4 bytes: the tail inflates to 4 more bytes.
        payload = deflate(b"x" * 10) + b"\x04\x00\xfb\xff"
        client, _, _ = negotiate(max_message_size=14)
        assert messages(deliver(server_frame(payload), client)) == [b"x" * 10 + b"\x00\x00\xff\xff"]
        client, _, _ = negotiate(max_message_size=13)
        assert close_codes(deliver(server_frame(payload), client)) == [1009]

    def test_no_limit_inflates_everything(self) -> None:
        client, server, _ = negotiate(max_message_size=None)
        wire = server.send(BytesMessage(bytes(3 * MIB)))
        assert messages(deliver(wire, client)) == [bytes(3 * MIB)]

    @pytest.mark.parametrize("reads", [1, 16 * KIB], ids=["one-read", "16KiB-reads"])
    def test_decompression_bomb_fails_with_1009_in_bounded_memory(self, reads: int) -> None:
        limit = 256 * KIB
        inflated = 100 * limit
        wire = server_frame(bomb(inflated))
        assert len(wire) < inflated / 500
        client, _, _ = negotiate(max_message_size=limit)
        chunk = len(wire) if reads == 1 else reads
        events: list[Event] = []
        tracemalloc.start()
        try:
            for i in range(0, len(wire), chunk):
                events += deliver(wire[i : i + chunk], client)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert close_codes(events) == [1009]
        assert messages(events) == []
        assert peak < 4 * limit, f"peak {peak} bytes for a {limit}-byte limit"

    def test_bomb_spread_over_many_frames_fails_early(self) -> None:
        limit = 64 * KIB
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        zeros = bytes(MIB)
        frames = []
        for i in range(50):
            data = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
            frames.append(server_frame(data, opcode=0x2 if i == 0 else 0x0, fin=False, rsv1=i == 0))
        client, _, _ = negotiate(max_message_size=limit)
        tracemalloc.start()
        try:
            events = deliver(b"".join(frames), client)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert close_codes(events) == [1009]
        assert peak < 4 * limit + sum(map(len, frames))

    def test_wsproto_alone_inflates_the_whole_bomb(self) -> None:
        # The measurement above can fail: without the limit the peak is the inflated size.
        inflated = 8 * MIB
        wire = server_frame(bomb(inflated))
        server_ext = PerMessageDeflate()
        answer = server_ext.accept(offer_header(DeflateOptions()))
        assert isinstance(answer, str)
        plain = PerMessageDeflate()
        plain.finalize(f"permessage-deflate; {answer}")
        client = Connection(ConnectionType.CLIENT, [plain])
        tracemalloc.start()
        try:
            events = deliver(wire, client)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert close_codes(events) == []
        assert peak >= inflated
