"""Reading the network: who reads the socket, and the hand-over of messages to receiving threads.

See :mod:`streams._sync._core` for the design: a thread waiting in a receive
call reads the socket itself when nobody else does; otherwise the session's
one background thread reads it, and hands messages over through the buffer.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable
from typing import Final, cast

from .._engine._fragments import streamed_error
from .._engine._parts import PARTS_HIGH_WATER
from .._exceptions import HTTPXWSException, WebSocketNetworkError
from .._types import Message
from ..protocol import CloseState, StreamedMessage
from ._core import ReceiveTimeout, SyncConnection, check_no_event_loop, remaining

__all__ = ["SyncReader"]

logger = logging.getLogger("streams")

_READ_SIZE: Final = 65_536
# How long the background thread leaves the socket to a receiving thread
# after that thread's last receive call.
_HANDOVER_GRACE: Final = 0.005


def _receiving_error() -> RuntimeError:
    return RuntimeError(
        "another thread is already receiving from this WebSocket session: "
        "receive from one thread at a time (send and close may come from any)"
    )


class SyncReader(SyncConnection):
    """:class:`SyncConnection` with its reading side: the background thread and ``_take``."""

    def _run(self) -> None:
        """The background thread: read when nobody else does, run keepalive, finish."""
        cond = self._cond
        try:
            while True:
                wait = self._keepalive_tick()
                with cond:
                    if self._received_all:
                        break
                    if self._reading:
                        cond.wait(wait)
                        continue
                    if (
                        len(self._buffer) >= self._limit or self._parts_full()
                    ) and not self._closing_locally:
                        # Backpressure: let TCP slow the peer down.
                        if not self._paused:
                            self._paused = True
                            self._pauses += 1
                        cond.wait(wait)
                        continue
                    self._paused = False
                    if not self._closing_locally:
                        grace = self._last_receive + _HANDOVER_GRACE - time.monotonic()
                        if self._receiver is not None or grace > 0:
                            # A thread receives: it reads the socket itself.
                            cond.wait(min(wait, max(grace, _HANDOVER_GRACE)))
                            continue
                    self._reading = True
                self._read_once(wait)
            self._drain_to_eof()
        except BaseException:  # pragma: no cover - a bug: never leave a stream open
            logger.exception("the sync session's thread failed")
            raise
        finally:
            self._finish()

    def _read_once(self, timeout: float) -> bool:
        """Read the network once and feed the protocol core; the caller set ``_reading``.

        Returns:
            False if nothing arrived within ``timeout`` seconds.
        """
        try:
            data = self._io.read(_READ_SIZE, timeout)
        except TimeoutError:
            self._release_socket()
            return False
        except KeyboardInterrupt:
            # Ctrl-C interrupted the wait, in the main thread: the background
            # thread may read again (and run the closing handshake).
            self._release_socket()
            raise
        except Exception as exc:
            with self._cond:
                self._reading = False
                if self._protocol.state is not CloseState.CLOSED:
                    self._set_error(WebSocketNetworkError(f"read failed: {exc!r}"), exc)
                    self._protocol.receive_eof()
                self._received_all = True
                self._cond.notify_all()
            self._close_stream()
            return True
        self._feed(data)
        return True

    def _release_socket(self) -> None:
        with self._cond:
            self._reading = False
            self._cond.notify_all()

    def _feed(self, data: builtins.bytes) -> None:
        protocol = self._protocol
        with self._cond:
            self._reading = False
            if not data:
                protocol.receive_eof()
                if (
                    not protocol.close_received
                    and not protocol.failed
                    and not self._finished.is_set()  # not the end of our own abort
                ):
                    self._set_error(WebSocketNetworkError("connection lost"))
                self._received_all = True
                self._cond.notify_all()
                owed = False
            else:
                self._reads += 1
                self._bytes_in += len(data)
                messages = protocol.receive_data(data)
                if protocol.last_streamed is not None:
                    self._on_streamed(protocol.last_streamed)
                if protocol._pongs:
                    self._on_pongs(protocol.pongs_received())
                if protocol._out:
                    self._owed.append(protocol.data_to_send())
                owed = bool(self._owed)
                if messages:
                    self._messages_in += len(messages)
                    if self._closing_locally and len(self._buffer) >= self._limit:
                        # Nobody reads while this side closes: drop rather than stall.
                        self._dropped += len(messages)
                    else:
                        self._buffer.extend(messages)
                if protocol.state is CloseState.CLOSED:
                    self._received_all = True
                self._cond.notify_all()
        if owed:
            try:
                self._write_frame(b"")
            except HTTPXWSException:
                pass  # the connection is dropped: its end says why
        if protocol.failed:
            # The Close frame carrying the error is out: no closing handshake.
            self._close_stream()

    def _drain_to_eof(self) -> None:
        """After the peer's Close frame, wait (bounded) for it to close TCP (RFC 6455, 7.1.1)."""
        protocol = self._protocol
        if not protocol.close_received or protocol.failed or self._finished.is_set():
            return
        deadline = None if self._close_timeout is None else time.monotonic() + self._close_timeout
        while not self._finished.is_set():
            left = remaining(deadline)
            if left <= 0:
                return
            try:
                if not self._io.read(_READ_SIZE, left):
                    return
            except Exception:
                return

    def _take(
        self, timeout: float | None, everything: bool = False, streamed: bool = False
    ) -> list[Message]:
        """Take the next message (every buffered one with ``everything``), waiting at most
        ``timeout`` seconds; read the socket in this thread when nobody else does.

        Args:
            timeout: seconds to wait; ``None`` waits for ever.
            everything: take every message buffered (up to a streamed one).
            streamed: the caller takes a streamed message too (``receive_fragments()``).

        Returns:
            One message or more; ``[]`` once the connection ended and the buffer is empty.

        Raises:
            ReceiveTimeout: nothing arrived in time.
            RuntimeError: another thread is receiving from this session.
            WebSocketInvalidTypeReceived: the next message streams (unless ``streamed``).
        """
        cond = self._cond
        buffer = self._buffer
        with cond:
            if self._receiver is not None:
                raise _receiving_error()
            if buffer:
                return self._pop(everything, streamed)
        if not self._wait(buffer.__len__, timeout):
            return []
        with cond:
            return self._pop(everything, streamed)

    def _wait(self, ready: Callable[[], object], timeout: float | None) -> bool:
        """Wait until ``ready()`` (called holding ``_cond``) is true, at most ``timeout``
        seconds; read the socket in this thread when nobody else does.

        Returns:
            False once the connection ended without ``ready()``.

        Raises:
            ReceiveTimeout: not ready in time.
            RuntimeError: another thread is receiving from this session.
        """
        cond = self._cond
        with cond:
            if self._receiver is not None:
                raise _receiving_error()
            if ready():
                return True
            self._receiver = threading.get_ident()
        if not self._started:
            self._start()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            checked = False
            while True:
                with cond:
                    if ready():
                        return True
                    if self._received_all:
                        return False
                    if not checked:
                        check_no_event_loop("receive from a WebSocketSession")
                        checked = True
                    left = remaining(deadline)
                    if left <= 0:
                        raise ReceiveTimeout(f"no message received within {timeout} s")
                    if self._reading or self._closing_locally:
                        wait = self._keepalive_due()
                        cond.wait(left if wait is None else min(left, wait))
                        read = False
                    else:
                        self._reading = read = True
                if read:
                    self._read_once(left)
                else:
                    self._keepalive_tick()
        finally:
            with cond:
                self._receiver = None
                self._last_receive = time.monotonic()

    def _pop(self, everything: bool, streamed: bool = False) -> list[Message]:
        buffer = self._buffer
        if self._streamed_waiting and not streamed:
            taken = self._pop_before_streamed(everything)
        elif everything:
            taken = list(buffer)
            buffer.clear()
        else:
            taken = [buffer.popleft()]
        if self._paused:
            self._cond.notify_all()
        return taken

    def _pop_before_streamed(self, everything: bool) -> list[Message]:
        """Take messages up to the first streamed one, which stays; raise if it is first."""
        buffer = self._buffer
        taken: list[Message] = []
        while buffer and not isinstance(buffer[0], StreamedMessage):
            taken.append(buffer.popleft())
            if not everything:
                break
        if not taken:
            raise streamed_error(cast(StreamedMessage, buffer[0]))
        return taken

    def _on_streamed(self, streamed: StreamedMessage) -> None:
        """In ``_feed``: parts of a streamed message arrived (or it started); holding ``_cond``."""
        protocol = self._protocol
        self._streamed_waiting += protocol.streamed_count - self._streamed_seen
        self._streamed_seen = protocol.streamed_count
        if streamed.finished:
            protocol.last_streamed = None
        if self._closing_locally:
            streamed.discarded = True
            streamed.take()

    def _parts_full(self) -> bool:
        """Whether a streamed message holds too many parts for the consumer (backpressure)."""
        streamed = self._protocol.last_streamed
        return streamed is not None and streamed.buffered > PARTS_HIGH_WATER

    def _unread(self, messages: list[Message]) -> None:
        """Put messages back in front of the buffer."""
        with self._cond:
            self._buffer.extendleft(reversed(messages))
