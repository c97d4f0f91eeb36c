"""A WebSocket stream that survives reconnects: the feed's public face.

The loop (connect, greet, pump, judge, back off) is in ``_supervisor.py``, the
sessions are opened and judged by the holder in ``_holder.py``, the outbox is
``_outbox.py``; this module holds the API the application sees.
"""

from __future__ import annotations

import collections
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

import anyio
import httpx

from ._attempt import ConnectOptions, HeadersArg, ParamsArg
from ._backoff import Backoff as Backoff
from ._connect import DEFAULT_COMPRESSION
from ._feedinbox import FeedReceiving
from ._feedstate import FeedObserving
from ._feedstate import StateChange as StateChange
from ._feedstate import StateChanges as StateChanges
from ._holder import SessionHolder
from ._operators import TypedStreams
from ._outbox import FeedSending, Outbox
from ._outbox import OutboxFullError as OutboxFullError
from ._outbox import OutboxOverflow as OutboxOverflow
from ._policy import WebsocketPolicy
from ._supervisor import ConnectHook, FeedOptions, ResumeHook, Supervisor
from ._types import (
    DEFAULT_CLOSE_TIMEOUT_SECONDS,
    DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    DEFAULT_QUEUE_SIZE,
    USE_MAX_MESSAGE_SIZE,
    Message,
    Overflow,
    UseMaxMessageSize,
)
from .protocol._deflate import DeflateOptions

__all__ = [
    "Backoff",
    "OutboxFullError",
    "OutboxOverflow",
    "ReconnectingWebSocket",
    "StateChange",
    "StateChanges",
    "reconnecting_ws",
]

P = ParamSpec("P")
T = TypeVar("T")


