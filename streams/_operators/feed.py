"""Feed operators, for multiplexed and numbered feeds: ``conflate``, ``stale``, ``sequence``.

* ``conflate(key)``: the latest item per key of everything available when asked,
  for a consumer that falls behind a feed of prices or states;
* ``stale(key, after)``: a :class:`Stale` marker, in line with the items, when
  a key goes quiet;
* ``sequence(key)``: checks per-item sequence numbers (gaps, duplicates, items
  out of order), raising :class:`~streams.SequenceGapError` or calling a
  resynchronisation function at a gap.

Times are taken with ``anyio.current_time()`` and waits are anyio cancel
scopes, so the operators work on asyncio and trio, and under a virtual clock.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, Literal, TypeAlias, TypeVar

import anyio

from .._exceptions import SequenceGapError
from .stream import ALL, MessageStream, Stage

__all__ = ["Conflate", "GapHandler", "OnGap", "SequencedStream", "Stale", "StaleMarkers"]

T = TypeVar("T")
K = TypeVar("K")

#: Called with each :class:`~streams.SequenceGapError` (sync or async); returns
#: ``None`` to go on from the received number, or the next number to expect
#: (after a resynchronisation, for example from a snapshot).
GapHandler: TypeAlias = Callable[[SequenceGapError], int | Awaitable[int | None] | None]

#: What ``sequence()`` does at a gap: ``"raise"``, ``"skip"`` or a :data:`GapHandler`.
OnGap: TypeAlias = Literal["raise", "skip"] | GapHandler


# --------------------------------------------------------------------------- conflate


class Conflate(Stage[T]):
    """``conflate(key)``: of each pull, the latest item per key, in order of first arrival.

    One pull takes what the source has (a session's or a reconnecting feed's
    whole queue, a merged stream's next batch), waiting only when nothing is there.
    """

    __slots__ = ("_key",)

    def __init__(self, up: MessageStream[T], key: Callable[[T], Hashable]) -> None:
        super().__init__(up)
        self._key = key

    async def _produce(self, limit: int) -> list[T]:
        items: list[T] = await self._up._pull(ALL)
        latest: dict[Hashable, T] = {}
        key = self._key
        for i, item in enumerate(items):
            try:
                latest[key(item)] = item
            except Exception as exc:
                out = list(latest.values())
                self._fail(exc, items[i + 1 :], out)
                return out
        return list(latest.values())


# --------------------------------------------------------------------------- stale


@dataclasses.dataclass(frozen=True, slots=True)
class Stale(Generic[K]):
    """The marker ``stream.stale(key, after)`` yields when a key goes quiet.

    Yielded once per quiet spell: after ``after`` seconds without an item of
    that key, in line with the items (the next item of the key ends the spell).

    Attributes:
        key: the key that went quiet.
        last_seen: when the stream last received an item of that key, as a
            :func:`time.time` timestamp (the clock of ``received_at``).
    """

    key: K
    last_seen: float


class StaleMarkers(Stage[Any]):
    """``stale(key, after)``: the items, and a :class:`Stale` marker when a key goes quiet.

    For each key seen and not yet marked: the deadline (``anyio.current_time()``
    of its latest item plus ``after``) and the wall-clock time of that item.
    While it waits for items, the stage waits no longer than the earliest
    deadline; a deadline already passed makes it take only what is available
    at once. A key whose item is taken is not quiet, whatever its deadline.
    """

    __slots__ = ("_after", "_key", "_watch")

    def __init__(self, up: MessageStream[Any], key: Callable[[Any], Hashable], after: float):
        super().__init__(up)
        self._key = key
        self._after = after
        self._watch: dict[Hashable, tuple[float, float]] = {}

    async def _produce(self, limit: int) -> list[Any]:
        watch = self._watch
        while True:
            deadline = min(due for due, _ in watch.values()) if watch else None
            with anyio.CancelScope(deadline=deadline if deadline is not None else float("inf")):
                items: list[Any] = await self._up._pull(limit)
                if not items:
                    return items
                return self._seen(items)
            markers = self._markers(set())
            if markers:
                return markers

    def _seen(self, items: list[Any]) -> list[Any]:
        """Note the arrival of ``items``; return them, with the markers now due after them."""
        now, wall = anyio.current_time(), time.time()
        watch, key, due = self._watch, self._key, now + self._after
        fresh: set[Hashable] = set()
        for i, item in enumerate(items):
            try:
                k = key(item)
                watch[k] = (due, wall)
                fresh.add(k)
            except Exception as exc:
                out = items[:i] + self._markers(fresh)
                self._fail(exc, items[i + 1 :], out)
                return out
        return items + self._markers(fresh)

    def _markers(self, fresh: set[Hashable]) -> list[Any]:
        """The markers of the keys whose deadline has passed (not those in ``fresh``)."""
        now = anyio.current_time()
        watch = self._watch
        quiet = [k for k, (due, _) in watch.items() if due <= now and k not in fresh]
        return [Stale(k, watch.pop(k)[1]) for k in quiet]

    def _give_back(self, items: list[Any]) -> None:
        if any(isinstance(item, Stale) for item in items):
            # A marker has no place upstream: the items stay here, in order.
            self._buf = items
            self._pos = 0
        else:
            self._up._unread(items)


# --------------------------------------------------------------------------- sequence


class SequencedStream(Stage[T]):
    """The stream ``stream.sequence(key)`` returns: the items, checked by their sequence numbers.

    Each item's number (``key(item)``) must be the previous one plus one.
    Duplicates and items older than expected are dropped (counted in
    :attr:`dropped`); a gap (a number greater than expected) is counted in
    :attr:`gaps` and handled by ``on_gap``.

    Attributes:
        gaps: how many gaps were met.
        dropped: how many duplicates and older items were dropped.
    """

    __slots__ = ("_expected", "_key", "_on_gap", "dropped", "gaps")

    def __init__(
        self,
        up: MessageStream[T],
        key: Callable[[T], int],
        on_gap: OnGap,
        start: int | None,
    ) -> None:
        super().__init__(up)
        if not (on_gap in ("raise", "skip") if isinstance(on_gap, str) else callable(on_gap)):
            raise ValueError(f"on_gap must be 'raise', 'skip' or a callable, not {on_gap!r}")
        self._key = key
        self._on_gap = on_gap
        self._expected = start
        self.gaps = 0
        self.dropped = 0

    @property
    def expected(self) -> int | None:
        """The number expected next (``None`` before the first item, without ``start``)."""
        return self._expected

    async def _produce(self, limit: int) -> list[T]:
        while True:
            items: list[T] = await self._up._pull(limit)
            if not items:
                return items
            out = await self._check(items)
            if out or self._exc is not None:
                return out

    async def _check(self, items: list[T]) -> list[T]:
        """Return the items that go on; at a gap, act on ``on_gap``."""
        key, on_gap = self._key, self._on_gap
        out: list[T] = []
        i = 0
        while i < len(items):
            item = items[i]
            try:
                n = key(item)
            except Exception as exc:
                self._fail(exc, items[i + 1 :], out)
                return out
            expected = self._expected
            if expected is None or n == expected:
                out.append(item)
                self._expected = n + 1
            elif n < expected:
                self.dropped += 1
            elif on_gap == "skip":
                self.gaps += 1
                out.append(item)
                self._expected = n + 1
            elif on_gap == "raise":
                self.gaps += 1
                self._expected = n + 1
                self._fail(SequenceGapError(expected, n, item), items[i + 1 :], out)
                return out
            elif out:
                # The handler runs in line: once the items before the gap are delivered.
                self._up._unread(items[i:])
                return out
            else:
                answer = await self._ask(on_gap, SequenceGapError(expected, n, item), items[i:])
                self.gaps += 1
                if answer is None:
                    out.append(item)
                    self._expected = n + 1
                else:
                    self._expected = answer
                    continue  # the same item, checked against the new expectation
            i += 1
        return out

    async def _ask(self, handler: Any, error: SequenceGapError, rest: list[T]) -> int | None:
        """Call the gap handler; if it fails or is cancelled, ``rest`` goes back upstream."""
        try:
            answer = handler(error)
            if inspect.isawaitable(answer):
                answer = await answer
        except BaseException:
            self._up._unread(rest)
            raise
        if answer is not None and not isinstance(answer, int):
            self._up._unread(rest)
            raise TypeError(
                f"the on_gap handler must return None or the next number to expect (an int),"
                f" not {type(answer).__name__}"
            )
        return answer

    def _give_back(self, items: list[Any]) -> None:
        # They will be checked again: expect the first of them once more.
        self._expected = self._key(items[0])
        self._up._unread(items)
