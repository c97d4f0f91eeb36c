"""Static typing of the sync API, checked by mypy (``files`` in pyproject.toml).

Nothing here runs: each ``assert_type`` states the type mypy must infer.
"""

from __future__ import annotations

from typing import Any, assert_type

import httpx
import msgspec
from wsproto.events import Event

import streams
from streams import (
    Message,
    PongEvent,
    SyncMessageStream,
    WebSocketClient,
    WebSocketSession,
    connect_ws,
)


class Tick(msgspec.Struct):
    sym: str
    px: float


class MySession(WebSocketSession):
    def hello(self) -> str:
        return "hello"


def sessions(client: httpx.Client) -> None:
    with connect_ws("ws://localhost/ws") as ws:
        assert_type(ws, WebSocketSession)
        assert_type(ws.receive(), Event)
        assert_type(ws.receive_text(timeout=1.0), str)
        assert_type(ws.receive_bytes(), bytes)
        assert_type(ws.receive_json(mode="binary"), Any)
        assert_type(ws.ping(), PongEvent)
        assert_type(ws.ping().wait(1.0), bool)
        assert_type(ws.send_text("x"), None)
        assert_type(ws.close_code, int | None)
        assert_type(ws.statistics(), streams.SessionStatistics)
        for message in ws:
            assert_type(message, str | bytes)
    with connect_ws("ws://localhost/ws", client, session_class=MySession) as mine:
        assert_type(mine, MySession)
        assert_type(mine.hello(), str)
    plain = WebSocketClient(client)
    assert_type(plain, WebSocketClient[WebSocketSession])
    with plain.connect("ws://localhost/ws", subprotocols=["a"]) as ws:
        assert_type(ws, WebSocketSession)
    custom = WebSocketClient(client, session_class=MySession, queue_size=8)
    assert_type(custom, WebSocketClient[MySession])
    with custom.connect("ws://localhost/ws") as mine:
        assert_type(mine, MySession)
    stream: Any = None
    built = WebSocketSession(stream, queue_size=10, keepalive_ping_interval_seconds=None)
    assert_type(built, WebSocketSession)
    with built as entered:
        assert_type(entered, WebSocketSession)


def typed_streams(ws: WebSocketSession) -> None:
    assert_type(ws.text(), SyncMessageStream[str])
    assert_type(ws.bytes(), SyncMessageStream[bytes])
    assert_type(ws.messages(), SyncMessageStream[Message])
    assert_type(ws.json(), SyncMessageStream[Any])
    assert_type(ws.json(Tick), SyncMessageStream[Tick])
    assert_type(ws.json(list[Tick], mode="any"), SyncMessageStream[list[Tick]])
    for tick in ws.json(Tick, on_error=print):
        assert_type(tick, Tick)
    for text in ws.text():
        assert_type(text, str)


def timeouts(ws: WebSocketSession) -> None:
    try:
        ws.receive_text(timeout=0.5)
    except streams.ReceiveTimeout as exc:
        assert_type(exc, streams.ReceiveTimeout)
