"""The sync connection: the protocol core driven over a blocking network stream.

:class:`SyncConnection` owns an httpcore sync :class:`~httpcore.NetworkStream`
and a :class:`~streams.protocol.ClientProtocol`, and moves bytes between them
with blocking calls. Bytes enter in :meth:`SyncConnection._read_once` (one
``stream.read()``), become messages in the protocol core, and wait in one
buffer (a :class:`collections.deque` guarded by a :class:`threading.Condition`)
until a receiving thread takes them. Frames leave through
:meth:`SyncConnection._write_frame`, in the calling thread.

Who reads the socket:

- a thread waiting in a receive call reads it itself when no other thread
  does: a reply reaches the thread that waits for it with no hand-over;
- otherwise ONE background thread per session reads it, so that pings are
  answered, keepalive pings are sent and judged, and the closing handshake
  runs while the application is busy elsewhere. It steps aside while a
  receiving thread has been active in the last few milliseconds, and stops
  reading while ``queue_size`` messages wait (backpressure through TCP).

Lock order: ``_write_lock`` (one writer at a time, frames in order) may be
taken before ``_cond`` (everything else: the protocol core, the buffer, the
flags); never the other way round. Nothing blocks on the network while
holding ``_cond``.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import logging
import queue
import secrets
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Final

from .._checks import check_close_code
from .._ending import end_error, end_of_stream, first_error
from .._exceptions import (
    HTTPXWSException,
    WebSocketNetworkError,
)
from .._session import SessionStatistics
from .._types import (
    DEFAULT_CLOSE_TIMEOUT_SECONDS,
    DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    DEFAULT_QUEUE_SIZE,
    USE_MAX_MESSAGE_SIZE,
    Message,
    UseMaxMessageSize,
)
from ..protocol import ClientProtocol, CloseState, SendingFragments
from ._io import FOREVER, stream_io
from ._keepalive import SyncKeepalive

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpcore
    import httpx

    from ..protocol._wsproto import Extension

__all__ = ["ReceiveTimeout", "SyncConnection", "check_no_event_loop", "remaining"]

logger = logging.getLogger("streams")

_FOREVER: Final = FOREVER


class ReceiveTimeout(queue.Empty, TimeoutError):
    """No message arrived within the timeout given to a sync ``receive*()`` method.

    It is both a :class:`queue.Empty` (what httpx-ws raises) and a
    :class:`TimeoutError` (what the async API raises), so ``except queue.Empty``
    and ``except TimeoutError`` both catch it. Nothing is consumed: the next
    ``receive*()`` call gets the next message.
    """


def check_no_event_loop(what: str) -> None:
    """Refuse a blocking call from a thread that runs an asyncio or trio event loop.

    Raises:
        RuntimeError: an event loop runs in this thread; it says what to use instead.
    """
    running = None
    try:
        asyncio.get_running_loop()
        running = "asyncio"
    except RuntimeError:
        trio = sys.modules.get("trio")
        if trio is not None:
            try:
                trio.lowlevel.current_task()
                running = "trio"
            except RuntimeError:
                pass
    if running is not None:
        raise RuntimeError(
            f"cannot {what} from inside a running {running} event loop: it would block the "
            "loop. Use the async API (aconnect_ws, AsyncWebSocketSession), or run the sync "
            "code in a worker thread (anyio.to_thread.run_sync)."
        )


def remaining(deadline: float | None) -> float:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value); long if ``None``."""
    if deadline is None:
        return _FOREVER
    return deadline - time.monotonic()


