"""What an idle session keeps alive: a census of the objects each open session adds.

Many idle sessions open at once is a common load (one per feed, per user...):
an open session must not keep what only its opening needed (the connect
call's frames and context managers, the request's headers, the handshake),
nor make what it may never use (wsproto's connection, the receive channel,
events nobody waits for, on asyncio the reader task). The sessions run
against a server in another process, so that only the client's objects are
counted.
"""

from __future__ import annotations

import collections
import gc
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import httpx
import pytest

import streams
from streams.protocol import ClientProtocol
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

SESSIONS = 20

#: A WebSocket server that answers every handshake (no extension), stays
#: silent, and answers the client's Close frame with its own, then closes.
SERVER = r"""
import asyncio, base64, hashlib, sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        while True:
            first, second = await reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                size = int.from_bytes(await reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await reader.readexactly(8), "big")
            await reader.readexactly(4 + size)
            if first & 0x0F == 8:
                writer.write(b"\x88\x02\x03\xe8")
                await writer.drain()
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def idle_url() -> Iterator[str]:
    """The URL of the silent server, in its own process (its objects are not counted)."""
    with subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            port = int(process.stdout.readline())
            yield f"ws://127.0.0.1:{port}/idle"
        finally:
            process.stdin.close()  # the server's signal to stop
            process.wait(timeout=10)


def census() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
    )


def reader_tasks() -> int:
    """How many sessions' reader tasks run."""
    return sum(task.name == "streams reader" for task in anyio.get_running_tasks())


