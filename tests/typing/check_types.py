"""Static typing of typed streams, checked by ``mypy --strict tests/typing/check_types.py``.

Nothing here runs: each ``assert_type`` states the type mypy must infer. The
file name keeps it out of pytest's collection.
"""

from __future__ import annotations

from typing import Any, TypeGuard, assert_type

import anyio
import httpx
import msgspec
from aiostream import pipe, stream
from aiostream.core import Stream

from streams import (
    AsyncWebSocketClient,
    AsyncWebSocketSession,
    BroadcastStream,
    JSONSender,
    Message,
    MessageStream,
    SequencedStream,
    SequenceGapError,
    Stale,
    WebSocketDecodeError,
    broadcast,
    bytes_stream,
    json_sender,
    json_stream,
    merge,
    message_stream,
    text_stream,
)


class Tick(msgspec.Struct):
    sym: str
    px: float


class Trade(msgspec.Struct):
    sym: str
    qty: int


def is_tick(value: object) -> TypeGuard[Tick]:
    return isinstance(value, Tick)


async def factories(ws: AsyncWebSocketSession) -> None:
    assert_type(text_stream(ws), MessageStream[str])
    assert_type(bytes_stream(ws), MessageStream[bytes])
    assert_type(message_stream(ws), MessageStream[Message])
    assert_type(json_stream(ws, Tick), MessageStream[Tick])
    assert_type(json_stream(ws, list[Tick]), MessageStream[list[Tick]])
    assert_type(json_stream(ws, Tick, mode="binary"), MessageStream[Tick])
    assert_type(json_stream(ws), MessageStream[Any])
    assert_type(json_stream(ws, mode="any"), MessageStream[Any])

    errors: list[WebSocketDecodeError] = []
    assert_type(json_stream(ws, Tick, on_error=errors.append), MessageStream[Tick])

    send, receive = anyio.create_memory_object_stream[str](10)
    assert_type(message_stream(receive), MessageStream[str])
    assert_type(text_stream(receive), MessageStream[str])
    send.close()
    receive.close()


async def operators(ws: AsyncWebSocketSession) -> None:
    ticks = json_stream(ws, Tick)
    assert_type(ticks.batch(10), MessageStream[list[Tick]])
    assert_type(ticks.batch(10, timeout=0.05), MessageStream[list[Tick]])
    assert_type(ticks.filter(lambda t: t.px > 0), MessageStream[Tick])
    assert_type(
        ticks.filter(lambda t: t.px > 0).batch(100, timeout=0.05), MessageStream[list[Tick]]
    )
    assert_type(ticks.map(lambda t: t.px), MessageStream[float])
    assert_type(ticks.take(3), MessageStream[Tick])
    assert_type(ticks.skip(3), MessageStream[Tick])
    assert_type(ticks.enumerate(), MessageStream[tuple[int, Tick]])
    assert_type(ticks.chunks(), MessageStream[list[Tick]])
    assert_type(json_stream(ws).filter(is_tick), MessageStream[Tick])

    assert_type(text_stream(ws).decode(msgspec.json.Decoder(Tick)), MessageStream[Tick])
    assert_type(bytes_stream(ws).decode(msgspec.msgpack.Decoder(Trade)), MessageStream[Trade])
    assert_type(text_stream(ws).decode(int), MessageStream[int])
    assert_type(text_stream(ws).decode(str.upper), MessageStream[str])
    assert_type(message_stream(ws).decode(len), MessageStream[int])

    assert_type(await ticks.first(), Tick)
    assert_type(await ticks.collect(), list[Tick])
    async for tick in ticks:
        assert_type(tick, Tick)
    async for batch in ticks.batch(100, timeout=0.05):
        assert_type(batch, list[Tick])

    # A stream is an AsyncIterable: aiostream takes it as a source, with its
    # item type; aiostream's pipe form is typed Any (the pipe is built before
    # it sees the source).
    assert_type(stream.iterate(ticks), Stream[Tick])
    assert_type(ticks | pipe.take(3), Stream[Any])


async def fan_in_and_out(ws1: AsyncWebSocketSession, ws2: AsyncWebSocketSession) -> None:
    async with merge(json_stream(ws1, Tick), json_stream(ws2, Trade)) as merged:
        assert_type(merged, MessageStream[tuple[int, Tick | Trade]])
    async with merge(ws1, ws2) as raw:
        assert_type(raw, MessageStream[tuple[int, Message]])
    async with merge(ticks=json_stream(ws1, Tick), more=json_stream(ws2, Tick)) as named:
        assert_type(named, MessageStream[tuple[str, Tick]])
        async for key, item in named:
            assert_type(key, str)
            assert_type(item, Tick)
    async with broadcast(json_stream(ws1, Tick), 2, policy="drop_oldest") as consumers:
        assert_type(consumers, tuple[BroadcastStream[Tick], ...])
        assert_type(consumers[0].dropped, int)
        assert_type(consumers[0].batch(5), MessageStream[list[Tick]])


async def sending(ws: AsyncWebSocketSession) -> None:
    assert_type(json_sender(ws, Tick), JSONSender[Tick])
    assert_type(json_sender(ws), JSONSender[Any])
    async with json_sender(ws, Tick) as out:
        assert_type(out, JSONSender[Tick])
        await out.send(Tick("ABC", 2.0))
        await out.send(Trade("ABC", 1))  # type: ignore[arg-type]
    ticks_out: anyio.abc.ObjectSendStream[Tick] = json_sender(ws, Tick)
    await ticks_out.aclose()


async def feed_operators(ws: AsyncWebSocketSession) -> None:
    ticks = ws.json(Tick)
    assert_type(ticks.conflate(lambda t: t.sym), MessageStream[Tick])
    assert_type(ticks.stale(lambda t: t.sym, 5.0), MessageStream[Tick | Stale[str]])
    checked = ticks.sequence(lambda t: int(t.px), on_gap="skip")
    assert_type(checked, SequencedStream[Tick])
    assert_type(checked.gaps, int)
    assert_type(checked.expected, int | None)

    async def resync(gap: SequenceGapError) -> int:
        assert_type(gap.received, int)
        return gap.received

    ticks.sequence(lambda t: int(t.px), on_gap=resync, start=1)
    ticks.sequence(lambda t: int(t.px), on_gap=lambda gap: None)
    async for item in ticks.stale(lambda t: t.sym, 1.0):
        if isinstance(item, Stale):
            assert_type(item.last_seen, float)
        else:
            assert_type(item, Tick)


class MySession(AsyncWebSocketSession):
    pass


async def clients(client: httpx.AsyncClient) -> None:
    plain: AsyncWebSocketClient[AsyncWebSocketSession] = AsyncWebSocketClient(client)
    async with plain.connect("ws://localhost/ws", subprotocols=["a"]) as ws:
        assert_type(ws, AsyncWebSocketSession)
    custom = AsyncWebSocketClient(client, session_class=MySession)
    async with custom.connect("ws://localhost/ws") as mine:
        assert_type(mine, MySession)
