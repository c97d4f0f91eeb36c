"""A WebSocket connection manager that says what to do when the connection ends.

:class:`Websocket` holds one :func:`~streams.aconnect_ws` session at a time and
hands out typed packets. When something goes wrong (the network fails, the
server closes, the handshake is refused) it raises one of three *signals*,
chosen by a :class:`WebsocketPolicy`:

- :class:`ReconnectSignal`: this connection is over; connecting again should work;
- :class:`ResumeSignal`: connect again and resume the session the server kept;
- :class:`DisconnectSignal`: stop; connecting again would fail the same way.

Every signal carries a :class:`WebsocketCause`: what happened (a close code and
reason, an HTTP status, the original exception). The policy is a plain frozen
dataclass: change a default, add a close code, or subclass it and override
:meth:`WebsocketPolicy.decide`. The default table is in ``docs/resilient.md``.

Example::

    ws = Websocket()
    while True:
        try:
            await ws.connect("wss://feed.example/ws")
            while True:
                packet = await ws.receive()
                ...
        except (ReconnectSignal, ResumeSignal):
            await anyio.sleep(1)
        except DisconnectSignal:
            break
    await ws.disconnect()

:func:`streams.reconnecting_ws` does this loop (with backoff, re-subscription
and an outbox) for you.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import enum
import logging
import math
import ssl
import time
from collections.abc import Collection, Iterator, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Self

import anyio
import anyio.abc
import httpx
import msgspec
from wsproto.events import BytesMessage, TextMessage

from ._connect import aconnect_ws
from ._exceptions import (
    HTTPXWSException,
    WebSocketDecodeError,
    WebSocketDisconnect,
    WebSocketKeepaliveTimeout,
    WebSocketNetworkError,
    WebSocketUpgradeError,
)
from ._session import AsyncWebSocketSession

__all__ = [
    "DEFAULT_CLOSE_ACTIONS",
    "DisconnectSignal",
    "ReconnectSignal",
    "ResumeSignal",
    "Websocket",
    "WebsocketAction",
    "WebsocketCause",
    "WebsocketCauseKind",
    "WebsocketPacket",
    "WebsocketPacketBytes",
    "WebsocketPacketJSON",
    "WebsocketPayloadError",
    "WebsocketPolicy",
    "WebsocketSignal",
    "WebsocketState",
]

logger = logging.getLogger("streams.websocket")

_json_decoder = msgspec.json.Decoder()


# --------------------------------------------------------------------------- states and packets


class WebsocketState(enum.IntEnum):
    """Websocket connection state."""

    #: Websocket is currently connected.
    CONNECTED = 0
    #: Websocket is currently connecting.
    CONNECTING = 1
    #: Websocket is currently disconnected.
    DISCONNECTED = 2
    #: Websocket is currently disconnecting.
    DISCONNECTING = 3


class WebsocketPacket:
    """Base websocket packet implementation."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True, slots=True)
class WebsocketPacketBytes(WebsocketPacket):
    """Bytes-structured websocket packet: a binary message."""

    #: The bytes packet payload.
    payload: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class WebsocketPacketJSON(WebsocketPacket):
    """JSON-structured websocket packet: a text message holding a JSON object."""

    #: The JSON packet payload.
    payload: dict[str, Any]


class WebsocketPayloadError(WebSocketDecodeError, RuntimeError):
    """A text message that is not a JSON object arrived (see :meth:`Websocket.receive`).

    It is a :class:`RuntimeError` (an unexpected payload type) and a
    :class:`~streams.WebSocketDecodeError`: the raw text is kept in ``payload``.
    The connection stays open; the next :meth:`Websocket.receive` goes on.
    """


# --------------------------------------------------------------------------- causes and policy


class WebsocketAction(enum.StrEnum):
    """What to do after a connection ended or failed to open."""

    #: Connect again (after a backoff delay).
    RECONNECT = "reconnect"
    #: Connect again and resume the session the server kept (session id, sequence number).
    RESUME = "resume"
    #: Stop: connecting again would fail the same way.
    DISCONNECT = "disconnect"


