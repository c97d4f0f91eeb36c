"""The sync API: connect_ws, WebSocketClient and WebSocketSession, against real servers.

Scripted peers run in a blocking portal of their own (`scripted`).
"""

from __future__ import annotations

import base64
import contextlib
import queue
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.from_thread
import httpx
import msgspec
import pytest
import trustme
import websockets.sync.server
from wsproto.events import BytesMessage, TextMessage

from streams._exceptions import (
    WebSocketDecodeError,
    WebSocketDisconnect,
    WebSocketInvalidTypeReceived,
    WebSocketNetworkError,
    WebSocketUpgradeError,
)
from streams._sync import (
    PongEvent,
    ReceiveTimeout,
    WebSocketClient,
    WebSocketSession,
    connect_ws,
)
from tests import servers, sync_peers
from tests.peers import OP_TEXT, ScriptedPeer, scripted_server


@contextlib.contextmanager
def scripted(script: Any, **options: Any) -> Iterator[str]:
    """Run `scripted_server` in a thread of its own; yield its base URL."""
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(scripted_server(script, **options)) as url,
    ):
        yield url


def recorded(base: str, path: str) -> tuple[str, servers.ConnectionRecord]:
    """A URL with a fresh ``id`` and the server's record for it."""
    conn_id = servers.new_id()
    separator = "&" if "?" in path else "?"
    return f"{base}{path}{separator}id={conn_id}", servers.REGISTRY.record(conn_id)


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread not in before]


# --------------------------------------------------------------------------- basics


class TestRealServers:
    def test_echo_text_bytes_and_json(self, server_url: str) -> None:
        with connect_ws(server_url + "/echo") as ws:
            assert isinstance(ws, WebSocketSession)
            assert ws.response is not None
            assert ws.response.status_code == 101
            ws.send_text("héllo")
            assert ws.receive_text(timeout=5) == "héllo"
            ws.send_bytes(b"\x00\xff")
            assert ws.receive_bytes(timeout=5) == b"\x00\xff"
            ws.send_json({"a": [1, 2.5, None]})
            assert ws.receive_json(timeout=5) == {"a": [1, 2.5, None]}
            ws.send_json({"b": True}, mode="binary")
            assert ws.receive_json(timeout=5, mode="binary") == {"b": True}
            ws.send(TextMessage(data="event"))
            event = ws.receive(timeout=5)
            assert isinstance(event, TextMessage)
            assert event.data == "event"
            ws.send(BytesMessage(data=b"raw"))
            event = ws.receive(timeout=5)
            assert isinstance(event, BytesMessage)
            assert event.data == b"raw"

    def test_flood_is_iterated_to_a_quiet_end(self, server_url: str) -> None:
        url, record = recorded(server_url, "/flood?n=300&size=64")
        with connect_ws(url) as ws:
            received = list(ws)
            assert ws.close_code == 1000
        assert received == [servers.flood_payload(i, 64) for i in range(300)]
        assert record.finished.wait(5)
        assert record.close_code == 1000

    def test_server_close_with_an_error_code_raises_from_iteration(self, server_url: str) -> None:
        with (
            connect_ws(server_url + "/close?code=1011&reason=boom") as ws,
            pytest.raises(WebSocketDisconnect) as info,
        ):
            for _ in ws:
                pass
        assert info.value.code == 1011
        assert info.value.reason == "boom"

    def test_subprotocol_is_negotiated(self, server_url: str) -> None:
        with connect_ws(server_url + "/subprotocols", subprotocols=["chat.v1", "other"]) as ws:
            assert ws.subprotocol == "chat.v1"
            assert ws.receive_text(timeout=5) == "chat.v1"

    def test_refused_upgrade_raises_with_the_response_and_leaves_no_thread(
        self, server_url: str
    ) -> None:
        before = set(threading.enumerate())
        with (
            pytest.raises(WebSocketUpgradeError) as info,
            connect_ws(server_url + "/reject?status=403"),
        ):
            pass
        assert info.value.response.status_code == 403
        assert new_threads(before) == []


# --------------------------------------------------------------------------- threads


