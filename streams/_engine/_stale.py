"""Staleness: fail a connection that stays up but delivers no data message for too long.

The quiet time counts only while nothing waits for the consumer: when
messages wait in the queue, or the reader waits for room, the feed is busy,
not quiet. Pings and pongs are not data.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from .._exceptions import WebSocketStaleError

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["CHECKS", "run_stale_watch"]

#: How many times per ``stale_after`` the task looks.
CHECKS = 4

logger = logging.getLogger("streams")


async def run_stale_watch(engine: Engine, after: float) -> None:
    """The staleness task of ``engine``: returns when the connection ends.

    It looks a few times per ``after`` whether data came, so a quiet feed is
    found stale between ``after`` and ``after * (1 + 1 / CHECKS)`` seconds.
    """
    reader, inbox = engine.reader, engine.inbox
    step = after / CHECKS
    quiet_since = anyio.current_time()
    seen = reader.data_reads
    while not engine.closed.is_set():
        await anyio.sleep(step)
        now = anyio.current_time()
        if reader.data_reads != seen or inbox.waiting or inbox.paused:
            # Data came, or the consumer is behind: not a quiet feed.
            seen = reader.data_reads
            quiet_since = now
            continue
        if now - quiet_since < after or engine.closed.is_set():
            continue
        logger.debug("no data message for %s s: the feed is stale", after)
        await engine.fail(WebSocketStaleError(after), 1011, f"stale: no data message for {after} s")
        return
