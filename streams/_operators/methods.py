"""The chainable operators of typed streams: each method builds one operator of a family module.

:class:`~streams._operators.stream.MessageStream` inherits them; the
operators themselves (one small class each) are in the family modules
(``transform``, ``select``, ``batch``, ``time``, ``stateful``, ``group``,
``feed``), imported when a method is first called, as they build on the
stream's classes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeGuard, TypeVar, overload

from .._checks import check_minimum, check_sync_callable

if TYPE_CHECKING:
    from . import time as _time
    from .feed import OnGap, SequencedStream, Stale
    from .stream import MessageStream

__all__ = ["Operators"]

U = TypeVar("U")
T_co = TypeVar("T_co", covariant=True)
K = TypeVar("K", bound=Hashable)


def _up(stream: Operators[Any]) -> MessageStream[Any]:
    """The stream an operator method was called on (every ``Operators`` is a ``MessageStream``)."""
    return stream  # type: ignore[return-value]


class Operators(Generic[T_co]):
    """The operator methods of :class:`~streams._operators.stream.MessageStream`."""

    __slots__ = ()

    def map(self, fn: Callable[[T_co], U]) -> MessageStream[U]:
        """Apply ``fn`` to every item (synchronously, one batch at a time).

        If ``fn`` raises, the exception is raised at that item's position; the
        item is consumed and iterating again goes on with the next one. Items
        handed back after an error or a cancellation are computed again when
        read again: keep ``fn`` free of side effects.
        """
        check_sync_callable(fn)
        from . import transform as _transform

        return _transform.Map(_up(self), fn)

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
        from . import select as _select

        return _select.Filter(_up(self), predicate)

    def take(self, n: int) -> MessageStream[T_co]:
        """Yield at most ``n`` more items, then end. Reads nothing beyond them."""
        check_minimum("n", n, 0)
        from . import select as _select

        return _select.Take(_up(self), n)

    def skip(self, n: int) -> MessageStream[T_co]:
        """Drop the next ``n`` items (consumed), then yield the rest."""
        check_minimum("n", n, 0)
        from . import select as _select

        return _select.Skip(_up(self), n)

    def enumerate(self, start: int = 0) -> MessageStream[tuple[int, T_co]]:
        """Pair every item with its index: ``(start, x0), (start + 1, x1)...``."""
        from . import transform as _transform

        return _transform.Enumerate(_up(self), start)

    def chunks(self) -> MessageStream[list[T_co]]:
        """Yield the items in the lists they arrive in (everything available at once).

        The fastest way to consume a stream: one list per batch of the
        session, never empty. Each list is the caller's to keep or mutate.
        """
        from . import batch as _batch

        return _batch.Chunks(_up(self))

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
        from . import batch as _batch

        return _batch.Batch(_up(self), size, timeout)

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
        from . import time as _time

        return _time.Throttle(_up(self), interval)

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
        from . import time as _time

        return _time.Sample(_up(self), interval)

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
        from . import time as _time

        return _time.Debounce(_up(self), interval)

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
        from . import time as _time

        return _time.Timeout(_up(self), seconds)

    def timestamp(self) -> MessageStream[_time.Timestamped[T_co]]:
        """Pair each item with the time it was received: :class:`~streams.Timestamped`.

        ``received_at`` is ``time.time()`` when the frame was read off the
        socket (one clock call per read), not when you take the item: over a
        session or a reconnecting feed, directly or through one-stream operators
        (``json``, ``decode``, ``map``, ``filter``...). Read times are recorded
        from the first read of this stream on: messages already waiting then get
        the time they reach this operator. Over a source without read times (a
        merged stream, a group of ``group_by``, an async iterable) it is the
        time the item reaches this operator.

        Over a session or a feed, items are asked one at a time (to pair each
        with its message); use it where you need the times, not on a hot path
        you batch.

        Returns:
            A stream of ``Timestamped(value, received_at)``.

        Raises:
            Exception: the source's error, at its position.

        Cancelling is safe: nothing is consumed.
        """
        from . import time as _time

        return _time.Timestamp(_up(self))

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
        from . import stateful as _stateful

        return _stateful.Scan(_up(self), fn, initial)

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
        from . import stateful as _stateful

        return _stateful.DistinctUntilChanged(_up(self), key)

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
        from . import group as _group

        return _group.GroupBy(_up(self), key, queue_size)

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
        from . import feed as _feed

        return _feed.Conflate(_up(self), key)

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
        from . import feed as _feed

        return _feed.StaleMarkers(_up(self), key, after)

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
        from . import feed as _feed

        return _feed.SequencedStream(_up(self), key, on_gap, start)
