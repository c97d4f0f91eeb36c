"""Decoding: where a raw message becomes a typed value.

:class:`Converter` is the one conversion of a batch, shared by the async
streams (the :class:`Convert` stage) and the sync ones: it checks the frame kind
and decodes, one batch at a time with C-speed built-ins, and reports the first
failure at its position. ``text_stream``, ``bytes_stream`` and ``json_stream``
build a ``Convert`` over a source.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol, TypeAlias, TypeVar, overload

import msgspec

from .._checks import check_choice, check_on_error
from .._codec import json_decoder
from .._exceptions import WebSocketDecodeError, WebSocketInvalidTypeReceived
from ..protocol._wsproto import BytesMessage, TextMessage
from .sources import Source, as_stream
from .stream import Derived, MessageStream

__all__ = [
    "Conversion",
    "Convert",
    "Converter",
    "DecodeErrorHandler",
    "JSONStreamMode",
    "OnDecodeError",
    "SupportsDecode",
    "bytes_stream",
    "json_converter",
    "json_stream",
    "text_stream",
]

T = TypeVar("T")
U_co = TypeVar("U_co", covariant=True)


class SupportsDecode(Protocol[U_co]):
    """A decoder object: :class:`msgspec.json.Decoder`, :class:`msgspec.msgpack.Decoder`..."""

    def decode(self, buf: Any, /) -> U_co: ...


#: Which frames carry JSON: ``"text"`` frames only, ``"binary"`` frames only, or ``"any"``.
JSONStreamMode: TypeAlias = Literal["text", "binary", "any"]

#: Called with each message that fails to decode; the message is then skipped.
DecodeErrorHandler: TypeAlias = Callable[[WebSocketDecodeError], object]

#: ``"raise"`` (raise :class:`~streams.WebSocketDecodeError` at the bad message's
#: position) or a :data:`DecodeErrorHandler` that receives it instead.
OnDecodeError: TypeAlias = Literal["raise"] | DecodeErrorHandler

_MODE_KINDS: dict[str, type | None] = {"text": str, "binary": bytes, "any": None}


#: The result of converting one batch: ``(items, sources, error, rest)``: the
#: converted items up to the first failure; the message each item came from
#: (``sources[i]`` gave ``items[i]``); the failure (a wrong kind, a decode error
#: or the handler's own error), if any; the messages after it, not looked at.
Conversion: TypeAlias = tuple[list[Any], list[Any], Exception | None, list[Any]]


class _WrongKind(Exception):
    pass


def kind_error(payload: object) -> Exception:
    """The error for a message of the wrong kind (it carries the message)."""
    if isinstance(payload, str):
        return WebSocketInvalidTypeReceived(TextMessage(data=payload))
    if isinstance(payload, bytes | bytearray):
        return WebSocketInvalidTypeReceived(BytesMessage(data=bytes(payload)))
    return TypeError(f"expected a str or bytes message, got {type(payload).__name__}")


def decode_error(payload: Any, exc: Exception) -> WebSocketDecodeError:
    """The :class:`~streams.WebSocketDecodeError` for a message the decoder refused."""
    reason = str(exc) if isinstance(exc, msgspec.MsgspecError) else f"{type(exc).__name__}: {exc}"
    error = WebSocketDecodeError(payload, reason)
    error.__cause__ = exc
    return error


class Converter:
    """Checks the frame kind and decodes, a batch at a time.

    Args:
        kind: the expected message type (``str``, ``bytes``) or ``None`` for any.
            A message of another kind always fails with
            :class:`~streams.WebSocketInvalidTypeReceived`.
        decode: the decoder (``None``: keep the message as is); any exception it
            raises makes a :class:`~streams.WebSocketDecodeError`.
        on_error: ``None`` to fail at a bad message, or a handler that receives
            the decode error instead (the message is then skipped); an
            exception from the handler is the failure.
    """

    __slots__ = ("decode", "kind", "on_error")

    def __init__(
        self,
        kind: type | None,
        decode: Callable[[Any], Any] | None,
        on_error: DecodeErrorHandler | None,
    ) -> None:
        self.kind = kind
        self.decode = decode
        self.on_error = on_error

    def _checked(self, payload: Any) -> Any:
        if not isinstance(payload, self.kind):  # type: ignore[arg-type]
            raise _WrongKind
        return payload if self.decode is None else self.decode(payload)

    def convert(self, batch: list[Any]) -> Conversion:
        """Convert ``batch`` up to its first failure (the handler's skips are not failures)."""
        fn = self.decode
        kind = self.kind
        if kind is not None:
            kinds = set(builtins.map(type, batch))
            if len(kinds) != 1 or kind not in kinds:
                fn = self._checked
        if fn is None:
            return batch, batch, None, []
        out: list[Any] = []
        it = iter(batch)
        try:
            out.extend(builtins.map(fn, it))
        except Exception as exc:
            return self._resume(batch, fn, out, it, exc)
        return out, batch, None, []

    def _resume(
        self,
        batch: list[Any],
        fn: Callable[[Any], Any],
        out: list[Any],
        it: Iterator[Any],
        exc: Exception,
    ) -> Conversion:
        """Go on after a failure at ``batch[len(out)]``: skip it (``on_error``) or stop there."""
        skipped: list[int] = []
        while True:
            index = len(out) + len(skipped)
            payload = batch[index]
            error: Exception
            if isinstance(exc, _WrongKind):
                error = kind_error(payload)
            else:
                error = decode_error(payload, exc)
                if self.on_error is not None:
                    try:
                        self.on_error(error)
                    except Exception as handler_exc:
                        error = handler_exc
                    else:
                        skipped.append(index)
                        try:
                            out.extend(builtins.map(fn, it))
                        except Exception as next_exc:
                            exc = next_exc
                            continue
                        return out, _sources(batch, skipped), None, []
            return out, _sources(batch[:index], skipped), error, list(it)


def _sources(batch: list[Any], skipped: list[int]) -> list[Any]:
    if not skipped:
        return batch
    gone = set(skipped)
    return [payload for index, payload in enumerate(batch) if index not in gone]


class Convert(Derived[T]):
    """The decoding stage: a :class:`Converter` over the batches of the stream above."""

    __slots__ = ("_convert", "_decodes")

    def __init__(self, up: MessageStream[Any], converter: Converter) -> None:
        super().__init__(up)
        self._convert = converter.convert
        self._decodes = converter.decode is not None

    async def _produce(self, limit: int) -> list[T]:
        while True:
            items = await self._up._pull(limit)
            if not items:
                return []
            out, sources, error, rest = self._convert(items)
            if error is not None:
                self._fail(error, rest, out)
            if out:
                if self._holds and self._decodes:
                    self._record(out, sources)
                return out

    def _give_back(self, items: list[Any]) -> None:
        if not self._decodes:
            self._up._unread(items)  # the items are the messages
        else:
            super()._give_back(items)


def json_converter(
    type: Any = Any, *, mode: JSONStreamMode = "text", on_error: OnDecodeError = "raise"
) -> Converter:
    """The conversion of JSON messages into ``type`` (checks ``mode`` and ``on_error``).

    Raises:
        ValueError: ``mode`` or ``on_error`` is invalid.
        TypeError: msgspec does not support ``type``.
    """
    check_choice("mode", mode, ("text", "binary", "any"))
    handler: DecodeErrorHandler | None = check_on_error(on_error)
    return Converter(_MODE_KINDS[mode], json_decoder(type).decode, handler)


def text_stream(source: Source) -> MessageStream[str]:
    """A stream of the text messages of ``source``.

    Raises (while iterating):
        WebSocketInvalidTypeReceived: a binary message arrived, at its position
            (its ``event`` is a wsproto ``BytesMessage`` holding it).
    """
    return Convert(as_stream(source), Converter(str, None, None))


def bytes_stream(source: Source) -> MessageStream[bytes]:
    """A stream of the binary messages of ``source``.

    Raises (while iterating):
        WebSocketInvalidTypeReceived: a text message arrived, at its position
            (its ``event`` is a wsproto ``TextMessage`` holding it).
    """
    return Convert(as_stream(source), Converter(bytes, None, None))


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
    return Convert(as_stream(source), json_converter(type, mode=mode, on_error=on_error))
