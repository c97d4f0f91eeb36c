"""Time and state operators: throttle, sample, debounce, timeout, timestamp, scan,
distinct_until_changed and group_by, on asyncio and trio.

Where time matters the tests run on a virtual clock (trio's ``MockClock`` with
``autojump_threshold=0``, :class:`VirtualTimeLoop` on asyncio): sleeps and deadlines
take no real time and every instant is exact. The tests over real servers on
127.0.0.1 use the real clock and assert nothing about how long things took.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import anyio
import pytest
import trio.testing

import streams
from streams import Timestamped, merge, message_stream, reconnecting_ws
from streams._engine import _reader
from streams._engine._readtimes import ReadTimes
from tests.test_plain_loops import runners

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- helpers


_OPEN: list[Any] = []


def channel(size: float = math.inf) -> tuple[Any, Any]:
    """A memory object stream, both ends closed after the test."""
    send, receive = anyio.create_memory_object_stream[Any](size)
    _OPEN.extend([send, receive])
    return send, receive


@pytest.fixture(autouse=True)
def _close_channels() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on a virtual clock: when every task waits, time jumps to the next deadline.

    The loop's ``time()`` is a counter. Where the loop would block in ``select``
    until its next timer, it polls the sockets instead and, if none is ready,
    moves the counter to that timer (a wait with no timer still blocks on I/O).
    """

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        select = self._selector.select

        def jump(timeout: float | None = None) -> list[Any]:
            if timeout is None or timeout <= 0:
                return select(timeout)
            events = select(0)
            if not events:
                self._now += timeout
            return events

        self._selector.select = jump  # type: ignore[method-assign]

    def time(self) -> float:
        return self._now


def virtual_clock(backend: str) -> tuple[str, dict[str, Any]]:
    """The backend with a virtual clock that jumps to the next deadline when every task waits."""
    if backend == "trio":
        return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}
    return "asyncio", {"loop_factory": VirtualTimeLoop}


class Timed:
    """Sends ``(delay, item)`` pairs into a channel: each item ``delay`` seconds after the start."""

    def __init__(self, *script: tuple[float, Any]) -> None:
        self.script = script
        self.send, self.receive = channel()
        self.start = 0.0

    async def run(self, end: float | None = None) -> None:
        """Send the items on time, then close the channel (at ``end`` if given)."""
        self.start = anyio.current_time()
        with self.send:
            for at, item in self.script:
                await anyio.sleep_until(self.start + at)
                self.send.send_nowait(item)
            if end is not None:
                await anyio.sleep_until(self.start + end)

    def now(self) -> float:
        return round(anyio.current_time() - self.start, 6)


async def timed_items(source: Timed, stream: streams.MessageStream[Any]) -> list[tuple[Any, float]]:
    """Each item of ``stream`` and when (on the source's clock) it came out."""
    out = []
    async for item in stream:
        out.append((item, source.now()))
    return out


async def run_timed(
    source: Timed, stream: streams.MessageStream[Any], end: float | None = None
) -> list[tuple[Any, float]]:
    result: list[tuple[Any, float]] = []

    async def consume() -> None:
        result.extend(await timed_items(source, stream))

    async with anyio.create_task_group() as tg:
        tg.start_soon(source.run, end)
        tg.start_soon(consume)
    return result


async def numbers(*items: Any, fail: Exception | None = None) -> AsyncIterator[Any]:
    for item in items:
        await anyio.lowlevel.checkpoint()
        yield item
    if fail is not None:
        raise fail


# --------------------------------------------------------------------------- on a virtual clock


