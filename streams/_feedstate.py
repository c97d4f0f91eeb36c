"""What a reconnecting feed lets the application observe: its state, and each change of it."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Self

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ._packets import WebsocketState
from ._policy import WebsocketAction, WebsocketCause, WebsocketPolicy
from ._session import AsyncWebSocketSession

if TYPE_CHECKING:
    from ._backoff import Backoff
    from ._supervisor import Supervisor

__all__ = ["FeedObserving", "StateChange", "StateChanges"]


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


class FeedObserving:
    """The observing half of a reconnecting feed: what its supervisor (``_loop``) reports,
    and its configuration."""

    __slots__ = ()

    _loop: Supervisor

    def _check_entered(self) -> None:
        raise NotImplementedError

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
    def resume_state(self) -> dict[str, Any]:
        """What the application keeps across connections (session id, last
        sequence number...); handed to ``on_resume``."""
        return self._loop.resume_state

    @resume_state.setter
    def resume_state(self, state: dict[str, Any]) -> None:
        self._loop.resume_state = state

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
