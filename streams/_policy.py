"""What to do when a connection ends: causes, the policy, and the signals it chooses.

A :class:`WebsocketCause` says what happened to a connection (a close code, an
HTTP status, a network failure); :meth:`WebsocketPolicy.decide`, a pure
function of the cause, says what to do about it (a :class:`WebsocketAction`);
a :class:`WebsocketSignal` carries both to the application. Nothing here does
I/O: the session holder (``_holder.py``) feeds it what the network did.
"""

from __future__ import annotations

import dataclasses
import email.utils
import enum
import math
import time
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import ClassVar

from ._classify import Failure, classify, single_leaf
from ._exceptions import HTTPXWSException, WebSocketDisconnect, WebSocketUpgradeError

__all__ = [
    "DEFAULT_CLOSE_ACTIONS",
    "DisconnectSignal",
    "ReconnectSignal",
    "ResumeSignal",
    "WebsocketAction",
    "WebsocketCause",
    "WebsocketCauseKind",
    "WebsocketPolicy",
    "WebsocketSignal",
]


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
        failure = classify(exc)
        if failure is None or failure is Failure.BAD_URL:
            return None
        exc = single_leaf(exc)
        if isinstance(exc, WebSocketUpgradeError):
            response = exc.response
            return cls(
                WebsocketCauseKind.HTTP_STATUS,
                status_code=response.status_code,
                retry_after=_retry_after_seconds(response.headers.get("retry-after")),
                exception=exc,
            )
        if failure is Failure.KEEPALIVE_TIMEOUT:
            return cls(WebsocketCauseKind.KEEPALIVE_TIMEOUT, exception=exc)
        if isinstance(exc, WebSocketDisconnect):
            return cls(WebsocketCauseKind.CLOSE, code=exc.code, reason=exc.reason, exception=exc)
        if failure is Failure.TLS:
            return cls(WebsocketCauseKind.TLS_ERROR, exception=exc)
        kind = WebsocketCauseKind.CONNECT_ERROR if connecting else WebsocketCauseKind.NETWORK_ERROR
        return cls(kind, exception=exc)

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
