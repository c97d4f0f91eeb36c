"""Keepalive: pings at the interval, dead peers detected, slow consumers never taken for dead."""

from __future__ import annotations

import itertools
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

import streams
from streams import AsyncWebSocketSession, WebSocketNetworkError
from tests import servers
from tests.peers import OP_CLOSE, OP_PING, OP_PONG, ScriptedPeer, scripted_server

pytestmark = pytest.mark.anyio

INTERVAL = 0.05
TIMEOUT = 0.15

# Loading the CA bundle costs tens of milliseconds: once for the module, not once per client.
TLS_CONTEXT = ssl.create_default_context()


@asynccontextmanager
async def connect(url: str, **kwargs: Any) -> AsyncIterator[AsyncWebSocketSession]:
    """`streams.aconnect_ws` with fast keepalive and a short close timeout."""
    kwargs.setdefault("keepalive_ping_interval_seconds", INTERVAL)
    kwargs.setdefault("keepalive_ping_timeout_seconds", TIMEOUT)
    kwargs.setdefault("close_timeout", 1.0)
    async with (
        httpx.AsyncClient(verify=TLS_CONTEXT) as client,
        streams.aconnect_ws(url, client, **kwargs) as ws,
    ):
        yield ws


async def test_pings_are_sent_at_the_interval() -> None:
    arrivals: list[float] = []

    async def script(peer: ScriptedPeer) -> None:
        while len(arrivals) < 4:
            frame = await peer.receive_frame()
            assert frame.opcode == OP_PING
            arrivals.append(time.monotonic())
            await peer.send_frame(OP_PONG, frame.payload)
        await peer.send_text("seen four")
        await peer.answer_close()

    async with scripted_server(script) as url, connect(url + "/") as ws:
        assert await ws.receive_text(timeout=5) == "seen four"
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(INTERVAL * 0.8 <= gap < INTERVAL * 10 for gap in gaps), gaps


async def test_no_pings_when_keepalive_is_disabled() -> None:
    async def script(peer: ScriptedPeer) -> None:
        # Nothing at all comes before the client's message, though several intervals pass.
        message = await peer.receive_message()
        assert message == "after a while"
        frame = await peer.receive_frame()
        assert frame.opcode == OP_CLOSE
        await peer.send_close(1000)
        await peer.close_tcp()

    async with (
        scripted_server(script) as url,
        connect(url + "/", keepalive_ping_interval_seconds=None) as ws,
    ):
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=INTERVAL * 4)
        await ws.send_text("after a while")


async def test_ping_rtt_is_set_after_a_keepalive_pong() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.echo()  # answers pings

    async with scripted_server(script) as url, connect(url + "/") as ws:
        assert ws.statistics().ping_rtt is None
        await servers.wait_until(lambda: ws.statistics().ping_rtt is not None)
        rtt = ws.statistics().ping_rtt
        assert rtt is not None
        assert 0 <= rtt < 1


async def test_dead_peer_is_detected_and_closed_with_1011() -> None:
    close_frames: list[tuple[int, str]] = []

    async def script(peer: ScriptedPeer) -> None:
        # Reads, answers nothing, sends nothing: the TCP connection stays up.
        frames = await peer.wait_eof()
        assert all(f.opcode in (OP_PING, OP_CLOSE) for f in frames)
        close_frames.extend(f.close for f in frames if f.opcode == OP_CLOSE)

    async with scripted_server(script) as url, connect(url + "/") as ws:
        start = time.monotonic()
        with anyio.fail_after(5), pytest.raises(WebSocketNetworkError):
            await ws.receive()
        detected = time.monotonic() - start
        assert INTERVAL + TIMEOUT * 0.9 <= detected < 2
        assert ws.close_code == 1011
        with anyio.fail_after(1), pytest.raises(WebSocketNetworkError):  # and on every call
            async for _ in ws:
                pass
    assert close_frames == [(1011, "keepalive ping timeout")]


async def test_dead_peer_that_reads_nothing_is_detected() -> None:
    detected = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        await detected.wait()  # never reads, never writes, until the client gave up

    async with scripted_server(script) as url, connect(url + "/") as ws:
        with anyio.fail_after(5), pytest.raises(WebSocketNetworkError):
            await ws.receive()
        detected.set()
        assert ws.closed
        assert ws.close_code == 1011


async def test_dead_peer_is_detected_by_a_waiting_iteration() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text("one")
        await peer.wait_eof()

    received: list[str | bytes] = []
    async with scripted_server(script) as url, connect(url + "/") as ws:
        with anyio.fail_after(5), pytest.raises(WebSocketNetworkError):
            await collect(ws, received)
    assert received == ["one"]


async def collect(ws: AsyncWebSocketSession, into: list[str | bytes]) -> None:
    async for message in ws:
        into.append(message)


