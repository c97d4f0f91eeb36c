"""Acceptance tests of the async API, written as an outside user of the library would.

They use only public names (``import streams``, ``streams.transport``) and follow the reference
of the httpx-ws session API: every method and attribute with its parameter names, defaults and
documented exceptions, the httpx-ws idioms (clients, ``session_class``, the ASGI transport),
then what a demanding user of websockets or aiohttp expects (size limits, many sessions,
cancellation, closing while a task waits, typed streams). Every test runs on asyncio and trio.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import inspect
import logging
import re
import secrets
import socket
import ssl
import time
import typing
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpcore
import httpx
import msgspec
import pytest
import websockets.asyncio.server
import wsproto.connection
import wsproto.events
from fastapi import FastAPI
from fastapi import WebSocket as FastAPIWebSocket
from fastapi import WebSocketDisconnect as FastAPIWebSocketDisconnect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from starlette.websockets import WebSocketDisconnect as StarletteDisconnect

import streams
from streams import (
    AsyncWebSocketClient,
    AsyncWebSocketSession,
    HTTPXWSException,
    JSONMode,
    WebSocketDecodeError,
    WebSocketDisconnect,
    WebSocketInvalidTypeReceived,
    WebSocketNetworkError,
    WebSocketUpgradeError,
    aconnect_ws,
)
from streams.transport import ASGIWebSocketAsyncNetworkStream, ASGIWebSocketTransport
from tests import servers
from tests.conftest import _run_server
from tests.peers import OP_CLOSE, OP_PING, ScriptedPeer, scripted_server

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- helpers


async def _echo_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except StarletteDisconnect:
        pass


async def _slow_endpoint(websocket: WebSocket) -> None:
    """Send ``n`` JSON numbers, one every ``gap`` seconds, then wait for the client to leave."""
    await websocket.accept()
    n = int(websocket.query_params.get("n", "6"))
    gap = float(websocket.query_params.get("gap", "0.03"))
    try:
        for i in range(n):
            await websocket.send_text(str(i))
            await anyio.sleep(gap)
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    except StarletteDisconnect:
        pass


APP = Starlette(
    routes=[
        WebSocketRoute("/echo", _echo_endpoint),
        WebSocketRoute("/slow", _slow_endpoint),
    ]
)


@asynccontextmanager
async def asgi_client(app: Any = APP) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=ASGIWebSocketTransport(app), base_url="http://testserver"
    ) as client:
        yield client


# Loading the CA bundle costs about 0.1 s per default httpx client: one context for the module.
TLS_CONTEXT = ssl.create_default_context()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client for the real servers (most tests; a few use none)."""
    async with httpx.AsyncClient(verify=TLS_CONTEXT) as client:
        yield client


def new_record() -> tuple[str, servers.ConnectionRecord]:
    conn_id = servers.new_id()
    return conn_id, servers.REGISTRY.record(conn_id)


class Tick(msgspec.Struct):
    sym: str
    px: float


# --------------------------------------------------------------------------- signatures


def _params(func: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(func).parameters)


SEED_SESSION_METHODS: dict[str, list[tuple[str, Any]]] = {
    # name: [(parameter, default or inspect.Parameter.empty)], as in the reference.
    "close": [("code", 1000), ("reason", None)],
    "ping": [("payload", b"")],
    "receive": [("timeout", None)],
    "receive_bytes": [("timeout", None)],
    "receive_json": [("timeout", None), ("mode", "text")],
    "receive_text": [("timeout", None)],
    "send": [("event", inspect.Parameter.empty)],
    "send_bytes": [("data", inspect.Parameter.empty)],
    "send_json": [("data", inspect.Parameter.empty), ("mode", "text")],
    "send_text": [("data", inspect.Parameter.empty)],
}


@pytest.mark.parametrize("cls", [streams.AsyncWebSocketSession, streams.WebSocketSession])
@pytest.mark.parametrize("method", sorted(SEED_SESSION_METHODS))
def test_session_methods_have_the_reference_parameters(cls: type, method: str) -> None:
    params = _params(getattr(cls, method))
    params.pop("self")
    expected = SEED_SESSION_METHODS[method]
    assert [name for name, _ in expected] == list(params)[: len(expected)]
    for name, default in expected:
        assert params[name].default == default, (method, name)
    # Anything beyond the reference's parameters must be optional.
    for extra in list(params)[len(expected) :]:
        assert params[extra].default is not inspect.Parameter.empty or params[extra].kind in (
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.VAR_POSITIONAL,
        )


@pytest.mark.parametrize("func", [streams.aconnect_ws, streams.connect_ws])
def test_connect_functions_have_the_reference_parameters(func: Any) -> None:
    params = _params(func)
    assert list(params)[:2] == ["url", "client"]
    assert params["client"].default is None
    assert params["max_message_size_bytes"].default == 65_536
    assert params["queue_size"].default == 512
    assert params["keepalive_ping_interval_seconds"].default == 20.0
    assert params["keepalive_ping_timeout_seconds"].default == 20.0
    assert params["subprotocols"].default is None
    for name in (
        "max_message_size_bytes",
        "queue_size",
        "keepalive_ping_interval_seconds",
        "keepalive_ping_timeout_seconds",
        "subprotocols",
    ):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_exceptions_are_the_reference_tree() -> None:
    assert issubclass(HTTPXWSException, Exception)
    for exc in (
        WebSocketDisconnect,
        WebSocketInvalidTypeReceived,
        WebSocketNetworkError,
        WebSocketUpgradeError,
    ):
        assert issubclass(exc, HTTPXWSException)
    default = WebSocketDisconnect()
    assert (default.code, default.reason) == (1000, "")
    assert WebSocketDisconnect(1001, None).reason == ""
    assert WebSocketDisconnect(code=4000, reason="bye").reason == "bye"
    event = wsproto.events.TextMessage(data="x")
    assert WebSocketInvalidTypeReceived(event).event is event
    response = httpx.Response(403)
    assert WebSocketUpgradeError(response).response is response


