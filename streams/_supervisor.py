"""The loop of a reconnecting feed: connect, greet, pump, judge, back off, again.

One supervisor task (in the session holder's task group) loops: open a session
through the :class:`~streams._holder.SessionHolder`, greet it (the hooks, then
the remembered subscriptions), pump (a reader moving batches from the session
into the feed's inbox channel, a writer draining the outbox), then judge the
end with the policy and wait a backoff delay. The inbox is an anyio memory
channel; the outbox is an :class:`~streams._outbox.Outbox`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._backoff import Backoff
from ._checks import check_int
from ._classify import single_leaf
from ._feedstate import StateChange, StateChanges
from ._feedtimes import FeedReadTimes
from ._holder import Held, SessionHolder
from ._outbox import Outbox
from ._packets import WebsocketState
from ._policy import DisconnectSignal, WebsocketAction, WebsocketCause, WebsocketCauseKind
from ._session import AsyncWebSocketSession
from ._types import Message

__all__ = ["FeedOptions", "Supervisor"]

logger = logging.getLogger("streams.reconnect")

ConnectHook = Callable[[AsyncWebSocketSession], Awaitable[object]]
ResumeHook = Callable[[AsyncWebSocketSession, dict[str, Any]], Awaitable[bool | None]]

# How many received batches may wait in the feed's inbox before the reader stops
# taking more from the session (whose own queue then applies backpressure).
_INBOX_BATCHES = 4

_CONNECTED, _CONNECTING = WebsocketState.CONNECTED, WebsocketState.CONNECTING
_DISCONNECTED, _DISCONNECTING = WebsocketState.DISCONNECTED, WebsocketState.DISCONNECTING


@dataclasses.dataclass(frozen=True, slots=True)
class FeedOptions:
    """How a feed's loop behaves, built once from the feed's keywords."""

    on_connect: ConnectHook | None
    on_resume: ResumeHook | None
    on_state_change: Callable[[StateChange], object] | None
    backoff: Backoff
    max_attempts: int | None
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[object]]
    rng: Callable[[], float] | None
    close_timeout: float | None

    def __post_init__(self) -> None:
        if self.max_attempts is not None:
            check_int("max_attempts", self.max_attempts, 1)


class Supervisor:
    """Runs a feed's connections one after the other, in a task of the holder's group.

    Args:
        url: the WebSocket URL.
        holder: opens the sessions and judges their ends.
        outbox: what waits to be written, and the subscriptions.
        options: the hooks, the backoff and its clock.
    """

    def __init__(
        self, url: Any, holder: SessionHolder, outbox: Outbox, options: FeedOptions
    ) -> None:
        self.url = url
        self.holder = holder
        self.outbox = outbox
        self.options = options
        #: What the application keeps across connections; handed to ``on_resume``.
        self.resume_state: dict[str, Any] = {}
        self.state = _DISCONNECTED
        self.last_change = StateChange(_DISCONNECTED, 0, 0)
        self.attempt = 0
        self.connections = 0
        self.last_cause: WebsocketCause | None = None
        self.session: AsyncWebSocketSession | None = None
        self.final: BaseException | None = None
        self.stopping = False
        self.finished = False
        self._resume_pending = False
        self._observers: list[MemoryObjectSendStream[StateChange]] = []
        self._scope: anyio.CancelScope | None = None
        #: When each message was read, once a ``timestamp()`` asks; and the
        #: messages in the channel (the consumer's side finds times from it).
        self.read_times: FeedReadTimes | None = None
        self.inbox_count = 0
        # Made in start() (anyio primitives need the running event loop).
        self._inbox_send: MemoryObjectSendStream[list[Message]]
        self.inbox: MemoryObjectReceiveStream[list[Message]]
        self._inbox_space: anyio.Event
        self._state_changed: anyio.Event
        self._stop: anyio.Event
        self._done: anyio.Event

    def start(self) -> None:
        """Start the loop in the holder's task group."""
        self._inbox_send, self.inbox = anyio.create_memory_object_stream[list[Message]](math.inf)
        self._inbox_space = anyio.Event()
        self._state_changed = anyio.Event()
        self._stop = anyio.Event()
        self._done = anyio.Event()
        group = self.holder.host.group
        assert group is not None
        group.start_soon(self._run, name=f"streams reconnect {self.url}")

    @property
    def done(self) -> bool:
        """Whether the loop has ended."""
        return self._done.is_set()

    async def stop(self) -> None:
        """Stop reconnecting, write the outbox if connected, close; wait until done."""
        self.stopping = True
        self._stop.set()
        if self._scope is not None:
            self._scope.cancel()
        await self._done.wait()

    def raise_if_finished(self) -> None:
        """Raise what ended the feed (``ClosedResourceError`` for a close), if it ended."""
        if self.finished or self.stopping:
            if self.final is not None:
                raise self.final
            raise anyio.ClosedResourceError

    # ------------------------------------------------------------------ observation

    def observe(self) -> StateChanges:
        """The state changes from now on, starting with the current state."""
        send, receive = anyio.create_memory_object_stream[StateChange](math.inf)
        send.send_nowait(self.last_change)
        if self.finished:
            send.close()
        else:
            self._observers.append(send)
        return StateChanges(receive)

    async def wait_connected(self) -> AsyncWebSocketSession:
        """Wait until connected (hooks done, subscriptions sent); return the session."""
        while True:
            self.raise_if_finished()
            session = self.session
            if self.state is _CONNECTED and session is not None:
                return session
            await self._state_changed.wait()

    def _set_state(
        self,
        state: WebsocketState,
        *,
        cause: WebsocketCause | None = None,
        action: WebsocketAction | None = None,
        delay: float | None = None,
        final: bool = False,
    ) -> None:
        change = StateChange(state, self.attempt, self.connections, cause, action, delay, final)
        self.state = state
        self.last_change = change
        for observer in list(self._observers):
            try:
                observer.send_nowait(change)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                observer.close()  # nobody listens any more
                self._observers.remove(observer)
        if self.options.on_state_change is not None:
            try:
                self.options.on_state_change(change)
            except Exception:
                logger.exception("on_state_change callback failed")
        self._state_changed.set()
        self._state_changed = anyio.Event()

    # ------------------------------------------------------------------ receiving

    async def take_batch(self) -> list[Message]:
        """Every batch received now, waiting for one; ``[]`` once the feed was closed.

        Raises:
            DisconnectSignal: the policy ended the feed.
            Exception: whatever a hook raised, when that ended the feed.

        Cancelling is safe: no message is lost.
        """
        receive = self.inbox
        try:
            batches = [await receive.receive()]
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            batches = []
        if not batches:
            # Raised outside the handler, so the traceback shows the real cause.
            if self.final is not None:
                raise self.final
            return []
        try:
            while True:
                batches.append(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            pass
        self._inbox_space.set()
        taken = batches[0] if len(batches) == 1 else [m for batch in batches for m in batch]
        self.inbox_count -= len(taken)
        return taken

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        backoff = self.options.backoff
        delays = backoff.delays(self.options.rng)
        try:
            while not self.stopping:
                self.attempt += 1
                self._set_state(_CONNECTING, cause=self.last_cause)
                outcome = await self._connect_once()
                if outcome is None:
                    break
                cause, action, uptime = outcome
                self.last_cause = cause
                logger.info("%s: %s (%s)", self.url, cause.describe(), action.value)
                if uptime is not None:
                    self._resume_pending = action is WebsocketAction.RESUME
                    if uptime >= backoff.stable_after:
                        self.attempt = 0
                        delays = backoff.delays(self.options.rng)
                elif action is WebsocketAction.RESUME:
                    self._resume_pending = True
                max_attempts = self.options.max_attempts
                if action is WebsocketAction.DISCONNECT:
                    self.final = DisconnectSignal(cause)
                elif max_attempts is not None and self.attempt >= max_attempts:
                    why = f"gave up after {self.attempt} attempts: {cause.describe()}"
                    self.final = DisconnectSignal(cause, why)
                if self.final is not None:
                    self.final.__cause__ = cause.exception
                    break
                delay = next(delays)
                if cause.retry_after is not None:
                    delay = max(delay, min(cause.retry_after, backoff.maximum))
                self._set_state(_DISCONNECTED, cause=cause, action=action, delay=delay)
                with anyio.CancelScope() as scope:
                    self._scope = scope
                    if self.stopping:
                        scope.cancel()
                    await self.options.sleep(delay)
                self._scope = None
        except Exception as exc:
            # A hook failed, or the URL is unusable: the feed ends with that error.
            logger.debug("feed for %s failed", self.url, exc_info=True)
            self.final = exc
        finally:
            self._finish()

    async def _connect_once(
        self,
    ) -> tuple[WebsocketCause, WebsocketAction, float | None] | None:
        """One connection, from the handshake to its end.

        Returns:
            Why it ended, what the policy says, and how long it was up (``None``
            if it never was up); or ``None`` if the feed is being closed.
        """
        established: float | None = None
        ended: WebsocketCause | None = None
        held = Held()
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self.stopping:
                    scope.cancel()
                ws = await self.holder.open(self.url, held)
                self.session = ws
                await self._greet(ws)
                # From now on stop() ends the pump and the session closes gracefully.
                self._scope = None
                if self.stopping:
                    return None
                established = self.options.clock()
                self.connections += 1
                self._set_state(_CONNECTED)
                ended = await self._pump(ws)
                if ended is None:
                    self._set_state(_DISCONNECTING)
        except Exception as exc:
            if self.stopping:
                return None
            verdict = self.holder.judge(exc, connecting=established is None)
            if verdict is None:
                leaf = single_leaf(exc)
                if leaf is not exc and isinstance(leaf, Exception):
                    raise leaf from None
                raise
            ended = verdict[0]
        finally:
            self.session = None
            self._scope = None
            await held.close()
        if ended is None:
            return None
        uptime = None if established is None else self.options.clock() - established
        return ended, self.holder.policy.decide(ended), uptime

    async def _greet(self, ws: AsyncWebSocketSession) -> None:
        """Run the hooks, then replay the subscriptions (unless the session was resumed)."""
        resumed = False
        if self._resume_pending and self.options.on_resume is not None:
            resumed = (await self.options.on_resume(ws, self.resume_state)) is not False
        if not resumed:
            if self.options.on_connect is not None:
                await self.options.on_connect(ws)
            for message in list(self.outbox.subscriptions):
                await _transmit(ws, message)
            self.outbox.replayed()
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
            self.outbox.notify()

        async with anyio.create_task_group() as task_group:
            reading = anyio.CancelScope()

            async def read() -> None:
                if self.read_times is not None:
                    self.read_times.start(ws)
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
                            self._put(ws, batch)
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
                timeout = self.options.close_timeout
                await anyio.sleep(math.inf if timeout is None else timeout)
                task_group.cancel_scope.cancel()

            for task in (read, write, watch_stop, deadline):
                task_group.start_soon(task)

        if self.stopping:
            return None
        # A failed write cancelled the reader: keep what the session had received.
        received: list[Message] = []
        try:
            while True:
                received.append(ws.receive_stream.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        if received:
            self._put(ws, received)
        return ends[0]

    def _put(self, ws: AsyncWebSocketSession, batch: list[Message]) -> None:
        """Move a batch the session received into the feed's channel."""
        if self.read_times is not None:
            self.read_times.entered(ws, batch)
        self._inbox_send.send_nowait(batch)
        self.inbox_count += len(batch)

    async def _write_loop(self, ws: AsyncWebSocketSession, over: anyio.Event) -> None:
        """Write the outbox, a batch at a time, until the connection is ``over``.

        When it is over because the feed closes, the outbox is written first.

        A batch leaves the outbox only once the session flushed it to the
        network; if the connection fails first, the whole batch goes back to
        the front of the outbox, for the next connection.
        """
        outbox = self.outbox
        while True:
            while not outbox.entries:
                if over.is_set():
                    return
                await outbox.changed()
            if over.is_set() and not self.stopping:
                return  # the session ended: the rest waits for the next connection
            batch = outbox.take()
            flushed = False
            try:
                for entry in batch:
                    await _transmit(ws, entry.message)
                await ws.flush()
                flushed = True
            finally:
                outbox.written(batch, flushed=flushed)

    def _finish(self) -> None:
        self.finished = True
        self._scope = None
        final = self.final
        if isinstance(final, DisconnectSignal):
            cause: WebsocketCause | None = final.cause
        elif final is None:
            cause = WebsocketCause(WebsocketCauseKind.CLIENT_DISCONNECT)
        else:
            cause = None
        self._set_state(_DISCONNECTED, cause=cause, action=WebsocketAction.DISCONNECT, final=True)
        for observer in self._observers:
            observer.close()
        self._observers.clear()
        self._inbox_send.close()
        self.outbox.close()
        self._inbox_space.set()
        self._done.set()


async def _transmit(ws: AsyncWebSocketSession, message: Message) -> None:
    if isinstance(message, str):
        await ws.send_text(message)
    else:
        await ws.send_bytes(message)
