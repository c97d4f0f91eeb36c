"""The reader: bytes from the network through the protocol core into the inbox.

It reads, parses a whole read at a time, queues the answers to control frames
(pongs, the Close) in the outbox and hands the messages to the inbox. When the
backend can parse in its own callback as bytes arrive
(``ByteIO.parse_in_callback``), the reader task only takes over what must
wait: a full receive channel, a protocol failure to delay, answers to write
first, the end; it is started only then (an idle session runs no task).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from .._exceptions import WebSocketNetworkError, WebSocketOverflowError
from .._spawn import spawn_detached
from .._types import Message
from ..protocol import CloseState
from ._io import Leftover
from ._outbox import HIGH_WATER

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["FAILURE_GRACE", "READ_SIZE", "Reader"]

#: The most bytes one read asks for.
READ_SIZE = 262_144
#: How long a connection the peer broke stays open for the consumer to take
#: (and answer) the messages that came before the error, before the Close.
FAILURE_GRACE = 1.0


class Reader:
    """Reads one connection for an :class:`Engine`.

    Attributes:
        reads: reads that returned bytes (a sign of life for keepalive).
        bytes_in: bytes read, frames included.
        messages_in: messages parsed.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._protocol = engine.protocol
        self._inbox = engine.inbox
        self._outbox = engine.outbox
        self.reads = 0
        self.bytes_in = 0
        self.messages_in = 0
        #: Reads that brought data messages (the staleness check compares it).
        #: No clock is read here: this may run in a transport's callback,
        #: where anyio cannot tell which event loop runs.
        self.data_reads = 0
        # A peer that pings without reading its pongs is not read further
        # until they are written.
        self._must_drain = False
        #: Parsing inside the backend's callback (no task can be started there).
        self.in_callback = False
        #: A frame queued in the callback waits for the flusher, which the
        #: reader task starts (asked for by the Leftover this makes).
        self.flusher_deferred = False

    def wanted(self) -> None:
        """Start the reader task: the backend's callback needs it (``ByteIO.parse_in_callback``).

        Inside a transport's callback anyio cannot start a task (it cannot tell
        which event loop runs there): a short task started with the event
        loop's own API starts it in the session's task group.
        """
        spawn_detached(self._start, "streams reader start")

    async def _start(self) -> None:
        task_group = self._engine.task_group
        if task_group is not None and not task_group.cancel_scope.cancel_called:
            task_group.start_soon(self.run, name="streams reader")
        # Else the session stops, and stop() finishes the connection.

    async def run(self) -> None:
        """The reader task: read until the end of the connection, then finish it."""
        engine = self._engine
        protocol = self._protocol
        read = engine.io.read
        try:
            while True:
                try:
                    data = await read(READ_SIZE)
                except Exception as exc:
                    if protocol.state is not CloseState.CLOSED:
                        engine.set_error(WebSocketNetworkError(f"read failed: {exc!r}"), exc)
                        protocol.receive_eof()
                    break
                if isinstance(data, Leftover):
                    messages, index = data.messages, data.index
                elif data:
                    messages, index = self.parse(data), 0
                else:
                    protocol.receive_eof()
                    if not protocol.close_received and not protocol.failed:
                        engine.set_error(WebSocketNetworkError("connection lost"))
                    break
                if not await self._settle(messages, index):
                    break
        finally:
            self._inbox.end()
            with anyio.CancelScope(shield=True):
                await engine.finish()

    def parse(self, data: bytes) -> list[Message]:
        """Parse bytes from the network; queue the answers to its control frames."""
        protocol = self._protocol
        self.reads += 1
        self.bytes_in += len(data)
        outbox = self._outbox
        outbox.read_happened()
        messages = protocol.receive_data(data)
        if protocol._pongs:
            self._engine.on_pongs(protocol.pongs_received())
        if protocol._out:
            outbox.queue(protocol.data_to_send())
            self._must_drain = outbox.size > HIGH_WATER
        if messages:
            self.messages_in += len(messages)
            self.data_reads += 1
            stamps = self._inbox.stamps
            if stamps is not None:
                # For timestamp(): the wall clock is safe in a transport's callback.
                stamps.read_at = time.time()
        elif protocol.last_streamed is not None:
            self.data_reads += 1  # parts of a streamed message
        return messages

    async def _overflowed(self) -> None:
        """overflow="disconnect": the queue stayed full too long; close 1008 and fail."""
        options = self._engine.options
        queue_size, lag = options.queue_size, options.lag
        await self._engine.fail(
            WebSocketOverflowError(options.overflow, queue_size, lag),
            1008,
            f"slow consumer: queue_size={queue_size} full for lag_timeout={lag} s",
        )

    def on_data(self, data: bytes) -> Leftover | None:
        """Parse bytes inside the backend's callback, while the reader task waits or before it runs.

        Returns:
            ``None`` when everything that follows the parse is done; else what
            the reader task must still do (a full channel, a failure, the end).
        """
        self.in_callback = True
        try:
            messages = self.parse(data)
        finally:
            self.in_callback = False
        protocol = self._protocol
        if self._must_drain or protocol.last_streamed is not None:
            return Leftover(messages, 0)
        # What fits goes to the consumer now, even before a failure or the
        # end: the reader task, started for those, comes a little later.
        taken = self._inbox.offer(messages) if messages else 0
        if (
            taken == len(messages)
            and not self.flusher_deferred
            and not protocol.failure_pending
            and protocol.state is not CloseState.CLOSED
        ):
            return None
        return Leftover(messages, taken)

    async def _settle(self, messages: list[Message], index: int) -> bool:
        """Do what follows a parse: deliver ``messages[index:]``, fail, or see the end.

        Returns:
            False once the connection is closed.
        """
        protocol = self._protocol
        if self.flusher_deferred:
            self._engine.start_deferred_flusher()
        if self._must_drain:
            self._must_drain = False
            await self._outbox.drain()
        streamed = protocol.last_streamed
        if streamed is not None:
            # A message streams: the consumer's fast path must see it coming.
            self._inbox.streamed_started(protocol.streamed_count)
        if messages:
            await self._inbox.deliver(messages, index)
            if self._inbox.overflowed:
                await self._overflowed()
                return False
        if streamed is not None:
            if streamed.finished:
                protocol.last_streamed = None
            await self._inbox.hand_parts(streamed)
        if protocol.failure_pending:
            # The peer broke the protocol after sending messages: let the
            # consumer take and answer them (it then asks for the next one),
            # write the answers, then fail.
            with anyio.move_on_after(FAILURE_GRACE):
                await self._inbox.wait_consumer_idle()
                await self._outbox.drain()
            protocol.release_failure()
            self._outbox.queue(protocol.data_to_send())
        return protocol.state is not CloseState.CLOSED
