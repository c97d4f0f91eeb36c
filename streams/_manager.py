"""The connection manager's face: :class:`Websocket` over the session holder.

One session at a time, typed packets, a signal when the connection ends, no
automatic reconnect. The public module is :mod:`streams.websocket`.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self

import anyio
import httpx

from ._attempt import ConnectOptions, HeadersArg, ParamsArg
from ._connect import DEFAULT_COMPRESSION
from ._holder import ConnectAborted, Held, SessionHolder
from ._packets import WebsocketState
from ._policy import DisconnectSignal, WebsocketPolicy, WebsocketSignal
from ._pull import PullAPI
from ._session import AsyncWebSocketSession
from ._types import (
    DEFAULT_CLOSE_TIMEOUT_SECONDS,
    DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    DEFAULT_QUEUE_SIZE,
    USE_MAX_MESSAGE_SIZE,
    Overflow,
    UseMaxMessageSize,
)
from .protocol._deflate import DeflateOptions

__all__ = ["Websocket"]

logger = logging.getLogger("streams.websocket")

_CONNECTED, _CONNECTING = WebsocketState.CONNECTED, WebsocketState.CONNECTING
_DISCONNECTED, _DISCONNECTING = WebsocketState.DISCONNECTED, WebsocketState.DISCONNECTING


class Websocket(PullAPI):
    """Custom websocket manager: one session at a time, typed packets, signals on failure.

    The session is held by a task that no caller's cancel scope contains: one
    of the manager's own task group in ``async with Websocket() as ws:`` (leaving
    the block disconnects), or, bare, a task started with the event loop's API
    (call :meth:`disconnect` when done). So any task may connect, receive, send
    and disconnect, and an exception, timeout or cancellation around any call is
    safe. After a connection ended, :meth:`receive` and the sends raise the
    signal that ended it again, until the next :meth:`connect`.

    Args:
        policy: decides which signal each failure raises (default: :class:`WebsocketPolicy`).
        client: the :class:`httpx.AsyncClient` to connect with (not closed here);
            a new default one per connection if ``None``.
        headers: the upgrade request's headers, or a function (sync or async)
            returning them, called at each :meth:`connect`: a token that
            expires is renewed when connecting again.
        params: the query parameters, or a function returning them, likewise.
        subprotocols: the subprotocols to offer, in order of preference.
        max_message_size_bytes: as in :func:`~streams.aconnect_ws`, like the
            other session options: ``max_fragmented_size_bytes``, ``queue_size``,
            ``keepalive_ping_interval_seconds``,
            ``keepalive_ping_timeout_seconds``, ``close_timeout``, ``compression``,
            ``lag_timeout``, ``send_rate`` and ``send_rate_counts_pings``.
        overflow: the slow-consumer policy (see :func:`~streams.aconnect_ws`);
            with ``"disconnect"``, a consumer that fell behind ends the
            connection and :meth:`receive` raises :class:`ReconnectSignal`.
        stale_after: seconds without a data message before the connection
            ends; :meth:`receive` then raises :class:`ReconnectSignal`.
        **connect_options: passed to httpx's request (``cookies``, ``auth``,
            ``timeout``...), and ``session_class``.

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an option out of range.
    """

    def __init__(
        self,
        *,
        policy: WebsocketPolicy | None = None,
        client: httpx.AsyncClient | None = None,
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
        """Create a new websocket."""
        options = ConnectOptions.build(locals(), connect_options)
        policy = policy if policy is not None else WebsocketPolicy()
        self._holder = SessionHolder(client, options, policy, "streams websocket")
        self._state = _DISCONNECTED
        self._held: Held | None = None
        # Why the last connection ended (raised again by later calls); None while
        # connected or before the first connection.
        self._ended: WebsocketSignal | None = None
        self._entered = False
        self._connect_done = anyio.Event()
        self._connect_done.set()

    @property
    def policy(self) -> WebsocketPolicy:
        """Decides which signal each failure raises (may be replaced at any time)."""
        return self._holder.policy

    @policy.setter
    def policy(self, policy: WebsocketPolicy) -> None:
        self._holder.policy = policy

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("this Websocket is already entered")
        if self._held is not None or self._holder.host.detached:
            await self.disconnect()  # a bare-mode connection
        await self._holder.host.enter()
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.disconnect()
        finally:
            self._entered = False
            await self._holder.host.exit(exc_type, exc, tb)

    @property
    def state(self) -> WebsocketState:
        """The connection state (a session the server closed reads as DISCONNECTED at once)."""
        session = self._held.session if self._held is not None else None
        if self._state is _CONNECTED and session is not None and session.closed:
            return _DISCONNECTED
        return self._state

    @property
    def connected(self) -> bool:
        """If the websocket is currently connected."""
        return self.state is _CONNECTED

    @property
    def connecting(self) -> bool:
        """If the websocket is currently connecting."""
        return self.state is _CONNECTING

    @property
    def disconnected(self) -> bool:
        """If the websocket is currently disconnected."""
        return self.state is _DISCONNECTED

    @property
    def disconnecting(self) -> bool:
        """If the websocket is currently disconnecting."""
        return self.state is _DISCONNECTING

    @property
    def session(self) -> AsyncWebSocketSession | None:
        """The open session, or ``None`` while disconnected."""
        return self._held.session if self._held is not None and self.connected else None

    async def connect(self, url: str) -> None:
        """Connect to a websocket endpoint.

        Args:
            url: The URL/URI to connect to.

        Raises:
            ReconnectSignal: Error occurred and further attempts should be made to connect.
            DisconnectSignal: the policy says retrying is pointless (a 4xx
                answer, a TLS failure), or :meth:`disconnect` was called meanwhile.
            ResumeSignal: the policy maps this failure to a resume.
            RuntimeError: already connected or connecting (:attr:`state` is not DISCONNECTED).

        Cancelling is safe: the half-open connection is dropped and the state is
        DISCONNECTED.
        """
        state = self.state
        if state is not _DISCONNECTED:
            raise RuntimeError(f"cannot connect: the websocket is {state.name}")
        self._state, self._ended, self._connect_done = _CONNECTING, None, anyio.Event()
        held = Held()
        try:
            await self._drop()  # the session the server closed, if any
            if not self._entered:
                await self._holder.host.detach()
            if self._state is not _CONNECTING:  # disconnect() came meanwhile
                raise ConnectAborted
            self._held = held
            await self._holder.open(url, held)
        except ConnectAborted:
            self._ended = DisconnectSignal()
            raise self._ended from None
        except Exception as exc:
            verdict = self._holder.judge(exc, connecting=True)
            if verdict is None:
                raise
            self._ended = WebsocketSignal.for_action(verdict[1], verdict[0])
            logger.debug("connect to %s failed: %s", url, self._ended)
            raise self._ended from exc
        finally:
            if self._state is _CONNECTING:
                self._state = _DISCONNECTED if self._ended or not held.session else _CONNECTED
            self._connect_done.set()
        if self._state is not _CONNECTED:  # disconnect() came as the handshake ended
            raise DisconnectSignal()

    async def _drop(self) -> None:
        """Close the held session, if any (gracefully: close code 1000)."""
        held = self._held
        if held is not None:
            await held.close()
            if self._held is held:
                self._held = None

    async def disconnect(self) -> None:
        """Disconnect the websocket.

        Closes the session with code 1000 (waiting at most the session's
        ``close_timeout`` for the server), or abandons a :meth:`connect` in
        progress. Calls in progress, and later ones until the next
        :meth:`connect`, raise :class:`DisconnectSignal`. Does nothing if
        already disconnected.

        Cancelling is safe: the connection is then dropped without waiting.
        """
        self._ended = DisconnectSignal()
        if self._state is not _DISCONNECTED:
            self._state = _DISCONNECTING
        host = self._holder.host
        try:
            await self._drop()
            await self._connect_done.wait()
            await self._drop()  # what a connect() in progress opened meanwhile
            if not self._entered:
                await host.stop()
        finally:
            host.cancel()  # a bare-mode task left behind by a cancellation
            self._state = _DISCONNECTED
