"""Acceptance tests of the sync API, written as an outside user of the library would.

The sync half of the httpx-ws session reference: `connect_ws`, `WebSocketClient`,
`WebSocketSession`, with the reference's parameter names, defaults and exceptions
(``queue.Empty`` on a receive timeout), against the real servers of ``tests/conftest.py``.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
from typing import Any

import httpx
import pytest
import wsproto.events

import streams
from streams import (
    WebSocketClient,
    WebSocketDecodeError,
    WebSocketDisconnect,
    WebSocketInvalidTypeReceived,
    WebSocketNetworkError,
    WebSocketSession,
    WebSocketUpgradeError,
    connect_ws,
)
from tests import servers

TLS_CONTEXT = ssl.create_default_context()


def new_record() -> tuple[str, servers.ConnectionRecord]:
    conn_id = servers.new_id()
    return conn_id, servers.REGISTRY.record(conn_id)


@pytest.fixture
def client() -> Any:
    with httpx.Client(verify=TLS_CONTEXT) as client:
        yield client


def test_round_trip_without_a_client(echo_url: str) -> None:
    with connect_ws(echo_url) as ws:
        assert isinstance(ws, WebSocketSession)
        ws.send_text("Hello!")
        assert ws.receive_text() == "Hello!"
        ws.send_bytes(b"Hello!")
        assert ws.receive_bytes() == b"Hello!"
        ws.send_json({"message": "Hello!"})
        assert ws.receive_json() == {"message": "Hello!"}
        ws.send_json({"n": [1, 2.5, None]}, mode="binary")
        assert ws.receive_json(mode="binary") == {"n": [1, 2.5, None]}
        ws.send_json(data=[1], mode="text")
        assert ws.receive_json(timeout=5, mode="text") == [1]
        assert ws.response is not None
        assert ws.response.status_code == 101
        assert ws.subprotocol is None


def test_receive_returns_wsproto_events(echo_url: str, client: httpx.Client) -> None:
    with connect_ws(echo_url, client) as ws:
        ws.send_text("t")
        ws.send_bytes(b"b")
        text = ws.receive()
        binary = ws.receive(timeout=5)
    assert isinstance(text, wsproto.events.TextMessage)
    assert text.data == "t"
    assert isinstance(binary, wsproto.events.BytesMessage)
    assert binary.data == b"b"


def test_receive_timeouts_raise_queue_empty(echo_url: str, client: httpx.Client) -> None:
    with connect_ws(echo_url, client) as ws:
        for receive in (ws.receive, ws.receive_text, ws.receive_bytes, ws.receive_json):
            start = time.monotonic()
            with pytest.raises(queue.Empty):
                receive(timeout=0.05)
            assert time.monotonic() - start < 1
        with pytest.raises(TimeoutError):
            ws.receive(timeout=0.01)
        ws.send_text("after")
        assert ws.receive_text(timeout=5) == "after"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (wsproto.events.Message(b"Hello!"), b"Hello!"),
        (wsproto.events.Message("Hello!"), "Hello!"),
        (wsproto.events.TextMessage(data="Hello!"), "Hello!"),
        (wsproto.events.BytesMessage(data=b"Hello!"), b"Hello!"),
    ],
    ids=["Message-bytes", "Message-str", "TextMessage", "BytesMessage"],
)
def test_send_message_events(
    echo_url: str, client: httpx.Client, event: wsproto.events.Event, expected: str | bytes
) -> None:
    with connect_ws(echo_url, client) as ws:
        ws.send(event)
        received = ws.receive(timeout=5)
    assert received.data == expected  # type: ignore[attr-defined]
    assert type(received.data) is type(expected)  # type: ignore[attr-defined]


def test_send_is_ordered_after_queued_sends(echo_url: str, client: httpx.Client) -> None:
    with connect_ws(echo_url, client) as ws:
        ws.send_text("first")
        ws.send(wsproto.events.Message("second"))
        ws.send_bytes(b"third")
        assert [ws.receive(timeout=5).data for _ in range(3)] == [  # type: ignore[attr-defined]
            "first",
            "second",
            b"third",
        ]


def test_ping_then_wait(echo_url: str, client: httpx.Client) -> None:
    with connect_ws(echo_url, client) as ws:
        pong_callback = ws.ping()
        assert pong_callback.wait(5) is True
        tagged = ws.ping(payload=b"tag")
        tagged.wait()
        assert tagged.is_set()


def test_close_twice_then_every_call_raises_disconnect(echo_url: str, client: httpx.Client) -> None:
    with connect_ws(echo_url, client) as ws:
        ws.close()
        ws.close()
        assert ws.close_code == 1000
        for _ in range(2):
            start = time.monotonic()
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive(timeout=5)
            assert time.monotonic() - start < 1
            assert (info.value.code, info.value.reason) == (1000, "")
        with pytest.raises(WebSocketDisconnect):
            ws.send_text("late")
        with pytest.raises(WebSocketDisconnect):
            ws.send_bytes(b"late")
        with pytest.raises(WebSocketDisconnect):
            ws.send_json({})
        with pytest.raises(WebSocketDisconnect):
            ws.send(wsproto.events.Message(b"late"))
        with pytest.raises(WebSocketDisconnect):
            ws.ping()
    ws.close()  # after the block: nothing
    with pytest.raises(WebSocketDisconnect):
        ws.receive_text(timeout=1)
    with pytest.raises(WebSocketDisconnect):
        ws.send_text("after the block")


def test_close_code_and_reason_reach_the_server(echo_url: str, client: httpx.Client) -> None:
    conn_id, record = new_record()
    with connect_ws(echo_url, client, params={"id": conn_id}) as ws:
        ws.close(code=4001, reason="done here")
    assert record.finished.wait(5)
    assert (record.close_code, record.close_reason) == (4001, "done here")


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4003, "nope")])
def test_server_close_raises_disconnect_at_once_on_every_call(
    server_url: str, client: httpx.Client, code: int, reason: str
) -> None:
    with connect_ws(server_url + "/close", client, params={"code": code, "reason": reason}) as ws:
        for _ in range(3):
            start = time.monotonic()
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_text(timeout=5)
            assert time.monotonic() - start < 2.5
            assert (info.value.code, info.value.reason) == (code, reason)
        assert (ws.close_code, ws.close_reason) == (code, reason)


def test_iteration_normal_close_ends_and_abnormal_raises(
    echo_url: str, client: httpx.Client
) -> None:
    flood = echo_url.replace("/echo", "/flood")
    with connect_ws(flood, client, params={"n": 4, "size": 8}) as ws:
        assert list(ws) == [servers.flood_payload(i, 8) for i in range(4)]
    with connect_ws(echo_url.replace("/echo", "/recv_then_close?code=4000"), client) as ws:
        ws.send_text("why")
        with pytest.raises(WebSocketDisconnect) as info:
            for _ in ws:
                pass
        assert (info.value.code, info.value.reason) == (4000, "why")


def test_break_out_of_for_and_continue(echo_url: str, client: httpx.Client) -> None:
    with connect_ws(echo_url, client) as ws:
        for word in ("one", "two", "three"):
            ws.send_text(word)
        for message in ws:
            if message == "two":
                break
        assert ws.receive_text(timeout=5) == "three"


@pytest.mark.parametrize("status", [403, 503])
def test_refused_upgrade_raises_upgrade_error(
    server_url: str, client: httpx.Client, status: int
) -> None:
    with (
        pytest.raises(WebSocketUpgradeError) as info,
        connect_ws(server_url + "/reject", client, params={"status": status}),
    ):
        pytest.fail("the upgrade was refused")
    assert isinstance(info.value.response, httpx.Response)
    assert info.value.response.status_code == status


def test_invalid_type_received_carries_the_event(echo_url: str, client: httpx.Client) -> None:
    with connect_ws(echo_url, client) as ws:
        ws.send_bytes(b"\x01")
        with pytest.raises(WebSocketInvalidTypeReceived) as info:
            ws.receive_text(timeout=5)
        assert isinstance(info.value.event, wsproto.events.BytesMessage)
        assert info.value.event.data == b"\x01"
        ws.send_text("t")
        with pytest.raises(WebSocketInvalidTypeReceived) as info:
            ws.receive_bytes(timeout=5)
        assert isinstance(info.value.event, wsproto.events.TextMessage)
        ws.send_json({"a": 1})
        with pytest.raises(WebSocketInvalidTypeReceived):
            ws.receive_json(timeout=5, mode="binary")
        ws.send_text("{bad")
        with pytest.raises(WebSocketDecodeError) as decode_info:
            ws.receive_json(timeout=5)
        assert decode_info.value.payload == "{bad"
        ws.send_text("ok")
        assert ws.receive_text(timeout=5) == "ok"


def test_subprotocols_and_kwargs(uvicorn_websockets_url: str, client: httpx.Client) -> None:
    with connect_ws(
        uvicorn_websockets_url + "/subprotocols", client, subprotocols=["x", "chat.v2"]
    ) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.receive_text(timeout=5) == "chat.v2"
    with connect_ws(
        uvicorn_websockets_url + "/headers",
        client,
        headers={"X-Token": "abc"},
        params={"q": "1"},
        timeout=5.0,
    ) as ws:
        seen = ws.receive_json(timeout=5)
        assert ws.response is not None
        assert ws.response.request.url.params["q"] == "1"
    assert seen["x-token"] == "abc"


def test_explicit_client_configuration_is_used_and_left_open(echo_url: str) -> None:
    with httpx.Client(headers={"X-App": "demo"}, verify=TLS_CONTEXT) as client:
        for _ in range(2):
            with connect_ws(echo_url.replace("/echo", "/headers"), client) as ws:
                assert ws.receive_json(timeout=5)["x-app"] == "demo"
        assert not client.is_closed


class GreetingSession(WebSocketSession):
    def greet(self, name: str) -> str:
        self.send_text(f"hello {name}")
        return self.receive_text(timeout=5)


def test_websocket_client_and_session_class(echo_url: str, client: httpx.Client) -> None:
    ws_client = WebSocketClient(client, queue_size=16, session_class=GreetingSession)
    with ws_client.connect(echo_url) as ws:
        assert isinstance(ws, GreetingSession)
        assert ws.greet("bob") == "hello bob"
        assert ws.statistics().queue_size == 16
    with connect_ws(echo_url, client, session_class=GreetingSession) as ws:
        assert ws.greet("amy") == "hello amy"


def test_message_at_the_limit_and_one_above(echo_url: str, client: httpx.Client) -> None:
    flood = echo_url.replace("/echo", "/flood")
    with connect_ws(flood, client, params={"n": 1, "size": 65_536, "kind": "binary"}) as ws:
        assert len(ws.receive_bytes(timeout=5)) == 65_536
    with connect_ws(flood, client, params={"n": 1, "size": 65_537, "kind": "binary"}) as ws:
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_bytes(timeout=5)
        assert info.value.code == 1009
        with pytest.raises(WebSocketDisconnect):
            ws.receive_bytes(timeout=5)


def test_huge_message_round_trip(echo_url: str, client: httpx.Client) -> None:
    payload = b"\x07" * (2 * 1024 * 1024)
    with connect_ws(echo_url, client, max_message_size_bytes=len(payload)) as ws:
        ws.send_bytes(payload)
        assert ws.receive_bytes(timeout=10) == payload


def test_reset_connection_raises_network_error() -> None:
    """A server that resets the connection: a receive raises WebSocketNetworkError, every time."""
    import socket
    import struct

    from tests.peers import accept_key

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = next(
                line.split(b":", 1)[1].strip().decode()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_key(key).encode()
                + b"\r\n\r\n\x81\x02hi"
            )
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with connect_ws(f"ws://127.0.0.1:{port}/", close_timeout=1) as ws:
            assert ws.receive_text(timeout=5) == "hi"
            for _ in range(2):
                with pytest.raises(WebSocketNetworkError):
                    ws.receive_text(timeout=5)
            assert ws.close_code == 1006
    finally:
        thread.join(5)
        listener.close()


def test_thread_blocked_in_receive_is_released_by_close(
    echo_url: str, client: httpx.Client
) -> None:
    outcome: list[BaseException] = []
    with connect_ws(echo_url, client) as ws:

        def wait() -> None:
            try:
                ws.receive_text()
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.05)
        ws.close()
        thread.join(5)
        assert not thread.is_alive()
    assert [type(exc) for exc in outcome] == [WebSocketDisconnect]


def test_sends_from_many_threads(echo_url: str, client: httpx.Client) -> None:
    with connect_ws(echo_url, client) as ws:

        def worker(n: int) -> None:
            for i in range(50):
                ws.send_json({"w": n, "i": i})

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        replies = [ws.receive_json(timeout=5) for _ in range(200)]
    for n in range(4):
        assert [r["i"] for r in replies if r["w"] == n] == list(range(50))


def test_exception_in_the_block_comes_out_as_itself(echo_url: str, client: httpx.Client) -> None:
    with pytest.raises(KeyError), connect_ws(echo_url, client) as ws:  # noqa: PT012
        ws.send_text("x")
        raise KeyError("mine")
    assert ws.closed
    assert ws.close_code == 1000


def test_statistics_fields(echo_url: str, client: httpx.Client) -> None:
    with connect_ws(echo_url, client) as ws:
        for i in range(3):
            ws.send_text(str(i))
        assert [ws.receive_text(timeout=5) for _ in range(3)] == ["0", "1", "2"]
        stats = ws.statistics()
    assert isinstance(stats, streams.SessionStatistics)
    assert stats.messages_sent == 3
    assert stats.messages_received == 3
    assert stats.bytes_sent > 3
    assert stats.queue_size == 512


def test_typed_json_stream_bad_message_carries_the_payload(
    echo_url: str, client: httpx.Client
) -> None:
    import msgspec

    class Tick(msgspec.Struct):
        sym: str
        px: float

    with connect_ws(echo_url, client) as ws:
        ws.send_json(Tick("ABC", 1.5))
        ws.send_text('{"sym": "ABC", "px": "oops"}')
        ws.send_json(Tick("XYZ", 2.0))
        ticks = ws.json(Tick)
        assert next(ticks) == Tick("ABC", 1.5)
        with pytest.raises(WebSocketDecodeError) as info:
            next(ticks)
        assert info.value.payload == '{"sym": "ABC", "px": "oops"}'
        assert next(ticks) == Tick("XYZ", 2.0)


def test_refused_upgrade_body_is_readable(websockets_url: str, client: httpx.Client) -> None:
    with (
        pytest.raises(WebSocketUpgradeError) as info,
        connect_ws(websockets_url + "/reject?status=403", client),
    ):
        pytest.fail("the upgrade was refused")
    assert info.value.response.text == "rejected\n"


def test_upgrade_refused_through_a_mock_transport() -> None:
    with (
        httpx.Client(
            base_url="http://localhost:8000",
            transport=httpx.MockTransport(lambda _: httpx.Response(400)),
        ) as client,
        pytest.raises(WebSocketUpgradeError),
        connect_ws("http://socket/ws", client),
    ):
        pass


def test_close_from_another_thread_while_iterating(echo_url: str, client: httpx.Client) -> None:
    seen: list[str | bytes] = []
    got_one = threading.Event()
    with connect_ws(echo_url, client) as ws:
        ws.send_text("first")

        def consume() -> None:
            for message in ws:  # a normal close (1000) ends the loop quietly
                seen.append(message)
                got_one.set()

        thread = threading.Thread(target=consume)
        thread.start()
        assert got_one.wait(5)
        ws.close()
        thread.join(5)
        assert not thread.is_alive()
    assert seen == ["first"]


def test_no_helper_thread_outlives_its_session(echo_url: str, client: httpx.Client) -> None:
    before = {t.ident for t in threading.enumerate()}
    with connect_ws(echo_url, client) as ws:
        ws.send_text("x")
        assert ws.receive_text(timeout=5) == "x"
    with (
        pytest.raises(WebSocketUpgradeError),
        connect_ws(echo_url.replace("/echo", "/reject"), client),
    ):
        pass
    with connect_ws(echo_url, client) as ws:
        ws.close()
    deadline = time.monotonic() + 5
    while {t.ident for t in threading.enumerate()} - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {t.ident for t in threading.enumerate()} - before == set()
