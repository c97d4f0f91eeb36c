"""The session's fast paths behave like the plain ones.

- On asyncio, the library's network backend (``streams._io._asyncio``) parses each chunk
  inside the protocol's callback; tested here on its own over a real socket, and through
  the session against scripted peers.
- The first frame after a read is written at once, without the flusher (``write_now``):
  frames must stay in order whatever is still being written.
- Messages move in and out of the receive channel in bulk: the same run through anyio's
  per-message methods (the fallback when the channel's state is not the known shape) must
  give the same result.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpcore
import httpx
import pytest

import streams
import streams._io
from streams._engine import Leftover, _channel
from streams._engine._io import OnData
from streams._io._asyncio import (
    BULK_END,
    READ_BUFFER_SIZE,
    AsyncioBackend,
    AsyncioStream,
    asyncio_io,
)
from tests import servers
from tests.peers import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ScriptedPeer,
    accept_key,
    build_frame,
    close_payload,
    scripted_server,
)

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- asyncio backend


@asynccontextmanager
async def backend_pair() -> AsyncIterator[tuple[AsyncioStream, anyio.abc.SocketStream]]:
    """A stream of the library's asyncio backend connected to an anyio server end on 127.0.0.1."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        accepted: list[anyio.abc.SocketStream] = []
        ready = anyio.Event()

        async def accept(stream: anyio.abc.SocketStream) -> None:
            accepted.append(stream)
            ready.set()
            await anyio.sleep_forever()

        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, accept)
            client = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
            await ready.wait()
            try:
                async with accepted[0]:
                    yield client, accepted[0]
            finally:
                await client.aclose()
            group.cancel_scope.cancel()


class Wrapper(httpcore.AsyncNetworkStream):
    """Holds bytes read past a response, as httpcore's upgraded stream does."""

    def __init__(self, stream: httpcore.AsyncNetworkStream, leading: bytes) -> None:
        self.stream = stream
        self.leading = leading

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.leading:
            data, self.leading = self.leading[:max_bytes], self.leading[max_bytes:]
            return data
        return await self.stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self.stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.stream.aclose()

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_backend_reads_what_a_wrapper_holds_first_then_its_own_stream() -> None:
    with anyio.fail_after(5):
        async with backend_pair() as (client, server):
            # httpcore's side of the stream: read() splits what is larger than asked.
            await server.send(b"abcdef")
            assert await client.read(2) == b"ab"
            io = asyncio_io(Wrapper(client, b"LEAD" * 3))
            assert io is not None
            assert io.name == "asyncio"
            assert await io.read(5) == b"LEADL"
            assert await io.read(100) == b"EADLEAD"
            assert await io.read(100) == b"cdef"
            await server.send(b"more")
            assert await io.read(100) == b"more"
            await io.write(b"to server")
            assert await server.receive() == b"to server"
            await server.aclose()
            assert await io.read(100) == b""
            assert await io.read(100) == b""


