"""A WebSocket stream that survives reconnects.

:func:`reconnecting_ws` keeps a feed alive: when the connection ends, a
:class:`~streams.websocket.WebsocketPolicy` decides whether to reconnect,
resume or stop; reconnects wait an exponential :class:`Backoff` with jitter.
The consumer iterates one stream of messages across connections: a reconnect
is a gap, not an error. After every connection the ``on_connect`` hook runs
(authenticate) and the remembered subscriptions are sent again; messages sent
while disconnected wait in a bounded outbox and go out, in order, once
connected.

Inside, one supervisor task loops: connect, greet (hooks, subscriptions), pump
(a reader moving batches from the session into the feed's inbox channel, a
writer draining the outbox), then classify the end and wait. The inbox is an
anyio memory channel; the outbox is a deque, because it must take back the
batch being written when the connection fails before it is flushed, drop its
oldest entry on overflow and forget superseded subscriptions, which a channel
cannot do.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import enum
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import anyio
import anyio.abc
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._codec import encode_json, encode_json_text
from ._connect import aconnect_ws
from ._exceptions import HTTPXWSException
from ._session import AsyncWebSocketSession
from ._stream import TypedStreams
from ._types import DEFAULT_CLOSE_TIMEOUT_SECONDS, JSONMode, Message
from .websocket import (
    DisconnectSignal,
    WebsocketAction,
    WebsocketCause,
    WebsocketCauseKind,
    WebsocketPolicy,
    WebsocketState,
    _exit_task_group,
    _single_leaf,
)

__all__ = [
    "Backoff",
    "OutboxFullError",
    "OutboxOverflow",
    "ReconnectingWebSocket",
    "StateChange",
    "StateChanges",
    "reconnecting_ws",
]

logger = logging.getLogger("streams.reconnect")

#: What ``send()`` does when the outbox is full: raise :class:`OutboxFullError`,
#: wait for room, or drop the oldest waiting message (reported as undelivered).
OutboxOverflow = Literal["error", "wait", "drop_oldest"]

ConnectHook = Callable[[AsyncWebSocketSession], Awaitable[object]]
ResumeHook = Callable[[AsyncWebSocketSession, dict[str, Any]], Awaitable[bool | None]]

T = TypeVar("T")

# How many received batches may wait in the feed's inbox before the reader stops
# taking more from the session (whose own queue then applies backpressure).
_INBOX_BATCHES = 4


# --------------------------------------------------------------------------- backoff


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


# --------------------------------------------------------------------------- observation


@dataclasses.dataclass(frozen=True, slots=True)
class StateChange:
    """One change of a :class:`ReconnectingWebSocket`'s state.

    Attributes:
        state: the new state.
        attempt: the number of the current attempt since the last stable
            connection (1 for the first).
        connections: how many connections succeeded so far.
        cause: why the previous connection ended or the attempt failed.
        action: what the policy decided about ``cause``.
        delay: seconds until the next attempt (when DISCONNECTED and retrying).
        final: the feed is closed; this is the last change.
    """

    state: WebsocketState
    attempt: int
    connections: int
    cause: WebsocketCause | None = None
    action: WebsocketAction | None = None
    delay: float | None = None
    final: bool = False


class StateChanges:
    """The state changes of a feed, as an async iterator (made by ``feed.states()``).

    It is also an async context manager; leaving it, or :meth:`aclose`, stops
    the changes from queueing up. Dropping it does the same.
    """

    def __init__(self, channel: MemoryObjectReceiveStream[StateChange]) -> None:
        self._channel = channel

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StateChange:
        try:
            return await self._channel.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._channel.close()
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Stop receiving changes."""
        self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._channel.close()

    def __del__(self) -> None:
        # An observer nobody reads any more is simply dropped (the feed notices
        # the closed channel at the next change).
        self._channel.close()


class OutboxFullError(HTTPXWSException):
    """The outbox is full (``outbox_overflow="error"``): the message was not accepted.

    Attributes:
        message: the message that was refused.
    """

    def __init__(self, message: Message, size: int) -> None:
        self.message = message
        super().__init__(f"the outbox is full ({size} messages waiting); message not accepted")


