"""`reconnecting_ws`: a feed that survives reconnects, against servers that misbehave on purpose.

`FeedServer` is a real WebSocket server on 127.0.0.1 that a test can kill (every connection
reset) and start again on the same port. Its connections run a small script: say
``hello <n>`` (n = connection number, from 0), record every message received, and obey
commands from the client (``close:<code>``, ``silence``, ``abort``, ``echo:<text>``,
``bytes:<text>``, ``burst:<n>``), so a
test decides from the client side when and how the server misbehaves.

Backoff timing is checked with an injected ``sleep`` (it records the delays and returns at
once), ``rng`` and ``clock``: no test waits for a real backoff.
"""

from __future__ import annotations

import inspect
import itertools
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec
import pytest
from anyio.abc import SocketAttribute

import streams._reconnect
from streams import AsyncWebSocketSession
from streams._reconnect import (
    Backoff,
    OutboxFullError,
    ReconnectingWebSocket,
    StateChange,
    StateChanges,
    reconnecting_ws,
)
from streams.websocket import (
    DisconnectSignal,
    WebsocketAction,
    WebsocketCauseKind,
    WebsocketPolicy,
    WebsocketState,
)
from tests.peers import OP_TEXT, CloseReceived, ScriptedPeer, accept_key, build_frame

Message = str | bytes
FAST = Backoff(initial=0.01, maximum=0.05)
CONNECTED, CONNECTING = WebsocketState.CONNECTED, WebsocketState.CONNECTING
DISCONNECTED, DISCONNECTING = WebsocketState.DISCONNECTED, WebsocketState.DISCONNECTING


# --------------------------------------------------------------------------- the server


async def read_request(peer: ScriptedPeer) -> None:
    """Read the upgrade request into ``peer.path`` and ``peer.request_headers``."""
    head = b""
    with anyio.fail_after(5):
        while b"\r\n\r\n" not in head:
            head += await peer.stream.receive()
    lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    peer.path = lines[0].split(" ")[1]
    for line in lines[1:]:
        name, _, value = line.partition(":")
        peer.request_headers.append((name.strip(), value.strip()))


async def answer_handshake(
    peer: ScriptedPeer, status: int = 101, headers: Sequence[tuple[str, str]] = ()
) -> None:
    if status == 101:
        key = peer.header("Sec-WebSocket-Key") or ""
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"]
        lines.append(f"Sec-WebSocket-Accept: {accept_key(key)}")
    else:
        lines = [f"HTTP/1.1 {status} Status", "Content-Length: 0", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    await peer.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())


Script = Callable[["FeedServer", ScriptedPeer, int], Awaitable[None]]


async def feed_script(server: FeedServer, peer: ScriptedPeer, index: int) -> None:
    """Say hello, record messages, obey commands, answer the client's close."""
    await peer.send_text(server.hello(index))
    while True:
        try:
            message = await peer.receive_message(timeout=20)
        except CloseReceived as close:
            server.closes.append(close.code)
            await peer.send_close(None if close.code == 1005 else close.code)
            await peer.close_tcp()
            return
        server.record(index, message)
        if not isinstance(message, str):
            continue
        command, _, argument = message.partition(":")
        if command == "echo":
            await peer.send_text(argument)
        elif command == "bytes":
            await peer.send_bytes(argument.encode())
        elif command == "burst":  # n messages in one write
            await peer.send_raw(
                b"".join(build_frame(OP_TEXT, f"b{i}".encode()) for i in range(int(argument)))
            )
        elif command == "close":
            code, _, reason = argument.partition(":")
            await peer.close_handshake(int(code), reason, timeout=5)
            return
        elif command == "silence":  # read (never answer) until the client gives up
            await peer.wait_eof(timeout=10)
            return
        elif command == "abort":
            await peer.abort()
            return