class WebsocketCauseKind(enum.StrEnum):
    """What ended a connection, or kept it from opening."""

    #: The network failed while the connection was open (reset, EOF without a close frame).
    NETWORK_ERROR = "network_error"
    #: The server stopped answering keepalive pings.
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    #: The connection could not be made: refused, unreachable, DNS, timeout, dropped handshake.
    CONNECT_ERROR = "connect_error"
    #: TLS failed: certificate not trusted, protocol mismatch.
    TLS_ERROR = "tls_error"
    #: The server answered the upgrade request with another HTTP status (``status_code``).
    HTTP_STATUS = "http_status"
    #: The connection closed with a close code (``code``, ``reason``): the server's,
    #: or the one this side failed the connection with (1002, 1007, 1009).
    CLOSE = "close"
    #: The client asked to disconnect.
    CLIENT_DISCONNECT = "client_disconnect"


@dataclasses.dataclass(frozen=True, slots=True)
class WebsocketCause:
    """What happened to a connection: the input of a :class:`WebsocketPolicy`.

    Attributes:
        kind: what kind of event it was.
        code: the close code, for :attr:`WebsocketCauseKind.CLOSE`.
        reason: the close reason, for :attr:`WebsocketCauseKind.CLOSE`.
        status_code: the HTTP status, for :attr:`WebsocketCauseKind.HTTP_STATUS`.
        retry_after: seconds the server asked to wait (its ``Retry-After`` header), if any.
        exception: the exception that reported it, if any.
    """

    kind: WebsocketCauseKind
    code: int | None = None
    reason: str | None = None
    status_code: int | None = None
    retry_after: float | None = None
    exception: BaseException | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException, *, connecting: bool) -> WebsocketCause | None:
        """Describe the connection failure an exception reports.

        Args:
            exc: an exception raised by :func:`~streams.aconnect_ws` or by a session.
            connecting: whether the connection was still being opened (then a
                network failure is a :attr:`~WebsocketCauseKind.CONNECT_ERROR`).

        Returns:
            The cause, or ``None`` if ``exc`` is not a connection failure (a bad
            URL, a bug): such exceptions should propagate unchanged.
        """
        exc = _single_leaf(exc)
        if isinstance(exc, WebSocketUpgradeError):
            response = exc.response
            return cls(
                WebsocketCauseKind.HTTP_STATUS,
                status_code=response.status_code,
                retry_after=_retry_after_seconds(response.headers.get("retry-after")),
                exception=exc,
            )
        if _is_keepalive_timeout(exc):
            return cls(WebsocketCauseKind.KEEPALIVE_TIMEOUT, exception=exc)
        if isinstance(exc, WebSocketDisconnect):
            return cls(WebsocketCauseKind.CLOSE, code=exc.code, reason=exc.reason, exception=exc)
        if any(isinstance(link, ssl.SSLError) for link in _chain(exc)):
            return cls(WebsocketCauseKind.TLS_ERROR, exception=exc)
        if isinstance(exc, httpx.UnsupportedProtocol):
            return None
        if isinstance(
            exc,
            (
                WebSocketNetworkError,
                httpx.TransportError,
                OSError,
                TimeoutError,
                anyio.BrokenResourceError,
                anyio.EndOfStream,
            ),
        ):
            kind = (
                WebsocketCauseKind.CONNECT_ERROR if connecting else WebsocketCauseKind.NETWORK_ERROR
            )
            return cls(kind, exception=exc)
        return None

    @classmethod
    def closed(cls, code: int, reason: str | None = None) -> WebsocketCause:
        """The cause for a connection that closed with ``code``."""
        return cls(WebsocketCauseKind.CLOSE, code=code, reason=reason or "")

    def describe(self) -> str:
        """Return a short human-readable description, for messages and logs."""
        kind = self.kind
        if kind is WebsocketCauseKind.CLOSE:
            text = f"connection closed with code {self.code}"
            return f"{text}: {self.reason}" if self.reason else text
        if kind is WebsocketCauseKind.HTTP_STATUS:
            return f"handshake refused with HTTP {self.status_code}"
        if kind is WebsocketCauseKind.CLIENT_DISCONNECT:
            return "disconnect requested by the client"
        if kind is WebsocketCauseKind.KEEPALIVE_TIMEOUT:
            return "keepalive ping timeout"
        label = {
            WebsocketCauseKind.NETWORK_ERROR: "network error",
            WebsocketCauseKind.CONNECT_ERROR: "connection failed",
            WebsocketCauseKind.TLS_ERROR: "TLS error",
        }[kind]
        return f"{label}: {self.exception!r}" if self.exception is not None else label


