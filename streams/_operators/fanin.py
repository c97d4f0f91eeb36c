"""Fan-in and fan-out of typed streams on an anyio task group.

* :func:`merge` reads several sources at once and yields ``(key, item)`` pairs.
* :func:`broadcast` gives every item of one source to several consumers.

Both are async context managers: the readers are tasks of a task group that
lives exactly as long as the ``async with`` block (structured concurrency, so
they work on asyncio and trio alike). Batches travel whole, so the cost per
message stays that of a list operation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Literal, TypeAlias, TypeVar, overload

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._checks import check_choice, check_minimum
from .._taskgroup import OwnedTaskGroup
from .sources import _BatchRoot, as_stream
from .stream import ALL, MessageStream

__all__ = ["BroadcastPolicy", "BroadcastStream", "broadcast", "merge"]

logger = logging.getLogger("streams")

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
K = TypeVar("K")
X = TypeVar("X")

#: What :func:`broadcast` does when a consumer's buffer is full.
BroadcastPolicy: TypeAlias = Literal["block", "drop_oldest"]

_DEFAULT_BUFFER = 16


class _Readers(AbstractAsyncContextManager[X]):
    """The reader tasks of a fan-in or fan-out, in a task group as long as the block."""

    _name = "fan-in"

    def __init__(self) -> None:
        self._tasks = OwnedTaskGroup()
        self._entered = False

    async def _start(self) -> TaskGroup:
        if self._entered:
            raise RuntimeError(f"this {self._name} has already been entered")
        self._entered = True
        return await self._tasks.enter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            await self._tasks.exit(exc)
        finally:
            self._finish()
        return None

    def _finish(self) -> None:
        """Once the readers are gone: hand over what they read."""
        raise NotImplementedError


def _put_back(src: MessageStream[Any], items: list[Any], error: Exception | None) -> None:
    """Return items (and an undelivered error, which comes after them) to a stream."""
    src._unread(items)
    # A session raises its own end-of-session error again on the next read: do
    # not duplicate it (nor let it overtake the items just handed back to it).
    if error is not None and src._exc is None and not isinstance(src, _BatchRoot):
        src._exc = error


# --------------------------------------------------------------------------- merge


_Entry: TypeAlias = tuple[Any, list[Any] | Exception]


class _Merged(MessageStream[tuple[K, T]]):
    __slots__ = ("_closed", "_recv", "_slots")

    def __init__(self, recv: MemoryObjectReceiveStream[_Entry], slots: anyio.Semaphore) -> None:
        super().__init__()
        self._recv = recv
        self._slots = slots
        self._closed = False

    async def _produce(self, limit: int) -> list[tuple[K, T]]:
        if self._closed:
            return []
        try:
            key, payload = await self._recv.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return []
        self._slots.release()
        if isinstance(payload, Exception):
            raise payload
        return [(key, item) for item in payload]


async def _merge_reader(
    key: Any,
    src: MessageStream[Any],
    send: MemoryObjectSendStream[_Entry],
    slots: anyio.Semaphore,
) -> None:
    # Holds items only between a completed pull and send_nowait (no await in
    # between), so cancelling it loses nothing; the channel is unbounded and
    # the semaphore bounds it.
    with send:
        while True:
            await slots.acquire()
            try:
                items = await src._pull(ALL)
            except Exception as exc:
                exc.add_note(f"raised by merged source {key!r}")
                send.send_nowait((key, exc))
                return
            except BaseException:
                slots.release()
                raise
            if not items:
                slots.release()
                return
            send.send_nowait((key, items))


class _Merge(_Readers[MessageStream[tuple[K, T]]]):
    _name = "merge"

    def __init__(self, sources: list[tuple[K, MessageStream[T]]], buffer_size: int) -> None:
        super().__init__()
        self._sources = sources
        self._buffer_size = buffer_size
        self._stream: _Merged[K, T] | None = None
        self._recv: MemoryObjectReceiveStream[_Entry] | None = None
        # Closed by each reader when it ends, and again here in case a reader
        # was cancelled before it started.
        self._sends: list[MemoryObjectSendStream[_Entry]] = []

    async def __aenter__(self) -> MessageStream[tuple[K, T]]:
        tg = await self._start()
        send, recv = anyio.create_memory_object_stream[_Entry](math.inf)
        slots = anyio.Semaphore(self._buffer_size)
        self._recv = recv
        self._stream = _Merged(recv, slots)
        with send:
            for key, src in self._sources:
                clone = send.clone()
                self._sends.append(clone)
                tg.start_soon(_merge_reader, key, src, clone, slots)
        return self._stream

    def _finish(self) -> None:
        """Hand every item read but not consumed back to the stream it came from."""
        for send in self._sends:
            send.close()
        stream, recv = self._stream, self._recv
        assert stream is not None
        assert recv is not None
        back: dict[Any, list[Any]] = {}
        errors: dict[Any, Exception] = {}
        for key, item in stream._buf[stream._pos :]:
            back.setdefault(key, []).append(item)
        stream._buf = []
        stream._pos = 0
        stream._closed = True
        while True:
            try:
                key, payload = recv.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if isinstance(payload, Exception):
                errors[key] = payload
            else:
                back.setdefault(key, []).extend(payload)
        recv.close()
        for key, src in self._sources:
            _put_back(src, back.get(key, []), errors.get(key))


@overload
def merge(
    s1: AsyncIterable[T1], /, *, buffer_size: int = ...
) -> AbstractAsyncContextManager[MessageStream[tuple[int, T1]]]: ...
@overload
def merge(
    s1: AsyncIterable[T1], s2: AsyncIterable[T2], /, *, buffer_size: int = ...
) -> AbstractAsyncContextManager[MessageStream[tuple[int, T1 | T2]]]: ...
@overload
def merge(
    s1: AsyncIterable[T1],
    s2: AsyncIterable[T2],
    s3: AsyncIterable[T3],
    /,
    *,
    buffer_size: int = ...,
) -> AbstractAsyncContextManager[MessageStream[tuple[int, T1 | T2 | T3]]]: ...
@overload
def merge(
    *sources: AsyncIterable[T], buffer_size: int = ...
) -> AbstractAsyncContextManager[MessageStream[tuple[int, T]]]: ...
@overload
def merge(
    *, buffer_size: int = ..., **sources: AsyncIterable[T]
) -> AbstractAsyncContextManager[MessageStream[tuple[str, T]]]: ...
def merge(
    *sources: Any, buffer_size: int = _DEFAULT_BUFFER, **named: Any
) -> AbstractAsyncContextManager[MessageStream[tuple[Any, Any]]]:
    """Read several sources at once; yield each item tagged with where it came from.

    Sources are sessions, :class:`~streams.MessageStream` objects or any async
    iterables (wrapped as by :func:`~streams.message_stream`). Pass them by
    position (keys are their indexes, ``0, 1...``) or by name (keys are the
    names), not both::

        async with merge(quotes=ws1.json(Quote), trades=ws2.json(Trade)) as merged:
            async for key, item in merged:
                ...

    Each source is read by its own task of a task group that lives as long as
    the ``async with`` block. Readers move whole batches and stop reading when
    ``buffer_size`` batches wait for the consumer (backpressure: a slow
    consumer slows the sources, nothing piles up).

    An error in one source is raised by the merged stream at its position,
    after the items that source delivered before it, with a note naming the
    source; the other sources go on (iterate again to keep reading them). The
    merged stream ends when every source has ended.

    Leaving the block cancels the readers, and every item read but not yet
    consumed is handed back to the stream it came from (keep a reference to a
    stream you want to go on reading after the block). Sessions are left open.

    Args:
        *sources: sources keyed by position.
        buffer_size: how many batches may wait for the consumer (at least 1).
        **named: sources keyed by name.

    Returns:
        An async context manager giving a ``MessageStream[tuple[key, item]]``.

    Raises:
        ValueError: no source, both positional and named sources, or
            ``buffer_size`` below 1.
    """
    if sources and named:
        raise ValueError("pass sources either by position or by name, not both")
    if not sources and not named:
        raise ValueError("merge needs at least one source")
    check_minimum("buffer_size", buffer_size, 1)
    keyed: list[tuple[Any, Any]] = list(enumerate(sources)) if sources else list(named.items())
    return _Merge([(key, as_stream(src)) for key, src in keyed], buffer_size)


# --------------------------------------------------------------------------- broadcast


class BroadcastStream(MessageStream[T]):
    """One consumer's view of a :func:`broadcast`: a stream with its own bounded buffer.

    Attributes:
        index: this consumer's position among the broadcast's consumers.
        dropped: how many items were dropped because this consumer fell behind
            (policy ``"drop_oldest"``; always 0 with ``"block"``).
    """

    __slots__ = ("_closed", "_end_exc", "_recv", "_send", "_slots", "dropped", "index")

    def __init__(self, index: int, buffer_size: int, policy: BroadcastPolicy) -> None:
        super().__init__()
        self.index = index
        self.dropped = 0
        self._send, self._recv = anyio.create_memory_object_stream[list[T]](math.inf)
        self._slots = anyio.Semaphore(buffer_size) if policy == "block" else None
        self._end_exc: Exception | None = None
        self._closed = False

    async def _produce(self, limit: int) -> list[T]:
        try:
            items = await self._recv.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._recv.close()
            exc, self._end_exc = self._end_exc, None
            if exc is not None:
                raise exc from None
            return []
        if self._slots is not None:
            self._slots.release()
        return items

    def close(self) -> None:
        """Leave the broadcast: no more items are queued for this consumer.

        Items it already pulled are still yielded; those waiting in its buffer
        are discarded. With the ``"block"`` policy, closing a consumer that
        stopped reading frees the others.
        """
        if self._closed:
            return
        self._closed = True
        self._end_exc = None
        self._recv.close()
        if self._slots is not None:
            self._slots.release()  # wake the reader if it waits for room here

    def _finish(self) -> None:
        """At the end of the broadcast: keep what is queued (still yielded), release the channel."""
        self._send.close()
        if self._closed:
            return
        queued: list[T] = []
        while True:
            try:
                queued += self._recv.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        self._recv.close()
        if queued:
            self._buf = self._buf[self._pos :] + queued
            self._pos = 0

    def __repr__(self) -> str:
        return (
            f"<BroadcastStream index={self.index} buffered={len(self._buf) - self._pos}"
            f" queued={self._recv.statistics().current_buffer_used} dropped={self.dropped}>"
        )


def _deliver(consumer: BroadcastStream[Any], items: list[Any], buffer_size: int) -> None:
    try:
        consumer._send.send_nowait(items)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        consumer._closed = True
        return
    if consumer._slots is not None:
        return
    # drop_oldest: keep at most buffer_size batches queued.
    excess = consumer._send.statistics().current_buffer_used - buffer_size
    dropped = 0
    while excess > 0:
        dropped += len(consumer._recv.receive_nowait())
        excess -= 1
    if dropped:
        consumer.dropped += dropped
        logger.warning(
            "broadcast consumer %d fell behind: dropped %d messages (%d in total)",
            consumer.index,
            dropped,
            consumer.dropped,
        )


async def _broadcast_reader(
    src: MessageStream[Any], consumers: tuple[BroadcastStream[Any], ...], buffer_size: int
) -> None:
    try:
        while True:
            live = [c for c in consumers if not c._closed]
            if not live:
                return
            held: list[anyio.Semaphore] = []
            try:
                for consumer in live:
                    if consumer._slots is not None:
                        await consumer._slots.acquire()
                        held.append(consumer._slots)
                items = await src._pull(ALL)
            except BaseException:
                for slots in held:
                    slots.release()
                raise
            if not items:
                for slots in held:
                    slots.release()
                return
            for consumer in live:
                if consumer._closed:
                    continue
                _deliver(consumer, items, buffer_size)
    except Exception as exc:
        exc.add_note("raised by the broadcast source")
        for consumer in consumers:
            consumer._end_exc = exc
    finally:
        for consumer in consumers:
            consumer._send.close()


class _Broadcast(_Readers[tuple[BroadcastStream[T], ...]]):
    _name = "broadcast"

    def __init__(self, src: MessageStream[T], n: int, buffer_size: int, policy: BroadcastPolicy):
        super().__init__()
        self._src = src
        self._consumers = tuple(BroadcastStream[T](i, buffer_size, policy) for i in range(n))
        self._buffer_size = buffer_size

    async def __aenter__(self) -> tuple[BroadcastStream[T], ...]:
        tg = await self._start()
        tg.start_soon(_broadcast_reader, self._src, self._consumers, self._buffer_size)
        return self._consumers

    def _finish(self) -> None:
        for consumer in self._consumers:
            consumer._finish()


def broadcast(
    source: AsyncIterable[T],
    n: int,
    *,
    buffer_size: int = _DEFAULT_BUFFER,
    policy: BroadcastPolicy = "block",
) -> AbstractAsyncContextManager[tuple[BroadcastStream[T], ...]]:
    """Give every item of ``source`` to ``n`` consumers, each with its own bounded buffer.

    ::

        async with broadcast(ws.json(Tick), 2) as (for_db, for_ui):
            async with anyio.create_task_group() as tg:
                tg.start_soon(store, for_db)
                tg.start_soon(show, for_ui)

    One task reads the source (a session, a stream or any async iterable) and
    appends each batch to every consumer's buffer; the consumers share the
    item objects (do not mutate them).

    Policies, for a consumer whose buffer already holds ``buffer_size`` batches:

    * ``"block"`` (default): the reader waits for room, so the slowest consumer
      sets the pace and nothing is ever dropped. A consumer that stops reading
      stops everybody: :meth:`BroadcastStream.close` it.
    * ``"drop_oldest"``: the reader never waits; the oldest batch of that
      consumer's buffer is dropped. Drops are never silent: each one is counted
      in the consumer's ``dropped`` attribute and logged at WARNING on the
      ``"streams"`` logger.

    The consumers end after the source ends. An error in the source is raised
    by every consumer after the items delivered before it. Leaving the block
    cancels the reader; consumers then yield what they hold and end.

    Args:
        source: what to read.
        n: how many consumers (at least 1).
        buffer_size: how many batches each consumer may hold (at least 1).
        policy: ``"block"`` or ``"drop_oldest"``.

    Returns:
        An async context manager giving a tuple of ``n`` :class:`BroadcastStream`.

    Raises:
        ValueError: ``n`` or ``buffer_size`` below 1, or an unknown policy.
    """
    check_minimum("n", n, 1)
    check_minimum("buffer_size", buffer_size, 1)
    check_choice("policy", policy, ("block", "drop_oldest"))
    return _Broadcast(as_stream(source), n, buffer_size, policy)
