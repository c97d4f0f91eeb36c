"""The opening handshake (RFC 6455, section 4), with no I/O: request headers and the response check.

Responses are built as ``streams._connect`` hands them to ``Handshake.validate``: the status, the
case-insensitive ``httpx.Headers``, and every value of the multi-valued headers by lower-case name.
"""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest

from streams.protocol import Handshake
from streams.protocol._deflate import DeflateOptions, LimitedPerMessageDeflate
from streams.protocol._handshake import HandshakeError, accept_key

MULTI_VALUED = ("connection", "upgrade", "sec-websocket-protocol", "sec-websocket-extensions")


def validate(
    handshake: Handshake,
    headers: list[tuple[str, str]] | None = None,
    *,
    status: int = 101,
    accept: str | None = "valid",
) -> None:
    """Check a response carrying ``headers``, by default a valid upgrade answering ``handshake``.

    ``headers`` replaces the default ``Upgrade`` and ``Connection`` headers; ``accept`` is the
    ``Sec-WebSocket-Accept`` value (``"valid"`` for the right one, ``None`` for none).
    """
    if headers is None:
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    if accept == "valid":
        accept = accept_key(handshake.key)
    if accept is not None:
        headers = [*headers, ("Sec-WebSocket-Accept", accept)]
    response_headers = httpx.Headers(headers)
    all_values = {name: response_headers.get_list(name) for name in MULTI_VALUED}
    handshake.validate(status, response_headers, all_values)