class SyncConnection(SyncKeepalive):
    """One WebSocket connection over a blocking network stream, with at most one helper thread.

    The engine of :class:`~streams.WebSocketSession`, which adds the public
    methods. The constructor is httpx-ws's (see the session's docstring).
    """

    subprotocol: str | None
    response: httpx.Response | None

    def __init__(
        self,
        stream: httpcore.NetworkStream,
        *,
        max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
        keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
        response: httpx.Response | None = None,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
        extensions: Sequence[Extension] = (),
        subprotocol: str | None = None,
    ) -> None:
        self.stream = stream
        self._io = stream_io(stream)
        self.response = response
        if subprotocol is None and response is not None:
            subprotocol = response.headers.get("sec-websocket-protocol")
        self.subprotocol = subprotocol
        self._protocol = ClientProtocol(
            max_message_size=max_message_size_bytes, extensions=extensions
        )
        self._queue_size = queue_size
        self._limit = max(queue_size, 1)
        self._keepalive_interval = keepalive_ping_interval_seconds
        self._keepalive_timeout = keepalive_ping_timeout_seconds
        self._close_timeout = close_timeout
        self._cond = threading.Condition(threading.Lock())
        self._write_lock = threading.Lock()
        # Messages received and not yet taken.
        self._buffer: collections.deque[Message] = collections.deque()
        # Bytes owed to the peer (pongs, the Close frame), written by the next writer.
        self._owed: list[builtins.bytes] = []
        self._reading = False  # a thread is inside stream.read()
        self._receiver: int | None = None  # the thread inside a receive call
        self._last_receive = -_FOREVER  # when the last receive call ended
        self._received_all = False  # the protocol is closed: no more messages
        self._finished = threading.Event()  # the stream is closed
        self._closing_locally = False
        self._error: HTTPXWSException | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        # Pings waiting for their pong, oldest first: payload -> (waiters, sent at).
        self._pings: dict[builtins.bytes, tuple[list[threading.Event], float]] = {}
        # Keepalive: when the next ping is due, and the ping being judged.
        self._next_ping = 0.0
        self._keepalive_pong: threading.Event | None = None
        self._keepalive_deadline = 0.0
        self._keepalive_marks = (0, 0)
        # Statistics, and the liveness marks keepalive reads.
        self._messages_in = 0
        self._messages_out = 0
        self._bytes_in = 0
        self._bytes_out = 0
        self._ping_rtt: float | None = None
        self._reads = 0
        self._pauses = 0
        self._paused = False
        self._dropped = 0
        # Streamed messages in the buffer, and messages that streamed so far.
        self._streamed_waiting = 0
        self._streamed_seen = 0
        # Held by send_fragments() for a whole message; whole messages wait for it.
        self._fragments_lock = threading.Lock()
        self._fragments_owner: int | None = None

    def _configure(
        self,
        *,
        close_timeout: float | None,
        extensions: Sequence[Extension],
        subprotocol: str | None,
        max_fragmented_size: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE,
    ) -> None:
        """Set what the handshake agreed, before the session is entered."""
        self._close_timeout = close_timeout
        self.subprotocol = subprotocol
        if extensions or not isinstance(max_fragmented_size, UseMaxMessageSize):
            limit = self._protocol.max_message_size
            self._protocol = ClientProtocol(
                max_message_size=limit,
                max_fragmented_size=(
                    limit
                    if isinstance(max_fragmented_size, UseMaxMessageSize)
                    else max_fragmented_size
                ),
                extensions=extensions,
            )

    # ------------------------------------------------------------- life cycle

    def _start(self) -> None:
        """Start the background thread (once)."""
        with self._cond:
            if self._started:
                return
            self._started = True
            if self._keepalive_interval is not None:
                self._next_ping = time.monotonic() + self._keepalive_interval
        name = "streams"
        request = getattr(self.response, "_request", None)
        if request is not None:
            name = f"streams {request.url.host}"
        thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread = thread
        thread.start()

    def _stop(self) -> None:
        """Wait for the background thread to end (the stream is closed by then)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed, else ``None``."""
        final = self._protocol.final_close
        return None if final is None else final[0]

    @property
    def close_reason(self) -> str | None:
        """The close reason once the connection is closed, else ``None``."""
        final = self._protocol.final_close
        return None if final is None else final[1]

    @property
    def closed(self) -> bool:
        """Whether the connection is closed: no more messages will arrive from the network."""
        return self._finished.is_set()

    def statistics(self) -> SessionStatistics:
        """Return the session's counters: messages and bytes in and out, queue, last ping RTT."""
        return SessionStatistics(
            messages_received=self._messages_in,
            messages_sent=self._messages_out,
            bytes_received=self._bytes_in,
            bytes_sent=self._bytes_out,
            # One read may bring more than queue_size messages: those beyond
            # wait for room, as in the async session, where the reader holds them.
            messages_queued=min(len(self._buffer), self._queue_size),
            queue_size=self._queue_size,
            reader_paused=self._paused,
            messages_dropped=self._dropped,
            ping_rtt=self._ping_rtt,
        )

    def _run(self) -> None:
        """The background thread's work (see :class:`~streams._sync._reader.SyncReader`)."""
        raise NotImplementedError

    # -------------------------------------------------------------- writing

    def _check_can_send(self) -> None:
        if self._error is not None or not self._protocol.can_send or self._finished.is_set():
            raise self._end_error()

    def _write_frame(self, frame: builtins.bytes, messages: int = 0) -> None:
        """Write the bytes owed to the peer, then ``frame``, holding ``_write_lock``.

        Raises:
            WebSocketNetworkError: the write failed (the connection is then dropped).
        """
        with self._write_lock:
            self._write(frame, messages)

    def _write(self, frame: builtins.bytes, messages: int = 0) -> None:
        """Like :meth:`_write_frame`; the caller holds ``_write_lock``."""
        with self._cond:
            if self._owed:
                frame = b"".join([*self._owed, frame])
                self._owed = []
        if not frame:
            return
        try:
            self._io.write(frame)
        except Exception as exc:
            with self._cond:
                if self._protocol.state is not CloseState.CLOSED:
                    self._set_error(WebSocketNetworkError(f"write failed: {exc!r}"), exc)
                    self._protocol.receive_eof()
                self._received_all = True
                self._cond.notify_all()
            self._close_stream()
            raise self._end_error() from exc
        self._bytes_out += len(frame)
        self._messages_out += messages

    def _send_message(self, data: Message) -> None:
        while True:
            with self._write_lock:
                with self._cond:
                    self._check_can_send()
                    try:
                        if isinstance(data, str):
                            frame = self._protocol.send_text(data)
                        else:
                            frame = self._protocol.send_bytes(data)
                    except SendingFragments:
                        frame = None
                if frame is not None:
                    self._write(frame, 1)
                    return
            self._wait_for_fragments()

    def _wait_for_fragments(self) -> None:
        """Wait until the message being sent in fragments is finished."""
        if self._fragments_owner == threading.get_ident():
            raise RuntimeError(
                "a whole message cannot be sent from the iterable of send_fragments():"
                " it would go in the middle of the fragmented message"
            )
        with self._fragments_lock:
            pass

    def _send_ping(self, payload: builtins.bytes) -> threading.Event:
        if not payload:
            payload = secrets.token_bytes(8)
        event = threading.Event()
        with self._write_lock:
            with self._cond:
                self._check_can_send()
                frame = self._protocol.send_ping(payload)
                entry = self._pings.get(payload)
                if entry is None:
                    self._pings[payload] = ([event], time.monotonic())
                else:
                    entry[0].append(event)
            self._write(frame)
        return event

    def _on_pongs(self, payloads: list[builtins.bytes]) -> None:
        """Set the waiters of each pong's ping, and of every ping sent before it."""
        now = time.monotonic()
        pings = self._pings
        for payload in payloads:
            if payload not in pings:
                continue  # unsolicited, or for a ping already acknowledged
            while pings:
                sent, (waiters, sent_at) = next(iter(pings.items()))
                del pings[sent]
                for event in waiters:
                    event.set()
                if sent == payload:
                    self._ping_rtt = now - sent_at
                    break

    # -------------------------------------------------------------- closing

    def _set_error(self, error: HTTPXWSException, cause: BaseException | None = None) -> None:
        self._error = first_error(self._error, error, cause)

    def _end_error(self) -> HTTPXWSException:
        """The exception that reports the end of the session."""
        return end_error(self._error, self._protocol.ending)

    def _end_of_stream(self) -> None:
        """Called when no message is left: return for a normal close, else raise."""
        end_of_stream(self._end_error())

    def _close(self, code: int, reason: str | None) -> None:
        check_close_code(code)
        if not self._started:
            with self._cond:
                self._started = True
            self._abort()
            return
        timeout = self._close_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._finished.is_set() and self._write_lock.acquire(timeout=remaining(deadline)):
            # Bounded: a write stuck on a peer that does not read cannot hold the close.
            try:
                with self._cond:
                    self._closing_locally = True
                    data = self._protocol.send_close(code, reason)
                    self._cond.notify_all()
                if data:
                    logger.debug("sending close: code=%s reason=%r", code, reason)
                    self._write(data)
            except HTTPXWSException:
                pass  # the connection is dropped
            finally:
                self._write_lock.release()
        if not self._finished.wait(None if deadline is None else max(remaining(deadline), 0)):
            self._abort()
        self._stop()

    def _close_stream(self) -> None:
        """Close the network stream (once), waking a thread blocked reading it."""
        with self._cond:
            if self._finished.is_set():
                return
            self._finished.set()
            self._received_all = True
            self._cond.notify_all()
        sock = self.stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            try:
                # The base class's shutdown, even for a TLS socket: it wakes a
                # thread blocked in recv() without touching the TLS state.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.stream.close()
        except Exception:
            pass

    def _abort(self) -> None:
        """Drop the connection now."""
        with self._cond:
            if self._protocol.close_code is None:
                self._protocol.receive_eof()
            self._received_all = True
        self._close_stream()
        self._finish()

    def _finish(self) -> None:
        """After the end: close the stream, release every waiter."""
        self._close_stream()
        with self._cond:
            if self._protocol.state is not CloseState.CLOSED:
                self._protocol.receive_eof()
            pings = list(self._pings.values())
            self._pings.clear()
            self._cond.notify_all()
        for waiters, _ in pings:
            for event in waiters:
                event.set()
        logger.debug(
            "connection closed: code=%s reason=%r",
            self._protocol.close_code,
            self._protocol.close_reason,
        )
