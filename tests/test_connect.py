"""Opening a session: URLs, what reaches httpx, the given client, refused and invalid handshakes."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

import streams
from streams import AsyncWebSocketSession, WebSocketUpgradeError
from tests import servers
from tests.peers import ScriptedPeer, accept_key, scripted_server

pytestmark = pytest.mark.anyio

# Loading the CA bundle costs tens of milliseconds: once for the module, not once per client.
TLS_CONTEXT = ssl.create_default_context()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client that is cheap to make (most tests need no default client)."""
    async with httpx.AsyncClient(verify=TLS_CONTEXT) as client:
        yield client


def http(url: str) -> str:
    return "http://" + url.removeprefix("ws://")


def new_record() -> tuple[str, servers.ConnectionRecord]:
    """A fresh ``?id=`` and its server-side record (created before connecting: no race)."""
    conn_id = servers.new_id()
    return conn_id, servers.REGISTRY.record(conn_id)


# --------------------------------------------------------------------------- URLs and httpx


@pytest.mark.parametrize("scheme", ["ws", "http"])
async def test_ws_and_http_urls_connect(
    server_url: str, scheme: str, client: httpx.AsyncClient
) -> None:
    url = server_url + "/echo" if scheme == "ws" else http(server_url) + "/echo"
    async with streams.aconnect_ws(url, client, close_timeout=2) as ws:
        await ws.send_text(scheme)
        assert await ws.receive_text() == scheme
        assert ws.response is not None
        assert ws.response.request.url.scheme == "http"
        assert ws.response.status_code == 101


