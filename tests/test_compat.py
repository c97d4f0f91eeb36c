"""Migrating from httpx-ws: the same program, with only its import changed, behaves the same.

Each program is kept as source text written for httpx-ws. It is run as written (httpx-ws, the
reference) and with ``httpx_ws`` replaced by ``streams`` in its one import line, against the same
real server; both must give the expected results.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import httpx_ws
import httpx_ws.transport
import pytest

import streams
import streams.transport
from tests import servers

SYNC_PROGRAM = """
import queue

import httpx
from httpx_ws import JSONMode, WebSocketClient, WebSocketDisconnect, connect_ws


def run(base):
    results = []
    with connect_ws(base + "/echo") as ws:
        ws.send_text("hello")
        results.append(ws.receive_text())
        ws.send_json({"a": [1, 2.5]})
        results.append(ws.receive_json())
        mode: JSONMode = "binary"
        ws.send_json({"b": None}, mode=mode)
        results.append(ws.receive_json(mode=mode))
        ws.send_bytes(b"\\x00\\x01")
        results.append(ws.receive_bytes())
        pong = ws.ping()
        results.append(pong.wait(5))
        try:
            ws.receive_text(timeout=0.1)
        except queue.Empty:
            results.append("no message")
        results.append((ws.subprotocol, ws.response.status_code))
    with httpx.Client(headers={"X-App": "demo"}) as client:
        ws_client = WebSocketClient(client, queue_size=16)
        with ws_client.connect(base + "/headers") as ws:
            results.append(ws.receive_json()["x-app"])
        with connect_ws(base + "/subprotocols", client, subprotocols=["chat.v1"]) as ws:
            results.append((ws.subprotocol, ws.receive_text()))
        with connect_ws(base + "/recv_then_close?code=4000", client) as ws:
            ws.send_text("bye")
            try:
                ws.receive_text()
            except WebSocketDisconnect as exc:
                results.append((exc.code, exc.reason))
    return results
"""

ASYNC_PROGRAM = """
import httpx
from httpx_ws import AsyncWebSocketClient, JSONMode, WebSocketDisconnect, aconnect_ws


async def run(base):
    results = []
    async with aconnect_ws(base + "/echo") as ws:
        await ws.send_text("hello")
        results.append(await ws.receive_text())
        await ws.send_json({"a": [1, 2.5]})
        results.append(await ws.receive_json())
        mode: JSONMode = "binary"
        await ws.send_json({"b": None}, mode=mode)
        results.append(await ws.receive_json(mode=mode))
        await ws.send_bytes(b"\\x00\\x01")
        results.append(await ws.receive_bytes())
        pong = await ws.ping()
        await pong.wait()
        results.append(pong.is_set())
        try:
            await ws.receive_text(timeout=0.1)
        except TimeoutError:
            results.append("no message")
        results.append((ws.subprotocol, ws.response.status_code))
    async with httpx.AsyncClient(headers={"X-App": "demo"}) as client:
        ws_client = AsyncWebSocketClient(client, queue_size=16)
        async with ws_client.connect(base + "/headers") as ws:
            results.append((await ws.receive_json())["x-app"])
        async with aconnect_ws(base + "/subprotocols", client, subprotocols=["chat.v1"]) as ws:
            results.append((ws.subprotocol, await ws.receive_text()))
        async with aconnect_ws(base + "/recv_then_close?code=4000", client) as ws:
            await ws.send_text("bye")
            try:
                await ws.receive_text()
            except WebSocketDisconnect as exc:
                results.append((exc.code, exc.reason))
    return results