def recording(seen: list[bytes], leftover: Leftover) -> OnData:
    """An ``on_data`` keeping each chunk in ``seen``; ``leftover`` for a chunk ending in "!"."""

    def on_data(data: bytes) -> Leftover | None:
        seen.append(data)
        return leftover if data.endswith(b"!") else None

    return on_data


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_backend_gives_chunks_to_on_data_and_queues_what_it_returns() -> None:
    seen: list[bytes] = []
    leftover = Leftover(["left"], 0)
    on_data = recording(seen, leftover)

    with anyio.fail_after(5):
        async with backend_pair() as (client, server):
            io = asyncio_io(client)
            assert io is not None
            assert io.set_on_data is not None
            io.set_on_data(on_data)
            results: list[Any] = []
            async with anyio.create_task_group() as group:

                async def reader() -> None:
                    results.append(await io.read(100))

                group.start_soon(reader)
                await server.send(b"handled")
                await servers.wait_until(lambda: bool(seen))
                await server.send(b"left over!")
            # on_data handled the first chunk (read() went on waiting) and
            # handed back the second, which read() returned.
            assert b"".join(seen).startswith(b"handled")
            assert results == [leftover]
            assert not client._transport.is_reading()  # paused until the next read()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_backend_parses_alone_what_a_wrapper_held_then_what_arrives() -> None:
    seen: list[bytes] = []
    starts: list[None] = []
    leftover = Leftover(["left"], 0)
    on_data = recording(seen, leftover)

    with anyio.fail_after(5):
        async with backend_pair() as (client, server):
            protocol = client._protocol
            await server.send(b"queued")  # read before the engine parses
            await servers.wait_until(lambda: bool(protocol.items))
            io = asyncio_io(Wrapper(client, b"held"))
            assert io is not None
            assert io.parse_in_callback is not None
            await io.parse_in_callback(on_data, lambda: starts.append(None))
            # In order, and no reader asked for: every chunk was handled.
            assert seen == [b"held", b"queued"]
            assert io.read == client._engine_read  # the wrapper is out of the way
            assert protocol.waiter is None
            await server.send(b"more")
            await servers.wait_until(lambda: seen[-1] == b"more")
            assert starts == []
            await server.send(b"left over!")
            await servers.wait_until(lambda: bool(starts))
            assert not client._transport.is_reading()  # paused until the reader reads
            assert await io.read(100) is leftover
            results: list[Any] = []
            async with anyio.create_task_group() as group:

                async def reader() -> None:
                    results.append(await io.read(100))

                group.start_soon(reader)
                await server.send(b"then")
                await servers.wait_until(lambda: seen[-1] == b"then")  # parsed while it waits
                await server.aclose()
            assert results == [b""]
            assert starts == [None]  # asked for once


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("before", ["leftover", "eof"])
async def test_backend_asks_for_the_reader_at_once_for_what_came_before(before: str) -> None:
    starts: list[None] = []
    leftover = Leftover(["left"], 0)

    with anyio.fail_after(5):
        async with backend_pair() as (client, server):
            protocol = client._protocol
            if before == "eof":
                await server.aclose()
                await servers.wait_until(lambda: protocol.eof)
            io = asyncio_io(Wrapper(client, b"held!"))
            assert io is not None
            assert io.parse_in_callback is not None
            await io.parse_in_callback(
                lambda data: leftover if before == "leftover" else None,
                lambda: starts.append(None),
            )
            assert starts == [None]
            assert await io.read(100) is (leftover if before == "leftover" else b"")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_backend_reads_through_recv_while_reads_fill_the_shared_buffer() -> None:
    seen: list[bytes] = []

    def on_data(data: bytes) -> None:
        seen.append(data)

    with anyio.fail_after(5):
        async with backend_pair() as (client, server):
            io = asyncio_io(client)
            assert io is not None
            assert io.set_on_data is not None
            transport, protocol = client._transport, client._protocol
            # Before the engine parses in the callback, a full read changes nothing.
            protocol.get_buffer(-1)[:] = b"h" * READ_BUFFER_SIZE
            protocol.buffer_updated(READ_BUFFER_SIZE)
            assert transport.get_protocol() is protocol
            protocol.items.clear()
            io.set_on_data(on_data)
            read = io.read

            async def reader() -> None:
                await read(100)

            async with anyio.create_task_group() as group:
                group.start_soon(reader)  # parsing happens while a reader waits
                await servers.wait_until(lambda: protocol.waiter is not None)
                # A read that fills the shared buffer: bulk data, read through recv().
                protocol.get_buffer(-1)[:] = b"a" * READ_BUFFER_SIZE
                protocol.buffer_updated(READ_BUFFER_SIZE)
                bulk = transport.get_protocol()
                assert bulk is not protocol
                assert not isinstance(bulk, asyncio.BufferedProtocol)
                await server.send(b"b" * BULK_END)  # a large read keeps it
                await servers.wait_until(lambda: sum(map(len, seen)) == READ_BUFFER_SIZE + BULK_END)
                assert transport.get_protocol() is bulk
                await server.send(b"small")  # a small one ends it
                await servers.wait_until(lambda: seen[-1].endswith(b"small"))
                assert transport.get_protocol() is protocol
                await server.send(b"again")
                await servers.wait_until(lambda: seen[-1] == b"again")
                # Over TLS the SSL transport joins records in either mode: no switch.
                protocol.tls = True
                protocol.get_buffer(-1)[:] = b"c" * READ_BUFFER_SIZE
                protocol.buffer_updated(READ_BUFFER_SIZE)
                assert transport.get_protocol() is protocol
                group.cancel_scope.cancel()
            assert b"".join(seen) == (
                b"a" * READ_BUFFER_SIZE + b"b" * BULK_END + b"smallagain" + b"c" * READ_BUFFER_SIZE
            )


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_backend_raises_what_on_data_raised_as_the_read_error() -> None:
    def on_data(data: bytes) -> Leftover | None:
        raise ValueError("parser bug")

    with anyio.fail_after(5):
        async with backend_pair() as (client, server), anyio.create_task_group() as group:
            io = asyncio_io(client)
            assert io is not None
            assert io.set_on_data is not None
            io.set_on_data(on_data)

            async def send_later() -> None:
                await server.send(b"x")

            group.start_soon(send_later)
            with pytest.raises(ValueError, match="parser bug"):
                await io.read(100)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_backend_maps_errors_and_timeouts_to_httpcore_exceptions() -> None:
    with anyio.fail_after(5):
        async with backend_pair() as (client, _server):
            with pytest.raises(httpcore.ReadTimeout):
                await client.read(10, timeout=0.01)
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()
        with pytest.raises(httpcore.ConnectError):
            await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)


