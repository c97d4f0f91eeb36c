"""Keepalive in the sync API: a ping when due, and the judgement of the last one.

There is no keepalive thread: whichever thread reads or waits calls
:meth:`SyncKeepalive._keepalive_tick` when :meth:`SyncKeepalive._keepalive_due`
says it is time. A peer is alive when it answers the ping, when bytes arrived
meanwhile, or when the reader is held back by a slow consumer (and so does
not read the pong): keepalive never kills a connection only because its
consumer is slow.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time

from .._exceptions import HTTPXWSException, WebSocketKeepaliveTimeout
from ..protocol import ClientProtocol
from ..protocol._wsproto import CloseReason
from ._io import FOREVER, StreamIO

__all__ = ["SyncKeepalive"]

logger = logging.getLogger("streams")

_FOREVER = FOREVER


class SyncKeepalive:
    """The keepalive of a sync connection (a base of ``SyncConnection``)."""

    _keepalive_interval: float | None
    _keepalive_timeout: float | None
    _received_all: bool
    _cond: threading.Condition
    _write_lock: threading.Lock
    _protocol: ClientProtocol
    _io: StreamIO
    _next_ping: float
    _keepalive_pong: threading.Event | None
    _keepalive_deadline: float
    _keepalive_marks: tuple[int, int]
    _reads: int
    _pauses: int
    _paused: bool

    def _send_ping(self, payload: builtins.bytes) -> threading.Event:
        raise NotImplementedError

    def _set_error(self, error: HTTPXWSException, cause: BaseException | None = None) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        raise NotImplementedError

    def _keepalive_due(self) -> float | None:
        """Seconds until keepalive has something to do; ``None`` if never."""
        if self._keepalive_interval is None or self._received_all:
            return None
        if self._keepalive_pong is None:
            return max(self._next_ping - time.monotonic(), 0.0)
        if self._keepalive_pong.is_set():
            return 0.0
        return max(self._keepalive_deadline - time.monotonic(), 0.0)

    def _keepalive_tick(self) -> float:
        """Send the keepalive ping, or judge the last one, when due; callable from any thread.

        Returns:
            Seconds until keepalive next has something to do (long if never).
        """
        with self._cond:
            due = self._keepalive_due()
            if due is None:
                return _FOREVER
            if due > 0:
                return due
            pong = self._keepalive_pong
            now = time.monotonic()
            assert self._keepalive_interval is not None
            if pong is None:
                # Claim the ping, so that two threads never send it twice.
                self._keepalive_pong = threading.Event()
                self._keepalive_deadline = now + (self._keepalive_timeout or _FOREVER)
                self._keepalive_marks = (self._reads, self._pauses)
                send = True
            else:
                self._keepalive_pong = None
                self._next_ping = now + self._keepalive_interval
                if (
                    pong.is_set()
                    or self._keepalive_timeout is None
                    or (self._reads, self._pauses) != self._keepalive_marks
                    or self._paused
                ):
                    # A pong, bytes that arrived, or a reader held back by a
                    # slow consumer (and so not reading the pong): alive.
                    return self._keepalive_interval
                send = False
        if send:
            try:
                event = self._send_ping(b"")
            except HTTPXWSException:
                return _FOREVER
            with self._cond:
                pong = self._keepalive_pong
                if pong is not None:
                    # Hand the ping's own event over to the judge.
                    self._keepalive_pong = event
            return self._keepalive_timeout or _FOREVER
        self._fail_keepalive()
        return _FOREVER

    def _fail_keepalive(self) -> None:
        logger.debug("keepalive ping timeout: the peer is not answering")
        protocol = self._protocol
        with self._cond:
            self._set_error(WebSocketKeepaliveTimeout("keepalive ping timeout"))
            data = protocol.send_close(CloseReason.INTERNAL_ERROR, "keepalive ping timeout")
            protocol.closed_locally(CloseReason.INTERNAL_ERROR, "keepalive ping timeout")
        if data and self._write_lock.acquire(timeout=1):
            try:
                self._io.write(data)
            except Exception:
                pass
            finally:
                self._write_lock.release()
        self._abort()
