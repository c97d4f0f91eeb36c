"""overflow="disconnect": how long the oldest message in the receive channel has waited."""

from __future__ import annotations

import collections

import anyio

__all__ = ["LagWatch"]


class LagWatch:
    """Times the messages of the receive channel, a batch at a time (``overflow="disconnect"``).

    Args:
        lag: how long the oldest message may wait while the channel is full (``lag_timeout``).
    """

    def __init__(self, lag: float) -> None:
        self.lag = lag
        # How many messages were ever put in the channel, and (that count after
        # a batch, when the batch went in), oldest first.
        self._entered = 0
        self._batches: collections.deque[tuple[int, float]] = collections.deque()

    def entered(self, count: int) -> None:
        """``count`` messages went into the channel now."""
        self._entered += count
        self._batches.append((self._entered, anyio.current_time()))

    def time_left(self, waiting: int) -> float:
        """Seconds before the oldest of the ``waiting`` messages in the channel waited ``lag``."""
        batches = self._batches
        taken = self._entered - waiting
        while batches and batches[0][0] <= taken:
            batches.popleft()
        return self.lag - (anyio.current_time() - batches[0][1]) if batches else self.lag