"""

EXPECTED = [
    "hello",
    {"a": [1, 2.5]},
    {"b": None},
    b"\x00\x01",
    True,
    "no message",
    (None, 101),
    "demo",
    ("chat.v1", "chat.v1"),
    (4000, "bye"),
]


def load(source: str, package: str) -> Callable[..., Any]:
    """Execute a program with its ``httpx_ws`` import pointed at ``package``; return ``run``."""
    assert source.count("httpx_ws") == 1, "only the import line may name the package"
    namespace: dict[str, Any] = {"__name__": f"program_on_{package}"}
    code = compile(source.replace("httpx_ws", package), f"<program on {package}>", "exec")
    exec(code, namespace)
    run: Callable[..., Any] = namespace["run"]
    return run


def http_base(ws_url: str) -> str:
    """httpx-ws only takes http:// URLs."""
    return ws_url.replace("ws://", "http://", 1)


# --------------------------------------------------------------------------- the programs


@pytest.mark.parametrize("package", ["httpx_ws", "streams"])
def test_sync_program_runs_unchanged(server_url: str, package: str) -> None:
    run = load(SYNC_PROGRAM, package)
    assert run(http_base(server_url)) == EXPECTED


@pytest.mark.anyio
@pytest.mark.parametrize("package", ["httpx_ws", "streams"])
async def test_async_program_runs_unchanged(server_url: str, package: str) -> None:
    run = load(ASYNC_PROGRAM, package)
    assert await run(http_base(server_url)) == EXPECTED


def test_ws_urls_work_after_migration(echo_url: str) -> None:
    # httpx-ws needs http:// URLs; streams takes ws:// as well.
    with streams.connect_ws(echo_url) as ws:  # type: ignore[attr-defined]
        ws.send_text("ws://")
        assert ws.receive_text(timeout=5) == "ws://"


def test_the_same_flood_program_ends_where_httpx_ws_would_hang(
    uvicorn_websockets_url: str,
) -> None:
    # Leaving the block while the server floods and nobody reads: httpx-ws
    # blocks for ever in its close; streams closes within the close timeout.
    url = f"{uvicorn_websockets_url}/flood?n=5000&size=100&id={servers.new_id()}"
    with streams.connect_ws(url, queue_size=4, close_timeout=5) as ws:  # type: ignore[attr-defined]
        assert ws.receive_text(timeout=5) == servers.flood_payload(0, 100)
    assert ws.close_code == 1000


# --------------------------------------------------------------------------- the names


def test_every_public_name_of_httpx_ws_exists_in_streams() -> None:
    missing = [name for name in httpx_ws.__all__ if not hasattr(streams, name)]
    assert missing == []


def test_every_public_name_of_the_transport_module_exists() -> None:
    names = [
        name
        for name, value in vars(httpx_ws.transport).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == "httpx_ws.transport"
    ]
    assert names  # the comparison below means something
    assert [name for name in names if not hasattr(streams.transport, name)] == []


def _parameters(func: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(func).parameters)


@pytest.mark.parametrize(
    "name", ["connect_ws", "aconnect_ws", "WebSocketClient", "AsyncWebSocketClient"]
)
def test_entry_points_accept_every_httpx_ws_parameter(name: str) -> None:
    theirs = _parameters(getattr(httpx_ws, name))
    ours = _parameters(getattr(streams, name))
    for parameter in theirs.values():
        assert parameter.name in ours, f"{name}() lacks {parameter.name}"
        assert ours[parameter.name].kind == parameter.kind, f"{name}({parameter.name}) kind"


@pytest.mark.parametrize("name", ["WebSocketSession", "AsyncWebSocketSession"])
def test_session_methods_accept_every_httpx_ws_parameter(name: str) -> None:
    theirs_class, ours_class = getattr(httpx_ws, name), getattr(streams, name)
    methods = [
        method
        for method, value in vars(theirs_class).items()
        if not method.startswith("_") and callable(value)
    ]
    assert "receive_json" in methods
    for method in methods:
        assert hasattr(ours_class, method), f"{name}.{method} is missing"
        theirs = _parameters(getattr(theirs_class, method))
        ours = _parameters(getattr(ours_class, method))
        for parameter in theirs.values():
            assert parameter.name in ours, f"{name}.{method}() lacks {parameter.name}"
            assert ours[parameter.name].default == parameter.default, (
                f"{name}.{method}({parameter.name}) default"
            )
