"""Large messages fragment by fragment in the sync API, against a raw peer thread on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any

import pytest

import streams
from streams import WebSocketDisconnect, WebSocketInvalidTypeReceived, WebSocketSession
from tests.peers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_TEXT,
    Frame,
    accept_key,
    build_frame,
    close_payload,
    parse_frame,
)
from tests.test_fragments import run_large_messages

LIMIT = 1024


class RawPeer:
    """The server's side of one connection, in a thread: frames by hand, blocking."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive_frame(self) -> Frame:
        while (parsed := parse_frame(self.buffer)) is None:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buffer += data
        frame, consumed = parsed
        del self.buffer[:consumed]
        return frame

    def close_handshake(self, code: int = 1000) -> None:
        self.send(build_frame(OP_CLOSE, close_payload(code)))
        while self.receive_frame().opcode != OP_CLOSE:
            pass

    def answer_close(self) -> tuple[int, str]:
        while (frame := self.receive_frame()).opcode != OP_CLOSE:
            pass
        self.send(build_frame(OP_CLOSE, frame.payload))
        return frame.close


@contextmanager
def raw_server(script: Callable[[RawPeer], None]) -> Iterator[str]:
    """Serve one connection with ``script`` in a thread; re-raise its failure at the end."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sock, _ = listener.accept()
            with closing(sock):
                request = b""
                while b"\r\n\r\n" not in request:
                    request += sock.recv(4096)
                key = next(
                    line.split(b":", 1)[1].strip().decode()
                    for line in request.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key:")
                )
                sock.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                    + accept_key(key).encode()
                    + b"\r\n\r\n"
                )
                script(RawPeer(sock))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        thread.join(10)
        listener.close()
    assert not thread.is_alive(), "the peer's script did not finish"
    if errors:
        raise errors[0]


@contextmanager
def connect(url: str, **kwargs: Any) -> Iterator[WebSocketSession]:
    kwargs.setdefault("max_message_size_bytes", LIMIT)
    kwargs.setdefault("max_fragmented_size_bytes", None)
    with streams.connect_ws(url, close_timeout=2.0, compression=None, **kwargs) as ws:
        yield ws


def fragments(opcode: int, chunks: list[bytes]) -> bytes:
    return b"".join(
        build_frame(opcode if i == 0 else OP_CONT, chunk, fin=i == len(chunks) - 1)
        for i, chunk in enumerate(chunks)
    )


def test_first_part_arrives_before_the_server_sent_the_last_byte() -> None:
    first_part_received = threading.Event()
    chunks = [os.urandom(LIMIT) for _ in range(4)]
    frames = fragments(OP_BINARY, chunks)
    half = len(frames) // 2

    def script(peer: RawPeer) -> None:
        peer.send(frames[:half])
        assert first_part_received.wait(5)
        peer.send(frames[half:])
        peer.send(build_frame(OP_TEXT, b"after"))
        peer.close_handshake()

    parts: list[str | bytes] = []
    with raw_server(script) as url, connect(url) as ws:
        for part in ws.receive_fragments(timeout=5):
            parts.append(part)
            first_part_received.set()
        assert ws.receive_text() == "after"
    assert b"".join(parts) == b"".join(chunks)  # type: ignore[arg-type]
    assert len(parts) > 1


def test_text_is_never_split_inside_a_character() -> None:
    text = "ünïcode ✓ 𝄞 " * 300
    data = text.encode()

    def script(peer: RawPeer) -> None:
        peer.send(fragments(OP_TEXT, [data[i : i + 999] for i in range(0, len(data), 999)]))
        peer.close_handshake()

    with raw_server(script) as url, connect(url) as ws:
        parts = list(ws.receive_fragments())
    assert all(isinstance(part, str) for part in parts)
    assert "".join(parts) == text  # type: ignore[arg-type]


def test_receive_meeting_a_streamed_message_raises_and_leaves_it_first() -> None:
    def script(peer: RawPeer) -> None:
        peer.send(build_frame(OP_TEXT, b"before"))
        peer.send(fragments(OP_BINARY, [b"x" * LIMIT, b"y" * LIMIT]))
        peer.send(build_frame(OP_BINARY, b"whole"))
        peer.close_handshake()

    with raw_server(script) as url, connect(url) as ws:
        assert ws.receive_text() == "before"
        with pytest.raises(WebSocketInvalidTypeReceived, match="receive_fragments"):
            ws.receive()
        with pytest.raises(WebSocketInvalidTypeReceived, match="receive_fragments"):
            next(iter(ws))
        assert b"".join(ws.receive_fragments()) == b"x" * LIMIT + b"y" * LIMIT  # type: ignore[arg-type]
        assert list(ws.receive_fragments()) == [b"whole"]


def test_typed_stream_stops_before_a_streamed_message() -> None:
    def script(peer: RawPeer) -> None:
        peer.send(build_frame(OP_TEXT, b"one") + build_frame(OP_TEXT, b"two"))
        peer.send(fragments(OP_TEXT, [b"a" * LIMIT, b"b" * LIMIT]))
        peer.close_handshake()

    with raw_server(script) as url, connect(url) as ws:
        stream = iter(ws.text())
        assert [next(stream), next(stream)] == ["one", "two"]
        with pytest.raises(WebSocketInvalidTypeReceived, match="receive_fragments"):
            next(stream)
        assert "".join(ws.receive_fragments()) == "a" * LIMIT + "b" * LIMIT  # type: ignore[arg-type]


def test_fragmented_limit_below_the_message_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_fragmented_size_bytes"):
        streams.connect_ws("ws://127.0.0.1:1/", max_fragmented_size_bytes=10)


def test_leaving_early_drops_the_rest() -> None:
    def script(peer: RawPeer) -> None:
        peer.send(fragments(OP_BINARY, [os.urandom(LIMIT) for _ in range(8)]))
        peer.send(build_frame(OP_TEXT, b"next"))
        peer.close_handshake()

    with raw_server(script) as url, connect(url) as ws:
        parts = ws.receive_fragments()
        assert next(parts)
        parts.close()
        assert ws.receive_text() == "next"


def test_over_the_fragmented_limit_fails_with_1009() -> None:
    closes: list[tuple[int, str]] = []

    def script(peer: RawPeer) -> None:
        peer.send(fragments(OP_BINARY, [b"a" * LIMIT] * 3))
        while (frame := peer.receive_frame()).opcode != OP_CLOSE:
            pass
        closes.append(frame.close)

    with raw_server(script) as url, connect(url, max_fragmented_size_bytes=2 * LIMIT) as ws:
        parts = ws.receive_fragments()
        with pytest.raises(WebSocketDisconnect) as info:
            list(parts)
    expected = f"message of {3 * LIMIT} bytes exceeds max_fragmented_size_bytes={2 * LIMIT}"
    assert (info.value.code, info.value.reason) == (1009, expected)
    assert closes == [(1009, expected)]


def test_send_fragments_with_a_whole_message_from_another_thread() -> None:
    frames: list[tuple[int, bool, bytes]] = []
    second_fragment = threading.Event()

    def script(peer: RawPeer) -> None:
        while (frame := peer.receive_frame()).opcode != OP_CLOSE:
            frames.append((frame.opcode, frame.fin, frame.payload))
        peer.send(build_frame(OP_CLOSE, frame.payload))

    def parts() -> Iterator[bytes]:
        yield b"one"
        yield b"two"  # b"one" goes out now
        sender.start()
        # The whole message waits for the end of this one.
        assert not second_fragment.wait(0.2)
        yield b"three"

    with raw_server(script) as url, connect(url) as ws:
        sender = threading.Thread(target=lambda: (ws.send_text("whole"), second_fragment.set()))
        ws.send_fragments(parts())
        sender.join(5)
        assert second_fragment.is_set()
    assert frames == [
        (OP_BINARY, False, b"one"),
        (OP_CONT, False, b"two"),
        (OP_CONT, True, b"three"),
        (OP_TEXT, True, b"whole"),
    ]


def test_sha256_intact_both_ways() -> None:
    chunks = [os.urandom(60_000) for _ in range(40)]
    digest = hashlib.sha256(b"".join(chunks)).hexdigest()

    def script(peer: RawPeer) -> None:
        while True:
            frame = peer.receive_frame()
            peer.send(build_frame(frame.opcode, frame.payload, fin=frame.fin))
            if frame.opcode == OP_CLOSE:
                return

    with raw_server(script) as url, connect(url, max_message_size_bytes=65_536) as ws:
        sender = threading.Thread(target=ws.send_fragments, args=(chunks,))
        sender.start()
        got = hashlib.sha256()
        for part in ws.receive_fragments(timeout=10):
            assert isinstance(part, bytes)
            got.update(part)
        sender.join(10)
    assert got.hexdigest() == digest


def test_reader_stops_while_parts_wait() -> None:
    frame_size = 64 * 1024
    count = 32 * 1024 * 1024 // frame_size  # more than the socket buffers hold
    sent = 0
    done = threading.Event()

    def script(peer: RawPeer) -> None:
        nonlocal sent
        chunk = b"z" * frame_size
        for i in range(count):
            opcode = OP_BINARY if i == 0 else OP_CONT
            peer.send(build_frame(opcode, chunk, fin=i == count - 1))
            sent += 1
        done.set()
        peer.close_handshake()

    with raw_server(script) as url, connect(url, max_message_size_bytes=frame_size) as ws:
        parts = ws.receive_fragments(timeout=10)
        size = len(next(parts))
        # Nobody takes parts: the background thread pauses, TCP fills, the server stalls.
        assert not done.wait(0.5)
        assert ws.statistics().reader_paused
        assert sent < count // 2
        for part in parts:
            size += len(part)
        assert size == count * frame_size
        assert done.wait(5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_256_mib_each_way_intact_in_bounded_memory() -> None:
    results = run_large_messages("sync", 256)
    assert [(r["direction"], r["intact"]) for r in results] == [("receive", True), ("send", True)]
    assert all(r["growth_mib"] < 32 for r in results), results