async def test_only_streams_of_the_library_get_its_backend_io(anyio_backend: str) -> None:
    class Other(Wrapper):
        def get_extra_info(self, info: str) -> Any:
            return None

    assert asyncio_io(Other(Wrapper.__new__(Wrapper), b"")) is None


# --------------------------------------------------------------------------- through the session


def handshake_response(peer: ScriptedPeer) -> bytes:
    key = peer.header("Sec-WebSocket-Key") or ""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("own_client", [False, True], ids=["library-transport", "httpx-transport"])
async def test_frames_in_the_same_write_as_the_response_all_arrive_in_order(
    own_client: bool,
) -> None:
    first = [f"early {i}" for i in range(50)]
    later = [f"later {i}" for i in range(50)]

    async def script(peer: ScriptedPeer) -> None:
        frames = b"".join(build_frame(OP_TEXT, text.encode()) for text in first)
        await peer.send_raw(handshake_response(peer) + frames)
        assert await peer.receive_message() == "ready"
        for text in later:
            await peer.send_frame(OP_TEXT, text.encode())
        await peer.send_frame(OP_CLOSE, close_payload(1000))
        await peer.receive_close()

    received: list[str | bytes] = []
    with anyio.fail_after(10):
        async with (
            scripted_server(script, handshake=False) as url,
            httpx.AsyncClient() as client,
            streams.aconnect_ws(
                url + "/", client if own_client else None, keepalive_ping_interval_seconds=None
            ) as ws,
        ):
            for _ in first:
                received.append(await ws.receive_text())
            await ws.send_text("ready")
            async for message in ws:
                received.append(message)
    assert received == first + later


@pytest.fixture(params=["library-transport", "httpx-transport"])
async def writer(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient | None]:
    """The client of the session: the default one (the library's transport, whose backend
    writes a frame at once when nothing is queued) or one with httpx's own transport (every
    frame through the flusher)."""
    if request.param == "library-transport":
        yield None
        return
    async with httpx.AsyncClient() as client:
        yield client