class TestThreads:
    def test_one_helper_thread_per_session(self, echo_url: str) -> None:
        before = set(threading.enumerate())
        with connect_ws(echo_url) as ws:
            ws.send_text("x")
            assert ws.receive_text(timeout=5) == "x"
            assert ws.ping().wait(5)
            during = new_threads(before)
        assert len(during) == 1
        assert new_threads(before) == []

    def test_three_sessions_use_three_threads(self, echo_url: str) -> None:
        before = set(threading.enumerate())
        with contextlib.ExitStack() as stack:
            sessions = [stack.enter_context(connect_ws(echo_url)) for _ in "abc"]
            for name, ws in zip("abc", sessions, strict=True):
                ws.send_text(name)
            assert [ws.receive_text(timeout=5) for ws in sessions] == ["a", "b", "c"]
            assert len(new_threads(before)) == 3
        assert new_threads(before) == []

    def test_concurrent_senders_never_interleave(self, echo_url: str) -> None:
        url, record = recorded(echo_url, "")
        senders, per_sender = 8, 150

        def payload(sender: int, i: int) -> str | bytes:
            # Sizes from a few bytes to 20 kB: a large frame split by another
            # thread's frame would not parse.
            body = f"{sender}:{i}:" + chr(ord("a") + sender) * ((i * 997) % 20_000)
            return body if i % 2 else body.encode()

        with connect_ws(url, max_message_size_bytes=1 << 20) as ws:
            start = threading.Barrier(senders)

            def send_all(sender: int) -> None:
                start.wait()
                for i in range(per_sender):
                    message = payload(sender, i)
                    if isinstance(message, str):
                        ws.send_text(message)
                    else:
                        ws.send_bytes(message)

            threads = [threading.Thread(target=send_all, args=(n,)) for n in range(senders)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            echoed = [ws.receive(timeout=10) for _ in range(senders * per_sender)]

        def key(message: str | bytes) -> tuple[int, int]:
            text = message if isinstance(message, str) else message.decode()
            sender, i, _ = text.split(":", 2)
            return int(sender), int(i)

        messages = [event.data for event in echoed]
        assert sorted(messages, key=key) == [
            payload(s, i) for s in range(senders) for i in range(per_sender)
        ]
        for sender in range(senders):  # each thread's messages keep their order
            mine = [key(m)[1] for m in messages if key(m)[0] == sender]
            assert mine == list(range(per_sender))
        assert len(record.received) == senders * per_sender

    def test_a_blocked_receive_is_released_by_a_close_from_another_thread(
        self, echo_url: str
    ) -> None:
        outcome: list[BaseException] = []
        with connect_ws(echo_url) as ws:
            started = threading.Event()

            def receive() -> None:
                started.set()
                try:
                    ws.receive_text()
                except BaseException as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=receive)
            thread.start()
            assert started.wait(5)
            ws.close()
            thread.join(5)
            assert not thread.is_alive()
        assert len(outcome) == 1
        assert isinstance(outcome[0], WebSocketDisconnect)
        assert outcome[0].code == 1000


# --------------------------------------------------------------------------- leaving the block


