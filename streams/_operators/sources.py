"""Roots: the streams that read a source (a session, an anyio channel, any async iterable).

Items a root cannot deliver now (read ahead, or handed back by the stages
below) go where the next read of that source finds them: the session's
``_unread_batch``, or a store shared by every stream over the same source.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, Protocol, TypeAlias, TypeVar, overload, runtime_checkable

import anyio

from .._types import Message
from .stream import MessageStream

__all__ = ["BatchSource", "Source", "as_stream", "message_stream"]

T = TypeVar("T")


@runtime_checkable
class BatchSource(Protocol):
    """What a typed stream reads from: the session, or any object with ``_receive_batch``.

    ``_receive_batch()`` returns every message available now (waiting for at
    least one), ``[]`` once the source ended normally, and raises once it ended
    abnormally. It must be safe to cancel. A source may also offer
    ``_unread_batch(messages)``, putting messages back in front of the next
    ``_receive_batch()``; streams use it to hand back what they read ahead.
    """

    async def _receive_batch(self) -> list[Message]: ...


#: Anything a typed stream can read: a session (or other :class:`BatchSource`)
#: or any async iterable of messages.
Source: TypeAlias = BatchSource | AsyncIterable[Message]

#: Items read from sources that cannot take them back themselves (no
#: ``_unread_batch``), shared by every stream over the same source. Keyed weakly:
#: an entry goes away with its source.
_READ_AHEAD: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


class _Root(MessageStream[T]):
    """A stream over a source object; what it cannot deliver goes to the shared store."""

    __slots__ = ("_src",)

    def __init__(self, src: Any) -> None:
        super().__init__()
        self._src = src

    def _store(self, items: list[Any]) -> bool:
        """Put items in front of the source's shared store; ``False`` if it has none."""
        try:
            _READ_AHEAD[self._src] = items + _READ_AHEAD.get(self._src, [])
        except TypeError:  # not hashable or not weakly referenceable
            return False
        return True

    def _stored(self) -> list[Any] | None:
        try:
            return _READ_AHEAD.pop(self._src, None)
        except TypeError:
            return None

    def _settle(self) -> None:
        if self._exc is None and self._pos < len(self._buf):
            items = self._buf[self._pos :]
            if self._give_back(items):
                self._buf = []
                self._pos = 0

    def _give_back(self, items: list[Any]) -> bool:
        return self._store(items)


class _BatchRoot(_Root[Message]):
    """Reads a :class:`BatchSource` (the session): one ``_receive_batch()`` per pull.

    Messages read ahead (by exact operators, or handed back) go back to the
    source's ``_unread_batch`` when it has one, so that the session's own
    receive methods see them; otherwise to the shared store; otherwise (a
    source that cannot be weakly referenced) they stay in this stream.
    """

    __slots__ = ("_read_times", "_unread_batch", "read_times")

    def __init__(self, src: BatchSource) -> None:
        super().__init__(src)
        self._unread_batch: Callable[[list[Message]], object] | None = getattr(
            src, "_unread_batch", None
        )
        #: With a ``timestamp()`` below: the source's ``_read_times``, and the
        #: read times of the messages of the latest batch (a new list per batch).
        self._read_times: Callable[[int], list[float | None]] | None = None
        self.read_times: list[float | None] = []

    def record_read_times(self) -> bool:
        """Ask the source to record when it read each message; ``False`` if it cannot.

        From then on each pull asks the source for at most the demand, so that
        a stage asking one item at a time gets one message and its read time.
        """
        read_times = getattr(self._src, "_read_times", None)
        if read_times is None:
            return False
        read_times(0)  # starts recording
        self._read_times = read_times
        return True

    def _give_back(self, items: list[Any]) -> bool:
        if self._unread_batch is not None:
            self._unread_batch(items)
            return True
        return self._store(items)

    def _unread(self, items: list[Any]) -> None:
        if not items:
            return
        if self._pos < len(self._buf) or not self._give_back(items):
            super()._unread(items)  # keep the order with what this stream holds

    async def _produce(self, limit: int) -> list[Message]:
        batch = None if self._unread_batch is not None else self._stored()
        if batch is None:
            if self._read_times is not None:
                read: list[Message] = await self._src._receive_batch(limit)
                self.read_times = self._read_times(len(read))
                return read
            batch = await self._src._receive_batch()
        return batch


class _ReaderRoot(_Root[T]):
    """A root over a source that cannot take items back: stored items first, then ``_read``."""

    __slots__ = ("_ended",)

    def __init__(self, src: Any) -> None:
        super().__init__(src)
        self._ended = False

    async def _produce(self, limit: int) -> list[T]:
        stored = self._stored()
        if stored:
            return stored
        if self._ended:
            return []
        return await self._read(limit)

    async def _read(self, limit: int) -> list[T]:
        """Read new items from the source; set ``_ended`` (and return ``[]``) at its end."""
        raise NotImplementedError


class _ChannelRoot(_ReaderRoot[T]):
    """Reads an anyio object receive stream, taking every item available at once."""

    __slots__ = ()

    async def _read(self, limit: int) -> list[T]:
        src = self._src
        try:
            batch = [await src.receive()]
        except anyio.EndOfStream:
            self._ended = True
            return []
        receive_nowait = src.receive_nowait
        try:
            while len(batch) < limit:
                batch.append(receive_nowait())
        except anyio.WouldBlock:
            pass
        except anyio.EndOfStream:
            self._ended = True
        return batch


class _IterRoot(_ReaderRoot[T]):
    """Reads any async iterable, one item per pull.

    Only as cancel-safe as the iterable's ``__anext__``: an async generator is
    finished by a cancellation (for ``batch(timeout=...)``, prefer a session, a
    stream or an anyio receive stream).
    """

    __slots__ = ("_it",)

    def __init__(self, src: AsyncIterable[T]) -> None:
        super().__init__(src)
        self._it: AsyncIterator[T] | None = None

    async def _read(self, limit: int) -> list[T]:
        if self._it is None:
            self._it = aiter(self._src)
        try:
            return [await anext(self._it)]
        except StopAsyncIteration:
            self._ended = True
            return []


def as_stream(source: Any) -> MessageStream[Any]:
    """Return ``source`` as a stream: itself if it is one, else a root reading it.

    Raises:
        TypeError: ``source`` is not a session, a stream or an async iterable.
    """
    if isinstance(source, MessageStream):
        return source
    if callable(getattr(source, "_receive_batch", None)):
        return _BatchRoot(source)
    if callable(getattr(source, "receive_nowait", None)) and callable(
        getattr(source, "receive", None)
    ):
        return _ChannelRoot(source)
    if isinstance(source, AsyncIterable):
        return _IterRoot(source)
    raise TypeError(
        f"expected a session, a MessageStream or an async iterable, not {type(source).__name__}"
    )


@overload
def message_stream(source: BatchSource) -> MessageStream[Message]: ...
@overload
def message_stream(source: AsyncIterable[T]) -> MessageStream[T]: ...
def message_stream(source: Any) -> MessageStream[Any]:
    """Wrap a source into a :class:`MessageStream`, items unchanged.

    Args:
        source: a session (any :class:`BatchSource`), an anyio object receive
            stream (read a batch at a time), a :class:`MessageStream` (returned
            as is) or any async iterable.

    Returns:
        A stream of the source's items (``str | bytes`` for a session).

    Raises:
        TypeError: ``source`` is none of these.
    """
    return as_stream(source)
