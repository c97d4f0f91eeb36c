"""A WebSocket stream that survives reconnects: the feed's public face.

The loop (connect, greet, pump, judge, back off) is in ``_supervisor.py``, the
sessions are opened and judged by the holder in ``_holder.py``, the outbox is
``_outbox.py``; this module holds the API the application sees.
"""

from __future__ import annotations

import builtins
import collections
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

import anyio
import httpx

from ._backoff import Backoff as Backoff
from ._codec import encode_json, encode_json_text
from ._holder import SessionHolder
from ._outbox import Entry, Kind, Outbox
from ._outbox import OutboxFullError as OutboxFullError
from ._outbox import OutboxOverflow as OutboxOverflow
from ._packets import WebsocketState
from ._policy import WebsocketCause, WebsocketPolicy
from ._session import AsyncWebSocketSession
from ._stream import TypedStreams
from ._supervisor import ConnectHook, FeedOptions, ResumeHook, Supervisor
from ._supervisor import StateChange as StateChange
from ._supervisor import StateChanges as StateChanges
from ._types import DEFAULT_CLOSE_TIMEOUT_SECONDS, JSONMode, Message

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


class ReconnectingWebSocket(TypedStreams):
    """A WebSocket stream that reconnects; made by :func:`reconnecting_ws` (see there).

    ``async for message in feed`` yields every message of every connection, in
    order; it ends when the feed is closed, and raises the
    :class:`~streams.DisconnectSignal` (or the hook's exception) that ended the
    feed, after the messages received before. One consumer at a time.
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
        **connect_options: Any,
    ) -> None:
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
            close_timeout=connect_options.get("close_timeout", DEFAULT_CLOSE_TIMEOUT_SECONDS),
        )
        policy = policy if policy is not None else WebsocketPolicy()
        holder = SessionHolder(client, connect_options, policy, "streams reconnect")
        self._loop = Supervisor(url, holder, self._outbox, options)
        self._leftover: collections.deque[Message] = collections.deque()
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

    # ------------------------------------------------------------------ observation

    @property
    def policy(self) -> WebsocketPolicy:
        """What to do after each end (may be replaced at any time)."""
        return self._loop.holder.policy

    @policy.setter
    def policy(self, policy: WebsocketPolicy) -> None:
        self._loop.holder.policy = policy

    @property
    def backoff(self) -> Backoff:
        """The waits between attempts."""
        return self._loop.options.backoff

    @property
    def max_attempts(self) -> int | None:
        """Consecutive attempts without a stable connection before giving up (``None``: never)."""
        return self._loop.options.max_attempts

    @property
    def outbox_size(self) -> int:
        """How many messages may wait to be written."""
        return self._outbox.size

    @property
    def outbox_overflow(self) -> OutboxOverflow:
        """What ``send`` does when the outbox is full."""
        return self._outbox.overflow

    @property
    def resume_state(self) -> dict[str, Any]:
        """What the application keeps across connections (session id, last
        sequence number...); handed to ``on_resume``."""
        return self._loop.resume_state

    @property
    def state(self) -> WebsocketState:
        """The current state: CONNECTING, CONNECTED, DISCONNECTED (waiting) or DISCONNECTING."""
        return self._loop.state

    @property
    def attempt(self) -> int:
        """The number of the current attempt since the last stable connection (0 before any)."""
        return self._loop.attempt

    @property
    def connections(self) -> int:
        """How many connections succeeded so far."""
        return self._loop.connections

    @property
    def last_cause(self) -> WebsocketCause | None:
        """Why the last connection ended or the last attempt failed."""
        return self._loop.last_cause

    @property
    def last_error(self) -> BaseException | None:
        """The exception behind :attr:`last_cause`, if any."""
        cause = self._loop.last_cause
        return None if cause is None else cause.exception

    @property
    def closed(self) -> bool:
        """Whether the feed is closed for good."""
        return self._loop.finished

    @property
    def final_error(self) -> BaseException | None:
        """What ended the feed, when the policy or a hook did (``None`` for a normal close)."""
        return self._loop.final

    @property
    def session(self) -> AsyncWebSocketSession | None:
        """The current session, or ``None`` while not connected."""
        return self._loop.session if self._loop.state is WebsocketState.CONNECTED else None

    @property
    def subscriptions(self) -> tuple[Message, ...]:
        """The remembered subscriptions, in the order they are replayed."""
        return tuple(self._outbox.subscriptions)

    @property
    def pending(self) -> tuple[Message, ...]:
        """The messages waiting in the outbox (those being written first)."""
        return self._outbox.pending

    @property
    def undelivered(self) -> list[Message]:
        """Every message that was accepted but never written: dropped by the
        ``drop_oldest`` overflow policy, or still waiting when the feed closed."""
        return list(self._outbox.undelivered)

    def states(self) -> StateChanges:
        """Return the state changes from now on, starting with the current state.

        Example::

            async for change in feed.states():
                log.info("%s (attempt %d): %s", change.state.name, change.attempt, change.cause)

        Returns:
            An async iterator that ends after the final change (``final=True``).
            Changes wait for it unbounded: iterate it, or close it
            (``aclose()``, ``async with``) or drop it when no longer interested.
        """
        return self._loop.observe()

    async def wait_connected(self) -> AsyncWebSocketSession:
        """Wait until connected (hooks done, subscriptions sent).

        Returns:
            The session.

        Raises:
            DisconnectSignal: the feed ended because of the policy (or the
                hook's exception, when a hook failed).
            anyio.ClosedResourceError: the feed was closed.
        """
        self._check_entered()
        return await self._loop.wait_connected()

    # ------------------------------------------------------------------ receiving

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        if not self._leftover:
            batch = await self._receive_batch()
            if not batch:
                raise StopAsyncIteration
            self._leftover.extend(batch)
        return self._leftover.popleft()

    async def receive(self) -> Message:
        """Return the next message, whichever connection it came on.

        Raises:
            DisconnectSignal: the feed ended because of the policy (after every
                message received before).
            anyio.EndOfStream: the feed was closed.

        Cancelling is safe: no message is lost.
        """
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None

    def _unread_batch(self, messages: list[Message]) -> None:
        """Put messages back in front of the next :meth:`_receive_batch` (for typed streams)."""
        self._leftover.extendleft(reversed(messages))

    async def _receive_batch(self) -> list[Message]:
        """Every message available now, waiting for one; ``[]`` once the feed was closed.

        Cancelling is safe: no message is lost.
        """
        if self._leftover:
            batch = list(self._leftover)
            self._leftover.clear()
            return batch
        return await self._loop.take_batch()

    # ------------------------------------------------------------------ sending

    async def send(self, message: Message) -> None:
        """Queue a message; it is written as soon as a connection takes it.

        Messages go out in the order they were queued, after the hooks and the
        subscriptions of the connection that writes them. A message leaves the
        outbox once flushed to the network; if the connection breaks first,
        it is written again on the next connection (so a message the server
        had already received may arrive twice).

        Raises:
            OutboxFullError: the outbox is full and ``outbox_overflow="error"``.
            DisconnectSignal: the feed ended because of the policy.
            anyio.ClosedResourceError: the feed was closed.

        Cancelling is safe: with ``outbox_overflow="wait"``, a cancelled call
        queued nothing.
        """
        self._check()
        await self._outbox.put(Entry(message, Kind.DATA), self._check)

    async def send_text(self, data: str) -> None:
        """Queue a text message (see :meth:`send`)."""
        await self.send(str(data))

    async def send_bytes(self, data: builtins.bytes) -> None:
        """Queue a binary message (see :meth:`send`)."""
        await self.send(builtins.bytes(data))

    async def send_json(self, data: Any, mode: JSONMode = "text") -> None:
        """Queue a value as JSON, encoded with msgspec (see :meth:`send`).

        Raises:
            TypeError: msgspec cannot encode ``data``.
        """
        if mode == "text":
            await self.send(encode_json_text(data))
        elif mode == "binary":
            await self.send(encode_json(data))
        else:
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")

    async def subscribe(self, message: Message) -> None:
        """Send a subscription message now (through the outbox) and again after every reconnect.

        Subscribing twice to the same message does nothing the second time.
        After a resume (the server kept the session) subscriptions are not
        sent again.

        Raises:
            OutboxFullError: the outbox is full and ``outbox_overflow="error"``
                (the subscription is then not remembered).
        """
        self._check()
        if message in self._outbox.subscriptions:
            return
        self._outbox.subscriptions[message] = None
        try:
            await self._outbox.put(Entry(message, Kind.SUBSCRIBE), self._check)
        except BaseException:
            self._outbox.subscriptions.pop(message, None)
            raise

    async def unsubscribe(
        self, message: Message, unsubscribe_message: Message | None = None
    ) -> None:
        """Forget a subscription; send ``unsubscribe_message`` (if given) through the outbox.

        A subscription still waiting in the outbox is dropped. The unsubscribe
        message is dropped too if a new connection starts before it is written
        (the new connection never had the subscription).
        """
        self._check()
        self._outbox.forget(message)
        if unsubscribe_message is not None:
            await self._outbox.put(Entry(unsubscribe_message, Kind.UNSUBSCRIBE), self._check)

    async def drain(self) -> None:
        """Wait until every queued message has been written.

        Raises:
            DisconnectSignal: the policy ended the feed before (see :attr:`undelivered`).
            anyio.ClosedResourceError: the feed was closed before.
        """
        while not self._outbox.empty:
            self._check()
            await self._outbox.changed()

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
    **connect_options: passed to :func:`~streams.aconnect_ws` (keepalive,
        queue size, headers, subprotocols, httpx ``timeout``...).

Returns:
    The feed, an async context manager.

Raises:
    ValueError: an invalid option.
""",
)
