"""The in-process ASGI transport: Starlette and FastAPI apps served to `streams.aconnect_ws`.

Most tests drive the transport with the library's own client. Frame-level behaviour (fragments,
invalid frames, chunked reads, the stream's error semantics) is checked with `RawClient`, a
minimal wsproto client working directly on the network stream of the ``101`` response.
"""

from __future__ import annotations

import base64
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpcore
import httpx
import pytest
import wsproto.events
from fastapi import FastAPI
from fastapi import WebSocket as FastAPIWebSocket
from fastapi import WebSocketDisconnect as FastAPIWebSocketDisconnect
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from wsproto.connection import Connection, ConnectionType

import streams
import streams.transport
from streams.transport import (
    ASGIWebSocketAsyncNetworkStream,
    ASGIWebSocketTransport,
    ASGIWebSocketTransportError,
    Message,
    Receive,
    Scope,
    Send,
    UnhandledASGIMessageType,
    UnhandledWebSocketEvent,
)

pytestmark = pytest.mark.anyio

BASE_URL = "http://testserver"
Log = list[Any]


# --------------------------------------------------------------------------- helpers


@asynccontextmanager
async def client_for(app: Any, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An entered client whose transport serves ``app`` in-process."""
    transport = ASGIWebSocketTransport(app, **options)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


def response_of(ws: streams.AsyncWebSocketSession) -> httpx.Response:
    """The handshake response of a session opened by `streams.aconnect_ws`."""
    assert ws.response is not None
    return ws.response


def upgrade_headers(**extra: str) -> dict[str, str]:
    headers = {
        "connection": "upgrade",
        "upgrade": "websocket",
        "sec-websocket-key": base64.b64encode(os.urandom(16)).decode(),
        "sec-websocket-version": "13",
    }
    headers.update({name.replace("_", "-"): value for name, value in extra.items()})
    return headers


class RawClient:
    """A minimal wsproto client on the network stream of a ``101`` response."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self.stream = stream
        self.protocol = Connection(ConnectionType.CLIENT)
        self.pending: deque[wsproto.events.Event] = deque()

    async def send(self, event: wsproto.events.Event) -> None:
        await self.stream.write(self.protocol.send(event))

    async def next_event(self) -> wsproto.events.Event:
        while not self.pending:
            data = await self.stream.read(65536, timeout=5)
            self.protocol.receive_data(data or None)
            self.pending.extend(self.protocol.events())
        return self.pending.popleft()


@asynccontextmanager
async def raw_connect(
    client: httpx.AsyncClient, url: str = "/", **headers: str
) -> AsyncIterator[RawClient]:
    async with client.stream("GET", url, headers=upgrade_headers(**headers)) as response:
        assert response.status_code == 101
        raw = RawClient(response.extensions["network_stream"])
        try:
            yield raw
        finally:
            await raw.stream.aclose()


# --------------------------------------------------------------------------- apps


def starlette_app(log: Log) -> Starlette:
    """Endpoints of a typical Starlette app; what the server sees goes to ``log``."""

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    log.append(("disconnect", message["code"], message.get("reason")))
                    return
                if message.get("text") is not None:
                    await websocket.send_text(message["text"])
                else:
                    await websocket.send_bytes(message["bytes"])
        finally:
            log.append("finished")

    async def named(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.scope["path"])
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_text(f"{websocket.scope['path']}:{text}")
        except WebSocketDisconnect:
            pass

    async def subprotocols(websocket: WebSocket) -> None:
        offered = websocket.scope["subprotocols"]
        await websocket.accept(subprotocol=offered[-1] if offered else None)
        await websocket.send_json(offered)
        await websocket.close()

    async def headers(websocket: WebSocket) -> None:
        accept_headers = [
            (b"x-token", b"abc"),
            (b"x-name", "café".encode("latin-1")),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ]
        await websocket.accept(subprotocol="chat", headers=accept_headers)
        await websocket.close()

    async def deny(websocket: WebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("go away", status_code=401))

    async def refuse(websocket: WebSocket) -> None:
        await websocket.close(code=1008)

    async def close(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(code=4001, reason="bye")

    async def crash(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        raise ValueError(f"boom: {text}")

    async def crash_early(websocket: WebSocket) -> None:
        raise ValueError("early boom")

    async def plain(request: Any) -> PlainTextResponse:
        return PlainTextResponse("plain http")

    return Starlette(
        routes=[
            WebSocketRoute("/echo", echo),
            WebSocketRoute("/named/{name}", named),
            WebSocketRoute("/subprotocols", subprotocols),
            WebSocketRoute("/headers", headers),
            WebSocketRoute("/deny", deny),
            WebSocketRoute("/refuse", refuse),
            WebSocketRoute("/close", close),
            WebSocketRoute("/crash", crash),
            WebSocketRoute("/crash-early", crash_early),
            Route("/plain", plain),
        ]
    )


def fastapi_app(log: Log) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.websocket("/items/{item_id}/ws")
    async def item_feed(websocket: FastAPIWebSocket, item_id: int, q: str | None = None) -> None:
        await websocket.accept()
        await websocket.send_json({"item_id": item_id, "q": q})
        try:
            while True:
                data = await websocket.receive_json()
                await websocket.send_json({"item_id": item_id, "echo": data})
        except FastAPIWebSocketDisconnect as exc:
            log.append(("disconnect", exc.code))

    return app


def scripted_app(script: Callable[[Scope, Receive, Send], Any]) -> Callable[..., Any]:
    """A raw ASGI app: ``script`` after the ``websocket.connect`` event was received."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await script(scope, receive, send)

    return app


ACCEPT: Message = {"type": "websocket.accept"}


async def wait_disconnect(receive: Receive) -> Message:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return message


# --------------------------------------------------------------------------- messages


async def test_echo_text_and_binary() -> None:
    async with client_for(starlette_app([])) as client, streams.aconnect_ws("/echo", client) as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "hello"
        await ws.send_bytes(b"\x00\x01\xff")
        assert await ws.receive_bytes() == b"\x00\x01\xff"
        assert response_of(ws).status_code == 101


async def test_many_messages_keep_their_order() -> None:
    async with client_for(starlette_app([])) as client, streams.aconnect_ws("/echo", client) as ws:
        for i in range(1000):
            await ws.send_text(f"m{i}")
        assert [await ws.receive_text() for _ in range(1000)] == [f"m{i}" for i in range(1000)]
        big = os.urandom(60_000)
        await ws.send_bytes(big)
        assert await ws.receive_bytes() == big


async def test_compression_offer_is_not_accepted() -> None:
    async with client_for(starlette_app([])) as client, streams.aconnect_ws("/echo", client) as ws:
        assert "sec-websocket-extensions" not in response_of(ws).headers
        await ws.send_text("x" * 1000)
        assert await ws.receive_text() == "x" * 1000


async def test_fastapi_path_and_query_parameters_and_json() -> None:
    log: Log = []
    async with client_for(fastapi_app(log)) as client:
        async with streams.aconnect_ws("/items/7/ws?q=blue", client) as ws:
            assert await ws.receive_json() == {"item_id": 7, "q": "blue"}
            await ws.send_json({"n": 1})
            assert await ws.receive_json() == {"item_id": 7, "echo": {"n": 1}}
        assert log == [("disconnect", 1000)]


async def test_plain_http_requests_still_go_through_asgi_transport() -> None:
    async with client_for(starlette_app([])) as client:
        response = await client.get("/plain")
        assert (response.status_code, response.text) == (200, "plain http")
    async with client_for(fastapi_app([])) as client:
        assert (await client.get("/items/3")).json() == {"item_id": 3}


# --------------------------------------------------------------------------- scope


async def test_concurrent_connections_each_reach_their_own_path() -> None:
    paths = ["/named/a", "/named/b", "/named/a", "/named/b"]
    results: list[list[str]] = [[] for _ in paths]
    all_open = anyio.Event()
    opened = 0

    async def session(index: int, client: httpx.AsyncClient) -> None:
        nonlocal opened
        async with streams.aconnect_ws(paths[index], client) as ws:
            results[index].append(await ws.receive_text())
            opened += 1
            if opened == len(paths):
                all_open.set()
            await all_open.wait()  # all four connections are open at once
            await ws.send_text(str(index))
            results[index].append(await ws.receive_text())

    async with client_for(starlette_app([])) as client, anyio.create_task_group() as tg:
        for index in range(len(paths)):
            tg.start_soon(session, index, client)
    assert results == [[path, f"{path}:{i}"] for i, path in enumerate(paths)]


async def test_subprotocols_are_split_and_stripped() -> None:
    async with (
        client_for(starlette_app([])) as client,
        streams.aconnect_ws("/subprotocols", client, subprotocols=["one", "two"]) as ws,
    ):
        assert response_of(ws).request.headers["sec-websocket-protocol"] == "one, two"
        assert await ws.receive_json() == ["one", "two"]
        assert ws.subprotocol == "two"


async def test_raw_path_excludes_the_query_string_and_query_string_is_bytes() -> None:
    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        seen = [scope["path"], scope["raw_path"], scope["query_string"]]
        await send({"type": "websocket.send", "text": repr(seen)})
        await wait_disconnect(receive)

    async with (
        client_for(scripted_app(script)) as client,
        streams.aconnect_ws("/p%20q/r?x=1&y=%20", client) as ws,
    ):
        assert await ws.receive_text() == repr(["/p q/r", b"/p%20q/r", b"x=1&y=%20"])


async def test_scope_describes_the_websocket_request() -> None:
    scopes: list[Scope] = []

    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await send({"type": "websocket.close"})

    app = scripted_app(script)
    transport = ASGIWebSocketTransport(app, root_path="/api", client=("1.2.3.4", 5))
    async with httpx.AsyncClient(transport=transport) as client:
        for url in ("http://example.org/x", "https://example.org:8443/y"):
            async with client.stream("GET", url, headers=upgrade_headers(X_Custom="Yes")):
                pass
    plain, secure = scopes
    assert plain["type"] == "websocket"
    assert plain["asgi"]["version"] == "3.0"
    assert (plain["scheme"], plain["server"]) == ("ws", ("example.org", 80))
    assert (secure["scheme"], secure["server"]) == ("wss", ("example.org", 8443))
    assert (plain["root_path"], plain["client"]) == ("/api", ("1.2.3.4", 5))
    assert plain["subprotocols"] == []
    assert (b"x-custom", b"Yes") in plain["headers"]
    assert all(name == name.lower() for name, _ in plain["headers"])
    assert "websocket.http.response" in plain["extensions"]


async def test_ws_scheme_alone_makes_a_websocket_request() -> None:
    called: Log = []

    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope["scheme"])
        await send({"type": "websocket.close"})

    async with client_for(scripted_app(script)) as client:
        async with client.stream("GET", "ws://testserver/") as response:
            # No upgrade headers: refused as a bad WebSocket request, the app is not called.
            assert response.status_code == 400
        async with client.stream("GET", "wss://testserver/", headers=upgrade_headers()) as response:
            assert response.status_code == 403
    assert called == ["wss"]


# --------------------------------------------------------------------------- handshake


async def test_accept_headers_and_subprotocol_reach_the_client() -> None:
    async with (
        client_for(starlette_app([])) as client,
        streams.aconnect_ws("/headers", client, subprotocols=["json", "chat"]) as ws,
    ):
        assert response_of(ws).status_code == 101
        assert response_of(ws).headers["x-token"] == "abc"
        assert response_of(ws).headers["x-name"] == "café"
        assert response_of(ws).headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert response_of(ws).headers["sec-websocket-protocol"] == "chat"
        assert ws.subprotocol == "chat"


async def test_denial_response_becomes_an_http_response() -> None:
    async with client_for(starlette_app([])) as client:
        with pytest.raises(streams.WebSocketUpgradeError) as info:
            async with streams.aconnect_ws("/deny", client):
                pytest.fail("the upgrade was denied")
    assert info.value.response.status_code == 401
    assert info.value.response.text == "go away"


async def test_denial_response_in_several_body_parts() -> None:
    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"x-why", b"teapot")]
        await send({"type": "websocket.http.response.start", "status": 418, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"I'm a ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"teapot"})
        assert await receive() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}

    async with client_for(scripted_app(script)) as client:
        with pytest.raises(streams.WebSocketUpgradeError) as info:
            async with streams.aconnect_ws("/", client):
                pytest.fail("the upgrade was denied")
    response = info.value.response
    assert (response.status_code, response.text) == (418, "I'm a teapot")
    assert response.headers["x-why"] == "teapot"


async def test_unfinished_denial_response_is_sent_as_it_stands() -> None:
    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.http.response.start", "status": 404, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"partial", "more_body": True})

    async with client_for(scripted_app(script)) as client:
        with pytest.raises(streams.WebSocketUpgradeError) as info:
            async with streams.aconnect_ws("/", client):
                pytest.fail("the upgrade was denied")
    assert (info.value.response.status_code, info.value.response.text) == (404, "partial")


async def test_close_before_accept_is_a_403_response() -> None:
    async with client_for(starlette_app([])) as client:
        with pytest.raises(streams.WebSocketUpgradeError) as info:
            async with streams.aconnect_ws("/refuse", client):
                pytest.fail("the upgrade was refused")
    assert info.value.response.status_code == 403


async def test_app_returning_without_answer_is_a_500_response() -> None:
    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        return

    async with client_for(scripted_app(script)) as client:
        with pytest.raises(streams.WebSocketUpgradeError) as info:
            async with streams.aconnect_ws("/", client):
                pytest.fail("the app never accepted")
    assert info.value.response.status_code == 500
    assert "without answering" in info.value.response.text


async def test_app_too_slow_to_answer_is_cancelled() -> None:
    log: Log = []

    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            log.append("cancelled")

    async with client_for(scripted_app(script), initial_receive_timeout=0.05) as client:
        with pytest.raises(ASGIWebSocketTransportError, match="did not answer"):
            async with streams.aconnect_ws("/", client):
                pytest.fail("the app never accepted")
    assert log == ["cancelled"]


async def test_cancelled_connect_cancels_the_app() -> None:
    cancelled = anyio.Event()

    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with client_for(scripted_app(script), initial_receive_timeout=None) as client:
        with anyio.move_on_after(0.05) as scope:
            async with streams.aconnect_ws("/", client):
                pytest.fail("the app never accepted")
        assert scope.cancelled_caught
        with anyio.fail_after(5):  # before the transport exits
            await cancelled.wait()


@pytest.mark.parametrize(
    ("drop", "status"),
    [("sec-websocket-key", 400), ("sec-websocket-version", 400), ("connection", 400)],
)
async def test_invalid_upgrade_request_is_refused_without_calling_the_app(
    drop: str, status: int
) -> None:
    called: Log = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope)

    headers = upgrade_headers()
    del headers[drop]
    async with client_for(app) as client:
        response = await client.get("/", headers=headers)
    assert response.status_code == status
    assert called == []


async def test_wrong_websocket_version_is_426() -> None:
    async with client_for(starlette_app([])) as client:
        response = await client.get("/echo", headers=upgrade_headers(sec_websocket_version="8"))
    assert response.status_code == 426
    assert response.headers["sec-websocket-version"] == "13"


# --------------------------------------------------------------------------- closing


async def test_app_close_code_and_reason_reach_the_client() -> None:
    async with client_for(starlette_app([])) as client, streams.aconnect_ws("/close", client) as ws:
        with pytest.raises(streams.WebSocketDisconnect) as info:
            await ws.receive_text()
    assert (info.value.code, info.value.reason) == (4001, "bye")
    assert (ws.close_code, ws.close_reason) == (4001, "bye")


async def test_app_close_without_code_or_reason_is_1000() -> None:
    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        await send({"type": "websocket.send", "text": "last"})
        await send({"type": "websocket.close"})

    async with client_for(scripted_app(script)) as client, streams.aconnect_ws("/", client) as ws:
        assert [message async for message in ws] == ["last"]
    assert (ws.close_code, ws.close_reason) == (1000, "")


async def test_client_close_code_and_reason_reach_the_app() -> None:
    log: Log = []
    async with client_for(starlette_app(log)) as client:
        async with streams.aconnect_ws("/echo", client) as ws:
            await ws.close(4002, "client bye")
        assert log == [("disconnect", 4002, "client bye"), "finished"]


async def test_app_returning_after_accept_closes_1000() -> None:
    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        await send({"type": "websocket.send", "bytes": b"only"})

    async with client_for(scripted_app(script)) as client, streams.aconnect_ws("/", client) as ws:
        assert [message async for message in ws] == [b"only"]
    assert ws.close_code == 1000


async def test_client_ping_is_answered_with_pong() -> None:
    async with client_for(starlette_app([])) as client, streams.aconnect_ws("/echo", client) as ws:
        pong = await ws.ping(b"are you there")
        with anyio.fail_after(5):
            await pong.wait()
        await ws.send_text("still open")
        assert await ws.receive_text() == "still open"


async def test_send_after_the_client_left_raises_oserror_in_the_app() -> None:
    log: Log = []

    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        log.append((await wait_disconnect(receive))["code"])
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as exc:
            log.append(type(exc))

    async with client_for(scripted_app(script)) as client:
        async with streams.aconnect_ws("/", client):
            pass
        assert log[0] == 1000
        assert issubclass(log[1], OSError)


async def test_app_sending_until_the_client_leaves_ends_quietly() -> None:
    sent = 0

    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal sent
        await send(ACCEPT)
        while True:  # the OSError raised once the client has gone ends the app
            await send({"type": "websocket.send", "text": "tick"})
            sent += 1

    async with client_for(scripted_app(script)) as client:
        async with streams.aconnect_ws("/", client) as ws:
            assert await ws.receive_text() == "tick"
        assert sent >= 1  # and the transport's exit raises nothing


async def test_app_receiving_after_disconnect_waits_until_cancelled() -> None:
    log: Log = []

    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        log.append((await wait_disconnect(receive))["code"])
        try:
            await receive()
        finally:
            log.append("cancelled")

    # (The app answers the handshake at once; after the disconnect it is cancelled once
    # initial_receive_timeout passed: long enough for a loaded machine, short for the test.)
    async with client_for(scripted_app(script), initial_receive_timeout=0.5) as client:
        async with streams.aconnect_ws("/", client):
            pass
        assert log == [1000, "cancelled"]


async def test_transport_aclose_disconnects_open_connections() -> None:
    log: Log = []

    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        log.append((await wait_disconnect(receive))["code"])

    async with client_for(scripted_app(script)) as client, raw_connect(client) as raw:
        await client.aclose()
        assert log == [1006]
        with pytest.raises(httpcore.ReadError):  # closed, as by the client
            await raw.stream.read(100)


async def test_transport_exit_under_cancellation() -> None:
    log: Log = []
    with anyio.move_on_after(0.05) as scope:
        async with client_for(starlette_app(log)) as client, streams.aconnect_ws("/echo", client):
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert log[-1] == "finished"


async def test_transport_exit_disconnects_open_connections() -> None:
    log: Log = []

    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        log.append(await wait_disconnect(receive))

    async with client_for(scripted_app(script)) as client:
        request = client.build_request("GET", "/", headers=upgrade_headers())
        response = await client.send(request, stream=True)
        assert response.status_code == 101
        assert log == []  # left open on purpose
    assert log == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


# --------------------------------------------------------------------------- resources


async def test_app_has_finished_when_the_connection_ends() -> None:
    log: Log = []
    async with client_for(starlette_app(log)) as client:
        async with streams.aconnect_ws("/echo", client) as ws:
            await ws.send_text("x")
            assert await ws.receive_text() == "x"
            assert log == []
        assert log == [("disconnect", 1000, ""), "finished"]


async def test_app_ignoring_disconnect_is_cancelled_when_the_connection_ends() -> None:
    log: Log = []

    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        try:
            await anyio.sleep_forever()
        finally:
            log.append("cancelled")

    transport = ASGIWebSocketTransport(scripted_app(script), initial_receive_timeout=0.5)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        async with streams.aconnect_ws("/", client):
            pass
        # The transport is still open: the connection alone released its task.
        assert log == ["cancelled"]
        assert transport._connections == set()


async def test_connections_come_and_go_on_one_transport() -> None:
    log: Log = []
    async with client_for(starlette_app(log)) as client:
        for i in range(20):
            async with streams.aconnect_ws("/echo", client) as ws:
                await ws.send_text(str(i))
                assert await ws.receive_text() == str(i)
        assert log.count("finished") == 20


# --------------------------------------------------------------------------- app exceptions


async def test_app_exception_is_reraised_with_its_traceback() -> None:
    async def scenario() -> None:
        async with (
            client_for(starlette_app([])) as client,
            streams.aconnect_ws("/crash", client) as ws,
        ):
            await ws.send_text("hi")
            with pytest.raises(streams.WebSocketDisconnect) as closed:
                await ws.receive_text()
            assert (closed.value.code, closed.value.reason) == (1011, "boom: hi")

    with pytest.raises(ValueError, match="boom: hi") as info:
        await scenario()
    assert "crash" in [entry.name for entry in info.traceback]


async def test_app_exception_before_accept_comes_out_of_the_connect() -> None:
    async with client_for(starlette_app([])) as client:
        with pytest.raises(ValueError, match="early boom") as info:
            async with streams.aconnect_ws("/crash-early", client):
                pytest.fail("the app crashed before accepting")
        assert "crash_early" in [entry.name for entry in info.traceback]
    # Raised once: the transport's exit raised nothing more.


async def test_app_exceptions_from_several_connections_raise_a_group() -> None:
    async def scenario() -> None:
        async with client_for(starlette_app([])) as client:
            for text in ("one", "two"):
                async with streams.aconnect_ws("/crash", client) as ws:
                    await ws.send_text(text)
                    with pytest.raises(streams.WebSocketDisconnect):
                        await ws.receive_text()

    with pytest.raises(ExceptionGroup) as info:
        await scenario()
    assert [str(exc) for exc in info.value.exceptions] == ["boom: one", "boom: two"]


async def test_app_exception_and_block_exception_raise_a_group() -> None:
    async def scenario() -> None:
        async with client_for(starlette_app([])) as client:
            async with streams.aconnect_ws("/crash", client) as ws:
                await ws.send_text("hi")
                with pytest.raises(streams.WebSocketDisconnect):
                    await ws.receive_text()
            raise KeyError("the block failed too")

    with pytest.raises(ExceptionGroup) as info:
        await scenario()
    assert info.group_contains(ValueError, match="boom: hi")
    assert isinstance(info.value.__context__, KeyError)


async def test_app_exceptions_are_not_raised_when_disabled() -> None:
    async with client_for(starlette_app([]), raise_app_exceptions=False) as client:
        async with streams.aconnect_ws("/crash", client) as ws:
            await ws.send_text("hi")
            with pytest.raises(streams.WebSocketDisconnect) as closed:
                await ws.receive_text()
        assert closed.value.code == 1011
        with pytest.raises(streams.WebSocketUpgradeError) as refused:
            async with streams.aconnect_ws("/crash-early", client):
                pytest.fail("the app crashed before accepting")
        assert refused.value.response.status_code == 500


async def test_disconnect_left_uncaught_by_the_app_after_the_client_left_is_quiet() -> None:
    # The usual endpoint, ``while True: await ws.receive_text()``, ends with
    # Starlette's WebSocketDisconnect once told the client left: not a failure.
    ended = anyio.Event()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.receive_text()
        finally:
            ended.set()

    app = Starlette(routes=[WebSocketRoute("/", endpoint)])
    async with client_for(app) as client, streams.aconnect_ws("/", client) as ws:
        await ws.send_text("hello")
    assert ended.is_set()


async def test_disconnect_raised_before_the_client_left_is_an_app_exception() -> None:
    # Raised while the client is still connected, it is the app's own error.
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        raise WebSocketDisconnect(1011)

    async def scenario() -> None:
        app = Starlette(routes=[WebSocketRoute("/", endpoint)])
        async with client_for(app) as client, streams.aconnect_ws("/", client) as ws:
            with pytest.raises(streams.WebSocketDisconnect):
                await ws.receive_text()

    with pytest.raises(WebSocketDisconnect):
        await scenario()


async def test_invalid_asgi_message_raises_in_the_app() -> None:
    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        await send({"type": "websocket.bogus"})

    async def scenario() -> None:
        async with (
            client_for(scripted_app(script)) as client,
            streams.aconnect_ws("/", client) as ws,
        ):
            with pytest.raises(streams.WebSocketDisconnect) as closed:
                await ws.receive_text()
            assert closed.value.code == 1011

    with pytest.raises(UnhandledASGIMessageType) as info:
        await scenario()
    assert info.value.message == {"type": "websocket.bogus"}
    assert "script" in [entry.name for entry in info.traceback]


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([{"type": "websocket.http.response.start", "status": 99}], "invalid status"),
        (
            [{"type": "websocket.http.response.start", "status": 400}, ACCEPT],
            "expected 'websocket.http.response.body'",
        ),
    ],
    ids=["bad-status", "accept-in-denial"],
)
async def test_invalid_handshake_answer_raises_in_the_app(
    messages: list[Message], match: str
) -> None:
    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)

    async with client_for(scripted_app(script)) as client:
        with pytest.raises(UnhandledASGIMessageType, match=match):
            async with streams.aconnect_ws("/", client):
                pytest.fail("the app never accepted")


async def test_send_without_data_is_invalid() -> None:
    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        await send({"type": "websocket.send"})

    async def scenario() -> None:
        async with (
            client_for(scripted_app(script)) as client,
            streams.aconnect_ws("/", client) as ws,
        ):
            with pytest.raises(streams.WebSocketDisconnect):
                await ws.receive_text()

    with pytest.raises(UnhandledASGIMessageType, match="needs 'bytes' or 'text'"):
        await scenario()


async def test_message_before_accept_is_invalid() -> None:
    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.send", "text": "too early"})

    async with client_for(scripted_app(script)) as client:
        with pytest.raises(UnhandledASGIMessageType, match=r"websocket\.accept"):
            async with streams.aconnect_ws("/", client):
                pytest.fail("the app never accepted")


async def test_send_after_app_close_is_invalid() -> None:
    async def script(scope: Scope, receive: Receive, send: Send) -> None:
        await send(ACCEPT)
        await send({"type": "websocket.close", "code": 1000})
        await send({"type": "websocket.send", "text": "after close"})

    async def scenario() -> None:
        async with (
            client_for(scripted_app(script)) as client,
            streams.aconnect_ws("/", client) as ws,
        ):
            assert [message async for message in ws] == []

    with pytest.raises(UnhandledASGIMessageType, match="already closed"):
        await scenario()


# --------------------------------------------------------------------------- transport life


async def test_websocket_request_needs_an_entered_transport() -> None:
    client = httpx.AsyncClient(transport=ASGIWebSocketTransport(starlette_app([])))
    try:
        with pytest.raises(ASGIWebSocketTransportError, match="async with"):
            async with streams.aconnect_ws("http://testserver/echo", client):
                pytest.fail("the transport was not entered")
        assert (await client.get("http://testserver/plain")).text == "plain http"
    finally:
        await client.aclose()


async def test_transport_entered_directly_and_by_clients() -> None:
    log: Log = []
    async with ASGIWebSocketTransport(starlette_app(log)) as transport:
        for _ in range(2):
            async with (
                httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
                streams.aconnect_ws("/echo", client) as ws,
            ):
                await ws.send_text("hi")
                assert await ws.receive_text() == "hi"
        # The clients' exits did not close the transport: it still serves.
        client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)
        async with streams.aconnect_ws("/echo", client) as ws:
            await ws.send_text("again")
            assert await ws.receive_text() == "again"
    assert log.count("finished") == 3


async def test_public_names() -> None:
    assert streams.transport.__all__ == sorted(streams.transport.__all__)
    for name in streams.transport.__all__:
        assert hasattr(streams.transport, name)
    assert issubclass(ASGIWebSocketTransport, httpx.ASGITransport)
    assert issubclass(ASGIWebSocketAsyncNetworkStream, httpcore.AsyncNetworkStream)
    assert issubclass(UnhandledASGIMessageType, ASGIWebSocketTransportError)
    assert issubclass(UnhandledWebSocketEvent, ASGIWebSocketTransportError)


# --------------------------------------------------------------------------- frames


async def test_raw_ping_gets_pong_with_the_same_payload() -> None:
    async with client_for(starlette_app([])) as client, raw_connect(client, "/echo") as raw:
        await raw.send(wsproto.events.Ping(b"abc"))
        assert await raw.next_event() == wsproto.events.Pong(b"abc")
        await raw.send(wsproto.events.Pong(b"unsolicited"))  # allowed, ignored
        await raw.send(wsproto.events.TextMessage("after"))
        event = await raw.next_event()
        assert isinstance(event, wsproto.events.TextMessage)
        assert event.data == "after"


async def test_fragmented_message_reaches_the_app_whole() -> None:
    async with client_for(starlette_app([])) as client, raw_connect(client, "/echo") as raw:
        await raw.send(wsproto.events.TextMessage("hel", message_finished=False))
        await raw.send(wsproto.events.TextMessage("lo", message_finished=True))
        await raw.send(wsproto.events.BytesMessage(b"\x01", message_finished=False))
        await raw.send(wsproto.events.BytesMessage(b"\x02", message_finished=True))
        first, second = await raw.next_event(), await raw.next_event()
        assert isinstance(first, wsproto.events.TextMessage)
        assert isinstance(second, wsproto.events.BytesMessage)
        assert (first.data, second.data) == ("hello", b"\x01\x02")


async def test_read_returns_at_most_max_bytes() -> None:
    async with client_for(starlette_app([])) as client, raw_connect(client, "/echo") as raw:
        await raw.send(wsproto.events.BytesMessage(b"z" * 1000))
        await raw.send(wsproto.events.BytesMessage(b"y" * 10))
        chunks: list[bytes] = []
        while sum(len(chunk) for chunk in chunks) < 1016:  # two frames: 4 + 1000 and 2 + 10 bytes
            chunk = await raw.stream.read(7, timeout=5)
            assert 0 < len(chunk) <= 7
            chunks.append(chunk)
        raw.protocol.receive_data(b"".join(chunks))
        events = list(raw.protocol.events())
        assert [event.data for event in events] == [b"z" * 1000, b"y" * 10]  # type: ignore[attr-defined]


async def test_read_timeout_raises_httpcore_read_timeout() -> None:
    async with client_for(starlette_app([])) as client, raw_connect(client, "/echo") as raw:
        with pytest.raises(httpcore.ReadTimeout):
            await raw.stream.read(100, timeout=0.01)
        await raw.send(wsproto.events.TextMessage("alive"))
        assert await raw.next_event() == wsproto.events.TextMessage("alive")


async def test_client_close_handshake_then_end_of_stream() -> None:
    log: Log = []
    async with client_for(starlette_app(log)) as client:
        async with raw_connect(client, "/echo") as raw:
            await raw.send(wsproto.events.CloseConnection(4100, "done"))
            assert await raw.next_event() == wsproto.events.CloseConnection(4100, "done")
            assert await raw.stream.read(100) == b""
            await raw.stream.write(b"ignored: the connection is over")
        assert log == [("disconnect", 4100, "done"), "finished"]


async def test_client_dropping_the_connection_gives_1006_to_the_app() -> None:
    log: Log = []
    async with client_for(starlette_app(log)) as client:
        async with raw_connect(client, "/echo"):
            pass  # closed without a Close frame
        assert log == [("disconnect", 1006, ""), "finished"]


async def test_unmasked_client_frame_fails_the_connection_with_1002() -> None:
    log: Log = []
    async with client_for(starlette_app(log)) as client:
        async with raw_connect(client, "/echo") as raw:
            await raw.stream.write(b"\x81\x02hi")  # a text frame without a mask
            event = await raw.next_event()
            assert isinstance(event, wsproto.events.CloseConnection)
            assert event.code == 1002
            assert await raw.stream.read(100) == b""
        assert log[0][:2] == ("disconnect", 1002)


async def test_stream_after_aclose() -> None:
    async with client_for(starlette_app([])) as client, raw_connect(client, "/echo") as raw:
        stream = raw.stream
        assert stream.get_extra_info("client_addr") == ("127.0.0.1", 123)
        assert stream.get_extra_info("server_addr") == ("testserver", 80)
        assert stream.get_extra_info("ssl_object") is None
        assert stream.get_extra_info("is_readable") is False
        async with anyio.create_task_group() as tg:

            async def read_until_closed() -> None:
                with pytest.raises(httpcore.ReadError):
                    await stream.read(100)

            tg.start_soon(read_until_closed)
            await anyio.wait_all_tasks_blocked()
            await stream.aclose()
        await stream.aclose()  # twice is fine
        with pytest.raises(httpcore.ReadError):
            await stream.read(100)
        with pytest.raises(httpcore.WriteError):
            await stream.write(b"x")
