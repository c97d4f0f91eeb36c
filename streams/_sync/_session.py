"""The sync session: httpx-ws's blocking methods on :class:`~streams._sync._reader.SyncReader`."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

from .._checks import check_choice
from .._codec import decode_json, encode_json, encode_json_text
from .._session import as_event, expect_bytes, expect_text
from .._types import JSON_MODES, JSONMode, Message
from ..protocol._wsproto import CloseConnection, Event, LocalProtocolError, Ping
from ..protocol._wsproto import Message as WsprotoMessage
from ._fragments import SyncFragmentReceiver, send_fragments
from ._reader import SyncReader
from ._stream import SyncTypedStreams

__all__ = ["PongEvent", "WebSocketSession"]

T = TypeVar("T")


class PongEvent:
    """Returned by :meth:`WebSocketSession.ping`: set when the matching Pong arrives.

    It behaves like a :class:`threading.Event` that only the session sets:
    ``wait()`` blocks the calling thread, any number of threads may wait.
    It is also set when the connection closes, so a waiter never hangs.
    """

    __slots__ = ("_event",)

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def is_set(self) -> bool:
        """Return whether the Pong arrived (or the connection closed)."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the Pong arrives, or at most ``timeout`` seconds.

        Returns:
            ``True`` if the event is set (the Pong arrived or the connection
            closed), ``False`` if the timeout expired first.
        """
        return self._event.wait(timeout)

    def __repr__(self) -> str:
        return f"<PongEvent set={self.is_set()}>"


class WebSocketSession(SyncReader, SyncTypedStreams):
    """An open WebSocket session for threaded code: the methods of httpx-ws, blocking.

    Made by :func:`~streams.connect_ws` or :meth:`~streams.WebSocketClient.connect`;
    leaving their ``with`` block closes it (code 1000). It can also be built
    by hand over any httpcore sync network stream, with httpx-ws's
    constructor; ``with`` starts it and closes it.

    One background thread per session reads the network while no thread is
    receiving, answers pings, sends keepalive pings and runs the closing
    handshake; a thread waiting in a receive call reads the network itself.
    ``send_*``, ``ping`` and ``close`` may be called from any thread, also
    while another thread iterates; frames from several threads never
    interleave. Receiving is for one thread at a time: a second thread
    receiving at the same time gets a :class:`RuntimeError`.

    Iterating (``for message in ws``) yields ``str`` and ``bytes`` messages;
    a normal close (1000, 1001, 1005) ends the loop, any other close raises
    :class:`~streams.WebSocketDisconnect` (or
    :class:`~streams.WebSocketNetworkError`). After a ``break``, the next
    ``receive*()`` call or loop gets the next message; nothing is lost.

    Args:
        stream: the network stream of the upgraded connection (httpcore's
            sync :class:`~httpcore.NetworkStream`, or any object with its
            ``read``, ``write``, ``close`` and ``get_extra_info`` methods).
        max_message_size_bytes: the largest message accepted; a larger one
            closes the connection with code 1009.
        queue_size: how many received messages may wait for the consumer
            before the session stops reading the network.
        keepalive_ping_interval_seconds: how often to ping the peer; ``None``
            disables keepalive.
        keepalive_ping_timeout_seconds: how long the peer may stay silent
            after a ping before the connection is closed (1011) and
            :class:`~streams.WebSocketKeepaliveTimeout` raised; bytes still
            arriving, or a consumer too slow to let the session read them,
            count as signs of life. ``None`` never times out.
        response: the handshake response.
        close_timeout: how long the closing handshake may take before the
            connection is dropped (keyword-only, like what follows).
        extensions: the extensions agreed during the handshake.
        subprotocol: the subprotocol agreed (read from ``response`` when not given).

    Attributes:
        subprotocol: the subprotocol the server accepted, or ``None``.
        response: the handshake response (its body, if any, cannot be read).
        stream: the network stream.
    """

    # ----------------------------------------------------------- life cycle

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the session: send a Close frame, wait for the peer's, then close TCP.

        Called when leaving the ``with`` block. Calling it again, or after the
        peer closed, does nothing more than wait for the end. Messages
        already received stay readable; further sends raise
        :class:`~streams.WebSocketDisconnect`. Any thread may call it, also
        while another thread waits in a receive call (which then ends).

        Args:
            code: the close code to send: 1000-1003, 1007-1014 or 3000-4999.
            reason: the close reason to send (at most 123 bytes of UTF-8 are sent).

        Raises:
            ValueError: ``code`` may not be sent on the wire (1005, 1006, 999...).

        Waits at most ``close_timeout`` seconds for the peer, then drops the connection.
        """
        self._close(code, reason)

    # ------------------------------------------------------------ receiving

    def _next_message(self, timeout: float | None) -> Message:
        taken = self._take(timeout)
        if not taken:
            raise self._end_error()
        return taken[0]

    def receive(self, timeout: float | None = None) -> Event:
        """Receive the next message as a wsproto event.

        Most of the time, :meth:`receive_text`, :meth:`receive_bytes`,
        :meth:`receive_json` or ``for message in ws`` are simpler.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.

        Returns:
            A :class:`wsproto.events.TextMessage` or :class:`wsproto.events.BytesMessage`.
            Pings, pongs and the Close frame are handled by the session.

        Raises:
            ReceiveTimeout: no message arrived in time (a :class:`queue.Empty`
                and a :class:`TimeoutError`).
            WebSocketDisconnect: the connection is closed (raised at once on
                every call after the close, once the messages received before
                it were read).
            WebSocketNetworkError: the network failed or the peer went silent.
            RuntimeError: another thread is receiving, or an event loop runs
                in this thread.
        """
        return as_event(self._next_message(timeout))

    def receive_text(self, timeout: float | None = None) -> str:
        """Receive a text message.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.

        Returns:
            The text.

        Raises:
            ReceiveTimeout: no message arrived in time.
            WebSocketDisconnect: the connection is closed.
            WebSocketNetworkError: the network failed.
            WebSocketInvalidTypeReceived: the message was binary (it is
                consumed; the exception's ``event`` holds it).
            RuntimeError: another thread is receiving, or an event loop runs
                in this thread.
        """
        return expect_text(self._next_message(timeout))

    def receive_bytes(self, timeout: float | None = None) -> builtins.bytes:
        """Receive a binary message.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.

        Returns:
            The bytes.

        Raises:
            ReceiveTimeout: no message arrived in time.
            WebSocketDisconnect: the connection is closed.
            WebSocketNetworkError: the network failed.
            WebSocketInvalidTypeReceived: the message was text (it is consumed;
                the exception's ``event`` holds it).
            RuntimeError: another thread is receiving, or an event loop runs
                in this thread.
        """
        return expect_bytes(self._next_message(timeout))

    def receive_json(self, timeout: float | None = None, mode: JSONMode = "text") -> Any:
        """Receive a JSON message, decoded with msgspec.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.
            mode: ``"text"`` to expect a text frame, ``"binary"`` a binary one.

        Returns:
            The decoded value (dicts, lists, str, int, float, bool, None).

        Raises:
            ValueError: ``mode`` is neither ``"text"`` nor ``"binary"``.
            ReceiveTimeout: no message arrived in time.
            WebSocketDisconnect: the connection is closed.
            WebSocketNetworkError: the network failed.
            WebSocketInvalidTypeReceived: the frame was not of the kind ``mode`` says.
            WebSocketDecodeError: the message is not valid JSON (it carries the
                raw payload).
        """
        data: Message
        if check_choice("mode", mode, JSON_MODES) == "text":
            data = self.receive_text(timeout)
        else:
            data = self.receive_bytes(timeout)
        return decode_json(data)

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        """Return the next message; a normal close ends the iteration, an abnormal one raises."""
        taken = self._take(None)
        if not taken:
            self._end_of_stream()
            raise StopIteration
        return taken[0]

    def receive_fragments(self, timeout: float | None = None) -> SyncFragmentReceiver:
        """Receive the next message part by part, as its frames arrive.

        A message larger than ``max_message_size_bytes`` (in fragments, each
        within it) and within ``max_fragmented_size_bytes`` is never held
        whole: its parts come as they are read, and the network is not read
        further while 1 MiB of them wait (backpressure). Any other message
        comes as one part. A text message's parts are ``str`` (never split
        inside a character), a binary message's are ``bytes``.

        Leaving the loop early drops the rest of the message (the iterator's
        ``close()`` does it at once). A streamed message that ``receive()`` or
        iteration met (raising :class:`~streams.WebSocketInvalidTypeReceived`)
        is still first in line, for this method.

        Args:
            timeout: seconds to wait for each part; ``None`` waits for ever.

        Returns:
            An iterator of the message's parts.

        Raises:
            ReceiveTimeout: a part did not arrive in time (iterating again goes on).
            WebSocketDisconnect: the connection is closed (before the message,
                or before its end, even normally).
            WebSocketNetworkError: the network failed.
        """
        return SyncFragmentReceiver(self, timeout)

    # -------------------------------------------------------------- sending

    def send(self, event: Event) -> None:
        """Send a wsproto event: a message (or a fragment of one), a ping, a pong, a Close.

        Most of the time, :meth:`send_text`, :meth:`send_bytes`,
        :meth:`send_json` and :meth:`ping` are simpler. Returns once the frame
        is written.

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.
        """
        if isinstance(event, CloseConnection):
            self.close(event.code, event.reason)
            return
        if isinstance(event, Ping):
            self.ping(builtins.bytes(event.payload))
            return
        with self._write_lock:
            with self._cond:
                self._check_can_send()
                try:
                    frame = self._protocol.send_event(event)
                except LocalProtocolError as exc:
                    raise self._end_error() from exc
            finished = isinstance(event, WsprotoMessage) and event.message_finished
            self._write(frame, 1 if finished else 0)

    def send_text(self, data: str) -> None:
        """Send a text message; returns once it is written to the network.

        Any number of threads may send at the same time; their frames never interleave.

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.
        """
        self._send_message(data)

    def send_bytes(self, data: builtins.bytes) -> None:
        """Send a binary message; returns once it is written to the network.

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.
        """
        self._send_message(data)

    def send_json(self, data: Any, mode: JSONMode = "text") -> None:
        """Send a value as JSON, encoded with msgspec in the calling thread.

        Args:
            data: anything msgspec encodes: dicts, lists, msgspec Structs,
                dataclasses, datetimes...
            mode: ``"text"`` sends a text frame, ``"binary"`` a binary one.

        Raises:
            ValueError: ``mode`` is neither ``"text"`` nor ``"binary"``.
            TypeError: msgspec cannot encode ``data`` (nothing is sent).
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.
        """
        if check_choice("mode", mode, JSON_MODES) == "text":
            self._send_message(encode_json_text(data))
        else:
            self._send_message(encode_json(data))

    def send_fragments(self, parts: Iterable[str] | Iterable[builtins.bytes]) -> None:
        """Send one message in fragments, one per part, as the parts come.

        Each part is written as it comes from ``parts`` (the write blocks
        while the network is slow: backpressure), so a message of any size is
        sent with bounded memory. Whole messages sent meanwhile from other
        threads, and other ``send_fragments`` calls, wait for its end: messages
        never interleave. Pongs, pings and the Close frame may go between
        fragments.

        Args:
            parts: an iterable of ``str`` (a text message) or ``bytes`` (a
                binary one), all of the same kind. Nothing is sent if it is empty.

        Raises:
            TypeError: a part is not ``str`` or ``bytes``, or not of the kind of the first.
            RuntimeError: ``parts`` itself sent a whole message on this session.
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed, for example
                because :meth:`close` was called from another thread: its Close
                frame goes out after the fragment being written, and the
                message stays unfinished.

        An error raised by ``parts`` once the message started, or a wrong
        part, leaves half a message on the wire: the connection is closed with
        code 1011 and the error propagates. Before the first fragment, nothing
        is sent.
        """
        send_fragments(self, parts)

    def ping(self, payload: builtins.bytes = b"") -> PongEvent:
        """Send a Ping frame.

        Args:
            payload: the payload identifying this ping; a random one if empty.

        Returns:
            A :class:`PongEvent`: ``wait(timeout=None)`` blocks until the
            matching Pong (or that of a later ping) arrives, or the connection closes.

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.
        """
        if not self._started:
            self._start()
        return PongEvent(self._send_ping(payload))