async def test_late_pongs_within_the_timeout_keep_the_session() -> None:
    async def script(peer: ScriptedPeer) -> None:
        for _ in range(4):
            frame = await peer.receive_frame()
            assert frame.opcode == OP_PING
            await anyio.sleep(TIMEOUT / 3)  # late, but in time
            await peer.send_frame(OP_PONG, frame.payload)
        await peer.send_text("alive")
        await peer.answer_close()

    async with scripted_server(script) as url, connect(url + "/") as ws:
        assert await ws.receive_text(timeout=5) == "alive"
        assert not ws.closed


async def test_a_peer_that_sends_data_but_no_pongs_is_alive() -> None:
    """Bytes arriving show the peer is alive, even if they are not pongs."""
    stop = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        count = 0
        while not stop.is_set():
            await peer.send_text(f"tick {count}")
            count += 1
            await anyio.sleep(TIMEOUT / 5)
        await peer.answer_close()

    async with scripted_server(script) as url, connect(url + "/") as ws:
        deadline = time.monotonic() + (INTERVAL + TIMEOUT) * 3
        count = 0
        while time.monotonic() < deadline:
            assert await ws.receive_text(timeout=5) == f"tick {count}"
            count += 1
        stop.set()
        assert not ws.closed


async def test_no_timeout_when_keepalive_timeout_is_none() -> None:
    async def script(peer: ScriptedPeer) -> None:
        for _ in range(3):  # unanswered pings
            assert (await peer.receive_frame()).opcode == OP_PING
        await peer.send_text("still open")
        await peer.answer_close()

    async with (
        scripted_server(script) as url,
        connect(url + "/", keepalive_ping_timeout_seconds=None) as ws,
    ):
        assert await ws.receive_text(timeout=5) == "still open"


@pytest.mark.parametrize("server", ["uvicorn_websockets_url", "websockets_url"])
async def test_slow_consumer_of_a_flooding_live_peer_is_not_declared_dead(
    request: pytest.FixtureRequest, server: str
) -> None:
    """The reader pauses for the consumer, so it cannot read the pongs: that is not death."""
    base = request.getfixturevalue(server)
    # 44 MiB: more than the kernel's buffers can take (loopback receive
    # buffers grow up to tcp_rmem's maximum, 32 MiB here), so the server blocks.
    count, size = 700, 65536
    conn_id = servers.new_id()
    record = servers.REGISTRY.record(conn_id)
    url = f"{base}/flood?n={count}&size={size}&kind=binary&id={conn_id}"
    async with connect(url, queue_size=4, compression=None, max_message_size_bytes=size) as ws:
        await servers.wait_until(lambda: ws.statistics().reader_paused)
        await servers.wait_until(lambda: record.blocked_for > TIMEOUT * 3)
        # Many keepalive periods pass while the consumer does not read.
        assert ws.statistics().reader_paused
        assert not ws.closed
        received = [message async for message in ws]
        assert ws.close_code == 1000
    assert len(received) == count
    assert received == [servers.flood_payload(i, size, "binary") for i in range(count)]


async def test_slow_consumer_of_a_scripted_flooder_is_not_declared_dead() -> None:
    count, size = 300, 65536
    sent: list[int] = []
    send_started: list[float] = []

    def blocked_for() -> float:
        return time.monotonic() - send_started[-1] if len(send_started) > len(sent) else 0.0

    async def script(peer: ScriptedPeer) -> None:
        for i in range(count):
            send_started.append(time.monotonic())
            await peer.send_bytes(i.to_bytes(8, "big") + b"\xff" * (size - 8))
            sent.append(i)
        # Whatever the client sent meanwhile (pings, then its close): answer the close.
        assert await peer.receive_close() == (1000, "")
        await peer.send_close(1000)
        await peer.close_tcp()

    # This peer never answers pings (it does not read while it floods): once the
    # consumer reads again, only arriving bytes show it is alive, and on a loaded
    # machine TCP can take longer than 0.15 s to resume after a zero window.
    timeout = 0.4
    async with (
        scripted_server(script) as url,
        connect(
            url + "/",
            queue_size=2,
            compression=None,
            max_message_size_bytes=size,
            keepalive_ping_timeout_seconds=timeout,
        ) as ws,
    ):
        await servers.wait_until(lambda: ws.statistics().reader_paused)
        # The consumer is slow: the peer stays blocked for several keepalive timeouts.
        await servers.wait_until(lambda: blocked_for() > timeout * 4)
        assert len(sent) < count
        assert ws.statistics().reader_paused
        assert not ws.closed
        received = [await ws.receive_bytes(timeout=5) for _ in range(count)]
    assert received == [servers.flood_payload(i, size, "binary") for i in range(count)]