class TestLeaving:
    @pytest.mark.parametrize("server_name", ["uvicorn-websockets", "websockets"])
    def test_leaving_with_a_full_receive_queue_returns_promptly(
        self, server_url: str, server_name: str
    ) -> None:
        url, record = recorded(server_url, "/flood?n=20000&size=200")
        started = time.monotonic()
        with connect_ws(url, queue_size=4, close_timeout=10) as ws:
            # Wait until both buffers are full and the reader stopped reading
            # (the session's state lives in its thread: poll it).
            deadline = time.monotonic() + 5
            while True:
                stats = ws.statistics()
                # queue_size messages wait: the reader stopped reading.
                if stats.reader_paused and stats.messages_queued >= 4:
                    break
                assert time.monotonic() < deadline, f"the reader never paused: {stats}"
                time.sleep(0.005)
            assert stats.messages_queued == 4
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"leaving took {elapsed:.1f} s"
        assert ws.close_code is not None
        assert record.finished.wait(5)
        assert record.close_code == 1000  # the server got the client's close

    def test_an_exception_inside_the_block_comes_out_as_itself(self, echo_url: str) -> None:
        url, record = recorded(echo_url, "")
        error = KeyError("mine")
        with pytest.raises(KeyError) as info, connect_ws(url):
            raise error
        assert info.value is error
        assert record.finished.wait(5)
        assert record.close_code == 1000

    def test_an_exception_while_the_server_floods_comes_out_promptly(
        self, uvicorn_wsproto_url: str
    ) -> None:
        url = uvicorn_wsproto_url + "/flood?n=20000&size=200"
        sessions: list[WebSocketSession] = []

        def run() -> None:
            with connect_ws(url, queue_size=4) as ws:
                sessions.append(ws)
                assert ws.receive_text(timeout=5) == servers.flood_payload(0, 200)
                raise KeyError("inside")

        started = time.monotonic()
        with pytest.raises(KeyError):
            run()
        assert time.monotonic() - started < 5
        assert sessions[0].closed

    def test_a_websocket_error_inside_the_block_comes_out_as_itself(self, server_url: str) -> None:
        with (
            pytest.raises(WebSocketDisconnect) as info,
            connect_ws(server_url + "/close?code=4001&reason=bye") as ws,
        ):
            ws.receive_text(timeout=5)
        assert info.value.code == 4001
        assert info.value.reason == "bye"

    def test_receive_after_close_raises_at_once(self, echo_url: str) -> None:
        with connect_ws(echo_url) as ws:
            ws.close()
            started = time.monotonic()
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_text()
            assert time.monotonic() - started < 1
            assert info.value.code == 1000
            with pytest.raises(WebSocketDisconnect):
                ws.send_text("late")
            assert list(ws) == []
            ws.close()  # again: nothing more

    def test_the_session_after_the_block(self, echo_url: str) -> None:
        with connect_ws(echo_url) as ws:
            ws.send_text("kept")
            assert ws.ping().wait(5)  # the echo came back before the pong
        assert ws.closed
        assert ws.close_code == 1000
        assert ws.receive_text(timeout=1) == "kept"  # received before the close: still there
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text(timeout=1)
        with pytest.raises(WebSocketDisconnect):
            ws.send_text("late")
        with pytest.raises(WebSocketDisconnect):
            ws.ping()
        assert list(ws) == []
        ws.close()


# --------------------------------------------------------------------------- receiving


class TestReceiving:
    def test_timeout_is_both_queue_empty_and_timeout_error(self, echo_url: str) -> None:
        with connect_ws(echo_url) as ws:
            with pytest.raises(queue.Empty):
                ws.receive_text(timeout=0.05)
            with pytest.raises(TimeoutError):
                ws.receive_bytes(timeout=0.05)
            with pytest.raises(ReceiveTimeout):
                ws.receive_json(timeout=0)
            started = time.monotonic()
            with pytest.raises(ReceiveTimeout):
                ws.receive(timeout=0.2)
            assert 0.15 < time.monotonic() - started < 2
            ws.send_text("after")  # nothing was consumed by the timeouts
            assert ws.receive_text(timeout=5) == "after"

    def test_timeout_zero_returns_a_waiting_message(self, echo_url: str) -> None:
        with connect_ws(echo_url) as ws:
            ws.send_text("a")
            ws.send_text("b")
            assert ws.receive_text(timeout=5) == "a"
            deadline = time.monotonic() + 5
            while ws.statistics().messages_queued == 0:
                assert time.monotonic() < deadline
                time.sleep(0.001)
            assert ws.receive_text(timeout=0) == "b"

    def test_break_loses_nothing(self, echo_url: str) -> None:
        base = echo_url.rsplit("/", 1)[0]
        with connect_ws(base + "/flood?n=100&size=16") as ws:
            first = []
            for message in ws:
                first.append(message)
                if len(first) == 10:
                    break
            assert ws.receive_text(timeout=5) == servers.flood_payload(10, 16)
            rest = list(ws)
        assert [*first, servers.flood_payload(10, 16), *rest] == [
            servers.flood_payload(i, 16) for i in range(100)
        ]

    def test_wrong_kind_raises_and_consumes(self, echo_url: str) -> None:
        with connect_ws(echo_url) as ws:
            ws.send_text("text")
            ws.send_bytes(b"bytes")
            ws.send_text("next")
            with pytest.raises(WebSocketInvalidTypeReceived) as info:
                ws.receive_bytes(timeout=5)
            assert isinstance(info.value.event, TextMessage)
            assert info.value.event.data == "text"
            with pytest.raises(WebSocketInvalidTypeReceived) as info:
                ws.receive_json(timeout=5)
            assert info.value.event.data == b"bytes"
            assert ws.receive_text(timeout=5) == "next"

    def test_invalid_json_carries_the_payload(self, echo_url: str) -> None:
        with connect_ws(echo_url) as ws:
            ws.send_text("{not json")
            with pytest.raises(WebSocketDecodeError) as info:
                ws.receive_json(timeout=5)
            assert info.value.payload == "{not json"
            with pytest.raises(ValueError, match="mode"):
                ws.receive_json(timeout=5, mode="bytes")  # type: ignore[arg-type]

    def test_too_large_a_message_closes_with_1009(self, echo_url: str) -> None:
        with connect_ws(echo_url, max_message_size_bytes=1000) as ws:
            ws.send_text("x" * 2000)
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_text(timeout=5)
        assert info.value.code == 1009

    def test_statistics_count_both_ways(self, echo_url: str) -> None:
        with connect_ws(echo_url) as ws:
            for i in range(5):
                ws.send_text(str(i))
            assert [ws.receive_text(timeout=5) for _ in range(5)] == list("01234")
            stats = ws.statistics()
        assert stats.messages_sent == 5
        assert stats.messages_received == 5
        assert stats.messages_queued == 0
        assert stats.queue_size == 512


