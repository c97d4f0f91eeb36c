"""Fan-in over many sessions: ``streams.merge`` over 1,000 sessions loses nothing."""

from __future__ import annotations

import resource
from contextlib import AsyncExitStack

import httpx
import pytest

import streams
from tests.peers import OP_CLOSE, OP_TEXT, ScriptedPeer, build_frame, close_payload, scripted_server

pytestmark = pytest.mark.anyio

SESSIONS = 1_000
MESSAGES = 100


def open_files_for(sessions: int) -> None:
    """Raise the soft open-files limit for ``sessions`` client and server sockets, or skip."""
    needed = 2 * sessions + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the open-files hard limit ({hard}) is below {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def feed(peer: ScriptedPeer) -> None:
    """Send MESSAGES numbered text messages at once (one write), then close (1000)."""
    frames = b"".join(build_frame(OP_TEXT, f"{i}".encode()) for i in range(MESSAGES))
    await peer.send_raw(frames + build_frame(OP_CLOSE, close_payload(1000)))
    assert await peer.receive_close(timeout=20) == (1000, "")
    await peer.close_tcp()  # the server closes TCP first (RFC 6455 7.1.1)


async def test_merge_over_1000_sessions_loses_nothing() -> None:
    open_files_for(SESSIONS)
    limits = httpx.Limits(max_connections=None)
    transport = streams.AsyncHTTPTransport(limits=limits)
    async with (
        scripted_server(feed, finish_timeout=20) as url,
        httpx.AsyncClient(transport=transport) as client,
        AsyncExitStack() as stack,
    ):
        sessions = [
            await stack.enter_async_context(streams.aconnect_ws(url + "/feed", client))
            for _ in range(SESSIONS)
        ]
        received: dict[int, list[str]] = {i: [] for i in range(SESSIONS)}
        async with streams.merge(*(ws.text() for ws in sessions)) as merged:
            async for index, message in merged:
                received[index].append(message)
    expected = [str(i) for i in range(MESSAGES)]
    assert all(messages == expected for messages in received.values()), {
        i: len(m) for i, m in received.items() if m != expected
    }
