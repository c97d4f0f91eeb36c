"""Sessions through one shared client are not capped by its connection pool."""

from __future__ import annotations

import contextlib
import gc
import weakref

import anyio
import httpx
import pytest

import streams
from streams._pool import leave_pool, leave_pool_sync

pytestmark = pytest.mark.anyio

UPGRADE = {
    "connection": "upgrade",
    "upgrade": "websocket",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def test_an_upgraded_connection_leaves_the_pool_on_the_installed_httpx(
    echo_url: str,
) -> None:
    """Fails loudly when httpx or httpcore changed shape and sessions hold pool slots again."""
    async with httpx.AsyncClient(transport=streams.AsyncHTTPTransport()) as client:
        url = echo_url.replace("ws://", "http://")
        async with client.stream("GET", url, headers=UPGRADE) as response:
            assert response.status_code == 101
            assert client._transport._pool.connections  # type: ignore[attr-defined]
            connection = weakref.ref(client._transport._pool.connections[0])  # type: ignore[attr-defined]
            assert await leave_pool(response)
            assert not client._transport._pool.connections  # type: ignore[attr-defined]
            # httpcore's connection objects are not kept alive by the response.
            gc.collect()
            assert connection() is None
            # The 101 response has no body to read.
            assert await response.aread() == b""
            stream = response.extensions["network_stream"]
            await stream.aclose()


@pytest.mark.parametrize("own_transport", [False, True], ids=["httpx", "library"])
async def test_more_sessions_than_max_connections_open_through_one_client(
    echo_url: str, own_transport: bool
) -> None:
    limits = httpx.Limits(max_connections=5)
    transport = streams.AsyncHTTPTransport(limits=limits) if own_transport else None
    count = 40
    opened = 0
    all_open = anyio.Event()
    release = anyio.Event()
    async with httpx.AsyncClient(
        limits=limits, transport=transport, timeout=httpx.Timeout(5, pool=2)
    ) as client:

        async def session(i: int) -> None:
            nonlocal opened
            async with streams.aconnect_ws(echo_url, client) as ws:
                opened += 1
                if opened == count:
                    all_open.set()
                await release.wait()
                await ws.send_text(f"{i}")
                assert await ws.receive_text() == f"{i}"

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for i in range(count):
                    group.start_soon(session, i)
                await all_open.wait()
                release.set()


def test_an_upgraded_connection_leaves_the_sync_pool_on_the_installed_httpx(
    echo_url: str,
) -> None:
    """Fails loudly when httpx or httpcore changed shape and sync sessions hold pool slots again."""
    with httpx.Client() as client:
        url = echo_url.replace("ws://", "http://")
        with client.stream("GET", url, headers=UPGRADE) as response:
            assert response.status_code == 101
            pool = client._transport._pool  # type: ignore[attr-defined]
            connection = weakref.ref(pool.connections[0])
            assert leave_pool_sync(response)
            assert not pool.connections
            gc.collect()
            assert connection() is None
            response.extensions["network_stream"].close()


def test_more_sync_sessions_than_max_connections_open_through_one_client(echo_url: str) -> None:
    count = 12
    limits = httpx.Limits(max_connections=3)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(limits=limits, timeout=httpx.Timeout(5, pool=2)))
        sessions = [stack.enter_context(streams.connect_ws(echo_url, client)) for _ in range(count)]
        for i, ws in enumerate(sessions):
            ws.send_text(f"{i}")
        assert [ws.receive_text(timeout=5) for ws in sessions] == [f"{i}" for i in range(count)]
        # A plain request through the same client still gets a connection.
        assert client.get(echo_url.replace("ws://", "http://")).status_code in (400, 404, 405, 426)