# --------------------------------------------------------------------------- ping


class TestPing:
    def test_ping_wait_returns_when_the_pong_arrives(self, server_url: str) -> None:
        with connect_ws(server_url + "/echo") as ws:
            pong = ws.ping()
            assert isinstance(pong, PongEvent)
            assert pong.wait(5) is True
            assert pong.is_set()
            assert ws.ping(b"mine").wait(timeout=5)
            assert ws.statistics().ping_rtt is not None

    def test_ping_wait_times_out_without_a_pong(self) -> None:
        async def silent(peer: ScriptedPeer) -> None:
            frame = await peer.receive_frame()  # the ping, left unanswered
            assert frame.opcode == 0x9
            await peer.answer_close()

        with scripted(silent) as base:
            with connect_ws(base + "/") as ws:
                pong = ws.ping()
                started = time.monotonic()
                assert pong.wait(0.2) is False
                assert time.monotonic() - started >= 0.15
                assert not pong.is_set()
                # Another thread waiting for ever is released by the close.
                result: list[bool] = []
                waiter = threading.Thread(target=lambda: result.append(pong.wait()))
                waiter.start()
                ws.close()
                waiter.join(5)
            assert result == [True]
            assert pong.wait() is True


# --------------------------------------------------------------------------- typed streams


class Quote(msgspec.Struct):
    sym: str
    px: float
    seq: int


class TestTypedStreams:
    def test_json_stream_of_structs(self, server_url: str) -> None:
        with connect_ws(server_url + "/json?n=5") as ws:
            quotes = ws.json(Quote)
            got = [next(quotes) for _ in range(5)]
        assert got == [Quote("ABC", 1.5, i) for i in range(5)]

    def test_decode_error_is_raised_at_its_position(self, echo_url: str) -> None:
        with connect_ws(echo_url) as ws:
            for text in ("1", "x", "3"):
                ws.send_text(text)
            ws.send_bytes(b"4")
            numbers = ws.json(int)
            assert next(numbers) == 1
            with pytest.raises(WebSocketDecodeError) as info:
                next(numbers)
            assert info.value.payload == "x"
            assert next(numbers) == 3
            with pytest.raises(WebSocketInvalidTypeReceived):
                next(numbers)

    def test_on_error_handler_skips_bad_messages(self, echo_url: str) -> None:
        bad: list[WebSocketDecodeError] = []
        with connect_ws(echo_url) as ws:
            for text in ("1", "oops", "2", "[]", "3"):
                ws.send_text(text)
            numbers = ws.json(int, on_error=bad.append)
            assert [next(numbers) for _ in range(3)] == [1, 2, 3]
        assert [error.payload for error in bad] == ["oops", "[]"]

    def test_text_and_bytes_streams(self, echo_url: str) -> None:
        with connect_ws(echo_url) as ws:
            ws.send_text("a")
            ws.send_text("b")
            ws.send_bytes(b"c")
            texts = ws.text()
            assert [next(texts), next(texts)] == ["a", "b"]
            with pytest.raises(WebSocketInvalidTypeReceived) as info:
                next(texts)
            assert info.value.event.data == b"c"
            ws.send_bytes(b"d")
            assert next(ws.bytes()) == b"d"

    def test_messages_stream_yields_both_kinds(self, echo_url: str) -> None:
        with connect_ws(echo_url) as ws:
            ws.send_text("a")
            ws.send_bytes(b"b")
            messages = ws.messages()
            assert [next(messages), next(messages)] == ["a", b"b"]

    def test_a_stream_ends_quietly_with_the_session(self, server_url: str) -> None:
        with connect_ws(server_url + "/flood?n=50&size=10") as ws:
            texts = ws.text()
            head = [next(texts) for _ in range(5)]
            rest = list(texts)  # the same object resumes, then ends at the close
        assert head + rest == [servers.flood_payload(i, 10) for i in range(50)]

    def test_invalid_arguments(self, echo_url: str) -> None:
        with connect_ws(echo_url) as ws:
            with pytest.raises(ValueError, match="mode"):
                ws.json(mode="bytes")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="on_error"):
                ws.json(on_error="ignore")  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                ws.json(threading.Lock)


