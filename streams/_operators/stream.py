"""The typed stream: its buffer and the pull protocol every operator speaks.

A :class:`MessageStream` reads batches from upstream (the session, or another
stream) with ``_pull(limit)`` and keeps what it pulled but has not delivered in
its own buffer. Operators are :class:`Stage` subclasses, one small class each,
in the family modules of this package; the methods that build them are in
``methods`` (decoding, which narrows the item type, is here).

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
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._checks import check_on_error, check_sync_callable
from .methods import Operators

if TYPE_CHECKING:
    from .._types import Message
    from .decode import OnDecodeError, SupportsDecode

__all__ = ["ALL", "Derived", "MessageStream", "Stage"]

T = TypeVar("T")
U = TypeVar("U")
T_co = TypeVar("T_co", covariant=True)
X = TypeVar("X")
M = TypeVar("M", bound="Message")
K = TypeVar("K", bound=Hashable)

#: The demand of a plain ``async for``: everything available.
ALL = sys.maxsize


class MessageStream(Operators[T_co]):
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
from . import decode as _decode  # noqa: E402
