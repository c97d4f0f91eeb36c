"""Frames out: the client's data messages, pings and events, masked, with no I/O.

:class:`FrameSender` is the sending half of
:class:`~streams.protocol.ClientProtocol`. A whole text or binary message
that no extension transforms is framed here, masked with keys drawn from a
block of OS randomness, several times faster than through wsproto; every
other frame (a compressed message, a fragment, a ping, any event) is
wsproto's. The Close frame and the close state stay with the protocol.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, TextMessage
from wsproto.extensions import Extension
from wsproto.utilities import LocalProtocolError

from ._mask import fast_mask
from ._streamed import SendingFragments
from ._unmade import NotMade

__all__ = ["FrameSender"]


class FrameSender:
    """The sending half of the client protocol (a base of :class:`ClientProtocol`)."""

    if not TYPE_CHECKING:
        # The attributes are ClientProtocol's slots (mypy would check them
        # against this empty tuple).
        __slots__ = ()

    _conn: Connection | NotMade
    _compressed: bool

    def _wsproto(self) -> Connection:
        """wsproto's connection, made on first use (see :meth:`ClientProtocol._wsproto`)."""
        raise NotImplementedError

    def _init_sending(self, extensions: Sequence[Extension]) -> None:
        # Whole messages are framed here unless an extension transforms them
        # or a fragmented message is being sent through wsproto.
        self._fast_send = not self._compressed
        # A fragmented message is being sent through wsproto.
        self._sending_fragments = False
        # A fragmented message is being sent through send_fragment(): whole
        # messages wait for its end (SendingFragments).
        self._fragmenting = False
        # Compressed messages shorter than this go uncompressed (DeflateOptions.min_size).
        self._min_compress = max(
            (getattr(ext, "min_size", 0) for ext in extensions if ext.enabled()), default=0
        )
        # Masking keys come from a block of OS randomness, 4 bytes at a time.
        self._key_pool = b""
        self._key_index = 0

    @property
    def can_send(self) -> bool:
        """Whether data frames may still be sent (no Close frame was sent)."""
        return self._conn.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)

    def send_close(self, code: int = 1000, reason: str | None = None) -> bytes:
        """Return a Close frame (see :meth:`ClientProtocol.send_close`)."""
        raise NotImplementedError

    def send_text(self, data: str, compress: bool = True) -> bytes:
        """Return the frame of a text message.

        Args:
            data: the text.
            compress: ``False`` sends it uncompressed even when permessage-deflate
                was agreed (as does a message below ``DeflateOptions.min_size``).

        Raises:
            wsproto.utilities.LocalProtocolError: a Close frame was already sent.
        """
        if self._fast_send and self._conn.state is ConnectionState.OPEN:
            return self._frame(0x81, data.encode())
        return self._send_message(0x81, data, compress)

    def send_bytes(self, data: bytes, compress: bool = True) -> bytes:
        """Return the frame of a binary message.

        Args:
            data: the bytes.
            compress: ``False`` sends them uncompressed even when permessage-deflate
                was agreed (as does a message below ``DeflateOptions.min_size``).

        Raises:
            wsproto.utilities.LocalProtocolError: a Close frame was already sent.
        """
        if self._fast_send and self._conn.state is ConnectionState.OPEN:
            return self._frame(0x82, data)
        return self._send_message(0x82, data, compress)

    def _send_message(self, first: int, data: str | bytes, compress: bool) -> bytes:
        """The frame of a whole message off the fast path: compressed, or after fragments.

        Raises:
            SendingFragments: a message sent in fragments is not finished.
        """
        if self._fragmenting:
            raise SendingFragments
        if self._plain(compress, len(data)):
            payload = data.encode() if isinstance(data, str) else data
            # (For text, len(data) counted characters: now the bytes.)
            if not compress or len(payload) < self._min_compress:
                return self._frame(first, payload)
        event = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        frame = bytes(self._wsproto().send(event))
        # This finished any fragmented message: whole messages may be framed here again.
        self._fast_send = not self._compressed
        return frame

    def begin_fragments(self) -> None:
        """Hold whole messages until :meth:`end_fragments`: a message goes out in fragments.

        Meanwhile :meth:`send_text` and :meth:`send_bytes` raise
        :class:`SendingFragments`; control frames may go between fragments.
        """
        self._fragmenting = True
        self._fast_send = False

    def end_fragments(self) -> None:
        """Let whole messages through again (the last fragment was sent, or none will be)."""
        self._fragmenting = False
        self._fast_send = not self._compressed

    def send_fragment(self, data: str | bytes, first: bool, final: bool) -> bytes:
        """Return the frame of one fragment of a message sent part by part.

        Call :meth:`begin_fragments` first; the fragment with ``final`` calls
        :meth:`end_fragments`. With permessage-deflate, the message is
        compressed (as one stream).

        Args:
            data: the part: ``str`` for a text message, ``bytes`` for a binary
                one (every part of a message is of the kind of the first).
            first: whether it starts the message.
            final: whether it ends the message.

        Raises:
            wsproto.utilities.LocalProtocolError: a Close frame was already sent.
        """
        if not self.can_send:
            raise LocalProtocolError("a Close frame was sent: no more data can be sent")
        if self._compressed:
            message: Message[Any] = (
                TextMessage(data=data, message_finished=final)
                if isinstance(data, str)
                else BytesMessage(data=data, message_finished=final)
            )
            frame = bytes(self._wsproto().send(message))
        else:
            opcode = 0 if not first else 0x1 if isinstance(data, str) else 0x2
            payload = data.encode() if isinstance(data, str) else data
            frame = self._frame(opcode | 0x80 if final else opcode, payload)
        if final:
            self.end_fragments()
        return frame

    def _plain(self, compress: bool, size: int) -> bool:
        """Whether a whole message of ``size`` (characters for text) may skip compression.

        RFC 7692 compresses per message: one with RSV1 clear is sent as it is.
        For text, ``size`` counts characters, a lower bound of its UTF-8 bytes.
        """
        return (
            (not compress or size < self._min_compress)
            and not self._sending_fragments
            and self._conn.state is ConnectionState.OPEN
        )

    def _frame(self, first: int, payload: bytes) -> bytes:
        """Build one masked, final frame, as wsproto would (RFC 6455, section 5.2)."""
        n = len(payload)
        if n < 126:
            header = bytes((first, 0x80 | n))
        elif n < 0x10000:
            header = bytes((first, 0xFE, n >> 8, n & 0xFF))
        else:
            header = bytes((first, 0xFF)) + n.to_bytes(8, "big")
        pool, index = self._key_pool, self._key_index
        if index >= len(pool):
            pool = self._key_pool = os.urandom(4096)
            index = 0
        key = pool[index : index + 4]
        self._key_index = index + 4
        return header + key + fast_mask(payload, key)

    def send_ping(self, payload: bytes) -> bytes:
        """Return a Ping frame."""
        return bytes(self._wsproto().send(Ping(payload=payload)))

    def send_event(self, event: Event) -> bytes:
        """Return the frames of any wsproto event (messages, fragments, pings, pongs, Close)."""
        if isinstance(event, CloseConnection):
            return self.send_close(event.code, event.reason)
        data = bytes(self._wsproto().send(event))
        if isinstance(event, Message):
            # A fragmented message in progress must be finished through wsproto.
            self._sending_fragments = not event.message_finished
            self._fast_send = not self._compressed and event.message_finished
        return data