def test_json_mode_is_text_or_binary() -> None:
    assert set(typing.get_args(JSONMode)) == {"text", "binary"}


# --------------------------------------------------------------------------- the session API


async def test_round_trip_without_a_client(echo_url: str) -> None:
    async with aconnect_ws(echo_url) as ws:
        await ws.send_text("Hello!")
        assert await ws.receive_text() == "Hello!"
        await ws.send_bytes(b"Hello!")
        assert await ws.receive_bytes() == b"Hello!"
        await ws.send_json({"message": "Hello!"})
        assert await ws.receive_json() == {"message": "Hello!"}
        await ws.send_json({"n": [1, 2.5, None]}, mode="binary")
        assert await ws.receive_json(mode="binary") == {"n": [1, 2.5, None]}
        await ws.send_json(data=[1, 2], mode="text")
        assert await ws.receive_json(timeout=5, mode="text") == [1, 2]


async def test_client_none_positional(echo_url: str) -> None:
    async with aconnect_ws(echo_url, None) as ws:
        await ws.send_text("x")
        assert await ws.receive_text(timeout=5) == "x"


async def test_receive_returns_wsproto_events(echo_url: str, client: httpx.AsyncClient) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        await ws.send_text("t")
        await ws.send_bytes(b"b")
        text = await ws.receive()
        binary = await ws.receive(timeout=5)
        assert isinstance(text, wsproto.events.TextMessage)
        assert text.data == "t"
        assert isinstance(binary, wsproto.events.BytesMessage)
        assert binary.data == b"b"


async def test_receive_timeouts_raise_timeout_error_and_lose_nothing(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        for receive in (ws.receive, ws.receive_text, ws.receive_bytes, ws.receive_json):
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                await receive(timeout=0.05)
            assert time.monotonic() - start < 1
        await ws.send_text("after")
        assert await ws.receive_text(timeout=5) == "after"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (wsproto.events.Message(b"Hello!"), b"Hello!"),
        (wsproto.events.Message("Hello!"), "Hello!"),
        (wsproto.events.TextMessage(data="Hello!"), "Hello!"),
        (wsproto.events.BytesMessage(data=b"Hello!"), b"Hello!"),
    ],
    ids=["Message-bytes", "Message-str", "TextMessage", "BytesMessage"],
)
async def test_send_message_events(
    echo_url: str, event: wsproto.events.Event, expected: str | bytes, client: httpx.AsyncClient
) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        await ws.send(event)
        received = await ws.receive(timeout=5)
        assert received.data == expected  # type: ignore[attr-defined]
        assert type(received.data) is type(expected)  # type: ignore[attr-defined]


async def test_send_fragments_as_message_events() -> None:
    async with asgi_client() as client, aconnect_ws("/echo", client) as ws:
        await ws.send(wsproto.events.TextMessage(data="He", message_finished=False))
        await ws.send(wsproto.events.TextMessage(data="llo", message_finished=True))
        assert await ws.receive_text(timeout=5) == "Hello"


async def test_plain_message_fragment_then_send_bytes_continues_the_message() -> None:
    async with asgi_client() as client, aconnect_ws("/echo", client) as ws:
        await ws.send(wsproto.events.Message(b"He", message_finished=False))
        await ws.send_bytes(b"llo")  # wsproto (and httpx-ws) continue the message
        assert await ws.receive_bytes(timeout=5) == b"Hello"


async def test_messages_sent_counts_plain_message_events() -> None:
    async with asgi_client() as client, aconnect_ws("/echo", client) as ws:
        await ws.send(wsproto.events.Message(b"Hello!"))
        await ws.send(wsproto.events.Message("Hello!"))
        await ws.receive(timeout=5)
        await ws.receive(timeout=5)
        assert ws.statistics().messages_sent == 2


async def test_send_control_events() -> None:
    frames: list[tuple[int, bytes]] = []

    async def script(peer: ScriptedPeer) -> None:
        for _ in range(2):
            frame = await peer.receive_frame()
            frames.append((frame.opcode, frame.payload))
            if frame.opcode == OP_PING:
                await peer.send_frame(0xA, frame.payload)
        frames.append((OP_CLOSE, (await peer.answer_close())[1].encode()))

    async with (
        scripted_server(script) as url,
        aconnect_ws(url + "/", keepalive_ping_interval_seconds=None) as ws,
    ):
        await ws.send(wsproto.events.Pong(payload=b"unasked"))
        await ws.send(wsproto.events.Ping(payload=b"p1"))
        await ws.send(wsproto.events.CloseConnection(code=4000, reason="bye"))
        with anyio.fail_after(2), pytest.raises(WebSocketDisconnect) as info:
            await ws.receive()
        assert info.value.code == 4000
    assert frames == [(0xA, b"unasked"), (OP_PING, b"p1"), (OP_CLOSE, b"bye")]


