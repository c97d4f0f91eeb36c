"""The sync API over any transport that hands over a network stream, and sessions built by hand.

The peers are in-process (`tests.sync_peers`: the server role of the protocol core over a socket
pair) or real servers over loopback and Unix sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import trio
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

import streams
from streams import WebSocketSession, connect_ws
from streams.protocol import ServerProtocol
from tests import sync_peers


def mock_client(**options: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(sync_peers.upgrade), **options)


class TestTransports:
    def test_mock_transport(self) -> None:
        with mock_client() as client, connect_ws("ws://test/ws", client) as ws:
            ws.send_text("hello")
            assert ws.receive_text(timeout=5) == "hello"
            ws.send_bytes(b"\x00")
            assert ws.receive_bytes(timeout=5) == b"\x00"
            assert ws.response is not None
            assert ws.response.status_code == 101
        assert ws.close_code == 1000

    def test_mock_transport_sees_the_handshake_and_client_settings(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return sync_peers.upgrade(request)

        with (
            httpx.Client(
                transport=httpx.MockTransport(handler),
                base_url="http://test",
                headers={"X-Client": "1"},
            ) as client,
            connect_ws("/ws", client, subprotocols=["a"], headers={"X-Call": "2"}),
        ):
            pass
        (request,) = seen
        assert request.url == "http://test/ws"
        assert request.headers["x-client"] == "1"
        assert request.headers["x-call"] == "2"
        assert request.headers["upgrade"] == "websocket"
        assert request.headers["sec-websocket-protocol"] == "a"

    def test_a_subclass_of_the_standard_transport(self, echo_url: str) -> None:
        requests: list[str] = []

        class Recording(httpx.HTTPTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                requests.append(str(request.url))
                return super().handle_request(request)

        with (
            httpx.Client(transport=Recording()) as client,
            connect_ws(echo_url, client) as ws,
        ):
            ws.send_text("through a subclass")
            assert ws.receive_text(timeout=5) == "through a subclass"
        assert requests == [echo_url.replace("ws://", "http://")]

    def test_a_custom_base_transport(self) -> None:
        class Custom(httpx.BaseTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                return sync_peers.upgrade(request)

        with httpx.Client(transport=Custom()) as client, connect_ws("ws://x/", client) as ws:
            ws.send_json({"a": 1})
            assert ws.receive_json(timeout=5) == {"a": 1}

    def test_a_unix_socket_transport(self) -> None:
        async def endpoint(websocket: WebSocket) -> None:
            await websocket.accept()
            await websocket.send_text(await websocket.receive_text())
            await websocket.close()

        with uds_server(endpoint) as path:
            transport = httpx.HTTPTransport(uds=path)
            with (
                httpx.Client(transport=transport) as client,
                connect_ws("http://uds/ws", client) as ws,
            ):
                ws.send_text("over a unix socket")
                assert ws.receive_text(timeout=5) == "over a unix socket"
                with pytest.raises(streams.WebSocketDisconnect):
                    ws.receive_text(timeout=5)

    def test_a_101_without_a_network_stream_says_so(self) -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(101))
        with (
            httpx.Client(transport=transport) as client,
            pytest.raises(streams.WebSocketUpgradeError, match="no network stream"),
            connect_ws("ws://x/", client),
        ):
            pass

    def test_an_invalid_accept_key_is_refused_and_the_stream_closed(self) -> None:
        streams_made: list[sync_peers.SocketStream] = []

        def handler(request: httpx.Request) -> httpx.Response:
            stream = sync_peers.stream_pair()
            streams_made.append(stream)
            return httpx.Response(
                101,
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
                extensions={"network_stream": stream},
            )

        with (
            httpx.Client(transport=httpx.MockTransport(handler)) as client,
            pytest.raises(streams.WebSocketUpgradeError, match="Sec-WebSocket-Accept"),
            connect_ws("ws://x/", client),
        ):
            pass
        assert streams_made[0].sock.fileno() == -1


@contextlib.contextmanager
def uds_server(endpoint: Any) -> Iterator[str]:
    app = Starlette(routes=[WebSocketRoute("/ws", endpoint=endpoint)])
    with tempfile.TemporaryDirectory() as directory:
        path = str(pathlib.Path(directory) / "server.sock")
        server = uvicorn.Server(uvicorn.Config(app, uds=path, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.01)
            yield path
        finally:
            server.should_exit = True
            thread.join(10)


class TestHandBuiltSessions:
    def test_httpx_ws_constructor_parameters(self) -> None:
        response = httpx.Response(101, headers={"sec-websocket-protocol": "chat"})
        with WebSocketSession(
            sync_peers.stream_pair(),
            max_message_size_bytes=1024,
            queue_size=8,
            keepalive_ping_interval_seconds=None,
            keepalive_ping_timeout_seconds=None,
            response=response,
        ) as ws:
            assert ws.response is response
            assert ws.subprotocol == "chat"
            assert ws.statistics().queue_size == 8
            ws.send_text("x" * 1024)
            assert ws.receive_text(timeout=5) == "x" * 1024
            ws.send_text("x" * 1025)
            with pytest.raises(streams.WebSocketDisconnect) as info:
                ws.receive_text(timeout=5)
            assert info.value.code == 1009

    def test_extras_are_keyword_only(self) -> None:
        stream = sync_peers.stream_pair()
        with pytest.raises(TypeError):
            WebSocketSession(stream, 1024)  # type: ignore[misc]
        with WebSocketSession(stream, close_timeout=1, subprotocol="p") as ws:
            assert ws.subprotocol == "p"

    def test_a_subclass_as_session_class(self) -> None:
        class Greeting(WebSocketSession):
            def greet(self) -> str:
                self.send_text("hi")
                return self.receive_text(timeout=5)

        with mock_client() as client, connect_ws("ws://x/", client, session_class=Greeting) as ws:
            assert isinstance(ws, Greeting)
            assert ws.greet() == "hi"

    def test_a_subclass_overriding_init_with_httpx_ws_keywords(self) -> None:
        class Counting(WebSocketSession):
            made = 0

            def __init__(self, stream: Any, **kwargs: Any) -> None:
                super().__init__(stream, **kwargs)
                Counting.made += 1

        client = streams.WebSocketClient(
            httpx.Client(transport=httpx.MockTransport(sync_peers.upgrade)), session_class=Counting
        )
        with client.connect("ws://x/") as ws:
            ws.send_text("x")
            assert ws.receive_text(timeout=5) == "x"
        assert Counting.made == 1

    def test_keepalive_none_sends_no_ping(self) -> None:
        pings: list[bytes] = []

        def behaviour(protocol: ServerProtocol, message: str | bytes) -> bytes:
            return sync_peers.echo(protocol, message)

        stream = sync_peers.stream_pair(behaviour)
        with WebSocketSession(stream, keepalive_ping_interval_seconds=None) as ws:
            ws.send_text("x")
            assert ws.receive_text(timeout=5) == "x"
            time.sleep(0.05)
            assert ws.statistics().ping_rtt is None
            assert ws._keepalive_pong is None
        assert not pings

    def test_leaving_a_session_never_entered_closes_its_stream(self) -> None:
        stream = sync_peers.stream_pair()
        session = WebSocketSession(stream)
        session.close()
        assert session.closed
        assert stream.sock.fileno() == -1


def silent_peer() -> sync_peers.SocketStream:
    """A stream whose peer reads everything and never answers."""
    ours, theirs = socket.socketpair()

    def run() -> None:
        with theirs:
            while theirs.recv(65536):
                pass

    threading.Thread(target=run, daemon=True).start()
    return sync_peers.SocketStream(ours)


def flooding_peer(size: int = 64) -> sync_peers.SocketStream:
    """A stream whose peer sends text messages as fast as it can and never answers pings."""
    ours, theirs = socket.socketpair()
    frame = ServerProtocol().send_text("x" * size)

    def run() -> None:
        with theirs, contextlib.suppress(OSError):
            while True:
                theirs.sendall(frame * 64)

    threading.Thread(target=run, daemon=True).start()
    return sync_peers.SocketStream(ours)


class TestKeepaliveAndBackpressure:
    def test_a_silent_peer_fails_the_connection_with_1011(self) -> None:
        with WebSocketSession(
            silent_peer(),
            keepalive_ping_interval_seconds=0.05,
            keepalive_ping_timeout_seconds=0.1,
        ) as ws:
            started = time.monotonic()
            with pytest.raises(streams.WebSocketKeepaliveTimeout):
                ws.receive_text(timeout=5)
            assert time.monotonic() - started < 2
        assert ws.close_code == 1011

    def test_a_silent_peer_fails_without_a_receiving_thread(self) -> None:
        with WebSocketSession(
            silent_peer(),
            keepalive_ping_interval_seconds=0.05,
            keepalive_ping_timeout_seconds=0.1,
        ) as ws:
            deadline = time.monotonic() + 5
            while not ws.closed:
                assert time.monotonic() < deadline, "keepalive never failed the connection"
                time.sleep(0.01)
            assert ws.close_code == 1011

    def test_a_slow_consumer_is_never_declared_dead(self) -> None:
        with WebSocketSession(
            flooding_peer(),
            queue_size=4,
            keepalive_ping_interval_seconds=0.05,
            keepalive_ping_timeout_seconds=0.05,
            close_timeout=0.2,
        ) as ws:
            time.sleep(0.6)  # many keepalive periods while the reader is held back
            stats = ws.statistics()
            assert stats.reader_paused
            assert stats.messages_queued == 4
            assert not ws.closed
            for _ in range(100):
                assert ws.receive_text(timeout=5) == "x" * 64

    def test_queue_size_is_the_number_of_messages_that_wait(self) -> None:
        with WebSocketSession(
            flooding_peer(), queue_size=16, keepalive_ping_interval_seconds=None, close_timeout=0.2
        ) as ws:
            deadline = time.monotonic() + 5
            while not ws.statistics().reader_paused:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            received = ws.statistics().messages_received
            time.sleep(0.1)
            stats = ws.statistics()
            assert stats.messages_received == received  # it stopped reading
            assert stats.messages_queued == 16


class TestThreads:
    def test_one_background_thread_per_session(self) -> None:
        before = set(threading.enumerate())
        with mock_client() as client, connect_ws("ws://x/", client) as ws:
            ws.send_text("x")
            ws.receive_text(timeout=5)
            ours = [t for t in threading.enumerate() if t not in before and t.name == "streams x"]
            assert len(ours) == 1
        assert not ours[0].is_alive()

    def test_two_threads_receiving_at_once_is_an_error(self) -> None:
        with WebSocketSession(
            silent_peer(), keepalive_ping_interval_seconds=None, close_timeout=0.2
        ) as ws:
            entered = threading.Event()
            errors: list[BaseException] = []

            def first() -> None:
                entered.set()
                try:
                    ws.receive_text()
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=first)
            thread.start()
            entered.wait()
            deadline = time.monotonic() + 5
            while ws._receiver is None:
                assert time.monotonic() < deadline
                time.sleep(0.001)
            with pytest.raises(RuntimeError, match="another thread is already receiving"):
                ws.receive_text(timeout=1)
            ws.close()
            thread.join(5)
        assert isinstance(errors[0], streams.WebSocketDisconnect)

    def test_send_and_close_from_other_threads_while_one_iterates(self) -> None:
        with mock_client() as client, connect_ws("ws://x/", client) as ws:
            received: list[str | bytes] = []

            def iterate() -> None:
                received.extend(ws)

            reader = threading.Thread(target=iterate)
            reader.start()
            senders = [
                threading.Thread(target=lambda i=i: [ws.send_text(f"{i}") for _ in range(50)])
                for i in range(4)
            ]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join()
            deadline = time.monotonic() + 5
            while len(received) < 200:
                assert time.monotonic() < deadline, f"{len(received)} echoes"
                time.sleep(0.005)
            threading.Thread(target=ws.close).start()
            reader.join(5)
            assert not reader.is_alive()
        assert sorted(received) == sorted(str(i) for i in range(4) for _ in range(50))


class TestInsideAnEventLoop:
    def test_connect_inside_asyncio_is_refused(self) -> None:
        async def main() -> None:
            with pytest.raises(RuntimeError, match="asyncio event loop"), connect_ws("ws://x/"):
                pass

        asyncio.run(main())

    def test_receive_inside_trio_is_refused(self) -> None:
        session = WebSocketSession(
            silent_peer(), keepalive_ping_interval_seconds=None, close_timeout=0.2
        )

        async def main() -> None:
            with pytest.raises(RuntimeError, match="trio event loop"):
                session.receive_text(timeout=1)

        trio.run(main)
        session.close()

    def test_a_worker_thread_of_the_loop_may_use_it(self) -> None:
        def work() -> str:
            with mock_client() as client, connect_ws("ws://x/", client) as ws:
                ws.send_text("from a worker thread")
                return ws.receive_text(timeout=5)

        async def main() -> str:
            return await anyio.to_thread.run_sync(work)

        assert anyio.run(main) == "from a worker thread"


CTRL_C_PROGRAM = """
import os, signal, threading, time

import httpx

import streams
from tests import sync_peers

def silent(protocol, message):
    return b""

client = httpx.Client(transport=httpx.MockTransport(lambda r: sync_peers.upgrade(r, silent)))
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
started = time.monotonic()
try:
    with streams.connect_ws("ws://x/", client) as ws:
        ws.receive_text()
except KeyboardInterrupt:
    print(ws.closed, ws.close_code, round(time.monotonic() - started, 1))
"""


def test_ctrl_c_in_a_receive_closes_the_session_at_once() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CTRL_C_PROGRAM],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=pathlib.Path(__file__).parent.parent,
        check=False,
    )
    closed, code, elapsed = result.stdout.split()
    assert (closed, code) == ("True", "1000"), result.stderr
    assert float(elapsed) < 2
