"""The limits on what one message may hold, end to end: size and number of frames (close 1009).

Each error names what went over which limit, both in the exception the caller sees and in the
reason of the Close frame the server gets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import streams
from streams import AsyncWebSocketSession, WebSocketDisconnect
from streams.protocol._limits import DEFAULT_MAX_FRAGMENTS
from tests.peers import OP_BINARY, OP_CONT, ScriptedPeer, build_frame, scripted_server

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def connect(url: str, **kwargs: Any) -> AsyncIterator[AsyncWebSocketSession]:
    async with (
        httpx.AsyncClient() as client,
        streams.aconnect_ws(url, client, close_timeout=2.0, **kwargs) as ws,
    ):
        yield ws


async def test_flood_of_empty_fragments_closes_with_too_many_fragments() -> None:
    """One message of empty continuation frames fails at the first frame past the count."""
    frames = [build_frame(OP_BINARY, b"", fin=False)]
    frames += [build_frame(OP_CONT, b"", fin=False)] * DEFAULT_MAX_FRAGMENTS
    reasons: list[str] = []

    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text("before")
        await peer.send_raw(b"".join(frames))
        code, reason = await peer.receive_close()
        assert code == 1009
        reasons.append(reason)
        await peer.wait_eof()

    expected = (
        "too many fragments: 4097 frames for 0 bytes, over max_fragments=4096 plus one per 64 bytes"
    )
    async with scripted_server(script) as url, connect(url + "/", compression=None) as ws:
        assert await ws.receive_text() == "before"
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive()
        assert (info.value.code, info.value.reason) == (1009, expected)
    assert reasons == [expected]


async def test_message_over_the_limit_names_its_size_and_the_limit() -> None:
    reasons: list[str] = []

    async def script(peer: ScriptedPeer) -> None:
        await peer.send_bytes(bytes(1001))
        code, reason = await peer.receive_close()
        assert code == 1009
        reasons.append(reason)
        await peer.wait_eof()

    expected = "message of 1001 bytes exceeds max_message_size_bytes=1000"
    async with (
        scripted_server(script) as url,
        connect(url + "/", compression=None, max_message_size_bytes=1000) as ws,
    ):
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive()
        assert (info.value.code, info.value.reason) == (1009, expected)
        assert str(info.value) == f"WebSocket closed with code 1009: {expected}"
    assert reasons == [expected]


async def test_compressed_message_over_the_limit_names_the_limit(hypercorn_url: str) -> None:
    """After permessage-deflate too, not wsproto's "error in extension"."""
    async with connect(hypercorn_url + "/flood?n=1&size=100000") as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers.get("sec-websocket-extensions", "")
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive()
    assert info.value.code == 1009
    assert info.value.reason == (
        "message of more than 65536 bytes exceeds max_message_size_bytes=65536"
    )