class FeedServer:
    """A WebSocket server on 127.0.0.1 that can be killed and started again on the same port."""

    def __init__(self, task_group: anyio.abc.TaskGroup, script: Script = feed_script) -> None:
        self._task_group = task_group
        self.script = script
        self.port = 0
        self.requests = 0
        """Upgrade requests seen, refused ones included."""
        self.received: list[list[Message]] = []
        """Messages received, per accepted connection."""
        self.refusals: list[tuple[int, list[tuple[str, str]]]] = []
        """(status, headers) to answer the next requests with, before accepting again."""
        self.hello_json = False
        self.answer = True
        """False: read upgrade requests and never answer them."""
        self.closes: list[int] = []
        """Close codes received from the client."""
        self._changed = anyio.Event()
        self._life = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._stopped.set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/feed"

    def hello(self, index: int) -> str:
        if self.hello_json:
            return msgspec.json.encode({"hello": index}).decode()
        return f"hello {index}"

    def record(self, index: int, message: Message) -> None:
        self.received[index].append(message)
        self._changed.set()
        self._changed = anyio.Event()

    def data(self) -> list[Message]:
        """Every recorded message that is not a command, over all connections, in order."""
        return [m for conn in self.received for m in conn if m != "auth"]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5) -> None:
        with anyio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()

    async def start(self) -> None:
        assert self._stopped.is_set(), "already running"
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        listener = multi.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        self.port = listener.extra(SocketAttribute.local_port)
        self._life = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._task_group.start_soon(self._serve, listener, self._life, self._stopped)

    async def kill(self) -> None:
        """Stop listening and reset every connection (RST), like a crashed server."""
        self._life.cancel()
        await self._stopped.wait()

    async def _serve(
        self,
        listener: anyio.abc.SocketListener,
        life: anyio.CancelScope,
        stopped: anyio.Event,
    ) -> None:
        try:
            with life:
                async with listener, anyio.create_task_group() as connections:
                    while True:
                        stream = await listener.accept()
                        connections.start_soon(self._handle, stream, life)
        finally:
            stopped.set()

    async def _handle(self, stream: anyio.abc.SocketStream, life: anyio.CancelScope) -> None:
        peer = ScriptedPeer(stream)
        try:
            await read_request(peer)
            self.requests += 1
            self._changed.set()
            self._changed = anyio.Event()
            if not self.answer:
                await peer.wait_eof(timeout=10)
                return
            if self.refusals:
                status, headers = self.refusals.pop(0)
                await answer_handshake(peer, status, headers)
                return
            await answer_handshake(peer)
            index = len(self.received)
            self.received.append([])
            await self.script(self, peer, index)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the client went away
        finally:
            with anyio.CancelScope(shield=True):
                if life.cancel_called:
                    raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                await stream.aclose()


