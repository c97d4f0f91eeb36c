"""The engine: one connection's protocol core, reader, flusher and keepalive, run as anyio tasks.

It drives the no-I/O protocol core (``streams/protocol/``) over the small I/O
interface of :mod:`streams._engine._io`, and owns the tasks of a session:

- the reader (:mod:`._reader`) reads, parses and hands messages to the inbox;
  where the backend parses in its own callback, its task starts only once
  the callback hands it something (an idle session runs none);
- the flusher (:mod:`._outbox`) writes what the sends queued, one write per burst;
- the keepalive (:mod:`._keepalive`) pings the peer and fails a silent connection;
- the writer sends what is put into the session's ``send_stream``.

It also runs the closing handshake and keeps the session's counters. It knows
nothing of asyncio or trio, nor of typed streams.
"""

from __future__ import annotations

import logging
import secrets
import time
from types import TracebackType

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._ending import NORMAL_CLOSE_CODES, end_error, end_of_stream, first_error
from .._exceptions import HTTPXWSException, WebSocketNetworkError
from .._options import SessionOptions
from .._taskgroup import OwnedTaskGroup
from .._types import Message
from ..protocol import ClientProtocol, CloseState, SendingFragments
from ._fragments import send_after_fragments
from ._inbox import Inbox
from ._io import ByteIO
from ._keepalive import run_keepalive
from ._outbox import HIGH_WATER, Outbox
from ._rate import TokenBucket
from ._reader import READ_SIZE, Reader
from ._stale import run_stale_watch

__all__ = ["NORMAL_CLOSE_CODES", "Engine"]

logger = logging.getLogger("streams")

#: Close codes that end iteration quietly: a normal close, "going away", or a
#: Close frame with no status code.
#: The close code of a normal close.
NORMAL_CLOSURE = 1000

#: After failing the connection, how many bytes are read (and dropped) at
#: most while waiting for the peer to close, within ``close_timeout``.
DRAIN_LIMIT = 4 * 1024 * 1024
#: ... and how long the peer may stay quiet before the connection is closed.
DRAIN_QUIET = 0.1


class ClosedFlag:
    """Whether the connection is closed: ``is_set()``, ``set()`` and ``wait()``, as an anyio Event.

    The anyio Event itself (an event loop's event and its deque of waiters,
    about 1 KiB) is made only when something waits: most sessions never do.
    """

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: anyio.Event | None = None

    def is_set(self) -> bool:
        """Whether the connection is closed."""
        return self._set

    def set(self) -> None:
        """Mark the connection closed and wake the waiters."""
        self._set = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        """Wait until the connection is closed (a checkpoint if it is already)."""
        event = self._event
        if event is None:
            event = self._event = anyio.Event()
            if self._set:
                event.set()
        await event.wait()