_R = WebsocketAction.RECONNECT
_D = WebsocketAction.DISCONNECT

#: What each close code means by default (1000 and 1005 follow
#: :attr:`WebsocketPolicy.normal_close`; codes not listed follow
#: :attr:`WebsocketPolicy.unknown_close`).
DEFAULT_CLOSE_ACTIONS: Mapping[int, WebsocketAction] = MappingProxyType(
    {
        1001: _R,  # going away: server restart, load balancer drain
        1006: _R,  # abnormal closure: the connection was lost without a close frame
        1011: _R,  # internal server error (also a keepalive timeout on this side)
        1012: _R,  # service restart
        1013: _R,  # try again later
        1014: _R,  # bad gateway
        1002: _D,  # protocol error
        1003: _D,  # unsupported data
        1007: _D,  # invalid frame payload data
        1008: _D,  # policy violation
        1009: _D,  # message too big
        1010: _D,  # mandatory extension
        1015: _D,  # TLS handshake failure
    }
)


def _action(value: WebsocketAction | str) -> WebsocketAction:
    return WebsocketAction(value)


@dataclasses.dataclass(frozen=True)
class WebsocketPolicy:
    """Maps what happened to a connection (a :class:`WebsocketCause`) to a :class:`WebsocketAction`.

    Every field has the default a market-data client wants: transient failures
    reconnect, errors that would repeat disconnect. Configure with keywords,
    for example::

        WebsocketPolicy(
            resume_codes={4000},
            close_codes={4001: WebsocketAction.DISCONNECT, 4002: WebsocketAction.RECONNECT},
        )

    or subclass it and override :meth:`decide` for anything else.

    Attributes:
        network_error: the network failed while connected. Default: reconnect.
        keepalive_timeout: the server stopped answering pings. Default: reconnect.
        connect_error: the connection could not be made (refused, DNS,
            timeout, dropped handshake). Default: reconnect.
        tls_error: TLS failed (a certificate that is not trusted will not be
            trusted on the next attempt either). Default: disconnect.
        normal_close: the server closed with 1000 (normal) or 1005 (no code).
            Default: reconnect, because a feed server that closes normally is
            ending *this* session (maintenance, rebalancing, daily rotation),
            not the client's interest in the data; a client that wants to stop
            calls ``disconnect()``.
        unknown_close: a close code neither in :data:`DEFAULT_CLOSE_ACTIONS`
            nor configured (the 3000-4999 application codes included).
            Default: disconnect, since only the application knows whether it is
            transient.
        close_codes: per-code overrides; they win over everything else.
        resume_codes: close codes that mean "reconnect and resume the session"
            (typically application codes 4000-4999). Default: none.
        status_codes: per-status overrides for a refused handshake. Without
            one: 408, 429 and 5xx reconnect, everything else disconnects.
    """

    network_error: WebsocketAction = WebsocketAction.RECONNECT
    keepalive_timeout: WebsocketAction = WebsocketAction.RECONNECT
    connect_error: WebsocketAction = WebsocketAction.RECONNECT
    tls_error: WebsocketAction = WebsocketAction.DISCONNECT
    normal_close: WebsocketAction = WebsocketAction.RECONNECT
    unknown_close: WebsocketAction = WebsocketAction.DISCONNECT
    close_codes: Mapping[int, WebsocketAction] = dataclasses.field(default_factory=dict)
    resume_codes: Collection[int] = frozenset()
    status_codes: Mapping[int, WebsocketAction] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept plain strings and any iterable, keep immutable, validated values.
        for name in (
            "network_error",
            "keepalive_timeout",
            "connect_error",
            "tls_error",
            "normal_close",
            "unknown_close",
        ):
            object.__setattr__(self, name, _action(getattr(self, name)))
        close_codes = {int(code): _action(a) for code, a in dict(self.close_codes).items()}
        status_codes = {int(code): _action(a) for code, a in dict(self.status_codes).items()}
        object.__setattr__(self, "close_codes", MappingProxyType(close_codes))
        object.__setattr__(self, "status_codes", MappingProxyType(status_codes))
        object.__setattr__(self, "resume_codes", frozenset(int(c) for c in self.resume_codes))
        for code in (*close_codes, *self.resume_codes):
            if not 1000 <= code <= 4999:
                raise ValueError(f"close codes are between 1000 and 4999, not {code}")

    def decide(self, cause: WebsocketCause) -> WebsocketAction:
        """Return what to do about ``cause``.

        A client-requested disconnect always gives
        :attr:`WebsocketAction.DISCONNECT`.
        """
        kind = cause.kind
        if kind is WebsocketCauseKind.CLOSE:
            return self.close_action(1005 if cause.code is None else cause.code)
        if kind is WebsocketCauseKind.HTTP_STATUS:
            return self.status_action(0 if cause.status_code is None else cause.status_code)
        if kind is WebsocketCauseKind.NETWORK_ERROR:
            return self.network_error
        if kind is WebsocketCauseKind.KEEPALIVE_TIMEOUT:
            return self.keepalive_timeout
        if kind is WebsocketCauseKind.CONNECT_ERROR:
            return self.connect_error
        if kind is WebsocketCauseKind.TLS_ERROR:
            return self.tls_error
        return WebsocketAction.DISCONNECT

    def close_action(self, code: int) -> WebsocketAction:
        """Return what to do after a close with ``code``."""
        if code in self.close_codes:
            return self.close_codes[code]
        if code in self.resume_codes:
            return WebsocketAction.RESUME
        if code in (1000, 1005):
            return self.normal_close
        return DEFAULT_CLOSE_ACTIONS.get(code, self.unknown_close)

    def status_action(self, status_code: int) -> WebsocketAction:
        """Return what to do after the handshake was answered with ``status_code``."""
        if status_code in self.status_codes:
            return self.status_codes[status_code]
        if status_code in (408, 429) or 500 <= status_code <= 599:
            return WebsocketAction.RECONNECT
        return WebsocketAction.DISCONNECT