class Recorder:
    """Injected ``sleep``: records each backoff delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await anyio.lowlevel.checkpoint()


async def take(feed: ReconnectingWebSocket, n: int, timeout: float = 5) -> list[Message]:
    with anyio.fail_after(timeout):
        return [await feed.receive() for _ in range(n)]


async def wait_state(
    changes: StateChanges,
    predicate: Callable[[StateChange], bool],
    timeout: float = 5,
) -> StateChange:
    with anyio.fail_after(timeout):
        async for change in changes:
            if predicate(change):
                return change
    raise AssertionError("the feed closed first")


@pytest.fixture
async def server() -> Any:
    async with anyio.create_task_group() as tg:
        feed_server = FeedServer(tg)
        yield feed_server
        tg.cancel_scope.cancel()


@pytest.fixture
async def down_server(server: FeedServer) -> FeedServer:
    """A server whose port is known but that is not listening (connections are refused)."""
    await server.start()
    await server.kill()
    return server


# --------------------------------------------------------------------------- backoff (no I/O)


class TestBackoff:
    def test_ceiling_grows_then_caps(self) -> None:
        backoff = Backoff(initial=0.5, maximum=4, multiplier=2)
        assert [backoff.ceiling(n) for n in range(6)] == [0.5, 1, 2, 4, 4, 4]
        assert backoff.ceiling(10_000) == 4  # no overflow

    def test_no_jitter_is_the_ceiling(self) -> None:
        backoff = Backoff(initial=1, maximum=10, multiplier=3, jitter="none")
        assert list(itertools.islice(backoff.delays(), 5)) == [1, 3, 9, 10, 10]

    @pytest.mark.parametrize("draw", [0.0, 0.25, 0.999999])
    def test_full_jitter_is_within_zero_and_the_ceiling(self, draw: float) -> None:
        backoff = Backoff(initial=0.5, maximum=8)
        delays = list(itertools.islice(backoff.delays(lambda: draw), 8))
        assert delays == [draw * backoff.ceiling(n) for n in range(8)]
        assert all(0 <= d <= backoff.ceiling(n) for n, d in enumerate(delays))

    @pytest.mark.parametrize("draw", [0.0, 0.5, 0.999999])
    def test_equal_jitter_is_within_half_and_the_ceiling(self, draw: float) -> None:
        backoff = Backoff(initial=1, maximum=16, jitter="equal")
        delays = list(itertools.islice(backoff.delays(lambda: draw), 7))
        for n, delay in enumerate(delays):
            assert backoff.ceiling(n) / 2 <= delay <= backoff.ceiling(n)

    def test_decorrelated_jitter_bounds(self) -> None:
        backoff = Backoff(initial=0.1, maximum=5, jitter="decorrelated")
        draws = itertools.cycle([0.9, 0.1, 0.99, 0.5])
        delays = list(itertools.islice(backoff.delays(lambda: next(draws)), 40))
        previous = backoff.initial
        for delay in delays:
            assert backoff.initial <= delay <= min(backoff.maximum, 3 * previous)
            previous = delay
        assert max(delays) == pytest.approx(backoff.maximum)  # it does reach the cap

    def test_default_random_stays_in_bounds(self) -> None:
        backoff = Backoff()
        for n, delay in enumerate(itertools.islice(backoff.delays(), 50)):
            assert 0 <= delay <= backoff.ceiling(n)

    @pytest.mark.parametrize(
        "options",
        [
            {"initial": -1},
            {"stable_after": -1},
            {"initial": 2, "maximum": 1},
            {"multiplier": 0.5},
            {"jitter": "random"},
        ],
    )
    def test_invalid_configuration(self, options: dict[str, Any]) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - each has its own message
            Backoff(**options)


def test_invalid_feed_options() -> None:
    with pytest.raises(ValueError, match="outbox_size"):
        reconnecting_ws("ws://127.0.0.1:1", outbox_size=0)
    with pytest.raises(ValueError, match="outbox_overflow"):
        reconnecting_ws("ws://127.0.0.1:1", outbox_overflow="block")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts"):
        reconnecting_ws("ws://127.0.0.1:1", max_attempts=0)


@pytest.mark.anyio
async def test_using_the_feed_outside_its_block_is_an_error() -> None:
    feed = reconnecting_ws("ws://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="async with"):
        await feed.send("x")
    await feed.aclose()  # never entered: nothing to do
    assert feed.state is DISCONNECTED


# --------------------------------------------------------------------------- a server restart


@pytest.mark.anyio
async def test_feed_survives_a_server_restart_on_the_same_port(server: FeedServer) -> None:
    connects: list[int] = []

    async def on_connect(ws: AsyncWebSocketSession) -> None:
        connects.append(len(connects))
        await ws.send_text("auth")

    await server.start()
    port = server.port
    async with reconnecting_ws(server.url, on_connect=on_connect, backoff=FAST) as feed:
        changes = feed.states()
        await feed.subscribe("sub:trades")
        for i in range(5):
            await feed.send(f"m{i}")
        assert await take(feed, 1) == ["hello 0"]
        await server.wait_until(lambda: len(server.data()) == 6)
        assert server.received[0] == ["auth", "sub:trades", "m0", "m1", "m2", "m3", "m4"]

        await server.kill()
        lost = await wait_state(changes, lambda c: c.state is DISCONNECTED and c.action is not None)
        assert lost.cause is not None
        assert lost.cause.kind is WebsocketCauseKind.NETWORK_ERROR
        assert lost.action is WebsocketAction.RECONNECT
        for i in range(5, 10):  # while the server is down: kept in the outbox
            await feed.send(f"m{i}")
        refused = await wait_state(
            changes, lambda c: c.state is DISCONNECTED and c.action is not None
        )
        assert refused.cause is not None
        assert refused.cause.kind is WebsocketCauseKind.CONNECT_ERROR
        assert feed.pending == tuple(f"m{i}" for i in range(5, 10))

        await server.start()
        assert server.port == port
        await wait_state(changes, lambda c: c.state is CONNECTED)
        for i in range(10, 15):
            await feed.send(f"m{i}")
        # The consumer saw a gap, not an error.
        assert await take(feed, 1) == ["hello 1"]
        await server.wait_until(lambda: len(server.data()) == 17)
        await feed.drain()
        assert feed.pending == ()
        assert feed.connections == 2
    # Hooks and subscriptions ran again on the new connection, before the outbox.
    assert connects == [0, 1]
    assert server.received[1][:2] == ["auth", "sub:trades"]
    # Every message sent through the outbox arrived exactly once, in order.
    sent = [m for m in server.data() if m != "sub:trades"]
    assert sent == [f"m{i}" for i in range(15)]
    assert feed.undelivered == []
    assert feed.closed


@pytest.mark.anyio
async def test_feed_waits_for_a_server_that_is_not_up_yet(down_server: FeedServer) -> None:
    async with reconnecting_ws(down_server.url, backoff=FAST) as feed:
        changes = feed.states()
        refused = await wait_state(
            changes, lambda c: c.state is DISCONNECTED and c.delay is not None
        )
        assert refused.cause is not None
        assert refused.cause.kind is WebsocketCauseKind.CONNECT_ERROR
        assert refused.delay is not None
        assert 0 <= refused.delay <= FAST.maximum
        assert feed.last_error is not None
        await down_server.start()
        with anyio.fail_after(5):
            session = await feed.wait_connected()
        assert session is feed.session
        assert await take(feed, 1) == ["hello 0"]
        assert feed.attempt >= 2


# --------------------------------------------------------------------------- close codes


@pytest.mark.anyio
@pytest.mark.parametrize("code", [1000, 1001, 1011, 1012, 1013])
async def test_close_codes_that_reconnect(server: FeedServer, code: int) -> None:
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed:
        changes = feed.states()
        assert await take(feed, 1) == ["hello 0"]
        await feed.send(f"close:{code}:bye")
        ended = await wait_state(
            changes, lambda c: c.state is DISCONNECTED and c.action is not None
        )
        assert ended.cause is not None
        assert (ended.cause.kind, ended.cause.code, ended.cause.reason) == ("close", code, "bye")
        assert ended.action is WebsocketAction.RECONNECT
        assert await take(feed, 1) == ["hello 1"]
        assert feed.connections == 2


@pytest.mark.anyio
@pytest.mark.parametrize("code", [1002, 1003, 1007, 1008, 1009, 1010, 4000, 3000])
async def test_close_codes_that_end_the_feed(server: FeedServer, code: int) -> None:
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed:
        changes = feed.states()
        await feed.send("echo:first")
        await feed.send("echo:second")
        await feed.send(f"close:{code}:go away")
        received: list[Message] = []

        async def consume() -> None:
            async for message in feed:
                received.append(message)

        with pytest.raises(DisconnectSignal) as info, anyio.fail_after(5):
            await consume()
        # What arrived before the close is delivered first; then the signal.
        assert received == ["hello 0", "first", "second"]
        assert (info.value.code, info.value.reason) == (code, "go away")
        final = await wait_state(changes, lambda c: c.final)
        assert final.state is DISCONNECTED
        assert final.action is WebsocketAction.DISCONNECT
        assert feed.closed
        assert feed.final_error is info.value
        with pytest.raises(DisconnectSignal):
            await feed.send("too late")
        with pytest.raises(DisconnectSignal):
            await feed.wait_connected()
    assert server.requests == 1


@pytest.mark.anyio
async def test_resume_code_calls_on_resume_with_the_kept_state(server: FeedServer) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def on_connect(ws: AsyncWebSocketSession) -> None:
        calls.append(("connect", {}))
        await ws.send_text("auth")

    async def on_resume(ws: AsyncWebSocketSession, state: dict[str, Any]) -> bool:
        calls.append(("resume", dict(state)))
        await ws.send_text(f"resume:{state['session']}:{state['seq']}")
        return True

    policy = WebsocketPolicy(resume_codes={4000})
    await server.start()
    async with reconnecting_ws(
        server.url, on_connect=on_connect, on_resume=on_resume, policy=policy, backoff=FAST
    ) as feed:
        await feed.subscribe("sub:book")
        assert await take(feed, 1) == ["hello 0"]
        feed.resume_state.update(session="abc", seq=41)
        await feed.send("close:4000:resume please")
        assert await take(feed, 1) == ["hello 1"]
        await feed.send("echo:after")
        assert await take(feed, 1) == ["after"]
        # A plain reconnect afterwards is a fresh start again.
        await feed.send("close:1012")
        assert await take(feed, 1) == ["hello 2"]
        await feed.send("echo:x")
        assert await take(feed, 1) == ["x"]
    assert calls == [("connect", {}), ("resume", {"session": "abc", "seq": 41}), ("connect", {})]
    assert server.received[0][:2] == ["auth", "sub:book"]
    # Resumed: the server kept the subscription, it is not sent again.
    assert server.received[1][0] == "resume:abc:41"
    assert "sub:book" not in server.received[1]
    assert server.received[2][:2] == ["auth", "sub:book"]


@pytest.mark.anyio
async def test_refused_resume_falls_back_to_a_fresh_start(server: FeedServer) -> None:
    async def on_resume(ws: AsyncWebSocketSession, state: dict[str, Any]) -> bool:
        await ws.send_text("resume?")
        return False

    policy = WebsocketPolicy(resume_codes={4000})
    await server.start()
    async with reconnecting_ws(server.url, on_resume=on_resume, policy=policy, backoff=FAST) as f:
        await f.subscribe("sub:x")
        assert await take(f, 1) == ["hello 0"]
        await f.send("close:4000")
        assert await take(f, 1) == ["hello 1"]
        await server.wait_until(lambda: len(server.received[1]) == 2)
    assert server.received[1] == ["resume?", "sub:x"]


# --------------------------------------------------------------------------- silence and resets


@pytest.mark.anyio
async def test_silent_server_is_detected_by_keepalive_and_replaced(server: FeedServer) -> None:
    await server.start()
    async with reconnecting_ws(
        server.url,
        backoff=FAST,
        keepalive_ping_interval_seconds=0.05,
        keepalive_ping_timeout_seconds=0.1,
    ) as feed:
        changes = feed.states()
        assert await take(feed, 1) == ["hello 0"]
        await feed.send("silence")
        ended = await wait_state(
            changes, lambda c: c.state is DISCONNECTED and c.action is not None
        )
        assert ended.cause is not None
        assert ended.cause.kind is WebsocketCauseKind.KEEPALIVE_TIMEOUT
        assert ended.action is WebsocketAction.RECONNECT
        assert await take(feed, 1) == ["hello 1"]


@pytest.mark.anyio
async def test_reset_connection_reconnects(server: FeedServer) -> None:
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed:
        changes = feed.states()
        assert await take(feed, 1) == ["hello 0"]
        await feed.send("abort")
        ended = await wait_state(
            changes, lambda c: c.state is DISCONNECTED and c.action is not None
        )
        assert ended.cause is not None
        assert ended.cause.kind is WebsocketCauseKind.NETWORK_ERROR
        assert await take(feed, 1) == ["hello 1"]


# --------------------------------------------------------------------------- handshake failures


@pytest.mark.anyio
async def test_503_then_success_honours_retry_after(server: FeedServer) -> None:
    server.refusals = [(503, [("Retry-After", "2")]), (503, []), (429, [("Retry-After", "99")])]
    sleep = Recorder()
    backoff = Backoff(initial=0.1, maximum=10, jitter="full")
    await server.start()
    async with reconnecting_ws(server.url, backoff=backoff, sleep=sleep, rng=lambda: 0.5) as feed:
        changes = feed.states()
        assert await take(feed, 1) == ["hello 0"]
        statuses = []
        async for change in changes:
            if change.state is DISCONNECTED and change.cause is not None:
                statuses.append(change.cause.status_code)
            if change.state is CONNECTED:
                break
    assert statuses == [503, 503, 429]
    # Retry-After wins over a shorter backoff, but never beyond the cap.
    assert sleep.delays == [2.0, 0.5 * backoff.ceiling(1), backoff.maximum]
    assert server.requests == 4


@pytest.mark.anyio
async def test_401_ends_the_feed_without_retrying(server: FeedServer) -> None:
    server.refusals = [(401, [])]
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed:
        with pytest.raises(DisconnectSignal) as info, anyio.fail_after(5):
            await feed.receive()
    assert info.value.status_code == 401
    assert info.value.cause.kind is WebsocketCauseKind.HTTP_STATUS
    assert server.requests == 1


# --------------------------------------------------------------------------- backoff timing


@pytest.mark.anyio
async def test_backoff_delays_and_giving_up(down_server: FeedServer) -> None:
    sleep = Recorder()
    backoff = Backoff(initial=0.1, maximum=1, multiplier=2, jitter="none")
    async with reconnecting_ws(
        down_server.url, backoff=backoff, sleep=sleep, max_attempts=6
    ) as feed:
        with pytest.raises(DisconnectSignal, match="gave up after 6 attempts") as info:
            with anyio.fail_after(5):
                await feed.receive()
    assert sleep.delays == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert info.value.cause.kind is WebsocketCauseKind.CONNECT_ERROR
    assert feed.attempt == 6


@pytest.mark.anyio
@pytest.mark.parametrize("draw", [0.0, 0.3, 0.999])
async def test_full_jitter_delays_stay_within_bounds(down_server: FeedServer, draw: float) -> None:
    sleep = Recorder()
    backoff = Backoff(initial=0.2, maximum=3)
    async with reconnecting_ws(
        down_server.url, backoff=backoff, sleep=sleep, rng=lambda: draw, max_attempts=8
    ) as feed:
        with pytest.raises(DisconnectSignal), anyio.fail_after(5):
            await feed.receive()
    assert len(sleep.delays) == 7
    for n, delay in enumerate(sleep.delays):
        assert delay == pytest.approx(draw * backoff.ceiling(n))
        assert 0 <= delay <= backoff.ceiling(n) <= backoff.maximum


async def _close_at_once(server: FeedServer, peer: ScriptedPeer, index: int) -> None:
    await peer.send_text(server.hello(index))
    await peer.close_handshake(1012, "restart", timeout=5)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("uptime", "expected"),
    [(0.0, [0.1, 0.2, 0.4, 0.8]), (100.0, [0.1, 0.1, 0.1, 0.1])],
    ids=["flapping", "stable"],
)
async def test_a_stable_connection_resets_the_backoff(
    server: FeedServer, uptime: float, expected: list[float]
) -> None:
    server.script = _close_at_once
    ticks = itertools.count(step=uptime)  # each reading of the clock moves it by `uptime`
    sleep = Recorder()
    backoff = Backoff(initial=0.1, maximum=10, jitter="none", stable_after=10)
    await server.start()
    async with reconnecting_ws(
        server.url, backoff=backoff, sleep=sleep, clock=lambda: float(next(ticks))
    ) as feed:
        assert await take(feed, 5) == [f"hello {i}" for i in range(5)]
    assert sleep.delays[:4] == expected


# --------------------------------------------------------------------------- the outbox


@pytest.mark.anyio
async def test_outbox_full_raises_and_keeps_what_it_accepted(down_server: FeedServer) -> None:
    async with reconnecting_ws(down_server.url, backoff=FAST, outbox_size=3) as feed:
        for i in range(3):
            await feed.send(f"m{i}")
        with pytest.raises(OutboxFullError) as info:
            await feed.send("m3")
        assert info.value.message == "m3"
        assert feed.pending == ("m0", "m1", "m2")
        await down_server.start()
        await down_server.wait_until(lambda: len(down_server.data()) == 3)
    assert down_server.data() == ["m0", "m1", "m2"]


@pytest.mark.anyio
async def test_outbox_drop_oldest_reports_what_it_dropped(down_server: FeedServer) -> None:
    dropped: list[list[Message]] = []
    async with reconnecting_ws(
        down_server.url,
        backoff=FAST,
        outbox_size=3,
        outbox_overflow="drop_oldest",
        on_undelivered=dropped.append,
    ) as feed:
        for i in range(5):
            await feed.send(f"m{i}")
        assert dropped == [["m0"], ["m1"]]
        assert feed.undelivered == ["m0", "m1"]
        await down_server.start()
        await down_server.wait_until(lambda: len(down_server.data()) == 3)
    assert down_server.data() == ["m2", "m3", "m4"]


@pytest.mark.anyio
async def test_outbox_wait_blocks_until_there_is_room(down_server: FeedServer) -> None:
    async with reconnecting_ws(
        down_server.url, backoff=FAST, outbox_size=2, outbox_overflow="wait"
    ) as feed:
        await feed.send("m0")
        await feed.send("m1")
        done = anyio.Event()

        async def third() -> None:
            await feed.send("m2")
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(third)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()
            assert feed.pending == ("m0", "m1")
            await down_server.start()
        await feed.drain()
        await down_server.wait_until(lambda: len(down_server.data()) == 3)
    assert down_server.data() == ["m0", "m1", "m2"]


@pytest.mark.anyio
async def test_messages_left_at_close_are_reported(down_server: FeedServer) -> None:
    reported: list[list[Message]] = []
    async with reconnecting_ws(
        down_server.url, backoff=FAST, on_undelivered=reported.append
    ) as feed:
        await feed.send("a")
        await feed.send_bytes(b"b")
        await feed.send_json({"c": 1})
    assert reported == [["a", b"b", '{"c":1}']]
    assert feed.undelivered == ["a", b"b", '{"c":1}']
    with pytest.raises(anyio.ClosedResourceError):
        await feed.send("after close")


@pytest.mark.anyio
async def test_messages_left_at_close_are_logged_without_a_callback(
    down_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with reconnecting_ws(down_server.url, backoff=FAST) as feed:
        await feed.send("lost")
    assert feed.undelivered == ["lost"]
    assert "1 message(s) were not delivered" in caplog.text


@pytest.mark.anyio
async def test_send_variants_arrive_as_sent(server: FeedServer) -> None:
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed:
        await feed.send_text("t")
        await feed.send_bytes(b"\x00b")
        await feed.send_json({"j": [1]})
        await feed.send_json({"j": 2}, mode="binary")
        with pytest.raises(ValueError, match="mode"):
            await feed.send_json({}, mode="xml")  # type: ignore[arg-type]
        await feed.drain()
        await server.wait_until(lambda: len(server.data()) == 4)
    assert server.data() == ["t", b"\x00b", '{"j":[1]}', b'{"j":2}']


# --------------------------------------------------------------------------- subscriptions


@pytest.mark.anyio
async def test_subscriptions_are_replayed_and_unsubscribe_forgets(server: FeedServer) -> None:
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed:
        await feed.subscribe("sub:a")
        await feed.subscribe("sub:b")
        await feed.subscribe("sub:a")  # already subscribed: nothing sent
        assert list(feed.subscriptions) == ["sub:a", "sub:b"]
        assert await take(feed, 1) == ["hello 0"]
        await feed.unsubscribe("sub:a", "unsub:a")
        assert list(feed.subscriptions) == ["sub:b"]
        await feed.send("close:1012")
        assert await take(feed, 1) == ["hello 1"]
        await feed.subscribe("sub:c")
        await server.wait_until(lambda: len(server.received[1]) == 2)
    assert server.received[0] == ["sub:a", "sub:b", "unsub:a", "close:1012"]
    assert server.received[1] == ["sub:b", "sub:c"]


@pytest.mark.anyio
async def test_subscriptions_made_while_down_are_sent_once(down_server: FeedServer) -> None:
    async with reconnecting_ws(down_server.url, backoff=FAST) as feed:
        await feed.subscribe("sub:a")
        await feed.send("data")
        await feed.subscribe("sub:b")
        await feed.unsubscribe("sub:b", "unsub:b")  # never sent: the subscription never was
        await down_server.start()
        await down_server.wait_until(lambda: len(down_server.data()) == 2)
        await feed.drain()
    assert down_server.received[0] == ["sub:a", "data"]


# --------------------------------------------------------------------- typed streams, hooks, states


class Hello(msgspec.Struct):
    hello: int


@pytest.mark.anyio
async def test_typed_json_stream_continues_across_reconnects(server: FeedServer) -> None:
    server.hello_json = True
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed:
        hellos = feed.json(Hello)
        with anyio.fail_after(5):
            assert await hellos.first() == Hello(0)
            await feed.send("close:1001")
            assert await hellos.first() == Hello(1)
            await feed.send("echo:plain text")
            assert await feed.text().first() == "plain text"
            await feed.send("bytes:raw")
            assert await feed.bytes().first() == b"raw"
            await feed.send("echo:last")
            assert await feed.messages().first() == "last"
            async with feed.sender(Hello) as out:
                await out.send(Hello(7))
            await server.wait_until(lambda: '{"hello":7}' in server.data())


@pytest.mark.anyio
async def test_a_failing_hook_ends_the_feed_with_its_error(server: FeedServer) -> None:
    async def on_connect(ws: AsyncWebSocketSession) -> None:
        raise LookupError("no such account")

    await server.start()
    async with reconnecting_ws(server.url, on_connect=on_connect, backoff=FAST) as feed:
        with pytest.raises(LookupError, match="no such account"), anyio.fail_after(5):
            async for _ in feed:
                pass
        assert feed.closed
        assert isinstance(feed.final_error, LookupError)
    assert server.requests == 1


@pytest.mark.anyio
async def test_states_and_callback_tell_the_same_story(server: FeedServer) -> None:
    seen: list[StateChange] = []
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST, on_state_change=seen.append) as feed:
        changes = feed.states()
        assert await take(feed, 1) == ["hello 0"]
        await feed.send("close:1012")
        assert await take(feed, 1) == ["hello 1"]
        assert feed.state is CONNECTED
    streamed = [change async for change in changes]
    assert streamed[0] == StateChange(DISCONNECTED, 0, 0)  # the state when asked
    assert streamed[1:] == seen
    assert [c.state for c in seen] == [
        CONNECTING,
        CONNECTED,
        DISCONNECTED,
        CONNECTING,
        CONNECTED,
        DISCONNECTING,
        DISCONNECTED,
    ]
    assert [c.connections for c in seen if c.state is CONNECTED] == [1, 2]
    last = seen[-1]
    assert last.final
    assert last.cause is not None
    assert last.cause.kind is WebsocketCauseKind.CLIENT_DISCONNECT
    assert [m async for m in feed.states()] == [last]  # after the end: the final state only


@pytest.mark.anyio
async def test_closing_ends_a_consumer_in_another_task_quietly(server: FeedServer) -> None:
    received: list[Message] = []
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed:
        echoed = anyio.Event()

        async def consume() -> None:
            async for message in feed:
                received.append(message)
                if message == "one":
                    echoed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await feed.send("echo:one")
            await echoed.wait()
            await feed.aclose()
        assert feed.closed
        with pytest.raises(anyio.EndOfStream):
            await feed.receive()
    assert received == ["hello 0", "one"]
    assert server.closes == [1000]  # a clean close from the client


@pytest.mark.anyio
async def test_a_callback_error_is_logged_not_fatal(
    server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(change: StateChange) -> None:
        raise ZeroDivisionError

    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST, on_state_change=broken) as feed:
        assert await take(feed, 1) == ["hello 0"]
    assert "on_state_change callback failed" in caplog.text


@pytest.mark.anyio
async def test_closing_while_connecting_stops_at_once(server: FeedServer) -> None:
    server.answer = False
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed, feed.states() as changes:
        await wait_state(changes, lambda c: c.state is CONNECTING)
        await server.wait_until(lambda: server.requests == 1)
        with anyio.fail_after(5):
            await feed.aclose()
        rest = [change async for change in changes]
    assert [c.state for c in rest] == [DISCONNECTED]
    assert rest[0].final
    assert feed.connections == 0


@pytest.mark.anyio
async def test_a_slow_consumer_gets_every_message_in_order(server: FeedServer) -> None:
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST, queue_size=4) as feed:
        assert await take(feed, 1) == ["hello 0"]
        for _ in range(20):
            await feed.send("burst:50")
        await server.wait_until(lambda: len(server.data()) == 20)
        await anyio.wait_all_tasks_blocked()  # the feed stopped reading: its buffers are full
        received = await take(feed, 1000)
    assert received == [f"b{i}" for i in range(50)] * 20


@pytest.mark.anyio
async def test_typed_streams_hand_back_what_they_read_ahead(server: FeedServer) -> None:
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed:
        assert await take(feed, 1) == ["hello 0"]
        await feed.send("burst:3")
        with anyio.fail_after(5):
            assert await feed.text().first() == "b0"
        assert await take(feed, 2) == ["b1", "b2"]


@pytest.mark.anyio
async def test_state_changes_can_be_closed_early(server: FeedServer) -> None:
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed:
        changes = feed.states()
        assert (await changes.__anext__()).state is DISCONNECTED
        await changes.aclose()
        assert [c async for c in changes] == []
        assert await take(feed, 1) == ["hello 0"]  # the feed goes on without that observer


@pytest.mark.anyio
async def test_an_error_in_the_block_comes_out_as_itself(server: FeedServer) -> None:
    await server.start()
    feed = reconnecting_ws(server.url, backoff=FAST)

    async def fail_inside() -> None:
        async with feed:
            assert await take(feed, 1) == ["hello 0"]
            raise KeyError("mine")

    async def enter_again() -> None:
        async with feed:
            pass

    with pytest.raises(KeyError):
        await fail_inside()
    assert feed.closed
    assert server.closes == [1000]
    with pytest.raises(RuntimeError, match="only once"):
        await enter_again()


@pytest.mark.anyio
async def test_closing_writes_what_is_queued_first(server: FeedServer) -> None:
    await server.start()
    async with reconnecting_ws(server.url, backoff=FAST) as feed:
        await feed.wait_connected()
        for i in range(200):
            await feed.send(f"m{i}")
    # Leaving the block wrote the outbox before the closing handshake.
    assert feed.undelivered == []
    await server.wait_until(lambda: server.closes == [1000])
    assert server.data() == [f"m{i}" for i in range(200)]


# --------------------------------------------------------------------------- the factory


def test_reconnecting_ws_takes_the_signature_of_the_feed() -> None:
    assert inspect.signature(reconnecting_ws) == inspect.signature(ReconnectingWebSocket)
    assert reconnecting_ws.__name__ == "reconnecting_ws"
    assert "ReconnectingWebSocket" in (reconnecting_ws.__doc__ or "")
    with pytest.raises(ValueError, match="outbox_size"):
        reconnecting_ws("ws://127.0.0.1:9", outbox_size=0)
    with pytest.raises(ValueError, match="max_attempts"):
        reconnecting_ws("ws://127.0.0.1:9", max_attempts=0)


def test_the_feed_does_not_reach_into_the_manager() -> None:
    source = inspect.getsource(streams._reconnect)
    assert "from .websocket" not in source
    assert "from ._manager" not in source
