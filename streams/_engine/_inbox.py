"""The inbox: received messages on their way to the consumer, through the bounded receive channel.

The reader puts a whole read's messages into the channel at once; when
``queue_size`` messages wait, it waits for the consumer (backpressure: the
socket is not read meanwhile). The session's receive methods take messages
out in bulk and wait for the reader's signal instead of in the channel's
``receive()``, whose checkpoint before waiting would cost a turn of the event
loop on every round trip.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._types import Message, Overflow
from ._channel import is_closed, open_channel
from ._lag import LagWatch
from ._parts import PartsHandOff
from ._readtimes import ReadTimes

__all__ = ["Inbox", "messages"]

logger = logging.getLogger("streams")


class Inbox(PartsHandOff):
    """The receive channel of a session, with the reader's and the consumer's side of it.

    Attributes:
        receive_stream: the consumer's end (``session.receive_stream``).
        paused: whether the reader waits for room (backpressure).
        pauses: how many times the reader waited for room (a sign of life for keepalive).
        dropped: messages dropped because this side was closing with a full channel.
        delivering: False once every receive end was closed (messages are then dropped).
        closing: set by the engine when this side closes: a full channel then
            drops what arrives rather than stall the closing handshake.
    """

    def __init__(self, queue_size: int, overflow: Overflow = "block", lag: float = 5.0) -> None:
        self.queue_size = queue_size
        self._overflow = overflow
        #: Messages dropped by the overflow policy.
        self.overflow_dropped = 0
        #: Set when the queue stayed full ``lag`` seconds (``overflow="disconnect"``).
        self.overflowed = False
        # With "disconnect": how long the oldest message has waited.
        self._lag_watch = LagWatch(lag) if overflow == "disconnect" else None
        # The channel is made on first use (see _channel()): about 1.4 KiB a
        # session that never receives anything does without. Its state is
        # None until then, and when it has not the shape _channel knows.
        self._to_consumer: MemoryObjectSendStream[Message] | None = None
        self._receive: MemoryObjectReceiveStream[Message] | None = None
        self._state: Any = None
        # The session's receive_stream was closed (bulk mode).
        self._stream_closed = False
        self._init_parts()
        #: The channel ended: no more messages, nor parts, will come.
        self.ended = False
        self.paused = False
        self.pauses = 0
        self.dropped = 0
        self.delivering = True
        self.closing = False
        # The reader's wait for room, cancelled when this side closes.
        self._delivery_scope: anyio.CancelScope | None = None
        # Messages handed back by a typed stream that read ahead of its need.
        self._unread: list[Message] = []
        # Set when messages arrive (or the channel ends), for next_message();
        # made by the event loop's own Event class, without anyio's look-up.
        self._arrival: anyio.Event | None = None
        self._new_event: Callable[[], anyio.Event] | None = None
        # Messages were put in the channel since the consumer last waited for one.
        self._unanswered = False
        # Set when the consumer waits for a message (or leaves), for wait_consumer_idle().
        self._asked: anyio.Event | None = None
        #: When messages were read, once a ``timestamp()`` asked (see :meth:`read_times`).
        self.stamps: ReadTimes | None = None

    @property
    def receive_stream(self) -> MemoryObjectReceiveStream[Message]:
        """The consumer's end (``session.receive_stream``)."""
        return self._receive or self._channel()[1]

    def _channel(
        self,
    ) -> tuple[MemoryObjectSendStream[Message], MemoryObjectReceiveStream[Message]]:
        """The channel's two ends, made on first use."""
        if self._to_consumer is None or self._receive is None:
            self._to_consumer, self._receive, self._state = open_channel(
                self.queue_size, self._receive_stream_closed
            )
        return self._to_consumer, self._receive

    # ------------------------------------------------------------ reader side

    def push(self, messages: list[Message], index: int) -> int:
        """Put ``messages[index:]`` in the channel, as many as fit without waiting.

        With ``overflow="drop_oldest"`` or ``"drop_newest"``, what does not fit
        makes room or is dropped: every message is taken.

        Returns:
            The index of the first message left out (``len(messages)`` if none).

        Raises:
            anyio.BrokenResourceError: every receive end is closed.
        """
        start = index
        index = self._fill(messages, index)
        if self.stamps is not None and index > start:
            self.stamps.entered(index - start)
        if index < len(messages) and self._overflow in ("drop_oldest", "drop_newest"):
            index = self._drop(messages, index)
        if self._lag_watch is not None and index > start:
            self._lag_watch.entered(index - start)
        return index

    def _drop(self, messages: list[Message], index: int) -> int:
        """Drop by the policy to take ``messages[index:]``, which do not fit; return their end."""
        count = len(messages)
        if self._overflow == "drop_oldest":
            # Messages that could never all fit give way to the newest ones at once.
            newest = count - self.queue_size
            if index < newest:
                self.overflow_dropped += newest - index
                index = newest
            receive_nowait = self.receive_stream.receive_nowait
            while index < count:
                try:
                    receive_nowait()  # the oldest waiting message gives way
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                self.overflow_dropped += 1
                start = index
                index = self._fill(messages, index)
                if self.stamps is not None and index > start:
                    self.stamps.entered(index - start)
        self.overflow_dropped += count - index
        return count

    def _fill(self, messages: list[Message], index: int) -> int:
        count = len(messages)
        to_consumer = self._to_consumer or self._channel()[0]
        state = self._state
        if state is None or is_closed(to_consumer):
            send_nowait = to_consumer.send_nowait
            start = index
            try:
                while index < count:
                    send_nowait(messages[index])
                    index += 1
            except anyio.WouldBlock:
                pass
            if index > start:
                self._unanswered = True
            return index
        if not state.open_receive_channels:
            self.wake()
            raise anyio.BrokenResourceError
        if state.waiting_receivers:
            # A receiver waits, so the buffer is empty: anyio hands it the first.
            send_nowait = to_consumer.send_nowait
            self._unanswered = True
            try:
                while index < count and state.waiting_receivers:
                    send_nowait(messages[index])
                    index += 1
            except anyio.WouldBlock:
                return index
        buffer = state.buffer
        room = state.max_buffer_size - len(buffer)
        if room > 0 and index < count:
            self._unanswered = True
        if room >= count - index:
            buffer.extend(messages[index:] if index else messages)
            index = count
        elif room > 0:
            end = index + int(room)
            buffer.extend(messages[index:end])
            index = end
        if self._arrival is not None:
            self.wake()
        return index

    def offer(self, messages: list[Message]) -> int:
        """Put what fits of ``messages`` in the channel without waiting; return how many went in.

        Once every receive end is closed, the messages are dropped (and
        reported as taken).
        """
        if not self.delivering:
            return len(messages)
        try:
            return self.push(messages, 0)
        except anyio.BrokenResourceError:
            self.delivering = self._abandoned()
            return len(messages)

    async def deliver(self, messages: list[Message], index: int) -> None:
        """Hand ``messages[index:]`` to the consumer, waiting for room when the channel is full.

        Only a full channel makes the reader wait. While this side is closing,
        what does not fit is dropped instead (a close from the peer drops nothing).
        """
        if not self.delivering:
            return
        count = len(messages)
        while True:
            try:
                index = self.push(messages, index)
            except anyio.BrokenResourceError:
                self.delivering = self._abandoned()
                return
            if index == count:
                return
            if self.closing:
                self.dropped += count - index
                return
            lag_watch = self._lag_watch
            wait = math.inf if lag_watch is None else lag_watch.time_left(self.waiting)
            if wait <= 0:
                # overflow="disconnect": the oldest message waited too long.
                self.overflowed = True
                return
            self.paused = True
            self.pauses += 1
            stamps = self.stamps
            if stamps is not None:
                stamps.entered(1)  # counted while it waits to go in (see read_times)
            try:
                with anyio.CancelScope(deadline=anyio.current_time() + wait) as scope:
                    self._delivery_scope = scope
                    await self._channel()[0].send(messages[index])
            except anyio.BrokenResourceError:
                self.delivering = self._abandoned()
                return
            finally:
                self.paused = False
                self._delivery_scope = None
            if scope.cancelled_caught:
                if stamps is not None:
                    stamps.withdrawn()
                if self.closing:
                    self.dropped += count - index
                    return
                continue  # the lag deadline: judged at the top of the loop
            if lag_watch is not None:
                lag_watch.entered(1)
            index += 1

    def stop_waiting(self) -> None:
        """This side is closing: a reader waiting for room drops what it holds instead."""
        self.closing = True
        if self._delivery_scope is not None:
            self._delivery_scope.cancel()

    def _abandoned(self) -> bool:
        # Every receive end was closed: the connection is kept (control frames
        # are still answered) and what arrives is dropped.
        logger.debug("receive stream closed by the consumer; discarding messages")
        self._consumer_asked()
        return False

    async def wait_consumer_idle(self) -> None:
        """Wait until the consumer took every waiting message and asks for the next, or left.

        What the consumer does with a message (answer it, most often) is done
        once it asks for the next one.
        """
        if not self._unanswered or not self.delivering or is_closed(self.receive_stream):
            return
        self._asked = asked = anyio.Event()
        await asked.wait()

    def _consumer_asked(self) -> None:
        asked = self._asked
        if asked is not None:
            self._asked = None
            asked.set()

    @property
    def waiting(self) -> int:
        """How many messages wait in the channel."""
        return self.receive_stream.statistics().current_buffer_used

    def end(self) -> None:
        """No more messages will come: the channel ends after those waiting."""
        self.ended = True
        self._channel()[0].close()
        self.wake()

    def close(self) -> None:
        """Close the session's own ends (clones handed out stay open)."""
        to_consumer, receive_stream = self._channel()
        to_consumer.close()
        receive_stream.close()

    # ---------------------------------------------------------- consumer side

    def wake(self) -> None:
        """Wake the receive methods waiting in :meth:`next_message`."""
        arrival = self._arrival
        if arrival is not None:
            self._arrival = None
            arrival.set()
        if self._asked is not None and is_closed(self.receive_stream):
            self._consumer_asked()

    def take_now(self) -> Message | None:
        """Return the next message if one can be taken at once in bulk mode, else ``None``."""
        state = self._state
        if (
            state is not None
            and state.buffer
            and not self._unread
            and not state.waiting_senders
            and not self.detour
        ):
            message: Message = state.buffer.popleft()
            return message
        return None

    def _receive_stream_closed(self) -> None:
        self._stream_closed = self.detour = True
        self.wake()

    async def next_message(self) -> Message:
        """Return the next message, waiting for one.

        Raises:
            anyio.EndOfStream: the channel ended.
            anyio.ClosedResourceError: ``receive_stream`` was closed.
        """
        stream = self._receive or self._channel()[1]
        state = self._state
        while True:
            if self._unread:
                return self._unread.pop(0)
            if state is not None and state.buffer and not state.waiting_senders:
                if is_closed(stream):
                    raise anyio.ClosedResourceError
                message: Message = state.buffer.popleft()
                return message
            try:
                return stream.receive_nowait()
            except anyio.WouldBlock:
                pass
            # The consumer took (and answered) everything before: it asks for more.
            self._unanswered = False
            if self._asked is not None:
                self._consumer_asked()
            if state is None or state.max_buffer_size < 1:
                return await stream.receive()
            await self.wait_arrival()

    async def wait_arrival(self) -> None:
        """Wait until the reader signals: messages or parts arrived, or the channel ended."""
        arrival = self._arrival
        if arrival is None:
            if self._new_event is None:
                self._new_event = type(anyio.Event())
            arrival = self._arrival = self._new_event()
        await arrival.wait()

    async def receive_batch(self, limit: int = 0) -> list[Message]:
        """Return every message available now (at most ``limit`` if given), waiting for one.

        Raises:
            anyio.EndOfStream: the channel ended.
            anyio.ClosedResourceError: ``receive_stream`` was closed.

        Cancelling is safe: no message is lost.
        """
        if self._unread:
            if 0 < limit < len(self._unread):
                batch = self._unread[:limit]
                del self._unread[:limit]
            else:
                batch = self._unread
                self._unread = []
            return batch
        batch = [await self.next_message()]
        if limit == 1:
            return batch
        left = limit - 1 if limit > 0 else -1
        stream = self._receive or self._channel()[1]
        state = self._state
        if state is not None and not state.waiting_senders and not is_closed(stream):
            # What a receive_nowait() per message does, in one go.
            buffer = state.buffer
            if 0 < left < len(buffer):
                batch += [buffer.popleft() for _ in range(left)]
            else:
                batch += buffer
                buffer.clear()
            return batch
        receive_nowait = stream.receive_nowait
        append = batch.append
        try:
            while left:
                append(receive_nowait())
                left -= 1
        except (anyio.WouldBlock, anyio.EndOfStream):
            pass
        return batch

    def read_times(self, count: int) -> list[float | None]:
        """When each of the last ``count`` messages taken was read; the first call starts recording.

        Call it right after taking them (no await in between); ``None`` where unknown.
        """
        if self.stamps is None:
            self.stamps = ReadTimes()
            return [None] * count
        statistics = self.receive_stream.statistics()
        # Still inside: waiting in the channel, on their way into it, put back.
        inside = statistics.current_buffer_used + statistics.tasks_waiting_send + len(self._unread)
        return self.stamps.times(count, inside)

    def unread(self, messages: list[Message]) -> None:
        """Put messages back in front: the next receive of any kind returns them first."""
        if not messages:
            return
        state = self._state
        if (
            state is not None
            and not self._unread
            and not state.waiting_receivers
            and not is_closed(self.receive_stream)
        ):
            # In front of the channel itself, where receive_stream finds them too.
            state.buffer.extendleft(reversed(messages))
        else:
            self._unread[:0] = messages
        self.wake()


