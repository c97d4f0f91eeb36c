"""Backpressure: a consumer that does not read slows the server down, and memory stays bounded.

The session stops reading the network once ``queue_size`` messages wait for the consumer; TCP
then fills up and the peer's sends block. Nothing is lost: once the consumer reads, every
message arrives, in order. The same holds the other way: a peer that does not read makes the
client's sends wait instead of buffering without end.
"""

from __future__ import annotations

import socket
import ssl
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute

import streams
from streams import AsyncWebSocketSession, WebSocketDisconnect
from tests import servers
from tests.peers import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    ScriptedPeer,
    build_frame,
    close_payload,
    scripted_server,
)

pytestmark = pytest.mark.anyio

KIB = 1024
MIB = 1024 * KIB
SIZE = 64 * KIB
QUEUE_SIZE = 8
BLOCKED = 0.2
"""How long the peer's send must have been stuck to count as blocked by backpressure."""

# Loading the CA bundle costs tens of milliseconds: once for the module, not once per client.
TLS_CONTEXT = ssl.create_default_context()


@asynccontextmanager
async def connect(url: str, **kwargs: Any) -> AsyncIterator[AsyncWebSocketSession]:
    """`streams.aconnect_ws` with a small queue, no compression (sizes matter here)."""
    kwargs.setdefault("queue_size", QUEUE_SIZE)
    kwargs.setdefault("compression", None)
    kwargs.setdefault("max_message_size_bytes", SIZE)
    kwargs.setdefault("close_timeout", 2.0)
    async with (
        httpx.AsyncClient(verify=TLS_CONTEXT) as client,
        streams.aconnect_ws(url, client, **kwargs) as ws,
    ):
        yield ws


@contextmanager
def traced_memory() -> Iterator[Callable[[], int]]:
    """Trace allocations; yield a function returning the peak growth so far, in bytes.

    Client and servers run in this process: the growth covers both.
    """
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        yield lambda: tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()


async def check_all(ws: AsyncWebSocketSession, expected: Callable[[int], bytes]) -> int:
    """Read to the end, checking each message against ``expected(i)``; return the count.

    Messages are not kept, so that reading does not itself grow memory.
    """
    count = 0
    async for message in ws:
        assert message == expected(count), f"message {count} differs"
        count += 1
    return count


def flood_payload(i: int) -> bytes:
    data = servers.flood_payload(i, SIZE, "binary")
    assert isinstance(data, bytes)
    return data


class Flooder:
    """A scripted peer that writes ``count`` binary messages as fast as TCP lets it."""

    def __init__(self, count: int, size: int = SIZE) -> None:
        self.count = count
        self.size = size
        self.sent = 0
        self.send_started: float | None = None
        self.send_seconds_max = 0.0

    @property
    def blocked_for(self) -> float:
        started = self.send_started
        return 0.0 if started is None else time.monotonic() - started

    def payload(self, i: int) -> bytes:
        data = servers.flood_payload(i, self.size, "binary")
        assert isinstance(data, bytes)
        return data

    async def __call__(self, peer: ScriptedPeer) -> None:
        for i in range(self.count):
            self.send_started = start = time.monotonic()
            await peer.send_bytes(self.payload(i))
            self.send_started = None
            self.send_seconds_max = max(self.send_seconds_max, time.monotonic() - start)
            self.sent += 1
        assert await peer.answer_close() == (1000, "")


# --------------------------------------------------------------------------- a consumer that waits


async def test_flooding_server_is_slowed_down_and_memory_stays_bounded(server_url: str) -> None:
    count = 700  # 44 MiB: more than the kernel's buffers take (tcp_rmem grows up to 32 MiB)
    conn_id = servers.new_id()
    record = servers.REGISTRY.record(conn_id)
    url = f"{server_url}/flood?n={count}&size={SIZE}&kind=binary&id={conn_id}"
    with traced_memory() as growth:
        async with connect(url) as ws:
            await servers.wait_until(lambda: ws.statistics().reader_paused)
            await servers.wait_until(lambda: record.blocked_for > BLOCKED)
            stats = ws.statistics()
            assert stats.reader_paused
            assert stats.messages_queued <= QUEUE_SIZE
            assert record.sent < count
            # Far below the 19 MiB sent: the rest waits in the server (blocked) and TCP.
            assert growth() < 6 * MIB, f"peak growth {growth() / MIB:.1f} MiB"
            assert await check_all(ws, flood_payload) == count
            assert ws.close_code == 1000
        # Reading does not accumulate either.
        assert growth() < 6 * MIB, f"peak growth {growth() / MIB:.1f} MiB"
    await record.wait_finished()
    assert record.sent == count
    assert record.send_seconds_max > BLOCKED  # the server's send waited for the consumer


