"""Keepalive: ping the peer at an interval; fail the connection when it stays silent.

A peer is alive when it answers the ping, or when bytes arrived meanwhile, or
when the reader waits for a slow consumer (and so is not reading the pong):
keepalive never kills a connection only because its consumer is slow.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from .._exceptions import HTTPXWSException, WebSocketKeepaliveTimeout

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["run_keepalive"]

logger = logging.getLogger("streams")


async def run_keepalive(engine: Engine, interval: float, timeout: float | None) -> None:
    """The keepalive task of ``engine``: returns when the connection ends."""
    reader, inbox = engine.reader, engine.inbox
    while not engine.closed.is_set():
        await anyio.sleep(interval)
        reads, pauses = reader.reads, inbox.pauses
        try:
            pong = await engine.ping()
        except HTTPXWSException:
            return
        if timeout is None:
            continue
        with anyio.move_on_after(timeout):
            await pong.wait()
        if pong.is_set() or engine.closed.is_set():
            continue
        # A process that was not scheduled for a while wakes up with this
        # deadline and the socket's bytes due together: let the reader take
        # them before judging.
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        if reader.reads != reads or inbox.pauses != pauses or inbox.paused:
            continue
        logger.debug("keepalive ping timeout: the peer is not answering")
        await engine.fail(WebSocketKeepaliveTimeout("keepalive ping timeout"), 1011)
        return
