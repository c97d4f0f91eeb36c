"""The typed sync streams: ``ws.text()``, ``ws.bytes()``, ``ws.json(T)``, ``ws.messages()``."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import msgspec

from .._exceptions import WebSocketDecodeError, WebSocketInvalidTypeReceived
from .._types import Message
from ..protocol._wsproto import BytesMessage, TextMessage

if TYPE_CHECKING:
    from ._reader import SyncReader

__all__ = ["SyncJSONMode", "SyncMessageStream"]

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
