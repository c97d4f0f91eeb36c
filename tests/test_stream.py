"""Typed message streams: operators, decoding, errors at their position, cancellation.

Unit tests read in-memory sources that implement the session's batch contract;
the end-to-end tests at the bottom read real servers over loopback.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.abc
import msgspec
import pytest
from aiostream import pipe, stream
from aiostream.core import Stream
from wsproto.events import BytesMessage, TextMessage

import streams
from streams._exceptions import (
    WebSocketDecodeError,
    WebSocketDisconnect,
    WebSocketInvalidTypeReceived,
)
from streams._operators import (
    Converter,
    JSONSender,
    MessageStream,
    bytes_stream,
    json_converter,
    json_sender,
    json_stream,
    message_stream,
    text_stream,
)
from streams._types import Message

pytestmark = pytest.mark.anyio


class Tick(msgspec.Struct):
    sym: str
    px: float


def tick(sym: str, px: object) -> str:
    return msgspec.json.encode({"sym": sym, "px": px}).decode()


# --------------------------------------------------------------------------- in-memory sources


class ScriptedSource:
    """Delivers the given batches in order (one per call), then ends normally or raises ``end``.

    Like the session, it takes read-ahead messages back (``_unread_batch``) and
    delivers them first.
    """

    def __init__(self, *batches: list[Message], end: Exception | None = None) -> None:
        self.batches = [list(b) for b in batches]
        self.end = end
        self.pending: list[Message] = []
        self.calls = 0

    async def _receive_batch(self) -> list[Message]:
        await anyio.lowlevel.checkpoint()
        self.calls += 1
        if self.pending:
            batch, self.pending = self.pending, []
            return batch
        if self.batches:
            return self.batches.pop(0)
        if self.end is not None:
            raise self.end
        return []

    def _unread_batch(self, messages: list[Message]) -> None:
        self.pending = messages + self.pending


class NoUnreadSource(ScriptedSource):
    """A batch source without ``_unread_batch``: the stream keeps its read-ahead itself."""

    _unread_batch = None  # type: ignore[assignment]


class LiveSource:
    """A batch source the test feeds while a stream reads it."""

    def __init__(self) -> None:
        self._send, self._recv = anyio.create_memory_object_stream[list[Message]](math.inf)

    def push(self, *messages: Message) -> None:
        self._send.send_nowait(list(messages))

    def end(self) -> None:
        self._send.close()

    async def _receive_batch(self) -> list[Message]:
        try:
            batch = list(await self._recv.receive())
        except anyio.EndOfStream:
            return []
        while True:
            try:
                batch += self._recv.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                return batch

    def close(self) -> None:
        self._send.close()
        self._recv.close()


@pytest.fixture
def live() -> Iterator[LiveSource]:
    source = LiveSource()
    yield source
    source.close()


async def drain(s: AsyncIterator[Any], into: list[Any]) -> None:
    """Iterate ``s`` to its end (or its error), appending to ``into``."""
    async for item in s:
        into.append(item)


# --------------------------------------------------------------------------- iteration


async def test_iterates_every_message_across_batches_in_order() -> None:
    source = ScriptedSource(["a", "b"], ["c"], ["d", "e", "f"])
    assert [m async for m in text_stream(source)] == ["a", "b", "c", "d", "e", "f"]


async def test_normal_end_ends_quietly_and_stays_ended() -> None:
    s = text_stream(ScriptedSource(["a"]))
    assert await s.collect() == ["a"]
    assert await s.collect() == []
    assert [m async for m in s] == []


async def test_abnormal_end_raises_after_the_messages_before_it() -> None:
    s = text_stream(ScriptedSource(["a", "b"], end=WebSocketDisconnect(1011, "boom")))
    got = []
    with pytest.raises(WebSocketDisconnect) as info:
        await drain(s, got)
    assert got == ["a", "b"]
    assert info.value.code == 1011


async def test_break_then_iterate_again_resumes_with_buffered_items() -> None:
    s = text_stream(ScriptedSource(["a", "b", "c", "d"]))
    async for m in s:
        assert m == "a"
        break
    assert [m async for m in s] == ["b", "c", "d"]


async def test_two_tasks_reading_one_stream_get_each_message_once(live: LiveSource) -> None:
    s = text_stream(live)
    got: list[list[str]] = [[], []]

    async def reader(i: int) -> None:
        async for m in s:
            got[i].append(m)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader, 0)
        tg.start_soon(reader, 1)
        for i in range(0, 60, 3):
            live.push(str(i), str(i + 1), str(i + 2))
            await anyio.wait_all_tasks_blocked()
        live.end()
    assert sorted(got[0] + got[1], key=int) == [str(i) for i in range(60)]


async def test_message_stream_keeps_mixed_messages_unchanged() -> None:
    s = message_stream(ScriptedSource(["a", b"b"]))
    assert await s.collect() == ["a", b"b"]


async def test_message_stream_reads_an_anyio_channel_a_batch_at_a_time() -> None:
    send, recv = anyio.create_memory_object_stream[str](10)
    for m in "abc":
        send.send_nowait(m)
    send.close()
    s = message_stream(recv)
    assert await s.chunks().first() == ["a", "b", "c"]
    assert await s.collect() == []
    recv.close()


async def test_message_stream_reads_any_async_iterable() -> None:
    async def gen() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    assert await message_stream(gen()).map(lambda i: i * 10).collect() == [0, 10, 20]


async def test_message_stream_returns_a_stream_as_is() -> None:
    s = text_stream(ScriptedSource(["a"]))
    assert message_stream(s) is s


async def test_message_stream_of_a_closed_empty_channel_ends() -> None:
    send, recv = anyio.create_memory_object_stream[str](1)
    send.close()
    with recv:
        s = message_stream(recv)
        assert await s.collect() == []
        assert await s.collect() == []


async def test_text_stream_of_something_else_than_messages_raises_type_error() -> None:
    async def numbers() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match="str or bytes"):
        await text_stream(numbers()).first()  # type: ignore[arg-type]


def test_operators_refuse_what_is_not_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        text_stream(ScriptedSource()).map(42)  # type: ignore[arg-type]


async def test_repr_shows_what_is_buffered() -> None:
    s = text_stream(ScriptedSource(["a", "b", "c"]))
    assert await s.__anext__() == "a"
    assert repr(s) == "<Convert buffered=2>"


def test_message_stream_rejects_what_is_not_a_source() -> None:
    with pytest.raises(TypeError, match="async iterable"):
        message_stream(42)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- frame kinds


async def test_text_stream_raises_on_binary_at_its_position_then_goes_on() -> None:
    s = text_stream(ScriptedSource(["a", b"\x00", "c"]))
    assert await s.first() == "a"
    with pytest.raises(WebSocketInvalidTypeReceived) as info:
        await s.first()
    assert isinstance(info.value.event, BytesMessage)
    assert info.value.event.data == b"\x00"
    assert await s.collect() == ["c"]


async def test_text_stream_error_after_items_of_the_same_batch() -> None:
    s = text_stream(ScriptedSource(["a", "b", b"x", "d"]))
    got = []
    with pytest.raises(WebSocketInvalidTypeReceived):
        await drain(s, got)
    assert got == ["a", "b"]
    assert [m async for m in s] == ["d"]


async def test_bytes_stream_raises_on_text_with_a_text_event() -> None:
    s = bytes_stream(ScriptedSource([b"a", "hello", b"c"]))
    assert await s.first() == b"a"
    with pytest.raises(WebSocketInvalidTypeReceived) as info:
        await s.first()
    assert isinstance(info.value.event, TextMessage)
    assert info.value.event.data == "hello"
    assert await s.collect() == [b"c"]


# --------------------------------------------------------------------------- JSON


async def test_json_stream_decodes_into_structs() -> None:
    s = json_stream(ScriptedSource([tick("A", 1.5), tick("B", 2)]), Tick)
    assert await s.collect() == [Tick("A", 1.5), Tick("B", 2.0)]


async def test_json_stream_without_type_gives_plain_values() -> None:
    s = json_stream(ScriptedSource(['{"a": [1, 2]}', "3", "null"]))
    assert await s.collect() == [{"a": [1, 2]}, 3, None]


async def test_json_stream_decodes_generic_types() -> None:
    s = json_stream(ScriptedSource(['[{"sym": "A", "px": 1}]']), list[Tick])
    assert await s.first() == [Tick("A", 1.0)]


async def test_json_stream_binary_mode_reads_binary_frames_only() -> None:
    s = json_stream(ScriptedSource([b'{"sym":"A","px":1}', tick("B", 2)]), Tick, mode="binary")
    assert await s.first() == Tick("A", 1.0)
    with pytest.raises(WebSocketInvalidTypeReceived) as info:
        await s.first()
    assert isinstance(info.value.event, TextMessage)


async def test_json_stream_text_mode_rejects_binary_frames_whatever_on_error() -> None:
    errors: list[WebSocketDecodeError] = []
    s = json_stream(ScriptedSource([b"{}"]), on_error=errors.append)
    with pytest.raises(WebSocketInvalidTypeReceived) as info:
        await s.first()
    assert isinstance(info.value.event, BytesMessage)
    assert errors == []


async def test_json_stream_any_mode_reads_both_kinds() -> None:
    s = json_stream(ScriptedSource(['{"a": 1}', b'{"b": 2}']), mode="any")
    assert await s.collect() == [{"a": 1}, {"b": 2}]


def test_json_stream_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        json_stream(ScriptedSource(), mode="xml")  # type: ignore[arg-type]


def test_json_stream_rejects_an_unknown_on_error() -> None:
    with pytest.raises(ValueError, match="on_error"):
        json_stream(ScriptedSource(), on_error="skip")  # type: ignore[arg-type]


async def test_decode_error_carries_payload_path_and_cause() -> None:
    bad = tick("B", "oops")
    s = json_stream(ScriptedSource([tick("A", 1), bad, tick("C", 3)]), Tick)
    got = []
    with pytest.raises(WebSocketDecodeError) as info:
        await drain(s, got)
    assert got == [Tick("A", 1.0)]
    assert info.value.payload == bad
    assert "at `$.px`" in info.value.reason
    assert isinstance(info.value.__cause__, msgspec.ValidationError)
    assert await s.collect() == [Tick("C", 3.0)]


async def test_decode_error_on_invalid_json_keeps_raw_bytes() -> None:
    s = json_stream(ScriptedSource([b"{not json"]), mode="binary")
    with pytest.raises(WebSocketDecodeError) as info:
        await s.first()
    assert info.value.payload == b"{not json"
    assert isinstance(info.value, ValueError)


async def test_on_error_handler_receives_each_bad_message_and_skips_it() -> None:
    errors: list[WebSocketDecodeError] = []
    source = ScriptedSource(["1", "x", "2"], ["y"], ["3", "z"])
    s = json_stream(source, int, on_error=errors.append)
    assert await s.collect() == [1, 2, 3]
    assert [e.payload for e in errors] == ["x", "y", "z"]


async def test_on_error_can_feed_an_anyio_channel() -> None:
    send, recv = anyio.create_memory_object_stream[WebSocketDecodeError](10)
    with send, recv:
        s = json_stream(
            ScriptedSource([tick("A", "x"), tick("B", 2)]), Tick, on_error=send.send_nowait
        )
        assert await s.collect() == [Tick("B", 2.0)]
        error = recv.receive_nowait()
        assert error.payload == tick("A", "x")
        assert "$.px" in error.reason


async def test_on_error_handler_that_raises_stops_at_the_bad_message() -> None:
    def refuse(error: WebSocketDecodeError) -> None:
        raise RuntimeError(f"refused {error.payload}")

    s = json_stream(ScriptedSource(["1", "x", "2"]), int, on_error=refuse)
    assert await s.first() == 1
    with pytest.raises(RuntimeError, match="refused x"):
        await s.first()
    assert await s.collect() == [2]


async def test_decode_with_a_msgspec_decoder() -> None:
    s = text_stream(ScriptedSource([tick("A", 1)])).decode(msgspec.json.Decoder(Tick))
    assert await s.collect() == [Tick("A", 1.0)]


async def test_decode_with_a_msgpack_decoder_on_binary_frames() -> None:
    payloads = [msgspec.msgpack.encode(Tick("A", float(i))) for i in range(3)]
    s = bytes_stream(ScriptedSource(payloads)).decode(msgspec.msgpack.Decoder(Tick))
    assert [t.px for t in await s.collect()] == [0.0, 1.0, 2.0]


async def test_decode_with_a_function_wraps_its_errors() -> None:
    s = text_stream(ScriptedSource(["1", "x", "3"])).decode(int)
    assert await s.first() == 1
    with pytest.raises(WebSocketDecodeError) as info:
        await s.first()
    assert info.value.payload == "x"
    assert info.value.reason.startswith("ValueError:")
    assert isinstance(info.value.__cause__, ValueError)
    assert await s.collect() == [3]


def test_operators_refuse_async_functions() -> None:
    async def f(x: str) -> str:
        return x

    with pytest.raises(TypeError, match="synchronous"):
        text_stream(ScriptedSource()).map(f)


# --------------------------------------------------------------------------- operators


async def test_map() -> None:
    s = text_stream(ScriptedSource(["a", "bb"], ["ccc"])).map(len)
    assert await s.collect() == [1, 2, 3]


async def test_map_error_is_raised_at_its_position_and_the_stream_goes_on() -> None:
    s = message_stream(ScriptedSource(["1", "0", "2"])).map(lambda m: 1 / int(m))
    got = []
    with pytest.raises(ZeroDivisionError):
        await drain(s, got)
    assert got == [1.0]
    assert await s.collect() == [0.5]


async def test_filter() -> None:
    s = json_stream(ScriptedSource(["1", "2", "3"], ["4", "5"]), int).filter(lambda i: i % 2)
    assert await s.collect() == [1, 3, 5]


async def test_filter_skips_batches_where_nothing_passes() -> None:
    s = json_stream(ScriptedSource(["2", "4"], ["6"], ["7"]), int).filter(lambda i: i % 2)
    assert await s.first() == 7


async def test_filter_predicate_error_at_its_position() -> None:
    s = json_stream(ScriptedSource(["1", "0", "3"]), int).filter(lambda i: 1 / i)
    assert await s.first() == 1
    with pytest.raises(ZeroDivisionError):
        await s.first()
    assert await s.collect() == [3]


async def test_take_reads_exactly_what_it_yields() -> None:
    source = ScriptedSource(["a", "b", "c", "d"])
    assert await text_stream(source).take(2).collect() == ["a", "b"]
    assert source.pending == ["c", "d"]
    assert await text_stream(source).collect() == ["c", "d"]


async def test_take_ends_the_iteration_and_stays_ended() -> None:
    s = text_stream(ScriptedSource(["a", "b", "c"])).take(2)
    assert [m async for m in s] == ["a", "b"]
    assert [m async for m in s] == []


async def test_take_zero_reads_nothing() -> None:
    source = ScriptedSource(["a"])
    assert await text_stream(source).take(0).collect() == []
    assert source.calls == 0


async def test_take_after_filter_consumes_only_what_it_examined() -> None:
    source = ScriptedSource(["1", "2", "3", "4", "5"])
    evens = json_stream(source, int).filter(lambda i: i % 2 == 0)
    assert await evens.take(1).collect() == [2]
    assert source.pending == ["3", "4", "5"]


async def test_first_reads_nothing_beyond_the_first_item() -> None:
    source = ScriptedSource([tick("A", 1), "not a tick", "neither"])
    assert await json_stream(source, Tick).first() == Tick("A", 1.0)
    assert await text_stream(source).collect() == ["not a tick", "neither"]


async def test_first_on_an_ended_stream_raises_end_of_stream() -> None:
    with pytest.raises(anyio.EndOfStream):
        await text_stream(ScriptedSource()).first()


async def test_read_ahead_is_shared_by_streams_over_a_source_without_unread() -> None:
    source = NoUnreadSource(["a", "b", "c"], ["d"])
    assert await text_stream(source).first() == "a"
    assert await json_stream(source, mode="any").take(0).collect() == []
    assert await message_stream(source).take(1).collect() == ["b"]
    assert await text_stream(source).collect() == ["c", "d"]


class SlottedSource:
    """A batch source that cannot be weakly referenced."""

    __slots__ = ("batches",)

    def __init__(self, *batches: list[Message]) -> None:
        self.batches = list(batches)

    async def _receive_batch(self) -> list[Message]:
        await anyio.lowlevel.checkpoint()
        return self.batches.pop(0) if self.batches else []


async def test_read_ahead_stays_in_the_stream_when_nothing_else_can_hold_it() -> None:
    s = text_stream(SlottedSource(["a", "b", "c"]))
    assert await s.take(1).collect() == ["a"]
    assert await s.collect() == ["b", "c"]


async def test_skip() -> None:
    s = text_stream(ScriptedSource(["a", "b"], ["c", "d"])).skip(3)
    assert await s.collect() == ["d"]


async def test_skip_past_the_end() -> None:
    assert await text_stream(ScriptedSource(["a"])).skip(5).collect() == []


def test_take_and_skip_reject_negative_counts() -> None:
    s = text_stream(ScriptedSource())
    with pytest.raises(ValueError, match="n must"):
        s.take(-1)
    with pytest.raises(ValueError, match="n must"):
        s.skip(-1)


async def test_enumerate() -> None:
    s = text_stream(ScriptedSource(["a", "b"], ["c"])).enumerate(start=1)
    assert await s.collect() == [(1, "a"), (2, "b"), (3, "c")]


async def test_chunks_yields_each_batch_as_a_list_of_its_own() -> None:
    batches: list[list[Message]] = [["a", "b"], ["c"]]
    s = text_stream(ScriptedSource(*batches)).chunks()
    first = await s.first()
    assert first == ["a", "b"]
    first.append("mine")
    assert await s.collect() == [["c"]]


async def test_batch_without_timeout_fills_lists_up_to_size() -> None:
    s = text_stream(ScriptedSource(["a", "b", "c"], ["d", "e"], ["f", "g"])).batch(2)
    assert await s.collect() == [["a", "b"], ["c", "d"], ["e", "f"], ["g"]]


async def test_batch_gathers_across_source_batches(live: LiveSource) -> None:
    s = text_stream(live).batch(3, timeout=30)
    live.push("a")
    async with anyio.create_task_group() as tg:
        result: list[list[str]] = []

        async def read() -> None:
            result.append(await s.first())

        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        live.push("b")
        await anyio.wait_all_tasks_blocked()
        live.push("c", "d")
    assert result == [["a", "b", "c"]]
    live.end()
    assert await s.collect() == [["d"]]


async def test_batch_timeout_yields_what_came_in_time(live: LiveSource) -> None:
    s = text_stream(live).batch(100, timeout=0.02)
    live.push("a", "b")
    assert await s.first() == ["a", "b"]
    live.push("c")
    assert await s.first() == ["c"]


async def test_batch_timeout_zero_yields_what_is_already_there() -> None:
    s = text_stream(ScriptedSource(["a", "b"], ["c"])).batch(10, timeout=0)
    assert await s.first() == ["a", "b"]


async def test_batch_yields_the_partial_list_before_an_upstream_error() -> None:
    s = json_stream(ScriptedSource(["1", "2", "x", "4"]), int).batch(10)
    assert await s.first() == [1, 2]
    with pytest.raises(WebSocketDecodeError):
        await s.first()
    assert await s.collect() == [[4]]


async def test_batch_cancelled_while_gathering_puts_items_back(live: LiveSource) -> None:
    upstream = text_stream(live)
    batches = upstream.batch(10)
    live.push("a", "b")
    async with anyio.create_task_group() as tg:
        tg.start_soon(batches.first)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert await upstream.take(2).collect() == ["a", "b"]
    live.push("c")
    live.end()
    assert await batches.collect() == [["c"]]


def test_batch_rejects_bad_arguments() -> None:
    s = text_stream(ScriptedSource())
    with pytest.raises(ValueError, match="size"):
        s.batch(0)
    with pytest.raises(ValueError, match="timeout"):
        s.batch(1, timeout=-1)


async def test_collect_puts_items_back_on_error() -> None:
    s = json_stream(ScriptedSource(["1", "2"], end=WebSocketDisconnect(1011)), int)
    with pytest.raises(WebSocketDisconnect):
        await s.collect()
    assert await s.take(2).collect() == [1, 2]


async def test_long_pipeline_keeps_its_static_shape_at_run_time() -> None:
    source = ScriptedSource([tick("A", 1), tick("B", -1), tick("C", 2)], [tick("D", 3)])
    s = (
        json_stream(source, Tick)
        .filter(lambda t: t.px > 0)
        .map(lambda t: t.sym)
        .enumerate()
        .batch(2)
    )
    assert await s.collect() == [[(0, "A"), (1, "C")], [(2, "D")]]


# --------------------------------------------------------------------------- handing back


async def test_an_interrupted_collect_hands_the_messages_back_to_the_source() -> None:
    source = ScriptedSource(["1", "2", "x", "4"])
    with pytest.raises(WebSocketDecodeError):
        await json_stream(source, int).map(lambda i: i * 10).take(10).collect()
    # The decoded items became the messages they came from again; the bad one is consumed.
    assert source.pending == ["1", "2", "4"]
    assert await json_stream(source, int).collect() == [1, 2, 4]


async def test_a_cancelled_collect_hands_the_messages_back(live: LiveSource) -> None:
    live.push("a", "b")
    with anyio.move_on_after(0.05):
        await text_stream(live).enumerate().take(5).collect()
    live.push("c")
    assert await text_stream(live).take(3).collect() == ["a", "b", "c"]


async def test_first_hands_back_what_batch_read_beyond_its_list() -> None:
    source = ScriptedSource(["1", "2", "3", "4", "5"])
    assert await json_stream(source, int).batch(2).first() == [1, 2]
    assert source.pending == ["3", "4", "5"]


async def test_items_from_a_source_without_unread_go_to_the_next_stream_over_it() -> None:
    source = NoUnreadSource(["a", "b", "x"])
    with pytest.raises(ValueError, match="x"):
        await text_stream(source).map(lambda m: int(m, 16)).take(5).collect()
    assert await text_stream(source).collect() == ["a", "b"]


async def test_items_from_a_channel_go_to_the_next_stream_over_it() -> None:
    send, recv = anyio.create_memory_object_stream[str](10)
    with send, recv:
        for m in ("1", "2", "3"):
            send.send_nowait(m)
        assert await message_stream(recv).map(int).batch(2).first() == [1, 2]
        assert await message_stream(recv).first() == "3"


async def test_a_map_is_computed_again_only_for_items_handed_back() -> None:
    calls: list[str] = []

    def record(m: str) -> str:
        calls.append(m)
        return m

    source = ScriptedSource(["a", "b", "c"])
    s = text_stream(source).map(record)
    assert await s.__anext__() == "a"  # the rest of the batch stays in s
    assert await s.take(2).collect() == ["b", "c"]
    assert calls == ["a", "b", "c"]


def test_converter_reports_the_first_failure_and_the_messages_of_the_items() -> None:
    errors: list[WebSocketDecodeError] = []
    converter = json_converter(int, on_error=errors.append)
    items, sources, error, rest = converter.convert(["1", "x", "2", b"3", "4"])
    assert items == [1, 2]
    assert sources == ["1", "2"]
    assert isinstance(error, WebSocketInvalidTypeReceived)
    assert rest == ["4"]
    assert [e.payload for e in errors] == ["x"]


def test_converter_without_a_decoder_returns_the_batch_itself() -> None:
    batch: list[Message] = ["a", "b"]
    items, _, error, _ = Converter(str, None, None).convert(batch)
    assert items is batch
    assert error is None


# --------------------------------------------------------------------------- cancellation


async def test_cancelling_the_loop_body_keeps_the_items_already_pulled() -> None:
    ticks = [tick(str(i), i) for i in range(10)]
    s = json_stream(ScriptedSource(ticks[:6], ticks[6:]), Tick).filter(lambda t: t.px % 2 == 0)
    got: list[Tick] = []
    with anyio.CancelScope() as scope:
        async for t in s:
            got.append(t)
            scope.cancel()
            await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert got == [Tick("0", 0.0)]
    rest = await s.collect()
    assert [t.px for t in got + rest] == [0.0, 2.0, 4.0, 6.0, 8.0]


async def test_cancelling_a_waiting_stream_loses_nothing(live: LiveSource) -> None:
    s = json_stream(live, int).map(lambda i: i * 2)
    with anyio.move_on_after(0.01) as scope:
        await s.first()
    assert scope.cancelled_caught
    live.push("1", "2")
    live.end()
    assert await s.collect() == [2, 4]


# --------------------------------------------------------------------------- sending


class Sink:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send_text(self, data: str) -> None:
        self.sent.append(data)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)


async def test_json_sender_sends_text_frames() -> None:
    sink = Sink()
    async with json_sender(sink, Tick) as out:
        assert isinstance(out, anyio.abc.ObjectSendStream)
        await out.send(Tick("A", 1.5))
    assert sink.sent == ['{"sym":"A","px":1.5}']


async def test_json_sender_binary_mode_sends_bytes() -> None:
    sink = Sink()
    out = json_sender(sink, mode="binary")
    await out.send({"a": [1]})
    assert sink.sent == [b'{"a":[1]}']


async def test_json_sender_closed_raises_and_sends_nothing() -> None:
    sink = Sink()
    out: JSONSender[int] = json_sender(sink, int)
    await out.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await out.send(1)
    assert sink.sent == []


async def test_json_sender_unencodable_item_sends_nothing() -> None:
    sink = Sink()
    with pytest.raises(TypeError):
        await json_sender(sink).send(object())
    assert sink.sent == []


def test_json_sender_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        json_sender(Sink(), mode="any")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- aiostream


async def test_aiostream_iterate_pipeline_leaves_the_rest_in_the_stream() -> None:
    s = json_stream(ScriptedSource([tick(str(i), i) for i in range(10)]), Tick)
    xs = stream.iterate(s) | pipe.map(lambda t: t.px) | pipe.take(3)
    assert await stream.list(xs) == [0.0, 1.0, 2.0]
    assert len(await s.collect()) == 7


async def test_or_pipes_into_aiostream() -> None:
    s = text_stream(ScriptedSource(["a", "bb", "ccc"]))
    xs = s | pipe.filter(lambda m: len(m) > 1)
    assert isinstance(xs, Stream)
    async with xs.stream() as streamer:
        assert [m async for m in streamer] == ["bb", "ccc"]


async def test_or_pipes_into_any_function_of_a_stream() -> None:
    s = text_stream(ScriptedSource(["a", "b"]))
    assert s | (lambda st: isinstance(st, MessageStream)) is True


async def test_aiostream_closes_an_anyio_channel_unless_preserved() -> None:
    # The claim docs/aiostream.md makes: iterate() acloses an anyio receive stream
    # when the pipeline ends, preserve() does not.
    send, recv = anyio.create_memory_object_stream[int](10)
    with send, recv:
        for i in range(6):
            send.send_nowait(i)
        assert await stream.list(stream.preserve(recv) | pipe.take(2)) == [0, 1]
        assert recv.receive_nowait() == 2
        assert await stream.list(stream.iterate(recv) | pipe.take(2)) == [3, 4]
        with pytest.raises(anyio.ClosedResourceError):
            recv.receive_nowait()


async def drain_aiostream(xs: Stream[Any], into: list[Any]) -> None:
    async with xs.stream() as streamer:
        await drain(streamer, into)


class TestAiostreamAsyncioOnly:
    """aiostream's concurrent operators (merge, timeout...) run on asyncio only."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_aiostream_merge_of_two_streams(self) -> None:
        a = text_stream(ScriptedSource(["a1", "a2"]))
        b = text_stream(ScriptedSource(["b1"]))
        assert sorted(await stream.list(stream.merge(a, b))) == ["a1", "a2", "b1"]

    async def test_aiostream_timeout_on_a_stream(self, live: LiveSource) -> None:
        live.push("a")
        xs = stream.iterate(text_stream(live)) | pipe.timeout(0.01)
        got: list[str] = []
        with pytest.raises(TimeoutError):
            await drain_aiostream(xs, got)
        assert got == ["a"]


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("n", [1, 7])
async def test_json_endpoint_into_structs(server_url: str, n: int) -> None:
    class Payload(msgspec.Struct):
        sym: str
        px: float
        seq: int

    async with streams.aconnect_ws(f"{server_url}/json?n={n}") as ws:
        got = await json_stream(ws, Payload).take(n).collect()
    assert got == [Payload("ABC", 1.5, i) for i in range(n)]