class ReconnectingWebSocket(FeedObserving, FeedReceiving, FeedSending, TypedStreams):
    """A WebSocket stream that reconnects: ``async with reconnecting_ws(url) as feed:``.

    ``async for message in feed`` yields every message of every connection, in
    order; it ends when the feed is closed, and raises the
    :class:`~streams.DisconnectSignal` (or the hook's exception) that ended the
    feed, after the messages received before. One consumer at a time.

    Example::

        async def hello(ws):
            await ws.send_json({"op": "auth", "key": KEY})

        async with reconnecting_ws("wss://feed.example/ws", on_connect=hello) as feed:
            await feed.subscribe('{"op": "subscribe", "channel": "trades"}')
            async for message in feed:
                ...

    Entering returns at once; the first connection is made in the background
    (:meth:`~ReconnectingWebSocket.wait_connected` waits for it). When a
    connection ends, ``policy`` decides: reconnect (after a ``backoff`` wait),
    resume (``on_resume`` instead of ``on_connect`` and the subscriptions), or
    stop (iteration then raises :class:`~streams.DisconnectSignal`). Leaving
    the block closes the connection with code 1000.

    Args:
        url: the WebSocket URL.
        client: the :class:`httpx.AsyncClient` to connect with (not closed
            here); one default client for the feed's life if ``None``.
        on_connect: ``async def on_connect(ws)``, run after every connection
            that is not resumed, before the subscriptions are replayed and the
            outbox is flushed; authenticate here. Messages it receives are its own.
            An exception that is not a connection failure ends the feed.
        on_resume: ``async def on_resume(ws, resume_state) -> bool | None``,
            run instead of ``on_connect`` and the subscriptions after a
            connection the policy said to resume; ``resume_state`` is
            :attr:`ReconnectingWebSocket.resume_state`. Return ``False`` if
            the server refused to resume: ``on_connect`` and the subscriptions
            then run as usual.
        on_state_change: called with each :class:`StateChange` (errors are logged).
        on_undelivered: called with messages that will never be written
            (dropped on overflow, or left when the feed closed); without it
            they are logged. They are also kept in
            :attr:`ReconnectingWebSocket.undelivered`.
        backoff: the waits between attempts (default :class:`Backoff`).
        policy: what to do after each end (default :class:`~streams.WebsocketPolicy`).
        max_attempts: give up (DisconnectSignal) after this many consecutive
            attempts without a stable connection; ``None`` never gives up.
        outbox_size: how many messages may wait to be written.
        outbox_overflow: what ``send`` does when the outbox is full: ``"error"``
            (:class:`OutboxFullError`, the default), ``"wait"`` for room, or
            ``"drop_oldest"`` (reported as undelivered).
        clock: the monotonic clock, for the stable period (default
            :func:`anyio.current_time`).
        sleep: the backoff wait (default :func:`anyio.sleep`).
        rng: random floats in ``[0, 1)`` for the jitter (default :func:`random.random`).
        headers: the upgrade request's headers, or a function (sync or async)
            returning them, called before every attempt: a token that expires
            is renewed on reconnect.
        params: the query parameters, or a function returning them, likewise.
        subprotocols: the subprotocols to offer, in order of preference.
        max_message_size_bytes: as in :func:`~streams.aconnect_ws`, like the
            other session options: ``max_fragmented_size_bytes``, ``queue_size``,
            ``keepalive_ping_interval_seconds``,
            ``keepalive_ping_timeout_seconds``, ``close_timeout``, ``compression``,
            ``lag_timeout``, ``send_rate`` and ``send_rate_counts_pings``.
        overflow: the slow-consumer policy (see :func:`~streams.aconnect_ws`);
            with ``"disconnect"``, a consumer that fell behind ends the
            connection and the feed reconnects.
        stale_after: seconds without a data message before the connection
            ends; the feed then reconnects.
        **connect_options: passed to httpx's request (``cookies``, ``auth``,
            ``timeout``...), and ``session_class``.

    Raises:
        ValueError: an invalid option.
    """

    def __init__(
        self,
        url: httpx.URL | str,
        client: httpx.AsyncClient | None = None,
        *,
        on_connect: ConnectHook | None = None,
        on_resume: ResumeHook | None = None,
        on_state_change: Callable[[StateChange], object] | None = None,
        on_undelivered: Callable[[list[Message]], object] | None = None,
        backoff: Backoff | None = None,
        policy: WebsocketPolicy | None = None,
        max_attempts: int | None = None,
        outbox_size: int = 1024,
        outbox_overflow: OutboxOverflow = "error",
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        rng: Callable[[], float] | None = None,
        headers: HeadersArg = None,
        params: ParamsArg = None,
        subprotocols: list[str] | None = None,
        max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
        max_fragmented_size_bytes: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
        keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
        compression: DeflateOptions | None = DEFAULT_COMPRESSION,
        overflow: Overflow = "block",
        lag_timeout: float | None = None,
        stale_after: float | None = None,
        send_rate: float | tuple[float, int] | None = None,
        send_rate_counts_pings: bool = False,
        **connect_options: Any,
    ) -> None:
        connect = ConnectOptions.build(locals(), connect_options)
        self.url = url
        self._own_client = client is None  # one default client for the feed's life
        self._outbox = Outbox(outbox_size, outbox_overflow, on_undelivered)
        options = FeedOptions(
            on_connect=on_connect,
            on_resume=on_resume,
            on_state_change=on_state_change,
            backoff=backoff if backoff is not None else Backoff(),
            max_attempts=max_attempts,
            clock=clock if clock is not None else anyio.current_time,
            sleep=sleep if sleep is not None else anyio.sleep,
            rng=rng,
            close_timeout=connect.session.close_timeout,
        )
        policy = policy if policy is not None else WebsocketPolicy()
        holder = SessionHolder(client, connect, policy, "streams reconnect")
        self._loop = Supervisor(url, holder, self._outbox, options)
        self._leftover = collections.deque()
        self._entered = False

    # ------------------------------------------------------------------ life cycle

    async def __aenter__(self) -> Self:
        if self._entered or self._loop.finished:
            raise RuntimeError("a ReconnectingWebSocket can be entered only once")
        holder = self._loop.holder
        if self._own_client:
            holder.client = httpx.AsyncClient()
        await holder.host.enter()
        self._entered = True
        self._loop.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        holder = self._loop.holder
        try:
            await self.aclose()
        finally:
            try:
                await holder.host.exit(exc_type, exc, tb)
            finally:
                # Past the block, iteration ends (messages still buffered are dropped).
                self._loop.inbox.close()
                if self._own_client and holder.client is not None:
                    with anyio.CancelScope(shield=True):
                        await holder.client.aclose()

    async def aclose(self) -> None:
        """Close the feed: stop reconnecting, write the outbox if connected, close with 1000.

        Writing the outbox is bounded by the session's ``close_timeout``; what
        is left is reported as undelivered. Iteration ends after the messages
        already received. Calling it again does nothing.

        Cancelling is safe: the connection is then dropped without the closing handshake.
        """
        if self._entered:
            await self._loop.stop()

    def _check_entered(self) -> None:
        if not self._entered:
            raise RuntimeError("use the feed inside `async with reconnecting_ws(...) as feed:`")

    def _check(self) -> None:
        self._check_entered()
        self._loop.raise_if_finished()


def _factory(cls: Callable[P, T], doc: str) -> Callable[P, T]:
    """A function with the signature of ``cls`` that returns ``cls(...)``."""

    def make(*args: P.args, **kwargs: P.kwargs) -> T:
        return cls(*args, **kwargs)

    make.__signature__ = inspect.signature(cls)  # type: ignore[attr-defined]
    make.__doc__ = doc
    make.__name__ = make.__qualname__ = "reconnecting_ws"
    make.__module__ = __name__
    return make


reconnecting_ws = _factory(
    ReconnectingWebSocket,
    """Open a feed that reconnects: use as ``async with reconnecting_ws(url) as feed:``.

    It takes the arguments of :class:`ReconnectingWebSocket` (described there)
    and returns one.
    """,
)