async def test_frames_stay_in_order_while_a_large_one_is_being_written(
    writer: httpx.AsyncClient | None,
) -> None:
    # The big frame is more than the socket takes at once: the first write
    # takes part of it, the rest is queued, and the replies queue behind it.
    big = random.Random(1).randbytes(16 * 1024 * 1024)
    ticks = 20

    async def script(peer: ScriptedPeer) -> None:
        for i in range(ticks):
            await peer.send_frame(OP_TEXT, f"tick {i}".encode())
        assert await peer.receive_message(timeout=10) == big
        for i in range(ticks):
            assert await peer.receive_message() == f"reply {i}"
        await peer.send_frame(OP_CLOSE, close_payload(1000))
        await peer.receive_close()

    with anyio.fail_after(20):
        async with scripted_server(script) as url:
            async with streams.aconnect_ws(
                url + "/", writer, compression=None, keepalive_ping_interval_seconds=None
            ) as ws:
                sending = anyio.Event()

                async def send_big() -> None:
                    sending.set()
                    await ws.send_bytes(big)  # queued before its first wait

                async with anyio.create_task_group() as group:
                    group.start_soon(send_big)
                    # The ticks may wait in the channel already: the big frame first.
                    await sending.wait()
                    assert ws._engine is not None
                    assert not ws._engine.outbox.idle
                    for i in range(ticks):
                        assert await ws.receive_text() == f"tick {i}"
                        await ws.send_text(f"reply {i}")
                async for _ in ws:
                    pytest.fail("no message expected")
            stats = ws.statistics()
    frame_bytes = (2 + 8 + 4 + len(big)) + sum(2 + 4 + len(f"reply {i}") for i in range(ticks))
    assert stats.bytes_sent == frame_bytes + 2 + 4 + 2  # and the close frame


async def test_replies_written_at_once_are_counted_and_arrive(
    echo_url: str, writer: httpx.AsyncClient | None
) -> None:
    async with streams.aconnect_ws(
        echo_url, writer, compression=None, keepalive_ping_interval_seconds=None
    ) as ws:
        for i in range(200):
            await ws.send_text(f"{i}" * (i % 7))
            assert await ws.receive_text() == f"{i}" * (i % 7)
        # A burst: the first frame may go at once, the others queue behind it.
        for i in range(200):
            await ws.send_bytes(bytes([i]) * i)
        for i in range(200):
            assert await ws.receive_bytes() == bytes([i]) * i
        sent = sum(2 + 4 + (i % 7) * len(f"{i}") for i in range(200))
        sent += sum((2 if i < 126 else 4) + 4 + i for i in range(200))
        await ws.flush()
        assert ws.statistics().bytes_sent == sent


# ------------------------------------------------------------------ plain paths, same results


async def consume_mixed(ws: streams.AsyncWebSocketSession) -> list[Any]:
    out: list[Any] = []
    out.append(await ws.receive_text())
    async for message in ws:
        out.append(message)
        if len(out) == 300:
            break
    out.extend(await ws.text().take(700).collect())
    out.append((await ws.receive()).data)
    async for message in ws:
        out.append(message)
    return out