def _retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delay-seconds or an HTTP date.

    Returns:
        The seconds to wait (0 for a date in the past), or ``None`` if the value
        is missing or malformed.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then its causes and contexts (without looping)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ if link.__cause__ is not None else link.__context__


def _single_leaf(exc: BaseException) -> BaseException:
    """Unwrap exception groups holding one exception."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _is_keepalive_timeout(exc: BaseException) -> bool:
    # The session raises WebSocketKeepaliveTimeout, and records close code 1011
    # with the reason "keepalive ping timeout".
    if isinstance(exc, WebSocketNetworkError):
        return isinstance(exc, WebSocketKeepaliveTimeout)
    if isinstance(exc, WebSocketDisconnect):
        return exc.code == 1011 and "keepalive" in exc.reason.lower()
    return False


# --------------------------------------------------------------------------- signals


class WebsocketSignal(HTTPXWSException):
    """Base of the signals :class:`Websocket` raises when a connection ends or fails to open.

    The exception that reported it is also the signal's ``__cause__``.

    Attributes:
        cause: what happened (kind, close code and reason, HTTP status, exception).
        action: what the policy decided (the same for every instance of a class).
    """

    action: ClassVar[WebsocketAction]

    def __init__(self, cause: WebsocketCause | None = None, message: str | None = None) -> None:
        if cause is None:
            cause = WebsocketCause(WebsocketCauseKind.CLIENT_DISCONNECT)
        self.cause = cause
        super().__init__(message or f"{cause.describe()} ({self.action.value})")

    @property
    def code(self) -> int | None:
        """The close code, if the connection closed with one."""
        return self.cause.code

    @property
    def reason(self) -> str | None:
        """The close reason, if the connection closed with a code."""
        return self.cause.reason

    @property
    def status_code(self) -> int | None:
        """The HTTP status, if the handshake was refused."""
        return self.cause.status_code

    @staticmethod
    def for_action(action: WebsocketAction, cause: WebsocketCause) -> WebsocketSignal:
        """Return the signal for ``action`` (a :class:`ReconnectSignal` for RECONNECT...)."""
        signal_class: type[WebsocketSignal] = {
            WebsocketAction.RECONNECT: ReconnectSignal,
            WebsocketAction.RESUME: ResumeSignal,
            WebsocketAction.DISCONNECT: DisconnectSignal,
        }[action]
        return signal_class(cause)


class ReconnectSignal(WebsocketSignal):
    """Error occurred and further attempts should be made to connect."""

    action = WebsocketAction.RECONNECT


class ResumeSignal(WebsocketSignal):
    """Error occurred and an attempt to resume the session should be made."""

    action = WebsocketAction.RESUME


class DisconnectSignal(WebsocketSignal):
    """Error occurred (or the client disconnected) and no further attempts should be made."""

    action = WebsocketAction.DISCONNECT


# --------------------------------------------------------------------------- the manager


async def _exit_task_group(
    task_group: anyio.abc.TaskGroup,
    exc_type: type[BaseException] | None,
    exc_val: BaseException | None,
    exc_tb: TracebackType | None,
) -> None:
    """Exit a task group whose tasks are done or cancelled, so that an exception raised in
    the ``async with`` body comes out as itself, not wrapped in an exception group."""
    if isinstance(exc_val, Exception):
        await task_group.__aexit__(None, None, None)
    else:  # no exception, or a cancellation / KeyboardInterrupt: anyio must see it
        await task_group.__aexit__(exc_type, exc_val, exc_tb)


class _ConnectAborted(Exception):
    """disconnect() was called while connect() was still connecting."""


class Websocket:
    """Custom websocket manager: one session at a time, typed packets, signals on failure.

    Two ways to use it:

    - bare (``ws = Websocket(); await ws.connect(url) ... await ws.disconnect()``):
      the session is held open by the task that called :meth:`connect`, so that
      task must also call :meth:`disconnect` (or :meth:`connect` again), outside
      any cancel scope opened after :meth:`connect`. Wrap the whole block, not
      ``connect()`` alone, in a timeout; use httpx's ``timeout=`` for the handshake.
    - ``async with Websocket() as ws:``: the session is held by a task of the
      manager's own, so any task may connect, receive, send and disconnect, in any
      cancel scope. Leaving the block disconnects.

    :meth:`receive`, :meth:`send_bytes` and :meth:`send_json` may be called from
    several tasks at once. After a connection ended they raise the signal that
    ended it again, until the next :meth:`connect`.

    Args:
        policy: decides which signal each failure raises (default: :class:`WebsocketPolicy`).
        client: the :class:`httpx.AsyncClient` to connect with (not closed here);
            a new default one per connection if ``None``.
        **connect_options: passed to :func:`~streams.aconnect_ws` (keepalive,
            queue size, headers, subprotocols, httpx ``timeout``...).
    """

    def __init__(
        self,
        *,
        policy: WebsocketPolicy | None = None,
        client: httpx.AsyncClient | None = None,
        **connect_options: Any,
    ) -> None:
        """Create a new websocket."""
        self.policy = policy if policy is not None else WebsocketPolicy()
        self._client = client
        self._connect_options = connect_options
        self._state = WebsocketState.DISCONNECTED
        self._session: AsyncWebSocketSession | None = None
        # Why the last connection ended (raised again by later calls); None while
        # connected or before the first connection.
        self._ended: WebsocketSignal | None = None
        self._closing = False
        self._connect_done = anyio.Event()
        self._connect_done.set()
        # Bare mode: the session's context, held by the task that connected.
        self._stack: contextlib.AsyncExitStack | None = None
        self._owner: anyio.TaskInfo | None = None
        # Context-manager mode: the session is held by a task of this group.
        self._task_group: anyio.abc.TaskGroup | None = None
        self._release = anyio.Event()
        self._released = anyio.Event()
        self._released.set()
        self._connect_scope: anyio.CancelScope | None = None

    # ------------------------------------------------------------ context manager

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError("this Websocket is already entered")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        try:
            await self.disconnect()
        finally:
            task_group.cancel_scope.cancel()
            self._task_group = None
            await _exit_task_group(task_group, exc_type, exc_val, exc_tb)
        return None

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> WebsocketState:
        """The connection state (a closed session reads as DISCONNECTED at once)."""
        session = self._session
        if self._state is WebsocketState.CONNECTED and session is not None and session.closed:
            return WebsocketState.DISCONNECTED
        return self._state

    @property
    def connected(self) -> bool:
        """If the websocket is currently connected."""
        return self.state is WebsocketState.CONNECTED

    @property
    def connecting(self) -> bool:
        """If the websocket is currently connecting."""
        return self.state is WebsocketState.CONNECTING

    @property
    def disconnected(self) -> bool:
        """If the websocket is currently disconnected."""
        return self.state is WebsocketState.DISCONNECTED

    @property
    def disconnecting(self) -> bool:
        """If the websocket is currently disconnecting."""
        return self.state is WebsocketState.DISCONNECTING

    @property
    def session(self) -> AsyncWebSocketSession | None:
        """The open session, or ``None`` while disconnected."""
        return self._session

    # ---------------------------------------------------------------- connect

    async def connect(self, url: str) -> None:
        """Connect to a websocket endpoint.

        Args:
            url: The URL/URI to connect to.

        Raises:
            ReconnectSignal: Error occurred and further attempts should be made to connect.
            DisconnectSignal: the policy says retrying is pointless (a 4xx
                answer, a TLS failure), or :meth:`disconnect` was called meanwhile.
            ResumeSignal: the policy maps this failure to a resume.
            RuntimeError: already connected or connecting.

        Cancelling is safe: the half-open connection is dropped and the state is
        DISCONNECTED.
        """
        if self._state is not WebsocketState.DISCONNECTED:
            raise RuntimeError(f"cannot connect: the websocket is {self._state.name}")
        await self._release_session()
        self._state = WebsocketState.CONNECTING
        self._ended = None
        self._closing = False
        self._connect_done = anyio.Event()
        try:
            if self._task_group is not None:
                # Made here, so that disconnect() can stop the attempt at any moment.
                self._release, self._released = anyio.Event(), anyio.Event()
                self._connect_scope = anyio.CancelScope()
                session: AsyncWebSocketSession = await self._task_group.start(
                    self._hold, url, self._release, self._released, self._connect_scope
                )
                if self._closing:  # disconnect() came while the handshake ended
                    raise _ConnectAborted
            else:
                session = await self._enter_here(url)
        except _ConnectAborted:
            self._state = WebsocketState.DISCONNECTED
            signal: WebsocketSignal = DisconnectSignal()
            self._ended = signal
            raise signal from None
        except Exception as exc:
            self._state = WebsocketState.DISCONNECTED
            cause = WebsocketCause.from_exception(exc, connecting=True)
            if cause is None:
                raise
            signal = WebsocketSignal.for_action(self.policy.decide(cause), cause)
            self._ended = signal
            logger.debug("connect to %s failed: %s", url, signal)
            raise signal from exc
        except BaseException:
            self._state = WebsocketState.DISCONNECTED
            raise
        finally:
            self._connect_done.set()
        self._session = session
        self._state = WebsocketState.CONNECTED

    def _open(self, url: str) -> contextlib.AbstractAsyncContextManager[AsyncWebSocketSession]:
        return aconnect_ws(url, self._client, **self._connect_options)

    async def _enter_here(self, url: str) -> AsyncWebSocketSession:
        stack = contextlib.AsyncExitStack()
        session = await stack.enter_async_context(self._open(url))
        self._stack = stack
        self._owner = anyio.get_current_task()
        return session

    async def _hold(
        self,
        url: str,
        release: anyio.Event,
        released: anyio.Event,
        scope: anyio.CancelScope,
        *,
        task_status: anyio.abc.TaskStatus[AsyncWebSocketSession],
    ) -> None:
        """Hold one session open until ``release`` is set (context-manager mode)."""
        started = False
        try:
            with scope:
                async with self._open(url) as session:
                    # From now on disconnect() closes gracefully instead of cancelling.
                    self._connect_scope = None
                    task_status.started(session)
                    started = True
                    await release.wait()
            if not started:
                raise _ConnectAborted
        except Exception:
            if not started:
                raise
            # Closing failed (the network is gone): nothing left to report.
            logger.debug("closing the session failed", exc_info=True)
        finally:
            if self._connect_scope is scope:
                self._connect_scope = None
            released.set()

    async def _release_session(self) -> None:
        """Close the current session, if any (gracefully: close code 1000)."""
        if self._task_group is not None:
            self._release.set()
            if self._connect_scope is not None:
                self._connect_scope.cancel()
            await self._released.wait()
            return
        stack = self._stack
        if stack is None:
            return
        if self._owner is not None and self._owner != anyio.get_current_task():
            raise RuntimeError(
                "the session is held by the task that called connect(): disconnect from that "
                "task, or use `async with Websocket() as ws:` to share it between tasks"
            )
        self._stack = self._owner = None
        try:
            await stack.aclose()
        except Exception:
            logger.debug("closing the session failed", exc_info=True)

    # ------------------------------------------------------------- disconnect

    async def disconnect(self) -> None:
        """Disconnect the websocket.

        Closes the session with code 1000 (waiting at most the session's
        ``close_timeout`` for the server). Calls in progress, and later ones
        until the next :meth:`connect`, raise :class:`DisconnectSignal`. Does
        nothing if already disconnected.

        Raises:
            RuntimeError: in bare mode, when called from another task than the
                one that connected (see :class:`Websocket`).

        Cancelling is safe: the connection is then dropped without waiting.
        """
        if self._state is WebsocketState.CONNECTING and self._task_group is None:
            raise RuntimeError("disconnect() while connecting needs `async with Websocket()`")
        if self._state is WebsocketState.DISCONNECTING:
            await self._released.wait()
            return
        self._closing = True
        self._ended = DisconnectSignal()
        if self._state is not WebsocketState.DISCONNECTED:
            self._state = WebsocketState.DISCONNECTING
        try:
            await self._release_session()
            if self._task_group is not None:
                await self._connect_done.wait()
        finally:
            self._session = None
            self._state = WebsocketState.DISCONNECTED

    # ---------------------------------------------------------------- receive / send

    async def _current(self) -> AsyncWebSocketSession:
        """The connected session, or raise the signal that ended the last one."""
        if self._state is WebsocketState.CONNECTING:
            await self._connect_done.wait()
        session = self._session
        if self._state is WebsocketState.CONNECTED and session is not None:
            return session
        if self._ended is not None:
            raise self._ended
        raise RuntimeError("the websocket is not connected: call connect() first")

    def _signal(self, exc: Exception) -> WebsocketSignal:
        """Turn a session's exception into the signal the policy chooses, and drop the session."""
        if self._closing:
            signal: WebsocketSignal = self._ended or DisconnectSignal()
        else:
            cause = WebsocketCause.from_exception(exc, connecting=False)
            if cause is None:
                raise exc
            signal = WebsocketSignal.for_action(self.policy.decide(cause), cause)
            logger.debug("connection ended: %s", signal)
        if self._ended is None:
            self._ended = signal
        if self._state is WebsocketState.CONNECTED:
            self._state = WebsocketState.DISCONNECTED
            self._session = None
            # Context-manager mode: the holding task closes the session now. Bare
            # mode: the next connect() or disconnect() does, from the owner task.
            self._release.set()
        return self._ended

    async def receive(self) -> WebsocketPacket:
        """Block until a payload is received.

        Returns:
            The received payload, either bytes or JSON: a binary message gives
            a :class:`WebsocketPacketBytes`, a text message holding a JSON object
            a :class:`WebsocketPacketJSON`.

        Raises:
            DisconnectSignal: Error occurred and no further attempts should be
                made to connect (or :meth:`disconnect` was called).
            ReconnectSignal: Error occurred and further attempts should be made to connect.
            RuntimeError: An unexpected payload type was received: a text message
                that is not a JSON object (a :class:`WebsocketPayloadError`
                holding the text; the connection stays open), or not connected.
            ResumeSignal: Error occurred and an attempt to resume the session should be made.

        Cancelling is safe: no message is lost.
        """
        session = await self._current()
        try:
            event = await session.receive()
        except Exception as exc:
            raise self._signal(exc) from exc
        if not isinstance(event, (TextMessage, BytesMessage)):  # pragma: no cover - defensive
            raise RuntimeError(f"unexpected payload type: {type(event).__name__}")
        message = event.data
        if isinstance(message, str):
            try:
                payload = _json_decoder.decode(message)
            except msgspec.DecodeError as exc:
                raise WebsocketPayloadError(
                    message, f"unexpected payload type: text is not JSON ({exc})"
                ) from exc
            if not isinstance(payload, dict):
                kind = type(payload).__name__
                raise WebsocketPayloadError(
                    message, f"unexpected payload type: expected a JSON object, got {kind}"
                )
            return WebsocketPacketJSON(payload)
        return WebsocketPacketBytes(bytes(message))

    async def send_bytes(self, data: bytes) -> None:
        """Send a bytes payload through the websocket.

        Args:
            data: The bytes payload to send.

        Raises:
            DisconnectSignal: Error occurred and no further attempts should be made to connect.
            ReconnectSignal: Error occurred and further attempts should be made to connect.
            ResumeSignal: Error occurred and an attempt to resume the session should be made.
        """
        session = await self._current()
        try:
            await session.send_bytes(data)
        except Exception as exc:
            raise self._signal(exc) from exc

    async def send_json(self, data: dict[str, Any]) -> None:
        """Send a JSON payload through the websocket (as a text message).

        Args:
            data: The JSON payload to send.

        Raises:
            DisconnectSignal: Error occurred and no further attempts should be made to connect.
            ReconnectSignal: Error occurred and further attempts should be made to connect.
            ResumeSignal: Error occurred and an attempt to resume the session should be made.
            TypeError: ``data`` cannot be encoded as JSON.
        """
        session = await self._current()
        try:
            await session.send_json(data)
        except (TypeError, ValueError):
            raise
        except Exception as exc:
            raise self._signal(exc) from exc
