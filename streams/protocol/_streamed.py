"""A message that streams: received part by part, or sent in fragments (no I/O)."""

from __future__ import annotations

from wsproto.events import BytesMessage, TextMessage

__all__ = ["SendingFragments", "StreamedMessage"]


class SendingFragments(Exception):
    """A whole message may not be framed now: a message sent in fragments is not finished.

    Raised by :meth:`ClientProtocol.send_text` and :meth:`ClientProtocol.send_bytes`
    between :meth:`ClientProtocol.send_fragment` calls; the I/O layer waits for
    the fragmented message's end, then sends again.
    """


class StreamedMessage:
    """A message larger than ``max_message_size``, delivered part by part as its frames arrive.

    It takes the message's place among the messages :meth:`ClientProtocol.receive_data`
    returns; its parts are then added here as they arrive, never joined.

    Attributes:
        text: whether it is a text message (parts are ``str``, never split
            inside a character) or a binary one (parts are ``bytes``).
        parts: the parts that arrived and were not taken yet.
        buffered: the payload bytes in ``parts``.
        finished: whether its last frame arrived.
        discarded: set by the consumer that no longer wants it: further parts
            are dropped (its frames are still checked).
    """

    __slots__ = ("buffered", "discarded", "finished", "parts", "text")

    def __init__(self, text: bool, parts: list[str | bytes]) -> None:
        self.text = text
        self.parts = parts
        self.buffered = sum(len(part) for part in parts)
        self.finished = False
        self.discarded = False

    def take(self) -> list[str | bytes]:
        """Return and forget the parts that arrived so far."""
        parts = self.parts
        self.parts = []
        self.buffered = 0
        return parts

    def as_event(self) -> TextMessage | BytesMessage:
        """The message as wsproto sees its start: an empty, unfinished message event."""
        if self.text:
            return TextMessage(data="", message_finished=False)
        return BytesMessage(data=b"", message_finished=False)

    def __repr__(self) -> str:
        kind = "text" if self.text else "binary"
        waiting = len(self.parts)
        return f"<StreamedMessage {kind}: {waiting} parts waiting, finished={self.finished}>"
