"""The `Websocket` connection manager: states, typed packets, and the signals the policy chooses.

Policy and cause classification are pure and tested without an event loop; everything else
runs against real servers on 127.0.0.1 (scripted peers that misbehave on purpose), on asyncio
and trio.
"""

from __future__ import annotations

import datetime
import email.utils
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
import trustme
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

import streams._policy as policy_module
from streams import (
    WebSocketDisconnect,
    WebSocketKeepaliveTimeout,
    WebSocketNetworkError,
    WebSocketUpgradeError,
)
from streams.websocket import (
    DEFAULT_CLOSE_ACTIONS,
    DisconnectSignal,
    ReconnectSignal,
    ResumeSignal,
    Websocket,
    WebsocketAction,
    WebsocketCause,
    WebsocketCauseKind,
    WebsocketPacket,
    WebsocketPacketBytes,
    WebsocketPacketJSON,
    WebsocketPayloadError,
    WebsocketPolicy,
    WebsocketSignal,
    WebsocketState,
)
from tests.peers import CloseReceived, ScriptedPeer, accept_key, scripted_server

R, S, D = WebsocketAction.RECONNECT, WebsocketAction.RESUME, WebsocketAction.DISCONNECT
FAST_KEEPALIVE = {"keepalive_ping_interval_seconds": 0.05, "keepalive_ping_timeout_seconds": 0.1}


async def answer_handshake(
    peer: ScriptedPeer, status: int = 101, headers: Sequence[tuple[str, str]] = ()
) -> None:
    """Answer the request (read by `scripted_server(handshake=False)`) with ``status``."""
    if status == 101:
        key = peer.header("Sec-WebSocket-Key") or ""
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"]
        lines.append(f"Sec-WebSocket-Accept: {accept_key(key)}")
    else:
        lines = [f"HTTP/1.1 {status} Status", "Content-Length: 0", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    await peer.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())


@asynccontextmanager
async def bare(**options: Any) -> AsyncIterator[Websocket]:
    """A bare-mode manager, always disconnected at the end."""
    ws = Websocket(**options)
    try:
        yield ws
    finally:
        await ws.disconnect()


async def echo_until_closed(peer: ScriptedPeer) -> None:
    """Echo until the client closes (answering it) or goes away."""
    try:
        await peer.echo(timeout=10)
    except anyio.EndOfStream:
        pass


# --------------------------------------------------------------------------- states and packets


def test_state_values_are_the_documented_ones() -> None:
    assert [(s.name, int(s)) for s in WebsocketState] == [
        ("CONNECTED", 0),
        ("CONNECTING", 1),
        ("DISCONNECTED", 2),
        ("DISCONNECTING", 3),
    ]


def test_packets_are_dataclasses_of_the_base() -> None:
    assert isinstance(WebsocketPacketBytes(b"x"), WebsocketPacket)
    assert isinstance(WebsocketPacketJSON({"a": 1}), WebsocketPacket)
    assert WebsocketPacketBytes(b"x") == WebsocketPacketBytes(payload=b"x")
    assert WebsocketPacketJSON({"a": 1}).payload == {"a": 1}


def test_new_websocket_is_disconnected() -> None:
    ws = Websocket()
    assert ws.state is WebsocketState.DISCONNECTED
    assert (ws.connected, ws.connecting, ws.disconnected, ws.disconnecting) == (
        False,
        False,
        True,
        False,
    )


def test_signals_share_a_base_and_carry_the_cause() -> None:
    cause = WebsocketCause.closed(4001, "kicked")
    for signal_class, action in [(ReconnectSignal, R), (ResumeSignal, S), (DisconnectSignal, D)]:
        signal = WebsocketSignal.for_action(action, cause)
        assert type(signal) is signal_class
        assert signal.action is action
        assert (signal.code, signal.reason, signal.status_code) == (4001, "kicked", None)
        assert "4001" in str(signal)
    assert DisconnectSignal().cause.kind is WebsocketCauseKind.CLIENT_DISCONNECT
    assert issubclass(WebsocketSignal, streams_root())


def streams_root() -> type[Exception]:
    import streams

    return streams.HTTPXWSException