def messages(inbox: Inbox, slow: Callable[[], Awaitable[Message]]) -> AsyncIterator[Message]:
    """``async for`` over an inbox: :meth:`Inbox.take_now` inlined, ``slow`` when it finds nothing.

    At a million messages a second, what each message costs counts: an async generator
    resumed per message costs less than a coroutine made per message. ``slow`` is the
    session's ``__anext__`` (it waits, raises at an abnormal end, and ends the iteration at a
    normal one).

    The generator is closed where it is dropped, as a plain generator is: it gets no event
    loop finalizer (the hooks are cleared while its first ``__anext__()`` reads them, and that
    step is never taken). A ``break`` out of ``async for`` is ordinary use, and trio warns about
    every async generator its finalizer sees dropped before the end.
    """
    iterator = _messages(inbox, slow)
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(None, None)
    try:
        iterator.__anext__()  # type: ignore[unused-coroutine]
    finally:
        sys.set_asyncgen_hooks(*hooks)
    return iterator


async def _messages(
    inbox: Inbox, slow: Callable[[], Awaitable[Message]]
) -> AsyncGenerator[Message, None]:
    inbox._channel()  # (made on first use: its state is known from now on)
    state = inbox._state
    if state is not None:
        buffer = state.buffer
        popleft = buffer.popleft
        while True:
            if buffer and not inbox._unread and not state.waiting_senders and not inbox.detour:
                yield popleft()
                continue
            try:
                message = await slow()
            except StopAsyncIteration:
                return
            yield message
    while True:
        try:
            message = await slow()
        except StopAsyncIteration:
            return
        yield message