def upgrade_with(*extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Upgrade", "websocket"), ("Connection", "Upgrade"), *extra]


class TestRequest:
    """The client's opening handshake (RFC 6455, section 4.1)."""

    def test_request_carries_upgrade_headers(self) -> None:
        headers = Handshake().request_headers()
        assert headers["Upgrade"] == "websocket"
        assert headers["Connection"] == "Upgrade"
        assert headers["Sec-WebSocket-Version"] == "13"
        assert "Sec-WebSocket-Protocol" not in headers
        assert "Sec-WebSocket-Extensions" not in headers

    def test_request_key_is_16_random_bytes_in_base64(self) -> None:
        keys = {Handshake().request_headers()["Sec-WebSocket-Key"] for _ in range(100)}
        assert len(keys) == 100
        for key in keys:
            assert len(base64.b64decode(key, validate=True)) == 16
            assert len(key) == 24

    def test_request_key_is_the_handshake_key(self) -> None:
        handshake = Handshake()
        assert handshake.request_headers()["Sec-WebSocket-Key"] == handshake.key

    def test_request_joins_subprotocols_in_order(self) -> None:
        headers = Handshake(subprotocols=["chat.v2", "chat", "json"]).request_headers()
        assert headers["Sec-WebSocket-Protocol"] == "chat.v2, chat, json"

    def test_request_without_subprotocols(self) -> None:
        assert "Sec-WebSocket-Protocol" not in Handshake(subprotocols=[]).request_headers()

    def test_request_offers_compression(self) -> None:
        headers = Handshake(compression=DeflateOptions()).request_headers()
        assert headers["Sec-WebSocket-Extensions"] == "permessage-deflate; client_max_window_bits"

    def test_request_offers_no_compression_when_disabled(self) -> None:
        handshake = Handshake(compression=DeflateOptions(enabled=False))
        assert "Sec-WebSocket-Extensions" not in handshake.request_headers()
        assert handshake.compression is None


class TestAcceptKey:
    """``Sec-WebSocket-Accept`` (RFC 6455, sections 1.3 and 4.2.2)."""

    def test_accept_key_matches_rfc_example(self) -> None:
        assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    def test_accept_key_hashes_key_with_guid(self) -> None:
        key = Handshake().key
        guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        expected = base64.b64encode(hashlib.sha1(key.encode() + guid).digest()).decode()
        assert accept_key(key) == expected


class TestValidate:
    """The client's checks of the server's answer (RFC 6455, section 4.1, "the client MUST")."""

    def test_valid_response_passes(self) -> None:
        handshake = Handshake()
        validate(handshake)
        assert handshake.subprotocol is None
        assert handshake.extensions == []

    @pytest.mark.parametrize("status", [200, 204, 301, 400, 403, 404, 426, 500])
    def test_response_must_be_101(self, status: int) -> None:
        with pytest.raises(HandshakeError, match=f"expected HTTP 101, got {status}"):
            validate(Handshake(), status=status)

    @pytest.mark.parametrize(
        "upgrade",
        [
            [("Upgrade", "websocket")],
            [("Upgrade", "WebSocket")],
            [("Upgrade", "WEBSOCKET")],
            [("upgrade", " websocket ")],
        ],
    )
    def test_upgrade_is_case_insensitive(self, upgrade: list[tuple[str, str]]) -> None:
        validate(Handshake(), [*upgrade, ("Connection", "Upgrade")])

    @pytest.mark.parametrize(
        "upgrade",
        [[], [("Upgrade", "h2c")], [("Upgrade", "websocket, h2c")], [("Upgrade", "web socket")]],
        ids=["missing", "other", "list", "misspelt"],
    )
    def test_upgrade_must_be_websocket(self, upgrade: list[tuple[str, str]]) -> None:
        with pytest.raises(HandshakeError, match="invalid Upgrade header"):
            validate(Handshake(), [*upgrade, ("Connection", "Upgrade")])

    @pytest.mark.parametrize(
        "connection",
        [
            [("Connection", "Upgrade")],
            [("Connection", "upgrade")],
            [("Connection", "UPGRADE")],
            [("Connection", "keep-alive, Upgrade")],
            [("Connection", "Upgrade,keep-alive")],
            [("Connection", "keep-alive"), ("Connection", "upgrade")],
        ],
        ids=["canonical", "lower", "upper", "list", "list-no-space", "two-headers"],
    )
    def test_connection_tokens_are_case_insensitive_lists(
        self, connection: list[tuple[str, str]]
    ) -> None:
        validate(Handshake(), [("Upgrade", "websocket"), *connection])

    @pytest.mark.parametrize(
        "connection",
        [
            [],
            [("Connection", "keep-alive")],
            [("Connection", "close")],
            [("Connection", "upgraded")],
        ],
        ids=["missing", "keep-alive", "close", "upgraded"],
    )
    def test_connection_must_include_upgrade(self, connection: list[tuple[str, str]]) -> None:
        with pytest.raises(HandshakeError, match="invalid Connection header"):
            validate(Handshake(), [("Upgrade", "websocket"), *connection])

    def test_accept_key_must_be_present(self) -> None:
        with pytest.raises(HandshakeError, match="invalid Sec-WebSocket-Accept header: None"):
            validate(Handshake(), accept=None)

    def test_accept_key_must_answer_our_key(self) -> None:
        handshake = Handshake()
        other = accept_key(Handshake().key)
        with pytest.raises(HandshakeError, match="invalid Sec-WebSocket-Accept header"):
            validate(handshake, accept=other)
        with pytest.raises(HandshakeError, match="invalid Sec-WebSocket-Accept header"):
            validate(handshake, accept=accept_key(handshake.key).lower())
        with pytest.raises(HandshakeError, match="invalid Sec-WebSocket-Accept header"):
            validate(handshake, accept="")

    def test_accept_key_of_rfc_example(self) -> None:
        handshake = Handshake()
        handshake.key = "dGhlIHNhbXBsZSBub25jZQ=="
        validate(handshake, accept="s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")


class TestSubprotocols:
    """``Sec-WebSocket-Protocol`` (RFC 6455, sections 4.1 and 11.3.4)."""

    def test_server_may_choose_no_subprotocol(self) -> None:
        handshake = Handshake(subprotocols=["chat"])
        validate(handshake)
        assert handshake.subprotocol is None

    @pytest.mark.parametrize("chosen", ["chat", "superchat", " superchat "])
    def test_server_chooses_an_offered_subprotocol(self, chosen: str) -> None:
        handshake = Handshake(subprotocols=["chat", "superchat"])
        validate(handshake, upgrade_with(("Sec-WebSocket-Protocol", chosen)))
        assert handshake.subprotocol == chosen.strip()

    @pytest.mark.parametrize("offered", [None, ["chat"]])
    def test_server_must_choose_an_offered_subprotocol(self, offered: list[str] | None) -> None:
        handshake = Handshake(subprotocols=offered)
        with pytest.raises(HandshakeError, match="subprotocol not offered: 'mqtt'"):
            validate(handshake, upgrade_with(("Sec-WebSocket-Protocol", "mqtt")))
        assert handshake.subprotocol is None

    @pytest.mark.parametrize(
        "headers",
        [
            [("Sec-WebSocket-Protocol", "chat, superchat")],
            [("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "superchat")],
            [("Sec-WebSocket-Protocol", "chat,chat")],
        ],
        ids=["list", "two-headers", "repeated"],
    )
    def test_server_must_choose_one_subprotocol(self, headers: list[tuple[str, str]]) -> None:
        handshake = Handshake(subprotocols=["chat", "superchat"])
        with pytest.raises(HandshakeError, match="more than one subprotocol chosen"):
            validate(handshake, upgrade_with(*headers))


class TestExtensions:
    """``Sec-WebSocket-Extensions`` (RFC 6455, section 9.1; RFC 7692)."""

    @pytest.mark.parametrize("answer", ["permessage-deflate", "x-webkit-deflate-frame", "foo"])
    def test_extension_not_offered_is_refused(self, answer: str) -> None:
        with pytest.raises(HandshakeError, match=f"extension not offered: '{answer}'"):
            validate(Handshake(), upgrade_with(("Sec-WebSocket-Extensions", answer)))

    def test_empty_extensions_header_is_no_extension(self) -> None:
        handshake = Handshake()
        validate(handshake, upgrade_with(("Sec-WebSocket-Extensions", "")))
        assert handshake.extensions == []

    def test_server_may_decline_compression(self) -> None:
        handshake = Handshake(compression=DeflateOptions())
        validate(handshake)
        assert handshake.extensions == []

    @pytest.mark.parametrize("max_message_size", [None, 1000])
    def test_server_accepts_compression(self, max_message_size: int | None) -> None:
        handshake = Handshake(compression=DeflateOptions(), max_message_size=max_message_size)
        answer = "permessage-deflate; client_max_window_bits=12; server_no_context_takeover"
        validate(handshake, upgrade_with(("Sec-WebSocket-Extensions", answer)))
        [extension] = handshake.extensions
        assert isinstance(extension, LimitedPerMessageDeflate)
        assert extension.enabled()
        assert extension.max_message_size == max_message_size
        assert extension.client_max_window_bits == 12
        assert extension.server_no_context_takeover

    @pytest.mark.parametrize(
        "answer",
        [
            "x-webkit-deflate-frame",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; unknown_parameter",
            "permessage-deflate; server_no_context_takeover=1",
        ],
    )
    def test_invalid_compression_answer_is_refused(self, answer: str) -> None:
        handshake = Handshake(compression=DeflateOptions())
        with pytest.raises(HandshakeError) as info:
            validate(handshake, upgrade_with(("Sec-WebSocket-Extensions", answer)))
        assert isinstance(info.value.__cause__, ValueError)
        assert str(info.value) == str(info.value.__cause__)
        assert handshake.extensions == []