@pytest.mark.parametrize("plain", ["feed", "channel", "both", "none"])
async def test_fast_paths_off_give_the_same_messages(
    plain: str, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    if plain in ("channel", "both"):
        monkeypatch.setattr(_channel, "channel_state", lambda send, receive: None)
    if plain in ("feed", "both"):
        monkeypatch.setattr(streams._io, "asyncio_io", lambda stream: None)
    texts = [f"message {i} " + "x" * (i % 300) for i in range(3000)]

    async def script(peer: ScriptedPeer) -> None:
        for start in range(0, len(texts), 100):
            await peer.send_raw(
                b"".join(build_frame(OP_TEXT, t.encode()) for t in texts[start : start + 100])
            )
        await peer.send_frame(OP_BINARY, b"last")
        await peer.send_frame(OP_CLOSE, close_payload(1000))
        await peer.receive_close()

    with anyio.fail_after(20):
        async with (
            scripted_server(script) as url,
            streams.aconnect_ws(
                url + "/", queue_size=16, keepalive_ping_interval_seconds=None
            ) as ws,
        ):
            got = await consume_mixed(ws)
            assert ws.statistics().messages_queued == 0
    assert got == [*texts, b"last"]


async def test_receive_stream_gets_what_a_typed_stream_read_ahead_first() -> None:
    texts = [f"message {i}" for i in range(1000)]

    async def script(peer: ScriptedPeer) -> None:
        await peer.send_raw(b"".join(build_frame(OP_TEXT, t.encode()) for t in texts))
        await peer.send_frame(OP_CLOSE, close_payload(1000))
        await peer.receive_close()

    with anyio.fail_after(10):
        async with (
            scripted_server(script) as url,
            streams.aconnect_ws(url + "/", queue_size=2000) as ws,
        ):
            await servers.wait_until(lambda: ws.statistics().messages_received == 1000)
            # take() reads a whole batch and hands back what it does not need.
            assert await ws.text().take(10).collect() == texts[:10]
            assert ws.statistics().messages_queued == 990
            assert await ws.receive_stream.receive() == texts[10]
            assert [m async for m in ws] == texts[11:]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_client_with_httpx_transport_gets_the_generic_path(echo_url: str) -> None:
    async with httpx.AsyncClient() as client, streams.aconnect_ws(echo_url, client) as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "hello"
        assert ws._engine is not None
        assert ws._engine.io.name == "generic"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_default_client_reads_through_the_library_backend(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "hello"
        assert ws._engine is not None
        assert ws._engine.io.name == "asyncio"


@pytest.mark.parametrize("how", ["async for", "receive_text", "typed stream"])
async def test_closing_receive_stream_wakes_a_waiting_receive(echo_url: str, how: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        ended = anyio.Event()
        outcome: list[Any] = []

        async def consume() -> None:
            try:
                if how == "async for":
                    outcome.extend([m async for m in ws])
                elif how == "receive_text":
                    outcome.append(await ws.receive_text())
                else:
                    outcome.extend(await ws.text().collect())
            except Exception as exc:
                outcome.append(exc)
            finally:
                ended.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                await servers.wait_until(
                    lambda: (
                        ws.receive_stream.statistics().tasks_waiting_receive > 0
                        or ws._engine.inbox._arrival is not None
                    )
                )
                ws.receive_stream.close()
                await ended.wait()
    if how == "receive_text":
        assert len(outcome) == 1
        assert isinstance(outcome[0], streams.WebSocketDisconnect)
    else:
        assert outcome == []  # the iteration ended quietly, as at a normal close


async def test_the_flusher_starts_only_when_a_frame_must_wait() -> None:
    def flusher_runs() -> bool:
        return any(task.name == "streams flusher" for task in anyio.get_running_tasks())

    async def script(peer: ScriptedPeer) -> None:
        assert await peer.receive_message() == "direct"
        await peer.send_frame(OP_TEXT, b"go")
        for i in range(3):
            assert await peer.receive_message() == f"queued {i}"
        await peer.send_frame(OP_CLOSE, close_payload(1000))
        await peer.receive_close()

    with anyio.fail_after(10):
        async with (
            scripted_server(script) as url,
            streams.aconnect_ws(
                url + "/", compression=None, keepalive_ping_interval_seconds=None
            ) as ws,
        ):
            assert ws._engine is not None
            assert ws._engine.io.write_now is not None
            await ws.send_text("direct")
            assert await ws.receive_text() == "go"
            # One frame after a read went straight out: no flusher task yet.
            assert not flusher_runs()
            for i in range(3):  # the next frames wait for one
                await ws.send_text(f"queued {i}")
            assert flusher_runs()
            async for _ in ws:
                pytest.fail("no message expected")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_frame_queued_in_the_transport_callback_starts_the_flusher_in_the_reader() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_frame(OP_PING, b"in the callback")
        frame = await peer.receive_frame()
        assert (frame.opcode, frame.payload) == (OP_PONG, b"in the callback")
        await peer.send_frame(OP_CLOSE, close_payload(1000))
        await peer.receive_close()

    with anyio.fail_after(10):
        async with scripted_server(script) as url:
            async with streams.aconnect_ws(
                url + "/", compression=None, keepalive_ping_interval_seconds=None
            ) as ws:
                engine = ws._engine
                assert engine is not None
                assert engine.io.name == "asyncio"
                # The pong cannot be written at once: it waits for the flusher,
                # which cannot be started inside the callback that parses the ping.
                engine.outbox._write_now = lambda frame: 0
                async for _ in ws:
                    pytest.fail("no message expected")
            assert ws.statistics().bytes_sent > 0
            assert not engine.reader.flusher_deferred