async def test_default_client(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        await ws.send_text("default")
        assert await ws.receive_text() == "default"


async def test_an_httpx_url_is_accepted(echo_url: str, client: httpx.AsyncClient) -> None:
    async with streams.aconnect_ws(httpx.URL(echo_url), client) as ws:
        await ws.send_text("url")
        assert await ws.receive_text() == "url"


async def test_headers_and_params_reach_httpx(server_url: str, client: httpx.AsyncClient) -> None:
    conn_id, record = new_record()
    async with streams.aconnect_ws(
        server_url + "/headers",
        client,
        headers={"X-Trace-Id": "abc", "Authorization": "Bearer t0ken"},
        params={"id": conn_id},
        cookies={"session": "s1"},
        timeout=5,
        close_timeout=2,
    ) as ws:
        seen = json.loads(await ws.receive_text())
    assert seen["x-trace-id"] == "abc"
    assert seen["authorization"] == "Bearer t0ken"
    assert seen["cookie"] == "session=s1"
    # The handshake headers are the library's, not overridden by the extra ones.
    assert seen["upgrade"].lower() == "websocket"
    assert seen["sec-websocket-version"] == "13"
    await record.wait_finished()
    assert record.path == "/headers"  # ?id= came through `params`


async def test_handshake_headers_given_by_the_caller_do_not_break_the_upgrade(
    echo_url: str, client: httpx.AsyncClient
) -> None:
    async with streams.aconnect_ws(
        echo_url, client, headers={"Sec-WebSocket-Key": "bogus", "Connection": "close"}
    ) as ws:
        await ws.send_text("still valid")
        assert await ws.receive_text() == "still valid"


async def test_given_client_is_used_and_stays_open(server_url: str) -> None:
    requests: list[httpx.Request] = []

    async def on_request(request: httpx.Request) -> None:
        requests.append(request)

    async with httpx.AsyncClient(
        verify=TLS_CONTEXT, headers={"X-Client": "mine"}, event_hooks={"request": [on_request]}
    ) as client:
        for _ in range(2):
            async with streams.aconnect_ws(server_url + "/headers", client, close_timeout=2) as ws:
                seen = json.loads(await ws.receive_text())
                assert seen["x-client"] == "mine"
            assert not client.is_closed
        assert len(requests) == 2
        # The client still makes plain requests.
        response = await client.get(http(server_url) + "/ready")
        assert response.status_code == 200


async def test_the_client_is_given_as_keyword_too(echo_url: str) -> None:
    async with (
        httpx.AsyncClient(verify=TLS_CONTEXT) as client,
        streams.aconnect_ws(echo_url, client=client) as ws,
    ):
        await ws.send_text("kw")
        assert await ws.receive_text() == "kw"
    assert client.is_closed  # closed by its own block, not by the session


async def test_session_class_is_used(echo_url: str, client: httpx.AsyncClient) -> None:
    class Tagged(AsyncWebSocketSession):
        tag = "mine"

    async with streams.aconnect_ws(echo_url, client, session_class=Tagged) as ws:
        assert isinstance(ws, Tagged)
        await ws.send_text("sub")
        assert await ws.receive_text() == "sub"


async def test_connection_refused_raises_httpx_connect_error(client: httpx.AsyncClient) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens there any more
    with pytest.raises(httpx.ConnectError):
        async with streams.aconnect_ws(f"ws://127.0.0.1:{port}/", client):
            pass


# --------------------------------------------------------------------------- subprotocols


@pytest.mark.parametrize(
    ("offer", "chosen"),
    [
        (["chat.v1", "chat.v2"], "chat.v1"),
        (["chat.v2", "chat.v1"], "chat.v2"),
        (["x", "chat.v2"], "chat.v2"),
        (["x"], None),
        (None, None),
    ],
)
async def test_subprotocol_negotiation(
    server_url: str, offer: list[str] | None, chosen: str | None, client: httpx.AsyncClient
) -> None:
    conn_id, record = new_record()
    async with streams.aconnect_ws(
        f"{server_url}/subprotocols?id={conn_id}", client, subprotocols=offer, close_timeout=2
    ) as ws:
        assert ws.subprotocol == chosen
        assert await ws.receive_text() == (chosen or "")
    await record.wait_finished()
    assert record.subprotocol == chosen


async def test_subprotocols_are_offered_in_order(client: httpx.AsyncClient) -> None:
    offered: list[str | None] = []

    async def script(peer: ScriptedPeer) -> None:
        offered.append(peer.header("Sec-WebSocket-Protocol"))
        await peer.answer_close()

    async with (
        scripted_server(script, subprotocol="b") as url,
        streams.aconnect_ws(url + "/", client, subprotocols=["a", "b", "c"]) as ws,
    ):
        assert ws.subprotocol == "b"
    assert offered == ["a, b, c"]


# --------------------------------------------------------------------------- refused handshakes


@pytest.mark.parametrize("status", [401, 503])
async def test_refused_handshake_raises_upgrade_error_with_the_response(
    server_url: str, status: int, client: httpx.AsyncClient
) -> None:
    conn_id, record = new_record()
    url = f"{server_url}/reject?status={status}&id={conn_id}"
    with pytest.raises(WebSocketUpgradeError) as info:
        async with streams.aconnect_ws(url, client):
            pass
    response = info.value.response
    assert isinstance(response, httpx.Response)
    assert response.status_code == status
    assert response.content == b"rejected\n"
    assert str(status) in str(info.value)
    await record.wait_finished()
    assert record.rejected_status == status


async def test_unknown_path_raises_upgrade_error(
    websockets_url: str, client: httpx.AsyncClient
) -> None:
    with pytest.raises(WebSocketUpgradeError) as info:
        async with streams.aconnect_ws(websockets_url + "/nowhere", client):
            pass
    assert info.value.response.status_code == 404


async def test_refused_handshake_leaves_the_given_client_usable(echo_url: str) -> None:
    base = echo_url.removesuffix("/echo")
    async with httpx.AsyncClient(verify=TLS_CONTEXT) as client:
        with pytest.raises(WebSocketUpgradeError):
            async with streams.aconnect_ws(base + "/reject", client):
                pass
        async with streams.aconnect_ws(echo_url, client) as ws:
            await ws.send_text("after a refusal")
            assert await ws.receive_text() == "after a refusal"


INVALID_HANDSHAKES: dict[str, dict[str, Any]] = {
    "status-200": {"status": 200},
    "wrong-accept-key": {"accept_key_override": accept_key("another key")},
    "subprotocol-not-offered": {"subprotocol": "never.offered"},
    "extension-not-offered": {"extra_headers": [("Sec-WebSocket-Extensions", "x-unknown")]},
}


@pytest.mark.parametrize("options", INVALID_HANDSHAKES.values(), ids=INVALID_HANDSHAKES.keys())
async def test_invalid_handshake_raises_upgrade_error(
    options: dict[str, Any], client: httpx.AsyncClient
) -> None:
    ended = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        # The client gives up the connection: it is closed, nothing is sent on it.
        assert await peer.wait_eof() == []
        ended.set()

    async with scripted_server(script, **options) as url:
        with pytest.raises(WebSocketUpgradeError) as info:
            async with streams.aconnect_ws(url + "/", client, subprotocols=["chat"]):
                pass
        assert info.value.response.status_code == options.get("status", 101)
        if options.get("status", 101) == 101:
            with anyio.fail_after(5):
                await ended.wait()


RAW_101 = "HTTP/1.1 101 Switching Protocols\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        ["Connection: Upgrade"],  # no Upgrade
        ["Upgrade: h2c", "Connection: Upgrade"],  # not websocket
        ["Upgrade: websocket"],  # no Connection
        ["Upgrade: websocket", "Connection: keep-alive"],  # Connection without upgrade
        ["Upgrade: websocket", "Connection: Upgrade"],  # no Sec-WebSocket-Accept
    ],
    ids=["no-upgrade", "upgrade-h2c", "no-connection", "connection-keep-alive", "no-accept"],
)
async def test_malformed_101_raises_upgrade_error(
    headers: list[str], client: httpx.AsyncClient
) -> None:
    async def script(peer: ScriptedPeer) -> None:
        key = peer.header("Sec-WebSocket-Key") or ""
        lines = list(headers)
        if headers != ["Upgrade: websocket", "Connection: Upgrade"]:
            lines.append(f"Sec-WebSocket-Accept: {accept_key(key)}")
        await peer.send_raw((RAW_101 + "".join(f"{h}\r\n" for h in lines) + "\r\n").encode())
        await peer.wait_eof()

    async with scripted_server(script, handshake=False) as url:
        with pytest.raises(WebSocketUpgradeError) as info:
            async with streams.aconnect_ws(url + "/", client):
                pass
        assert info.value.response.status_code == 101


