"""Opening a sync session: the upgrade request through an :class:`httpx.Client`, then the session.

The client's own transport makes the request, whatever it is (a standard
:class:`httpx.HTTPTransport`, a mounted or custom transport, an
:class:`httpx.MockTransport`); the ``101`` response's ``network_stream``
extension then belongs to the session.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Generic, TypeVar, overload

import httpx

from .._connect import DEFAULT_COMPRESSION, default_ssl_context
from .._connect_errors import check_request_keywords, http_url, restated
from .._exceptions import WebSocketUpgradeError
from .._options import OptionAttributes, SessionOptions
from .._pool import leave_pool_sync
from .._proxy import open_upgrade_sync
from .._types import (
    DEFAULT_CLOSE_TIMEOUT_SECONDS,
    DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    DEFAULT_QUEUE_SIZE,
    USE_MAX_MESSAGE_SIZE,
    UseMaxMessageSize,
)
from ..protocol import Handshake
from ..protocol._deflate import DeflateOptions
from ..protocol._handshake import HandshakeError
from ._core import check_no_event_loop
from ._session import WebSocketSession

__all__ = ["WebSocketClient", "connect_ws"]

logger = logging.getLogger("streams")

SyncSession = TypeVar("SyncSession", bound=WebSocketSession)

_HANDSHAKE_HEADERS = ("connection", "upgrade", "sec-websocket-protocol", "sec-websocket-extensions")


class WebSocketClient(OptionAttributes, Generic[SyncSession]):
    """Opens sync WebSocket sessions through an :class:`httpx.Client`.

    Args:
        client: the httpx client that makes the upgrade request; a default
            one per connection if ``None``.
        max_message_size_bytes: the largest message accepted (close 1009 beyond).
        max_fragmented_size_bytes: the largest message accepted in fragments,
            streamed for ``receive_fragments()`` (see :func:`connect_ws`).
        queue_size: how many messages may wait for the consumer before the
            session stops reading the network.
        keepalive_ping_interval_seconds: how often to ping; ``None`` disables keepalive.
        keepalive_ping_timeout_seconds: how long a silent peer is tolerated after a ping.
        session_class: the session class to make, :class:`WebSocketSession` or a subclass.
        close_timeout: how long the closing handshake may take before the
            connection is dropped.
        compression: the permessage-deflate offer, or ``None`` to offer no compression.
    """

    @overload
    def __init__(
        self: WebSocketClient[WebSocketSession],
        client: httpx.Client | None = None,
        *,
        max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
        max_fragmented_size_bytes: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
        keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
        session_class: None = None,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
        compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    ) -> None: ...
    @overload
    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
        max_fragmented_size_bytes: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
        keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
        session_class: type[SyncSession],
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
        compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    ) -> None: ...
    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
        max_fragmented_size_bytes: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
        keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
        session_class: type[SyncSession] | None = None,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
        compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    ) -> None:
        self.client = client
        self.session_class: type[SyncSession] = session_class or WebSocketSession  # type: ignore[assignment]
        self.options = SessionOptions.pick(locals())

    @classmethod
    def _from_options(
        cls, client: httpx.Client | None, options: SessionOptions, session_class: type[SyncSession]
    ) -> WebSocketClient[SyncSession]:
        self = cls.__new__(cls)
        self.client = client
        self.session_class = session_class
        self.options = options
        return self

    @contextlib.contextmanager
    def connect(
        self,
        url: httpx.URL | str,
        subprotocols: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[SyncSession]:
        """Open a session; leaving the ``with`` block closes it.

        Args:
            url: the WebSocket URL (``ws://``, ``wss://``, ``http://`` or
                ``https://``), relative to the client's ``base_url`` if it has one.
            subprotocols: the subprotocols to offer, in order of preference.
            **kwargs: passed to :meth:`httpx.Client.stream`: ``headers``,
                ``params``, ``cookies``, ``auth``, ``timeout``, ``extensions``...

        Yields:
            The open session.

        Raises:
            WebSocketUpgradeError: the server refused the upgrade or answered
                with an invalid one, or the transport's ``101`` response
                carries no ``network_stream``; the exception carries the response.
            httpx.HTTPError: the request itself failed, as raised by httpx.
            TypeError: ``client`` is an :class:`httpx.AsyncClient`.
            RuntimeError: an event loop runs in this thread (use
                :func:`~streams.aconnect_ws` there), or ``client`` is closed.

        An exception raised inside the ``with`` block comes out as itself,
        after the session closed.
        """
        check_no_event_loop("open a sync WebSocket session")
        with contextlib.ExitStack() as stack:
            client = self.client
            if client is None:
                client = stack.enter_context(httpx.Client(verify=default_ssl_context()))
            elif isinstance(client, httpx.AsyncClient):
                raise TypeError(
                    "connect_ws takes an httpx.Client; with an httpx.AsyncClient, use aconnect_ws"
                )
            elif not isinstance(client, httpx.Client):
                raise TypeError(f"client must be an httpx.Client, not {type(client).__name__}")
            options = self.options
            handshake = Handshake(
                subprotocols=subprotocols,
                compression=options.compression,
                max_message_size=options.max_message_size_bytes,
            )
            headers = httpx.Headers(kwargs.pop("headers", None))
            headers.update(handshake.request_headers())
            target = http_url(url, client)
            check_request_keywords("connect_ws", client, kwargs)
            logger.debug("connecting to %s", target)
            with restated(target):
                response = stack.enter_context(
                    open_upgrade_sync(client, target, headers=headers, **kwargs)
                )
            stream = _upgraded_stream(response, handshake)
            # The session, not the pool, owns the connection from now on.
            leave_pool_sync(response)
            session = self.session_class(
                stream,
                max_message_size_bytes=options.max_message_size_bytes,
                queue_size=options.queue_size,
                keepalive_ping_interval_seconds=options.keepalive_ping_interval_seconds,
                keepalive_ping_timeout_seconds=options.keepalive_ping_timeout_seconds,
                response=response,
            )
            # Given apart from the constructor, whose keywords are httpx-ws's,
            # so that a subclass overriding __init__ with them works.
            session._configure(
                max_fragmented_size=options.max_fragmented_size_bytes,
                close_timeout=options.close_timeout,
                extensions=handshake.extensions,
                subprotocol=handshake.subprotocol,
            )
            with session:
                yield session


def _upgraded_stream(response: httpx.Response, handshake: Handshake) -> Any:
    """Check the upgrade response; return the connection's network stream.

    Raises:
        WebSocketUpgradeError: the response is not a valid upgrade, or has no
            network stream.
    """
    all_values = {name: response.headers.get_list(name) for name in _HANDSHAKE_HEADERS}
    stream: Any = response.extensions.get("network_stream")
    if response.status_code == 101 and stream is None:
        raise WebSocketUpgradeError(
            response,
            "WebSocket upgrade failed: the 101 response has no network stream "
            "(response.extensions['network_stream']); the transport must hand over the "
            "upgraded connection's httpcore.NetworkStream there",
        )
    try:
        handshake.validate(response.status_code, response.headers, all_values)
    except HandshakeError as exc:
        if response.status_code == 101:
            stream.close()
        else:
            with contextlib.suppress(httpx.HTTPError):
                response.read()
        logger.debug("handshake failed: %s", exc)
        raise WebSocketUpgradeError(response, f"WebSocket upgrade failed: {exc}") from None
    logger.debug(
        "connected: subprotocol=%r extensions=%r", handshake.subprotocol, handshake.extensions
    )
    return stream


@overload
def connect_ws(
    url: httpx.URL | str,
    client: httpx.Client | None = None,
    *,
    max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    max_fragmented_size_bytes: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    subprotocols: list[str] | None = None,
    session_class: None = None,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    **kwargs: Any,
) -> contextlib.AbstractContextManager[WebSocketSession]: ...
@overload
def connect_ws(
    url: httpx.URL | str,
    client: httpx.Client | None = None,
    *,
    max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    max_fragmented_size_bytes: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    subprotocols: list[str] | None = None,
    session_class: type[SyncSession],
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    **kwargs: Any,
) -> contextlib.AbstractContextManager[SyncSession]: ...
def connect_ws(
    url: httpx.URL | str,
    client: httpx.Client | None = None,
    *,
    max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    max_fragmented_size_bytes: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    subprotocols: list[str] | None = None,
    session_class: type[WebSocketSession] | None = None,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    **kwargs: Any,
) -> contextlib.AbstractContextManager[WebSocketSession]:
    """Open a sync WebSocket session.

    Example::

        with connect_ws("ws://localhost:8000/ws") as ws:
            ws.send_text("Hello!")
            for message in ws:
                print(message)

    The upgrade request goes through ``client`` (its transport, mounts,
    auth, cookies, headers, event hooks...), and the session then runs on the
    upgraded connection's network stream, with one background thread.

    Args:
        url: the WebSocket URL (``ws://``, ``wss://``, ``http://`` or ``https://``).
        client: the :class:`httpx.Client` to connect with; a default one
            (closed afterwards) if ``None``.
        max_message_size_bytes: the largest message accepted, after
            decompression; a larger one closes the connection with code 1009.
            It also bounds every frame. Defaults to 64 KiB.
        max_fragmented_size_bytes: the largest message accepted in fragments
            (uncompressed): one past ``max_message_size_bytes`` is not held
            whole but streams, part by part, for ``receive_fragments()``
            (``receive()`` and iteration raise
            :class:`~streams.WebSocketInvalidTypeReceived` on it). ``None``:
            no limit. Defaults to ``max_message_size_bytes``: nothing streams.
        queue_size: how many received messages may wait for the consumer; when
            that many wait, the session stops reading the network. Defaults to 512.
        keepalive_ping_interval_seconds: how often to ping the server; ``None``
            disables keepalive. Defaults to 20 seconds.
        keepalive_ping_timeout_seconds: how long the server may stay silent
            after a ping before the connection is closed (1011) and
            :class:`~streams.WebSocketNetworkError` raised. Defaults to 20 seconds.
        subprotocols: the subprotocols to offer, in order of preference.
        session_class: the session class to make (a subclass of
            :class:`WebSocketSession`); the default one if ``None``.
        close_timeout: how long the closing handshake may take before the
            connection is dropped. Defaults to 10 seconds.
        compression: the permessage-deflate offer, or ``None`` to offer no compression.
        **kwargs: passed to :meth:`httpx.Client.stream`: ``headers``,
            ``params``, ``cookies``, ``auth``, ``timeout``, ``extensions``...

    Returns:
        A context manager giving the open :class:`WebSocketSession` (or
        ``session_class``).

    Raises:
        WebSocketUpgradeError: the server refused the upgrade or answered with
            an invalid one, or the ``101`` response has no network stream; the
            exception carries the response.
        httpx.HTTPError: the request itself failed (connection refused, TLS
            verification, timeout...), as raised by httpx.
        TypeError: ``client`` is an :class:`httpx.AsyncClient`.
        RuntimeError: an event loop runs in this thread, or ``client`` is closed.

    An exception raised inside the ``with`` block comes out as itself, after
    the session closed.
    """
    options = SessionOptions.pick(locals())
    ws_client = WebSocketClient._from_options(client, options, session_class or WebSocketSession)
    return ws_client.connect(url, subprotocols=subprotocols, **kwargs)
