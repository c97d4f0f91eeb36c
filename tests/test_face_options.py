"""The long-lived faces' options: fresh credentials per attempt, slow consumers and quiet feeds.

Scripted servers on 127.0.0.1 record the request of every connection, so each
test sees what each attempt sent.
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

import streams
from streams._options import option_names
from streams.websocket import (
    ReconnectSignal,
    Websocket,
    WebsocketAction,
    WebsocketCauseKind,
    WebsocketPacketJSON,
    WebsocketPolicy,
)
from tests.peers import OP_BINARY, ScriptedPeer, build_frame, scripted_server

pytestmark = pytest.mark.anyio

FAST = streams.Backoff(initial=0.01, maximum=0.05)
# A policy that stops on the close code the overflow sends: the reconnect must
# come from the error, not from the code.
STRICT_1008 = WebsocketPolicy(close_codes={1008: WebsocketAction.DISCONNECT})


def counter(prefix: str) -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


class Recorder:
    """A script that records each connection's token and query, says hello, then restarts."""

    def __init__(self, restart: bool = True) -> None:
        self.tokens: list[str | None] = []
        self.paths: list[str] = []
        self.restart = restart

    async def __call__(self, peer: ScriptedPeer) -> None:
        self.tokens.append(peer.header("authorization"))
        self.paths.append(peer.path)
        await peer.send_text(json.dumps({"hello": len(self.tokens)}))
        if self.restart:
            await peer.send_close(1012, "restart")  # the policy reconnects
        await peer.receive_close(timeout=10)


async def test_feed_evaluates_sync_headers_and_async_params_before_every_attempt() -> None:
    token = counter("Bearer t")
    numbers = itertools.count(1)

    async def params() -> dict[str, str]:
        await anyio.lowlevel.checkpoint()
        return {"n": str(next(numbers))}

    recorder = Recorder()
    with anyio.fail_after(10):
        async with scripted_server(recorder) as url:
            headers = lambda: {"Authorization": token()}  # noqa: E731
            async with streams.reconnecting_ws(
                url + "/feed", headers=headers, params=params, backoff=FAST
            ) as feed:
                received = [json.loads(await feed.receive()) for _ in range(3)]
    assert received == [{"hello": 1}, {"hello": 2}, {"hello": 3}]
    assert recorder.tokens[:3] == ["Bearer t1", "Bearer t2", "Bearer t3"]
    assert recorder.paths[:3] == ["/feed?n=1", "/feed?n=2", "/feed?n=3"]


async def test_feed_keeps_plain_headers_and_params() -> None:
    recorder = Recorder()
    with anyio.fail_after(10):
        async with (
            scripted_server(recorder) as url,
            streams.reconnecting_ws(
                url + "/", headers={"Authorization": "fixed"}, params={"a": "1"}, backoff=FAST
            ) as feed,
        ):
            received = [json.loads(await feed.receive()) for _ in range(2)]
    assert received == [{"hello": 1}, {"hello": 2}]
    assert recorder.tokens[:2] == ["fixed", "fixed"]
    assert recorder.paths[:2] == ["/?a=1", "/?a=1"]


async def test_feed_ends_with_the_error_of_a_headers_function() -> None:
    def broken() -> dict[str, str]:
        raise LookupError("no token in the vault")

    recorder = Recorder()
    with anyio.fail_after(10):
        async with (
            scripted_server(recorder) as url,
            streams.reconnecting_ws(url + "/", headers=broken, backoff=FAST) as feed,
        ):
            with pytest.raises(LookupError, match="no token in the vault"):
                await feed.receive()
    assert recorder.tokens == []  # no request was made


