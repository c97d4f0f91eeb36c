"""Feed operators (conflate, stale, sequence) on a session, a reconnecting feed and a merged stream.

Against scripted servers on 127.0.0.1 (tests/peers.py), on asyncio and trio. Where time matters,
a test runs on trio under ``MockClock(autojump_threshold=0)`` (virtual time: the clock jumps to the
next deadline whenever every task waits); the other tests are driven by events, with short quiet
times and no assertion on how long anything took.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest
from trio.testing import MockClock

import streams
from streams import SequenceGapError, Stale
from streams._operators import merge, message_stream
from tests import servers
from tests.peers import OP_TEXT, CloseReceived, ScriptedPeer, build_frame, scripted_server

pytestmark = pytest.mark.anyio

FAST = streams.Backoff(initial=0.01, maximum=0.05)
QUIET = 0.05
"""A short quiet time for the event-driven staleness tests."""


class Tick(msgspec.Struct):
    sym: str
    seq: int
    px: float = 1.0


def tick(sym: str, seq: int, px: float = 1.0) -> str:
    return json.dumps({"sym": sym, "seq": seq, "px": px})


async def send_all(peer: ScriptedPeer, messages: list[str]) -> None:
    """Send messages in one TCP write: the client reads them as one batch."""
    await peer.send_raw(b"".join(build_frame(OP_TEXT, m.encode()) for m in messages))


@asynccontextmanager
async def connect(url: str, **options: Any) -> AsyncIterator[streams.AsyncWebSocketSession]:
    async with streams.aconnect_ws(
        url + "/feed", keepalive_ping_interval_seconds=None, **options
    ) as ws:
        yield ws


def seqs(items: list[Any]) -> list[Any]:
    return [item.seq if isinstance(item, Tick) else item for item in items]


# --------------------------------------------------------------------------- conflate


async def test_conflate_yields_the_latest_per_key_in_order_of_first_arrival() -> None:
    async def script(peer: ScriptedPeer) -> None:
        burst = [tick("A", 1), tick("B", 2), tick("A", 3), tick("C", 4), tick("B", 5)]
        await send_all(peer, [*burst, tick("A", 6)])
        await peer.close_handshake(1000)

    async with scripted_server(script) as url, connect(url) as ws:
        out = await ws.json(Tick).conflate(lambda t: t.sym).chunks().collect()
    assert [[(t.sym, t.seq) for t in chunk] for chunk in out] == [[("A", 6), ("B", 5), ("C", 4)]]


async def test_conflate_with_drop_oldest_keeps_reading_the_socket() -> None:
    n, symbols = 2000, ["A", "B", "C", "D"]
    sent = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        for start in range(0, n, 100):
            await send_all(peer, [tick(symbols[i % 4], i) for i in range(start, start + 100)])
        sent.set()
        await peer.close_handshake(1000)

    async with (
        scripted_server(script) as url,
        connect(url, queue_size=8, overflow="drop_oldest") as ws,
    ):
        # The consumer reads nothing until the session has read everything
        # (sent by the server is not read yet): it kept reading, dropping the
        # oldest messages of its queue.
        await sent.wait()
        await servers.wait_until(lambda: ws.statistics().messages_received == n)
        latest = await ws.json(Tick).conflate(lambda t: t.sym).collect()
        dropped = ws.statistics().overflow_dropped
    assert {t.sym: t.seq for t in latest} == {s: n - 4 + i for i, s in enumerate(symbols)}
    assert len(latest) == 4
    assert dropped > 0


async def test_conflate_raises_a_key_error_after_the_items_before_it() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await send_all(peer, ['{"k": 1}', '{"k": 2}', "{}", '{"k": 3}'])
        await peer.close_handshake(1000)

    async with scripted_server(script) as url, connect(url) as ws:
        stream = ws.json(dict[str, int]).conflate(lambda m: m["k"])
        assert await stream.take(2).collect() == [{"k": 1}, {"k": 2}]
        with pytest.raises(KeyError):
            await stream.first()
        assert await stream.collect() == [{"k": 3}]


# --------------------------------------------------------------------------- stale


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_stale_marks_a_quiet_key_once_per_spell_in_virtual_time() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await send_all(peer, [tick("A", 1), tick("B", 1)])
        await anyio.sleep(3)  # virtual seconds
        await send_all(peer, [tick("A", 2)])
        await anyio.sleep(1)
        await send_all(peer, [tick("B", 2)])
        await anyio.sleep(10)
        await peer.close_handshake(1000)

    seen: list[tuple[float, Any]] = []
    async with scripted_server(script, finish_timeout=30) as url, connect(url) as ws:
        start = anyio.current_time()
        wall = time.time()
        async for item in ws.json(Tick).stale(lambda t: t.sym, after=2):
            seen.append((round(anyio.current_time() - start, 3), item))
    stamps = [
        (at, item.key if isinstance(item, Stale) else (item.sym, item.seq)) for at, item in seen
    ]
    assert stamps == [
        (0, ("A", 1)),
        (0, ("B", 1)),
        (2, "A"),  # both quiet since 0: one marker each, in order of arrival
        (2, "B"),
        (3, ("A", 2)),
        (4, ("B", 2)),
        (5, "A"),  # a new spell for A, 2 s after its last item
        (6, "B"),
    ]
    markers = [item for _, item in seen if isinstance(item, Stale)]
    assert all(wall <= m.last_seen <= time.time() for m in markers)
    # A's second marker reports its item of t=3, later than the first marker's item of t=0.
    assert markers[2].last_seen >= markers[0].last_seen


async def test_stale_markers_come_in_line_with_the_items() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await send_all(peer, [tick("A", 1), tick("B", 1)])
        assert await peer.receive_message() == "saw A and B go quiet"
        await send_all(peer, [tick("A", 2)])
        assert await peer.receive_message() == "saw A go quiet again"
        await peer.close_handshake(1000)

    items: list[Any] = []
    async with scripted_server(script) as url, connect(url) as ws:
        before = time.time()
        stream = ws.json(Tick).stale(lambda t: t.sym, after=QUIET)
        async for item in stream:
            items.append(item)
            keys = [i.key for i in items if isinstance(i, Stale)]
            if not isinstance(item, Stale):
                continue
            if keys == ["A", "B"]:
                await ws.send_text("saw A and B go quiet")
            elif keys == ["A", "B", "A"]:
                await ws.send_text("saw A go quiet again")
    shown = [f"stale {i.key}" if isinstance(i, Stale) else f"{i.sym}{i.seq}" for i in items]
    assert shown == ["A1", "B1", "stale A", "stale B", "A2", "stale A"]
    assert before <= items[2].last_seen <= items[5].last_seen <= time.time()


async def test_stale_on_a_merged_stream_marks_a_quiet_source() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await send_all(peer, [tick(peer.path.strip("/"), 1)])
        if peer.path == "/b":
            await peer.answer_close()  # b says nothing more
            return
        try:
            while True:  # a answers every message with a tick: it never goes quiet for long
                message = await peer.receive_message()
                await send_all(peer, [tick("a", int(message))])
        except CloseReceived as close:
            await peer.send_close(close.code)
            await peer.close_tcp()

    marked: list[Any] = []
    async with (
        scripted_server(script) as url,
        streams.aconnect_ws(url + "/a", keepalive_ping_interval_seconds=None) as a,
        streams.aconnect_ws(url + "/b", keepalive_ping_interval_seconds=None) as b,
        merge(a=a.json(Tick), b=b.json(Tick)) as merged,
    ):
        count = 1
        async for item in merged.stale(lambda pair: pair[0], after=QUIET):
            if isinstance(item, Stale):
                marked.append(item.key)
                if item.key == "b":
                    break
            elif item[0] == "a":
                count += 1
                await a.send_text(str(count))
    assert marked[-1] == "b"
    assert marked.count("b") == 1


# --------------------------------------------------------------------------- sequence

NUMBERS = [1, 2, 2, 3, 5, 4, 6, 7]
"""A duplicate (2), a gap (4 missing before 5), an item out of order (4), then in order."""


def numbered_script(numbers: list[int]) -> Callable[[ScriptedPeer], Any]:
    async def script(peer: ScriptedPeer) -> None:
        await send_all(peer, [tick("A", n) for n in numbers])
        await peer.close_handshake(1000)

    return script


async def test_sequence_raises_at_a_gap_and_goes_on_after_it() -> None:
    async with scripted_server(numbered_script(NUMBERS)) as url, connect(url) as ws:
        stream = ws.json(Tick).sequence(lambda t: t.seq)
        got = [t.seq for t in await stream.take(3).collect()]
        with pytest.raises(SequenceGapError) as caught:
            await stream.first()
        rest = await stream.collect()
    assert got == [1, 2, 3]
    assert (caught.value.expected, caught.value.received, caught.value.item.seq) == (4, 5, 5)
    assert caught.value.missing == 1
    assert isinstance(caught.value, streams.HTTPXWSException)
    assert "expected 4, received 5" in str(caught.value)
    assert [t.seq for t in rest] == [6, 7]  # 5 came with the error, 4 is older
    assert (stream.gaps, stream.dropped, stream.expected) == (1, 2, 8)


async def test_sequence_skip_lets_gaps_through_and_counts_them() -> None:
    async with scripted_server(numbered_script([*NUMBERS, 10, 9, 11])) as url, connect(url) as ws:
        stream = ws.json(Tick).sequence(lambda t: t.seq, on_gap="skip")
        got = [t.seq for t in await stream.collect()]
    assert got == [1, 2, 3, 5, 6, 7, 10, 11]
    assert (stream.gaps, stream.dropped) == (2, 3)


async def test_sequence_calls_a_sync_handler_in_line() -> None:
    errors: list[tuple[int, int, int]] = []
    delivered: list[int] = []

    def on_gap(error: SequenceGapError) -> None:
        # The items before the gap were all delivered first.
        assert delivered == [1, 2, 3]
        errors.append((error.expected, error.received, error.item.seq))

    async with scripted_server(numbered_script(NUMBERS)) as url, connect(url) as ws:
        async for t in ws.json(Tick).sequence(lambda t: t.seq, on_gap=on_gap):
            delivered.append(t.seq)
    assert delivered == [1, 2, 3, 5, 6, 7]
    assert errors == [(4, 5, 5)]


async def test_sequence_handler_returning_a_number_resynchronises() -> None:
    answers = iter([9, 13])

    def on_gap(error: SequenceGapError) -> int:
        return next(answers)

    # 5 is a gap; the resync expects 9: 5..8 are older; then 13 after 10 is a gap again.
    numbers = [1, 2, 3, 5, 6, 7, 8, 9, 10, 13, 14]
    async with scripted_server(numbered_script(numbers)) as url, connect(url) as ws:
        stream = ws.json(Tick).sequence(lambda t: t.seq, on_gap=on_gap)
        got = [t.seq for t in await stream.collect()]
    assert got == [1, 2, 3, 9, 10, 13, 14]
    assert (stream.gaps, stream.dropped) == (2, 4)


async def test_sequence_handler_is_called_again_while_the_item_is_ahead() -> None:
    calls: list[tuple[int, int]] = []

    async def on_gap(error: SequenceGapError) -> int | None:
        calls.append((error.expected, error.received))
        await anyio.lowlevel.checkpoint()
        return 4 if len(calls) == 1 else None

    async with scripted_server(numbered_script([1, 2, 6, 7])) as url, connect(url) as ws:
        got = [
            t.seq for t in await ws.json(Tick).sequence(lambda t: t.seq, on_gap=on_gap).collect()
        ]
    assert calls == [(3, 6), (4, 6)]
    assert got == [1, 2, 6, 7]


async def test_sequence_start_and_a_handler_error_keep_the_item() -> None:
    failing = True

    def on_gap(error: SequenceGapError) -> None:
        if failing:
            raise RuntimeError("snapshot service down")

    async with scripted_server(numbered_script([5, 7, 8])) as url, connect(url) as ws:
        stream = ws.json(Tick).sequence(lambda t: t.seq, on_gap=on_gap, start=4)
        assert stream.expected == 4
        with pytest.raises(RuntimeError, match="snapshot service down"):
            await stream.first()  # 5 is ahead of 4
        assert (stream.gaps, stream.expected) == (0, 4)
        failing = False
        got = [t.seq for t in await stream.collect()]
    assert got == [5, 7, 8]
    assert stream.gaps == 2


def test_sequence_checks_its_arguments() -> None:
    send, receive = anyio.create_memory_object_stream[str](1)
    send.close()
    receive.close()
    stream = message_stream(receive)
    with pytest.raises(ValueError, match="'skip' or a callable, not 'ignore'"):
        stream.sequence(len, on_gap="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_gap must be"):
        stream.sequence(len, on_gap=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after must be > 0"):
        stream.stale(len, after=0)
    with pytest.raises(TypeError):
        stream.conflate(anyio.sleep)  # type: ignore[arg-type]


async def test_sequence_cancelled_in_the_handler_loses_nothing() -> None:
    send, receive = anyio.create_memory_object_stream[Tick](math.inf)
    for n in (1, 2, 4, 5):
        send.send_nowait(Tick("A", n))
    send.close()
    entered, calls = anyio.Event(), 0

    async def on_gap(error: SequenceGapError) -> int | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            await anyio.sleep_forever()
        return None

    stream = message_stream(receive).sequence(lambda t: t.seq, on_gap=on_gap)
    got: list[int] = []
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            async for t in stream:
                got.append(t.seq)

        tg.start_soon(read)
        await entered.wait()
        tg.cancel_scope.cancel()
    assert got == [1, 2]
    with receive:
        assert [t.seq for t in await stream.collect()] == [4, 5]
    assert (calls, stream.gaps) == (2, 1)


async def test_sequence_items_handed_back_are_checked_again() -> None:
    async with scripted_server(numbered_script([1, 2, 3, 4])) as url, connect(url) as ws:
        stream = ws.json(Tick).sequence(lambda t: t.seq)
        async for t in stream:
            assert t.seq == 1
            break
        # first() hands 3 and 4 back upstream: they are checked again, not taken for duplicates.
        assert (await stream.first()).seq == 2
        assert stream.expected == 3
        assert [t.seq for t in await stream.collect()] == [3, 4]
        assert stream.dropped == 0


# ------------------------------------------------------------------ on the reconnecting feed


async def test_operators_on_a_reconnecting_feed() -> None:
    connections = 0

    async def script(peer: ScriptedPeer) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await send_all(peer, [tick("A", 1), tick("B", 2), tick("A", 3)])
            await peer.close_handshake(1000)  # the feed reconnects
        else:
            # The new connection repeats 3, then 5 comes after a gap.
            await send_all(peer, [tick("A", 3), tick("B", 5), tick("A", 6)])
            await peer.answer_close()

    gaps: list[tuple[int, int]] = []
    async with (
        scripted_server(script) as url,
        streams.reconnecting_ws(
            url + "/feed", backoff=FAST, keepalive_ping_interval_seconds=None
        ) as feed,
    ):
        stream = feed.json(Tick).sequence(
            lambda t: t.seq, on_gap=lambda e: gaps.append((e.expected, e.received))
        )
        got: list[Any] = []
        async for item in stream.stale(lambda t: t.sym, after=QUIET):
            got.append(item)
            if isinstance(item, Tick) and item.seq == 6:
                break
    assert [t.seq for t in got if isinstance(t, Tick)] == [1, 2, 3, 5, 6]
    assert gaps == [(4, 5)]
    assert (stream.gaps, stream.dropped) == (1, 1)


async def test_conflate_and_stale_on_a_reconnecting_feed() -> None:
    connections = 0

    async def script(peer: ScriptedPeer) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await send_all(peer, [tick("A", 1), tick("B", 1), tick("A", 2)])
            await peer.close_handshake(1000)  # the feed reconnects
        else:
            await send_all(peer, [tick("A", 3)])  # B is gone for good
            await peer.answer_close()

    async with (
        scripted_server(script) as url,
        streams.reconnecting_ws(
            url + "/feed", backoff=FAST, keepalive_ping_interval_seconds=None
        ) as feed,
    ):
        ticks: list[tuple[str, int]] = []
        marked: list[Any] = []
        stream = feed.json(Tick).conflate(lambda t: t.sym).stale(lambda t: t.sym, after=QUIET)
        async for item in stream:
            if isinstance(item, Stale):
                marked.append(item.key)
            else:
                ticks.append((item.sym, item.seq))
            if ("A", 3) in ticks and "B" in marked:
                break
    # The first connection's three ticks came in one batch: A's first tick gave way.
    assert ticks == [("A", 2), ("B", 1), ("A", 3)]
    assert marked.count("B") == 1


async def test_conflate_and_sequence_on_a_merged_stream() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await send_all(peer, [tick("A", n) for n in (1, 2, 2, 4)] + [tick("B", 5)])
        await peer.close_handshake(1000)

    async with (
        scripted_server(script) as url,
        streams.aconnect_ws(url + "/x", keepalive_ping_interval_seconds=None) as x,
        merge(x=x.json(Tick)) as merged,
    ):
        stream = merged.sequence(lambda pair: pair[1].seq, on_gap="skip")
        got = [t.seq for _, t in await stream.collect()]
    assert got == [1, 2, 4, 5]
    assert (stream.gaps, stream.dropped) == (1, 1)
    async with (
        scripted_server(script) as url,
        streams.aconnect_ws(url + "/x", keepalive_ping_interval_seconds=None) as x,
        merge(x=x.json(Tick)) as merged,
    ):
        latest = await merged.conflate(lambda pair: pair[1].sym).collect()
    assert [(key, t.sym, t.seq) for key, t in latest] == [("x", "A", 4), ("x", "B", 5)]


# ------------------------------------------------------------------ the snapshot + deltas recipe


class Delta(msgspec.Struct):
    seq: int
    sym: str
    px: float


class Snapshot(msgspec.Struct):
    seq: int
    book: dict[str, float]


class Exchange:
    """An exchange-like server: each update changes the book and takes the next number.

    ``/deltas`` publishes updates after a subscription, losing those in ``lost``, sending those
    in ``repeated`` twice and those in ``late`` after the next one; between rounds it waits for
    the n-th snapshot to be served, so that the snapshots fall where the test wants them.
    ``/snapshot`` serves the book as it stands.
    """

    def __init__(self, rounds: list[int], lost: set[int], repeated: set[int], late: set[int]):
        self.rounds = rounds
        self.lost, self.repeated, self.late = lost, repeated, late
        self.seq = 0
        self.book: dict[str, float] = {}
        self.snapshots: list[int] = []
        self.served = [anyio.Event() for _ in rounds]

    def update(self) -> str:
        self.seq += 1
        sym, px = "XYZ"[self.seq % 3], 100.0 + self.seq
        self.book[sym] = px
        return json.dumps({"seq": self.seq, "sym": sym, "px": px})

    async def script(self, peer: ScriptedPeer) -> None:
        if peer.path == "/snapshot":
            await peer.send_text(json.dumps({"seq": self.seq, "book": self.book}))
            self.snapshots.append(self.seq)
            self.served[len(self.snapshots) - 1].set()
            await peer.close_handshake(1000)
            return
        assert json.loads(await peer.receive_message()) == {"op": "subscribe"}
        for i, count in enumerate(self.rounds):
            if i:
                await self.served[i - 1].wait()
            frames: list[str] = []
            held: str | None = None
            for _ in range(count):
                delta = self.update()
                if self.seq in self.lost:
                    continue
                frames += [delta] * (2 if self.seq in self.repeated else 1)
                if held is not None:
                    frames.append(held)
                    held = None
                if self.seq in self.late:
                    held = frames.pop()
            await send_all(peer, frames)
        await peer.close_handshake(1000)


async def fetch_snapshot(url: str) -> Snapshot:
    async with streams.aconnect_ws(url + "/snapshot", keepalive_ping_interval_seconds=None) as ws:
        return await ws.json(Snapshot).first()


async def test_snapshot_and_deltas_recipe_rebuilds_the_book() -> None:
    # Round 1 (1-4) comes before the first snapshot, or partly after it; round 2 (5-9) loses
    # 6, repeats 8 and sends 7 after 8: at 8, the client fetches a second snapshot (at 9), and
    # 8, 8, 7 and 9 are older than it; round 3 (10-12) repeats 10.
    exchange = Exchange([4, 5, 3], lost={6}, repeated={8, 10}, late={7})
    async with scripted_server(exchange.script) as url, connect(url) as ws:
        await ws.send_json({"op": "subscribe"})
        snapshot = await fetch_snapshot(url)  # the deltas wait in the session meanwhile
        book = dict(snapshot.book)
        gaps: list[tuple[int, int]] = []

        async def resync(gap: SequenceGapError) -> int:
            gaps.append((gap.expected, gap.received))
            fresh = await fetch_snapshot(url)
            book.clear()
            book.update(fresh.book)
            return fresh.seq + 1

        deltas = ws.json(Delta).sequence(lambda d: d.seq, on_gap=resync, start=snapshot.seq + 1)
        applied: list[int] = []
        async for delta in deltas:
            book[delta.sym] = delta.px
            applied.append(delta.seq)
    assert exchange.snapshots == [snapshot.seq, 9]
    assert book == exchange.book
    assert gaps == [(6, 8)]
    assert applied == [*range(snapshot.seq + 1, 6), 10, 11, 12]
    # Dropped: 1 to the snapshot, then 8, 8, 7 and 9 after the gap, and 10 repeated.
    assert (deltas.gaps, deltas.dropped) == (1, snapshot.seq + 5)
