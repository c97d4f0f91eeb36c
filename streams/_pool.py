"""An upgraded connection leaves httpcore's connection pool: the one place that does it.

httpcore keeps the connection of a 101 response in its pool for as long as
the response is open, which for a WebSocket is the session's whole life: a
client with httpx's default limits would stop at 100 open sessions, and every
new request scans every open session (opening N sessions costs N² steps).
httpcore has no public way to hand a connection over, so this module takes it
out of the pool's lists (private attributes of httpx's response stream and
of httpcore's pool), after which the pool never sees it again: the session
alone owns and closes it.

When the shapes are not the known ones, nothing changes: the session keeps
its slot as with httpx-ws, and a full pool raises a ``PoolTimeout`` that says
to raise ``max_connections`` (see ``streams._connect_errors``).
``tests/test_pool.py`` fails loudly if the shortcut turns off.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

__all__ = ["leave_pool", "leave_pool_sync"]

logger = logging.getLogger("streams")


async def leave_pool(response: httpx.Response) -> bool:
    """Take the upgraded connection of ``response`` out of its pool; return whether it left.

    Afterwards closing the response no longer touches the pool or the
    connection: the session closes the network stream itself.
    """
    left = _leave(response)
    if left is None:
        return False
    pool, closing = left
    if closing:
        await pool._close_connections(closing)
    return True


def leave_pool_sync(response: httpx.Response) -> bool:
    """:func:`leave_pool` for a response of an ``httpx.Client`` (httpcore's sync pool)."""
    left = _leave(response)
    if left is None:
        return False
    pool, closing = left
    if closing:
        pool._close_connections(closing)
    return True


def _leave(response: httpx.Response) -> tuple[Any, list[Any]] | None:
    """Take the connection out of the pool's lists; return the pool and what it must close."""
    # httpx's client wraps its transport's response stream (BoundAsyncStream).
    stream: Any = response.stream
    for _ in range(3):
        if hasattr(stream, "_httpcore_stream"):
            break
        stream = getattr(stream, "_stream", None)
    pool_stream: Any = getattr(stream, "_httpcore_stream", None)
    pool: Any = getattr(pool_stream, "_pool", None)
    pool_request: Any = getattr(pool_stream, "_pool_request", None)
    requests = getattr(pool, "_requests", None)
    connections = getattr(pool, "_connections", None)
    if (
        pool_request is None
        or not isinstance(requests, list)
        or not isinstance(connections, list)
        or not isinstance(getattr(pool_stream, "_closed", None), bool)
        or not hasattr(pool_stream, "_stream")
        or not callable(getattr(pool, "_assign_requests_to_connections", None))
        or not callable(getattr(pool, "_close_connections", None))
        or not hasattr(getattr(pool, "_optional_thread_lock", None), "__enter__")
        or pool_request not in requests
    ):
        logger.debug("unknown connection pool shape: the session keeps its pool slot")
        return None
    connection = getattr(pool_request, "connection", None)
    with pool._optional_thread_lock:
        # A request waits for a slot only while the pool is full; the others got
        # theirs as they came. (Opening many sessions at once would otherwise
        # cost a scan of every request and connection each.)
        full = _full(pool, connections)
        requests.remove(pool_request)
        if connection in connections:
            connections.remove(connection)
        # Requests waiting for a free slot may go on now.
        closing = pool._assign_requests_to_connections() if full else []
    # The response's close must not hand the connection back (or close it).
    pool_stream._closed = True
    # Nor keep httpcore's connection objects (HTTP/1.1 state, locks, the
    # request) alive for the session's whole life: only the network stream,
    # which the session holds, is used from now on.
    pool_stream._stream = httpx.ByteStream(b"")
    pool_stream._pool_request = None
    return pool, closing


def _full(pool: Any, connections: list[Any]) -> bool:
    """Whether the pool holds as many connections as it may (unknown shapes count as full)."""
    limit = getattr(pool, "_max_connections", None)
    return not isinstance(limit, int) or len(connections) >= limit