async def test_ping_returns_an_event_set_by_the_pong(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        pong = await ws.ping()
        assert isinstance(pong, anyio.Event)
        with anyio.fail_after(5):
            await pong.wait()
        assert pong.is_set()
        tagged = await ws.ping(payload=b"tag")
        with anyio.fail_after(5):
            await tagged.wait()
        assert ws.statistics().ping_rtt is not None


async def test_ping_payload_is_sent_as_given() -> None:
    seen: list[bytes] = []

    async def script(peer: ScriptedPeer) -> None:
        frame = await peer.receive_frame()
        assert frame.opcode == OP_PING
        seen.append(frame.payload)
        await peer.send_frame(0xA, frame.payload)
        await peer.answer_close()

    async with (
        scripted_server(script) as url,
        aconnect_ws(url + "/", keepalive_ping_interval_seconds=None) as ws,
    ):
        pong = await ws.ping(b"abc")
        with anyio.fail_after(5):
            await pong.wait()
    assert seen == [b"abc"]


async def test_close_twice_then_every_call_raises_disconnect(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        await ws.close()
        await ws.close()  # nothing more
        assert ws.close_code == 1000
        for _ in range(2):
            with anyio.fail_after(1), pytest.raises(WebSocketDisconnect) as info:
                await ws.receive()
            assert info.value.code == 1000
            assert info.value.reason == ""
        with anyio.fail_after(1), pytest.raises(WebSocketDisconnect):
            await ws.receive_text(timeout=5)
        with pytest.raises(WebSocketDisconnect):
            await ws.send_text("late")
        with pytest.raises(WebSocketDisconnect):
            await ws.send_bytes(b"late")
        with pytest.raises(WebSocketDisconnect):
            await ws.send_json({"late": True})
        with pytest.raises(WebSocketDisconnect):
            await ws.send(wsproto.events.Message(b"late"))
        with pytest.raises(WebSocketDisconnect):
            await ws.ping()
    await ws.close()  # after the block too


async def test_close_code_and_reason_reach_the_server(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    conn_id, record = new_record()
    async with aconnect_ws(echo_url, client, params={"id": conn_id}) as ws:
        await ws.close(code=4001, reason="done here")
    await record.wait_finished()
    assert (record.close_code, record.close_reason) == (4001, "done here")


async def test_leaving_the_block_closes_with_1000(echo_url: str, client: httpx.AsyncClient) -> None:
    conn_id, record = new_record()
    async with aconnect_ws(echo_url + f"?id={conn_id}", client) as ws:
        await ws.send_text("x")
        assert await ws.receive_text(timeout=5) == "x"
    await record.wait_finished()
    assert record.close_code == 1000
    assert ws.close_code == 1000


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "later"), (4003, "nope")])
async def test_server_close_raises_disconnect_at_once_on_every_call(
    server_url: str, code: int, reason: str, client: httpx.AsyncClient
) -> None:
    async with aconnect_ws(
        server_url + "/close", client, params={"code": code, "reason": reason}
    ) as ws:
        for _ in range(3):
            with anyio.fail_after(2), pytest.raises(WebSocketDisconnect) as info:
                await ws.receive_text()
            assert info.value.code == code
            assert info.value.reason == reason
        with anyio.fail_after(1), pytest.raises(WebSocketDisconnect):
            await ws.receive(timeout=10)
        assert (ws.close_code, ws.close_reason) == (code, reason)


