"""Read times: when each message was read off the socket, for ``MessageStream.timestamp()``.

Nothing is recorded until a ``timestamp()`` asks (the inbox then holds a
:class:`ReadTimes`): the receive path pays one attribute check per read. The
reader reads the wall clock once per read with messages (``time.time()``,
which is safe in a transport's callback, unlike anyio's clock); the inbox
counts the messages as they enter the channel. Messages leave the channel in
order, so the consumer finds a message's read from how many have left.
"""

from __future__ import annotations

import collections
import time

__all__ = ["ReadTimes"]


class ReadTimes:
    """The reads of the messages that entered a channel since recording started.

    Attributes:
        read_at: ``time.time()`` of the latest read, set by the reader.
    """

    __slots__ = ("_entered", "_floor", "_reads", "read_at")

    def __init__(self) -> None:
        # A read already parsed but not yet in the channel gets the start time.
        self.read_at = time.time()
        self._entered = 0
        # (messages entered after a read's messages, its time), oldest first;
        # the first covers the messages from ``_floor`` on.
        self._reads: collections.deque[tuple[int, float]] = collections.deque()
        self._floor = 0

    def entered(self, count: int) -> None:
        """``count`` messages of the latest read entered the channel (or are entering it)."""
        self._entered += count
        reads = self._reads
        if reads and reads[-1][1] == self.read_at:
            reads[-1] = (self._entered, self.read_at)
        else:
            reads.append((self._entered, self.read_at))

    def withdrawn(self) -> None:
        """The latest message counted by :meth:`entered` did not go in after all."""
        self._entered -= 1
        if self._reads:
            upper, read_at = self._reads[-1]
            self._reads[-1] = (upper - 1, read_at)

    def times(self, count: int, inside: int) -> list[float | None]:
        """The read times of the last ``count`` messages taken, ``inside`` being still inside.

        A message that entered before recording started, or whose read was
        forgotten (its read is forgotten once a later message was taken), has ``None``.
        """
        end = self._entered - inside
        start = end - count
        if start < 0:
            # Messages that were inside before recording started come first.
            return [None] * min(-start, count) + (self.times(end, inside) if end > 0 else [])
        reads = self._reads
        while reads and reads[0][0] <= start:
            self._floor = reads.popleft()[0]
        times: list[float | None] = []
        position = start
        lower = self._floor
        for upper, read_at in reads:
            if position >= end:
                break
            first = max(position, lower)
            times += [None] * (first - position)
            stop = min(upper, end)
            times += [read_at] * (stop - first)
            position = lower = stop
        times += [None] * (end - position)
        return times