class TestOnAVirtualClock:
    @pytest.fixture(params=["asyncio", "trio"], ids=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
        return virtual_clock(request.param)

    async def test_throttle_yields_the_first_item_of_each_interval(self) -> None:
        src = Timed((0, "a"), (0.3, "b"), (0.6, "c"), (1.1, "d"), (1.5, "e"), (2.2, "f"))
        got = await run_timed(src, message_stream(src.receive).throttle(1.0))
        assert got == [("a", 0), ("d", 1.1), ("f", 2.2)]

    async def test_throttle_lets_only_the_first_item_of_a_batch_through(self) -> None:
        send, receive = channel(10)
        for i in range(5):
            send.send_nowait(i)
        send.close()
        assert await message_stream(receive).throttle(1.0).collect() == [0]

    async def test_sample_yields_the_latest_item_at_each_tick(self) -> None:
        src = Timed((0.1, "a"), (0.5, "b"), (1.2, "c"), (3.5, "d"))
        got = await run_timed(src, message_stream(src.receive).sample(1.0), end=3.7)
        # Tick 3 has nothing new; at the end the pending "d" comes at once.
        assert got == [("b", 1.0), ("c", 2.0), ("d", 3.7)]

    async def test_sample_keeps_its_pending_item_across_a_cancelled_read(self) -> None:
        send, receive = channel(10)
        sampled = message_stream(receive).sample(1.0)
        send.send_nowait("a")
        with anyio.move_on_after(0.5):
            await sampled.first()
            pytest.fail("sampled before the tick")
        send.close()
        assert await sampled.collect() == ["a"]

    async def test_debounce_yields_an_item_after_a_quiet_interval(self) -> None:
        src = Timed((0, "a"), (0.2, "b"), (0.4, "c"), (1.5, "d"), (1.7, "e"))
        got = await run_timed(src, message_stream(src.receive).debounce(0.5), end=3.0)
        assert got == [("c", 0.9), ("e", 2.2)]

    async def test_debounce_yields_the_pending_item_at_the_end(self) -> None:
        src = Timed((0, "a"), (0.1, "b"))
        got = await run_timed(src, message_stream(src.receive).debounce(10.0), end=0.2)
        assert got == [("b", 0.2)]

    async def test_debounce_yields_the_pending_item_before_an_error(self) -> None:
        stream = message_stream(numbers(1, 2, fail=ValueError("boom"))).debounce(5.0)
        assert await stream.first() == 2
        with pytest.raises(ValueError, match="boom"):
            await stream.first()

    async def test_timeout_raises_when_no_item_comes_in_time_then_waits_again(self) -> None:
        src = Timed((0.5, "a"), (2.0, "b"))
        stream = message_stream(src.receive).timeout(1.0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(src.run)
            assert await stream.first() == "a"
            with pytest.raises(TimeoutError, match=r"no item within 1\.0 s"):
                await stream.first()
            assert src.now() == 1.5
            assert await stream.first() == "b"
            assert src.now() == 2.0

    async def test_timeout_passes_a_steady_stream_and_its_end(self) -> None:
        src = Timed(*((0.9 * i, i) for i in range(5)))
        got = await run_timed(src, message_stream(src.receive).timeout(1.0))
        assert [item for item, _ in got] == [0, 1, 2, 3, 4]

    async def test_group_by_makes_the_source_wait_for_a_full_group(self) -> None:
        read: list[str] = []

        async def source() -> AsyncIterator[str]:
            for item in ["a1", "a2", "a3", "b1"]:
                read.append(item)
                yield item

        groups = message_stream(source()).group_by(lambda s: s[0], queue_size=2)
        key, group_a = await groups.first()
        assert key == "a"
        with anyio.move_on_after(1.0):
            await groups.first()
            pytest.fail("a group appeared while group 'a' was full")
        # "a3" was read and waits for room; "b1" was not read.
        assert read == ["a1", "a2", "a3"]
        assert await group_a.take(2).collect() == ["a1", "a2"]
        assert await group_a.first() == "a3"
        key, group_b = await groups.first()
        assert key == "b"
        assert await group_b.collect() == ["b1"]
        assert await group_a.collect() == []
        assert await groups.collect() == []

    async def test_state_operators_keep_what_is_handed_back(self) -> None:
        # collect() cancelled mid-way hands its items back: delivered again as computed.
        send, receive = channel(10)
        for i in [1, 2, 3]:
            send.send_nowait(i)
        sums = message_stream(receive).scan(lambda acc, x: acc + x, 0)
        with anyio.move_on_after(0.05):
            await sums.collect()
        send.send_nowait(4)
        send.close()
        assert await sums.collect() == [1, 3, 6, 10]


# --------------------------------------------------------------------------- state operators


async def test_scan_yields_every_running_result() -> None:
    stream = message_stream(numbers(1, 2, 3, 4)).scan(lambda acc, x: acc + x, 10)
    assert await stream.collect() == [11, 13, 16, 20]


async def test_scan_raises_at_the_failing_item_and_goes_on_from_the_last_result() -> None:
    def add(acc: int, x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return acc + x

    stream = message_stream(numbers(1, 2, 3, 4)).scan(add, 0)
    assert await stream.take(2).collect() == [1, 3]
    with pytest.raises(ValueError, match="three"):
        await stream.first()
    assert await stream.collect() == [7]


async def test_distinct_until_changed_drops_consecutive_repeats() -> None:
    stream = message_stream(numbers(1, 1, 2, 2, 2, 1, 3, 3))
    assert await stream.distinct_until_changed().collect() == [1, 2, 1, 3]


async def test_distinct_until_changed_compares_keys() -> None:
    items = [{"px": 1, "t": 0}, {"px": 1, "t": 1}, {"px": 2, "t": 2}, {"px": 1, "t": 3}]
    stream = message_stream(numbers(*items)).distinct_until_changed(lambda d: d["px"])
    assert [d["t"] for d in await stream.collect()] == [0, 2, 3]


async def test_group_by_routes_every_item_to_its_group() -> None:
    words = ["apple", "bean", "avocado", "beet", "cherry", "asparagus"]
    groups = message_stream(numbers(*words)).group_by(lambda w: w[0])
    seen: dict[str, list[str]] = {}
    async for key, group in groups:
        seen[key] = []
        async for word in group.take(1):
            seen[key].append(word)
    # Iterating the groups read everything: the rest waits in the groups.
    assert list(seen) == ["a", "b", "c"]
    assert seen == {"a": ["apple"], "b": ["bean"], "c": ["cherry"]}


async def test_group_by_groups_are_read_concurrently() -> None:
    words = ["apple", "bean", "avocado", "beet", "cherry", "asparagus"] * 5
    result: dict[str, list[str]] = {}

    async def follow(key: str, group: streams.MessageStream[str]) -> None:
        result[key] = await group.collect()

    async with anyio.create_task_group() as tg:
        async for key, group in message_stream(numbers(*words)).group_by(
            lambda w: w[0], queue_size=1
        ):
            tg.start_soon(follow, key, group)
    assert result == {k: [w for w in words if w[0] == k] for k in "abc"}


async def test_group_by_raises_the_source_error_in_every_stream_after_its_items() -> None:
    groups = message_stream(numbers("a1", "b1", "a2", fail=ValueError("gone"))).group_by(
        lambda s: s[0]
    )
    (ka, a), (kb, b) = await groups.take(2).collect()
    assert (ka, kb) == ("a", "b")
    with pytest.raises(ValueError, match="gone"):
        await groups.first()
    assert await a.take(2).collect() == ["a1", "a2"]
    with pytest.raises(ValueError, match="gone"):
        await a.first()
    assert await b.first() == "b1"
    with pytest.raises(ValueError, match="gone"):
        await b.first()


async def test_timestamp_of_a_plain_source_is_the_arrival_time() -> None:
    before = __import__("time").time()
    stamped = await message_stream(numbers("x", "y")).timestamp().collect()
    after = __import__("time").time()
    assert [s.value for s in stamped] == ["x", "y"]
    assert all(isinstance(s, Timestamped) and before <= s.received_at <= after for s in stamped)


@pytest.mark.parametrize(
    "build",
    [
        lambda s: s.throttle(-1),
        lambda s: s.sample(0),
        lambda s: s.debounce(-1),
        lambda s: s.timeout(-1),
        lambda s: s.group_by(len, queue_size=0),
    ],
)
def test_bad_arguments_are_refused(build: Any) -> None:
    with pytest.raises(ValueError, match="must be >"):
        build(message_stream(numbers()))


# --------------------------------------------------------------------------- over real servers


class FakeWallClock:
    """Stands for ``time`` in the reader module: counts calls, returns 1000.0, 1001.0..."""

    def __init__(self) -> None:
        self._values: Iterator[int] = itertools.count(1000)
        self.calls = 0

    def time(self) -> float:
        self.calls += 1
        return float(next(self._values))


async def test_timestamp_gives_the_read_time_once_per_read(
    echo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeWallClock()
    monkeypatch.setattr(_reader, "time", clock)
    async with streams.aconnect_ws(echo_url) as ws:
        stamped = ws.json().map(lambda d: d["i"]).timestamp()
        await ws.send_json({"i": 0})
        first = await stamped.first()
        assert first == Timestamped(0, 1000.0)  # the reader's clock, not the consumer's
        for i in range(1, 20):
            await ws.send_json({"i": i})
        got = await stamped.take(19).collect()
        reads = ws._engine.reader.data_reads  # type: ignore[union-attr]
    assert [s.value for s in got] == list(range(1, 20))
    times = [s.received_at for s in got]
    assert times == sorted(times)
    assert set(times) <= {1000.0 + n for n in range(clock.calls)}
    # One clock call per read that brought messages, from the first read after timestamp().
    assert 1 <= clock.calls <= reads


async def test_timestamp_is_the_read_time_not_the_time_taken(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        stamped = ws.text().timestamp()
        await ws.send_text("ping")
        assert (await stamped.first()).value == "ping"  # recording is on
        await ws.send_text("late")
        # Wait for the echo to be read (the session's own receive puts it back).
        message = await ws.receive_text()
        ws._unread_batch([message])
        read_by = __import__("time").time()
        late = await stamped.first()
    assert late.value == "late"
    assert late.received_at <= read_by


async def test_time_operators_on_a_session(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        for i in [1, 1, 2, 3, 3]:
            await ws.send_json(i)
        ints = ws.json(int)
        assert await ints.take(5).distinct_until_changed().collect() == [1, 2, 3]
        for i in [1, 2, 3]:
            await ws.send_json(i)
        assert await ints.take(3).scan(lambda a, x: a + x, 0).collect() == [1, 3, 6]
        for i in [1, 2, 3]:
            await ws.send_json(i)
        assert await ints.take(3).throttle(3600).collect() == [1]
        for i in [1, 2, 3]:
            await ws.send_json(i)
        assert await ints.take(3).timeout(3600).sample(3600).collect() == [3]
        for i in [1, 2, 3]:
            await ws.send_json(i)
        assert await ints.take(3).debounce(3600).collect() == [3]
        for i in [1, 2, 3, 4]:
            await ws.send_json(i)
        odd_even = {k: await g.collect() async for k, g in ints.take(4).group_by(lambda i: i % 2)}
        assert odd_even == {1: [1, 3], 0: [2, 4]}


async def test_time_operators_on_a_reconnecting_feed(echo_url: str) -> None:
    async with reconnecting_ws(echo_url) as feed:
        for i in [1, 1, 2, 5]:
            await feed.send_text(str(i))
        numbers_in = feed.text().map(int)
        got = await numbers_in.take(4).distinct_until_changed().timestamp().collect()
        assert [s.value for s in got] == [1, 2, 5]
        assert all(s.received_at > 0 for s in got)
        await feed.send_text("7")
        assert await numbers_in.timeout(3600).scan(lambda a, x: a + x, 1).first() == 8


async def test_time_operators_on_a_merged_stream(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as a, streams.aconnect_ws(echo_url) as b:
        for i in range(3):
            await a.send_text(f"a{i}")
            await b.send_text(f"b{i}")
        async with merge(a=a.text().take(3), b=b.text().take(3)) as merged:
            by_source = {
                key: [item for _, item in await group.collect()]
                async for key, group in merged.timeout(3600).group_by(lambda pair: pair[0])
            }
    assert by_source == {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"]}


async def stamped_session(url: str) -> None:
    async with streams.aconnect_ws(url) as ws:
        stamped = ws.text().timestamp()
        for i in range(50):
            await ws.send_text(str(i))
        got = await stamped.take(50).throttle(0).timeout(20).collect()
    assert [s.value for s in got] == [str(i) for i in range(50)]
    assert [s.received_at for s in got] == sorted(s.received_at for s in got)


@pytest.mark.parametrize("run", runners())
def test_read_times_under_a_plain_event_loop(
    run: Callable[[Coroutine[Any, Any, None]], None], echo_url: str
) -> None:
    # The reader may parse in the transport's callback: no anyio there.
    run(asyncio.wait_for(stamped_session(echo_url), 20))


# --------------------------------------------------------------------------- the read-time log


def read_log(*reads: tuple[float, int]) -> ReadTimes:
    """A read-time log after reads of ``(time, how many messages)``."""
    log = ReadTimes()
    for read_at, count in reads:
        log.read_at = read_at
        log.entered(count)
    return log


class TestReadTimes:
    def test_messages_get_the_time_of_their_read_in_order(self) -> None:
        log = read_log((1.0, 2), (2.0, 3))
        assert log.times(1, inside=4) == [1.0]
        assert log.times(3, inside=1) == [1.0, 2.0, 2.0]
        assert log.times(1, inside=0) == [2.0]

    def test_messages_put_back_keep_their_times(self) -> None:
        log = read_log((1.0, 1), (2.0, 2))
        assert log.times(3, inside=0) == [1.0, 2.0, 2.0]
        # The last two are put back (inside again), then taken again.
        assert log.times(2, inside=0) == [2.0, 2.0]

    def test_messages_from_before_recording_have_no_time(self) -> None:
        # Two messages were already waiting (inside, not counted) when recording started.
        log = read_log((5.0, 1))
        assert log.times(2, inside=1) == [None, None]
        assert log.times(1, inside=0) == [5.0]

    def test_a_withdrawn_message_is_not_counted(self) -> None:
        log = read_log((1.0, 1))
        log.entered(1)  # waits to go in...
        log.withdrawn()  # ...and is dropped
        log.read_at = 3.0
        log.entered(1)
        assert log.times(2, inside=0) == [1.0, 3.0]


async def test_timestamp_on_a_reconnecting_feed_gives_the_read_time(
    echo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeWallClock()
    monkeypatch.setattr(_reader, "time", clock)
    async with reconnecting_ws(echo_url) as feed:
        await feed.send_text("before")
        assert await feed.receive() == "before"
        stamped = feed.text().map(str.upper).timestamp()
        await feed.send_text("m0")
        first = await stamped.first()
        assert first == Timestamped("M0", 1000.0)  # the session's reader clock
        for i in range(1, 20):
            await feed.send_text(f"m{i}")
        got = await stamped.take(19).collect()
    assert [s.value for s in got] == [f"M{i}" for i in range(1, 20)]
    times = [s.received_at for s in got]
    assert times == sorted(times)
    assert set(times) <= {1000.0 + n for n in range(clock.calls)}