async def test_scripted_flooder_is_blocked_while_the_consumer_waits() -> None:
    flooder = Flooder(count=400)  # 25 MiB
    with traced_memory() as growth:
        async with scripted_server(flooder) as url, connect(url + "/") as ws:
            await servers.wait_until(lambda: flooder.blocked_for > BLOCKED)
            stats = ws.statistics()
            assert stats.reader_paused
            assert stats.messages_queued == QUEUE_SIZE
            assert flooder.sent < flooder.count
            assert flooder.sent * SIZE < 16 * MIB  # only what TCP buffers hold
            assert growth() < 6 * MIB, f"peak growth {growth() / MIB:.1f} MiB"
            for i in range(flooder.count):
                assert await ws.receive_bytes(timeout=5) == flooder.payload(i)
        assert growth() < 6 * MIB, f"peak growth {growth() / MIB:.1f} MiB"
    assert flooder.send_seconds_max > BLOCKED


@pytest.mark.parametrize("queue_size", [1, 3])
async def test_queue_never_holds_more_than_queue_size(queue_size: int) -> None:
    flooder = Flooder(count=200, size=4 * KIB)  # small frames: many per read

    async with scripted_server(flooder) as url, connect(url + "/", queue_size=queue_size) as ws:
        received: list[bytes] = []
        while len(received) < flooder.count:
            await servers.wait_until(
                lambda: ws.statistics().reader_paused or flooder.sent == flooder.count
            )
            assert ws.statistics().messages_queued <= queue_size
            received.append(await ws.receive_bytes(timeout=5))
    assert received == [flooder.payload(i) for i in range(flooder.count)]


async def test_slow_consumer_receives_everything_in_order() -> None:
    """A consumer slower than the peer, reading in bursts: nothing lost, nothing reordered."""
    flooder = Flooder(count=150, size=16 * KIB)
    async with scripted_server(flooder) as url, connect(url + "/", queue_size=4) as ws:
        received: list[str | bytes] = []
        while len(received) < flooder.count:
            await servers.wait_until(
                lambda: ws.statistics().reader_paused or flooder.sent == flooder.count
            )
            received.extend(await ws._receive_batch())
    assert received == [flooder.payload(i) for i in range(flooder.count)]


async def test_close_with_a_full_queue_does_not_wait_for_the_consumer() -> None:
    flooder = Flooder(count=200)
    async with scripted_server(flooder) as url, connect(url + "/", close_timeout=5) as ws:
        await servers.wait_until(lambda: flooder.blocked_for > BLOCKED)
        start = time.monotonic()
        await ws.close()
        assert time.monotonic() - start < 2  # not close_timeout: the peer answered
        assert ws.close_code == 1000
        stats = ws.statistics()
        assert stats.messages_dropped > 0
        assert stats.messages_received == flooder.count
        # What was queued before the close is still there for the consumer.
        received = [message async for message in ws]
    assert received == [flooder.payload(i) for i in range(len(received))]
    assert len(received) >= QUEUE_SIZE


async def test_leaving_the_block_with_a_full_queue_closes_the_real_server(
    server_url: str, server_name: str
) -> None:
    conn_id = servers.new_id()
    record = servers.REGISTRY.record(conn_id)
    url = f"{server_url}/flood?n=700&size={SIZE}&kind=binary&id={conn_id}"
    start = time.monotonic()
    async with connect(url) as ws:
        await servers.wait_until(lambda: record.blocked_for > BLOCKED)
        assert await ws.receive_bytes() == servers.flood_payload(0, SIZE, "binary")
    assert time.monotonic() - start < 5
    assert ws.closed
    await record.wait_finished()
    assert record.error is None


# --------------------------------------------------------------------------- a peer not reading


async def test_sends_wait_when_the_peer_does_not_read() -> None:
    """The client's sends wait for TCP instead of buffering without end."""
    reading = anyio.Event()
    total = 200  # 12.5 MiB if nothing waited
    frames: list[int] = []

    async def script(peer: ScriptedPeer) -> None:
        await reading.wait()
        while len(frames) < total:
            frame = await peer.receive_frame(timeout=10)
            if frame.opcode == OP_BINARY:
                frames.append(int.from_bytes(frame.payload[:8], "big"))
        assert await peer.answer_close() == (1000, "")

    sent = 0
    send_started: float | None = None

    async def send_all(ws: AsyncWebSocketSession) -> None:
        nonlocal sent, send_started
        for i in range(total):
            send_started = time.monotonic()
            await ws.send_bytes(flood_payload(i))
            send_started = None
            sent += 1

    def sender_blocked_for() -> float:
        return 0.0 if send_started is None else time.monotonic() - send_started

    with traced_memory() as growth:
        async with (
            scripted_server(script) as url,
            connect(url + "/", keepalive_ping_interval_seconds=None) as ws,
            anyio.create_task_group() as group,
        ):
            group.start_soon(send_all, ws)
            await servers.wait_until(lambda: sender_blocked_for() > BLOCKED)
            assert sent < total
            assert sent * SIZE < 8 * MIB  # TCP buffers and the write queue
            assert growth() < 6 * MIB, f"peak growth {growth() / MIB:.1f} MiB"
            reading.set()
    assert frames == list(range(total))


