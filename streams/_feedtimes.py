"""Read times on the reconnecting feed: when each message was read off its connection's socket.

For ``MessageStream.timestamp()`` over a feed. Nothing is recorded until a
``timestamp()`` asks; then each session the feed holds records its read
times (see ``streams/_engine/_readtimes.py``), the feed's loop takes them with
each batch it moves into the feed's channel, and the consumer finds a
message's time from how many messages are still inside, as on a session.
A message read before recording started has the time it reached the feed.
"""

from __future__ import annotations

import time
from typing import Protocol

from ._engine._readtimes import ReadTimes
from ._types import Message

__all__ = ["FeedReadTimes"]


class _Session(Protocol):
    def _read_times(self, count: int) -> list[float | None]: ...


class FeedReadTimes:
    """The read times of the messages that entered a feed's channel since recording started."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times = ReadTimes()

    def start(self, session: _Session) -> None:
        """Have ``session`` record its read times (a session the feed starts reading)."""
        session._read_times(0)

    def entered(self, session: _Session, batch: list[Message]) -> None:
        """``batch`` was just taken from ``session`` and enters the feed's channel."""
        times = session._read_times(len(batch))
        now = time.time()
        stamps = self._times
        run = 0
        for index, read_at in enumerate(times):
            run += 1
            if index + 1 == len(times) or times[index + 1] != read_at:
                stamps.read_at = now if read_at is None else read_at
                stamps.entered(run)
                run = 0

    def times(self, count: int, inside: int) -> list[float | None]:
        """The read times of the last ``count`` messages taken, ``inside`` being still inside."""
        return self._times.times(count, inside)
