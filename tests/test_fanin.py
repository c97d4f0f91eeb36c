"""merge (fan-in) and broadcast (fan-out) of typed streams, on asyncio and trio."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import msgspec
import pytest

import streams
from streams._exceptions import WebSocketDisconnect
from streams._operators import (
    BroadcastStream,
    broadcast,
    json_stream,
    merge,
    message_stream,
    text_stream,
)
from streams._types import Message

pytestmark = pytest.mark.anyio


class ScriptedSource:
    """Delivers the given batches in order, then ends normally or raises ``end``."""

    def __init__(self, *batches: list[Message], end: Exception | None = None) -> None:
        self.batches = [list(b) for b in batches]
        self.end = end
        self.calls = 0

    async def _receive_batch(self) -> list[Message]:
        await anyio.lowlevel.checkpoint()
        self.calls += 1
        if self.batches:
            return self.batches.pop(0)
        if self.end is not None:
            raise self.end
        return []


class LiveSource:
    """A batch source the test feeds while readers wait on it."""

    def __init__(self) -> None:
        self._send, self._recv = anyio.create_memory_object_stream[list[Message]](math.inf)

    def push(self, *messages: Message) -> None:
        self._send.send_nowait(list(messages))

    def end(self) -> None:
        self._send.close()

    async def _receive_batch(self) -> list[Message]:
        try:
            return await self._recv.receive()
        except anyio.EndOfStream:
            return []

    def close(self) -> None:
        self._send.close()
        self._recv.close()


@pytest.fixture
def live() -> Iterator[LiveSource]:
    source = LiveSource()
    yield source
    source.close()


def numbered(prefix: str, n: int, per_batch: int = 1) -> list[list[Message]]:
    items: list[Message] = [f"{prefix}{i}" for i in range(n)]
    return [items[i : i + per_batch] for i in range(0, n, per_batch)]


async def gen(prefix: str, n: int) -> AsyncIterator[str]:
    for i in range(n):
        yield f"{prefix}{i}"


# --------------------------------------------------------------------------- merge


async def test_merge_by_position_tags_items_with_indexes() -> None:
    a = ScriptedSource(*numbered("a", 5, per_batch=2))
    b = ScriptedSource(*numbered("b", 3))
    async with merge(text_stream(a), text_stream(b)) as merged:
        got = await merged.collect()
    assert [item for key, item in got if key == 0] == ["a0", "a1", "a2", "a3", "a4"]
    assert [item for key, item in got if key == 1] == ["b0", "b1", "b2"]
    assert len(got) == 8


async def test_merge_by_name_tags_items_with_names() -> None:
    async with merge(quotes=gen("q", 2), trades=ScriptedSource(["t0", "t1"])) as merged:
        got = await merged.collect()
    assert sorted(got) == [("quotes", "q0"), ("quotes", "q1"), ("trades", "t0"), ("trades", "t1")]


async def test_merge_interleaves_live_sources(live: LiveSource) -> None:
    other = LiveSource()
    try:
        async with merge(live, other) as merged:
            live.push("a")
            assert await merged.first() == (0, "a")
            other.push("b")
            assert await merged.first() == (1, "b")
            live.end()
            other.end()
            assert await merged.collect() == []
    finally:
        other.close()


async def test_merge_applies_backpressure(live: LiveSource) -> None:
    for i in range(10):
        live.push(f"m{i}")
    source = message_stream(live)
    async with merge(source, buffer_size=2) as merged:
        await anyio.wait_all_tasks_blocked()
        # Two batches wait for the consumer; the rest is still in the source.
        assert live._recv.statistics().current_buffer_used == 8
        assert await merged.take(3).collect() == [(0, "m0"), (0, "m1"), (0, "m2")]
        await anyio.wait_all_tasks_blocked()
        assert live._recv.statistics().current_buffer_used == 5
        live.end()
        assert [m for _, m in await merged.collect()] == [f"m{i}" for i in range(3, 10)]


async def test_merge_error_in_one_source_is_raised_in_place_and_the_rest_goes_on(
    live: LiveSource,
) -> None:
    failing = ScriptedSource(["x0", "x1"], end=WebSocketDisconnect(1011, "gone"))
    async with merge(text_stream(failing), live) as merged:
        assert await merged.take(2).collect() == [(0, "x0"), (0, "x1")]
        with pytest.raises(WebSocketDisconnect) as info:
            await merged.first()
        assert info.value.code == 1011
        assert "raised by merged source 0" in info.value.__notes__
        live.push("y0")
        live.end()
        assert await merged.collect() == [(1, "y0")]


async def test_merge_hands_an_unconsumed_error_back_after_the_items() -> None:
    failing = text_stream(ScriptedSource(["a", "b"], end=RuntimeError("broken")))
    async with merge(failing) as merged:
        assert await merged.first() == (0, "a")
        await anyio.wait_all_tasks_blocked()
    assert await failing.first() == "b"
    with pytest.raises(RuntimeError, match="broken"):
        await failing.first()


async def test_merge_hands_unconsumed_items_back_to_their_sources() -> None:
    a = text_stream(ScriptedSource(*numbered("a", 6, per_batch=3)))
    b = text_stream(ScriptedSource(*numbered("b", 4, per_batch=2)))
    async with merge(a, b) as merged:
        await anyio.wait_all_tasks_blocked()
        consumed = await merged.take(2).collect()
    rest_a, rest_b = await a.collect(), await b.collect()
    got_a = [item for key, item in consumed if key == 0] + rest_a
    got_b = [item for key, item in consumed if key == 1] + rest_b
    assert got_a == [f"a{i}" for i in range(6)]
    assert got_b == [f"b{i}" for i in range(4)]


async def test_merge_hands_unconsumed_messages_back_to_a_session_passed_directly() -> None:
    source = ScriptedSource(["a", "b", "c"], ["d"])
    async with merge(source) as merged:
        assert await merged.first() == (0, "a")
        await anyio.wait_all_tasks_blocked()
    assert await text_stream(source).collect() == ["b", "c", "d"]


async def test_merge_cancelled_from_outside_loses_nothing(live: LiveSource) -> None:
    source = text_stream(live)
    live.push("a", "b", "c")
    with anyio.CancelScope() as scope:
        async with merge(source) as merged:
            assert await merged.first() == (0, "a")
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    live.end()
    assert await source.collect() == ["b", "c"]


async def test_merge_lets_the_block_exception_through_unwrapped(live: LiveSource) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with merge(live):
            raise KeyError("mine")


async def test_merged_stream_ends_after_the_block(live: LiveSource) -> None:
    live.push("a")
    async with merge(live) as merged:
        pass
    assert await merged.collect() == []


async def test_merge_cannot_be_entered_twice(live: LiveSource) -> None:
    cm = merge(live)
    async with cm:
        with pytest.raises(RuntimeError, match="already"):
            await cm.__aenter__()


def test_merge_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one"):
        merge()
    with pytest.raises(ValueError, match="not both"):
        merge(gen("a", 1), b=gen("b", 1))  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="buffer_size"):
        merge(gen("a", 1), buffer_size=0)
    with pytest.raises(TypeError):
        merge(42)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- broadcast


async def consume_all(consumers: tuple[BroadcastStream[Any], ...]) -> list[list[Any]]:
    results: list[list[Any]] = [[] for _ in consumers]

    async def read(i: int) -> None:
        async for item in consumers[i]:
            results[i].append(item)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for i in range(len(consumers)):
            tg.start_soon(read, i)
    return results


async def test_broadcast_gives_every_item_to_every_consumer() -> None:
    source = ScriptedSource(*numbered("m", 50, per_batch=7))
    async with broadcast(text_stream(source), 3, buffer_size=1) as consumers:
        results = await consume_all(consumers)
    expected = [f"m{i}" for i in range(50)]
    assert results == [expected, expected, expected]
    assert [c.dropped for c in consumers] == [0, 0, 0]


async def test_broadcast_block_lets_the_slowest_consumer_set_the_pace(live: LiveSource) -> None:
    for i in range(10):
        live.push(f"m{i}")
    async with broadcast(live, 2, buffer_size=1) as (fast, slow):
        assert await fast.first() == "m0"
        got: list[str] = []

        async def read_fast() -> None:
            got.append(await fast.first())

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_fast)
            await anyio.wait_all_tasks_blocked()
            # slow has not taken m0 yet: the reader waits for room, fast waits for it.
            assert got == []
            assert live._recv.statistics().current_buffer_used == 9
            assert await slow.first() == "m0"
        assert got == ["m1"]
        live.end()
        results = await consume_all((fast, slow))
    assert results == [[f"m{i}" for i in range(2, 10)], [f"m{i}" for i in range(1, 10)]]


async def test_broadcast_drop_oldest_reports_every_drop(caplog: pytest.LogCaptureFixture) -> None:
    source = ScriptedSource(*numbered("m", 20))
    caplog.set_level(logging.WARNING, logger="streams")
    async with broadcast(text_stream(source), 2, buffer_size=3, policy="drop_oldest") as (a, b):
        assert await a.collect() == [f"m{i}" for i in range(20)]
        rest_of_b = await b.collect()
    assert rest_of_b == ["m17", "m18", "m19"]
    assert b.dropped == 17
    assert a.dropped == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "streams"]
    assert messages
    assert all("broadcast consumer 1 fell behind" in m for m in messages)
    assert sum(int(m.split("dropped ")[1].split()[0]) for m in messages) == 17


async def test_broadcast_source_error_reaches_every_consumer_after_its_items() -> None:
    source = ScriptedSource(["a", "b"], end=WebSocketDisconnect(1011))
    async with broadcast(text_stream(source), 2) as consumers:
        for consumer in consumers:
            assert await consumer.take(2).collect() == ["a", "b"]
            with pytest.raises(WebSocketDisconnect):
                await consumer.first()
            assert await consumer.collect() == []


async def test_broadcast_closing_a_consumer_frees_the_others(live: LiveSource) -> None:
    for i in range(6):
        live.push(f"m{i}")
    live.end()
    async with broadcast(live, 2, buffer_size=1) as (reader, idle):
        assert await reader.first() == "m0"
        idle.close()
        assert await reader.collect() == [f"m{i}" for i in range(1, 6)]
    assert await idle.collect() == []


async def test_broadcast_consumers_keep_queued_items_after_the_block(live: LiveSource) -> None:
    live.push("a", "b")
    live.push("c")
    async with broadcast(live, 2, buffer_size=4) as (one, two):
        await anyio.wait_all_tasks_blocked()
        assert await one.first() == "a"
    assert await one.collect() == ["b", "c"]
    assert await two.collect() == ["a", "b", "c"]


async def test_broadcast_cannot_be_entered_twice(live: LiveSource) -> None:
    cm = broadcast(live, 1)
    async with cm:
        with pytest.raises(RuntimeError, match="already"):
            await cm.__aenter__()


async def test_broadcast_consumer_repr_counts_queued_and_dropped(live: LiveSource) -> None:
    live.push("a")
    live.push("b")
    async with broadcast(live, 1, buffer_size=4) as (only,):
        await anyio.wait_all_tasks_blocked()
        assert repr(only) == "<BroadcastStream index=0 buffered=0 queued=2 dropped=0>"


def test_broadcast_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n must"):
        broadcast(gen("a", 1), 0)
    with pytest.raises(ValueError, match="buffer_size"):
        broadcast(gen("a", 1), 1, buffer_size=0)
    with pytest.raises(ValueError, match="policy"):
        broadcast(gen("a", 1), 1, policy="drop_newest")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- end to end


class Payload(msgspec.Struct):
    sym: str
    px: float
    seq: int


async def test_merge_two_sessions_end_to_end(uvicorn_websockets_url: str) -> None:
    url = f"{uvicorn_websockets_url}/flood?n=300&size=16&kind=text"
    async with (
        streams.aconnect_ws(url) as ws1,
        streams.aconnect_ws(url) as ws2,
        merge(one=ws1, two=text_stream(ws2)) as merged,
    ):
        got = await merged.collect()
    for key in ("one", "two"):
        assert [int(str(m)[:8]) for k, m in got if k == key] == list(range(300))


async def test_merge_typed_json_sessions_end_to_end(server_url: str) -> None:
    url = f"{server_url}/json?n=5"
    async with (
        streams.aconnect_ws(url) as ws1,
        streams.aconnect_ws(url) as ws2,
        merge(json_stream(ws1, Payload), json_stream(ws2, Payload)) as merged,
    ):
        got = await merged.take(10).collect()
    assert sorted((key, p.seq) for key, p in got) == [(k, i) for k in (0, 1) for i in range(5)]


async def test_broadcast_a_session_end_to_end(uvicorn_websockets_url: str) -> None:
    url = f"{uvicorn_websockets_url}/flood?n=500&size=32&kind=binary"
    async with streams.aconnect_ws(url) as ws, broadcast(ws, 2, buffer_size=2) as consumers:
        results = await consume_all(consumers)
    for result in results:
        assert [int.from_bytes(m[:8], "big") for m in result] == list(range(500))
