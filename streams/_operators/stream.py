"""The typed stream: its buffer, the pull protocol every operator speaks, and its methods.

A :class:`MessageStream` reads batches from upstream (the session, or another
stream) with ``_pull(limit)`` and keeps what it pulled but has not delivered in
its own buffer. Operators are :class:`Stage` subclasses, one small class each,
in the family modules of this package; the methods here only build them.

Giving back. A consumer that gathers items across several awaits
(``collect()``, ``batch()``, fan-in) hands them back with ``_unread`` when it
is interrupted, and they land in the buffer of the stream it read. When
``first()`` or ``collect()`` returns or raises, ``_settle()`` moves whatever
the chain still buffers down to its root and from there back to the source (the
session), turning items back into the messages they came from: a chain built
inline (``await ws.json(T).take(10).collect()``) and dropped afterwards takes
nothing with it. While such a call runs, the chain is *held*: stages that
compute new items (``map``, decoding) remember which message each item came
from, so that they can hand the message back instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeGuard, TypeVar, overload

import anyio

from .._checks import check_minimum, check_on_error, check_sync_callable

if TYPE_CHECKING:
    from .._types import Message
    from .decode import OnDecodeError, SupportsDecode
    from .feed import OnGap, SequencedStream, Stale

__all__ = ["ALL", "Derived", "MessageStream", "Stage"]

T = TypeVar("T")
U = TypeVar("U")
T_co = TypeVar("T_co", covariant=True)
X = TypeVar("X")
M = TypeVar("M", bound="Message")
K = TypeVar("K", bound=Hashable)

#: The demand of a plain ``async for``: everything available.
ALL = sys.maxsize


class MessageStream(Generic[T_co]):
    """An async iterable of typed items with chainable operators.

    Made by :func:`text_stream`, :func:`bytes_stream`, :func:`json_stream`,
    :func:`message_stream` (or the session's ``text()``, ``bytes()``,
    ``json()``), and by every operator. Operators return a new stream reading
    from this one; they do not start anything, so building a pipeline is free.

    Iterating with ``async for`` pulls whole batches from upstream and yields
    from the current one without entering the event loop. Items pulled and not
    yet yielded stay in the stream: after a ``break`` or a cancellation,
    iterating the same object again yields them. A stream you drop after an
    ``async for`` takes those items with it, so keep using one stream object
    per purpose. ``first()`` and ``collect()`` leave nothing behind: what they
    do not return goes back to the source, even from a chain built inline.

    Iterating ends at a normal end of the source, and raises its exception
    after an abnormal one. Every ``await`` in a stream is safe to cancel.

    A stream has no ``aclose()``: nothing outside it is closed when an iteration
    (yours or an aiostream pipeline's) ends early. Close the session itself to
    end the connection.
    """

    __slots__ = ("__weakref__", "_buf", "_exc", "_pos")

    def __init__(self) -> None:
        self._buf: list[Any] = []
        self._pos = 0
        self._exc: BaseException | None = None

    # ------------------------------------------------------------- the pull protocol

    async def _produce(self, limit: int) -> list[T_co]:
        """Return new items, waiting for at least one; ``[]`` at the end.

        ``limit`` is the demand: a stage reads no more than it needs to produce
        that many items. Returning more is allowed (``_pull`` keeps the surplus,
        or hands it back to the session for a root). Called only when the
        buffer is empty and no error is pending. Must be cancel-safe:
        cancellation may only interrupt an await at which the stage holds no item.
        """
        raise NotImplementedError

    async def _pull(self, limit: int) -> list[T_co]:
        """Take 1 to ``limit`` items: buffered ones first, then a pending error, then new ones.

        The returned list is never mutated afterwards by the stream; callers
        must not mutate it either (it may be shared).
        """
        buf = self._buf
        pos = self._pos
        n = len(buf)
        if pos < n:
            end = pos + limit
            if end < n:
                self._pos = end
                return buf[pos:end]
            self._buf = []
            self._pos = 0
            return buf if pos == 0 else buf[pos:]
        if n:
            self._buf = []
            self._pos = 0
        if self._exc is not None:
            exc = self._exc
            self._exc = None
            raise exc
        items = await self._produce(limit)
        if self._pos < len(self._buf):
            # Another task using this stream put items back meanwhile: they are
            # older than the new ones, so they come first.
            items = self._buf[self._pos :] + items
            self._buf = []
            self._pos = 0
        if len(items) > limit:
            self._unread(items[limit:])
            return items[:limit]
        return items

    def _unread(self, items: list[Any]) -> None:
        """Put items back in front of the stream (they will be delivered first)."""
        if items:
            self._buf = items + self._buf[self._pos :]
            self._pos = 0

    def _hold(self, delta: int) -> None:
        """Start (``+1``) or end (``-1``) a read that may hand its items back (see the module)."""

    def _settle(self) -> None:
        """Hand what this stream buffers back towards the source, as far as it can go."""

    async def _refill(self) -> T_co:
        items = await self._pull(ALL)
        if not items:
            raise StopAsyncIteration
        # Another task iterating this stream may have refilled it meanwhile:
        # its items are older than these.
        if self._pos < len(self._buf):
            items = self._buf[self._pos :] + items
        self._buf = items
        self._pos = 1
        return items[0]

    # ------------------------------------------------------------- iteration

    def __aiter__(self) -> MessageStream[T_co]:
        return self

    async def __anext__(self) -> T_co:
        buf = self._buf
        pos = self._pos
        if pos < len(buf):
            self._pos = pos + 1
            return buf[pos]  # type: ignore[no-any-return]
        return await self._refill()

    async def first(self) -> T_co:
        """Return the next item, reading nothing beyond it.

        Returns:
            The next item.

        Raises:
            anyio.EndOfStream: the stream ended before an item arrived.
            Exception: the source's or an operator's error at that position.

        Cancelling is safe: nothing is consumed.
        """
        self._hold(1)
        try:
            items = await self._pull(1)
        finally:
            self._settle()
            self._hold(-1)
        if not items:
            raise anyio.EndOfStream
        return items[0]

    async def collect(self) -> list[T_co]:
        """Read the stream to its end.

        Returns:
            Every remaining item, in order. Use ``take(n).collect()`` for a bounded read.

        Raises:
            Exception: the source's or an operator's error; the items gathered
                so far go back to the source (the session), so that the next
                read, of this stream or of a new one, returns them first.

        Cancelling is safe: the items gathered so far go back in the same way.
        """
        out: list[T_co] = []
        self._hold(1)
        try:
            while True:
                items = await self._pull(ALL)
                if not items:
                    return out
                out += items
        except BaseException:
            self._unread(out)
            raise
        finally:
            self._settle()
            self._hold(-1)

    # ------------------------------------------------------------- operators

    def map(self, fn: Callable[[T_co], U]) -> MessageStream[U]:
        """Apply ``fn`` to every item (synchronously, one batch at a time).

        If ``fn`` raises, the exception is raised at that item's position; the
        item is consumed and iterating again goes on with the next one. Items
        handed back after an error or a cancellation are computed again when
        read again: keep ``fn`` free of side effects.
        """
        check_sync_callable(fn)
        return _transform.Map(self, fn)

    @overload
    def filter(self, predicate: Callable[[T_co], TypeGuard[U]]) -> MessageStream[U]: ...
    @overload
    def filter(self, predicate: Callable[[T_co], object]) -> MessageStream[T_co]: ...
    def filter(self, predicate: Callable[[T_co], object]) -> MessageStream[Any]:
        """Keep the items for which ``predicate`` is true (a ``TypeGuard`` narrows the type).

        Dropped items are consumed. An exception in ``predicate`` is raised at
        that item's position.
        """
        check_sync_callable(predicate)
        return _select.Filter(self, predicate)

    def decode(
        self: MessageStream[M],
        decoder: SupportsDecode[U] | Callable[[M], U],
        *,
        on_error: OnDecodeError = "raise",
    ) -> MessageStream[U]:
        """Decode every raw message with a decoder object or function.

        Args:
            decoder: a msgspec ``Decoder`` (JSON, MessagePack...; its ``decode``
                method is used) or a function taking the raw message.
            on_error: what to do with a message that fails: ``"raise"`` raises
                :class:`~streams.WebSocketDecodeError` (carrying the payload and
                the reason, with the field path for msgspec) at its position; a
                callable receives that error instead and the message is skipped.
                If the callable raises, its exception is raised at that position.

        Returns:
            A stream of decoded values. Any exception from the decoder counts as
            a decode error (the original is the ``__cause__``).
        """
        method = getattr(decoder, "decode", None)
        fn: Callable[[Any], U] = method if callable(method) else decoder  # type: ignore[assignment]
        check_sync_callable(fn)
        return _decode.Convert(self, _decode.Converter(None, fn, check_on_error(on_error)))

    def take(self, n: int) -> MessageStream[T_co]:
        """Yield at most ``n`` more items, then end. Reads nothing beyond them."""
        check_minimum("n", n, 0)
        return _select.Take(self, n)

    def skip(self, n: int) -> MessageStream[T_co]:
        """Drop the next ``n`` items (consumed), then yield the rest."""
        check_minimum("n", n, 0)
        return _select.Skip(self, n)

    def enumerate(self, start: int = 0) -> MessageStream[tuple[int, T_co]]:
        """Pair every item with its index: ``(start, x0), (start + 1, x1)...``."""
        return _transform.Enumerate(self, start)

    def chunks(self) -> MessageStream[list[T_co]]:
        """Yield the items in the lists they arrive in (everything available at once).

        The fastest way to consume a stream: one list per batch of the
        session, never empty. Each list is the caller's to keep or mutate.
        """
        return _batch.Chunks(self)

    def batch(self, size: int, timeout: float | None = None) -> MessageStream[list[T_co]]:
        """Group items into lists of up to ``size``.

        Args:
            size: the largest list yielded.
            timeout: with ``None``, a list is yielded when it is full (or at the
                end of the stream). With a number of seconds, a list is yielded
                as soon as it is full or ``timeout`` seconds after its first
                item arrived, with whatever came in between (never empty).
                Built on anyio: works on asyncio and trio.

        Returns:
            A stream of non-empty lists. An error upstream first yields the list
            gathered so far, then is raised. Cancelling while a list is being
            gathered puts its items back upstream: nothing is lost.
        """
        check_minimum("size", size, 1)
        if timeout is not None:
            check_minimum("timeout", timeout, 0)
        return _batch.Batch(self, size, timeout)

    # ------------------------------------------------------------- time and state operators

    def throttle(self, interval: float) -> MessageStream[T_co]:
        """Yield the first item of each ``interval`` seconds and drop the others.

        After an item goes on, the items that arrive in the next ``interval``
        seconds (on ``anyio.current_time()``) are dropped (consumed); of a batch
        that arrives at once, only the first can go on.

        Returns:
            A stream of the items that opened an interval.

        Raises:
            Exception: the source's error, at its position.

        Cancelling is safe: nothing that went on is lost.
        """
        check_minimum("interval", interval, 0)
        return _time.Throttle(self, interval)

    def sample(self, interval: float) -> MessageStream[T_co]:
        """Yield, every ``interval`` seconds, the latest item that arrived in between.

        Ticks are ``interval`` (> 0) seconds apart from the first read; a tick with no new item
        yields nothing. Older items of an interval are dropped. At the end of the
        source, an item not yet yielded is yielded, then the stream ends.

        Returns:
            A stream of at most one item per tick.

        Raises:
            Exception: the source's error, after the item pending at that time.

        Cancelling is safe: the pending item is kept for the next read.
        """
        if not interval > 0:
            raise ValueError("interval must be > 0")
        return _time.Sample(self, interval)

    def debounce(self, interval: float) -> MessageStream[T_co]:
        """Yield an item once ``interval`` seconds passed without a newer one.

        Each new item replaces the pending one and restarts the wait, so a
        steady flow yields nothing until it pauses. At the end of the source the
        pending item is yielded at once.

        Returns:
            A stream of the items that were followed by a quiet ``interval``.

        Raises:
            Exception: the source's error, after the pending item.

        Cancelling is safe: the pending item is kept for the next read.
        """
        check_minimum("interval", interval, 0)
        return _time.Debounce(self, interval)

    def timeout(self, seconds: float) -> MessageStream[T_co]:
        """Raise ``TimeoutError`` when the next item takes longer than ``seconds`` to come.

        The time counts from the moment an item is asked for with nothing
        buffered. After the error, iterating again waits again.

        Returns:
            A stream of the same items.

        Raises:
            TimeoutError: no item came within ``seconds``.
            Exception: the source's error, at its position.

        Cancelling is safe: nothing is consumed.
        """
        check_minimum("seconds", seconds, 0)
        return _time.Timeout(self, seconds)

    def timestamp(self) -> MessageStream[_time.Timestamped[T_co]]:
        """Pair each item with the time it was received: :class:`~streams.Timestamped`.

        ``received_at`` is ``time.time()`` when the frame was read off the
        socket (one clock call per read), not when you take the item: over a
        session, directly or through one-stream operators (``json``, ``decode``,
        ``map``, ``filter``...). The session records read times from the first
        read of this stream on: messages already waiting then get the time they
        reach this operator. Over a source without read times (a reconnecting
        feed, a merged stream, a group of ``group_by``, an async iterable) it is
        the time the item reaches this operator.

        Over a session, items are asked one at a time (to pair each with its
        message); use it where you need the times, not on a hot path you batch.

        Returns:
            A stream of ``Timestamped(value, received_at)``.

        Raises:
            Exception: the source's error, at its position.

        Cancelling is safe: nothing is consumed.
        """
        return _time.Timestamp(self)

    def scan(self, fn: Callable[[U, T_co], U], initial: U) -> MessageStream[U]:
        """Yield the running result of ``acc = fn(acc, item)``, starting from ``initial``.

        ``initial`` itself is not yielded: one result per item.

        Returns:
            A stream of the successive results.

        Raises:
            Exception: ``fn``'s error at that item's position (``acc`` stays as
                it was before it); the source's error at its position.

        Cancelling is safe: nothing is consumed.
        """
        check_sync_callable(fn)
        return _stateful.Scan(self, fn, initial)

    def distinct_until_changed(
        self, key: Callable[[T_co], object] | None = None
    ) -> MessageStream[T_co]:
        """Drop each item equal to the one before it (compared by ``key(item)`` if given).

        Returns:
            A stream without consecutive repeats (dropped items are consumed).

        Raises:
            Exception: ``key``'s error at that item's position; the source's error.

        Cancelling is safe: nothing is consumed.
        """
        if key is not None:
            check_sync_callable(key)
        return _stateful.DistinctUntilChanged(self, key)

    def group_by(
        self, key: Callable[[T_co], K], *, queue_size: int = 16
    ) -> MessageStream[tuple[K, MessageStream[T_co]]]:
        """Split the items by ``key(item)``: yield ``(key, stream)`` the first time a key is seen.

        Each group's stream yields that key's items in order. Reading any of
        the streams reads the source (no task is started). A group buffers up to
        ``queue_size`` items not yet taken; when an item's group is full, the
        source waits (nothing more is read) until that group's consumer takes
        its items, so consume every group, or stop reading.

        Example::

            async with anyio.create_task_group() as tg:
                async for sym, ticks in ws.json(Tick).group_by(lambda t: t.sym):
                    tg.start_soon(follow, sym, ticks)

        Returns:
            A stream of ``(key, group stream)`` pairs. Every stream ends when
            the source ends, after its items.

        Raises:
            Exception: the source's or ``key``'s error, raised by every stream
                after its items.

        Cancelling is safe: nothing read is lost.
        """
        check_sync_callable(key)
        check_minimum("queue_size", queue_size, 1)
        return _group.GroupBy(self, key, queue_size)

    # ------------------------------------------------------------- feed operators (feed.py)

    def conflate(self, key: Callable[[T_co], Hashable]) -> MessageStream[T_co]:
        """Keep only the latest item per key of what is available: for a consumer that falls behind.

        Each time it is asked for items, it takes what the source has already
        received, without waiting for more (it waits only when nothing is
        there): the whole queue of a session or a reconnecting feed, the next
        batch of a merged stream. It yields the latest item of each key, in the
        order the keys first arrived in. Older items of a key are dropped (consumed).
        With ``overflow="drop_oldest"`` on the session, the socket keeps being
        read however slow the consumer is::

            async for tick in ws.json(Tick).conflate(lambda t: t.sym):
                await redraw(tick)  # slow: meanwhile, only each symbol's last tick is kept

        Args:
            key: returns an item's key (hashable).

        Returns:
            A stream of the same items, fewer of them. An exception raised by
            ``key`` is raised at that item's position (the item is consumed),
            after the items conflated before it. Cancelling is safe.
        """
        check_sync_callable(key)
        return _feed.Conflate(self, key)

    def stale(self, key: Callable[[T_co], K], after: float) -> MessageStream[T_co | Stale[K]]:
        """Yield a :class:`~streams.Stale` marker, in line with the items, when a key goes quiet.

        A key is quiet once no item of it was received for ``after`` seconds;
        the marker is yielded once per quiet spell (the next item of the key
        ends it), carrying the key and when it was last seen (:func:`time.time`).
        Keys are known from their first item. Times are measured when this
        stream receives items: a consumer so slow that items of a key wait
        unread may see the key as quiet (see ``stale_after=`` on the session
        for a feed that goes quiet as a whole). Built on ``anyio.current_time()``:
        works on asyncio and trio, and with a virtual clock::

            async for item in ws.json(Tick).stale(lambda t: t.sym, after=5.0):
                if isinstance(item, streams.Stale):
                    print(f"no news of {item.key} for 5 s")

        Args:
            key: returns an item's key (hashable).
            after: the quiet time, in seconds (greater than 0).

        Returns:
            A stream of the items and ``Stale`` markers. An exception raised by
            ``key`` is raised at that item's position (the item is consumed).
            Cancelling is safe.

        Raises:
            ValueError: ``after`` is not greater than 0.
        """
        check_sync_callable(key)
        if not after > 0:
            raise ValueError(f"after must be > 0, not {after!r}")
        return _feed.StaleMarkers(self, key, after)

    def sequence(
        self, key: Callable[[T_co], int], *, on_gap: OnGap = "raise", start: int | None = None
    ) -> SequencedStream[T_co]:
        """Check per-item sequence numbers: gaps, duplicates and items out of order.

        Each item's number (``key(item)``, e.g. ``lambda m: m.seq``) must be
        the previous one plus one. Duplicates and items older than expected
        are always dropped (counted in ``dropped``). At a gap (a number greater
        than expected; counted in ``gaps``):

        * ``"raise"``: :class:`~streams.SequenceGapError` ``(expected,
          received, item)`` is raised at the item's position, after the items
          before it; iterating again goes on after that item (it is carried by
          the error).
        * ``"skip"``: the item goes on; the stream follows from its number.
        * a callable (sync or async): called with the ``SequenceGapError``
          once the items before the gap were delivered; it returns ``None`` (go
          on from the received number) or the next number to expect, after a
          resynchronisation: items older than that are then dropped, and if the
          item is still ahead of it, that is a new gap and the callable is
          called again. If it raises, the error is raised at the item's
          position and the item stays unread. A snapshot + deltas feed::

              async def resync(gap: streams.SequenceGapError) -> int:
                  snapshot = await fetch_snapshot()  # deltas queue up meanwhile
                  book.reset(snapshot)
                  return snapshot.seq + 1  # older deltas are dropped

              deltas = ws.json(Delta).sequence(lambda d: d.seq, on_gap=resync)

        Args:
            key: returns an item's sequence number (an ``int``).
            on_gap: ``"raise"`` (the default), ``"skip"`` or a callable.
            start: the number expected first (e.g. a snapshot's number plus
                one); by default the first item's number.

        Returns:
            A :class:`~streams.SequencedStream` of the items in sequence.
            Cancelling is safe, also while the callable runs (the item stays
            unread, and it is called again when reading goes on).

        Raises:
            ValueError: ``on_gap`` is neither ``"raise"``, ``"skip"`` nor a callable.
        """
        check_sync_callable(key)
        return _feed.SequencedStream(self, key, on_gap, start)

    def __or__(self, func: Callable[[MessageStream[T_co]], X]) -> X:
        """Pipe into a function of a stream, e.g. an aiostream pipe: ``ws.json(T) | pipe.take(3)``.

        Returns:
            Whatever ``func(self)`` returns: an aiostream ``Stream`` for aiostream pipes.
        """
        return func(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} buffered={len(self._buf) - self._pos}>"


class Stage(MessageStream[T_co]):
    """An operator: a stream that reads another stream (``_up``).

    Subclasses implement ``_produce`` and ``_give_back``: how items of this
    stage turn back into items of the stage above (``take`` gives them as they
    are, ``enumerate`` drops the index, ``batch`` flattens its lists...).
    """

    __slots__ = ("_holds", "_up")

    def __init__(self, up: MessageStream[Any]) -> None:
        super().__init__()
        self._up = up
        self._holds = 0

    def _give_back(self, items: list[Any]) -> None:
        """Hand items of this stage (the latest it delivered, in order) to the stage above."""
        self._up._unread(items)

    def _hold(self, delta: int) -> None:
        self._holds += delta
        self._up._hold(delta)

    def _settle(self) -> None:
        # Items before a pending error stay here, in front of it.
        if self._exc is None and self._pos < len(self._buf):
            items = self._buf[self._pos :]
            self._buf = []
            self._pos = 0
            self._give_back(items)
        self._up._settle()

    def _fail(self, exc: Exception, rest: list[Any], out: list[Any]) -> None:
        """Record an error met after ``out`` was produced: hand ``rest`` back upstream;
        raise now if nothing precedes the error, else raise it after ``out``."""
        self._up._unread(rest)
        if not out:
            raise exc
        self._exc = exc


class Derived(Stage[T_co]):
    """A stage whose items are computed one to one from the items above (``map``, decoding).

    While the chain is held it records, for each item it produces, the item it
    came from; ``_give_back`` hands those back instead. An item it cannot trace
    (produced before the hold) stays in this stage's buffer, in front.
    """

    __slots__ = ("_made", "_sources")

    def __init__(self, up: MessageStream[Any]) -> None:
        super().__init__(up)
        self._made: list[Any] = []
        self._sources: list[Any] = []

    def _record(self, made: list[Any], sources: list[Any]) -> None:
        """Note that ``made[i]`` was computed from ``sources[i]`` (only while held)."""
        if self._holds:
            self._made += made
            self._sources += sources[: len(made)]

    def _hold(self, delta: int) -> None:
        super()._hold(delta)
        if not self._holds:
            self._made = []
            self._sources = []

    def _give_back(self, items: list[Any]) -> None:
        made, sources = self._made, self._sources
        n, m = len(made), len(items)
        k = 0
        while k < m and k < n and items[m - 1 - k] is made[n - 1 - k]:
            k += 1
        back = sources[n - k :]
        if k < m:
            # Items from before the record stay here, in front; once they are
            # delivered again, the record no longer ends with the latest items.
            self._buf = items[: m - k]
            self._pos = 0
            self._made = []
            self._sources = []
        else:
            del made[n - k :]
            del sources[n - k :]
        self._up._unread(back)


# The operator families build on the classes above.
from . import batch as _batch  # noqa: E402
from . import decode as _decode  # noqa: E402
from . import feed as _feed  # noqa: E402
from . import group as _group  # noqa: E402
from . import select as _select  # noqa: E402
from . import stateful as _stateful  # noqa: E402
from . import time as _time  # noqa: E402
from . import transform as _transform  # noqa: E402
