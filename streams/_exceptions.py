"""The exceptions raised by streams.

Every exception the library raises on its own derives from one root, so
``except HTTPXWSException`` catches them all. The names are those of httpx-ws,
so code written for it keeps working::

    HTTPXWSException
    ├── WebSocketDisconnect          the connection was closed (code, reason)
    ├── WebSocketInvalidTypeReceived a message was not of the expected kind
    ├── WebSocketNetworkError        the network failed or the peer went silent
    │   ├── WebSocketKeepaliveTimeout    the peer did not answer a keepalive ping
    │   ├── WebSocketOverflowError       the consumer fell behind (overflow="disconnect")
    │   └── WebSocketStaleError          no data message for stale_after seconds
    ├── WebSocketUpgradeError        the opening handshake was refused or invalid
    ├── WebSocketDecodeError         a message could not be decoded or validated
    │   └── WebsocketPayloadError        (streams.websocket) not bytes nor a JSON object
    ├── SequenceGapError             items were missing from a numbered feed (stream.sequence)
    ├── WebsocketSignal              (streams.websocket) what a resilient connection should do
    │   ├── ReconnectSignal              try again
    │   ├── ResumeSignal                 try to resume the session
    │   └── DisconnectSignal             stop
    └── OutboxFullError              (streams) a reconnecting feed's outbox is full

A receive that times out raises the built-in :class:`TimeoutError` (in the
sync API, :class:`~streams.ReceiveTimeout`, which is both a
:class:`TimeoutError` and the :class:`queue.Empty` httpx-ws raised).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = [
    "HTTPXWSException",
    "SequenceGapError",
    "WebSocketDecodeError",
    "WebSocketDisconnect",
    "WebSocketInvalidTypeReceived",
    "WebSocketKeepaliveTimeout",
    "WebSocketNetworkError",
    "WebSocketOverflowError",
    "WebSocketStaleError",
    "WebSocketUpgradeError",
]


class HTTPXWSException(Exception):
    """Base class of every exception raised by streams."""


class WebSocketUpgradeError(HTTPXWSException):
    """The connection did not upgrade to a valid WebSocket session.

    Attributes:
        response: the HTTP response of the failed handshake, with its status,
            headers and (for a refusal) its body already read.
    """

    def __init__(self, response: httpx.Response, message: str | None = None) -> None:
        self.response = response
        if message is None:
            message = f"WebSocket upgrade failed: HTTP {response.status_code}"
        super().__init__(message)


class WebSocketDisconnect(HTTPXWSException):
    """The WebSocket session is closed.

    Attributes:
        code: the close code (1000 for a normal close, 1006 when the connection
            was lost without a Close frame).
        reason: the close reason, ``""`` when none was given.
    """

    def __init__(self, code: int = 1000, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason or ""
        super().__init__(code, self.reason)

    def __str__(self) -> str:
        if self.reason:
            return f"WebSocket closed with code {self.code}: {self.reason}"
        return f"WebSocket closed with code {self.code}"


class WebSocketInvalidTypeReceived(HTTPXWSException):
    """A message of the wrong kind arrived (text where bytes were expected, or the reverse).

    Attributes:
        event: the message as a wsproto event (``TextMessage`` or ``BytesMessage``).
    """

    def __init__(self, event: Any, detail: str | None = None) -> None:
        self.event = event
        super().__init__(detail or f"unexpected message type: {type(event).__name__}")


class WebSocketNetworkError(HTTPXWSException):
    """The network failed: the stream broke, or the peer stopped answering keepalive pings."""


class WebSocketKeepaliveTimeout(WebSocketNetworkError):
    """The peer answered no keepalive ping in time, and sent nothing else: it is gone.

    The session sent Close 1011 ("keepalive ping timeout") and dropped the connection.
    """


class WebSocketOverflowError(WebSocketNetworkError):
    """The consumer fell behind: with ``overflow="disconnect"``, the receive queue stayed full.

    The session sent Close 1008 ("slow consumer: ...") and dropped the
    connection; the messages queued before were delivered first.

    Attributes:
        policy: the overflow policy (``"disconnect"``).
        queue_size: the bound of the receive queue.
        lag_timeout: how long the queue stayed full, in seconds.
    """

    def __init__(self, policy: str, queue_size: int, lag_timeout: float) -> None:
        self.policy = policy
        self.queue_size = queue_size
        self.lag_timeout = lag_timeout
        super().__init__(
            f"slow consumer: the receive queue (queue_size={queue_size}) stayed full for"
            f" lag_timeout={lag_timeout} s with overflow={policy!r}; read faster, raise"
            " queue_size or lag_timeout, or choose overflow='drop_oldest'"
        )


class WebSocketStaleError(WebSocketNetworkError):
    """The feed went quiet: no data message was read for ``stale_after`` seconds.

    Pings and pongs do not count as data, and a consumer too slow to let the
    session read is never taken for a quiet feed. The session sent Close 1011
    ("stale: ...") and dropped the connection.

    Attributes:
        stale_after: the quiet time allowed, in seconds.
    """

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        super().__init__(
            f"stale feed: no data message for stale_after={stale_after} s (the connection"
            " is up, but the server sends nothing); reconnect, or raise stale_after"
        )


class WebSocketDecodeError(HTTPXWSException, ValueError):
    """A message could not be decoded or did not validate against the expected type.

    Nothing is lost: the raw message is kept.

    Attributes:
        payload: the raw message, exactly as received (``str`` or ``bytes``).
        reason: why decoding failed, with msgspec's path to the bad field
            (for example ``"Expected `float`, got `str` - at `$.px`"``).
    """

    def __init__(self, payload: str | bytes, reason: str) -> None:
        self.payload = payload
        self.reason = reason
        super().__init__(reason)


class SequenceGapError(HTTPXWSException):
    """Items are missing from a numbered feed: ``stream.sequence()`` met a gap.

    Raised at the position of the first item after the gap (with
    ``on_gap="raise"``), or passed to the ``on_gap`` callable. The item is not
    lost: it is carried here.

    Attributes:
        expected: the number the stream expected next.
        received: the number of the item that came instead (greater).
        item: that item.
    """

    def __init__(self, expected: int, received: int, item: Any) -> None:
        self.expected = expected
        self.received = received
        self.item = item
        super().__init__(
            f"sequence gap: expected {expected}, received {received}"
            f" ({self.missing} missing); resynchronise (for example from a snapshot),"
            " or pass on_gap='skip' or a callable to stream.sequence()"
        )

    @property
    def missing(self) -> int:
        """How many numbers were skipped (``received - expected``)."""
        return self.received - self.expected