async def test_valid_handshake_with_odd_but_legal_headers(client: httpx.AsyncClient) -> None:
    async def script(peer: ScriptedPeer) -> None:
        key = peer.header("Sec-WebSocket-Key") or ""
        await peer.send_raw(
            (
                RAW_101 + "upgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
                f"sec-websocket-accept: {accept_key(key)}\r\n\r\n"
            ).encode()
        )
        await peer.send_text("welcome")
        assert await peer.answer_close() == (1000, "")

    async with (
        scripted_server(script, handshake=False) as url,
        streams.aconnect_ws(url + "/", client) as ws,
    ):
        assert await ws.receive_text() == "welcome"


async def test_request_is_a_valid_upgrade_request(client: httpx.AsyncClient) -> None:
    seen: list[ScriptedPeer] = []

    async def script(peer: ScriptedPeer) -> None:
        seen.append(peer)
        await peer.answer_close()

    async with scripted_server(script) as url:
        async with streams.aconnect_ws(url + "/path?q=1", client):
            pass
        async with streams.aconnect_ws(url + "/", client, compression=None):
            pass
    first, second = seen
    assert first.request_line == "GET /path?q=1 HTTP/1.1"
    assert (first.header("Upgrade") or "").lower() == "websocket"
    assert "upgrade" in (first.header("Connection") or "").lower()
    assert first.header("Sec-WebSocket-Version") == "13"
    key = first.header("Sec-WebSocket-Key") or ""
    assert len(base64.b64decode(key)) == 16
    assert second.header("Sec-WebSocket-Key") != key  # a fresh key each time
    assert "permessage-deflate" in (first.header("Sec-WebSocket-Extensions") or "")
    assert second.header("Sec-WebSocket-Extensions") is None


# --------------------------------------------------------------------------- timeouts, cancelling


async def test_handshake_timeout_is_httpx_timeout(client: httpx.AsyncClient) -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.wait_eof()  # never answers the upgrade request

    async with scripted_server(script, handshake=False) as url:
        with pytest.raises(httpx.ReadTimeout):
            async with streams.aconnect_ws(url + "/", client, timeout=0.2):
                pass


async def test_cancelled_handshake_leaves_nothing_open(client: httpx.AsyncClient) -> None:
    ended = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        await peer.wait_eof()  # the client gives up: its connection is closed
        ended.set()

    async with scripted_server(script, handshake=False) as url:
        with anyio.move_on_after(0.2) as scope:
            async with streams.aconnect_ws(url + "/", client):
                pytest.fail("the handshake was never answered")
        assert scope.cancelled_caught
        with anyio.fail_after(5):
            await ended.wait()
