"""Typed message streams: where a message becomes a typed value.

A :class:`MessageStream` is an async iterable with chainable operators
(``map``, ``filter``, ``decode``, ``batch``, ``take``...). It works on the
batches its source delivers (the session hands over every message available at
once): operators run over a whole batch with C-speed built-ins (``map``,
``filter``, msgspec), and ``async for`` yields from the current batch, so the
event loop is entered once per batch, not once per message.

Rules every stream keeps:

* **Nothing vanishes.** Items a stream has pulled but not yet delivered stay in
  it: iterating the same object again resumes where it stopped. Cancelling at
  any point is safe.
* **Exact operators read exactly.** ``first()``, ``take(n)`` and ``skip(n)``
  pull only the items they need; what the session had delivered beyond them is
  handed back to the session (``_unread_batch``), so a stream built afterwards
  starts at the right message.
* **Errors come at their position.** When a message fails (bad JSON, a wrong
  frame kind, an exception in a ``map`` function), the items before it are
  delivered first, then the error is raised; the stream can be iterated again
  and goes on with the message after it.
* **A normal end ends quietly**, an abnormal one raises (the session's
  exception).
"""

from __future__ import annotations

import builtins
import inspect
import sys
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import (
    Any,
    Generic,
    Literal,
    Protocol,
    TypeAlias,
    TypeGuard,
    TypeVar,
    cast,
    overload,
    runtime_checkable,
)

import anyio
import msgspec
from anyio.abc import ObjectSendStream
from wsproto.events import BytesMessage, TextMessage

from ._codec import encode_json, encode_json_text, json_decoder
from ._exceptions import WebSocketDecodeError, WebSocketInvalidTypeReceived
from ._types import Message

__all__ = [
    "BatchSource",
    "DecodeErrorHandler",
    "JSONSender",
    "JSONStreamMode",
    "MessageStream",
    "OnDecodeError",
    "SupportsDecode",
    "TypedStreams",
    "bytes_stream",
    "json_sender",
    "json_stream",
    "message_stream",
    "text_stream",
]