async def test_server_close_after_messages_delivers_them_first(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    url = echo_url.replace("/echo", "/flood")
    async with aconnect_ws(url, client, params={"n": 3, "size": 10}) as ws:
        got = [await ws.receive_text(timeout=5) for _ in range(3)]
        assert got == [servers.flood_payload(i, 10) for i in range(3)]
        with anyio.fail_after(2), pytest.raises(WebSocketDisconnect) as info:
            await ws.receive_text()
        assert info.value.code == 1000


async def test_connection_reset_raises_network_error_repeatedly(client: httpx.AsyncClient) -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text("last words")
        await peer.abort()

    async with scripted_server(script) as url, aconnect_ws(url + "/", client) as ws:
        assert await ws.receive_text(timeout=5) == "last words"
        for _ in range(2):
            with anyio.fail_after(2), pytest.raises(WebSocketNetworkError):
                await ws.receive()
        assert ws.close_code == 1006


async def test_silent_server_fails_keepalive_with_network_error(client: httpx.AsyncClient) -> None:
    async def script(peer: ScriptedPeer) -> None:
        # Never answers pings; waits for the client to drop the connection.
        await peer.wait_eof(timeout=10)

    async with (
        scripted_server(script) as url,
        aconnect_ws(
            url + "/",
            client,
            keepalive_ping_interval_seconds=0.1,
            keepalive_ping_timeout_seconds=0.2,
            close_timeout=1,
        ) as ws,
    ):
        with anyio.fail_after(5), pytest.raises(WebSocketNetworkError):
            await ws.receive()
        assert ws.closed


@pytest.mark.parametrize("status", [400, 403, 503])
async def test_refused_upgrade_raises_upgrade_error_with_the_response(
    server_url: str, status: int, client: httpx.AsyncClient
) -> None:
    with pytest.raises(WebSocketUpgradeError) as info:
        async with aconnect_ws(server_url + "/reject", client, params={"status": status}):
            pytest.fail("the upgrade was refused")
    response = info.value.response
    assert isinstance(response, httpx.Response)
    assert response.status_code == status


async def test_refused_upgrade_body_is_readable(
    websockets_url: str, client: httpx.AsyncClient
) -> None:
    with pytest.raises(WebSocketUpgradeError) as info:
        async with aconnect_ws(websockets_url + "/reject?status=403", client):
            pass
    assert info.value.response.text == "rejected\n"


async def test_invalid_type_received_carries_the_event(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        await ws.send_bytes(b"\x01")
        with pytest.raises(WebSocketInvalidTypeReceived) as info:
            await ws.receive_text(timeout=5)
        assert isinstance(info.value.event, wsproto.events.BytesMessage)
        assert info.value.event.data == b"\x01"

        await ws.send_text("t")
        with pytest.raises(WebSocketInvalidTypeReceived) as info:
            await ws.receive_bytes(timeout=5)
        assert isinstance(info.value.event, wsproto.events.TextMessage)
        assert info.value.event.data == "t"

        await ws.send_json({"a": 1})
        with pytest.raises(WebSocketInvalidTypeReceived):
            await ws.receive_json(timeout=5, mode="binary")
        await ws.send_json({"a": 1}, mode="binary")
        with pytest.raises(WebSocketInvalidTypeReceived):
            await ws.receive_json(timeout=5)
        # The session goes on.
        await ws.send_text("ok")
        assert await ws.receive_text(timeout=5) == "ok"


async def test_receive_json_of_invalid_json_carries_the_payload(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        await ws.send_text("{not json")
        with pytest.raises(ValueError, match=r"\S") as info:
            await ws.receive_json(timeout=5)
        assert isinstance(info.value, WebSocketDecodeError)
        assert info.value.payload == "{not json"


async def test_subprotocols_negotiated(server_url: str, client: httpx.AsyncClient) -> None:
    async with aconnect_ws(
        server_url + "/subprotocols", client, subprotocols=["chat.v1", "x"]
    ) as ws:
        assert ws.subprotocol == "chat.v1"
        assert await ws.receive_text(timeout=5) == "chat.v1"
    async with aconnect_ws(server_url + "/subprotocols", client, subprotocols=["other"]) as ws:
        assert ws.subprotocol is None
        assert await ws.receive_text(timeout=5) == ""
    async with aconnect_ws(server_url + "/echo", client) as ws:
        assert ws.subprotocol is None


async def test_kwargs_go_to_httpx(uvicorn_websockets_url: str, client: httpx.AsyncClient) -> None:
    headers = {"X-Token": "abc"}
    async with aconnect_ws(
        uvicorn_websockets_url + "/headers",
        client,
        headers=headers,
        params={"q": "1"},
        timeout=httpx.Timeout(5.0),
        cookies={"c": "v"},
    ) as ws:
        seen = await ws.receive_json(timeout=5)
        assert ws.response is not None
        assert ws.response.status_code == 101
        assert ws.response.request.url.params["q"] == "1"
    assert seen["x-token"] == "abc"
    assert "c=v" in seen["cookie"]
    assert headers == {"X-Token": "abc"}  # the caller's dict is left alone


async def test_explicit_client_is_used_and_left_open(echo_url: str) -> None:
    async with httpx.AsyncClient(headers={"X-App": "demo"}) as client:
        for _ in range(2):
            async with aconnect_ws(echo_url.replace("/echo", "/headers"), client) as ws:
                assert (await ws.receive_json(timeout=5))["x-app"] == "demo"
        assert not client.is_closed


async def test_http_and_ws_schemes(echo_url: str, client: httpx.AsyncClient) -> None:
    for url in (echo_url, echo_url.replace("ws://", "http://")):
        async with aconnect_ws(url, client) as ws:
            await ws.send_text(url)
            assert await ws.receive_text(timeout=5) == url


async def test_connection_refused_raises_httpx_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    with pytest.raises(httpx.ConnectError):
        async with aconnect_ws(f"ws://127.0.0.1:{port}/"):
            pass


@pytest.fixture
async def echo_session(echo_url: str) -> AsyncIterator[AsyncWebSocketSession]:
    """A session held open by a fixture, as many test suites do."""
    async with aconnect_ws(echo_url) as ws:
        yield ws


async def test_session_held_by_a_fixture(echo_session: AsyncWebSocketSession) -> None:
    await echo_session.send_text("from the test")
    assert await echo_session.receive_text(timeout=5) == "from the test"


# --------------------------------------------------------------------------- httpx-ws idioms


async def test_async_websocket_client_connect(echo_url: str) -> None:
    async with httpx.AsyncClient() as client:
        ws_client = AsyncWebSocketClient(
            client, queue_size=16, keepalive_ping_interval_seconds=None
        )
        async with ws_client.connect(echo_url) as ws:
            assert isinstance(ws, AsyncWebSocketSession)
            await ws.send_text("via client")
            assert await ws.receive_text(timeout=5) == "via client"
            assert ws.statistics().queue_size == 16
        async with ws_client.connect(
            echo_url.replace("/echo", "/subprotocols"), subprotocols=["chat.v2"]
        ) as ws:
            assert ws.subprotocol == "chat.v2"


class GreetingSession(AsyncWebSocketSession):
    async def greet(self, name: str) -> str:
        await self.send_text(f"hello {name}")
        return await self.receive_text(timeout=5)


async def test_session_class_subclass(echo_url: str, client: httpx.AsyncClient) -> None:
    async with aconnect_ws(echo_url, client, session_class=GreetingSession) as ws:
        assert isinstance(ws, GreetingSession)
        assert await ws.greet("bob") == "hello bob"
    async with httpx.AsyncClient() as client:
        ws_client = AsyncWebSocketClient(client, session_class=GreetingSession)
        async with ws_client.connect(echo_url) as ws:
            assert await ws.greet("amy") == "hello amy"


class LegacySession(AsyncWebSocketSession):
    """A subclass written for the reference's constructor (httpx-ws's keyword arguments)."""

    def __init__(
        self,
        stream: Any,
        *,
        max_message_size_bytes: int = 65_536,
        queue_size: int = 512,
        keepalive_ping_interval_seconds: float | None = 20.0,
        keepalive_ping_timeout_seconds: float | None = 20.0,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(
            stream,
            max_message_size_bytes=max_message_size_bytes,
            queue_size=queue_size,
            keepalive_ping_interval_seconds=keepalive_ping_interval_seconds,
            keepalive_ping_timeout_seconds=keepalive_ping_timeout_seconds,
            response=response,
        )
        self.tag = "legacy"


async def test_session_class_overriding_init_with_the_reference_keywords(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    async with aconnect_ws(echo_url, client, session_class=LegacySession) as ws:
        assert ws.tag == "legacy"
        await ws.send_text("x")
        assert await ws.receive_text(timeout=5) == "x"


async def test_fastapi_app_through_the_asgi_transport(client: httpx.AsyncClient) -> None:
    app = FastAPI()
    disconnects: list[int] = []

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/rooms/{room}")
    async def room(websocket: FastAPIWebSocket, room: str) -> None:
        await websocket.accept(subprotocol="chat.v1")
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_json({"room": room, "echo": text})
        except FastAPIWebSocketDisconnect as exc:
            disconnects.append(exc.code)

    async with httpx.AsyncClient(
        transport=ASGIWebSocketTransport(app), base_url="http://testserver"
    ) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        async with aconnect_ws("/rooms/lobby", client, subprotocols=["chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1"
            await ws.send_text("hello")
            assert await ws.receive_json(timeout=5) == {"room": "lobby", "echo": "hello"}
        assert disconnects == [1000]


async def test_asgi_app_closing_with_a_code(client: httpx.AsyncClient) -> None:
    async def closer(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        await websocket.close(code=4002, reason="bye")

    app = Starlette(routes=[WebSocketRoute("/c", closer)])
    async with asgi_client(app) as client, aconnect_ws("/c", client) as ws:
        await ws.send_text("x")
        for _ in range(2):
            with anyio.fail_after(2), pytest.raises(WebSocketDisconnect) as info:
                await ws.receive()
            assert (info.value.code, info.value.reason) == (4002, "bye")


async def test_asgi_app_refusing_gives_upgrade_error(client: httpx.AsyncClient) -> None:
    async def refuse(websocket: WebSocket) -> None:
        await websocket.close(code=1008)

    app = Starlette(routes=[WebSocketRoute("/r", refuse)])
    async with asgi_client(app) as client:
        with pytest.raises(WebSocketUpgradeError) as info:
            async with aconnect_ws("/r", client):
                pass
    assert info.value.response.status_code == 403


async def test_upgrade_refused_through_a_mock_transport() -> None:
    async with httpx.AsyncClient(
        base_url="http://localhost:8000",
        transport=httpx.MockTransport(lambda _: httpx.Response(400)),
    ) as client:
        with pytest.raises(WebSocketUpgradeError) as info:
            async with aconnect_ws("http://socket/ws", client):
                pass
    assert info.value.response.status_code == 400


async def test_fastapi_endpoint_without_disconnect_handling() -> None:
    app = FastAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: FastAPIWebSocket) -> None:
        await websocket.accept()
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(data)

    async with (
        httpx.AsyncClient(transport=ASGIWebSocketTransport(app)) as client,
        aconnect_ws("http://localhost/ws", client) as ws,
    ):
        await ws.send_text("hi")
        assert await ws.receive_text(timeout=5) == "hi"


def _websocket_request(url: str, **headers: str) -> httpx.Request:
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    return httpx.Request(
        "GET",
        url,
        headers={
            "connection": "upgrade",
            "upgrade": "websocket",
            "sec-websocket-key": key,
            "sec-websocket-version": "13",
            **headers,
        },
    )


async def _plain_http(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


async def _receive_once_handled(websocket: WebSocket) -> None:
    await websocket.accept()
    with contextlib.suppress(StarletteDisconnect):
        await websocket.receive_text()
        await websocket.close()


async def _receive_once(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    await websocket.close()


@pytest.mark.parametrize(
    "url", ["ws://localhost:8000/ws", "wss://localhost:8000/ws", "http://localhost:8000/ws"]
)
async def test_transport_answers_http_and_upgrade_requests(url: str) -> None:
    app = Starlette(
        routes=[Route("/http", _plain_http), WebSocketRoute("/ws", _receive_once_handled)]
    )
    async with ASGIWebSocketTransport(app=app) as transport:
        response = await transport.handle_async_request(
            httpx.Request("GET", "http://localhost:8000/http")
        )
        assert response.status_code == 200
        response = await transport.handle_async_request(_websocket_request(url))
        assert response.status_code == 101
        assert isinstance(response.extensions["network_stream"], ASGIWebSocketAsyncNetworkStream)


async def test_transport_exit_with_an_open_upgrade_and_a_plain_endpoint() -> None:
    app = Starlette(routes=[WebSocketRoute("/ws", _receive_once)])
    async with ASGIWebSocketTransport(app=app) as transport:
        response = await transport.handle_async_request(
            _websocket_request("ws://localhost:8000/ws")
        )
        assert response.status_code == 101


async def test_asgi_app_sending_then_returning() -> None:
    async def once(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("SERVER_MESSAGE")
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", once)])
    async with (
        httpx.AsyncClient(transport=ASGIWebSocketTransport(app)) as client,
        aconnect_ws("http://localhost/ws", client) as ws,
    ):
        event = await ws.receive()
        assert isinstance(event, wsproto.events.TextMessage)
        assert event.data == "SERVER_MESSAGE"
        with anyio.fail_after(2), pytest.raises(WebSocketDisconnect) as info:
            await ws.receive()
        assert info.value.code == 1000


# ------------------------------------------------------------- a session on a custom stream


class _SilentStream(httpcore.AsyncNetworkStream):
    """A network stream whose reads wait until it is closed, then fail; writes may fail too."""

    def __init__(self, *, write_fails: bool = False) -> None:
        self.closed = anyio.Event()
        self.write_fails = write_fails
        self.written = bytearray()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self.closed.wait()
        raise httpcore.ReadError("closed")

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self.write_fails:
            raise httpcore.WriteError("broken pipe")
        self.written += buffer

    async def aclose(self) -> None:
        self.closed.set()


async def test_session_on_a_stream_whose_reads_fail() -> None:
    class Failing(_SilentStream):
        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            raise httpcore.ReadError("reset")

    with anyio.fail_after(5), pytest.raises(WebSocketNetworkError):
        async with AsyncWebSocketSession(Failing()) as ws:
            await ws.receive()


async def test_session_on_a_stream_answers_pings_and_closes() -> None:
    server = wsproto.connection.Connection(wsproto.connection.ConnectionType.SERVER)

    class Scripted(_SilentStream):
        def __init__(self) -> None:
            super().__init__()
            self.to_send = [
                wsproto.events.Ping(b"SERVER_PING"),
                wsproto.events.CloseConnection(1000),
            ]

        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            if self.to_send:
                return server.send(self.to_send.pop(0))
            raise httpcore.ReadError("done")

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            server.receive_data(buffer)

    with anyio.fail_after(5):
        async with AsyncWebSocketSession(Scripted()):
            await anyio.sleep(0.1)
    assert list(server.events()) == [
        wsproto.events.Pong(b"SERVER_PING"),
        wsproto.events.CloseConnection(1000, ""),
    ]


async def test_session_on_a_silent_stream_times_out_keepalive() -> None:
    with anyio.fail_after(5), pytest.raises(WebSocketNetworkError):
        async with AsyncWebSocketSession(
            _SilentStream(), keepalive_ping_interval_seconds=0.1, keepalive_ping_timeout_seconds=0.1
        ) as ws:
            await ws.receive()


async def test_send_on_a_stream_whose_writes_fail_raises_network_error() -> None:
    stream = _SilentStream(write_fails=True)
    start = time.monotonic()
    with pytest.raises(WebSocketNetworkError):
        async with AsyncWebSocketSession(stream, close_timeout=0.5) as ws:
            await ws.send(wsproto.events.Ping())
    assert time.monotonic() - start < 0.4


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_message_exactly_at_the_limit_is_accepted(
    echo_url: str, kind: str, client: httpx.AsyncClient
) -> None:
    url = echo_url.replace("/echo", "/flood")
    async with aconnect_ws(url, client, params={"n": 1, "size": 65_536, "kind": kind}) as ws:
        message = await ws.receive(timeout=5)
        assert len(message.data) == 65_536  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_message_one_above_the_limit_closes_with_1009(
    echo_url: str, kind: str, client: httpx.AsyncClient
) -> None:
    url = echo_url.replace("/echo", "/flood")
    async with aconnect_ws(url, client, params={"n": 1, "size": 65_537, "kind": kind}) as ws:
        for _ in range(2):
            with anyio.fail_after(5), pytest.raises(WebSocketDisconnect) as info:
                await ws.receive()
            assert info.value.code == 1009
        assert ws.close_code == 1009


async def test_custom_limit_and_huge_messages_both_ways(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    size = 4 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    async with aconnect_ws(echo_url, client, max_message_size_bytes=size) as ws:
        await ws.send_bytes(payload)
        assert await ws.receive_bytes(timeout=10) == payload
        await ws.send_text("é" * (size // 2))
        assert await ws.receive_text(timeout=10) == "é" * (size // 2)
    url = echo_url.replace("/echo", "/flood")
    async with aconnect_ws(
        url, client, params={"n": 1, "size": 1001}, max_message_size_bytes=1000
    ) as ws:
        with anyio.fail_after(5), pytest.raises(WebSocketDisconnect) as info:
            await ws.receive_text()
        assert info.value.code == 1009


@pytest.mark.parametrize("shared_client", [True, False], ids=["one-client", "no-client"])
async def test_fifty_concurrent_sessions(
    echo_url: str, client: httpx.AsyncClient, shared_client: bool
) -> None:
    results: dict[int, list[str]] = {}

    async def one(i: int) -> None:
        async with aconnect_ws(
            echo_url, client if shared_client else None, keepalive_ping_interval_seconds=None
        ) as ws:
            for j in range(5):
                await ws.send_text(f"{i}-{j}")
            results[i] = [await ws.receive_text(timeout=10) for _ in range(5)]

    start = time.monotonic()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
    assert time.monotonic() - start < 5
    assert results == {i: [f"{i}-{j}" for j in range(5)] for i in range(50)}


async def test_cancelled_receive_loses_nothing(echo_url: str, client: httpx.AsyncClient) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        with anyio.move_on_after(0.05) as scope:
            await ws.receive()
        assert scope.cancelled_caught
        with anyio.move_on_after(0.05) as scope:
            await ws.receive_text()
        assert scope.cancelled_caught
        await ws.send_text("one")
        await ws.send_text("two")
        assert await ws.receive_text(timeout=5) == "one"
        assert await ws.receive_text(timeout=5) == "two"


async def test_break_out_of_async_for_and_continue(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        for word in ("one", "two", "three", "four"):
            await ws.send_text(word)
        seen = []
        async for message in ws:
            seen.append(message)
            if message == "two":
                break
        assert seen == ["one", "two"]
        assert await ws.receive_text(timeout=5) == "three"
        async for message in ws:
            assert message == "four"
            break


async def test_async_for_ends_quietly_on_a_normal_close(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    url = echo_url.replace("/echo", "/flood")
    async with aconnect_ws(url, client, params={"n": 5, "size": 8}) as ws:
        messages = [message async for message in ws]
    assert messages == [servers.flood_payload(i, 8) for i in range(5)]


async def test_async_for_raises_on_an_abnormal_close(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    url = echo_url.replace("/echo", "/recv_then_close")
    async with aconnect_ws(url, client, params={"code": 4000}) as ws:
        await ws.send_text("why")
        with anyio.fail_after(5), pytest.raises(WebSocketDisconnect) as info:
            async for _ in ws:
                pass
        assert (info.value.code, info.value.reason) == (4000, "why")


async def test_receiver_task_is_released_when_the_block_is_left(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    outcome: list[BaseException] = []
    waiting = anyio.Event()

    async def receiver(ws: AsyncWebSocketSession) -> None:
        waiting.set()
        try:
            await ws.receive()
        except Exception as exc:
            outcome.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, aconnect_ws(echo_url, client) as ws:
            tg.start_soon(receiver, ws)
            await waiting.wait()
            await anyio.sleep(0.01)  # let it block in receive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], WebSocketDisconnect)
    assert outcome[0].code == 1000


async def test_receiver_task_is_released_by_close(echo_url: str, client: httpx.AsyncClient) -> None:
    outcome: list[BaseException] = []

    async def receiver(ws: AsyncWebSocketSession, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        try:
            async for _ in ws:
                pass
        except Exception as exc:  # pragma: no cover - the test fails below
            outcome.append(exc)
        else:
            outcome.append(StopAsyncIteration())

    async with aconnect_ws(echo_url, client) as ws:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                await tg.start(receiver, ws)
                await ws.close()
    assert [type(x) for x in outcome] == [StopAsyncIteration]


async def test_cancelling_the_whole_block_still_sends_close_1000(
    client: httpx.AsyncClient,
) -> None:
    # Which task sees the cancellation first varies from run to run (trio shuffles its run
    # queue): 20 sessions make a lost Close frame show up reliably.
    runs = 20
    closes: list[list[tuple[int, bytes]]] = []

    async def script(peer: ScriptedPeer) -> None:
        frames = await peer.wait_eof(timeout=5)
        closes.append([(f.opcode, f.payload) for f in frames])

    async with scripted_server(script) as url:
        for _ in range(runs):
            with anyio.CancelScope() as scope:
                async with aconnect_ws(url + "/", client) as ws:
                    scope.deadline = anyio.current_time() + 0.01
                    await ws.receive()
            assert scope.cancelled_caught
            assert ws.closed
    assert closes == [[(OP_CLOSE, b"\x03\xe8")]] * runs  # Close 1000, every time


async def test_exception_in_the_block_comes_out_as_itself(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    with pytest.raises(KeyError):  # noqa: PT012 - the block is the subject
        async with aconnect_ws(echo_url, client) as ws:
            await ws.send_text("x")
            raise KeyError("mine")
    assert ws.closed


async def test_backpressure_pauses_the_reader(echo_url: str, client: httpx.AsyncClient) -> None:
    url = echo_url.replace("/echo", "/flood")
    async with aconnect_ws(url, client, params={"n": 400, "size": 64}, queue_size=8) as ws:
        await servers.wait_until(lambda: ws.statistics().reader_paused)
        stats = ws.statistics()
        assert stats.messages_queued <= 8
        assert stats.queue_size == 8
        got = [message async for message in ws]
    assert got == [servers.flood_payload(i, 64) for i in range(400)]


async def test_statistics_fields(echo_url: str, client: httpx.AsyncClient) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        for i in range(3):
            await ws.send_text(str(i))
        for _ in range(3):
            await ws.receive_text(timeout=5)
        await ws.send_text("queued")
        await servers.wait_until(lambda: ws.statistics().messages_queued >= 1)
        stats = ws.statistics()
        assert isinstance(stats, streams.SessionStatistics)
        assert stats.messages_sent == 4
        assert stats.messages_received == 4
        assert stats.bytes_sent > 4
        assert stats.bytes_received >= 4
        assert stats.messages_queued == 1
        assert stats.queue_size == 512
        assert stats.reader_paused is False
        assert stats.messages_dropped == 0
        assert stats.ping_rtt is None


async def test_slow_consumer_is_not_killed_by_keepalive(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    url = echo_url.replace("/echo", "/flood")
    async with aconnect_ws(
        url,
        client,
        params={"n": 2000, "size": 2048, "kind": "binary"},
        queue_size=4,
        keepalive_ping_interval_seconds=0.05,
        keepalive_ping_timeout_seconds=0.1,
    ) as ws:
        await anyio.sleep(0.5)  # the consumer is busy elsewhere: the reader is paused
        count = 0
        async for _ in ws:
            count += 1
    assert count == 2000


@pytest.fixture(scope="module")
def deflate_url() -> Iterator[str]:
    """The websockets server with permessage-deflate on (the shared fixtures turn it off)."""

    async def serve(sock: socket.socket, stop: asyncio.Event) -> None:
        async with websockets.asyncio.server.serve(
            servers.websockets_handler,
            sock=sock,
            process_request=servers.websockets_process_request,
            select_subprotocol=servers.websockets_select_subprotocol,
            ping_interval=None,
            compression="deflate",
            max_size=16 * 1024 * 1024,
            close_timeout=servers.CLOSE_TIMEOUT,
            logger=logging.getLogger("tests.acceptance.deflate"),
        ):
            await stop.wait()

    with _run_server("websockets-deflate", serve) as url:
        yield url


async def test_compressed_messages_and_the_limit_after_decompression(
    deflate_url: str, client: httpx.AsyncClient
) -> None:
    flood = deflate_url + "/flood"
    async with aconnect_ws(flood, client, params={"n": 1, "size": 65_536}) as ws:
        assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
        assert len(await ws.receive_text(timeout=5)) == 65_536
    async with aconnect_ws(flood, client, params={"n": 1, "size": 65_537}) as ws:
        with anyio.fail_after(5), pytest.raises(WebSocketDisconnect) as info:
            await ws.receive_text()
        assert info.value.code == 1009
    big = "streams " * 200_000
    async with aconnect_ws(deflate_url + "/echo", client, max_message_size_bytes=len(big)) as ws:
        await ws.send_text(big)
        assert await ws.receive_text(timeout=10) == big
        assert ws.statistics().bytes_received < len(big) // 10
    async with aconnect_ws(deflate_url + "/echo", client, compression=None) as ws:
        assert "sec-websocket-extensions" not in ws.response.headers
        await ws.send_text("plain")
        assert await ws.receive_text(timeout=5) == "plain"


async def test_receive_stream_ends_after_the_messages_even_on_an_abnormal_close(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    url = echo_url.replace("/echo", "/recv_then_close")
    async with aconnect_ws(url, client, params={"code": 4000}) as ws:
        await ws.send_text("bye")
        with anyio.fail_after(5):
            await ws.wait_closed()
            with pytest.raises(anyio.EndOfStream):
                await ws.receive_stream.receive()


async def test_closing_the_send_stream_closes_with_1000() -> None:
    seen: list[object] = []

    async def script(peer: ScriptedPeer) -> None:
        seen.append(await peer.receive_message())
        seen.append(await peer.answer_close())

    async with scripted_server(script) as url, aconnect_ws(url + "/") as ws:
        async with ws.send_stream:
            await ws.send_stream.send(b"last")
        with anyio.fail_after(5):
            await ws.wait_closed()
        assert ws.close_code == 1000
    assert seen == [b"last", (1000, "")]


async def test_pending_ping_event_is_set_when_the_connection_closes() -> None:
    async def script(peer: ScriptedPeer) -> None:
        frame = await peer.receive_frame()  # the ping: never answered
        assert frame.opcode == OP_PING
        await peer.close_handshake(1001)

    async with (
        scripted_server(script) as url,
        aconnect_ws(url + "/", keepalive_ping_interval_seconds=None) as ws,
    ):
        pong = await ws.ping()
        with anyio.fail_after(5):
            await pong.wait()
        assert ws.closed
        assert ws.close_code == 1001


async def test_unsolicited_pong_is_ignored() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_frame(0xA, b"nobody asked")
        await peer.send_text("after the pong")
        await peer.echo()

    async with (
        scripted_server(script) as url,
        aconnect_ws(url + "/", keepalive_ping_interval_seconds=None) as ws,
    ):
        assert await ws.receive_text(timeout=5) == "after the pong"
        await ws.send_text("echo")
        assert await ws.receive_text(timeout=5) == "echo"


async def test_wrong_json_mode_raises_value_error(echo_url: str, client: httpx.AsyncClient) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        with pytest.raises(ValueError, match="mode"):
            await ws.send_json({}, mode="nope")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="mode"):
            await ws.receive_json(timeout=1, mode="nope")  # type: ignore[arg-type]


def test_every_streams_name_in_the_docs_exists() -> None:
    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"(?<![\w./])streams\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?")
    missing = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for first, second in pattern.findall(page.read_text()):
            if first in ("websocket", "transport"):
                module = importlib.import_module(f"streams.{first}")
                if second and not hasattr(module, second):
                    missing.append(f"{page.name}: streams.{first}.{second}")
            elif not first.startswith("_") and not hasattr(streams, first):
                missing.append(f"{page.name}: streams.{first}")
    assert missing == []


# --------------------------------------------------------------------------- typed streams


async def test_typed_json_stream_bad_messages_carry_the_payload() -> None:
    async with asgi_client() as client, aconnect_ws("/echo", client) as ws:
        for text in (
            '{"sym": "A", "px": 1}',
            '{"sym": "B", "px": "high"}',
            "oops",
            '{"sym": "C", "px": 3}',
        ):
            await ws.send_text(text)
        ticks = ws.json(Tick)
        assert await ticks.first() == Tick("A", 1.0)
        with pytest.raises(WebSocketDecodeError) as info:
            await ticks.first()
        assert info.value.payload == '{"sym": "B", "px": "high"}'
        assert "$.px" in info.value.reason
        with pytest.raises(WebSocketDecodeError) as info:
            await ticks.first()
        assert info.value.payload == "oops"
        assert await ticks.first() == Tick("C", 3.0)


async def test_typed_json_stream_wrong_frame_kind() -> None:
    async with asgi_client() as client, aconnect_ws("/echo", client) as ws:
        await ws.send_bytes(b'{"sym": "A", "px": 1}')
        with pytest.raises(WebSocketInvalidTypeReceived):
            await ws.json(Tick).first()
        await ws.send_bytes(b'{"sym": "A", "px": 1}')
        assert await ws.json(Tick, mode="binary").first() == Tick("A", 1.0)


async def test_batch_with_timeout_on_a_slow_server() -> None:
    async with asgi_client() as client, aconnect_ws("/slow?n=6&gap=0.04", client) as ws:
        batches: list[list[int]] = []
        start = time.monotonic()
        with anyio.fail_after(5):
            async for batch in ws.json(int).take(6).batch(10, timeout=0.05):
                batches.append(batch)
        elapsed = time.monotonic() - start
    assert [n for batch in batches for n in batch] == list(range(6))
    assert len(batches) >= 2  # the timeout cut batches before 10 items came
    assert all(1 <= len(batch) <= 10 for batch in batches)
    assert elapsed < 2


async def _three_then_close(websocket: WebSocket) -> None:
    await websocket.accept()
    for i in range(3):
        await websocket.send_text(str(i))
    await websocket.close(int(websocket.query_params.get("code", "1000")))


async def test_batch_ends_with_the_connection() -> None:
    app = Starlette(routes=[WebSocketRoute("/t", _three_then_close)])
    async with asgi_client(app) as client:
        async with aconnect_ws("/t", client) as ws:
            start = time.monotonic()
            batches = [b async for b in ws.json(int).batch(10, timeout=1)]
            assert batches == [[0, 1, 2]]
            assert time.monotonic() - start < 0.5  # not held until the timeout
            with pytest.raises(anyio.EndOfStream):
                await ws.json(int).first()
        async with aconnect_ws("/t?code=4001", client) as ws:
            got: list[list[int]] = []
            with pytest.raises(WebSocketDisconnect) as info:  # noqa: PT012
                async for batch in ws.json(int).batch(10, timeout=1):
                    got.append(batch)
            assert got == [[0, 1, 2]]
            assert info.value.code == 4001


async def test_same_typed_stream_resumes_after_break() -> None:
    async with asgi_client() as client, aconnect_ws("/echo", client) as ws:
        for i in range(4):
            await ws.send_json(i)
        numbers = ws.json(int)
        async for n in numbers:
            if n == 1:
                break
        assert await numbers.take(2).collect() == [2, 3]


async def test_batch_by_size() -> None:
    async with asgi_client() as client, aconnect_ws("/echo", client) as ws:
        for i in range(25):
            await ws.send_text(str(i))
        batches = await ws.json().take(25).batch(10, timeout=0.05).collect()
    assert [n for b in batches for n in b] == list(range(25))
    assert all(len(b) <= 10 for b in batches)


async def test_sender_round_trip() -> None:
    async with asgi_client() as client, aconnect_ws("/echo", client) as ws:
        async with ws.sender(Tick) as out:
            await out.send(Tick("ABC", 1.5))
            await out.send(Tick("XYZ", 2.0))
        # Closing the sender leaves the session open.
        await ws.send_text("still open")
        ticks = await ws.json(Tick).take(2).collect()
        assert ticks == [Tick("ABC", 1.5), Tick("XYZ", 2.0)]
        assert await ws.receive_text(timeout=5) == "still open"


async def test_text_and_bytes_streams_and_nothing_lost_after_take() -> None:
    async with asgi_client() as client, aconnect_ws("/echo", client) as ws:
        for word in ("a", "b", "c"):
            await ws.send_text(word)
        assert await ws.text().take(1).collect() == ["a"]
        assert await ws.receive_text(timeout=5) == "b"
        assert await ws.text().first() == "c"
        await ws.send_bytes(b"\x00")
        assert await ws.bytes().first() == b"\x00"


async def test_channels(echo_url: str, client: httpx.AsyncClient) -> None:
    async with aconnect_ws(echo_url, client) as ws:
        await ws.send_stream.send("via channel")
        with anyio.fail_after(5):
            assert await ws.receive_stream.receive() == "via channel"
