"""Large messages fragment by fragment in the sync API: receive_fragments(), send_fragments().

The same protocol core as the async API: a message past ``max_message_size_bytes``
takes its place in the buffer as a :class:`~streams.protocol.StreamedMessage`,
whose parts the reading thread adds as they arrive. The receiving thread takes
them out (reading the socket itself when nobody else does); the background
thread stops reading while more than ``PARTS_HIGH_WATER`` bytes of them wait.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from .._exceptions import HTTPXWSException
from .._types import Message
from ..protocol import StreamedMessage

if TYPE_CHECKING:
    from ._reader import SyncReader

__all__ = ["SyncFragmentReceiver", "send_fragments"]


class SyncFragmentReceiver(Iterator[Message]):
    """The parts of the next message, as they arrive (``session.receive_fragments()``).

    Leaving early (:meth:`close`, or dropping the iterator) drops the rest of
    a streamed message as it arrives.
    """

    def __init__(self, session: SyncReader, timeout: float | None) -> None:
        self._session = session
        self._timeout = timeout
        self._message: StreamedMessage | None = None
        self._parts: list[Message] = []
        self._done = False

    def __iter__(self) -> SyncFragmentReceiver:
        return self

    def __next__(self) -> Message:
        """Return the next part.

        Raises:
            StopIteration: the message ended.
            ReceiveTimeout: no part arrived within the timeout.
            WebSocketDisconnect: the connection closed before the message or its end.
            WebSocketNetworkError: the network failed.
        """
        if self._parts:
            return self._parts.pop()
        if self._done:
            raise StopIteration
        session = self._session
        message = self._message
        if message is None:
            taken = session._take(self._timeout, streamed=True)
            if not taken:
                self._done = True
                raise session._end_error()
            first = taken[0]
            if not isinstance(first, StreamedMessage):
                self._done = True
                return first
            message = self._message = first
            with session._cond:
                session._streamed_waiting -= 1
        while True:
            with session._cond:
                parts = message.take()
                if parts and session._paused:
                    session._cond.notify_all()
            if parts:
                parts.reverse()
                self._parts = parts
                return parts.pop()
            if message.finished:
                self._done = True
                raise StopIteration
            if not session._wait(_has_parts(message), self._timeout):
                # The connection closed (or failed) before the message's end.
                self._done = True
                raise session._end_error()

    def close(self) -> None:
        """Drop the rest of the message (the next receive gets the message after it)."""
        self._done = True
        self._parts = []
        message = self._message
        if message is not None and not message.finished:
            session = self._session
            with session._cond:
                message.discarded = True
                message.take()
                session._cond.notify_all()

    def __del__(self) -> None:
        self.close()


def _has_parts(message: StreamedMessage) -> Callable[[], bool]:
    return lambda: bool(message.parts) or message.finished


def send_fragments(session: SyncReader, parts: Iterable[Message]) -> None:
    """Send the parts of one message as fragments (see ``WebSocketSession.send_fragments``)."""
    with session._fragments_lock:
        session._fragments_owner = threading.get_ident()
        protocol = session._protocol
        with session._cond:
            session._check_can_send()
            protocol.begin_fragments()
        kind: type[str] | type[bytes] | None = None
        held: Message | None = None
        started = False
        try:
            for part in parts:
                if kind is None:
                    if not isinstance(part, (str, bytes)):
                        raise TypeError(f"send_fragments() sends str or bytes parts, not {part!r}")
                    kind = type(part)
                elif not isinstance(part, kind):
                    raise TypeError(
                        f"every part of a message must be {kind.__name__} like its first,"
                        f" not {part!r}"
                    )
                if held is not None:
                    _write_fragment(session, held, not started, final=False)
                    started = True
                held = part
            if held is not None:
                _write_fragment(session, held, not started, final=True)
                started = False
        except BaseException:
            if started:
                # Half a message is on the wire and its end will never come:
                # close the connection (1011), as websockets does.
                with session._write_lock:
                    with session._cond:
                        data = protocol.send_close(1011, "fragmented message interrupted")
                        session._closing_locally = True
                    if data:
                        with contextlib.suppress(HTTPXWSException):
                            session._write(data)  # else the connection is dropped
            raise
        finally:
            with session._cond:
                protocol.end_fragments()
            session._fragments_owner = None


def _write_fragment(session: SyncReader, part: Message, first: bool, final: bool) -> None:
    with session._write_lock:
        with session._cond:
            session._check_can_send()
            frame = session._protocol.send_fragment(part, first, final)
        session._write(frame, 1 if final else 0)