# --------------------------------------------------------------------------- the httpx client


class TestClientConfiguration:
    def test_headers_cookies_auth_params_and_base_url_are_used(self, server_url: str) -> None:
        with (
            httpx.Client(
                base_url=server_url.replace("ws://", "http://"),
                headers={"X-Client": "sync"},
                cookies={"flavour": "oat"},
                auth=("user", "secret"),
                params={"from": "client"},
            ) as client,
            connect_ws("/headers", client, headers={"X-Call": "1"}) as ws,
        ):
            headers = ws.receive_json(timeout=5)
            assert ws.response is not None
            assert ws.response.request.url.params["from"] == "client"
        assert headers["x-client"] == "sync"
        assert headers["x-call"] == "1"
        assert headers["cookie"] == "flavour=oat"
        assert headers["authorization"] == "Basic " + base64.b64encode(b"user:secret").decode()

    def test_websocket_client_class(self, echo_url: str) -> None:
        with httpx.Client() as client:
            ws_client = WebSocketClient(client, queue_size=8)
            with ws_client.connect(echo_url, subprotocols=None) as ws:
                ws.send_text("via class")
                assert ws.receive_text(timeout=5) == "via class"
                assert ws.statistics().queue_size == 8

    def test_event_hooks_run(self, echo_url: str) -> None:
        seen: list[str] = []
        with (
            httpx.Client(
                event_hooks={
                    "request": [lambda request: seen.append(f"request {request.method}")],
                    "response": [lambda response: seen.append(f"response {response.status_code}")],
                }
            ) as client,
            connect_ws(echo_url, client),
        ):
            pass
        assert seen == ["request GET", "response 101"]

    def test_cookies_set_by_the_handshake_land_in_the_client(self) -> None:
        async def script(peer: ScriptedPeer) -> None:
            await peer.answer_close()

        with (
            scripted(script, extra_headers=[("Set-Cookie", "session=abc; Path=/")]) as base,
            httpx.Client() as client,
        ):
            with connect_ws(base.replace("ws://", "http://") + "/", client):
                pass
            assert client.cookies.get("session") == "abc"

    def test_a_101_without_a_network_stream_is_an_upgrade_error(self, echo_url: str) -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(101))
        with (
            httpx.Client(transport=transport) as client,
            pytest.raises(WebSocketUpgradeError, match="no network stream") as info,
            connect_ws(echo_url, client),
        ):
            pass
        assert info.value.response.status_code == 101

    def test_a_refusal_through_a_custom_transport_is_an_upgrade_error(self, echo_url: str) -> None:
        # As with httpx-ws: the refused upgrade is reported with its response.
        transport = httpx.MockTransport(lambda request: httpx.Response(403, text="no"))
        with (
            httpx.Client(transport=transport) as client,
            pytest.raises(WebSocketUpgradeError) as info,
            connect_ws(echo_url, client),
        ):
            pass
        assert info.value.response.status_code == 403
        assert info.value.response.text == "no"

    def test_a_transport_mounted_for_other_urls_is_left_out(self, echo_url: str) -> None:
        transport = httpx.MockTransport(sync_peers.upgrade)
        with httpx.Client(mounts={"all://example.invalid": transport}) as client:
            with connect_ws(echo_url, client) as ws:
                ws.send_text("ok")
                assert ws.receive_text(timeout=5) == "ok"
            with connect_ws("ws://example.invalid/", client) as ws:
                ws.send_text("mounted")
                assert ws.receive_text(timeout=5) == "mounted"

    def test_the_proxy_of_the_client_is_used(self, echo_url: str) -> None:
        # A proxy on a port nobody listens on: connecting must fail, where a
        # direct connection would succeed.
        with (
            socket_port() as port,
            httpx.Client(proxy=f"http://127.0.0.1:{port}") as client,
            pytest.raises(httpx.ConnectError),
            connect_ws(echo_url, client),
        ):
            pass

    def test_an_async_client_is_refused(self, echo_url: str) -> None:
        client = httpx.AsyncClient()
        try:
            with pytest.raises(TypeError, match="aconnect_ws"), connect_ws(echo_url, client):  # type: ignore[arg-type]
                pass
        finally:
            anyio.run(client.aclose)

    def test_a_closed_client_is_refused(self, echo_url: str) -> None:
        client = httpx.Client()
        client.close()
        with pytest.raises(RuntimeError, match="closed"), connect_ws(echo_url, client):
            pass

    def test_the_ssl_context_of_the_client_is_used(self, tls_echo_url: str) -> None:
        url, ca = tls_echo_url
        verified = ssl.create_default_context()
        ca.configure_trust(verified)
        with (
            httpx.Client(verify=verified) as client,
            connect_ws(url, client) as ws,
        ):
            ws.send_text("secure")
            assert ws.receive_text(timeout=5) == "secure"
        with (
            httpx.Client() as client,  # the default CA bundle does not know the test CA
            pytest.raises(httpx.ConnectError),
            connect_ws(url, client),
        ):
            pass


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def tls_echo_url() -> Iterator[tuple[str, trustme.CA]]:
    """A TLS echo server (the `websockets` sync server) with a certificate from a test CA."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)

    def echo(connection: websockets.sync.server.ServerConnection) -> None:
        for message in connection:
            connection.send(message)

    server = websockets.sync.server.serve(
        echo, "127.0.0.1", 0, ssl=server_context, compression=None, ping_interval=None
    )
    thread = threading.Thread(target=server.serve_forever, name="tls-echo", daemon=True)
    thread.start()
    try:
        yield f"wss://127.0.0.1:{server.socket.getsockname()[1]}/", ca
    finally:
        server.shutdown()
        thread.join(10)


# --------------------------------------------------------------------------- scripted peers


class TestScriptedPeers:
    def test_a_lost_connection_raises_network_error(self) -> None:
        async def script(peer: ScriptedPeer) -> None:
            await peer.send_frame(OP_TEXT, b"last")
            await peer.abort()

        with scripted(script) as base, connect_ws(base + "/") as ws:
            assert ws.receive_text(timeout=5) == "last"
            with pytest.raises(WebSocketNetworkError):
                ws.receive_text(timeout=5)
            with pytest.raises(WebSocketNetworkError):
                list(ws)

    def test_sends_raise_once_the_connection_is_lost(self) -> None:
        async def script(peer: ScriptedPeer) -> None:
            await peer.receive_message()
            await peer.abort()

        with scripted(script) as base, connect_ws(base + "/") as ws:
            ws.send_text("first")

            def send_until_it_fails() -> None:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # queued sends fail from the loss on
                    ws.send_bytes(b"x" * 1000)

            with pytest.raises(WebSocketNetworkError):
                send_until_it_fails()
            with pytest.raises(WebSocketNetworkError):
                ws.send_text("again")

    def test_keepalive_pings_from_the_helper_thread(self) -> None:
        pings: list[bytes] = []

        async def script(peer: ScriptedPeer) -> None:
            while len(pings) < 2:
                frame = await peer.receive_frame()
                assert frame.opcode == 0x9
                pings.append(frame.payload)
                await peer.send_frame(0xA, frame.payload)
            await peer.send_text("two pings")
            await peer.answer_close()

        with (
            scripted(script) as base,
            connect_ws(base + "/", keepalive_ping_interval_seconds=0.05) as ws,
        ):
            assert ws.receive_text(timeout=5) == "two pings"
        assert len(pings) == 2