T = TypeVar("T")
U = TypeVar("U")
T_co = TypeVar("T_co", covariant=True)
U_co = TypeVar("U_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)
X = TypeVar("X")
M = TypeVar("M", bound=Message)

#: The demand of a plain ``async for``: everything available.
_ALL = sys.maxsize


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


class SupportsDecode(Protocol[U_co]):
    """A decoder object: :class:`msgspec.json.Decoder`, :class:`msgspec.msgpack.Decoder`..."""

    def decode(self, buf: Any, /) -> U_co: ...


class _TextBytesSink(Protocol):
    async def send_text(self, data: str) -> None: ...
    async def send_bytes(self, data: bytes) -> None: ...


#: Anything a typed stream can read: a session (or other :class:`BatchSource`)
#: or any async iterable of messages.
Source: TypeAlias = BatchSource | AsyncIterable[Message]

#: Which frames carry JSON: ``"text"`` frames only, ``"binary"`` frames only, or ``"any"``.
JSONStreamMode: TypeAlias = Literal["text", "binary", "any"]

#: Called with each message that fails to decode; the message is then skipped.
DecodeErrorHandler: TypeAlias = Callable[[WebSocketDecodeError], object]

#: ``"raise"`` (raise :class:`~streams.WebSocketDecodeError` at the bad message's
#: position) or a :data:`DecodeErrorHandler` that receives it instead.
OnDecodeError: TypeAlias = Literal["raise"] | DecodeErrorHandler


class MessageStream(Generic[T_co]):
    """An async iterable of typed items with chainable operators.

    Made by :func:`text_stream`, :func:`bytes_stream`, :func:`json_stream`,
    :func:`message_stream` (or the session's ``text()``, ``bytes()``,
    ``json()``), and by every operator. Operators return a new stream reading
    from this one; they do not start anything, so building a pipeline is free.

    Iterating with ``async for`` pulls whole batches from upstream and yields
    from the current one without entering the event loop. Items pulled and not
    yet yielded stay in the stream: after a ``break`` or a cancellation,
    iterating the same object again yields them. A stream you drop takes those
    items with it, so keep using one stream object per purpose (``first()``,
    ``take()`` and ``skip()`` read exactly what they need and never read ahead).

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

    # ------------------------------------------------------------- internals

    async def _produce(self, limit: int) -> list[T_co]:
        """Return new items, waiting for at least one; ``[]`` at the end.

        ``limit`` is the demand: a stage reads no more than it needs to produce
        that many items. Returning more is allowed (``_pull`` buffers the
        surplus, or hands it back to the session for a root). Called only when
        the buffer is empty and no error is pending. Must be cancel-safe:
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

    async def _refill(self) -> T_co:
        items = await self._pull(_ALL)
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
        items = await self._pull(1)
        if not items:
            raise anyio.EndOfStream
        return items[0]

    async def collect(self) -> list[T_co]:
        """Read the stream to its end.

        Returns:
            Every remaining item, in order. Use ``take(n).collect()`` for a bounded read.

        Raises:
            Exception: the source's or an operator's error; the items gathered so
                far are then put back into the stream, so nothing is lost.

        Cancelling is safe: the items gathered so far are put back into the stream.
        """
        out: list[T_co] = []
        try:
            while True:
                items = await self._pull(_ALL)
                if not items:
                    return out
                out += items
        except BaseException:
            self._unread(out)
            raise

    # ------------------------------------------------------------- operators

    def map(self, fn: Callable[[T_co], U]) -> MessageStream[U]:
        """Apply ``fn`` to every item (synchronously, one batch at a time).

        If ``fn`` raises, the exception is raised at that item's position; the
        item is consumed and iterating again goes on with the next one.
        """
        _check_sync(fn)
        return _Map(self, fn)

    @overload
    def filter(self, predicate: Callable[[T_co], TypeGuard[U]]) -> MessageStream[U]: ...
    @overload
    def filter(self, predicate: Callable[[T_co], object]) -> MessageStream[T_co]: ...
    def filter(self, predicate: Callable[[T_co], object]) -> MessageStream[Any]:
        """Keep the items for which ``predicate`` is true (a ``TypeGuard`` narrows the type).

        Dropped items are consumed. An exception in ``predicate`` is raised at
        that item's position.
        """
        _check_sync(predicate)
        return _Filter(self, predicate)

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
        _check_sync(fn)
        return _Convert(self, fn, None, _check_on_error(on_error))

    def take(self, n: int) -> MessageStream[T_co]:
        """Yield at most ``n`` more items, then end. Reads nothing beyond them."""
        if n < 0:
            raise ValueError("n must be >= 0")
        return _Take(self, n)

    def skip(self, n: int) -> MessageStream[T_co]:
        """Drop the next ``n`` items (consumed), then yield the rest."""
        if n < 0:
            raise ValueError("n must be >= 0")
        return _Skip(self, n)

    def enumerate(self, start: int = 0) -> MessageStream[tuple[int, T_co]]:
        """Pair every item with its index: ``(start, x0), (start + 1, x1)...``."""
        return _Enumerate(self, start)

    def chunks(self) -> MessageStream[list[T_co]]:
        """Yield the items in the lists they arrive in (everything available at once).

        The fastest way to consume a stream: one list per batch of the
        session, never empty. Each list is the caller's to keep or mutate.
        """
        return _Chunks(self)

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
        if size < 1:
            raise ValueError("size must be >= 1")
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0")
        return _Batch(self, size, timeout)

    def __or__(self, func: Callable[[MessageStream[T_co]], X]) -> X:
        """Pipe into a function of a stream, e.g. an aiostream pipe: ``ws.json(T) | pipe.take(3)``.

        Returns:
            Whatever ``func(self)`` returns: an aiostream ``Stream`` for aiostream pipes.
        """
        return func(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} buffered={len(self._buf) - self._pos}>"


def _check_sync(fn: object) -> None:
    if inspect.iscoroutinefunction(fn):
        raise TypeError(
            "operators take synchronous functions; for an async function, use an aiostream pipe"
            " (pipe.map) or a loop"
        )
    if not callable(fn):
        raise TypeError(f"expected a callable, got {type(fn).__name__}")


def _check_on_error(on_error: OnDecodeError) -> DecodeErrorHandler | None:
    if on_error == "raise":
        return None
    if not callable(on_error):
        raise ValueError(f"on_error must be 'raise' or a callable, not {on_error!r}")
    return on_error


# --------------------------------------------------------------------------- sources


#: Read-ahead messages of sources that cannot take them back themselves (no
#: ``_unread_batch``), shared by every stream over the same source. Keyed weakly:
#: the lists hold only messages, so an entry goes away with its source.
_READ_AHEAD: weakref.WeakKeyDictionary[Any, list[Message]] = weakref.WeakKeyDictionary()


class _BatchRoot(MessageStream[Message]):
    """Reads a :class:`BatchSource` (the session): one ``_receive_batch()`` per pull.

    Messages read ahead (by exact operators, or left after an error) go back to
    the source's ``_unread_batch`` when it has one, so that the session's own
    receive methods see them; otherwise to a store shared by every stream over
    that source; otherwise (a source that cannot be weakly referenced) they
    stay in this stream.
    """

    __slots__ = ("_src", "_unread_batch")

    def __init__(self, src: BatchSource) -> None:
        super().__init__()
        self._src = src
        self._unread_batch: Callable[[list[Message]], object] | None = getattr(
            src, "_unread_batch", None
        )

    def _unread(self, items: list[Any]) -> None:
        if not items or self._pos < len(self._buf):
            super()._unread(items)  # keep the order with what this stream holds
        elif self._unread_batch is not None:
            self._unread_batch(items)
        else:
            try:
                _READ_AHEAD[self._src] = items + _READ_AHEAD.get(self._src, [])
            except TypeError:  # not hashable or not weakly referenceable
                super()._unread(items)

    async def _produce(self, limit: int) -> list[Message]:
        batch = None
        if self._unread_batch is None:
            try:
                batch = _READ_AHEAD.pop(self._src, None)
            except TypeError:
                pass
        if batch is None:
            batch = await self._src._receive_batch()
        return batch


class _ChannelRoot(MessageStream[T]):
    """Reads an anyio object receive stream, taking every item available at once."""

    __slots__ = ("_ended", "_src")

    def __init__(self, src: Any) -> None:
        super().__init__()
        self._src = src
        self._ended = False

    async def _produce(self, limit: int) -> list[T]:
        if self._ended:
            return []
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


class _IterRoot(MessageStream[T]):
    """Reads any async iterable, one item per pull.

    Only as cancel-safe as the iterable's ``__anext__``: an async generator is
    finished by a cancellation (for ``batch(timeout=...)``, prefer a session, a
    stream or an anyio receive stream).
    """

    __slots__ = ("_ended", "_it", "_src")

    def __init__(self, src: AsyncIterable[T]) -> None:
        super().__init__()
        self._src = src
        self._it: AsyncIterator[T] | None = None
        self._ended = False

    async def _produce(self, limit: int) -> list[T]:
        if self._ended:
            return []
        if self._it is None:
            self._it = aiter(self._src)
        try:
            return [await anext(self._it)]
        except StopAsyncIteration:
            self._ended = True
            return []


def _as_stream(source: Any) -> MessageStream[Any]:
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


# --------------------------------------------------------------------------- stages


class _Stage(MessageStream[T_co]):
    __slots__ = ("_up",)

    def __init__(self, up: MessageStream[Any]) -> None:
        super().__init__()
        self._up = up

    def _fail(self, exc: Exception, rest: list[Any], out: list[Any]) -> None:
        """Record an error met after ``out`` was produced: hand ``rest`` back upstream;
        raise now if nothing precedes the error, else raise it after ``out``."""
        self._up._unread(rest)
        if not out:
            raise exc
        self._exc = exc


class _Map(_Stage[U]):
    __slots__ = ("_fn",)

    def __init__(self, up: MessageStream[Any], fn: Callable[[Any], U]) -> None:
        super().__init__(up)
        self._fn = fn

    async def _produce(self, limit: int) -> list[U]:
        items = await self._up._pull(limit)
        out: list[U] = []
        it = iter(items)
        try:
            out.extend(builtins.map(self._fn, it))
        except Exception as exc:
            self._fail(exc, list(it), out)
        return out


class _Filter(_Stage[T]):
    __slots__ = ("_pred",)

    def __init__(self, up: MessageStream[T], pred: Callable[[T], object]) -> None:
        super().__init__(up)
        self._pred = pred

    async def _produce(self, limit: int) -> list[T]:
        while True:
            items = await self._up._pull(limit)
            if not items:
                return items
            out: list[T] = []
            it = iter(items)
            try:
                out.extend(builtins.filter(self._pred, it))
            except Exception as exc:
                self._fail(exc, list(it), out)
            if out:
                return out


def _kind_error(payload: object) -> Exception:
    if isinstance(payload, str):
        return WebSocketInvalidTypeReceived(TextMessage(data=payload))
    if isinstance(payload, bytes | bytearray):
        return WebSocketInvalidTypeReceived(BytesMessage(data=bytes(payload)))
    return TypeError(f"expected a str or bytes message, got {type(payload).__name__}")


class _WrongKind(Exception):
    pass


class _Convert(_Stage[T]):
    """Check the frame kind and/or decode, one batch at a time.

    ``fn`` is the decoder (``None``: keep the message as is); ``kind`` the
    expected message type (``None``: any). A wrong kind always raises
    WebSocketInvalidTypeReceived; a decode failure goes to ``on_error``.
    """

    __slots__ = ("_fn", "_kind", "_on_error")

    def __init__(
        self,
        up: MessageStream[Any],
        fn: Callable[[Any], T] | None,
        kind: type | None,
        on_error: DecodeErrorHandler | None,
    ) -> None:
        super().__init__(up)
        self._fn = fn
        self._kind = kind
        self._on_error = on_error

    def _checked(self, payload: Any) -> Any:
        if not isinstance(payload, self._kind):  # type: ignore[arg-type]
            raise _WrongKind
        return payload if self._fn is None else self._fn(payload)

    async def _produce(self, limit: int) -> list[T]:
        while True:
            items = await self._up._pull(limit)
            if not items:
                return []
            out = self._convert(items)
            if out:
                return out

    def _convert(self, items: list[Any]) -> list[T]:
        fn: Callable[[Any], Any] | None = self._fn
        kind = self._kind
        if kind is not None:
            kinds = set(builtins.map(type, items))
            if len(kinds) != 1 or kind not in kinds:
                fn = self._checked
        if fn is None:
            return items
        out: list[T] = []
        it = iter(items)
        failed = 0
        while True:
            try:
                out.extend(builtins.map(fn, it))
                return out
            except Exception as exc:
                payload = items[len(out) + failed]
                failed += 1
                error: Exception
                if isinstance(exc, _WrongKind):
                    error = _kind_error(payload)
                else:
                    reason = (
                        str(exc)
                        if isinstance(exc, msgspec.MsgspecError)
                        else f"{type(exc).__name__}: {exc}"
                    )
                    error = WebSocketDecodeError(payload, reason)
                    error.__cause__ = exc
                    if self._on_error is not None:
                        try:
                            self._on_error(error)
                            continue
                        except Exception as handler_exc:
                            error = handler_exc
                self._fail(error, list(it), out)
                return out


class _Take(_Stage[T]):
    __slots__ = ("_left",)

    def __init__(self, up: MessageStream[T], n: int) -> None:
        super().__init__(up)
        self._left = n

    async def _produce(self, limit: int) -> list[T]:
        if self._left <= 0:
            return []
        items: list[T] = await self._up._pull(min(limit, self._left))
        self._left -= len(items)
        return items


class _Skip(_Stage[T]):
    __slots__ = ("_left",)

    def __init__(self, up: MessageStream[T], n: int) -> None:
        super().__init__(up)
        self._left = n

    async def _produce(self, limit: int) -> list[T]:
        while self._left > 0:
            dropped = await self._up._pull(self._left)
            if not dropped:
                return []
            self._left -= len(dropped)
        return await self._up._pull(limit)


class _Enumerate(_Stage[tuple[int, T]]):
    __slots__ = ("_next",)

    def __init__(self, up: MessageStream[T], start: int) -> None:
        super().__init__(up)
        self._next = start

    async def _produce(self, limit: int) -> list[tuple[int, T]]:
        items: list[T] = await self._up._pull(limit)
        start = self._next
        self._next = start + len(items)
        return list(zip(range(start, start + len(items)), items, strict=True))


class _Chunks(_Stage[list[T]]):
    __slots__ = ()

    async def _produce(self, limit: int) -> list[list[T]]:
        items: list[T] = await self._up._pull(_ALL)
        return [list(items)] if items else []


class _Batch(_Stage[list[T]]):
    """Gathers lists of up to ``size`` items.

    It pulls everything upstream has (so each source batch is converted in one
    go) and hands the surplus straight back upstream: nothing is held here
    between pulls.
    """

    __slots__ = ("_size", "_timeout")

    def __init__(self, up: MessageStream[T], size: int, timeout: float | None) -> None:
        super().__init__(up)
        self._size = size
        self._timeout = timeout

    def _take(self, acc: list[T], items: list[T]) -> None:
        room = self._size - len(acc)
        if len(items) > room:
            self._up._unread(items[room:])
            items = items[:room]
        acc += items

    async def _produce(self, limit: int) -> list[list[T]]:
        up = self._up
        first: list[T] = await up._pull(_ALL)
        if not first:
            return []
        acc: list[T] = []
        self._take(acc, first)
        try:
            if self._timeout is None:
                await self._fill(acc)
            else:
                with anyio.CancelScope(deadline=anyio.current_time() + self._timeout):
                    await self._fill(acc)
        except Exception as exc:
            self._exc = exc  # raised after this list
        except BaseException:
            up._unread(acc)
            raise
        return [acc]

    async def _fill(self, acc: list[T]) -> None:
        while len(acc) < self._size:
            more: list[T] = await self._up._pull(_ALL)
            if not more:
                return
            self._take(acc, more)


# --------------------------------------------------------------------------- factories


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
    return _as_stream(source)


def text_stream(source: Source) -> MessageStream[str]:
    """A stream of the text messages of ``source``.

    Raises (while iterating):
        WebSocketInvalidTypeReceived: a binary message arrived, at its position
            (its ``event`` is a wsproto ``BytesMessage`` holding it).
    """
    return _Convert(_as_stream(source), None, str, None)


def bytes_stream(source: Source) -> MessageStream[bytes]:
    """A stream of the binary messages of ``source``.

    Raises (while iterating):
        WebSocketInvalidTypeReceived: a text message arrived, at its position
            (its ``event`` is a wsproto ``TextMessage`` holding it).
    """
    return _Convert(_as_stream(source), None, bytes, None)


_MODE_KINDS: dict[str, type | None] = {"text": str, "binary": bytes, "any": None}


@overload
def json_stream(
    source: Source,
    type: builtins.type[T],
    *,
    mode: JSONStreamMode = "text",
    on_error: OnDecodeError = "raise",
) -> MessageStream[T]: ...
@overload
def json_stream(
    source: Source,
    type: Any = ...,
    *,
    mode: JSONStreamMode = "text",
    on_error: OnDecodeError = "raise",
) -> MessageStream[Any]: ...
def json_stream(
    source: Source,
    type: Any = Any,
    *,
    mode: JSONStreamMode = "text",
    on_error: OnDecodeError = "raise",
) -> MessageStream[Any]:
    """A stream of JSON messages decoded (and validated) by msgspec.

    Args:
        source: a session, or any source :func:`message_stream` accepts.
        type: what each message decodes to: a ``msgspec.Struct``, a dataclass,
            ``list[Tick]``...; ``Any`` (the default) gives plain dicts and lists.
        mode: ``"text"`` (JSON in text frames, the default), ``"binary"`` (in
            binary frames) or ``"any"`` (both).
        on_error: ``"raise"`` or a handler for messages that fail to decode,
            as for :meth:`MessageStream.decode`.

    Returns:
        A ``MessageStream[type]``.

    Raises:
        ValueError: ``mode`` or ``on_error`` is invalid.
        TypeError: msgspec does not support ``type``.

    While iterating, raises at the bad message's position:
        WebSocketInvalidTypeReceived: a frame of the wrong kind for ``mode``
            (always raised, whatever ``on_error``).
        WebSocketDecodeError: invalid JSON, or a value not matching ``type``
            (with ``on_error="raise"``); it carries the payload and msgspec's
            reason, e.g. ``"Expected `float`, got `str` - at `$.px`"``.
    """
    if mode not in _MODE_KINDS:
        raise ValueError(f"mode must be 'text', 'binary' or 'any', not {mode!r}")
    handler = _check_on_error(on_error)
    decoder = json_decoder(type)
    return _Convert(_as_stream(source), decoder.decode, _MODE_KINDS[mode], handler)


# --------------------------------------------------------------------------- sending


class JSONSender(ObjectSendStream[T_contra]):
    """An anyio object send stream that sends each item as one JSON message.

    Items are encoded by msgspec (Structs, dataclasses, dicts, lists...) and
    sent with the session's ``send_text`` (mode ``"text"``) or ``send_bytes``
    (mode ``"binary"``). Use it wherever an ``anyio.abc.ObjectSendStream`` is
    expected, e.g. as the output of a worker task.

    Closing the sender only stops it (later sends raise
    :class:`anyio.ClosedResourceError`); the session stays open.
    """

    def __init__(self, session: _TextBytesSink, mode: Literal["text", "binary"] = "text") -> None:
        if mode not in ("text", "binary"):
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")
        self._session = session
        self._text = mode == "text"
        self._closed = False

    async def send(self, item: T_contra) -> None:
        """Encode ``item`` and send it as one message.

        Raises:
            anyio.ClosedResourceError: this sender was closed.
            TypeError: msgspec cannot encode ``item`` (nothing is sent).
            Exception: whatever the session's send raises (e.g. once closed).

        Cancelling is as safe as the session's ``send_text``/``send_bytes``.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        if self._text:
            await self._session.send_text(encode_json_text(item))
        else:
            await self._session.send_bytes(encode_json(item))

    async def aclose(self) -> None:
        """Stop this sender; the session is left open."""
        self._closed = True


@overload
def json_sender(
    session: _TextBytesSink, type: builtins.type[T], *, mode: Literal["text", "binary"] = "text"
) -> JSONSender[T]: ...
@overload
def json_sender(
    session: _TextBytesSink, type: Any = ..., *, mode: Literal["text", "binary"] = "text"
) -> JSONSender[Any]: ...
def json_sender(
    session: _TextBytesSink, type: Any = Any, *, mode: Literal["text", "binary"] = "text"
) -> JSONSender[Any]:
    """An object send stream of JSON messages on ``session``.

    Args:
        session: anything with ``send_text(str)`` and ``send_bytes(bytes)``.
        type: the item type, for static typing only (``json_sender(ws, Tick)``
            is a ``JSONSender[Tick]``); nothing is checked at run time.
        mode: ``"text"`` frames (the default) or ``"binary"`` frames.

    Returns:
        A :class:`JSONSender`, usable with ``async with``.

    Raises:
        ValueError: ``mode`` is invalid.
    """
    return JSONSender(session, mode)


class TypedStreams:
    """The typed-stream methods of a message source.

    Mixed into :class:`~streams.AsyncWebSocketSession` and
    :class:`~streams.ReconnectingWebSocket`: each method returns a new
    :class:`MessageStream` (or :class:`JSONSender`) over ``self``, which must
    be a :class:`BatchSource` with ``send_text`` and ``send_bytes``.
    """

    __slots__ = ()

    def messages(self) -> MessageStream[Message]:
        """Return the messages as a :class:`MessageStream` of ``str | bytes``.

        Iterating it consumes the source's messages, like ``async for msg in ws``.
        """
        return message_stream(cast(BatchSource, self))

    def text(self) -> MessageStream[str]:
        """Return the text messages as a :class:`MessageStream` of ``str``.

        A binary message raises :class:`~streams.WebSocketInvalidTypeReceived`
        at its position.
        """
        return text_stream(cast(BatchSource, self))

    @overload
    def json(
        self,
        type: builtins.type[T],
        *,
        mode: JSONStreamMode = "text",
        on_error: OnDecodeError = "raise",
    ) -> MessageStream[T]: ...

    @overload
    def json(
        self,
        type: Any = ...,
        *,
        mode: JSONStreamMode = "text",
        on_error: OnDecodeError = "raise",
    ) -> MessageStream[Any]: ...

    def json(
        self,
        type: Any = Any,
        *,
        mode: JSONStreamMode = "text",
        on_error: OnDecodeError = "raise",
    ) -> MessageStream[Any]:
        """Return the messages decoded from JSON by msgspec, as a typed stream.

        Example::

            class Tick(msgspec.Struct):
                sym: str
                px: float

            async for tick in ws.json(Tick):
                print(tick.sym, tick.px)

        Args:
            type: the type to decode and validate into (a msgspec Struct, a
                dataclass, ``dict[str, float]``...); ``Any`` by default.
            mode: ``"text"`` frames, ``"binary"`` frames, or ``"any"``. A frame
                of another kind raises :class:`~streams.WebSocketInvalidTypeReceived`.
            on_error: ``"raise"`` (the default) raises
                :class:`~streams.WebSocketDecodeError`, which carries the raw
                message and msgspec's reason; a callable is called with that
                error instead and the stream goes on.

        Returns:
            A :class:`MessageStream` of ``type``.
        """
        return json_stream(cast(BatchSource, self), type, mode=mode, on_error=on_error)

    @overload
    def sender(
        self, type: builtins.type[T], *, mode: Literal["text", "binary"] = "text"
    ) -> JSONSender[T]: ...

    @overload
    def sender(
        self, type: Any = ..., *, mode: Literal["text", "binary"] = "text"
    ) -> JSONSender[Any]: ...

    def sender(
        self, type: Any = Any, *, mode: Literal["text", "binary"] = "text"
    ) -> JSONSender[Any]:
        """Return an anyio send stream that sends each item as JSON (encoded by msgspec).

        Example::

            async with ws.sender(Tick) as out:
                await out.send(Tick("ABC", 1.5))

        Args:
            type: the item type, for static typing.
            mode: ``"text"`` or ``"binary"`` frames.
        """
        return json_sender(cast(_TextBytesSink, self), type, mode=mode)

    # Last: the method named ``bytes`` shadows the builtin in the class body.
    def bytes(self) -> MessageStream[builtins.bytes]:
        """Return the binary messages as a :class:`MessageStream` of ``bytes``.

        A text message raises :class:`~streams.WebSocketInvalidTypeReceived`
        at its position.
        """
        return bytes_stream(cast(BatchSource, self))
