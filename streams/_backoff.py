"""Exponential backoff with jitter between connection attempts."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator
from typing import Literal

__all__ = ["Backoff"]


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter between connection attempts.

    The n-th consecutive failed attempt (n = 0, 1, 2...) is followed by a wait
    drawn from ``[0, ceiling(n)]`` (full jitter), where
    ``ceiling(n) = min(maximum, initial * multiplier ** n)``. The count starts
    again once a connection stayed up for ``stable_after`` seconds.

    Args:
        initial: the first ceiling, in seconds.
        maximum: the cap: no wait is ever longer (a server's ``Retry-After`` included).
        multiplier: how much the ceiling grows per attempt.
        jitter: ``"full"``: uniform in ``[0, ceiling]`` (the default, which
            spreads a crowd of clients best); ``"equal"``: uniform in
            ``[ceiling / 2, ceiling]``; ``"decorrelated"``: uniform in
            ``[initial, 3 * previous wait]``, capped; ``"none"``: the ceiling itself.
        stable_after: seconds a connection must stay up for the next failure
            to count as the first again.

    Raises:
        ValueError: a negative time, ``maximum < initial``, ``multiplier < 1``
            or an unknown jitter.
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: Literal["full", "equal", "decorrelated", "none"] = "full"
    stable_after: float = 10.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.stable_after < 0:
            raise ValueError("backoff times must not be negative")
        if self.maximum < self.initial:
            raise ValueError("the backoff maximum must be at least the initial delay")
        if self.multiplier < 1:
            raise ValueError("the backoff multiplier must be at least 1")
        if self.jitter not in ("full", "equal", "decorrelated", "none"):
            raise ValueError(f"unknown jitter {self.jitter!r}")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after the ``attempt``-th consecutive failure (0-based)."""
        ceiling = self.initial
        for _ in range(attempt):
            if ceiling >= self.maximum:
                break
            ceiling *= self.multiplier
        return min(self.maximum, ceiling)

    def delays(self, rng: Callable[[], float] | None = None) -> Iterator[float]:
        """Yield the waits after consecutive failures, for ever.

        Args:
            rng: returns a float in ``[0, 1)``; :func:`random.random` by default.
                Inject a fixed one to make delays deterministic in tests.
        """
        draw = random.random if rng is None else rng
        attempt = 0
        previous = self.initial
        while True:
            ceiling = self.ceiling(attempt)
            if self.jitter == "full":
                delay = draw() * ceiling
            elif self.jitter == "equal":
                delay = ceiling / 2 + draw() * ceiling / 2
            elif self.jitter == "decorrelated":
                upper = max(self.initial, previous * 3)
                delay = min(self.maximum, self.initial + draw() * (upper - self.initial))
                previous = delay
            else:
                delay = ceiling
            yield delay
            attempt += 1
