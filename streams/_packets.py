"""The connection manager's states and typed packets, and how a message becomes a packet."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import msgspec

from ._exceptions import WebSocketDecodeError
from ._types import Message

__all__ = [
    "WebsocketPacket",
    "WebsocketPacketBytes",
    "WebsocketPacketJSON",
    "WebsocketPayloadError",
    "WebsocketState",
    "to_packet",
]

_json_decoder = msgspec.json.Decoder()


class WebsocketState(enum.IntEnum):
    """Websocket connection state."""

    #: Websocket is currently connected.
    CONNECTED = 0
    #: Websocket is currently connecting.
    CONNECTING = 1
    #: Websocket is currently disconnected.
    DISCONNECTED = 2
    #: Websocket is currently disconnecting.
    DISCONNECTING = 3


class WebsocketPacket:
    """Base websocket packet implementation."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True, slots=True)
class WebsocketPacketBytes(WebsocketPacket):
    """Bytes-structured websocket packet: a binary message."""

    #: The bytes packet payload.
    payload: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class WebsocketPacketJSON(WebsocketPacket):
    """JSON-structured websocket packet: a text message holding a JSON object."""

    #: The JSON packet payload.
    payload: dict[str, Any]


class WebsocketPayloadError(WebSocketDecodeError, RuntimeError):
    """A text message that is not a JSON object arrived (see :meth:`Websocket.receive`).

    It is a :class:`RuntimeError` (an unexpected payload type) and a
    :class:`~streams.WebSocketDecodeError`: the raw text is kept in ``payload``.
    The connection stays open; the next :meth:`Websocket.receive` goes on.
    """


def to_packet(message: Message) -> WebsocketPacket:
    """Return the packet for a message: bytes as they are, text decoded as a JSON object.

    Raises:
        WebsocketPayloadError: the text is not a JSON object.
    """
    if not isinstance(message, str):
        return WebsocketPacketBytes(bytes(message))
    try:
        payload = _json_decoder.decode(message)
    except msgspec.DecodeError as exc:
        raise WebsocketPayloadError(
            message, f"unexpected payload type: text is not JSON ({exc})"
        ) from exc
    if not isinstance(payload, dict):
        kind = type(payload).__name__
        raise WebsocketPayloadError(
            message, f"unexpected payload type: expected a JSON object, got {kind}"
        )
    return WebsocketPacketJSON(payload)
