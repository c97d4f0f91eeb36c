"""A feed that stays connected but goes quiet: stale_after."""

from __future__ import annotations

import anyio
import pytest

import streams
from tests.peers import OP_PING, OP_TEXT, ScriptedPeer, build_frame, scripted_server

pytestmark = pytest.mark.anyio


async def read_all(ws: streams.AsyncWebSocketSession, into: list[str | bytes]) -> None:
    async for message in ws:
        into.append(message)


async def test_a_quiet_feed_fails_with_a_stale_error_though_it_pings() -> None:
    closes: list[tuple[int, str]] = []

    async def script(peer: ScriptedPeer) -> None:
        await peer.send_raw(build_frame(OP_TEXT, b"one"))
        # Alive but silent: only pings, which are not data.
        with anyio.move_on_after(5):
            while not closes:
                await peer.send_raw(build_frame(OP_PING, b"hi"))
                with anyio.move_on_after(0.05):
                    closes.append(await peer.receive_close(timeout=5))
        await peer.close_tcp()

    received: list[str | bytes] = []
    with anyio.fail_after(10):
        async with scripted_server(script) as url:
            with pytest.raises(streams.WebSocketStaleError) as info:
                async with streams.aconnect_ws(url + "/", stale_after=0.3) as ws:
                    await read_all(ws, received)
    assert received == ["one"]
    assert info.value.stale_after == 0.3
    assert isinstance(info.value, streams.WebSocketNetworkError)
    assert closes == [(1011, "stale: no data message for 0.3 s")]


async def test_a_slow_consumer_is_never_stale() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_raw(b"".join(build_frame(OP_TEXT, f"m{i}".encode()) for i in range(20)))
        await peer.receive_close(timeout=10)
        await peer.close_tcp()

    with anyio.fail_after(10):
        async with (
            scripted_server(script) as url,
            streams.aconnect_ws(url + "/", queue_size=20, stale_after=0.5) as ws,
        ):
            # Messages wait in the queue far longer than stale_after: not stale.
            await anyio.sleep(1.5)
            assert [await ws.receive_text() for _ in range(20)] == [f"m{i}" for i in range(20)]
            assert not ws.closed


async def test_stale_after_is_checked() -> None:
    with pytest.raises(ValueError, match="stale_after"):
        async with streams.aconnect_ws("ws://127.0.0.1:9/", stale_after=0):
            pass
