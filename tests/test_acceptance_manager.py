"""Acceptance tests of the resilient manager, `streams.websocket`, as its reference describes it.

The reference: `Websocket()` with the `connected` / `connecting` / `disconnected` /
`disconnecting` properties, `connect(url)`, `receive()` giving `WebsocketPacketJSON` or
`WebsocketPacketBytes`, `send_json` / `send_bytes`, `disconnect()`, and the signals
(`ReconnectSignal`, `ResumeSignal`, `DisconnectSignal`) raised when the connection ends, plus
`RuntimeError` for an unexpected payload type. Which signal a close code gives is the default
policy of the documentation (docs/resilient.md).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

try:
    from streams.websocket import (
        DisconnectSignal,
        ReconnectSignal,
        ResumeSignal,
        Websocket,
        WebsocketPacket,
        WebsocketPacketBytes,
        WebsocketPacketJSON,
        WebsocketPolicy,
        WebsocketState,
    )
except ImportError as exc:  # pragma: no cover - the manager is not there yet
    pytest.skip(f"streams.websocket lacks the manager's names: {exc}", allow_module_level=True)

import streams
from streams.transport import ASGIWebSocketTransport
from tests.peers import ScriptedPeer, accept_key, scripted_server

pytestmark = pytest.mark.anyio

SIGNALS = (ReconnectSignal, ResumeSignal, DisconnectSignal)


# --------------------------------------------------------------------------- the types


def test_states_are_the_reference_int_enum() -> None:
    assert issubclass(WebsocketState, enum.IntEnum)
    assert WebsocketState.CONNECTED == 0
    assert WebsocketState.CONNECTING == 1
    assert WebsocketState.DISCONNECTED == 2
    assert WebsocketState.DISCONNECTING == 3
    assert len(WebsocketState) == 4


def test_packets_are_dataclasses_with_a_payload() -> None:
    for cls, payload in ((WebsocketPacketBytes, b"\x00"), (WebsocketPacketJSON, {"a": 1})):
        assert dataclasses.is_dataclass(cls)
        assert issubclass(cls, WebsocketPacket)
        assert [f.name for f in dataclasses.fields(cls)] == ["payload"]
        packet = cls(payload=payload)  # type: ignore[arg-type]
        assert packet.payload == payload
        assert packet == cls(payload)  # type: ignore[arg-type]
    assert WebsocketPacketBytes(b"x") != WebsocketPacketBytes(b"y")


def test_signals_are_exceptions_of_the_library() -> None:
    for signal in SIGNALS:
        assert issubclass(signal, Exception)
        assert issubclass(signal, streams.HTTPXWSException)
    assert len(set(SIGNALS)) == 3
    assert not issubclass(ReconnectSignal, DisconnectSignal)
    assert not issubclass(DisconnectSignal, ReconnectSignal)


def test_a_new_websocket_is_disconnected() -> None:
    ws = Websocket()
    assert ws.disconnected
    assert not ws.connected
    assert not ws.connecting
    assert not ws.disconnecting


def test_manager_names_are_exported_by_streams() -> None:
    # docs/reference.md and docs/resilient.md use them as streams.<name>.
    for name in (
        "Websocket",
        "WebsocketState",
        "WebsocketPacketJSON",
        "WebsocketPacketBytes",
        "ReconnectSignal",
        "ResumeSignal",
        "DisconnectSignal",
        "WebsocketPolicy",
        "reconnecting_ws",
        "Backoff",
    ):
        assert hasattr(streams, name), name


# --------------------------------------------------------------------------- helpers


async def _mixed(websocket: WebSocket) -> None:
    """Send each ``t`` query value as text and each ``b`` as bytes, then echo."""
    await websocket.accept()
    for text in websocket.query_params.getlist("t"):
        await websocket.send_text(text)
    for data in websocket.query_params.getlist("b"):
        await websocket.send_bytes(data.encode())
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


APP = Starlette(routes=[WebSocketRoute("/mixed", _mixed)])


@asynccontextmanager
async def asgi_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=ASGIWebSocketTransport(APP), base_url="http://testserver"
    ) as client:
        yield client


@asynccontextmanager
async def connected(url: str, **options: Any) -> AsyncIterator[Websocket]:
    """A bare manager connected to ``url``, disconnected afterwards (the owner task does both)."""
    ws = Websocket(**options)
    await ws.connect(url)
    try:
        yield ws
    finally:
        await ws.disconnect()


# --------------------------------------------------------------------------- connect, receive, send


async def test_connect_round_trip_disconnect(echo_url: str) -> None:
    ws = Websocket()
    assert ws.disconnected
    await ws.connect(echo_url)
    try:
        assert ws.connected
        assert not ws.connecting
        assert not ws.disconnected
        assert not ws.disconnecting
        await ws.send_json({"op": "subscribe", "n": [1, 2.5]})
        packet = await ws.receive()
        assert isinstance(packet, WebsocketPacketJSON)
        assert packet.payload == {"op": "subscribe", "n": [1, 2.5]}
        assert isinstance(packet.payload, dict)
        await ws.send_bytes(b"\x00\xffraw")
        packet = await ws.receive()
        assert isinstance(packet, WebsocketPacketBytes)
        assert packet.payload == b"\x00\xffraw"
        assert type(packet.payload) is bytes
    finally:
        await ws.disconnect()
    assert ws.disconnected
    assert not ws.connected
    await ws.disconnect()  # twice: nothing
    assert ws.disconnected


async def test_calls_after_disconnect_raise_disconnect_signal(echo_url: str) -> None:
    ws = Websocket()
    await ws.connect(echo_url)
    await ws.disconnect()
    with pytest.raises(DisconnectSignal):
        await ws.receive()
    with pytest.raises(DisconnectSignal):
        await ws.send_json({"a": 1})
    with pytest.raises(DisconnectSignal):
        await ws.send_bytes(b"a")


async def test_the_same_manager_connects_again(echo_url: str) -> None:
    ws = Websocket()
    for i in range(2):
        await ws.connect(echo_url)
        try:
            await ws.send_json({"i": i})
            assert await ws.receive() == WebsocketPacketJSON({"i": i})
        finally:
            await ws.disconnect()
        assert ws.disconnected


async def test_unexpected_text_payloads_raise_runtime_error_and_the_connection_goes_on() -> None:
    async with asgi_client() as client:
        url = 'http://testserver/mixed?t=hello&t=[1,2]&t=42&t={"ok":true}&b=raw'
        async with connected(url, client=client) as ws:
            for _ in range(3):
                with pytest.raises(RuntimeError):
                    await ws.receive()
            assert ws.connected
            assert await ws.receive() == WebsocketPacketJSON({"ok": True})
            assert await ws.receive() == WebsocketPacketBytes(b"raw")


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize(
    ("code", "signal"),
    [
        (1000, ReconnectSignal),
        (1001, ReconnectSignal),
        (1011, ReconnectSignal),
        (1012, ReconnectSignal),
        (1002, DisconnectSignal),
        (1008, DisconnectSignal),
        (4000, DisconnectSignal),
    ],
)
async def test_server_close_code_gives_the_signal(
    uvicorn_websockets_url: str, code: int, signal: type[Exception]
) -> None:
    url = f"{uvicorn_websockets_url}/close?code={code}&reason=why"
    async with connected(url) as ws:
        with anyio.fail_after(5), pytest.raises(signal) as info:
            await ws.receive()
        assert info.value.code == code  # type: ignore[attr-defined]
        assert info.value.reason == "why"  # type: ignore[attr-defined]
        assert ws.disconnected
        # Until the next connect(), every call says the same.
        with pytest.raises(signal):
            await ws.receive()
        with pytest.raises(signal):
            await ws.send_json({"late": True})


async def test_connect_again_after_a_reconnect_signal(uvicorn_websockets_url: str) -> None:
    ws = Websocket()
    try:
        await ws.connect(f"{uvicorn_websockets_url}/close?code=1012")
        with anyio.fail_after(5), pytest.raises(ReconnectSignal):
            await ws.receive()
        assert ws.disconnected
        await ws.connect(f"{uvicorn_websockets_url}/echo")  # the retry loop of the reference
        assert ws.connected
        await ws.send_json({"back": True})
        assert await ws.receive() == WebsocketPacketJSON({"back": True})
    finally:
        await ws.disconnect()
    assert ws.disconnected


async def test_configured_resume_code_gives_resume_signal(uvicorn_websockets_url: str) -> None:
    url = f"{uvicorn_websockets_url}/close?code=4000"
    async with connected(url, policy=WebsocketPolicy(resume_codes={4000})) as ws:
        with anyio.fail_after(5), pytest.raises(ResumeSignal):
            await ws.receive()


async def test_server_going_away_gives_reconnect_signal() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text('{"last": true}')
        await peer.abort()

    async with scripted_server(script) as url, connected(url + "/") as ws:
        assert await ws.receive() == WebsocketPacketJSON({"last": True})
        with anyio.fail_after(5), pytest.raises(ReconnectSignal):
            await ws.receive()
        assert ws.disconnected


async def test_server_closing_tcp_without_close_frame_gives_reconnect_signal() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.close_tcp()

    async with scripted_server(script) as url, connected(url + "/") as ws:
        with anyio.fail_after(5), pytest.raises(ReconnectSignal):
            await ws.receive()


async def test_silent_server_gives_reconnect_signal() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.wait_eof(timeout=10)

    async with (
        scripted_server(script) as url,
        connected(
            url + "/",
            keepalive_ping_interval_seconds=0.1,
            keepalive_ping_timeout_seconds=0.2,
            close_timeout=1,
        ) as ws,
    ):
        with anyio.fail_after(5), pytest.raises(ReconnectSignal):
            await ws.receive()


async def test_connection_refused_gives_reconnect_signal() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    ws = Websocket()
    with pytest.raises(ReconnectSignal):
        await ws.connect(f"ws://127.0.0.1:{port}/")
    assert ws.disconnected


@pytest.mark.parametrize(("status", "signal"), [(403, DisconnectSignal), (503, ReconnectSignal)])
async def test_refused_handshake_gives_the_signal(
    uvicorn_websockets_url: str, status: int, signal: type[Exception]
) -> None:
    ws = Websocket()
    with pytest.raises(signal) as info:
        await ws.connect(f"{uvicorn_websockets_url}/reject?status={status}")
    assert info.value.status_code == status  # type: ignore[attr-defined]
    assert ws.disconnected


async def test_send_after_the_server_left_gives_a_signal(uvicorn_websockets_url: str) -> None:
    async with connected(f"{uvicorn_websockets_url}/close?code=1001") as ws:
        session = ws.session
        assert session is not None
        with anyio.fail_after(5):
            while not session.closed:  # noqa: ASYNC110 - no public event for this
                await anyio.sleep(0.01)
        with pytest.raises(ReconnectSignal):
            await ws.send_bytes(b"late")


# --------------------------------------------------------------------------- shared mode and states


async def test_states_seen_from_another_task_while_connecting_and_disconnecting() -> None:
    release_handshake = anyio.Event()
    release_close = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        await release_handshake.wait()
        key = peer.header("Sec-WebSocket-Key") or ""
        await peer.send_raw(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(key).encode()
            + b"\r\n\r\n"
        )
        code, _ = await peer.receive_close()
        await release_close.wait()
        await peer.send_close(code)
        await peer.close_tcp()

    async with scripted_server(script, handshake=False) as url, Websocket() as ws:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.connect, url + "/")
            with anyio.fail_after(5):
                while not ws.connecting:  # noqa: ASYNC110 - state only
                    await anyio.sleep(0.005)
            assert not ws.connected
            assert not ws.disconnected
            release_handshake.set()
        assert ws.connected
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.disconnect)
            with anyio.fail_after(5):
                while not ws.disconnecting:  # noqa: ASYNC110 - state only
                    await anyio.sleep(0.005)
            assert not ws.connected
            release_close.set()
        assert ws.disconnected


async def test_shared_mode_disconnect_releases_a_pending_receive(echo_url: str) -> None:
    outcome: list[BaseException] = []

    async def receiver(ws: Websocket, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await ws.receive()
        except Exception as exc:
            outcome.append(exc)

    async with Websocket() as ws:
        await ws.connect(echo_url)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                await tg.start(receiver, ws)
                await anyio.sleep(0.01)
                await ws.disconnect()
    assert [type(x) for x in outcome] == [DisconnectSignal]


@pytest.fixture
async def shared_manager(echo_url: str) -> AsyncIterator[Websocket]:
    async with Websocket() as ws:
        await ws.connect(echo_url)
        yield ws


async def test_manager_held_by_a_fixture(shared_manager: Websocket) -> None:
    await shared_manager.send_bytes(b"fixture")
    assert await shared_manager.receive() == WebsocketPacketBytes(b"fixture")


async def test_shared_mode_reconnects_and_every_receiver_learns_of_the_end(
    uvicorn_websockets_url: str,
) -> None:
    outcome: list[type[BaseException]] = []

    async def receiver(ws: Websocket, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await ws.receive()
        except Exception as exc:
            outcome.append(type(exc))

    async with Websocket() as ws:
        await ws.connect(f"{uvicorn_websockets_url}/recv_then_close?code=1001")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    await tg.start(receiver, ws)
                await ws.send_json({"bye": 1})
        assert outcome == [ReconnectSignal] * 3
        assert ws.disconnected
        await ws.connect(f"{uvicorn_websockets_url}/echo")
        await ws.send_json({"again": 1})
        assert await ws.receive() == WebsocketPacketJSON({"again": 1})
    assert ws.disconnected


async def test_timeout_around_connect_alone(echo_url: str) -> None:
    ws = Websocket()
    try:
        with anyio.fail_after(5):
            await ws.connect(echo_url)
        await ws.send_json({"a": 1})
        assert await ws.receive() == WebsocketPacketJSON({"a": 1})
    finally:
        await ws.disconnect()