# --------------------------------------------------------------------------- the default policy


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (1000, R),
        (1005, R),
        (1001, R),
        (1006, R),
        (1011, R),
        (1012, R),
        (1013, R),
        (1014, R),
        (1002, D),
        (1003, D),
        (1007, D),
        (1008, D),
        (1009, D),
        (1010, D),
        (1015, D),
        (3000, D),
        (4000, D),
        (4999, D),
    ],
)
def test_default_policy_for_close_codes(code: int, action: WebsocketAction) -> None:
    policy = WebsocketPolicy()
    assert policy.decide(WebsocketCause.closed(code)) is action


@pytest.mark.parametrize(
    ("status", "action"),
    [
        *[(500, R), (502, R), (503, R), (504, R), (429, R), (408, R)],
        *[(400, D), (401, D), (403, D), (404, D), (426, D), (200, D), (302, D)],
    ],
)
def test_default_policy_for_handshake_statuses(status: int, action: WebsocketAction) -> None:
    cause = WebsocketCause(WebsocketCauseKind.HTTP_STATUS, status_code=status)
    assert WebsocketPolicy().decide(cause) is action


@pytest.mark.parametrize(
    ("kind", "action"),
    [
        (WebsocketCauseKind.NETWORK_ERROR, R),
        (WebsocketCauseKind.KEEPALIVE_TIMEOUT, R),
        (WebsocketCauseKind.CONNECT_ERROR, R),
        (WebsocketCauseKind.TLS_ERROR, D),
        (WebsocketCauseKind.CLIENT_DISCONNECT, D),
    ],
)
def test_default_policy_for_failures(kind: WebsocketCauseKind, action: WebsocketAction) -> None:
    assert WebsocketPolicy().decide(WebsocketCause(kind)) is action


def test_default_close_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        DEFAULT_CLOSE_ACTIONS[4000] = R  # type: ignore[index]


def test_policy_overrides() -> None:
    policy = WebsocketPolicy(
        resume_codes={4000, 4001},
        close_codes={4001: R, 1008: R, 1000: D},
        status_codes={503: D, 401: R},
        unknown_close=R,
        tls_error=R,
    )
    assert policy.close_action(4000) is S
    assert policy.close_action(4001) is R  # close_codes win over resume_codes
    assert policy.close_action(1008) is R
    assert policy.close_action(1000) is D
    assert policy.close_action(1005) is R  # normal_close still applies to 1005
    assert policy.close_action(4999) is R
    assert policy.status_action(503) is D
    assert policy.status_action(401) is R
    assert policy.status_action(502) is R
    assert policy.decide(WebsocketCause(WebsocketCauseKind.TLS_ERROR)) is R
    assert policy.resume_codes == frozenset({4000, 4001})


def test_normal_close_can_mean_disconnect() -> None:
    policy = WebsocketPolicy(normal_close=D)
    assert policy.close_action(1000) is D
    assert policy.close_action(1005) is D
    assert policy.close_action(1001) is R


@pytest.mark.parametrize("bad", [{"close_codes": {999: R}}, {"resume_codes": {5000}}])
def test_policy_rejects_impossible_codes(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="between 1000 and 4999"):
        WebsocketPolicy(**bad)


def test_policy_accepts_action_names() -> None:
    policy = WebsocketPolicy(close_codes={4000: "resume"}, network_error="disconnect")  # type: ignore[dict-item, arg-type]
    assert policy.close_action(4000) is S
    assert policy.network_error is D


def test_policy_rejects_unknown_actions() -> None:
    with pytest.raises(ValueError, match="retry"):
        WebsocketPolicy(close_codes={4000: "retry"})  # type: ignore[dict-item]


def test_policy_can_be_subclassed() -> None:
    class OnlyOnce(WebsocketPolicy):
        def decide(self, cause: WebsocketCause) -> WebsocketAction:
            if cause.kind is WebsocketCauseKind.CONNECT_ERROR:
                return D
            return super().decide(cause)

    assert OnlyOnce().decide(WebsocketCause(WebsocketCauseKind.CONNECT_ERROR)) is D
    assert OnlyOnce().decide(WebsocketCause.closed(1012)) is R


# --------------------------------------------------------------------------- classification


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://x"))


