"""JSON encoding and decoding with msgspec, shared by every layer.

One :class:`msgspec.json.Decoder` is built per target type and cached, and one
:class:`msgspec.json.Encoder` serves every send. Text frames are decoded from
``str`` directly (msgspec accepts it): nothing is re-encoded to bytes first.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar, overload

import msgspec

from ._exceptions import WebSocketDecodeError
from ._types import Message

__all__ = [
    "decode_json",
    "encode_json",
    "encode_json_text",
    "json_decoder",
]

T = TypeVar("T")

_ENCODER = msgspec.json.Encoder()
_ANY_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder()

#: How many typed decoders are kept (one per target type).
_CACHE_SIZE = 512


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_decoder(type: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(type)


@overload
def json_decoder(type: type[T]) -> msgspec.json.Decoder[T]: ...
@overload
def json_decoder(type: Any = ...) -> msgspec.json.Decoder[Any]: ...
def json_decoder(type: Any = Any) -> msgspec.json.Decoder[Any]:
    """Return the shared JSON decoder for ``type``.

    Args:
        type: what each message decodes to: a :class:`msgspec.Struct`, a
            dataclass, ``list[Tick]``, ``dict[str, int]``... ``Any`` (the
            default) gives plain dicts, lists, str, int, float, bool and None.

    Returns:
        A :class:`msgspec.json.Decoder` for ``type``, built once and reused.

    Raises:
        TypeError: msgspec does not support ``type``.
    """
    if type is Any:
        return _ANY_DECODER
    try:
        return _cached_decoder(type)
    except TypeError:
        # An unhashable type (an ``Annotated`` with unhashable metadata, say):
        # build it each time rather than fail. msgspec's own TypeError for an
        # unsupported type is raised again by this call.
        return msgspec.json.Decoder(type)


def decode_json(payload: Message, type: Any = Any) -> Any:
    """Decode one JSON message.

    Args:
        payload: the message, ``str`` or ``bytes``.
        type: the target type, as for :func:`json_decoder`.

    Returns:
        The decoded value, validated against ``type``.

    Raises:
        WebSocketDecodeError: the payload is not valid JSON or does not match
            ``type``; it carries the payload and msgspec's reason, with the
            path of the bad field (for example ``at `$.px```).
    """
    try:
        return json_decoder(type).decode(payload)
    except msgspec.DecodeError as exc:
        raise WebSocketDecodeError(payload, str(exc)) from exc


def encode_json(value: Any) -> bytes:
    """Encode ``value`` as compact JSON (UTF-8 bytes), for a binary frame.

    Raises:
        TypeError: msgspec cannot encode the value.
    """
    return _ENCODER.encode(value)


def encode_json_text(value: Any) -> str:
    """Encode ``value`` as compact JSON text, for a text frame.

    Raises:
        TypeError: msgspec cannot encode the value.
    """
    return _ENCODER.encode(value).decode()
