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

__all__ = ["run_stale_watch"]

logger = logging.getLogger("streams")


async def run_stale_watch(engine: Engine, after: float) -> None:
    """The staleness task of ``engine``: returns when the connection ends."""
    reader, inbox = engine.reader, engine.inbox
    quiet_since = anyio.current_time()
    while not engine.closed.is_set():
        await anyio.sleep_until(max(quiet_since, reader.data_at) + after)
        now = anyio.current_time()
        if inbox.waiting or inbox.paused:
            quiet_since = now  # the consumer is behind: not a quiet feed
            continue
        if now - max(quiet_since, reader.data_at) < after:
            continue
        if engine.closed.is_set():
            return
        logger.debug("no data message for %s s: the feed is stale", after)
        await engine.fail(WebSocketStaleError(after), 1011, f"stale: no data message for {after} s")
        return