def test_classify_upgrade_error_with_retry_after() -> None:
    exc = WebSocketUpgradeError(_response(503, {"Retry-After": "7"}))
    cause = WebsocketCause.from_exception(exc, connecting=True)
    assert cause is not None
    assert (cause.kind, cause.status_code, cause.retry_after) == ("http_status", 503, 7.0)
    assert cause.exception is exc


def test_classify_close_and_network_errors() -> None:
    close = WebsocketCause.from_exception(WebSocketDisconnect(1012, "restart"), connecting=False)
    assert close == WebsocketCause.closed(1012, "restart")
    lost = WebsocketCause.from_exception(WebSocketNetworkError("connection lost"), connecting=False)
    assert lost is not None
    assert lost.kind is WebsocketCauseKind.NETWORK_ERROR
    keepalive = WebSocketKeepaliveTimeout("keepalive ping timeout")
    cause = WebsocketCause.from_exception(keepalive, connecting=False)
    assert cause is not None
    assert cause.kind is WebsocketCauseKind.KEEPALIVE_TIMEOUT
    refused = WebsocketCause.from_exception(httpx.ConnectError("refused"), connecting=True)
    assert refused is not None
    assert refused.kind is WebsocketCauseKind.CONNECT_ERROR
    reset = WebsocketCause.from_exception(ConnectionResetError(), connecting=False)
    assert reset is not None
    assert reset.kind is WebsocketCauseKind.NETWORK_ERROR


def test_classify_tls_error_anywhere_in_the_chain() -> None:
    try:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as exc:
            raise httpx.ConnectError("tls") from exc
    except httpx.ConnectError as exc:
        cause = WebsocketCause.from_exception(exc, connecting=True)
    assert cause is not None
    assert cause.kind is WebsocketCauseKind.TLS_ERROR


def test_classify_single_exception_groups() -> None:
    group = ExceptionGroup("x", [ExceptionGroup("y", [WebSocketDisconnect(1008)])])
    assert WebsocketCause.from_exception(group, connecting=False) == WebsocketCause.closed(1008)


@pytest.mark.parametrize(
    "exc", [ValueError("bug"), httpx.UnsupportedProtocol("ftp"), KeyError("x"), RuntimeError()]
)
def test_unrelated_exceptions_are_not_connection_failures(exc: Exception) -> None:
    assert WebsocketCause.from_exception(exc, connecting=True) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("5", 5.0), (" 0 ", 0.0), ("-3", 0.0), ("1.5", 1.5), ("soon", None), ("", None)],
        *[(None, None), ("nan", None), ("inf", None)],
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert policy_module._retry_after_seconds(value) == expected


def test_retry_after_http_date() -> None:
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    later = email.utils.format_datetime(now + datetime.timedelta(seconds=90), usegmt=True)
    assert policy_module._retry_after_seconds(later, now=now.timestamp()) == 90.0
    earlier = email.utils.format_datetime(now - datetime.timedelta(seconds=90), usegmt=True)
    assert policy_module._retry_after_seconds(earlier, now=now.timestamp()) == 0.0


# --------------------------------------------------------------------------- receiving and sending


@pytest.mark.anyio
async def test_receive_gives_typed_packets_and_sends_arrive() -> None:
    seen: list[str | bytes] = []

    async def script(peer: ScriptedPeer) -> None:
        await peer.send_bytes(b"\x00\xff")
        await peer.send_text('{"sym": "ABC", "px": 1.5}')
        seen.append(await peer.receive_message())
        seen.append(await peer.receive_message())
        await echo_until_closed(peer)

    async with scripted_server(script) as url, bare() as ws:
        await ws.connect(url + "/feed")
        assert ws.state is WebsocketState.CONNECTED
        assert ws.connected
        assert ws.session is not None
        assert await ws.receive() == WebsocketPacketBytes(b"\x00\xff")
        assert await ws.receive() == WebsocketPacketJSON({"sym": "ABC", "px": 1.5})
        await ws.send_json({"op": "subscribe"})
        await ws.send_bytes(b"raw")
        await ws.disconnect()
        assert ws.disconnected
        assert ws.session is None
    assert seen == ['{"op":"subscribe"}', b"raw"]


