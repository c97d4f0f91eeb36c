"""The test harness itself, checked with third-party clients only (websockets, raw sockets)."""

from __future__ import annotations

import importlib.metadata
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests import servers
from tests.peers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Frame,
    ScriptedPeer,
    accept_key,
    build_frame,
    close_payload,
    parse_frame,
    scripted_server,
)


class TestRealServers:
    """Every endpoint on every server, through the `websockets` client (asyncio only)."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.mark.anyio
    async def test_echo_text_and_binary(self, server_url: str) -> None:
        async with connect(server_url + "/echo", compression=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == b"\x00\x01\xff"

    @pytest.mark.anyio
    @pytest.mark.parametrize("kind", ["text", "binary"])
    async def test_flood_sends_n_messages_then_closes_1000(
        self, server_url: str, kind: str
    ) -> None:
        conn_id = servers.new_id()
        record = servers.REGISTRY.record(conn_id)
        url = f"{server_url}/flood?n=50&size=100&kind={kind}&id={conn_id}"
        async with connect(url, compression=None) as ws:
            received = [message async for message in ws]
            assert ws.close_code == 1000
        assert received == [servers.flood_payload(i, 100, kind) for i in range(50)]
        await record.wait_finished()
        assert record.sent == 50
        assert record.close_code == 1000  # the client's answer to the server's close
        assert record.error is None

    @pytest.mark.anyio
    @pytest.mark.parametrize("status", [401, 403, 503])
    async def test_reject_gives_the_status(self, server_url: str, status: int) -> None:
        conn_id = servers.new_id()
        record = servers.REGISTRY.record(conn_id)
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{server_url}/reject?status={status}&id={conn_id}"):
                pass
        assert info.value.response.status_code == status
        assert info.value.response.body == b"rejected\n"
        await record.wait_finished()
        assert record.rejected_status == status

    @pytest.mark.anyio
    async def test_close_sends_code_and_reason(self, server_url: str) -> None:
        async with connect(server_url + "/close?code=4001&reason=bye") as ws:
            with pytest.raises(ConnectionClosedError):
                await ws.recv()
            assert ws.close_code == 4001
            assert ws.close_reason == "bye"

    @pytest.mark.anyio
    async def test_recv_then_close_echoes_reason_truncated(self, server_url: str) -> None:
        conn_id = servers.new_id()
        record = servers.REGISTRY.record(conn_id)
        async with connect(f"{server_url}/recv_then_close?code=4002&id={conn_id}") as ws:
            await ws.send("é" * 100)  # 200 bytes of UTF-8
            with pytest.raises(ConnectionClosedError):
                await ws.recv()
            assert ws.close_code == 4002
            assert ws.close_reason == "é" * 60
        await record.wait_finished()
        assert record.received == ["é" * 100]

    @pytest.mark.anyio
    async def test_records_client_close_code(self, server_url: str, server_name: str) -> None:
        conn_id = servers.new_id()
        record = servers.REGISTRY.record(conn_id)
        async with connect(f"{server_url}/echo?id={conn_id}") as ws:
            await ws.send("a")
            assert await ws.recv() == "a"
            await ws.close(4100, "done")
        await record.wait_finished()
        assert record.received == ["a"]
        if server_name == "hypercorn":  # hypercorn tells the app 1006, whatever the client sent
            assert (record.close_code, record.close_reason) == (1006, "")
        else:
            assert (record.close_code, record.close_reason) == (4100, "done")

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("offer", "chosen"),
        [(["chat.v1", "chat.v2"], "chat.v1"), (["x", "chat.v2"], "chat.v2"), (["x"], None)],
    )
    async def test_subprotocols(
        self, server_url: str, offer: list[str], chosen: str | None
    ) -> None:
        async with connect(server_url + "/subprotocols", subprotocols=offer) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol == chosen
            assert await ws.recv() == (chosen or "")
            await ws.send("after")
            assert await ws.recv() == "after"

    @pytest.mark.anyio
    async def test_headers_are_reported_lower_cased(self, server_url: str) -> None:
        async with connect(server_url + "/headers", additional_headers={"X-Trace-Id": "abc"}) as ws:
            seen = json.loads(await ws.recv())
            assert seen["x-trace-id"] == "abc"
            assert seen["upgrade"].lower() == "websocket"

    @pytest.mark.anyio
    async def test_json_sends_n_documents_then_echoes(self, server_url: str) -> None:
        async with connect(server_url + "/json?n=2") as ws:
            assert [json.loads(await ws.recv()) for _ in range(2)] == [
                servers.json_payload(0),
                servers.json_payload(1),
            ]
            await ws.send("x")
            assert await ws.recv() == "x"

    @pytest.mark.anyio
    async def test_stats_endpoint_reports_a_record(self, server_url: str) -> None:
        conn_id = servers.new_id()
        record = servers.REGISTRY.record(conn_id)
        async with connect(f"{server_url}/echo?id={conn_id}") as ws:
            await ws.send("one")
            await ws.recv()
        await record.wait_finished()
        async with connect(f"{server_url}/stats?of={conn_id}") as ws:
            snapshot = json.loads(await ws.recv())
        assert snapshot["received"] == 1
        assert snapshot["path"] == "/echo"
        assert snapshot["finished"] is True


def test_raw_socket_handshake(server_url: str) -> None:
    parts = urlsplit(server_url)
    assert parts.hostname == "127.0.0.1"
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101")
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head


@pytest.mark.anyio
async def test_flood_blocks_when_the_client_does_not_read(
    server_url: str, server_name: str
) -> None:
    parts = urlsplit(server_url)
    assert parts.hostname is not None
    assert parts.port is not None
    conn_id = servers.new_id()
    record = servers.REGISTRY.record(conn_id)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((parts.hostname, parts.port))
        sock.sendall(
            f"GET /flood?n=1000&size=65536&kind=binary&id={conn_id} HTTP/1.1\r\nHost: x\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await servers.wait_until(lambda: record.blocked_for > 0.1)
        assert 0 < record.sent < 1000
    await record.wait_finished()
    if server_name == "hypercorn":  # hypercorn drops sends once the client is gone
        assert record.sent == 1000
    else:
        assert record.sent < 1000
    assert record.close_code == 1006


def test_echo_url_points_at_echo(echo_url: str, uvicorn_websockets_url: str) -> None:
    assert echo_url == uvicorn_websockets_url + "/echo"


# --------------------------------------------------------------------------- frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
@pytest.mark.parametrize("mask", [False, True])
def test_build_and_parse_frame_round_trip(size: int, mask: bool) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    data = build_frame(OP_BINARY, payload, fin=False, rsv1=True, mask=mask)
    assert parse_frame(data[:-1]) is None
    parsed = parse_frame(data + b"extra")
    assert parsed is not None
    frame, consumed = parsed
    assert consumed == len(data)
    assert frame == Frame(OP_BINARY, payload, fin=False, rsv1=True, masked=mask)


def test_build_frame_header_bytes() -> None:
    assert build_frame(OP_TEXT, b"Hello") == b"\x81\x05Hello"
    # RFC 6455 section 5.7: masked "Hello"
    assert build_frame(OP_TEXT, b"Hello", mask=b"\x37\xfa\x21\x3d") == bytes.fromhex(
        "818537fa213d7f9f4d5158"
    )
    assert build_frame(OP_PING, b"", rsv2=True, rsv3=True) == b"\xb9\x00"
    assert build_frame(OP_TEXT, b"ab", length_override=200) == b"\x81\x7e\x00\xc8ab"
    assert build_frame(OP_TEXT, b"ab", length_width=64) == b"\x81\x7f" + bytes(7) + b"\x02ab"


def test_close_payload_and_accept_key() -> None:
    assert close_payload(1001, "bye") == b"\x03\xe9bye"
    assert close_payload(None) == b""
    assert Frame(OP_CLOSE, close_payload(4000, "é")).close == (4000, "é")
    assert Frame(OP_CLOSE, b"").close == (1005, "")
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# --------------------------------------------------------------------------- scripted peers
# Driven by a hand-written anyio client, so they run on asyncio and trio.

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class RawClient:
    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, url: str, *, headers: str = "") -> tuple[RawClient, str]:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        client = cls(await anyio.connect_tcp(parts.hostname, parts.port))
        await client.stream.send(
            f"GET /chat?x=1 HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{headers}\r\n".encode()
        )
        with anyio.fail_after(5):
            while b"\r\n\r\n" not in client.buffer:
                client.buffer += await client.stream.receive()
        end = client.buffer.index(b"\r\n\r\n") + 4
        head = client.buffer[:end].decode()
        del client.buffer[:end]
        return client, head

    async def receive_frame(self) -> Frame:
        with anyio.fail_after(5):
            while (parsed := parse_frame(self.buffer)) is None:
                self.buffer += await self.stream.receive()
        frame, consumed = parsed
        del self.buffer[:consumed]
        return frame


@pytest.mark.anyio
async def test_scripted_handshake_and_echo_round_trip() -> None:
    seen: list[ScriptedPeer] = []

    async def script(peer: ScriptedPeer) -> None:
        seen.append(peer)
        assert await peer.echo() == (1000, "done")

    async with scripted_server(script, subprotocol="chat.v1", extra_headers=[("X-A", "b")]) as url:
        client, head = await RawClient.connect(url, headers="X-Trace: 7\r\n")
        async with client.stream:
            assert head.startswith("HTTP/1.1 101 ")
            assert f"Sec-WebSocket-Accept: {accept_key(KEY)}\r\n" in head
            assert "Sec-WebSocket-Protocol: chat.v1\r\n" in head
            assert "X-A: b\r\n" in head
            await client.stream.send(build_frame(OP_TEXT, b"hi", fin=False, mask=True))
            await client.stream.send(build_frame(OP_PING, b"p", mask=True))  # between fragments
            await client.stream.send(build_frame(OP_CONT, b" there", mask=True))
            assert await client.receive_frame() == Frame(OP_PONG, b"p")
            assert await client.receive_frame() == Frame(OP_TEXT, b"hi there")
            await client.stream.send(build_frame(OP_CLOSE, close_payload(1000, "done"), mask=True))
            assert await client.receive_frame() == Frame(OP_CLOSE, close_payload(1000))
            with pytest.raises(anyio.EndOfStream):
                await client.stream.receive()
    assert seen[0].path == "/chat?x=1"
    assert seen[0].header("x-trace") == "7"
    assert ("X-Trace", "7") in seen[0].request_headers


@pytest.mark.anyio
async def test_scripted_server_initiated_close_and_raw_bytes() -> None:
    async def script(peer: ScriptedPeer) -> None:
        frame = build_frame(OP_BINARY, b"\x00\x01")
        await peer.send_raw(frame[:1])
        await peer.send_raw(frame[1:] + build_frame(OP_TEXT, b"x", rsv1=True))
        assert await peer.close_handshake(4000, "bye") == (4000, "ok")

    async with scripted_server(script) as url:
        client, _ = await RawClient.connect(url)
        async with client.stream:
            assert await client.receive_frame() == Frame(OP_BINARY, b"\x00\x01")
            assert await client.receive_frame() == Frame(OP_TEXT, b"x", rsv1=True)
            assert (await client.receive_frame()).close == (4000, "bye")
            await client.stream.send(build_frame(OP_CLOSE, close_payload(4000, "ok"), mask=True))
            with pytest.raises(anyio.EndOfStream):
                await client.stream.receive()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"status": 403}, "HTTP/1.1 403 Forbidden\r\n"),
        ({"accept_key_override": "bogus"}, "Sec-WebSocket-Accept: bogus\r\n"),
    ],
)
async def test_scripted_handshake_failures(options: dict[str, Any], expected: str) -> None:
    async with scripted_server(None, **options) as url:
        client, head = await RawClient.connect(url)
        await client.stream.aclose()
    assert expected in head


@pytest.mark.anyio
async def test_scripted_unmasked_client_frame_fails_the_test() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.receive_frame()

    async def run() -> None:
        async with scripted_server(script) as url:
            client, _ = await RawClient.connect(url)
            async with client.stream:
                await client.stream.send(build_frame(OP_TEXT, b"x"))
                await anyio.sleep_forever()  # cancelled by the script's failure

    with pytest.raises(AssertionError, match="unmasked"):
        await run()


@pytest.mark.anyio
@pytest.mark.skipif(
    tuple(int(p) for p in importlib.metadata.version("anyio").split(".")[:2]) < (4, 16),
    reason="anyio before 4.16 reports a reset read as the end of the stream",
)
async def test_scripted_abort_resets_the_connection() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text("before")
        assert peer.stream.extra(SocketAttribute.remote_address)
        await peer.abort()

    async with scripted_server(script) as url:
        client, _ = await RawClient.connect(url)
        async with client.stream:
            assert await client.receive_frame() == Frame(OP_TEXT, b"before")
            with pytest.raises(anyio.BrokenResourceError):
                await client.stream.receive()


@pytest.mark.anyio
async def test_scripted_peer_still_running_is_a_timeout() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await anyio.sleep_forever()

    async def run() -> None:
        async with scripted_server(script, finish_timeout=0.05) as url:
            client, _ = await RawClient.connect(url)
            await client.stream.aclose()

    with pytest.raises(TimeoutError, match="still running"):
        await run()
