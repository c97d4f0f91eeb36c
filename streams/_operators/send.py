"""Sending typed values: an anyio object send stream of JSON messages."""

from __future__ import annotations

import builtins
from typing import Any, Literal, Protocol, TypeVar, overload

import anyio
from anyio.abc import ObjectSendStream

from .._checks import check_choice
from .._codec import encode_json, encode_json_text

__all__ = ["JSONSender", "TextBytesSink", "json_sender"]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class TextBytesSink(Protocol):
    """What a :class:`JSONSender` sends through: a session, a reconnecting feed..."""

    async def send_text(self, data: str) -> None: ...
    async def send_bytes(self, data: bytes) -> None: ...


class JSONSender(ObjectSendStream[T_contra]):
    """An anyio object send stream that sends each item as one JSON message.

    Items are encoded by msgspec (Structs, dataclasses, dicts, lists...) and
    sent with the session's ``send_text`` (mode ``"text"``) or ``send_bytes``
    (mode ``"binary"``). Use it wherever an ``anyio.abc.ObjectSendStream`` is
    expected, e.g. as the output of a worker task.

    Closing the sender only stops it (later sends raise
    :class:`anyio.ClosedResourceError`); the session stays open.
    """

    def __init__(self, session: TextBytesSink, mode: Literal["text", "binary"] = "text") -> None:
        check_choice("mode", mode, ("text", "binary"))
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
    session: TextBytesSink, type: builtins.type[T], *, mode: Literal["text", "binary"] = "text"
) -> JSONSender[T]: ...
@overload
def json_sender(
    session: TextBytesSink, type: Any = ..., *, mode: Literal["text", "binary"] = "text"
) -> JSONSender[Any]: ...
def json_sender(
    session: TextBytesSink, type: Any = Any, *, mode: Literal["text", "binary"] = "text"
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
