"""The shared msgspec codec: cached decoders, one encoder, errors that keep the payload."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest

from streams._codec import decode_json, encode_json, encode_json_text, json_decoder
from streams._exceptions import WebSocketDecodeError


class Tick(msgspec.Struct):
    sym: str
    px: float


def test_one_decoder_per_type() -> None:
    assert json_decoder(Tick) is json_decoder(Tick)
    assert json_decoder(list[Tick]) is json_decoder(list[Tick])
    assert json_decoder(Tick) is not json_decoder(list[Tick])


def test_any_decoder_is_shared_and_untyped() -> None:
    assert json_decoder() is json_decoder(Any)
    assert json_decoder().decode('{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}


def test_unhashable_type_still_gets_a_decoder() -> None:
    unhashable = Annotated[int, {"doc": "a dict is not hashable"}]
    with pytest.raises(TypeError):
        hash(unhashable)
    assert json_decoder(unhashable).decode("5") == 5


def test_unsupported_type_raises_type_error() -> None:
    with pytest.raises(TypeError):
        json_decoder(object())  # type: ignore[call-overload]


def test_decode_json_accepts_str_and_bytes() -> None:
    assert decode_json('{"sym": "A", "px": 1}', Tick) == Tick("A", 1.0)
    assert decode_json(b'{"sym": "A", "px": 1}', Tick) == Tick("A", 1.0)
    assert decode_json("[1, 2]") == [1, 2]


def test_decode_json_validation_error_keeps_payload_and_path() -> None:
    payload = '{"sym": "A", "px": "x"}'
    with pytest.raises(WebSocketDecodeError) as info:
        decode_json(payload, Tick)
    assert info.value.payload == payload
    assert info.value.reason == "Expected `float`, got `str` - at `$.px`"
    assert isinstance(info.value.__cause__, msgspec.ValidationError)


def test_decode_json_malformed_json_keeps_bytes_payload() -> None:
    with pytest.raises(WebSocketDecodeError) as info:
        decode_json(b"{oops")
    assert info.value.payload == b"{oops"
    assert "malformed" in info.value.reason.lower() or "invalid" in info.value.reason.lower()


def test_encode_json_is_compact_utf8() -> None:
    assert encode_json(Tick("é", 1.5)) == '{"sym":"é","px":1.5}'.encode()
    assert encode_json_text({"a": [1, None]}) == '{"a":[1,null]}'


def test_encode_unencodable_raises_type_error() -> None:
    with pytest.raises(TypeError):
        encode_json(object())
    with pytest.raises(TypeError):
        encode_json_text({1j})