async def test_websocket_evaluates_headers_and_params_at_each_connect() -> None:
    async def headers() -> dict[str, str]:
        return {"Authorization": token()}

    token = counter("Bearer w")
    queries = counter("q=")
    recorder = Recorder(restart=False)
    with anyio.fail_after(10):
        async with (
            scripted_server(recorder) as url,
            Websocket(headers=headers, params=queries) as ws,
        ):
            for number in (1, 2):
                await ws.connect(url + "/ws")  # seed 2: a plain string
                assert await ws.receive() == WebsocketPacketJSON({"hello": number})
                await ws.disconnect()
    assert recorder.tokens == ["Bearer w1", "Bearer w2"]
    assert recorder.paths == ["/ws?q=1", "/ws?q=2"]


async def receive_all(ws: Websocket) -> None:
    while True:
        await ws.receive()


async def _overflow_script(peer: ScriptedPeer) -> None:
    await peer.send_raw(b"".join(build_frame(OP_BINARY, f"m{i}".encode()) for i in range(20)))
    await peer.receive_close(timeout=10)
    await peer.close_tcp()


async def test_websocket_receive_raises_reconnect_signal_on_overflow() -> None:
    overflowed = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        await _overflow_script(peer)
        overflowed.set()

    with anyio.fail_after(10):
        async with (
            scripted_server(script) as url,
            Websocket(
                queue_size=2, overflow="disconnect", lag_timeout=0.2, policy=STRICT_1008
            ) as ws,
        ):
            await ws.connect(url + "/")
            await overflowed.wait()  # the consumer fell behind on purpose
            with pytest.raises(ReconnectSignal) as info:
                await receive_all(ws)
    cause = info.value.cause
    assert cause is not None
    assert cause.kind is WebsocketCauseKind.NETWORK_ERROR
    assert isinstance(cause.exception, streams.WebSocketOverflowError)
    assert isinstance(info.value.__cause__, streams.WebSocketOverflowError)


async def test_websocket_receive_raises_reconnect_signal_on_a_stale_feed() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.receive_close(timeout=10)  # says nothing

    with anyio.fail_after(10):
        async with (
            scripted_server(script) as url,
            Websocket(stale_after=0.2, policy=STRICT_1008) as ws,
        ):
            await ws.connect(url + "/")
            with pytest.raises(ReconnectSignal) as info:
                await ws.receive()
    assert isinstance(info.value.__cause__, streams.WebSocketStaleError)


async def test_feed_reconnects_after_overflow_and_staleness() -> None:
    connections = 0
    overflowed = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await _overflow_script(peer)
            overflowed.set()
        elif connections == 2:
            await peer.receive_close(timeout=10)  # quiet: stale
        else:
            await peer.send_text("back")
            await peer.receive_close(timeout=10)

    changes: list[streams.StateChange] = []
    with anyio.fail_after(10):
        async with (
            scripted_server(script) as url,
            streams.reconnecting_ws(
                url + "/",
                backoff=FAST,
                policy=STRICT_1008,
                queue_size=2,
                overflow="disconnect",
                lag_timeout=0.2,
                stale_after=0.5,
                on_state_change=changes.append,
            ) as feed,
        ):
            await overflowed.wait()  # the consumer fell behind on purpose
            received = [await feed.receive()]
            while received[-1] != "back":
                received.append(await feed.receive())
    errors = [
        type(change.cause.exception)
        for change in changes
        if change.cause is not None and change.cause.exception is not None
    ]
    assert streams.WebSocketOverflowError in errors
    assert streams.WebSocketStaleError in errors
    assert all(c.action is not WebsocketAction.DISCONNECT for c in changes if not c.final)


@pytest.mark.parametrize(
    "face", [streams.reconnecting_ws, streams.ReconnectingWebSocket, Websocket, streams.aconnect_ws]
)
def test_every_face_takes_every_session_option_as_a_keyword(face: object) -> None:
    parameters = inspect.signature(face).parameters  # type: ignore[arg-type]
    for name in option_names():
        assert name in parameters, name
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name


def test_face_options_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="overflow must be 'block', 'drop_oldest'"):
        Websocket(overflow="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stale_after"):
        streams.reconnecting_ws("ws://127.0.0.1:9/", stale_after=-1)
