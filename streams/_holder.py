"""The session holder: the one place that opens, holds and judges WebSocket sessions.

Both resilient faces sit on it: :class:`~streams.Websocket` (one connection at
a time, a signal when it ends) and :class:`~streams.ReconnectingWebSocket` (a
supervisor loop in ``_supervisor.py`` that connects again by itself).

- :class:`TaskHost` owns the task group the holder's tasks run in. Inside an
  ``async with`` block it is entered and exited there (exited so that the
  block's own error comes out as itself, not wrapped in an exception group);
  without one (a bare :class:`~streams.Websocket`) it is owned by a task
  started outside the caller's cancel scopes (``_spawn.py``), so no timeout,
  exception or cancellation in the caller can tear it.
- :meth:`SessionHolder.open` starts one task that opens a session with
  :func:`~streams.aconnect_ws` and holds it until :meth:`Held.release`; the
  session's own tasks live in that task, never in the caller's.
- :meth:`SessionHolder.judge` turns what ended a connection into a cause and
  the policy's action.
"""

from __future__ import annotations

import logging
from types import TracebackType

import anyio
import anyio.abc
import httpx

from ._attempt import ConnectOptions
from ._connect import connect_with_options
from ._policy import WebsocketAction, WebsocketCause, WebsocketPolicy
from ._session import AsyncWebSocketSession
from ._spawn import spawn_detached
from ._taskgroup import OwnedTaskGroup

__all__ = ["ConnectAborted", "Held", "SessionHolder", "TaskHost"]

logger = logging.getLogger("streams.websocket")


class ConnectAborted(Exception):
    """The attempt was released (a disconnect) before the session was open."""


class TaskHost:
    """Owns the task group in which a holder's tasks run.

    Args:
        name: the name of the task that owns a detached group.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        #: The task group, while one is open.
        self.group: anyio.abc.TaskGroup | None = None
        self._done: anyio.Event | None = None  # set when a detached group ended
        self._owned = OwnedTaskGroup()  # the group of enter() and exit()

    @property
    def detached(self) -> bool:
        """Whether the group is owned by a task of its own (see :meth:`detach`)."""
        return self._done is not None

    async def enter(self) -> None:
        """Open the group in the current task (an ``async with`` block's ``__aenter__``)."""
        if self.group is not None:
            raise RuntimeError("already entered")
        self.group = await self._owned.enter()

    async def exit(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """Cancel what is left in the group opened by :meth:`enter` and exit it.

        An exception raised in the ``async with`` body comes out as itself, not
        wrapped in an exception group (see :class:`~streams._taskgroup.OwnedTaskGroup`).
        """
        self.group = None
        await self._owned.exit(exc_val)

    async def detach(self) -> None:
        """Open a group owned by a new task outside the caller's cancel scopes, unless one is open.

        Cancelling is safe: the group then opens anyway and waits for :meth:`stop`.
        """
        if self.group is not None and not self.group.cancel_scope.cancel_called:
            return
        await self.stop()  # one that is ending
        ready, done = anyio.Event(), anyio.Event()
        self._done = done

        async def serve() -> None:
            try:
                async with anyio.create_task_group() as group:
                    self.group = group
                    ready.set()
                    await anyio.sleep_forever()
            finally:
                self.group = None
                ready.set()
                done.set()

        spawn_detached(serve, self.name)
        await ready.wait()

    def cancel(self) -> None:
        """Cancel every task of a detached group, without waiting."""
        if self.detached and self.group is not None:
            self.group.cancel_scope.cancel()

    async def stop(self) -> None:
        """Cancel a detached group's tasks and wait until its task ended."""
        done = self._done
        if done is None:
            return
        self.cancel()
        await done.wait()
        if self._done is done:
            self._done = None


class Held:
    """One session held open by a task of the holder until :meth:`release`."""

    def __init__(self) -> None:
        #: The session, once open.
        self.session: AsyncWebSocketSession | None = None
        #: Cancels the handshake (not an open session, which closes gracefully).
        self.scope = anyio.CancelScope()
        self._release = anyio.Event()
        self.released = anyio.Event()

    def release(self) -> None:
        """Close the session gracefully (code 1000), or abandon the handshake."""
        self._release.set()
        if self.session is None:
            self.scope.cancel()

    async def close(self) -> None:
        """Release the session and wait until it is closed.

        Cancelling is safe: the session then finishes closing in the background.
        """
        self.release()
        await self.released.wait()


class SessionHolder:
    """Opens sessions in tasks of its own and judges how they end.

    Args:
        client: the :class:`httpx.AsyncClient` to connect with (not closed here).
        options: the session options and the upgrade request of every attempt.
        policy: what to do after each end.
        name: names the tasks.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None,
        options: ConnectOptions,
        policy: WebsocketPolicy,
        name: str,
    ) -> None:
        self.client = client
        self.options = options
        self.policy = policy
        self.host = TaskHost(name)

    async def open(self, url: httpx.URL | str, held: Held) -> AsyncWebSocketSession:
        """Open a session held by ``held`` (in a task of the host's group).

        Raises:
            ConnectAborted: ``held`` was released before the session was open.
            RuntimeError: the host has no open group.
            Exception: what :func:`~streams.aconnect_ws` raised, or what a
                ``headers`` or ``params`` callable raised.

        Cancelling is safe: the handshake is abandoned.
        """
        group = self.host.group
        if group is None:
            held.released.set()
            raise RuntimeError("the session holder has no task group")
        try:
            session: AsyncWebSocketSession = await group.start(
                self._hold, url, held, name=f"{self.host.name} session"
            )
        except BaseException:
            held.released.set()  # the task is over, perhaps before it ever ran
            raise
        return session

    async def _hold(
        self,
        url: httpx.URL | str,
        held: Held,
        *,
        task_status: anyio.abc.TaskStatus[AsyncWebSocketSession],
    ) -> None:
        try:
            with held.scope:
                options = self.options
                request = await options.request_keywords()  # fresh credentials each attempt
                async with connect_with_options(
                    url,
                    self.client,
                    options.subprotocols,
                    options.session,
                    options.session_class,
                    request,
                ) as session:
                    held.session = session
                    task_status.started(session)
                    await held._release.wait()
            if held.session is None:
                raise ConnectAborted
        except Exception:
            if held.session is None:
                raise
            # Closing failed (the network is gone): nothing left to report.
            logger.debug("closing the session failed", exc_info=True)
        finally:
            held.released.set()

    def judge(
        self, exc: BaseException, *, connecting: bool
    ) -> tuple[WebsocketCause, WebsocketAction] | None:
        """Return why a connection ended and what the policy says to do about it.

        Returns:
            ``None`` if ``exc`` is not a connection failure (it should propagate).
        """
        cause = WebsocketCause.from_exception(exc, connecting=connecting)
        if cause is None:
            return None
        return cause, self.policy.decide(cause)