class _Kind(enum.Enum):
    DATA = 0
    SUBSCRIBE = 1
    UNSUBSCRIBE = 2


@dataclasses.dataclass(slots=True, eq=False)
class _Entry:
    message: Message
    kind: _Kind


# --------------------------------------------------------------------------- the feed


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
        if outbox_size < 1:
            raise ValueError("outbox_size must be at least 1")
        if outbox_overflow not in ("error", "wait", "drop_oldest"):
            raise ValueError(f"unknown outbox_overflow {outbox_overflow!r}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None)")
        self.url = url
        self._client = client
        # One default client for the feed's life (made in __aenter__ if none is given),
        # rather than a new one (and a new TLS context) per attempt.
        self._own_client: httpx.AsyncClient | None = None
        self._on_connect = on_connect
        self._on_resume = on_resume
        self._on_state_change = on_state_change
        self._on_undelivered = on_undelivered
        self.backoff = backoff if backoff is not None else Backoff()
        self.policy = policy if policy is not None else WebsocketPolicy()
        self.max_attempts = max_attempts
        self.outbox_size = outbox_size
        self.outbox_overflow: OutboxOverflow = outbox_overflow
        self._clock = clock if clock is not None else anyio.current_time
        self._sleep = sleep if sleep is not None else anyio.sleep
        self._rng = rng
        self._connect_options = connect_options
        self._close_timeout: float | None = connect_options.get(
            "close_timeout", DEFAULT_CLOSE_TIMEOUT_SECONDS
        )

        #: What the application keeps across connections (session id, last
        #: sequence number...); handed to ``on_resume``.
        self.resume_state: dict[str, Any] = {}
        self._subscriptions: dict[Message, None] = {}
        self._outbox: collections.deque[_Entry] = collections.deque()
        self._in_flight: list[_Entry] = []
        self._undelivered: list[Message] = []
        self._observers: list[MemoryObjectSendStream[StateChange]] = []
        self._leftover: collections.deque[Message] = collections.deque()

        self._state = WebsocketState.DISCONNECTED
        self._last_change = StateChange(WebsocketState.DISCONNECTED, 0, 0)
        self._attempt = 0
        self._connections = 0
        self._last_cause: WebsocketCause | None = None
        self._session: AsyncWebSocketSession | None = None
        self._resume_pending = False
        self._final: BaseException | None = None
        self._stopping = False
        self._finished = False
        self._scope: anyio.CancelScope | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        # Made in __aenter__ (anyio primitives need the running event loop).
        self._inbox_send: MemoryObjectSendStream[list[Message]]
        self._inbox_receive: MemoryObjectReceiveStream[list[Message]]
        self._inbox_space: anyio.Event
        self._outbox_changed: anyio.Event
        self._state_changed: anyio.Event
        self._stop: anyio.Event
        self._done: anyio.Event

    # ------------------------------------------------------------------ life cycle

    async def __aenter__(self) -> Self:
        if self._task_group is not None or self._finished:
            raise RuntimeError("a ReconnectingWebSocket can be entered only once")
        self._inbox_send, self._inbox_receive = anyio.create_memory_object_stream[list[Message]](
            math.inf
        )
        self._inbox_space = anyio.Event()
        self._outbox_changed = anyio.Event()
        self._state_changed = anyio.Event()
        self._stop = anyio.Event()
        self._done = anyio.Event()
        if self._client is None:
            self._own_client = self._client = httpx.AsyncClient()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._supervise, name=f"streams reconnect {self.url}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None, "the feed was not entered"
        try:
            await self.aclose()
        finally:
            if not self._done.is_set():
                task_group.cancel_scope.cancel()
            try:
                await _exit_task_group(task_group, exc_type, exc_val, exc_tb)
            finally:
                # Past the block, iteration ends (messages still buffered are dropped).
                self._inbox_receive.close()
                if self._own_client is not None:
                    with anyio.CancelScope(shield=True):
                        await self._own_client.aclose()
        return None

    async def aclose(self) -> None:
        """Close the feed: stop reconnecting, write the outbox if connected, close with 1000.

        Writing the outbox is bounded by the session's ``close_timeout``; what
        is left is reported as undelivered. Iteration ends after the messages
        already received. Calling it again does nothing.

        Cancelling is safe: the connection is then dropped without the closing handshake.
        """
        if self._task_group is None:
            return
        self._stopping = True
        self._stop.set()
        if self._scope is not None:
            self._scope.cancel()
        await self._done.wait()

    # ------------------------------------------------------------------ observation

    @property
    def state(self) -> WebsocketState:
        """The current state: CONNECTING, CONNECTED, DISCONNECTED (waiting) or DISCONNECTING."""
        return self._state

    @property
    def attempt(self) -> int:
        """The number of the current attempt since the last stable connection (0 before any)."""
        return self._attempt

    @property
    def connections(self) -> int:
        """How many connections succeeded so far."""
        return self._connections

    @property
    def last_cause(self) -> WebsocketCause | None:
        """Why the last connection ended or the last attempt failed."""
        return self._last_cause

    @property
    def last_error(self) -> BaseException | None:
        """The exception behind :attr:`last_cause`, if any."""
        return None if self._last_cause is None else self._last_cause.exception

    @property
    def closed(self) -> bool:
        """Whether the feed is closed for good."""
        return self._finished

    @property
    def final_error(self) -> BaseException | None:
        """What ended the feed, when the policy or a hook did (``None`` for a normal close)."""
        return self._final

    @property
    def session(self) -> AsyncWebSocketSession | None:
        """The current session, or ``None`` while not connected."""
        return self._session if self._state is WebsocketState.CONNECTED else None

    @property
    def subscriptions(self) -> tuple[Message, ...]:
        """The remembered subscriptions, in the order they are replayed."""
        return tuple(self._subscriptions)

    @property
    def pending(self) -> tuple[Message, ...]:
        """The messages waiting in the outbox (those being written first)."""
        return tuple(entry.message for entry in [*self._in_flight, *self._outbox])

    @property
    def undelivered(self) -> list[Message]:
        """Every message that was accepted but never written: dropped by the
        ``drop_oldest`` overflow policy, or still waiting when the feed closed."""
        return list(self._undelivered)

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
        send, receive = anyio.create_memory_object_stream[StateChange](math.inf)
        send.send_nowait(self._last_change)
        if self._finished:
            send.close()
        else:
            self._observers.append(send)
        return StateChanges(receive)

    async def wait_connected(self) -> AsyncWebSocketSession:
        """Wait until connected (hooks done, subscriptions sent).

        Returns:
            The session.

        Raises:
            DisconnectSignal: the feed ended because of the policy (or the
                hook's exception, when a hook failed).
            anyio.ClosedResourceError: the feed was closed.
        """
        while True:
            self._raise_if_finished()
            session = self._session
            if self._state is WebsocketState.CONNECTED and session is not None:
                return session
            await self._state_changed.wait()

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
        """Return every message available now, waiting for one if there is none.

        Returns:
            At least one message; ``[]`` once the feed was closed (after the
            messages received before).

        Raises:
            DisconnectSignal: the policy ended the feed.
            Exception: whatever a hook raised, when that ended the feed.

        Cancelling is safe: no message is lost.
        """
        if self._leftover:
            batch = list(self._leftover)
            self._leftover.clear()
            return batch
        receive = self._inbox_receive
        try:
            batches = [await receive.receive()]
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            batches = []
        if not batches:
            # Raised outside the handler, so the traceback shows the real cause.
            if self._final is not None:
                raise self._final
            return []
        try:
            while True:
                batches.append(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            pass
        self._inbox_space.set()
        if len(batches) == 1:
            return batches[0]
        return [message for batch in batches for message in batch]

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
        self._raise_if_finished()
        await self._enqueue(_Entry(message, _Kind.DATA))

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
        self._raise_if_finished()
        if message in self._subscriptions:
            return
        self._subscriptions[message] = None
        try:
            await self._enqueue(_Entry(message, _Kind.SUBSCRIBE))
        except BaseException:
            self._subscriptions.pop(message, None)
            raise

    async def unsubscribe(
        self, message: Message, unsubscribe_message: Message | None = None
    ) -> None:
        """Forget a subscription; send ``unsubscribe_message`` (if given) through the outbox.

        A subscription still waiting in the outbox is dropped. The unsubscribe
        message is dropped too if a new connection starts before it is written
        (the new connection never had the subscription).
        """
        self._raise_if_finished()
        self._subscriptions.pop(message, None)
        for entry in [
            e for e in self._outbox if e.kind is _Kind.SUBSCRIBE and e.message == message
        ]:
            self._outbox.remove(entry)
        self._outbox_event()
        if unsubscribe_message is not None:
            await self._enqueue(_Entry(unsubscribe_message, _Kind.UNSUBSCRIBE))

    async def drain(self) -> None:
        """Wait until every queued message has been written.

        Raises:
            DisconnectSignal: the policy ended the feed before (see :attr:`undelivered`).
            anyio.ClosedResourceError: the feed was closed before.
        """
        while self._outbox or self._in_flight:
            self._raise_if_finished()
            await self._outbox_changed.wait()

    def _raise_if_finished(self) -> None:
        if self._task_group is None:
            raise RuntimeError("use the feed inside `async with reconnecting_ws(...) as feed:`")
        if self._finished or self._stopping:
            if self._final is not None:
                raise self._final
            raise anyio.ClosedResourceError

    def _outbox_event(self) -> None:
        self._outbox_changed.set()
        self._outbox_changed = anyio.Event()

    async def _enqueue(self, entry: _Entry) -> None:
        while len(self._outbox) >= self.outbox_size:
            if self.outbox_overflow == "error":
                raise OutboxFullError(entry.message, len(self._outbox))
            if self.outbox_overflow == "drop_oldest":
                dropped = self._outbox.popleft()
                self._report_undelivered([dropped.message])
                continue
            await self._outbox_changed.wait()
            self._raise_if_finished()
        self._outbox.append(entry)
        self._outbox_event()

    def _report_undelivered(self, messages: list[Message]) -> None:
        self._undelivered.extend(messages)
        if self._on_undelivered is not None:
            try:
                self._on_undelivered(list(messages))
            except Exception:
                logger.exception("on_undelivered callback failed")
        else:
            logger.warning("%d message(s) were not delivered", len(messages))

    # ------------------------------------------------------------------ supervisor

    def _set_state(
        self,
        state: WebsocketState,
        *,
        cause: WebsocketCause | None = None,
        action: WebsocketAction | None = None,
        delay: float | None = None,
        final: bool = False,
    ) -> None:
        change = StateChange(state, self._attempt, self._connections, cause, action, delay, final)
        self._state = state
        self._last_change = change
        for observer in list(self._observers):
            try:
                observer.send_nowait(change)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                observer.close()  # nobody listens any more
                self._observers.remove(observer)
        if self._on_state_change is not None:
            try:
                self._on_state_change(change)
            except Exception:
                logger.exception("on_state_change callback failed")
        self._state_changed.set()
        self._state_changed = anyio.Event()

    async def _supervise(self) -> None:
        delays = self.backoff.delays(self._rng)
        try:
            while not self._stopping:
                self._attempt += 1
                self._set_state(WebsocketState.CONNECTING, cause=self._last_cause)
                outcome = await self._connect_once()
                if outcome is None:
                    break
                cause, uptime = outcome
                self._last_cause = cause
                action = self.policy.decide(cause)
                logger.info("%s: %s (%s)", self.url, cause.describe(), action.value)
                if uptime is not None:
                    self._resume_pending = action is WebsocketAction.RESUME
                    if uptime >= self.backoff.stable_after:
                        self._attempt = 0
                        delays = self.backoff.delays(self._rng)
                elif action is WebsocketAction.RESUME:
                    self._resume_pending = True
                if action is WebsocketAction.DISCONNECT:
                    self._final = DisconnectSignal(cause)
                    self._final.__cause__ = cause.exception
                    break
                if self.max_attempts is not None and self._attempt >= self.max_attempts:
                    self._final = DisconnectSignal(
                        cause, f"gave up after {self._attempt} attempts: {cause.describe()}"
                    )
                    self._final.__cause__ = cause.exception
                    break
                delay = next(delays)
                if cause.retry_after is not None:
                    delay = max(delay, min(cause.retry_after, self.backoff.maximum))
                self._set_state(
                    WebsocketState.DISCONNECTED, cause=cause, action=action, delay=delay
                )
                with anyio.CancelScope() as scope:
                    self._scope = scope
                    if self._stopping:
                        scope.cancel()
                    await self._sleep(delay)
                self._scope = None
        except Exception as exc:
            # A hook failed, or the URL is unusable: the feed ends with that error.
            logger.debug("feed for %s failed", self.url, exc_info=True)
            self._final = exc
        finally:
            self._finish()

    async def _connect_once(self) -> tuple[WebsocketCause, float | None] | None:
        """One connection, from the handshake to its end.

        Returns:
            Why it ended and how long it was up (``None`` if it never was up),
            or ``None`` if the feed is being closed.
        """
        established: float | None = None
        cause: WebsocketCause | None = None
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._stopping:
                    scope.cancel()
                async with aconnect_ws(self.url, self._client, **self._connect_options) as ws:
                    self._session = ws
                    await self._greet(ws)
                    # From now on aclose() stops the pump and the session closes gracefully.
                    self._scope = None
                    if self._stopping:
                        return None
                    established = self._clock()
                    self._connections += 1
                    self._set_state(WebsocketState.CONNECTED)
                    cause = await self._pump(ws)
                    if cause is None:
                        self._set_state(WebsocketState.DISCONNECTING)
        except Exception as exc:
            if cause is None and not self._stopping:
                cause = WebsocketCause.from_exception(exc, connecting=established is None)
                if cause is None:
                    leaf = _single_leaf(exc)
                    if leaf is not exc and isinstance(leaf, Exception):
                        raise leaf from None  # a hook's own error, unwrapped
                    raise
            # Otherwise closing failed after the end was known: nothing to add.
        finally:
            self._session = None
            self._scope = None
        if cause is None:
            return None
        uptime = None if established is None else self._clock() - established
        return cause, uptime

    async def _greet(self, ws: AsyncWebSocketSession) -> None:
        """Run the hooks, then replay the subscriptions (unless the session was resumed)."""
        resumed = False
        if self._resume_pending and self._on_resume is not None:
            resumed = (await self._on_resume(ws, self.resume_state)) is not False
        if not resumed:
            if self._on_connect is not None:
                await self._on_connect(ws)
            for message in list(self._subscriptions):
                await _transmit(ws, message)
            # Queued (un)subscriptions are superseded by the replay.
            if any(entry.kind is not _Kind.DATA for entry in self._outbox):
                kept = [entry for entry in self._outbox if entry.kind is _Kind.DATA]
                self._outbox = collections.deque(kept)
                self._outbox_event()
        self._resume_pending = False

    async def _pump(self, ws: AsyncWebSocketSession) -> WebsocketCause | None:
        """Move messages both ways until the session ends (its cause) or the feed closes (None)."""
        ends: list[WebsocketCause] = []

        def ended(exc: Exception) -> None:
            cause = WebsocketCause.from_exception(exc, connecting=False)
            if cause is None:
                raise exc
            ends.append(cause)

        # The connection is over when the session ended or the feed closes; the
        # writer then finishes the batch it is writing (so that what was written
        # is not written again), bounded by the close timeout.
        over = anyio.Event()

        def finish() -> None:
            over.set()
            self._outbox_event()

        async with anyio.create_task_group() as task_group:
            reading = anyio.CancelScope()

            async def read() -> None:
                with reading:
                    try:
                        while True:
                            while (
                                self._inbox_send.statistics().current_buffer_used >= _INBOX_BATCHES
                            ):
                                self._inbox_space = anyio.Event()
                                await self._inbox_space.wait()
                            batch = await ws._receive_batch()
                            if not batch:
                                code = ws.close_code
                                ends.append(
                                    WebsocketCause.closed(
                                        1005 if code is None else code, ws.close_reason
                                    )
                                )
                                break
                            self._inbox_send.send_nowait(batch)
                    except Exception as exc:
                        ended(exc)
                finish()

            async def write() -> None:
                try:
                    await self._write_loop(ws, over)
                except Exception as exc:
                    ended(exc)
                task_group.cancel_scope.cancel()

            async def watch_stop() -> None:
                await self._stop.wait()
                reading.cancel()
                finish()

            async def deadline() -> None:
                await over.wait()
                timeout = self._close_timeout
                await anyio.sleep(math.inf if timeout is None else timeout)
                task_group.cancel_scope.cancel()

            for task in (read, write, watch_stop, deadline):
                task_group.start_soon(task)

        if self._stopping:
            return None
        # A failed write cancelled the reader: keep what the session had received.
        received: list[Message] = []
        try:
            while True:
                received.append(ws.receive_stream.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        if received:
            self._inbox_send.send_nowait(received)
        return ends[0]

    async def _write_loop(self, ws: AsyncWebSocketSession, over: anyio.Event) -> None:
        """Write the outbox, a batch at a time, until the connection is ``over``.

        When it is over because the feed closes, the outbox is written first.

        A batch leaves the outbox only once the session flushed it to the
        network; if the connection fails first, the whole batch goes back to
        the front of the outbox, for the next connection.
        """
        while True:
            while not self._outbox:
                if over.is_set():
                    return
                await self._outbox_changed.wait()
            if over.is_set() and not self._stopping:
                return  # the session ended: the rest waits for the next connection
            batch = list(self._outbox)
            self._outbox.clear()
            self._in_flight = batch
            self._outbox_event()
            try:
                for entry in batch:
                    await _transmit(ws, entry.message)
                await ws.flush()
            except BaseException:
                self._outbox.extendleft(reversed(batch))
                raise
            finally:
                self._in_flight = []
                self._outbox_event()

    def _finish(self) -> None:
        self._finished = True
        self._scope = None
        final = self._final
        if isinstance(final, DisconnectSignal):
            cause: WebsocketCause | None = final.cause
        elif final is None:
            cause = WebsocketCause(WebsocketCauseKind.CLIENT_DISCONNECT)
        else:
            cause = None
        self._set_state(
            WebsocketState.DISCONNECTED,
            cause=cause,
            action=WebsocketAction.DISCONNECT,
            final=True,
        )
        for observer in self._observers:
            observer.close()
        self._observers.clear()
        self._inbox_send.close()
        left = [entry.message for entry in self._outbox]
        self._outbox.clear()
        if left:
            self._report_undelivered(left)
        self._outbox_event()
        self._inbox_space.set()
        self._done.set()


async def _transmit(ws: AsyncWebSocketSession, message: Message) -> None:
    if isinstance(message, str):
        await ws.send_text(message)
    else:
        await ws.send_bytes(message)


def reconnecting_ws(
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
) -> ReconnectingWebSocket:
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
    """
    return ReconnectingWebSocket(
        url,
        client,
        on_connect=on_connect,
        on_resume=on_resume,
        on_state_change=on_state_change,
        on_undelivered=on_undelivered,
        backoff=backoff,
        policy=policy,
        max_attempts=max_attempts,
        outbox_size=outbox_size,
        outbox_overflow=outbox_overflow,
        clock=clock,
        sleep=sleep,
        rng=rng,
        **connect_options,
    )