async def test_close_returns_when_the_peer_reads_nothing() -> None:
    """Writes stuck on a full TCP buffer: close() still returns after close_timeout."""
    close_timeout = 0.3
    done = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        await done.wait()  # never reads

    async with scripted_server(script) as url:
        async with connect(url + "/", close_timeout=close_timeout) as ws:
            async with anyio.create_task_group() as group:
                send_started: list[float] = []
                sent: list[int] = []

                async def stuff() -> None:
                    try:
                        while True:
                            send_started.append(time.monotonic())
                            await ws.send_bytes(b"x" * SIZE)
                            sent.append(1)
                    except (WebSocketDisconnect, streams.WebSocketNetworkError):
                        pass

                def blocked_for() -> float:
                    if len(send_started) == len(sent):
                        return 0.0
                    return time.monotonic() - send_started[-1]

                group.start_soon(stuff)
                await servers.wait_until(lambda: blocked_for() > BLOCKED)
                start = time.monotonic()
                with anyio.fail_after(5):
                    await ws.close()
                elapsed = time.monotonic() - start
            assert ws.closed
        done.set()
    assert elapsed < close_timeout + 1


# Frames built once, reused by the flood of small messages below.
SMALL = b"".join(build_frame(OP_TEXT, f"{i:06d}".encode()) for i in range(5000))


async def test_many_small_messages_in_one_read_respect_the_queue() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_raw(SMALL)  # 5000 messages, one or two reads' worth
        assert await peer.receive_message() == "all read"
        assert await peer.close_handshake(1000) == (1000, "")

    async with scripted_server(script) as url, connect(url + "/", queue_size=16) as ws:
        await servers.wait_until(lambda: ws.statistics().reader_paused)
        assert ws.statistics().messages_queued == 16
        received = [await ws.receive_text(timeout=5) for _ in range(5000)]
        await ws.send_text("all read")
        assert [message async for message in ws] == []
    assert received == [f"{i:06d}" for i in range(5000)]


@pytest.mark.parametrize("ending", ["close", "protocol-error"])
async def test_messages_before_the_peers_close_survive_a_full_queue(ending: str) -> None:
    """Messages and the end of the connection arrive in one read, while the queue is full."""
    messages = [f"m{i}" for i in range(10)]
    end = (
        build_frame(OP_CLOSE, close_payload(1000))
        if ending == "close"
        else build_frame(OP_TEXT, b"x", rsv2=True)
    )

    async def script(peer: ScriptedPeer) -> None:
        await peer.send_raw(b"".join(build_frame(OP_TEXT, m.encode()) for m in messages) + end)
        await peer.receive_close()
        await peer.close_tcp()

    received: list[str | bytes] = []
    errors: list[WebSocketDisconnect] = []
    async with scripted_server(script) as url, connect(url + "/", queue_size=2) as ws:
        await servers.wait_until(lambda: ws.close_code is not None)  # the reader saw the end
        try:
            async for message in ws:
                received.append(message)
        except WebSocketDisconnect as exc:
            errors.append(exc)
        assert ws.statistics().messages_dropped == 0
    assert received == messages
    assert [e.code for e in errors] == ([1002] if ending == "protocol-error" else [])


@pytest.mark.slow
async def test_pongs_owed_to_a_peer_that_does_not_read_stay_bounded() -> None:
    """A peer sending pings and never reading: the session must stop reading at some point."""
    ping = build_frame(OP_PING, b"p" * 125)
    chunk = ping * 1000
    total = 40 * len(chunk)  # 5 MB of pings, 40,000 pongs owed
    done = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        raw = peer.stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # hold little of the pongs
        try:
            for _ in range(total // len(chunk)):
                await peer.send_raw(chunk)
        except anyio.BrokenResourceError:
            return  # the client dropped the connection while this peer was blocked
        await done.wait()

    most_queued = 0
    async with (
        scripted_server(script) as url,
        connect(url + "/", keepalive_ping_interval_seconds=None, close_timeout=0.3) as ws,
    ):
        # Watch the pongs waiting to be written until the client read everything, or stopped
        # reading (as it should, once too much waits to be written).
        last_received, last_change = -1, time.monotonic()
        with anyio.fail_after(20):
            while True:
                stats = ws.statistics()
                owed = stats.bytes_received // len(ping) * (len(ping) + 4)  # masked pongs
                most_queued = max(most_queued, owed - stats.bytes_sent)
                now = time.monotonic()
                if stats.bytes_received >= total:
                    break
                if stats.bytes_received != last_received:
                    last_received, last_change = stats.bytes_received, now
                elif now - last_change > BLOCKED:
                    break
                await anyio.sleep(0.005)  # polling counters: nothing to wait on
        done.set()
    # At most the write queue's high-water mark plus the pongs of one read (256 KiB).
    assert most_queued < 512 * KIB, f"{most_queued / MIB:.1f} MiB of pongs waiting"