@pytest.mark.anyio
@pytest.mark.parametrize("text", ["[1, 2]", '"just a string"', "42", "not json {"])
async def test_text_that_is_not_a_json_object_is_a_runtime_error(text: str) -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text(text)
        await peer.send_text('{"after": true}')
        await echo_until_closed(peer)

    async with scripted_server(script) as url, bare() as ws:
        await ws.connect(url)
        with pytest.raises(RuntimeError, match="unexpected payload type") as info:
            await ws.receive()
        assert isinstance(info.value, WebsocketPayloadError)
        assert info.value.payload == text
        # The bad message is reported; the connection goes on.
        assert ws.connected
        assert await ws.receive() == WebsocketPacketJSON({"after": True})
        await ws.disconnect()


@pytest.mark.anyio
async def test_send_json_rejects_what_json_cannot_encode_and_stays_connected() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await echo_until_closed(peer)

    async with scripted_server(script) as url, bare() as ws:
        await ws.connect(url)
        with pytest.raises(TypeError):
            await ws.send_json({"x": object()})
        assert ws.connected
        await ws.send_json({"x": 1})
        assert await ws.receive() == WebsocketPacketJSON({"x": 1})
        await ws.disconnect()


@pytest.mark.anyio
async def test_calls_before_connect_and_after_disconnect() -> None:
    ws = Websocket()
    with pytest.raises(RuntimeError, match="not connected"):
        await ws.receive()
    await ws.disconnect()  # nothing to do
    assert ws.disconnected

    async def script(peer: ScriptedPeer) -> None:
        assert await peer.answer_close() == (1000, "")

    async with scripted_server(script) as url:
        await ws.connect(url)
        with pytest.raises(RuntimeError, match="CONNECTED"):
            await ws.connect(url)
        await ws.disconnect()
    with pytest.raises(DisconnectSignal) as info:
        await ws.receive()
    assert info.value.cause.kind is WebsocketCauseKind.CLIENT_DISCONNECT
    with pytest.raises(DisconnectSignal):
        await ws.send_bytes(b"x")


# ------------------------------------------------------------------------ signals from real peers


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "signal_class"),
    [
        (1000, ReconnectSignal),
        (1001, ReconnectSignal),
        (1011, ReconnectSignal),
        (1012, ReconnectSignal),
        (1013, ReconnectSignal),
        (1002, DisconnectSignal),
        (1003, DisconnectSignal),
        (1007, DisconnectSignal),
        (1008, DisconnectSignal),
        (1009, DisconnectSignal),
        (1010, DisconnectSignal),
        (4000, DisconnectSignal),
        (None, ReconnectSignal),  # a close frame without a code: 1005
    ],
)
async def test_server_close_code_gives_the_policy_signal(
    code: int | None, signal_class: type[WebsocketSignal]
) -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text('{"last": true}')
        await peer.close_handshake(code, "bye" if code else "")

    async with scripted_server(script) as url, bare() as ws:
        await ws.connect(url)
        assert await ws.receive() == WebsocketPacketJSON({"last": True})
        with pytest.raises(signal_class) as info:
            await ws.receive()
        assert info.value.cause.kind is WebsocketCauseKind.CLOSE
        assert info.value.code == (1005 if code is None else code)
        assert isinstance(info.value.__cause__, WebSocketDisconnect)
        assert ws.state is WebsocketState.DISCONNECTED
        # The same signal again until the next connect.
        with pytest.raises(signal_class):
            await ws.send_json({"late": 1})
        await ws.disconnect()


@pytest.mark.anyio
async def test_configured_application_code_gives_resume() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.close_handshake(4000, "resume me")

    policy = WebsocketPolicy(resume_codes={4000})
    async with scripted_server(script) as url, bare(policy=policy) as ws:
        await ws.connect(url)
        with pytest.raises(ResumeSignal) as info:
            await ws.receive()
        assert (info.value.code, info.value.reason) == (4000, "resume me")


@pytest.mark.anyio
async def test_reset_connection_gives_reconnect() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.abort()

    async with scripted_server(script) as url, bare() as ws:
        await ws.connect(url)
        with pytest.raises(ReconnectSignal) as info:
            await ws.receive()
        assert info.value.cause.kind is WebsocketCauseKind.NETWORK_ERROR
        await ws.disconnect()


