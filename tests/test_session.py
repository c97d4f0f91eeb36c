"""End-to-end tests of the async session, against real servers and scripted peers.

Real servers (uvicorn with websockets and wsproto, hypercorn, the websockets server) check
that every method of the session works with every common implementation; scripted peers
(`tests.peers`) inject what real servers never send: fragments with pings between them,
oversized and malformed frames, silent or half-closing peers.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from wsproto.events import BytesMessage, TextMessage

import streams
from streams import (
    AsyncWebSocketSession,
    WebSocketDisconnect,
    WebSocketInvalidTypeReceived,
    WebSocketNetworkError,
)
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
    build_frame,
    close_payload,
    scripted_server,
)

pytestmark = pytest.mark.anyio

CLOSE_TIMEOUT = 2.0
"""The default close timeout of these tests: long enough never to fire against a live peer."""

# Loading the CA bundle costs tens of milliseconds: once for the module, not once per client.
TLS_CONTEXT = ssl.create_default_context()


@asynccontextmanager
async def connect(url: str, **kwargs: Any) -> AsyncIterator[AsyncWebSocketSession]:
    """`streams.aconnect_ws` through a fresh httpx client, with a short close timeout."""
    kwargs.setdefault("close_timeout", CLOSE_TIMEOUT)
    async with (
        httpx.AsyncClient(verify=TLS_CONTEXT) as client,
        streams.aconnect_ws(url, client, **kwargs) as ws,
    ):
        yield ws


async def collect(ws: AsyncWebSocketSession, into: list[str | bytes]) -> None:
    """Iterate over the session, appending to ``into`` (which keeps them if iteration raises)."""
    async for message in ws:
        into.append(message)


def new_record() -> tuple[str, servers.ConnectionRecord]:
    """A fresh ``?id=`` and its server-side record (created before connecting: no race)."""
    conn_id = servers.new_id()
    return conn_id, servers.REGISTRY.record(conn_id)


# --------------------------------------------------------------------------- every server


class TestEveryServer:
    """The httpx-ws methods of the session, against every real server."""

    async def test_receive_returns_wsproto_events(self, server_url: str) -> None:
        async with connect(server_url + "/echo") as ws:
            await ws.send_text("héllo")
            event = await ws.receive()
            assert isinstance(event, TextMessage)
            assert event.data == "héllo"
            await ws.send_bytes(b"\x00\xff")
            event = await ws.receive(timeout=5)
            assert isinstance(event, BytesMessage)
            assert event.data == b"\x00\xff"

    async def test_receive_timeout_raises_timeout_error_and_the_session_goes_on(
        self, server_url: str
    ) -> None:
        async with connect(server_url + "/echo") as ws:
            for receive in (ws.receive, ws.receive_text, ws.receive_bytes, ws.receive_json):
                start = time.monotonic()
                with pytest.raises(TimeoutError):
                    await receive(timeout=0.05)
                assert time.monotonic() - start < 1
            await ws.send_text("still here")
            assert await ws.receive_text(timeout=5) == "still here"

    async def test_receive_text_and_bytes(self, server_url: str) -> None:
        async with connect(server_url + "/echo") as ws:
            await ws.send_text("text")
            await ws.send_bytes(b"bytes")
            assert await ws.receive_text() == "text"
            assert await ws.receive_bytes() == b"bytes"

    async def test_receive_of_the_wrong_kind_raises_invalid_type(self, server_url: str) -> None:
        async with connect(server_url + "/echo") as ws:
            await ws.send_bytes(b"bytes")
            with pytest.raises(WebSocketInvalidTypeReceived) as info:
                await ws.receive_text()
            assert info.value.event == BytesMessage(data=b"bytes")
            await ws.send_text("text")
            with pytest.raises(WebSocketInvalidTypeReceived) as info:
                await ws.receive_bytes()
            assert info.value.event == TextMessage(data="text")
            await ws.send_json({"a": 1}, mode="text")
            with pytest.raises(WebSocketInvalidTypeReceived):
                await ws.receive_json(mode="binary")
            await ws.send_json({"a": 1}, mode="binary")
            with pytest.raises(WebSocketInvalidTypeReceived):
                await ws.receive_json(mode="text")
            # The wrong message was consumed, nothing else: the session goes on.
            await ws.send_text("next")
            assert await ws.receive_text() == "next"

    async def test_receive_json_text_and_binary(self, server_url: str) -> None:
        async with connect(server_url + "/json?n=2") as ws:
            assert await ws.receive_json() == servers.json_payload(0)
            assert await ws.receive_json(timeout=5, mode="text") == servers.json_payload(1)
            document = {"list": [1, 2.5, None, True], "text": "é", "nested": {"k": "v"}}
            await ws.send_json(document)
            assert await ws.receive_json() == document
            await ws.send_json(document, mode="binary")
            assert await ws.receive_json(mode="binary") == document

    async def test_send_fragmented_message_events(self, server_url: str) -> None:
        async with connect(server_url + "/echo") as ws:
            await ws.send(TextMessage(data="hé", message_finished=False))
            await ws.send(TextMessage(data="llo", message_finished=False))
            await ws.send(TextMessage(data=" world", message_finished=True))
            assert await ws.receive_text() == "héllo world"
            await ws.send(BytesMessage(data=b"\x00\x01", message_finished=False))
            await ws.send(BytesMessage(data=b"\x02", message_finished=True))
            assert await ws.receive_bytes() == b"\x00\x01\x02"
            await ws.send(TextMessage(data="whole"))
            assert await ws.receive_text() == "whole"
            assert ws.statistics().messages_sent == 3

    async def test_ping_event_is_set_on_pong(self, server_url: str) -> None:
        async with connect(server_url + "/echo") as ws:
            assert ws.statistics().ping_rtt is None
            with anyio.fail_after(5):
                await (await ws.ping()).wait()
                await (await ws.ping(b"payload")).wait()
            rtt = ws.statistics().ping_rtt
            assert rtt is not None
            assert 0 <= rtt < 5

    async def test_close_code_and_reason_reach_the_server(
        self, server_url: str, server_name: str
    ) -> None:
        conn_id, record = new_record()
        async with connect(f"{server_url}/echo?id={conn_id}") as ws:
            await ws.send_text("a")
            assert await ws.receive_text() == "a"
            await ws.close(4100, "done")
            assert ws.closed
            assert ws.close_code == 4100  # the server echoes the code
            with pytest.raises(WebSocketDisconnect):
                await ws.receive()
        await record.wait_finished()
        assert record.received == ["a"]
        if server_name == "hypercorn":  # hypercorn tells the app 1006, whatever the client sent
            assert record.close_code == 1006
        else:
            assert (record.close_code, record.close_reason) == (4100, "done")

    async def test_leaving_the_block_closes_with_1000(
        self, server_url: str, server_name: str
    ) -> None:
        conn_id, record = new_record()
        async with connect(f"{server_url}/echo?id={conn_id}") as ws:
            await ws.send_text("a")
            assert await ws.receive_text() == "a"
        assert ws.closed
        assert ws.close_code == 1000
        await record.wait_finished()
        if server_name != "hypercorn":
            assert record.close_code == 1000

    async def test_subprotocol_and_response(self, server_url: str) -> None:
        async with connect(server_url + "/subprotocols", subprotocols=["x", "chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1"
            assert ws.response is not None
            assert ws.response.status_code == 101
            assert ws.response.headers["sec-websocket-protocol"] == "chat.v1"
            assert await ws.receive_text() == "chat.v1"
        async with connect(server_url + "/echo") as ws:
            assert ws.subprotocol is None
            assert ws.response is not None
            assert ws.response.headers["upgrade"].lower() == "websocket"

    async def test_async_for_ends_quietly_on_a_normal_close(self, server_url: str) -> None:
        async with connect(server_url + "/flood?n=50&size=100&kind=binary") as ws:
            received = [message async for message in ws]
            assert ws.close_code == 1000
            # Iterating again ends at once.
            assert [message async for message in ws] == []
        assert received == [servers.flood_payload(i, 100, "binary") for i in range(50)]

    @pytest.mark.parametrize("code", [1000, 1001])
    async def test_async_for_ends_quietly_on_close_code(self, server_url: str, code: int) -> None:
        async with connect(f"{server_url}/close?code={code}&reason=bye") as ws:
            assert [message async for message in ws] == []
            assert (ws.close_code, ws.close_reason) == (code, "bye")

    @pytest.mark.parametrize("code", [1011, 4000])
    async def test_async_for_raises_on_another_close_code(self, server_url: str, code: int) -> None:
        async with connect(f"{server_url}/close?code={code}&reason=custom") as ws:
            with pytest.raises(WebSocketDisconnect) as info:
                async for _ in ws:
                    pass
            assert (info.value.code, info.value.reason) == (code, "custom")
            assert (ws.close_code, ws.close_reason) == (code, "custom")

    async def test_receive_after_the_end_raises_at_once(self, server_url: str) -> None:
        async with connect(server_url + "/recv_then_close?code=4002") as ws:
            await ws.send_text("see you")
            with anyio.fail_after(5):
                for _ in range(3):
                    for receive in (ws.receive, ws.receive_text, ws.receive_bytes):
                        with pytest.raises(WebSocketDisconnect) as info:
                            await receive()
                        assert (info.value.code, info.value.reason) == (4002, "see you")
        # After the block too, and with a timeout given.
        with anyio.fail_after(1), pytest.raises(WebSocketDisconnect):
            await ws.receive(timeout=10)
        with anyio.fail_after(1), pytest.raises(WebSocketDisconnect):
            await ws.receive_json()

    async def test_send_after_close_raises(self, server_url: str) -> None:
        async with connect(server_url + "/echo") as ws:
            await ws.close()
            with pytest.raises(WebSocketDisconnect):
                await ws.send_text("too late")
            with pytest.raises(WebSocketDisconnect):
                await ws.send_bytes(b"too late")
            with pytest.raises(WebSocketDisconnect):
                await ws.ping()


async def test_receive_json_of_invalid_json_carries_the_payload(echo_url: str) -> None:
    async with connect(echo_url) as ws:
        await ws.send_text("{not json")
        with pytest.raises(streams.WebSocketDecodeError) as info:
            await ws.receive_json()
        assert info.value.payload == "{not json"
        await ws.send_bytes(b"[1, 2")
        with pytest.raises(streams.WebSocketDecodeError) as info:
            await ws.receive_json(mode="binary")
        assert info.value.payload == b"[1, 2"
        with pytest.raises(ValueError, match="mode"):
            await ws.send_json({}, mode="xml")  # type: ignore[arg-type]


async def test_send_after_the_peer_closed_raises_its_close(echo_url: str) -> None:
    url = echo_url.removesuffix("/echo") + "/close?code=4005&reason=gone"
    async with connect(url) as ws:
        with pytest.raises(WebSocketDisconnect):
            await ws.receive()
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.send_text("to nobody")
        assert (info.value.code, info.value.reason) == (4005, "gone")


async def test_ping_payload_over_125_bytes_raises_value_error(echo_url: str) -> None:
    async with connect(echo_url) as ws:
        with pytest.raises(ValueError, match="too long"):
            await ws.ping(b"x" * 126)
        with anyio.fail_after(5):
            await (await ws.ping(b"x" * 125)).wait()
        await ws.send_text("still open")
        assert await ws.receive_text() == "still open"


@pytest.mark.parametrize("code", [999, 2000, 5000])
async def test_close_with_a_code_not_allowed_on_the_wire_raises_value_error(
    echo_url: str, code: int
) -> None:
    async with connect(echo_url) as ws:
        with pytest.raises(ValueError, match="code"):
            await ws.close(code)
        await ws.send_text("still open")
        assert await ws.receive_text() == "still open"


async def test_inflated_size_over_the_limit_sends_and_raises_1009(hypercorn_url: str) -> None:
    # hypercorn accepts permessage-deflate: 100 kB of filler is a small frame on the wire.
    url = hypercorn_url + "/flood?n=2&size=100000"
    async with connect(url, max_message_size_bytes=65536) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers.get("sec-websocket-extensions", "")
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive()
        assert info.value.code == 1009


async def test_send_stream_after_the_end_raises_instead_of_hanging(echo_url: str) -> None:
    async with connect(echo_url) as ws:
        clone = ws.send_stream.clone()
        await ws.close()
    with anyio.fail_after(1):
        with pytest.raises(anyio.BrokenResourceError):  # the session (receiving end) is gone
            await clone.send("too late")
        with pytest.raises(anyio.ClosedResourceError):  # the session closed its own end
            await ws.send_stream.send("too late")
    clone.close()


# --------------------------------------------------------------------------- the context manager


class RaisedInside(Exception):
    pass


async def test_exception_inside_the_block_comes_out_as_itself(echo_url: str) -> None:
    sessions: list[AsyncWebSocketSession] = []

    async def run() -> None:
        async with connect(echo_url, keepalive_ping_interval_seconds=0.05) as ws:
            sessions.append(ws)
            await ws.send_text("x")
            raise RaisedInside("boom")

    with pytest.raises(RaisedInside) as info:
        await run()
    assert not isinstance(info.value, BaseExceptionGroup)
    assert sessions[0].closed


async def test_exception_inside_the_block_while_the_server_floods(uvicorn_wsproto_url: str) -> None:
    url = uvicorn_wsproto_url + "/flood?n=1000&size=1024"
    sessions: list[AsyncWebSocketSession] = []

    async def run() -> None:
        async with connect(url, queue_size=4, compression=None) as ws:
            sessions.append(ws)
            await servers.wait_until(lambda: ws.statistics().reader_paused)
            raise KeyError("inside")

    with pytest.raises(KeyError):
        await run()
    assert sessions[0].closed


async def test_exception_inside_a_task_group_inside_the_block(echo_url: str) -> None:
    async def fail() -> None:
        raise RaisedInside("in a task")

    with pytest.raises(ExceptionGroup) as info:
        async with connect(echo_url) as ws, anyio.create_task_group() as group:
            group.start_soon(fail)
    # Only the user's own task group groups it, once.
    assert info.group_contains(RaisedInside, depth=1)
    assert ws.closed


async def test_cancelling_the_scope_around_the_session_still_sends_close_1000() -> None:
    frames: list[Frame] = []

    async def script(peer: ScriptedPeer) -> None:
        frames.extend(await peer.wait_eof())

    async with scripted_server(script) as url:
        with anyio.CancelScope() as scope:
            async with connect(url + "/") as ws:
                scope.cancel()
                await ws.receive()  # cancelled
        assert scope.cancelled_caught
        assert ws.closed
        assert ws.close_code is not None
    assert [(f.opcode, f.close) for f in frames] == [(OP_CLOSE, (1000, ""))]


# --------------------------------------------------------------------------- the channels


async def test_channels_are_anyio_memory_object_streams(echo_url: str) -> None:
    async with connect(echo_url, queue_size=7) as ws:
        assert isinstance(ws.receive_stream, MemoryObjectReceiveStream)
        assert isinstance(ws.send_stream, MemoryObjectSendStream)
        assert ws.receive_stream.statistics().max_buffer_size == 7
        await ws.send_stream.send("text")
        await ws.send_stream.send(b"bytes")
        assert await ws.receive_stream.receive() == "text"
        assert await ws.receive_stream.receive() == b"bytes"


async def test_send_stream_sends_in_order(echo_url: str) -> None:
    messages: list[str | bytes] = [f"m{i}" if i % 3 else f"b{i}".encode() for i in range(300)]
    async with connect(echo_url) as ws, anyio.create_task_group() as group:

        async def produce() -> None:
            for message in messages:
                await ws.send_stream.send(message)

        group.start_soon(produce)
        received = [await ws.receive_stream.receive() for _ in messages]
    assert received == messages


async def test_cloned_channels_in_other_tasks(echo_url: str) -> None:
    per_task = 50
    received: list[str | bytes] = []
    consumers: list[list[str | bytes]] = [[], []]
    async with connect(echo_url) as ws:
        async with anyio.create_task_group() as group:

            async def produce(name: str, channel: MemoryObjectSendStream[str | bytes]) -> None:
                async with channel:
                    for i in range(per_task):
                        await channel.send(f"{name}:{i}")

            async def consume(
                channel: MemoryObjectReceiveStream[str | bytes], mine: list[str | bytes]
            ) -> None:
                async with channel:
                    while len(received) < 3 * per_task:
                        with anyio.move_on_after(0.05):
                            message = await channel.receive()
                            mine.append(message)
                            received.append(message)

            for name in "abc":
                group.start_soon(produce, name, ws.send_stream.clone())
            for consumer in consumers:
                group.start_soon(consume, ws.receive_stream.clone(), consumer)
        # The clones are closed; the session's own channels still work.
        await ws.send_text("after")
        assert await ws.receive_text() == "after"
        assert not ws.closed
    assert sorted(received) == sorted(f"{n}:{i}" for n in "abc" for i in range(per_task))
    # Each receiver gets a subsequence of the channel's order (two receivers
    # woken together may append to ``received`` in either order).
    for consumer in consumers:
        for name in "abc":
            mine = [int(m[2:]) for m in consumer if isinstance(m, str) and m.startswith(name)]
            assert mine == sorted(mine)


async def test_closing_send_stream_starts_the_close_handshake(
    server_url: str, server_name: str
) -> None:
    conn_id, record = new_record()
    async with connect(f"{server_url}/echo?id={conn_id}") as ws:
        clone = ws.send_stream.clone()
        await ws.send_stream.aclose()
        await clone.send("through the clone")
        assert await ws.receive_text() == "through the clone"
        assert not ws.closed  # a clone is still open
        await clone.aclose()  # the last one: close 1000
        with anyio.fail_after(5):
            assert [message async for message in ws] == []
        assert ws.close_code == 1000
    await record.wait_finished()
    assert record.received == ["through the clone"]
    if server_name != "hypercorn":
        assert record.close_code == 1000


async def test_receive_stream_ends_after_the_messages(uvicorn_websockets_url: str) -> None:
    async with connect(uvicorn_websockets_url + "/flood?n=20&size=10") as ws:
        received = [message async for message in ws.receive_stream]
    assert received == [servers.flood_payload(i, 10) for i in range(20)]


# --------------------------------------------------------------------------- protocol


async def test_fragmented_messages_with_pings_between_fragments() -> None:
    text = "héllo wörld".encode()

    async def script(peer: ScriptedPeer) -> None:
        await peer.send_frame(OP_TEXT, text[:2], fin=False)  # cuts "é" in two
        await peer.send_frame(OP_PING, b"p1")
        await peer.send_frame(OP_CONT, text[2:9], fin=False)
        await peer.send_frame(OP_CONT, text[9:])
        await peer.send_frame(OP_BINARY, b"\x00", fin=False)
        await peer.send_frame(OP_CONT, b"\x01", fin=False)
        await peer.send_frame(OP_PING, b"p2")
        await peer.send_frame(OP_CONT, b"", fin=False)
        await peer.send_frame(OP_CONT, b"\x02")
        pong = await peer.receive_frame()
        assert (pong.opcode, pong.payload) == (OP_PONG, b"p1")
        pong = await peer.receive_frame()
        assert (pong.opcode, pong.payload) == (OP_PONG, b"p2")
        assert await peer.answer_close() == (1000, "")

    async with scripted_server(script) as url, connect(url + "/", compression=None) as ws:
        assert await ws.receive_text() == "héllo wörld"
        assert await ws.receive_bytes() == b"\x00\x01\x02"
        assert ws.statistics().messages_received == 2


def text_frame(text: str) -> bytes:
    return build_frame(OP_TEXT, text.encode())


LIMIT = 1000

TOO_BIG = {
    "binary": [build_frame(OP_BINARY, b"x" * (LIMIT + 1))],
    "text": [build_frame(OP_TEXT, b"x" * (LIMIT + 1))],
    "binary-fragments": [
        build_frame(OP_BINARY, b"x" * 400, fin=False),
        build_frame(OP_CONT, b"x" * 400, fin=False),
        build_frame(OP_CONT, b"x" * 400),
    ],
    "text-fragments": [
        build_frame(OP_TEXT, b"x" * 600, fin=False),
        build_frame(OP_PING, b"between"),
        build_frame(OP_CONT, b"x" * 600),
    ],
    # Only the header of a 1 GiB frame: refused before its payload arrives.
    "huge-header": [build_frame(OP_BINARY, b"x" * 10, length_override=1 << 30)],
}


@pytest.mark.parametrize("frames", TOO_BIG.values(), ids=TOO_BIG.keys())
async def test_message_over_the_size_limit_sends_and_raises_1009(frames: list[bytes]) -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text("before")
        await peer.send_raw(b"".join(frames))
        code, _ = await peer.receive_close()
        assert code == 1009
        await peer.wait_eof()

    async with (
        scripted_server(script) as url,
        connect(url + "/", max_message_size_bytes=LIMIT, compression=None) as ws,
    ):
        assert await ws.receive_text() == "before"
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive()
        assert info.value.code == 1009
        assert ws.close_code == 1009


async def test_message_of_exactly_the_size_limit_is_accepted() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_bytes(b"b" * LIMIT)
        await peer.send_frame(OP_TEXT, b"t" * 500, fin=False)
        await peer.send_frame(OP_CONT, b"t" * 500)
        assert await peer.answer_close() == (1000, "")

    async with (
        scripted_server(script) as url,
        connect(url + "/", max_message_size_bytes=LIMIT, compression=None) as ws,
    ):
        assert await ws.receive_bytes() == b"b" * LIMIT
        assert await ws.receive_text() == "t" * LIMIT


INVALID_UTF8 = {
    "frame": [build_frame(OP_TEXT, b"ok \xff")],
    "fragments": [build_frame(OP_TEXT, b"h\xc3", fin=False), build_frame(OP_CONT, b"(")],
    "truncated": [build_frame(OP_TEXT, b"ends mid-character \xc3")],
    "close-reason": [build_frame(OP_CLOSE, close_payload(1000, b"\xff\xfe"))],
}


@pytest.mark.parametrize("frames", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
async def test_invalid_utf8_sends_and_raises_1007(frames: list[bytes]) -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_raw(b"".join(frames))
        code, _ = await peer.receive_close()
        assert code == 1007
        await peer.wait_eof()

    async with scripted_server(script) as url, connect(url + "/", compression=None) as ws:
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive()
        assert info.value.code == 1007
        assert ws.close_code == 1007


PROTOCOL_ERRORS = {
    "masked-frame": [build_frame(OP_TEXT, b"masked", mask=True)],
    "reserved-data-opcode": [build_frame(0x3, b"x")],
    "reserved-control-opcode": [build_frame(0xB, b"x")],
    "rsv1": [build_frame(OP_TEXT, b"x", rsv1=True)],
    "rsv2": [build_frame(OP_BINARY, b"x", rsv2=True)],
    "rsv3": [build_frame(OP_TEXT, b"x", rsv3=True)],
    "orphan-continuation": [build_frame(OP_CONT, b"x")],
    "message-inside-a-message": [
        build_frame(OP_TEXT, b"a", fin=False),
        build_frame(OP_TEXT, b"b"),
    ],
    "fragmented-ping": [build_frame(OP_PING, b"x", fin=False)],
    "long-ping": [build_frame(OP_PING, b"x" * 126)],
    "one-byte-close": [build_frame(OP_CLOSE, b"\x03")],
    "close-code-999": [build_frame(OP_CLOSE, close_payload(999))],
    "close-code-1005": [build_frame(OP_CLOSE, close_payload(1005))],
    "close-code-2000": [build_frame(OP_CLOSE, close_payload(2000))],
}


@pytest.mark.parametrize("frames", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
async def test_protocol_error_sends_and_raises_1002(frames: list[bytes]) -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_raw(b"".join(frames))
        code, _ = await peer.receive_close()
        assert code == 1002
        await peer.wait_eof()

    async with scripted_server(script) as url, connect(url + "/", compression=None) as ws:
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive()
        assert info.value.code == 1002
        assert ws.close_code == 1002
        with pytest.raises(WebSocketDisconnect):  # and so on every call
            async for _ in ws:
                pass


@pytest.mark.parametrize("bad", [build_frame(OP_TEXT, b"x", rsv2=True), b"\x81\x02\xff\xfe"])
async def test_messages_before_an_error_are_answered_before_the_close(bad: bytes) -> None:
    # Autobahn 3.2 / 6.x "strict": a message and a broken frame in one segment.
    # The consumer's echo of the message reaches the peer before the Close frame.
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_raw(text_frame("hello") + bad)
        echo = await peer.receive_frame()
        assert (echo.opcode, echo.payload) == (OP_TEXT, b"hello")
        code, _ = await peer.receive_close()
        assert code in (1002, 1007)
        await peer.wait_eof()

    async def echo(ws: streams.AsyncWebSocketSession) -> None:
        async for message in ws:
            assert isinstance(message, str)
            await ws.send_text(message)

    async with scripted_server(script) as url, connect(url + "/", compression=None) as ws:
        with pytest.raises(WebSocketDisconnect) as info:
            await echo(ws)
        assert info.value.code in (1002, 1007)


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "many-writes"])
async def test_messages_before_an_error_are_all_delivered_first(split: bool) -> None:
    before = [text_frame("one"), build_frame(OP_BINARY, b"two"), text_frame("three" * 100)]
    bad = build_frame(OP_TEXT, b"x", rsv2=True)

    async def script(peer: ScriptedPeer) -> None:
        if split:
            for frame in [*before, bad]:
                await peer.send_raw(frame)
        else:
            await peer.send_raw(b"".join([*before, bad, text_frame("never delivered")]))
        code, _ = await peer.receive_close()
        assert code == 1002
        await peer.wait_eof()

    async with scripted_server(script) as url, connect(url + "/", compression=None) as ws:
        received: list[str | bytes] = []
        with pytest.raises(WebSocketDisconnect) as info:
            await collect(ws, received)
        assert info.value.code == 1002
    assert received == ["one", b"two", "three" * 100]


async def test_unsolicited_pong_is_ignored() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_frame(OP_PONG, b"nobody asked")
        await peer.send_frame(OP_PONG, b"")
        await peer.send_text("after the pongs")
        assert await peer.answer_close() == (1000, "")

    async with scripted_server(script) as url, connect(url + "/") as ws:
        assert await ws.receive_text() == "after the pongs"
        assert ws.statistics().ping_rtt is None
        assert not ws.closed


async def test_ping_of_the_peer_is_answered_with_its_payload() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_frame(OP_PING, b"are you there")
        frame = await peer.receive_frame()
        assert (frame.opcode, frame.payload) == (OP_PONG, b"are you there")
        await peer.send_text("done")
        assert await peer.answer_close() == (1000, "")

    async with scripted_server(script) as url, connect(url + "/") as ws:
        assert await ws.receive_text() == "done"


async def test_ping_event_waits_for_the_matching_pong() -> None:
    got_ping = anyio.Event()
    answer = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        frame = await peer.receive_frame()
        assert (frame.opcode, frame.payload) == (OP_PING, b"mine")
        got_ping.set()
        await peer.send_frame(OP_PONG, b"not mine")
        await peer.send_text("the wrong pong was read")
        await answer.wait()
        await peer.send_frame(OP_PONG, b"mine")
        assert await peer.answer_close() == (1000, "")

    async with scripted_server(script) as url, connect(url + "/") as ws:
        pong = await ws.ping(b"mine")
        await got_ping.wait()
        assert await ws.receive_text() == "the wrong pong was read"
        assert not pong.is_set()
        answer.set()
        with anyio.fail_after(5):
            await pong.wait()


async def test_pings_with_the_same_payload_are_all_answered() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.echo()  # answers every ping

    async with scripted_server(script) as url, connect(url + "/") as ws:
        first = await ws.ping(b"same")
        second = await ws.ping(b"same")
        with anyio.fail_after(1):
            await second.wait()
            await first.wait()
        assert not ws.closed


async def test_ping_waiter_is_released_when_the_connection_closes() -> None:
    async def script(peer: ScriptedPeer) -> None:
        assert (await peer.receive_frame()).opcode == OP_PING
        await peer.close_handshake(1000)

    async with scripted_server(script) as url, connect(url + "/") as ws:
        pong = await ws.ping()
        with anyio.fail_after(5):
            await pong.wait()  # never answered: set by the close
        assert ws.close_code == 1000


# --------------------------------------------------------------------------- closing


async def test_close_code_and_reason_reach_the_peer() -> None:
    async def script(peer: ScriptedPeer) -> None:
        assert await peer.answer_close() == (4001, "bye bye")

    async with scripted_server(script) as url, connect(url + "/") as ws:
        await ws.close(4001, "bye bye")
        assert (ws.close_code, ws.closed) == (4001, True)


async def test_messages_arriving_after_close_is_called_are_delivered() -> None:
    async def script(peer: ScriptedPeer) -> None:
        code, _ = await peer.receive_close()
        await peer.send_text("late 1")  # sent before the peer saw the close: still valid
        await peer.send_bytes(b"late 2")
        await peer.send_close(code)
        await peer.close_tcp()

    async with scripted_server(script) as url, connect(url + "/") as ws:
        await ws.close()
        assert [message async for message in ws] == ["late 1", b"late 2"]
        assert ws.close_code == 1000
        assert ws.statistics().messages_dropped == 0


async def test_close_reason_is_truncated_to_valid_utf8() -> None:
    async def script(peer: ScriptedPeer) -> None:
        frame = await peer.receive_frame()
        assert frame.opcode == OP_CLOSE
        assert len(frame.payload) <= 125
        code, reason = frame.close  # decodes: valid UTF-8
        assert code == 1000
        assert "é" * 50 < reason <= "é" * 100
        await peer.send_close(1000)
        await peer.close_tcp()

    async with scripted_server(script) as url, connect(url + "/") as ws:
        await ws.close(1000, "é" * 100)  # 200 bytes


async def test_close_from_the_peer_reaches_the_client_which_answers() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text("last")
        assert await peer.close_handshake(4003, "going") == (4003, "going")

    async with scripted_server(script) as url, connect(url + "/") as ws:
        assert await ws.receive_text() == "last"
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive_text()
        assert (info.value.code, info.value.reason) == (4003, "going")
        assert (ws.close_code, ws.close_reason) == (4003, "going")


async def test_empty_close_frame_from_the_peer_ends_iteration_quietly() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text("only")
        assert await peer.close_handshake(None) == (1005, "")

    async with scripted_server(script) as url, connect(url + "/") as ws:
        assert [message async for message in ws] == ["only"]
        assert ws.close_code == 1005


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_connection_lost_without_close_raises_network_error(how: str) -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text("before")
        if how == "fin":
            await peer.close_tcp()
        else:
            await peer.abort()

    async with scripted_server(script) as url, connect(url + "/") as ws:
        received: list[str | bytes] = []
        with pytest.raises(WebSocketNetworkError):
            await collect(ws, received)
        assert received == ["before"]
        assert ws.close_code == 1006
        with anyio.fail_after(1), pytest.raises(WebSocketNetworkError):
            await ws.receive()


async def test_close_wakes_a_pending_receive() -> None:
    async def script(peer: ScriptedPeer) -> None:
        assert await peer.answer_close() == (1000, "")

    async with scripted_server(script) as url, connect(url + "/") as ws:
        outcome: list[BaseException] = []

        async def wait_for_a_message() -> None:
            try:
                await ws.receive()
            except WebSocketDisconnect as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as group:
            await group.start(_started, wait_for_a_message)
            await ws.close()
        assert len(outcome) == 1
        assert isinstance(outcome[0], WebSocketDisconnect)


async def _started(function: Any, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    task_status.started()
    await function()


async def test_close_returns_after_close_timeout_when_the_peer_never_answers() -> None:
    close_timeout = 0.3

    async def script(peer: ScriptedPeer) -> None:
        assert await peer.receive_close() == (1000, "")
        await peer.wait_eof()  # no answer: the client drops the connection

    async with scripted_server(script) as url:
        async with connect(url + "/", close_timeout=close_timeout) as ws:
            start = time.monotonic()
            await ws.close()
            elapsed = time.monotonic() - start
            assert ws.closed
            assert ws.close_code == 1006
        assert close_timeout * 0.9 <= elapsed < close_timeout + 1


async def test_close_returns_after_close_timeout_when_the_peer_keeps_tcp_open() -> None:
    close_timeout = 0.3

    async def script(peer: ScriptedPeer) -> None:
        code, _ = await peer.receive_close()
        await peer.send_close(code)
        await peer.wait_eof()  # TCP stays open on this side: the client closes it

    async with scripted_server(script) as url:
        async with connect(url + "/", close_timeout=close_timeout) as ws:
            start = time.monotonic()
            await ws.close()
            elapsed = time.monotonic() - start
            assert ws.close_code == 1000
        assert close_timeout * 0.9 <= elapsed < close_timeout + 1


async def test_close_is_quick_when_the_peer_closes_tcp() -> None:
    async def script(peer: ScriptedPeer) -> None:
        assert await peer.answer_close() == (1000, "")

    async with scripted_server(script) as url, connect(url + "/", close_timeout=5) as ws:
        start = time.monotonic()
        await ws.close()
        assert time.monotonic() - start < 1


async def test_peer_that_closes_but_keeps_tcp_open_is_dropped_after_close_timeout() -> None:
    close_timeout = 0.3

    async def script(peer: ScriptedPeer) -> None:
        await peer.send_close(4000, "bye")
        assert await peer.receive_close() == (4000, "bye")
        await peer.wait_eof()  # the client drops TCP after close_timeout

    async with scripted_server(script) as url:
        start = time.monotonic()
        async with connect(url + "/", close_timeout=close_timeout) as ws:
            with pytest.raises(WebSocketDisconnect):
                await ws.receive()
            assert time.monotonic() - start < close_timeout  # the consumer learns at once
        assert close_timeout * 0.9 <= time.monotonic() - start < close_timeout + 1
        assert ws.closed


async def test_cancelled_close_drops_the_connection() -> None:
    async def script(peer: ScriptedPeer) -> None:
        assert await peer.receive_close() == (1000, "")
        await peer.wait_eof()

    async with scripted_server(script) as url, connect(url + "/", close_timeout=10) as ws:
        with anyio.move_on_after(0.1) as scope:
            await ws.close()
        assert scope.cancelled_caught
        assert ws.closed


# --------------------------------------------------------------------------- cancellation

RECEIVE_METHODS = ["receive", "receive_text", "receive_timeout", "receive_stream", "anext"]


@pytest.mark.parametrize("method", RECEIVE_METHODS)
async def test_cancelled_receive_loses_no_message(method: str) -> None:
    """Receives cancelled at random moments while messages arrive: each arrives once, in order."""
    count = 400
    rng = random.Random(method)

    async def script(peer: ScriptedPeer) -> None:
        for i in range(count):
            await peer.send_text(str(i))
            if i % 3 == 0:
                await anyio.sleep(rng.choice([0, 0.0002, 0.001]))
        assert await peer.answer_close() == (1000, "")

    async def receive(ws: AsyncWebSocketSession, wait: float) -> str | bytes:
        if method == "receive":
            event = await ws.receive()
            assert isinstance(event, TextMessage)
            return event.data
        if method == "receive_text":
            return await ws.receive_text()
        if method == "receive_timeout":
            return await ws.receive_text(timeout=wait)
        if method == "receive_stream":
            return await ws.receive_stream.receive()
        return await anext(ws)

    received: list[str | bytes] = []
    cancelled = 0
    async with scripted_server(script) as url, connect(url + "/") as ws:
        with anyio.fail_after(20):
            while len(received) < count:
                wait = rng.choice([0, 0.0001, 0.0005, 0.002])
                with anyio.move_on_after(wait) as scope:
                    try:
                        received.append(await receive(ws, wait))
                    except TimeoutError:
                        cancelled += 1
                cancelled += scope.cancelled_caught
    assert received == [str(i) for i in range(count)]
    assert cancelled > 0  # the test did cancel receives


async def test_cancelled_async_for_then_continuing() -> None:
    async def script(peer: ScriptedPeer) -> None:
        for i in range(10):
            await peer.send_text(f"first {i}")
        assert await peer.receive_message() == "more"
        for i in range(10):
            await peer.send_text(f"second {i}")
        assert await peer.close_handshake(1000) == (1000, "")

    received: list[str | bytes] = []
    async with scripted_server(script) as url, connect(url + "/") as ws:
        with anyio.CancelScope() as scope:
            async for message in ws:
                received.append(message)
                if len(received) == 10:
                    scope.cancel()  # the next wait for a message is cancelled
        assert scope.cancelled_caught
        assert received == [f"first {i}" for i in range(10)]
        await ws.send_text("more")
        async for message in ws:
            received.append(message)
    assert received == [f"first {i}" for i in range(10)] + [f"second {i}" for i in range(10)]


async def test_async_for_cancelled_by_a_deadline_then_continuing(echo_url: str) -> None:
    async with connect(echo_url) as ws:
        received: list[str | bytes] = []
        for round_ in range(3):
            await ws.send_text(f"round {round_}")
            with anyio.move_on_after(0.05):
                async for message in ws:
                    received.append(message)
        assert received == ["round 0", "round 1", "round 2"]


# --------------------------------------------------------------------------- concurrency


async def test_concurrent_senders_never_interleave(echo_url: str) -> None:
    senders, per_sender = 10, 200
    rng = random.Random(7)
    sizes = [[rng.randrange(0, 5000) for _ in range(per_sender)] for _ in range(senders)]

    def message(sender: int, i: int) -> str | bytes:
        text = f"{sender}:{i}:" + chr(ord("a") + sender) * sizes[sender][i]
        return text.encode() if sender % 3 == 1 else text

    received: list[str | bytes] = []
    async with connect(echo_url, compression=None) as ws:

        async def send(sender: int) -> None:
            if sender % 3 == 0:
                for i in range(per_sender):
                    await ws.send_text(message(sender, i))  # type: ignore[arg-type]
            elif sender % 3 == 1:
                for i in range(per_sender):
                    await ws.send_bytes(message(sender, i))  # type: ignore[arg-type]
            else:
                async with ws.send_stream.clone() as channel:
                    for i in range(per_sender):
                        await channel.send(message(sender, i))

        async def receive() -> None:
            while len(received) < senders * per_sender:
                received.append(await ws.receive_stream.receive())

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(receive)
                for sender in range(senders):
                    group.start_soon(send, sender)
        assert ws.statistics().messages_sent == senders * per_sender

    seen: dict[int, list[int]] = {sender: [] for sender in range(senders)}
    for item in received:
        text = item.decode() if isinstance(item, bytes) else item
        number, index, _ = text.split(":", 2)
        assert item == message(int(number), int(index))  # intact
        seen[int(number)].append(int(index))
    assert seen == {sender: list(range(per_sender)) for sender in range(senders)}


# --------------------------------------------------------------------------- statistics and logs


async def test_statistics_count_messages_bytes_and_the_queue(echo_url: str) -> None:
    async with connect(
        echo_url, queue_size=16, compression=None, keepalive_ping_interval_seconds=None
    ) as ws:
        stats = ws.statistics()
        assert stats == streams.SessionStatistics(
            messages_received=0,
            messages_sent=0,
            bytes_received=0,
            bytes_sent=0,
            messages_queued=0,
            queue_size=16,
            reader_paused=False,
            messages_dropped=0,
            ping_rtt=None,
        )
        for _ in range(5):
            await ws.send_text("x" * 100)
        await servers.wait_until(lambda: ws.statistics().messages_received == 5)
        stats = ws.statistics()
        assert stats.messages_sent == 5
        assert stats.messages_queued == 5
        assert stats.bytes_sent == 5 * (2 + 4 + 100)  # header, mask, payload
        assert stats.bytes_received == 5 * (2 + 100)
        for _ in range(5):
            await ws.receive_text()
        assert ws.statistics().messages_queued == 0
        await (await ws.ping()).wait()
        assert ws.statistics().ping_rtt is not None


async def test_logger_emits_debug_records_on_connect_and_close(
    echo_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="streams")
    async with connect(echo_url):
        pass
    records = [r for r in caplog.records if r.name.split(".")[0] == "streams"]
    text = "\n".join(r.getMessage() for r in records)
    assert "connecting" in text
    assert "connected" in text
    assert "close" in text
    assert {r.levelno for r in records} == {logging.DEBUG}


async def test_logger_is_silent_by_default(
    uvicorn_websockets_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with connect(
        uvicorn_websockets_url + "/echo", keepalive_ping_interval_seconds=0.05
    ) as ws:
        await ws.send_text("x")
        await ws.receive_text()
        await (await ws.ping()).wait()
    async with connect(uvicorn_websockets_url + "/close?code=4000") as ws:
        with pytest.raises(WebSocketDisconnect):
            await ws.receive()
    assert [r for r in caplog.records if r.name.split(".")[0] == "streams"] == []
    library = logging.getLogger("streams")
    assert all(isinstance(h, logging.NullHandler) for h in library.handlers)


async def test_a_peer_still_sending_gets_the_close_code_when_the_client_fails() -> None:
    """After failing the connection the client reads until the peer closes: no reset."""
    codes: list[tuple[int, str]] = []

    async def script(peer: ScriptedPeer) -> None:
        # A message over the limit, then more that the client never takes as messages;
        # the peer is busy for a moment before it reads again (a real server often is).
        await peer.send_raw(
            build_frame(OP_TEXT, b"x" * 5000)
            + b"".join(build_frame(OP_BINARY, bytes(1000)) for _ in range(300))
        )
        await anyio.sleep(0.3)
        codes.append(await peer.receive_close(timeout=5))
        await peer.send_close(1009)
        await peer.close_tcp()

    async def fail_once(url: str) -> int | None:
        try:
            async with connect(url + "/", max_message_size_bytes=1000) as ws:
                async for _message in ws:
                    pass
        except streams.WebSocketDisconnect as exc:
            return exc.code
        return None

    for _ in range(3):
        codes.clear()
        async with scripted_server(script) as url:
            assert await fail_once(url) == 1009
        assert [code for code, _ in codes] == [1009]