class Engine:
    """One open connection: the protocol core, the inbox, the outbox and their tasks.

    Attributes:
        io: the backend's reads and writes.
        protocol: the protocol core.
        inbox: received messages on their way to the consumer.
        outbox: frames on their way to the network.
        reader: the reader and its counters.
        closed: set once the connection is closed.
        error: what ended the session abnormally (network failure, keepalive), if anything.
        messages_out: messages sent.
        ping_rtt: the round-trip time of the last answered ping.
    """

    def __init__(self, io: ByteIO, protocol: ClientProtocol, options: SessionOptions) -> None:
        self.io = io
        self.protocol = protocol
        self.options = options
        self.inbox = Inbox(options.queue_size, options.overflow, options.lag)
        self.outbox = Outbox(io, self._write_failed)
        self.reader = Reader(self)
        self.closed = ClosedFlag()
        self.error: HTTPXWSException | None = None
        self.messages_out = 0
        self.ping_rtt: float | None = None
        # Pings waiting for their pong, oldest first: payload -> (waiters, sent at).
        self._pings: dict[bytes, tuple[list[anyio.Event], float]] = {}
        self._tasks = OwnedTaskGroup()
        self._task_group: anyio.abc.TaskGroup | None = None
        # The send channel, made when first asked for (most sessions never use it).
        self._send_channel: (
            tuple[MemoryObjectSendStream[Message], MemoryObjectReceiveStream[Message]] | None
        ) = None
        self._writer_wanted = False
        limit = options.rate_limit
        #: The send rate limit, if any (pongs and the Close never wait for it).
        self.rate: TokenBucket | None = TokenBucket(*limit) if limit else None

    # ------------------------------------------------------------- life cycle

    @property
    def started(self) -> bool:
        """Whether the tasks run."""
        return self._task_group is not None

    @property
    def task_group(self) -> anyio.abc.TaskGroup | None:
        """The group of the session's tasks while they run."""
        return self._task_group

    async def start(self) -> None:
        """Start the reader (or let the backend's callback start it), the flusher, the keepalive."""
        task_group = self._task_group = await self._tasks.enter()
        parse_in_callback = self.io.parse_in_callback
        if parse_in_callback is not None and self.options.overflow != "disconnect":
            # The backend parses in its callback; the reader task starts when
            # the callback needs it. (overflow="disconnect" stamps messages
            # with the clock, which a transport's callback cannot read through
            # anyio: the task parses.)
            await parse_in_callback(self.reader.on_data, self.reader.wanted)
        else:
            task_group.start_soon(self.reader.run, name="streams reader")
        self.outbox.start_flusher = self._start_flusher
        if not self.outbox.idle:
            self._start_flusher()
        if self._writer_wanted:
            task_group.start_soon(self._writer, name="streams writer")
        if self.options.stale_after is not None:
            task_group.start_soon(
                run_stale_watch, self, self.options.stale_after, name="streams stale watch"
            )
        interval = self.options.keepalive_ping_interval_seconds
        if interval is not None:
            task_group.start_soon(
                run_keepalive,
                self,
                interval,
                self.options.keepalive_ping_timeout_seconds,
                name="streams keepalive",
            )

    @property
    def send_stream(self) -> MemoryObjectSendStream[Message]:
        """The sending end of the send channel (made on first use)."""
        return self._send_ends()[0]

    def _send_ends(
        self,
    ) -> tuple[MemoryObjectSendStream[Message], MemoryObjectReceiveStream[Message]]:
        if self._send_channel is None:
            self._send_channel = anyio.create_memory_object_stream[Message](self.options.queue_size)
        return self._send_channel

    def _start_flusher(self) -> None:
        """Start the flusher task (once); inside a transport's callback, the reader task does."""
        if self.reader.in_callback:
            # No task can be started here (anyio cannot tell which loop runs).
            self.reader.flusher_deferred = True
            return
        task_group = self._task_group
        if task_group is None:
            return  # stopping: flush_last() writes what is queued
        self.outbox.start_flusher = None
        self.reader.flusher_deferred = False
        task_group.start_soon(self.outbox.run, name="streams flusher")

    def start_deferred_flusher(self) -> None:
        """Start the flusher a transport's callback asked for."""
        if self.reader.flusher_deferred and self.outbox.start_flusher is not None:
            self._start_flusher()

    def want_writer(self) -> None:
        """Start the task that sends what arrives in ``send_stream`` (once)."""
        if not self._writer_wanted:
            self._writer_wanted = True
            if self._task_group is not None:
                self._task_group.start_soon(self._writer, name="streams writer")

    async def stop(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """Close (or, when cancelled, drop) the connection and stop the tasks.

        The block's own exception is not handed to the task group, which
        would wrap it in an exception group: it propagates as itself.
        """
        assert self._task_group is not None, "the session was not entered"
        cancelled = isinstance(exc_val, anyio.get_cancelled_exc_class())
        try:
            with anyio.CancelScope(shield=True):
                if not cancelled:
                    await self.close(1000, None)
                elif not self.closed.is_set():
                    # Cancelled: the tasks are being cancelled too (perhaps
                    # before they ever ran). Queue the Close frame; finish()
                    # writes it, without waiting for the peer.
                    self.inbox.closing = True
                    data = self.protocol.send_close(NORMAL_CLOSURE)
                    if data:
                        self.outbox.queue(data)
        finally:
            if self.io.set_on_data is not None:
                # Nothing is parsed once the tasks stop (a reader task no
                # longer waits, nor is one started).
                self.io.set_on_data(None)
            try:
                # Cancelled or not, the tasks are stopped and the group exits
                # cleanly: the caller's own exception goes on as itself.
                await self._tasks.exit(None)
            finally:
                self._task_group = None
                self.outbox.start_flusher = None
                self.outbox.done = True
                if not self.closed.is_set():
                    with anyio.CancelScope(shield=True):
                        await self.finish()
                # The engine's own ends of the channels; clones handed to
                # other tasks stay open until their owners close them.
                self.inbox.close()
                for end in self._send_ends():
                    end.close()

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed, else ``None``."""
        final = self.protocol.final_close
        return None if final is None else final[0]

    @property
    def close_reason(self) -> str | None:
        """The close reason once the connection is closed, else ``None``."""
        final = self.protocol.final_close
        return None if final is None else final[1]

    # ---------------------------------------------------------------- errors

    def set_error(self, error: HTTPXWSException, cause: BaseException | None = None) -> None:
        """Keep the first error that ends the session abnormally."""
        self.error = first_error(self.error, error, cause)

    def end_error(self) -> HTTPXWSException:
        """The exception that reports the end of the session."""
        return end_error(self.error, self.protocol.ending)

    def end_of_stream(self) -> None:
        """Called when the receive channel ended: return for a normal close, else raise."""
        end_of_stream(self.end_error())

    def check_can_send(self) -> None:
        """Raise the session's end if nothing more can be sent."""
        if self.error is not None or not self.protocol.can_send or self.outbox.done:
            raise self.end_error()

    async def _write_failed(self, exc: Exception) -> None:
        if self.protocol.state is not CloseState.CLOSED:
            self.set_error(WebSocketNetworkError(f"write failed: {exc!r}"), exc)
            # Nothing more can be sent: drop the connection, which ends the reader.
            self.protocol.receive_eof()
            await self.close_stream()

    # --------------------------------------------------------------- sending

    def send_message(self, message: Message, compress: bool = True) -> None:
        """Queue a text or binary message (the caller checked it may send)."""
        protocol = self.protocol
        if isinstance(message, str):
            self.outbox.queue(protocol.send_text(message, compress))
        else:
            self.outbox.queue(protocol.send_bytes(message, compress))
        self.messages_out += 1

    async def wait_turn(self) -> None:
        """Wait for the send rate limit's turn, if there is one."""
        if self.rate is not None:
            await self.rate.take()

    async def wait_for_room(self) -> None:
        """Wait while more than ``HIGH_WATER`` bytes are queued."""
        if self.outbox.size > HIGH_WATER:
            await self.outbox.drain()

    async def _writer(self) -> None:
        """Send what arrives in send_stream; close the session when it ends."""
        source = self._send_ends()[1]
        async with source:
            while True:
                try:
                    message = await source.receive()
                except anyio.EndOfStream:
                    break
                try:
                    while True:
                        await self.wait_turn()
                        self.check_can_send()
                        try:
                            self.send_message(message)
                        except SendingFragments:
                            await send_after_fragments(self, message, True)
                        message = source.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    pass
                except HTTPXWSException:
                    return  # the session ended: nothing more can be sent
                await self.wait_for_room()
        if not self.closed.is_set():
            await self.close(1000, None)

    # ----------------------------------------------------------------- pings

    async def ping(self, payload: bytes = b"") -> anyio.Event:
        """Queue a Ping; return an event set by its pong (or a later one), or at the close."""
        if not payload:
            payload = secrets.token_bytes(8)
        if self.options.send_rate_counts_pings:
            await self.wait_turn()
        self.check_can_send()
        frame = self.protocol.send_ping(payload)
        event = anyio.Event()
        entry = self._pings.get(payload)
        if entry is None:
            self._pings[payload] = ([event], time.monotonic())
        else:
            entry[0].append(event)
        self.outbox.queue(frame)
        return event

    def on_pongs(self, payloads: list[bytes]) -> None:
        """Wake the waiters of each pong's ping, and of every ping sent before it.

        A peer answers pings in order (and may answer only the latest of
        several), so a pong acknowledges the earlier pings too.
        """
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
                    self.ping_rtt = now - sent_at
                    break

    # --------------------------------------------------------------- closing

    async def close(self, code: int, reason: str | None) -> None:
        """Send a Close frame and wait (bounded) for the end; then drop the connection."""
        if self._task_group is None and not self.closed.is_set():
            # Never started: nothing runs, close the stream directly.
            try:
                await self.io.close()
            finally:
                self.closed.set()
            return
        if not self.closed.is_set() and not self.outbox.done:
            self.inbox.stop_waiting()
            data = self.protocol.send_close(code, reason)
            if data:
                logger.debug("sending close: code=%s reason=%r", code, reason)
                self.outbox.queue(data)
        try:
            with anyio.move_on_after(self.options.close_timeout):
                await self.closed.wait()
        finally:
            if not self.closed.is_set():
                await self.abort()

    async def fail(self, error: HTTPXWSException, code: int, reason: str | None = None) -> None:
        """Fail the connection from this side: the error, a Close frame (briefly), the drop."""
        self.set_error(error)
        protocol = self.protocol
        if reason is None:
            reason = str(error)
        data = protocol.send_close(code, reason)
        if data and not self.outbox.done:
            self.outbox.queue(data)
            with anyio.move_on_after(1):
                await self.outbox.drain()
        protocol.closed_locally(code, reason)
        await self.abort()

    async def finish(self) -> None:
        """After the last frame: wait (bounded) for the peer to close TCP, then close the stream."""
        protocol = self.protocol
        outbox = self.outbox
        if protocol.state is CloseState.OPEN and not outbox.failed:
            # The reader was stopped (cancelled) on an open connection: close it properly.
            self.inbox.closing = True
            data = protocol.send_close(NORMAL_CLOSURE)
            if data:
                outbox.queue(data)
        # Frames still queued (a Close frame among them) go out first.
        await outbox.flush_last(self.options.close_timeout)
        if self.io.set_on_data is not None:
            self.io.set_on_data(None)  # what still arrives is only read to the end
        if not outbox.failed and protocol.close_received and not protocol.failed:
            # RFC 6455 7.1.1: the server closes the TCP connection first.
            with anyio.move_on_after(self.options.close_timeout):
                try:
                    while await self.io.read(READ_SIZE):
                        pass
                except Exception:
                    pass
        elif not outbox.failed and protocol.failed:
            await self._drain_after_failure()
        await self.close_stream()
        if protocol.state is not CloseState.CLOSED:
            # The reader stopped (cancelled) before the closing handshake ended.
            protocol.receive_eof()
        self.closed.set()
        logger.debug(
            "connection closed: code=%s reason=%r", protocol.close_code, protocol.close_reason
        )
        for waiters, _ in self._pings.values():
            for event in waiters:
                event.set()
        self._pings.clear()

    async def _drain_after_failure(self) -> None:
        """After failing the connection, read and drop what the peer still sends.

        Closing with unread bytes makes the kernel answer with a reset, which
        can destroy the Close frame before the peer reads it. So read until
        the peer closes, goes quiet for ``DRAIN_QUIET`` seconds (nothing is
        left unread: closing then sends a clean FIN), ``DRAIN_LIMIT`` bytes
        were read, or ``close_timeout`` passed.
        """
        left = DRAIN_LIMIT
        with anyio.move_on_after(self.options.close_timeout):
            try:
                while left > 0:
                    with anyio.move_on_after(DRAIN_QUIET) as quiet:
                        data = await self.io.read(READ_SIZE)
                    if quiet.cancelled_caught or not data:
                        return
                    if isinstance(data, bytes):
                        left -= len(data)
            except Exception:
                pass

    async def close_stream(self) -> None:
        """Close the network stream, even when cancelled; its errors no longer matter."""
        self.outbox.disable_write_now()
        with anyio.CancelScope(shield=True):
            try:
                await self.io.close()
            except Exception:
                pass

    async def abort(self) -> None:
        """Drop the connection now."""
        if self.protocol.close_code is None:
            self.protocol.receive_eof()
        await self.close_stream()
        self.inbox.end()
        self.closed.set()