@pytest.mark.anyio
async def test_silent_server_gives_reconnect_after_keepalive_timeout() -> None:
    async def script(peer: ScriptedPeer) -> None:
        # Read (and never answer) the pings until the client gives up.
        frames = await peer.wait_eof(timeout=5)
        assert any(frame.opcode == 0x9 for frame in frames)

    async with scripted_server(script) as url, bare(**FAST_KEEPALIVE) as ws:
        await ws.connect(url)
        with anyio.fail_after(5):
            with pytest.raises(ReconnectSignal) as info:
                await ws.receive()
        assert info.value.cause.kind is WebsocketCauseKind.KEEPALIVE_TIMEOUT
        await ws.disconnect()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "signal_class"),
    [
        (503, ReconnectSignal),
        (429, ReconnectSignal),
        (401, DisconnectSignal),
        (404, DisconnectSignal),
    ],
)
async def test_refused_handshake_gives_the_policy_signal(
    status: int, signal_class: type[WebsocketSignal]
) -> None:
    headers = [("Retry-After", "3")]
    async with scripted_server(None, status=status, extra_headers=headers) as url, bare() as ws:
        with pytest.raises(signal_class) as info:
            await ws.connect(url)
        assert ws.state is WebsocketState.DISCONNECTED
        assert info.value.status_code == status
        assert info.value.cause.retry_after == 3.0
        assert isinstance(info.value.__cause__, WebSocketUpgradeError)


@pytest.mark.anyio
async def test_connection_refused_gives_reconnect() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with bare() as ws:
        with pytest.raises(ReconnectSignal) as info:
            await ws.connect(f"ws://127.0.0.1:{port}/feed")
        assert info.value.cause.kind is WebsocketCauseKind.CONNECT_ERROR
        assert ws.disconnected


@pytest.mark.anyio
async def test_untrusted_certificate_gives_disconnect() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    listener = (await anyio.create_tcp_listener(local_host="127.0.0.1")).listeners[0]
    assert isinstance(listener, anyio.abc.SocketListener)
    port = listener.extra(SocketAttribute.local_port)

    async def serve_one() -> None:
        async with listener:
            stream = await listener.accept()
            with pytest.raises((ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream)):
                await TLSStream.wrap(stream, server_side=True, ssl_context=server_context)
            await stream.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_one)
        async with bare() as ws:
            with pytest.raises(DisconnectSignal) as info:
                await ws.connect(f"wss://127.0.0.1:{port}/feed")
            assert info.value.cause.kind is WebsocketCauseKind.TLS_ERROR


@pytest.mark.anyio
async def test_the_same_manager_reconnects_after_a_signal() -> None:
    connections = 0

    async def script(peer: ScriptedPeer) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await answer_handshake(peer, 503)
            return
        await answer_handshake(peer)
        await peer.send_text(f'{{"connection": {connections}}}')
        if connections == 2:
            await peer.close_handshake(1012, "restart")
        else:
            await echo_until_closed(peer)

    packets: list[WebsocketPacket] = []
    signals: list[type[WebsocketSignal]] = []
    async with scripted_server(script, handshake=False) as url, bare() as ws:
        while len(packets) < 2:
            try:
                await ws.connect(url)
                while len(packets) < 2:
                    packets.append(await ws.receive())
            except (ReconnectSignal, ResumeSignal) as signal:
                signals.append(type(signal))
        await ws.disconnect()
    assert signals == [ReconnectSignal, ReconnectSignal]
    assert packets == [
        WebsocketPacketJSON({"connection": 2}),
        WebsocketPacketJSON({"connection": 3}),
    ]


# --------------------------------------------------------------------------- tasks and modes


@pytest.mark.anyio
async def test_bare_mode_disconnect_from_another_task_closes_with_1000() -> None:
    closes: list[int] = []

    async def script(peer: ScriptedPeer) -> None:
        with pytest.raises(CloseReceived) as info:
            await peer.receive_message(timeout=5)
        closes.append(info.value.code)

    async with scripted_server(script) as url:
        ws = Websocket()
        await ws.connect(url)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.disconnect)
        assert ws.disconnected
        with pytest.raises(DisconnectSignal):
            await ws.receive()
    assert closes == [1000]


