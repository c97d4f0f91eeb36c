"""Typed streams against real servers: what an inline chain leaves behind, and every operator
on a session, a reconnecting feed and a merged stream.

A chain built inline (``await ws.json(T).take(10).collect()``) is dropped as soon as the call
returns or raises; whatever it had gathered must be found by the next read of the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest

import streams
from streams import MessageStream, WebSocketDecodeError
from tests.servers import wait_until

pytestmark = pytest.mark.anyio


class Tick(msgspec.Struct):
    sym: str
    px: float


def tick(i: int) -> str:
    return msgspec.json.encode(Tick(f"S{i}", float(i))).decode()


BAD = '{"sym": "X", "px": "high"}'

#: How long a read may wait for messages that are already in the session (a lost one never comes).
LOST = 5.0


async def send_and_wait(ws: streams.AsyncWebSocketSession, messages: list[str]) -> None:
    """Send to the echo server and wait until every echo is in the session."""
    before = ws.statistics().messages_received
    for message in messages:
        await ws.send_text(message)
    await wait_until(lambda: ws.statistics().messages_received >= before + len(messages))


# --------------------------------------------------------------------------- nothing lost


async def test_inline_take_collect_keeps_the_good_messages_before_a_decode_error(
    echo_url: str,
) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        await send_and_wait(ws, [tick(i) for i in range(6)] + [BAD] + [tick(6), tick(7)])
        with pytest.raises(WebSocketDecodeError) as info:
            await ws.json(Tick).take(10).collect()
        assert info.value.payload == BAD
        # The six ticks before the bad message come first, then the ones after it.
        with anyio.fail_after(LOST):
            assert await ws.json(Tick).take(8).collect() == [Tick(f"S{i}", i) for i in range(8)]


async def test_inline_take_collect_keeps_what_it_gathered_when_cancelled(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        await send_and_wait(ws, [tick(0), tick(1)])
        with anyio.move_on_after(0.1) as scope:
            await ws.json(Tick).take(10).collect()  # two arrived; waits for more
        assert scope.cancelled_caught
        with anyio.fail_after(LOST):
            assert await ws.receive_text() == tick(0)
            assert await ws.json(Tick).first() == Tick("S1", 1.0)


async def test_inline_chain_of_operators_hands_raw_messages_back(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        await send_and_wait(ws, ["1", "2", "3", "x", "5", "6"])
        chain = ws.json(int).map(lambda i: i * 10).enumerate().filter(lambda p: p[1] > 0)
        with pytest.raises(WebSocketDecodeError):
            await chain.take(10).collect()
        # The session gives back the very messages, in order, minus the bad one.
        with anyio.fail_after(LOST):
            assert [await ws.receive_text() for _ in range(5)] == ["1", "2", "3", "5", "6"]


async def test_inline_batch_first_leaves_the_rest_in_the_session(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        await send_and_wait(ws, [str(i) for i in range(10)])
        assert await ws.json(int).batch(3).first() == [0, 1, 2]
        with anyio.fail_after(LOST):
            assert await ws.receive_text() == "3"
            assert await ws.json(int).take(6).collect() == [4, 5, 6, 7, 8, 9]


async def test_a_kept_stream_goes_on_after_an_interrupted_collect(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        await send_and_wait(ws, [tick(0), tick(1), BAD, tick(3), tick(4), tick(5)])
        first_four = ws.json(Tick).take(4)
        with pytest.raises(WebSocketDecodeError):
            await first_four.collect()
        # Nothing was lost, and take(4) counts only the items it delivered.
        with anyio.fail_after(LOST):
            assert await first_four.collect() == [Tick(f"S{i}", i) for i in (0, 1, 3, 4)]
            assert await ws.receive_text() == tick(5)


async def test_a_reconnecting_feed_keeps_the_good_messages_before_a_decode_error(
    echo_url: str,
) -> None:
    async with streams.reconnecting_ws(echo_url) as feed:
        for message in [tick(0), tick(1), BAD, tick(3)]:
            await feed.send_text(message)
        # Read until the bad message has been met (the echoes may come in several batches).
        with pytest.raises(WebSocketDecodeError):
            await feed.json(Tick).take(10).collect()
        with anyio.fail_after(LOST):
            got = await feed.json(Tick).take(3).collect()
        assert got == [Tick("S0", 0), Tick("S1", 1), Tick("S3", 3)]


# --------------------------------------------------------------------------- every source


@asynccontextmanager
async def text_source(
    kind: str, url: str, messages: list[str]
) -> AsyncIterator[Callable[[], MessageStream[Any]]]:
    """Yield a function that makes a new stream of the echoed ``messages`` from ``kind``."""
    if kind == "feed":
        async with streams.reconnecting_ws(url) as feed:
            for message in messages:
                await feed.send_text(message)
            yield feed.text
        return
    async with streams.aconnect_ws(url) as ws:
        await send_and_wait(ws, messages)
        if kind == "session":
            yield ws.text
            return
        async with streams.merge(ws.text()) as merged:
            yield lambda: merged.map(lambda pair: pair[1])


@pytest.mark.parametrize("kind", ["session", "feed", "merged"])
async def test_every_operator_reads_exactly_from_every_source(echo_url: str, kind: str) -> None:
    with anyio.fail_after(LOST * 2):
        await _every_operator(kind, echo_url)


async def _every_operator(kind: str, echo_url: str) -> None:
    async with text_source(kind, echo_url, [str(i) for i in range(20)]) as new:
        assert await new().map(int).first() == 0
        assert await new().decode(msgspec.json.Decoder(int)).take(2).collect() == [1, 2]
        assert await new().skip(1).map(int).first() == 4
        assert await new().filter(lambda m: int(m) % 2 == 0).first() == "6"
        assert await new().enumerate(10).take(2).collect() == [(10, "7"), (11, "8")]
        assert await new().batch(3).first() == ["9", "10", "11"]
        assert await new().batch(2, timeout=5).first() == ["12", "13"]
        assert await new().take(5).collect() == ["14", "15", "16", "17", "18"]
        assert await new().chunks().first() == ["19"]
