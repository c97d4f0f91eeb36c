"""Large messages fragment by fragment: receive_fragments(), send_fragments() and their limits.

Against a scripted raw peer on 127.0.0.1 (frames written by hand, the test decides when each
goes out), on asyncio and trio; the protocol core alone; and, marked slow, 256 MiB each way
through benchmarks/large_messages.py (a peer process, a client process per transfer).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets.asyncio.server
from wsproto.events import BytesMessage

import streams
from streams import AsyncWebSocketSession, WebSocketDisconnect, WebSocketInvalidTypeReceived
from streams.protocol import ClientProtocol, SendingFragments, StreamedMessage
from tests import servers
from tests.conftest import _run_server
from tests.peers import OP_BINARY, OP_CONT, OP_TEXT, ScriptedPeer, build_frame, scripted_server
from tests.test_deflate import negotiate

pytestmark = pytest.mark.anyio

LIMIT = 1024


@asynccontextmanager
async def connect(url: str, **kwargs: Any) -> AsyncIterator[AsyncWebSocketSession]:
    kwargs.setdefault("max_message_size_bytes", LIMIT)
    kwargs.setdefault("max_fragmented_size_bytes", None)
    async with (
        httpx.AsyncClient() as client,
        streams.aconnect_ws(url + "/", client, close_timeout=2.0, compression=None, **kwargs) as ws,
    ):
        yield ws


def fragments(opcode: int, chunks: list[bytes]) -> list[bytes]:
    """The frames of one message, one per chunk."""
    return [
        build_frame(opcode if i == 0 else OP_CONT, chunk, fin=i == len(chunks) - 1)
        for i, chunk in enumerate(chunks)
    ]


async def collect(
    ws: AsyncWebSocketSession, into: list[str | bytes] | None = None
) -> list[str | bytes]:
    """The parts of the next message (also appended to ``into`` as they come)."""
    parts = [] if into is None else into
    async for part in ws.receive_fragments():
        parts.append(part)
    return parts


class TestReceive:
    async def test_first_part_arrives_before_the_server_sent_the_last_byte(self) -> None:
        first_part_received = anyio.Event()
        chunks = [os.urandom(LIMIT) for _ in range(4)]
        frames = fragments(OP_BINARY, chunks)

        async def script(peer: ScriptedPeer) -> None:
            await peer.send_raw(b"".join(frames[:2]))
            # The rest goes out only once the client has the first part.
            await first_part_received.wait()
            await peer.send_raw(b"".join(frames[2:]))
            await peer.send_text("after")
            await peer.close_handshake()

        parts: list[bytes] = []
        async with scripted_server(script) as url, connect(url) as ws:
            async for part in ws.receive_fragments():
                assert isinstance(part, bytes)
                parts.append(part)
                first_part_received.set()
            assert not ws._engine.inbox.detour  # type: ignore[union-attr]  # the fast path is back
            assert await ws.receive_text() == "after"
        assert b"".join(parts) == b"".join(chunks)
        assert len(parts) > 1

    async def test_text_is_never_split_inside_a_character(self) -> None:
        text = "héllo wörld, ünïcode ✓ 𝄞 " * 200
        data = text.encode()
        # Frames of 1000 bytes cut through two- three- and four-byte characters.
        chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]

        async def script(peer: ScriptedPeer) -> None:
            for frame in fragments(OP_TEXT, chunks):
                await peer.send_raw(frame)
            await peer.close_handshake()

        async with scripted_server(script) as url, connect(url) as ws:
            parts = await collect(ws)
        assert all(isinstance(part, str) for part in parts)
        assert "".join(parts) == text  # type: ignore[arg-type]
        assert len(parts) > 1

    async def test_message_within_the_limit_comes_as_one_part(self) -> None:
        async def script(peer: ScriptedPeer) -> None:
            for frame in fragments(OP_TEXT, [b"ab", b"cd"]):
                await peer.send_raw(frame)
            await peer.send_bytes(b"whole")
            await peer.close_handshake()

        async with scripted_server(script) as url, connect(url) as ws:
            assert await collect(ws) == ["abcd"]
            assert await collect(ws) == [b"whole"]

    async def test_receive_meeting_a_streamed_message_raises_and_leaves_it_first(self) -> None:
        chunks = [b"x" * LIMIT, b"y" * LIMIT]

        async def script(peer: ScriptedPeer) -> None:
            await peer.send_text("before")
            await peer.send_raw(b"".join(fragments(OP_BINARY, chunks)))
            await peer.send_text("after")
            await peer.close_handshake()

        async with scripted_server(script) as url, connect(url) as ws:
            assert await ws.receive_text() == "before"
            with pytest.raises(WebSocketInvalidTypeReceived, match="receive_fragments"):
                await ws.receive()
            with pytest.raises(WebSocketInvalidTypeReceived, match="receive_fragments"):
                await ws.receive_bytes()
            with pytest.raises(WebSocketInvalidTypeReceived, match="receive_fragments"):
                async for _ in ws:
                    pass
            assert b"".join(await collect(ws)) == b"".join(chunks)  # type: ignore[arg-type]
            assert await ws.receive_text() == "after"

    async def test_typed_stream_stops_before_a_streamed_message(self) -> None:
        async def script(peer: ScriptedPeer) -> None:
            await peer.send_raw(
                build_frame(OP_TEXT, b"one")
                + build_frame(OP_TEXT, b"two")
                + b"".join(fragments(OP_TEXT, [b"a" * LIMIT, b"b" * LIMIT]))
            )
            await peer.close_handshake()

        async with scripted_server(script) as url, connect(url) as ws:
            stream = ws.text()
            assert [await anext(stream), await anext(stream)] == ["one", "two"]
            with pytest.raises(WebSocketInvalidTypeReceived, match="receive_fragments"):
                await anext(stream)
            assert "".join(await collect(ws)) == "a" * LIMIT + "b" * LIMIT  # type: ignore[arg-type]

    async def test_leaving_early_drops_the_rest_of_the_message(self) -> None:
        chunks = [os.urandom(LIMIT) for _ in range(8)]

        async def script(peer: ScriptedPeer) -> None:
            await peer.send_raw(b"".join(fragments(OP_BINARY, chunks)))
            await peer.send_text("next")
            await peer.close_handshake()

        async with scripted_server(script) as url, connect(url) as ws:
            async with aclosing(ws.receive_fragments()) as parts:
                async for part in parts:
                    assert part
                    break
            assert await ws.receive_text() == "next"

    async def test_close_before_the_end_raises(self) -> None:
        async def script(peer: ScriptedPeer) -> None:
            frames = fragments(OP_BINARY, [b"a" * LIMIT, b"b" * LIMIT, b"c"])
            await peer.send_raw(b"".join(frames[:2]))
            await peer.close_handshake(1001, "going away")

        async with scripted_server(script) as url, connect(url) as ws:
            parts: list[str | bytes] = []
            with pytest.raises(WebSocketDisconnect) as info:
                await collect(ws, parts)
            assert info.value.code == 1001
            assert b"".join(parts) == b"a" * LIMIT + b"b" * LIMIT  # type: ignore[arg-type]

    async def test_parts_count_as_data_for_stale_after(self) -> None:
        chunks = [b"s" * LIMIT] * 6

        async def script(peer: ScriptedPeer) -> None:
            # 1.2 s of one message, a frame every 0.2 s: never 0.5 s without data.
            for frame in fragments(OP_BINARY, chunks):
                await peer.send_raw(frame)
                await anyio.sleep(0.2)
            await peer.close_handshake()

        async with scripted_server(script) as url, connect(url, stale_after=0.5) as ws:
            assert b"".join(await collect(ws)) == b"".join(chunks)  # type: ignore[arg-type]


class TestLimits:
    async def test_default_keeps_the_message_limit(self) -> None:
        reasons: list[tuple[int, str]] = []

        async def script(peer: ScriptedPeer) -> None:
            await peer.send_raw(b"".join(fragments(OP_BINARY, [b"a" * LIMIT, b"b"])))
            reasons.append(await peer.receive_close())
            await peer.wait_eof()

        async with (
            scripted_server(script) as url,
            connect(url, max_fragmented_size_bytes=streams._types.USE_MAX_MESSAGE_SIZE) as ws,
        ):
            with pytest.raises(WebSocketDisconnect) as info:
                await collect(ws)
        expected = f"message of {LIMIT + 1} bytes exceeds max_message_size_bytes={LIMIT}"
        assert (info.value.code, info.value.reason) == (1009, expected)
        assert reasons == [(1009, expected)]

    async def test_a_frame_over_the_message_limit_fails(self) -> None:
        async def script(peer: ScriptedPeer) -> None:
            await peer.send_raw(
                b"".join(fragments(OP_BINARY, [b"a" * LIMIT, b"b" * (LIMIT + 1), b"c"]))
            )
            await peer.receive_close()
            await peer.wait_eof()

        async with scripted_server(script) as url, connect(url) as ws:
            with pytest.raises(WebSocketDisconnect) as info:
                await collect(ws)
        assert info.value.code == 1009
        assert f"max_message_size_bytes={LIMIT}" in info.value.reason

    async def test_a_message_over_the_fragmented_limit_fails(self) -> None:
        async def script(peer: ScriptedPeer) -> None:
            await peer.send_raw(b"".join(fragments(OP_BINARY, [b"a" * LIMIT] * 3)))
            await peer.receive_close()
            await peer.wait_eof()

        async with (
            scripted_server(script) as url,
            connect(url, max_fragmented_size_bytes=2 * LIMIT) as ws,
        ):
            parts: list[str | bytes] = []
            with pytest.raises(WebSocketDisconnect) as info:
                await collect(ws, parts)
        expected = f"message of {3 * LIMIT} bytes exceeds max_fragmented_size_bytes={2 * LIMIT}"
        assert (info.value.code, info.value.reason) == (1009, expected)
        assert b"".join(parts) == b"a" * (2 * LIMIT)  # type: ignore[arg-type]

    def test_fragmented_limit_below_the_message_limit_is_refused(self) -> None:
        with pytest.raises(ValueError, match="max_fragmented_size_bytes"):
            streams.aconnect_ws("ws://x", max_fragmented_size_bytes=10)

    def test_dropping_overflow_policies_are_refused(self) -> None:
        with pytest.raises(ValueError, match="overflow='drop_oldest'"):
            streams.aconnect_ws(
                "ws://x", max_fragmented_size_bytes=None, overflow="drop_oldest", queue_size=4
            )


class TestBackpressure:
    async def test_reader_stops_while_parts_wait(self) -> None:
        frame_size = 64 * 1024
        count = 32 * 1024 * 1024 // frame_size  # more than the socket buffers hold
        sent = 0
        done = anyio.Event()

        async def script(peer: ScriptedPeer) -> None:
            nonlocal sent
            chunk = b"z" * frame_size
            for i in range(count):
                opcode = OP_BINARY if i == 0 else OP_CONT
                await peer.send_raw(build_frame(opcode, chunk, fin=i == count - 1))
                sent += 1
            done.set()
            await peer.close_handshake()

        async with (
            scripted_server(script) as url,
            connect(url, max_message_size_bytes=frame_size) as ws,
        ):
            parts = ws.receive_fragments()
            size = len(await anext(parts))
            # Nobody takes parts: the reader pauses, TCP fills, the server stalls.
            with anyio.move_on_after(0.5):
                await done.wait()
            assert not done.is_set()
            assert ws.statistics().reader_paused
            assert sent < count // 2
            async for part in parts:
                size += len(part)
            assert size == count * frame_size
            with anyio.fail_after(5):
                await done.wait()  # the server could send it all


class TestSend:
    async def test_fragments_arrive_as_one_message_between_control_frames(self) -> None:
        frames_seen: list[tuple[int, bool, int]] = []

        async def script(peer: ScriptedPeer) -> None:
            while True:
                frame = await peer.receive_frame()
                if frame.opcode == 0x8:
                    await peer.send_frame(0x8, frame.payload)
                    break
                frames_seen.append((frame.opcode, frame.fin, len(frame.payload)))

        async def parts() -> AsyncIterator[bytes]:
            for size in (10, 20, 30):
                yield b"p" * size

        async with scripted_server(script) as url, connect(url) as ws:
            await ws.send_fragments(parts())
            await ws.send_fragments(["one", "two"])
            await ws.send_fragments([])
        assert frames_seen == [
            (OP_BINARY, False, 10),
            (OP_CONT, False, 20),
            (OP_CONT, True, 30),
            (OP_TEXT, False, 3),
            (OP_CONT, True, 3),
        ]

    @pytest.mark.parametrize("via", ["send_text", "send_stream"])
    async def test_whole_messages_wait_for_the_fragmented_one(self, via: str) -> None:
        gate = anyio.Event()
        messages: list[str | bytes] = []

        async def script(peer: ScriptedPeer) -> None:
            # (A whole message between fragments would fail receive_message().)
            for _ in range(2):
                messages.append(await peer.receive_message())
            await peer.answer_close()

        async def parts() -> AsyncIterator[str]:
            yield "first "
            yield "middle "  # "first " goes out now
            await gate.wait()
            yield "last"

        async with (
            scripted_server(script) as url,
            connect(url) as ws,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(ws.send_fragments, parts())
            await anyio.wait_all_tasks_blocked()
            if via == "send_text":
                tg.start_soon(ws.send_text, "whole")
            else:
                await ws.send_stream.send("whole")
            await anyio.wait_all_tasks_blocked()
            gate.set()
            await anyio.wait_all_tasks_blocked()  # the whole message is queued, then
            await ws.flush()
        assert messages == ["first middle last", "whole"]

    async def test_close_goes_between_fragments_and_the_send_raises(self) -> None:
        gate = anyio.Event()
        frames_seen: list[tuple[int, bool]] = []

        async def script(peer: ScriptedPeer) -> None:
            while True:
                frame = await peer.receive_frame()
                frames_seen.append((frame.opcode, frame.fin))
                if frame.opcode == 0x8:
                    await peer.send_frame(0x8, frame.payload)
                    return

        async def parts() -> AsyncIterator[bytes]:
            yield b"one"
            yield b"two"  # b"one" goes out now
            await gate.wait()
            yield b"three"

        async def send() -> None:
            async with aclosing(parts()) as each:
                with pytest.raises(WebSocketDisconnect):
                    await ws.send_fragments(each)

        async with (
            scripted_server(script) as url,
            connect(url) as ws,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(send)
            await anyio.wait_all_tasks_blocked()
            await ws.close()
            gate.set()
        assert frames_seen == [(OP_BINARY, False), (0x8, True)]

    async def test_mixed_kinds_close_with_1011(self) -> None:
        closes: list[tuple[int, str]] = []

        async def script(peer: ScriptedPeer) -> None:
            closes.append(await peer.answer_close())

        async with scripted_server(script) as url, connect(url) as ws:
            with pytest.raises(TypeError, match="like its first"):
                await ws.send_fragments(["one", "two", b"three"])
            await ws.wait_closed()
        assert closes == [(1011, "fragmented message interrupted")]

    async def test_sha256_intact_both_ways(self) -> None:
        # The peer sends each frame back as it comes: fragments both ways.
        chunks = [os.urandom(60_000) for _ in range(40)]
        digest = hashlib.sha256(b"".join(chunks)).hexdigest()

        async def script(peer: ScriptedPeer) -> None:
            while True:
                frame = await peer.receive_frame()
                await peer.send_frame(frame.opcode, frame.payload, fin=frame.fin)
                if frame.opcode == 0x8:
                    return

        async with (
            scripted_server(script) as url,
            connect(url, max_message_size_bytes=65_536) as ws,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(ws.send_fragments, chunks)
            got = hashlib.sha256()
            async for part in ws.receive_fragments():
                assert isinstance(part, bytes)
                got.update(part)
        assert got.hexdigest() == digest


BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "large_messages.py"


def run_large_messages(api: str, size_mib: int) -> list[dict[str, Any]]:
    """Run benchmarks/large_messages.py (a peer process, a client process per transfer)."""
    command = [sys.executable, str(BENCHMARK), "--json", "--api", api, "--size-mib", str(size_mib)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("api", ["asyncio", "trio"])
def test_256_mib_each_way_intact_in_bounded_memory(api: str) -> None:
    results = run_large_messages(api, 256)
    assert [(r["direction"], r["intact"]) for r in results] == [("receive", True), ("send", True)]
    assert all(r["growth_mib"] < 32 for r in results), results


class TestProtocolCore:
    """The protocol core alone: no event loop, no socket."""

    def test_message_past_the_limit_streams_from_its_first_frames(self) -> None:
        protocol = ClientProtocol(max_message_size=4, max_fragmented_size=None)
        frames = fragments(OP_BINARY, [b"abc", b"def", b"gh"])
        out = protocol.receive_data(frames[0])
        assert out == []  # within the limit so far: assembled as usual
        [streamed] = protocol.receive_data(frames[1])
        assert isinstance(streamed, StreamedMessage)
        assert streamed.take() == [b"abc", b"def"]
        assert protocol.receive_data(frames[2] + build_frame(OP_TEXT, b"next")) == ["next"]
        assert streamed.take() == [b"gh"]
        assert streamed.finished

    def test_a_frame_split_across_reads_streams_piece_by_piece(self) -> None:
        protocol = ClientProtocol(max_message_size=100, max_fragmented_size=1000)
        data = b"".join(fragments(OP_TEXT, ["é".encode() * 50, "ü".encode() * 50]))
        cut = len(data) - 51  # inside the last frame, inside a character
        [streamed] = protocol.receive_data(data[:cut])
        assert isinstance(streamed, StreamedMessage)
        first = streamed.take()
        assert protocol.receive_data(data[cut:]) == []
        assert "".join(first + streamed.take()) == "é" * 50 + "ü" * 50  # type: ignore[arg-type]

    def test_discarded_message_keeps_no_parts_but_is_still_checked(self) -> None:
        protocol = ClientProtocol(max_message_size=2, max_fragmented_size=None)
        frames = fragments(OP_TEXT, [b"ab", b"cd", b"ef", b"\xff", b"g"])
        [streamed] = protocol.receive_data(frames[0] + frames[1])
        assert isinstance(streamed, StreamedMessage)
        streamed.discarded = True
        streamed.take()
        assert protocol.receive_data(frames[2]) == []
        assert streamed.parts == []
        protocol.receive_data(frames[3])
        assert (protocol.failed, protocol.close_code) == (True, 1007)

    def test_whole_messages_wait_for_a_fragmented_send(self) -> None:
        protocol = ClientProtocol()
        protocol.begin_fragments()
        first = protocol.send_fragment("ab", first=True, final=False)
        assert first[0] == 0x01  # text, not final
        with pytest.raises(SendingFragments):
            protocol.send_text("whole")
        assert protocol.send_ping(b"p")[0] == 0x89  # control frames go between fragments
        last = protocol.send_fragment("cd", first=False, final=True)
        assert last[0] == 0x80  # continuation, final
        assert protocol.send_text("whole")[0] == 0x81

    def test_compressed_fragments_make_one_compressed_message(self) -> None:
        _, server, client_ext = negotiate()  # as a wsproto server agrees
        client = ClientProtocol(extensions=[client_ext])
        client.begin_fragments()
        data = b"".join(
            client.send_fragment(part, first=i == 0, final=i == 2)
            for i, part in enumerate([b"x" * 1000, b"y" * 1000, b"z" * 1000])
        )
        assert data[0] & 0x40  # RSV1: compressed
        assert len(data) < 3000
        server.receive_data(data)
        payload = b"".join(bytes(e.data) for e in server.events() if isinstance(e, BytesMessage))
        assert payload == b"x" * 1000 + b"y" * 1000 + b"z" * 1000


@pytest.fixture(scope="module")
def deflate_url() -> Iterator[str]:
    """The shared endpoints on a websockets server that compresses (permessage-deflate)."""

    async def serve(sock: socket.socket, stop: asyncio.Event) -> None:
        async with websockets.asyncio.server.serve(
            servers.websockets_handler,
            sock=sock,
            process_request=servers.websockets_process_request,
            ping_interval=None,
            compression="deflate",
            max_size=None,
        ):
            await stop.wait()

    with _run_server("websockets-deflate", serve) as url:
        yield url


class TestCompressed:
    """A message compressed with permessage-deflate (a real server's) streams past the limit too."""

    @pytest.mark.parametrize("kind", ["binary", "text"])
    async def test_a_compressed_message_past_the_limit_streams(
        self, deflate_url: str, kind: str
    ) -> None:
        data = random.Random(kind).randbytes(2 * 1024 * 1024)
        message: str | bytes = data.hex() if kind == "text" else data
        async with (
            httpx.AsyncClient() as client,
            streams.aconnect_ws(
                deflate_url + "/echo",
                client,
                max_message_size_bytes=65_536,
                max_fragmented_size_bytes=8 * 1024 * 1024,
            ) as ws,
        ):
            assert ws._extensions, "the server agreed to compress"
            if isinstance(message, str):
                await ws.send_text(message)
            else:
                await ws.send_bytes(message)
            parts = await collect(ws)
            # Inflated as the frames come: in parts, none the whole message.
            assert len(parts) > 1
            assert max(map(len, parts)) < len(message)
            joined = "".join(parts) if kind == "text" else b"".join(parts)  # type: ignore[arg-type]
            assert joined == message
            await ws.send_text("small")  # and messages within the limit come whole
            assert await ws.receive_text() == "small"

    async def test_a_compressed_message_over_the_fragmented_limit_fails(
        self, deflate_url: str
    ) -> None:
        limit = 1024 * 1024
        async with (
            httpx.AsyncClient() as client,
            streams.aconnect_ws(
                deflate_url + "/echo",
                client,
                max_message_size_bytes=65_536,
                max_fragmented_size_bytes=limit,
            ) as ws,
        ):
            await ws.send_bytes(random.Random(0).randbytes(2 * limit))
            parts: list[str | bytes] = []
            with pytest.raises(WebSocketDisconnect) as info:
                await collect(ws, parts)
        assert info.value.code == 1009
        assert info.value.reason == (
            f"message of more than {limit} bytes exceeds max_fragmented_size_bytes={limit}"
        )
        assert 0 < sum(map(len, parts)) <= limit

    async def test_by_default_a_compressed_message_keeps_the_message_limit(
        self, deflate_url: str
    ) -> None:
        async with (
            httpx.AsyncClient() as client,
            streams.aconnect_ws(deflate_url + "/echo", client, max_message_size_bytes=65_536) as ws,
        ):
            assert ws._extensions
            await ws.send_bytes(b"x" * 65_536)
            assert await ws.receive_bytes() == b"x" * 65_536
            await ws.send_bytes(b"x" * 65_537)
            with pytest.raises(WebSocketDisconnect) as info:
                await ws.receive_bytes()
        assert info.value.code == 1009
        assert "max_message_size_bytes=65536" in info.value.reason