async def test_flood_is_read_whole_and_ends_quietly(uvicorn_websockets_url: str) -> None:
    url = f"{uvicorn_websockets_url}/flood?n=2000&size=16&kind=text"
    async with streams.aconnect_ws(url) as ws:
        got = [m async for m in text_stream(ws)]
    assert len(got) == 2000, ws.statistics()
    assert [int(m[:8]) for m in got] == list(range(2000))


async def test_flood_in_batches(uvicorn_websockets_url: str) -> None:
    url = f"{uvicorn_websockets_url}/flood?n=1000&size=16&kind=binary"
    async with streams.aconnect_ws(url) as ws:
        sizes = [len(b) async for b in bytes_stream(ws).batch(64, timeout=0.05)]
    assert sum(sizes) == 1000
    assert all(0 < size <= 64 for size in sizes)


async def test_wrong_frame_kind_from_a_real_server(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        await ws.send_bytes(b"\x01")
        await ws.send_text("after")
        s = text_stream(ws)
        with pytest.raises(WebSocketInvalidTypeReceived) as info:
            await s.first()
        assert info.value.event == BytesMessage(data=b"\x01")
        assert await s.first() == "after"


async def test_decode_error_from_a_real_server_then_the_next_message(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        await ws.send_text('{"sym": "A", "px": "high"}')
        await ws.send_text('{"sym": "B", "px": 2}')
        s = json_stream(ws, Tick)
        with pytest.raises(WebSocketDecodeError) as info:
            await s.first()
        assert info.value.payload == '{"sym": "A", "px": "high"}'
        assert "at `$.px`" in info.value.reason
        assert await s.first() == Tick("B", 2.0)


async def test_json_sender_round_trip_through_echo(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        async with json_sender(ws, Tick) as out:
            for i in range(5):
                await out.send(Tick("A", float(i)))
        got = await json_stream(ws, Tick).take(5).collect()
    assert got == [Tick("A", float(i)) for i in range(5)]


async def test_first_hands_the_read_ahead_back_to_the_session(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url) as ws:
        if not hasattr(ws, "_unread_batch"):
            pytest.skip("the session does not take read-ahead messages back yet")
        for m in ("hello", "one", "two"):
            await ws.send_text(m)
        # Whether the echoes arrive in one batch or not, the order must hold.
        assert await text_stream(ws).first() == "hello"
        assert await ws.receive_text() == "one"
        assert await ws.receive_text() == "two"


async def test_aiostream_pipeline_end_to_end(uvicorn_websockets_url: str) -> None:
    url = f"{uvicorn_websockets_url}/json?n=20"
    async with streams.aconnect_ws(url) as ws:
        seqs = json_stream(ws).map(lambda d: d["seq"])
        xs = seqs | pipe.filter(lambda i: i % 2) | pipe.take(5)
        assert await stream.list(xs) == [1, 3, 5, 7, 9]
        # The pipeline stopped after 9; what the stream had read beyond it is still there.
        assert await seqs.first() == 10


class TestAiostreamEndToEndAsyncioOnly:
    """stream.merge is built on asyncio tasks: asyncio only."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_aiostream_merge_of_two_sessions(self, uvicorn_websockets_url: str) -> None:
        url = f"{uvicorn_websockets_url}/json?n=4"
        async with streams.aconnect_ws(url) as ws1, streams.aconnect_ws(url) as ws2:
            a = json_stream(ws1).take(4)
            b = json_stream(ws2).take(4)
            got: list[Any] = await stream.list(stream.merge(a, b))
        assert sorted(d["seq"] for d in got) == [0, 0, 1, 1, 2, 2, 3, 3]
