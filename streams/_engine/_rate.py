"""A token bucket for rate-limited sends: wait for a token, never drop.

``rate`` tokens come per second, at most ``burst`` are kept. Waiting senders
are served in order. Built on ``anyio.current_time()`` and ``anyio.sleep()``,
so a virtual clock drives it in tests.
"""

from __future__ import annotations

import anyio

__all__ = ["TokenBucket"]

_EPSILON = 1e-9


class TokenBucket:
    """Tokens for sends: :meth:`take` waits for one.

    Args:
        rate: tokens per second (more than 0).
        burst: the most tokens kept (at least 1); the bucket starts full.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp: float | None = None
        self._lock = anyio.Lock()

    def _refill(self) -> None:
        now = anyio.current_time()
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self) -> None:
        """Wait for a token and take it. Cancelling is safe: no token is taken then."""
        async with self._lock:
            self._refill()
            # (Within rounding: a clock that barely moved must not loop for ever.)
            while self._tokens < 1 - _EPSILON:
                await anyio.sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens = max(0.0, self._tokens - 1)