@asynccontextmanager
async def idle_client() -> AsyncIterator[httpx.AsyncClient]:
    """One client for every session, without a connection limit."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    transport = streams.AsyncHTTPTransport(limits=limits)
    async with httpx.AsyncClient(transport=transport) as client:
        yield client


async def open_idle(
    stack: AsyncExitStack, url: str, client: httpx.AsyncClient, count: int
) -> list[streams.AsyncWebSocketSession]:
    """Open ``count`` sessions, closed when ``stack`` exits; let them settle."""
    sessions = [
        await stack.enter_async_context(
            streams.aconnect_ws(url, client, keepalive_ping_interval_seconds=None)
        )
        for _ in range(count)
    ]
    await anyio.sleep(0.05)
    return sessions


@asynccontextmanager
async def idle_sessions(url: str) -> AsyncIterator[collections.Counter[str]]:
    """Open SESSIONS idle sessions through one client; yield the objects they added."""
    async with idle_client() as client, AsyncExitStack() as stack:
        # One first: what is made once (caches, the pool) is not counted.
        await open_idle(stack, url, client, 1)
        before = census()
        await open_idle(stack, url, client, SESSIONS)
        yield census() - before


@pytest.mark.anyio
async def test_an_open_session_keeps_nothing_of_its_opening(idle_url: str) -> None:
    async with idle_sessions(idle_url) as added:
        per_session = {name: count / SESSIONS for name, count in added.items()}
        kept = {
            name: per_session.get(name, 0)
            for name in (
                "contextlib.AsyncExitStack",
                "contextlib._AsyncGeneratorContextManager",
                "builtins.async_generator",
                "streams.protocol._handshake.Handshake",
            )
        }
        assert all(count < 0.5 for count in kept.values()), kept
        # The response's headers and its request's: no copy of either.
        assert per_session.get("httpx.Headers", 0) <= 2, per_session


@pytest.mark.anyio
async def test_an_idle_session_makes_nothing_it_may_never_use(
    idle_url: str, anyio_backend: str
) -> None:
    async with idle_sessions(idle_url) as added:
        per_session = {name: count / SESSIONS for name, count in added.items()}
        unused = {
            name: per_session.get(name, 0)
            for name in (
                "wsproto.connection.Connection",
                "anyio.streams.memory._MemoryObjectStreamState",
                "streams.protocol._deflate.LimitedPerMessageDeflate",
            )
        }
        assert all(count < 0.5 for count in unused.values()), unused
        # The events made per session are the tasks' own (anyio's task handles).
        assert per_session.get("anyio._backends._asyncio.Event", 0) <= 1, per_session
        if anyio_backend == "asyncio":
            # No task at all (keepalive is off): the transport's callback parses.
            assert per_session.get("_asyncio.Task", 0) < 0.5, per_session


@pytest.mark.anyio
async def test_an_idle_session_runs_no_reader_task_on_asyncio(
    idle_url: str, anyio_backend: str
) -> None:
    """On asyncio the transport's callback parses: no reader task waits for it.

    Closing then starts one per session (it takes the server's Close and
    finishes the connection). trio has no callback: its reader task waits.
    """
    async with idle_client() as client:
        async with AsyncExitStack() as stack:
            before = reader_tasks()
            sessions = await open_idle(stack, idle_url, client, SESSIONS)
            added = reader_tasks() - before
            assert added == (0 if anyio_backend == "asyncio" else SESSIONS)
            # With no reader task, an idle session still sees its end.
            await sessions[0].close()
            assert sessions[0].close_code == 1000
        assert [ws.close_code for ws in sessions] == [1000] * SESSIONS
        assert reader_tasks() == before


@pytest.mark.anyio
async def test_a_full_receive_channel_starts_the_reader_task(anyio_backend: str) -> None:
    burst = [f"burst {i}" for i in range(5)]

    async def script(peer: ScriptedPeer) -> None:
        assert await peer.receive_message() == "go"
        await peer.send_raw(b"".join(build_frame(OP_TEXT, text.encode()) for text in burst))
        assert await peer.receive_message() == "done"
        await peer.send_frame(OP_CLOSE, close_payload(1000))
        await peer.receive_close()

    with anyio.fail_after(10):
        async with (
            scripted_server(script) as url,
            streams.aconnect_ws(
                url + "/", queue_size=1, keepalive_ping_interval_seconds=None
            ) as ws,
        ):
            assert ws._engine is not None
            inbox = ws._engine.inbox
            assert reader_tasks() == (0 if anyio_backend == "asyncio" else 1)
            await ws.send_text("go")
            # One message fits: the reader task waits to put in the next one.
            await servers.wait_until(lambda: inbox.paused)
            assert reader_tasks() == 1
            assert [await ws.receive_text() for _ in burst] == burst
            await ws.send_text("done")
            async for _ in ws:
                pytest.fail("no message expected")
    assert ws.close_code == 1000


@pytest.mark.anyio
async def test_an_idle_session_costs_a_bounded_number_of_objects(idle_url: str) -> None:
    """A census bound per session, with a margin: about 100 objects on asyncio and trio.

    (A session that kept its opening's generators, context managers and
    headers, and made wsproto's connection and its channel at once, added 150.)
    """
    async with idle_sessions(idle_url) as added:
        total = sum(added.values()) / SESSIONS
        assert total < 125, added.most_common(25)


@pytest.mark.anyio
async def test_an_idle_session_still_receives_and_closes(idle_url: str) -> None:
    """What is made on first use works when used: the receive channel, closing."""
    async with streams.aconnect_ws(idle_url, keepalive_ping_interval_seconds=None) as ws:
        assert ws.statistics().messages_queued == 0
        assert not ws.closed
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.05)
    assert ws.closed
    assert ws.close_code == 1000


class TestClientProtocolMemory:
    def test_client_protocol_has_no_instance_dict(self) -> None:
        assert not hasattr(ClientProtocol(), "__dict__")

    def test_client_makes_no_wsproto_connection_for_whole_data_frames(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        made = self._count_connections(monkeypatch)
        proto = ClientProtocol()
        frames = build_frame(OP_TEXT, b"hello") + build_frame(OP_BINARY, b"\x00\x01")
        assert proto.receive_data(frames) == ["hello", b"\x00\x01"]
        assert proto.send_text("hi")
        assert made == []

    def test_client_makes_the_wsproto_connection_for_a_control_frame(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        made = self._count_connections(monkeypatch)
        proto = ClientProtocol()
        assert proto.receive_data(build_frame(OP_PING, b"ping")) == []
        assert len(made) == 1
        pong = proto.data_to_send()
        assert pong[0] == 0x8A  # a final Pong frame
        assert proto.receive_data(build_frame(OP_PING, b"again")) == []
        assert len(made) == 1  # made once

    @staticmethod
    def _count_connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
        from streams.protocol import _connection

        made: list[object] = []
        real = _connection.Connection

        def counting(*args: object, **kwargs: object) -> object:
            conn = real(*args, **kwargs)  # type: ignore[arg-type]
            made.append(conn)
            return conn

        monkeypatch.setattr(_connection, "Connection", counting)
        return made