@pytest.mark.anyio
async def test_shared_mode_disconnect_from_another_task_ends_a_pending_receive() -> None:
    closes: list[tuple[int, str]] = []

    async def script(peer: ScriptedPeer) -> None:
        with pytest.raises(CloseReceived) as info:
            await peer.receive_message(timeout=5)
        closes.append((info.value.code, info.value.reason))
        await peer.send_close(info.value.code)
        await peer.close_tcp()

    async with scripted_server(script) as url, Websocket() as ws:
        outcome: list[DisconnectSignal] = []

        async def receiver() -> None:
            try:
                await ws.receive()
            except DisconnectSignal as signal:
                outcome.append(signal)

        async def connect_elsewhere() -> None:
            await ws.connect(url)

        async with anyio.create_task_group() as tg:
            await tg.start(_run_and_report, connect_elsewhere)
            assert ws.connected
            tg.start_soon(receiver)
            await anyio.wait_all_tasks_blocked()  # the receiver waits in receive()
            await ws.disconnect()
        assert ws.disconnected
        assert len(outcome) == 1
        assert outcome[0].cause.kind is WebsocketCauseKind.CLIENT_DISCONNECT
    assert closes == [(1000, "")]


async def _run_and_report(fn: Any, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    await fn()
    task_status.started()


@pytest.mark.anyio
async def test_shared_mode_disconnect_while_connecting_aborts_the_attempt() -> None:
    request_seen = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        request_seen.set()
        await peer.wait_eof(timeout=5)  # never answer the handshake

    async with scripted_server(script, handshake=False) as url, Websocket() as ws:
        outcome: list[BaseException] = []

        async def connector() -> None:
            try:
                await ws.connect(url)
            except DisconnectSignal as signal:
                outcome.append(signal)

        async with anyio.create_task_group() as tg:
            tg.start_soon(connector)
            await request_seen.wait()
            assert ws.state is WebsocketState.CONNECTING
            assert ws.connecting
            await ws.disconnect()
        assert ws.disconnected
        assert len(outcome) == 1
        assert isinstance(outcome[0], DisconnectSignal)


@pytest.mark.anyio
async def test_shared_mode_leaving_the_block_disconnects() -> None:
    async def script(peer: ScriptedPeer) -> None:
        assert await peer.echo(timeout=5) == (1000, "")

    async with scripted_server(script) as url:
        async with Websocket() as ws:
            await ws.connect(url)
            await ws.send_json({"a": 1})
            assert await ws.receive() == WebsocketPacketJSON({"a": 1})
        assert ws.disconnected


@pytest.mark.anyio
async def test_disconnecting_state_is_visible_during_the_close_handshake() -> None:
    close_seen = anyio.Event()
    finish = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        code, _ = await peer.receive_close()
        close_seen.set()
        await finish.wait()
        await peer.send_close(code)
        await peer.close_tcp()

    async with scripted_server(script) as url, Websocket() as ws:
        await ws.connect(url)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.disconnect)
            await close_seen.wait()
            assert ws.state is WebsocketState.DISCONNECTING
            assert ws.disconnecting
            finish.set()
        assert ws.disconnected


@pytest.mark.anyio
@pytest.mark.parametrize("send", ["json", "bytes"])
async def test_a_send_on_a_closed_connection_gives_the_signal(send: str) -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.close_handshake(1012, "restart")

    async with scripted_server(script) as url, bare() as ws:
        await ws.connect(url)
        session = ws.session
        assert session is not None
        # The session sees the close; the manager learns of it on its next call.
        with pytest.raises(WebSocketDisconnect):
            await session.receive()
        sender = ws.send_json({"x": 1}) if send == "json" else ws.send_bytes(b"x")
        with pytest.raises(ReconnectSignal) as info:
            await sender
        assert info.value.code == 1012
        assert ws.disconnected


@pytest.mark.anyio
async def test_an_error_in_the_block_comes_out_as_itself() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await echo_until_closed(peer)

    ws = Websocket()

    async def fail_inside(url: str) -> None:
        async with ws:
            await ws.connect(url)
            raise KeyError("mine")

    async def enter_twice() -> None:
        async with ws, ws:
            pass

    async with scripted_server(script) as url:
        with pytest.raises(KeyError):
            await fail_inside(url)
        assert ws.disconnected
        with pytest.raises(RuntimeError, match="already entered"):
            await enter_twice()
