"""`Websocket`'s life cycle: its public state and `connect()` agree, and bare mode (no `async with`)
is safe under any exception, timeout or cancellation around `connect()`, `receive()` and
`disconnect()`. Real scripted servers on 127.0.0.1; every test runs on asyncio and trio.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from streams import DisconnectSignal, Websocket, WebsocketPacketJSON, WebsocketState
from tests.peers import ScriptedPeer, scripted_server
from tests.test_websocket_manager import answer_handshake

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def manager(mode: str) -> AsyncIterator[Websocket]:
    """A manager in ``mode`` ("bare" or "shared"), disconnected at the end."""
    if mode == "shared":
        async with Websocket() as ws:
            yield ws
        return
    ws = Websocket()
    try:
        yield ws
    finally:
        await ws.disconnect()


class Echo:
    """A server script: echo until the client closes; record the client's close codes."""

    def __init__(self) -> None:
        self.closes: list[int] = []

    async def __call__(self, peer: ScriptedPeer) -> None:
        try:
            code, _ = await peer.echo(timeout=10)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return  # the client dropped the connection without closing
        self.closes.append(code)


async def round_trip(ws: Websocket, value: int) -> None:
    await ws.send_json({"n": value})
    with anyio.fail_after(5):
        assert await ws.receive() == WebsocketPacketJSON({"n": value})


# --------------------------------------------------------------------------- state and connect()


@pytest.mark.parametrize("mode", ["bare", "shared"])
async def test_connect_works_once_the_state_says_the_server_closed(mode: str) -> None:
    echo = Echo()
    connections = itertools.count()

    async def script(peer: ScriptedPeer) -> None:
        if next(connections) == 0:
            await peer.close_handshake(1001, "restart")
        else:
            await echo(peer)

    async with scripted_server(script) as url, manager(mode) as ws:
        await ws.connect(url)
        session = ws.session
        assert session is not None
        with anyio.fail_after(5):
            await session.wait_closed()
        assert ws.disconnected
        assert ws.state is WebsocketState.DISCONNECTED
        await ws.connect(url)  # raised "cannot connect: the websocket is CONNECTED"
        assert ws.connected
        await round_trip(ws, 1)
        await ws.disconnect()
    assert echo.closes == [1000]


@pytest.mark.parametrize("mode", ["bare", "shared"])
async def test_connect_while_connected_is_refused_and_says_so(mode: str) -> None:
    echo = Echo()
    async with scripted_server(echo) as url, manager(mode) as ws:
        await ws.connect(url)
        with pytest.raises(RuntimeError, match="CONNECTED"):
            await ws.connect(url)
        assert ws.state is WebsocketState.CONNECTED
        await round_trip(ws, 1)
    assert echo.closes == [1000]


# --------------------------------------------------------------------------- bare mode


async def test_bare_exception_between_connect_and_disconnect() -> None:
    echo = Echo()
    async with scripted_server(echo) as url:
        ws = Websocket()

        async def use() -> None:
            await ws.connect(url)
            raise KeyError("the application failed")

        # The exception leaves a task group (the caller's scopes) while connected.
        with pytest.raises(ExceptionGroup) as info:
            async with anyio.create_task_group() as tg:
                tg.start_soon(use)
        assert info.group_contains(KeyError)
        assert ws.connected
        await round_trip(ws, 1)  # from another task: the session is not the caller's
        await ws.disconnect()
        assert ws.disconnected
    assert echo.closes == [1000]


async def test_bare_timeout_around_connect_alone_then_disconnect_elsewhere() -> None:
    echo = Echo()
    async with scripted_server(echo) as url:
        ws = Websocket()
        with anyio.fail_after(5):
            await ws.connect(url)
        await round_trip(ws, 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.disconnect)
        assert ws.disconnected
    assert echo.closes == [1000]


async def test_bare_timeout_around_receive_keeps_the_connection() -> None:
    echo = Echo()
    async with scripted_server(echo) as url:
        ws = Websocket()
        try:
            await ws.connect(url)
            with pytest.raises(TimeoutError):
                with anyio.fail_after(0.05):
                    await ws.receive()
            assert ws.connected
            await round_trip(ws, 2)
        finally:
            await ws.disconnect()
    assert echo.closes == [1000]


async def test_bare_connect_cancelled_during_the_handshake() -> None:
    echo = Echo()
    connections = itertools.count()
    caller = anyio.CancelScope()

    async def script(peer: ScriptedPeer) -> None:
        if next(connections) == 0:
            caller.cancel()  # the request arrived: cancel connect() mid-handshake
            await peer.wait_eof(timeout=5)
            return
        await answer_handshake(peer)
        await echo(peer)

    async with scripted_server(script, handshake=False) as url:
        ws = Websocket()
        try:
            with caller:
                await ws.connect(url)
            assert caller.cancelled_caught
            assert ws.disconnected
            await ws.connect(url)
            await round_trip(ws, 3)
        finally:
            await ws.disconnect()
    assert echo.closes == [1000]


async def test_bare_disconnect_during_connect_from_another_task() -> None:
    requested = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        requested.set()
        await peer.wait_eof(timeout=5)

    async with scripted_server(script, handshake=False) as url:
        ws = Websocket()
        outcome: list[type[BaseException]] = []

        async def connect() -> None:
            try:
                await ws.connect(url)
            except DisconnectSignal as exc:
                outcome.append(type(exc))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(connect)
                await requested.wait()
                await ws.disconnect()
        assert outcome == [DisconnectSignal]
        assert ws.disconnected


async def test_bare_cancelled_disconnect_drops_the_connection_and_allows_another() -> None:
    echo = Echo()
    async with scripted_server(echo) as url:
        ws = Websocket()
        try:
            await ws.connect(url)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await ws.disconnect()
            assert ws.disconnected
            with pytest.raises(DisconnectSignal):
                await ws.receive()
            await ws.connect(url)
            await round_trip(ws, 4)
        finally:
            await ws.disconnect()
    assert echo.closes[-1:] == [1000]


async def test_bare_cancelled_receive_in_a_scope_opened_after_connect() -> None:
    echo = Echo()
    async with scripted_server(echo) as url:
        ws = Websocket()
        try:
            with anyio.CancelScope() as scope:
                await ws.connect(url)
                scope.cancel()
                await ws.receive()
            assert scope.cancelled_caught
            assert ws.connected
            await round_trip(ws, 5)
        finally:
            await ws.disconnect()
    assert echo.closes == [1000]
