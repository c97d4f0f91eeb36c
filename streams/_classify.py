"""What kind of failure an exception reports: one classification for every layer.

The connection manager turns the kind into a :class:`~streams.WebsocketCause`
(then the policy into a signal); the command line turns it into one line of
text. Both read it from :func:`classify`, so they never disagree about what
happened.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Iterator

import anyio
import httpx

from ._exceptions import (
    WebSocketDisconnect,
    WebSocketKeepaliveTimeout,
    WebSocketNetworkError,
    WebSocketUpgradeError,
)

__all__ = ["Failure", "chain", "classify", "single_leaf"]


class Failure(enum.Enum):
    """The kinds of failure :func:`classify` tells apart."""

    #: The server answered the upgrade request with another HTTP status (or a bad 101).
    HANDSHAKE_REJECTED = "handshake_rejected"
    #: The server stopped answering keepalive pings.
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    #: The connection closed with a close code.
    CLOSED = "closed"
    #: TLS failed: certificate not trusted, protocol mismatch.
    TLS = "tls"
    #: The server refused the TCP connection.
    REFUSED = "refused"
    #: Another failure to open the connection (DNS, unreachable...).
    CONNECT = "connect"
    #: An httpx timeout (connect, read, write, pool).
    TIMEOUT = "timeout"
    #: The network failed: reset, end of stream without a close frame, another transport error.
    NETWORK = "network"
    #: The URL cannot be used (an unsupported scheme): not a connection failure.
    BAD_URL = "bad_url"


def single_leaf(exc: BaseException) -> BaseException:
    """Unwrap exception groups holding one exception."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then its causes and contexts (without looping)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ if link.__cause__ is not None else link.__context__


def _is_keepalive_timeout(exc: BaseException) -> bool:
    # The session raises WebSocketKeepaliveTimeout, and records close code 1011
    # with the reason "keepalive ping timeout".
    if isinstance(exc, WebSocketNetworkError):
        return isinstance(exc, WebSocketKeepaliveTimeout)
    if isinstance(exc, WebSocketDisconnect):
        return exc.code == 1011 and "keepalive" in exc.reason.lower()
    return False


_NETWORK = (
    WebSocketNetworkError,
    httpx.TransportError,
    OSError,
    TimeoutError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)


def classify(exc: BaseException) -> Failure | None:
    """Return the kind of connection failure ``exc`` reports.

    Args:
        exc: an exception raised while connecting or by a session; an exception
            group holding one exception is read as that exception.

    Returns:
        The kind, or ``None`` if ``exc`` is not a connection failure (a bug, a
        hook's own error).
    """
    exc = single_leaf(exc)
    if isinstance(exc, WebSocketUpgradeError):
        return Failure.HANDSHAKE_REJECTED
    if _is_keepalive_timeout(exc):
        return Failure.KEEPALIVE_TIMEOUT
    if isinstance(exc, WebSocketDisconnect):
        return Failure.CLOSED
    links = list(chain(exc))
    text = str(exc).lower()
    if any(isinstance(link, ssl.SSLError) for link in links):
        return Failure.TLS
    if isinstance(exc, httpx.UnsupportedProtocol):
        return Failure.BAD_URL
    if isinstance(exc, httpx.ConnectError):
        if "certificate" in text:
            return Failure.TLS
        if any(isinstance(link, ConnectionRefusedError) for link in links) or "refused" in text:
            return Failure.REFUSED
        return Failure.CONNECT
    if isinstance(exc, httpx.TimeoutException):
        return Failure.TIMEOUT
    if isinstance(exc, _NETWORK):
        return Failure.NETWORK
    return None
