"""Compression per message: compress=False, min_size, and the compressor's levels."""

from __future__ import annotations

import zlib

import pytest

import streams
from streams.protocol import ClientProtocol
from streams.protocol._deflate import DeflateOptions, LimitedPerMessageDeflate

TEXT = "compress me " * 100


def agreed(**options: int) -> ClientProtocol:
    ext = LimitedPerMessageDeflate(
        1 << 20,
        client_max_window_bits=15,
        server_max_window_bits=15,
        compression_level=options.get("compression_level", -1),
        memory_level=options.get("memory_level", 8),
        min_size=options.get("min_size", 0),
    )
    return ClientProtocol(max_message_size=1 << 20, extensions=[ext])


def rsv1(frame: bytes) -> bool:
    return bool(frame[0] & 0x40)


class TestPerMessageCompression:
    def test_compress_false_sends_an_uncompressed_frame(self) -> None:
        protocol = agreed()
        plain = protocol.send_text(TEXT, compress=False)
        assert not rsv1(plain)
        assert len(plain) == 2 + 2 + 4 + len(TEXT)  # header, 16-bit length, mask key
        packed = protocol.send_text(TEXT)
        assert rsv1(packed)
        assert len(packed) < len(plain) // 4
        assert not rsv1(protocol.send_bytes(b"\x00" * 500, compress=False))

    def test_messages_below_min_size_go_uncompressed(self) -> None:
        protocol = agreed(min_size=64)
        assert not rsv1(protocol.send_text("small"))
        assert not rsv1(protocol.send_bytes(b"x" * 63))
        assert rsv1(protocol.send_bytes(b"x" * 64))
        # Characters below the bound but bytes above it: compressed.
        assert rsv1(protocol.send_text("é" * 40))

    def test_the_compressor_uses_the_levels_asked_for(self) -> None:
        data = bytes(range(256)) * 40
        fast = agreed(compression_level=1).send_bytes(data)
        best = agreed(compression_level=9, memory_level=9).send_bytes(data)
        none = agreed(compression_level=0).send_bytes(data)
        assert all(rsv1(frame) for frame in (fast, best, none))
        assert len(none) > len(data)  # stored, not compressed
        assert len(best) <= len(fast)

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("compression_level", 10),
            ("compression_level", -2),
            ("memory_level", 0),
            ("memory_level", 10),
            ("min_size", -1),
        ],
    )
    def test_options_out_of_range_are_refused(self, option: str, value: int) -> None:
        with pytest.raises(ValueError, match=option):
            DeflateOptions(**{option: value})  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_compressed_and_uncompressed_messages_interleave_with_a_real_server(
    hypercorn_url: str,
) -> None:
    """The server inflates what is compressed and takes the rest as it is."""
    async with streams.aconnect_ws(
        hypercorn_url + "/echo", compression=DeflateOptions(min_size=32, compression_level=9)
    ) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers.get("sec-websocket-extensions", "")
        sent = [TEXT, "tiny", TEXT * 2, TEXT]
        await ws.send_text(sent[0])
        await ws.send_text(sent[1])
        await ws.send_text(sent[2], compress=False)
        await ws.send_json({"t": TEXT}, compress=False)
        await ws.send_bytes(zlib.compress(TEXT.encode()), compress=False)
        assert [await ws.receive_text() for _ in range(3)] == sent[:3]
        assert await ws.receive_json() == {"t": TEXT}
        assert zlib.decompress(await ws.receive_bytes()) == TEXT.encode()
