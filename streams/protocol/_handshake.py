"""The opening handshake (RFC 6455, section 4), with no I/O.

:class:`Handshake` makes the headers of the upgrade request and checks the
server's response: status 101, ``Upgrade: websocket``, ``Connection: upgrade``,
the ``Sec-WebSocket-Accept`` key, a subprotocol among those offered and
extensions among those offered.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence

from wsproto.extensions import Extension

from ._deflate import DeflateOptions, accept_response, offer_header

__all__ = ["Handshake", "HandshakeError", "accept_key"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeError(ValueError):
    """The server's response to the upgrade request is not a valid WebSocket upgrade."""


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value that answers ``key``."""
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def _tokens(values: Iterable[str]) -> list[str]:
    return [token.strip() for value in values for token in value.split(",") if token.strip()]


class Handshake:
    """The client side of the opening handshake.

    Args:
        subprotocols: the subprotocols to offer, in order of preference.
        compression: permessage-deflate options to offer, or ``None`` to offer
            no compression.
        max_message_size: the message size limit, which also bounds inflated
            messages when compression is agreed.

    Attributes:
        key: the ``Sec-WebSocket-Key`` of this handshake.
        subprotocol: the subprotocol the server chose, after :meth:`validate`.
        extensions: the extensions agreed, after :meth:`validate`, ready for
            :class:`~streams.protocol.ClientProtocol`.
    """

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] | None = None,
        compression: DeflateOptions | None = None,
        max_message_size: int | None = None,
    ) -> None:
        self.key = base64.b64encode(os.urandom(16)).decode("ascii")
        self.subprotocols = list(subprotocols or ())
        self.compression = compression if compression is not None and compression.enabled else None
        self.max_message_size = max_message_size
        self.subprotocol: str | None = None
        self.extensions: list[Extension] = []

    def request_headers(self) -> dict[str, str]:
        """Return the headers the upgrade request must carry."""
        headers = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": self.key,
            "Sec-WebSocket-Version": "13",
        }
        if self.subprotocols:
            headers["Sec-WebSocket-Protocol"] = ", ".join(self.subprotocols)
        if self.compression is not None:
            headers["Sec-WebSocket-Extensions"] = offer_header(self.compression)
        return headers

    def validate(
        self, status_code: int, headers: Mapping[str, str], all_values: Mapping[str, list[str]]
    ) -> None:
        """Check the server's response; fill :attr:`subprotocol` and :attr:`extensions`.

        Args:
            status_code: the HTTP status of the response.
            headers: the response headers, case-insensitive (one value per name).
            all_values: every value of the ``Connection``, ``Upgrade``,
                ``Sec-WebSocket-Protocol`` and ``Sec-WebSocket-Extensions``
                headers, by lower-case name.

        Raises:
            HandshakeError: the response is not a valid upgrade; its message says why.
        """
        if status_code != 101:
            raise HandshakeError(f"expected HTTP 101, got {status_code}")
        upgrade = [token.lower() for token in _tokens(all_values.get("upgrade", []))]
        if upgrade != ["websocket"]:
            raise HandshakeError(f"invalid Upgrade header: {headers.get('upgrade')!r}")
        connection = [token.lower() for token in _tokens(all_values.get("connection", []))]
        if "upgrade" not in connection:
            raise HandshakeError(f"invalid Connection header: {headers.get('connection')!r}")
        accept = headers.get("sec-websocket-accept")
        if accept is None or accept.strip() != accept_key(self.key):
            raise HandshakeError(f"invalid Sec-WebSocket-Accept header: {accept!r}")

        protocols = _tokens(all_values.get("sec-websocket-protocol", []))
        if len(protocols) > 1:
            raise HandshakeError(f"more than one subprotocol chosen: {protocols!r}")
        if protocols:
            if protocols[0] not in self.subprotocols:
                raise HandshakeError(f"subprotocol not offered: {protocols[0]!r}")
            self.subprotocol = protocols[0]

        extensions = [v for v in all_values.get("sec-websocket-extensions", []) if v.strip()]
        if extensions:
            if self.compression is None:
                raise HandshakeError(f"extension not offered: {', '.join(extensions)!r}")
            try:
                self.extensions = [
                    accept_response(", ".join(extensions), self.compression, self.max_message_size)
                ]
            except ValueError as exc:
                raise HandshakeError(str(exc)) from exc
