"""The typed sync streams: ``ws.text()``, ``ws.bytes()``, ``ws.json(T)``, ``ws.messages()``."""

from __future__ import annotations

import builtins
import collections
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast, overload

import msgspec

from .._checks import check_choice, check_on_error
from .._codec import json_decoder
from .._exceptions import WebSocketDecodeError, WebSocketInvalidTypeReceived
from .._types import Message
from ..protocol._wsproto import BytesMessage, TextMessage

if TYPE_CHECKING:
    from ._reader import SyncReader

__all__ = ["SyncJSONMode", "SyncMessageStream", "SyncTypedStreams"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: Which frames carry JSON in :meth:`WebSocketSession.json`.
SyncJSONMode = Literal["text", "binary", "any"]


class SyncMessageStream(Generic[T_co]):
    """An iterable of messages, made by ``ws.text()``, ``ws.bytes()``, ``ws.json(T)``
    or ``ws.messages()``.

    Each step takes every message the session holds and converts the whole
    batch in the iterating thread. Items converted and not yet yielded stay in
    this object: after a ``break``, iterating it again resumes where it stopped
    (a new stream does not see them, so keep one stream object per purpose).

    An error is raised at the bad message's position, after the items before
    it; the messages after it go back to the session, and iterating again goes
    on with them. A normal close ends the iteration, an abnormal one raises.
    """

    __slots__ = ("_buf", "_decode", "_error", "_kind", "_on_error", "_session")

    def __init__(
        self,
        session: SyncReader,
        kind: type | None,
        decode: Callable[[Any], T_co] | None,
        on_error: Callable[[WebSocketDecodeError], object] | None,
    ) -> None:
        self._session = session
        self._kind = kind
        self._decode = decode
        self._on_error = on_error
        self._buf: collections.deque[T_co] = collections.deque()
        self._error: Exception | None = None

    def __iter__(self) -> Iterator[T_co]:
        return self

    def __next__(self) -> T_co:
        buf = self._buf
        if buf:
            return buf.popleft()
        error = self._error
        if error is not None:
            self._error = None
            raise error
        session = self._session
        while True:
            batch = session._take(None, everything=True)
            if not batch:
                session._end_of_stream()
                raise StopIteration
            out, error, rest = self._convert(batch)
            if rest:
                session._unread(rest)
            buf.extend(out)
            if error is not None:
                if not buf:
                    raise error
                self._error = error
            if buf:
                return buf.popleft()

    def _convert(self, batch: list[Message]) -> tuple[list[Any], Exception | None, list[Message]]:
        """Convert a batch: the items before the first failure, the failure, the rest."""
        kind = self._kind
        decode = self._decode
        if kind is None or all(type(payload) is kind for payload in batch):
            if decode is None:
                return batch, None, []
            try:
                return list(map(decode, batch)), None, []
            except Exception:
                pass  # found again below, at its position
        out: list[Any] = []
        for index, payload in enumerate(batch):
            if kind is not None and not isinstance(payload, kind):
                return out, _kind_error(payload), batch[index + 1 :]
            if decode is None:
                out.append(payload)
                continue
            try:
                out.append(decode(payload))
            except Exception as exc:
                reason = (
                    str(exc)
                    if isinstance(exc, msgspec.MsgspecError)
                    else f"{type(exc).__name__}: {exc}"
                )
                decode_error = WebSocketDecodeError(payload, reason)
                decode_error.__cause__ = exc
                if self._on_error is None:
                    return out, decode_error, batch[index + 1 :]
                try:
                    self._on_error(decode_error)
                except Exception as handler_error:
                    return out, handler_error, batch[index + 1 :]
        return out, None, []

    def __repr__(self) -> str:
        return f"<SyncMessageStream buffered={len(self._buf)}>"


def _kind_error(payload: Message) -> WebSocketInvalidTypeReceived:
    if isinstance(payload, str):
        return WebSocketInvalidTypeReceived(TextMessage(data=payload))
    return WebSocketInvalidTypeReceived(BytesMessage(data=payload))


class SyncTypedStreams:
    """``text()``, ``bytes()``, ``json(T)`` and ``messages()`` of the sync session (a mixin
    of :class:`~streams._sync._reader.SyncReader`'s subclasses)."""

    def _source(self) -> SyncReader:
        return cast("SyncReader", self)

    def messages(self) -> SyncMessageStream[Message]:
        """Return an iterable of the messages, ``str`` or ``bytes``, taken a batch at a time.

        Iterating it consumes the session's messages, like ``for message in ws``.
        """
        return SyncMessageStream(self._source(), None, None, None)

    def text(self) -> SyncMessageStream[str]:
        """Return an iterable of the text messages.

        Raises (while iterating):
            WebSocketInvalidTypeReceived: a binary message arrived, at its position
                (its ``event`` holds it).
        """
        return SyncMessageStream(self._source(), str, None, None)

    def bytes(self) -> SyncMessageStream[builtins.bytes]:
        """Return an iterable of the binary messages.

        Raises (while iterating):
            WebSocketInvalidTypeReceived: a text message arrived, at its position
                (its ``event`` holds it).
        """
        return SyncMessageStream(self._source(), builtins.bytes, None, None)

    @overload
    def json(
        self,
        type: builtins.type[T],
        *,
        mode: SyncJSONMode = "text",
        on_error: Literal["raise"] | Callable[[WebSocketDecodeError], object] = "raise",
    ) -> SyncMessageStream[T]: ...
    @overload
    def json(
        self,
        type: Any = ...,
        *,
        mode: SyncJSONMode = "text",
        on_error: Literal["raise"] | Callable[[WebSocketDecodeError], object] = "raise",
    ) -> SyncMessageStream[Any]: ...
    def json(
        self,
        type: Any = Any,
        *,
        mode: SyncJSONMode = "text",
        on_error: Literal["raise"] | Callable[[WebSocketDecodeError], object] = "raise",
    ) -> SyncMessageStream[Any]:
        """Return an iterable of JSON messages decoded (and validated) by msgspec.

        Decoding happens in the iterating thread, a whole batch at a time.

        Args:
            type: what each message decodes to: a ``msgspec.Struct``, a
                dataclass, ``list[Tick]``...; ``Any`` (the default) gives plain
                dicts and lists.
            mode: ``"text"`` (JSON in text frames, the default), ``"binary"``
                or ``"any"``.
            on_error: ``"raise"``, or a function called with each
                :class:`~streams.WebSocketDecodeError` (the message is then
                skipped; if the function raises, its exception is raised at
                that position).

        Returns:
            A :class:`SyncMessageStream` of ``type``.

        Raises:
            ValueError: ``mode`` or ``on_error`` is invalid.
            TypeError: msgspec does not support ``type``.

        While iterating, raises at the bad message's position:
            WebSocketInvalidTypeReceived: a frame of the wrong kind for ``mode``
                (whatever ``on_error``).
            WebSocketDecodeError: invalid JSON, or a value not matching ``type``
                (with ``on_error="raise"``); it carries the payload and
                msgspec's reason.
        """
        kinds: dict[str, builtins.type | None] = {
            "text": str,
            "binary": builtins.bytes,
            "any": None,
        }
        check_choice("mode", mode, tuple(kinds))
        handler = check_on_error(on_error)
        return SyncMessageStream(self._source(), kinds[mode], json_decoder(type).decode, handler)
