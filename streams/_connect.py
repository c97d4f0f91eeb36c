"""Opening an async session: the upgrade request through httpx, then the session.

httpx does everything HTTP: connection pooling, TLS (verified by default),
proxies, auth, cookies, headers and timeouts all come from the
:class:`httpx.AsyncClient` given, or from a default one. The upgraded
connection's network stream then belongs to the session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import sys
import urllib.request
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

import httpx

from ._connect_errors import check_request_keywords, http_url, restated
from ._exceptions import WebSocketUpgradeError
from ._http import AsyncHTTPTransport, shared_ssl_context
from ._options import DEFAULT_COMPRESSION, OptionAttributes, SessionOptions
from ._pool import leave_pool
from ._proxy import open_upgrade
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
from .protocol import Handshake
from .protocol._deflate import DeflateOptions
from .protocol._handshake import HandshakeError

__all__ = [
    "DEFAULT_COMPRESSION",
    "AsyncWebSocketClient",
    "SessionContext",
    "aconnect_ws",
    "connect_with_options",
    "http_url",
]

logger = logging.getLogger("streams")

AsyncSession = TypeVar("AsyncSession", bound=AsyncWebSocketSession)

_HANDSHAKE_HEADERS = ("connection", "upgrade", "sec-websocket-protocol", "sec-websocket-extensions")


def default_ssl_context() -> ssl.SSLContext:
    """The SSL context of the default client, made once: loading CA certificates is slow."""
    return shared_ssl_context()


def default_client() -> httpx.AsyncClient:
    """The client of a connect call given none: the library's transport, unless proxies are set.

    With proxy environment variables set, httpx's own transports honour them
    (and ``NO_PROXY``): the library's transport is used only without them.
    """
    ssl_context = default_ssl_context()
    if _proxies_configured():
        return httpx.AsyncClient(verify=ssl_context)
    return httpx.AsyncClient(verify=ssl_context, transport=AsyncHTTPTransport(verify=ssl_context))


def _proxies_configured() -> bool:
    """Whether proxies are configured, as httpx reads them (``urllib.request.getproxies``).

    On Linux that is the environment alone: a scan of the variable names
    (a few microseconds) answers first when none ends in ``_proxy``.
    """
    if sys.platform.startswith("linux") and not any(
        name[-6:].lower() == "_proxy" for name in os.environ
    ):
        return False
    return any(urllib.request.getproxies().values())


class AsyncWebSocketClient(OptionAttributes, Generic[AsyncSession]):
    """Opens async WebSocket sessions through an :class:`httpx.AsyncClient`.

    Args:
        client: the httpx client that makes the upgrade request.
        max_message_size_bytes: the largest message accepted (close 1009 beyond).
        max_fragmented_size_bytes: the largest message accepted in fragments,
            streamed for ``receive_fragments()`` (see :func:`aconnect_ws`).
        queue_size: how many messages may wait for the consumer before the
            session stops reading the network.
        keepalive_ping_interval_seconds: how often to ping; ``None`` disables keepalive.
        keepalive_ping_timeout_seconds: how long a silent peer is tolerated after a ping.
        session_class: the session class to make, :class:`AsyncWebSocketSession`
            or a subclass.
        close_timeout: how long the closing handshake may take before the
            connection is dropped.
        compression: the permessage-deflate offer, or ``None`` to offer no compression.
        overflow: what to do when ``queue_size`` messages wait (see :func:`aconnect_ws`).
        lag_timeout: with ``overflow="disconnect"``, how long the queue may stay full.
        stale_after: how long without a data message before the session fails.
        send_rate: messages per second, or ``(rate, burst)``.
        send_rate_counts_pings: whether pings wait for the send rate too.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
        max_fragmented_size_bytes: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
        keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
        session_class: type[AsyncSession] = AsyncWebSocketSession,  # type: ignore[assignment]
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
        compression: DeflateOptions | None = DEFAULT_COMPRESSION,
        overflow: Overflow = "block",
        lag_timeout: float | None = None,
        stale_after: float | None = None,
        send_rate: float | tuple[float, int] | None = None,
        send_rate_counts_pings: bool = False,
    ) -> None:
        self.client = client
        self.session_class = session_class
        self.options = SessionOptions.pick(locals())

    def connect(
        self,
        url: httpx.URL | str,
        subprotocols: list[str] | None = None,
        **kwargs: Any,
    ) -> SessionContext[AsyncSession]:
        """Open a session; leaving the ``async with`` block closes it.

        Args:
            url: the WebSocket URL (``ws://``, ``wss://``, ``http://`` or ``https://``).
            subprotocols: the subprotocols to offer, in order of preference.
            **kwargs: passed to :meth:`httpx.AsyncClient.stream`: ``headers``,
                ``params``, ``cookies``, ``auth``, ``timeout``, ``extensions``...

        Returns:
            An async context manager whose ``async with`` yields the open session.

        Raises:
            WebSocketUpgradeError: the server refused the upgrade or answered
                with an invalid one; the exception carries the response.
            httpx.HTTPError: the request itself failed (connection refused,
                TLS verification, timeout...), as raised by httpx.
        """
        return SessionContext(
            self.client, url, subprotocols, self.options, self.session_class, kwargs
        )


class SessionContext(contextlib.AbstractAsyncContextManager[AsyncSession]):
    """The ``async with`` of a connect call: entering opens the session, leaving closes it.

    Once the session is open, this holds only what closing needs: the
    session, the upgrade response's context and a client made for the call.
    The request's keywords and headers, the handshake and the rest of the
    opening are let go, so that an idle session costs no more than its own objects.
    """

    __slots__ = ("_opening", "_own_client", "_session", "_upgrade")

    def __init__(
        self,
        client: httpx.AsyncClient | None,
        url: httpx.URL | str,
        subprotocols: list[str] | None,
        options: SessionOptions,
        session_class: type[AsyncSession],
        kwargs: dict[str, Any],
    ) -> None:
        self._opening: _Opening[AsyncSession] | None = (
            client,
            url,
            subprotocols,
            options,
            session_class,
            kwargs,
        )
        self._own_client: httpx.AsyncClient | None = None
        self._upgrade: contextlib.AbstractAsyncContextManager[httpx.Response] | None = None
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> AsyncSession:
        opening, self._opening = self._opening, None
        if opening is None:
            raise RuntimeError("a connect call opens one session: call it again for another")
        client, url, subprotocols, options, session_class, kwargs = opening
        try:
            if client is None:
                client = self._own_client = default_client()
                await client.__aenter__()
            session = await self._open(client, url, subprotocols, options, session_class, kwargs)
            await session.__aenter__()
        except BaseException as exc:
            await self._release(exc)
            raise
        self._session = session
        return session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        assert session is not None, "the session was not entered"
        try:
            await session.__aexit__(exc_type, exc_val, exc_tb)
        finally:
            await self._release(exc_val)

    async def _release(self, exc: BaseException | None) -> None:
        """Close the upgrade response, then the client made for the call, if any."""
        upgrade, self._upgrade = self._upgrade, None
        client, self._own_client = self._own_client, None
        exc_info = (None, None, None) if exc is None else (type(exc), exc, exc.__traceback__)
        try:
            if upgrade is not None:
                await upgrade.__aexit__(*exc_info)
        finally:
            if client is not None:
                await client.__aexit__(*exc_info)

    async def _open(
        self,
        client: httpx.AsyncClient,
        url: httpx.URL | str,
        subprotocols: list[str] | None,
        options: SessionOptions,
        session_class: type[AsyncSession],
        kwargs: dict[str, Any],
    ) -> AsyncSession:
        """The upgrade request, its checks, and the session made (not yet entered)."""
        handshake = Handshake(
            subprotocols=subprotocols,
            compression=options.compression,
            max_message_size=options.max_message_size_bytes,
        )
        headers = httpx.Headers(kwargs.pop("headers", None))
        headers.update(handshake.request_headers())
        target = http_url(url, client)
        check_request_keywords("aconnect_ws", client, kwargs)
        logger.debug("connecting to %s", target)
        with restated(target):
            upgrade = open_upgrade(client, target, headers=headers, **kwargs)
            response = await upgrade.__aenter__()
        self._upgrade = upgrade
        all_values = {name: response.headers.get_list(name) for name in _HANDSHAKE_HEADERS}
        try:
            handshake.validate(response.status_code, response.headers, all_values)
        except HandshakeError as exc:
            if response.status_code == 101:
                stream = response.extensions.get("network_stream")
                if stream is not None:
                    await stream.aclose()
            else:
                with contextlib.suppress(httpx.HTTPError):
                    await response.aread()
            logger.debug("handshake failed: %s", exc)
            raise WebSocketUpgradeError(response, f"WebSocket upgrade failed: {exc}") from None
        logger.debug(
            "connected: subprotocol=%r extensions=%r",
            handshake.subprotocol,
            handshake.extensions,
        )
        # The session, not the pool, owns the connection from now on.
        await leave_pool(response)
        session = session_class(
            response.extensions["network_stream"],
            max_message_size_bytes=options.max_message_size_bytes,
            queue_size=options.queue_size,
            keepalive_ping_interval_seconds=options.keepalive_ping_interval_seconds,
            keepalive_ping_timeout_seconds=options.keepalive_ping_timeout_seconds,
            response=response,
        )
        # Given apart from the constructor, whose keywords are httpx-ws's,
        # so that a subclass overriding __init__ with them works.
        session._configure(
            options=options,
            extensions=handshake.extensions,
            subprotocol=handshake.subprotocol,
        )
        return session


#: What a connect call opens a session with: the client (a default one if
#: ``None``), URL, subprotocols, options, session class and request keywords.
_Opening = tuple[
    httpx.AsyncClient | None,
    httpx.URL | str,
    list[str] | None,
    SessionOptions,
    type[AsyncSession],
    dict[str, Any],
]


@overload
def aconnect_ws(
    url: httpx.URL | str,
    client: httpx.AsyncClient | None = None,
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
    overflow: Overflow = "block",
    lag_timeout: float | None = None,
    stale_after: float | None = None,
    send_rate: float | tuple[float, int] | None = None,
    send_rate_counts_pings: bool = False,
    **kwargs: Any,
) -> contextlib.AbstractAsyncContextManager[AsyncWebSocketSession]: ...


@overload
def aconnect_ws(
    url: httpx.URL | str,
    client: httpx.AsyncClient | None = None,
    *,
    max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    max_fragmented_size_bytes: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    subprotocols: list[str] | None = None,
    session_class: type[AsyncSession],
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    overflow: Overflow = "block",
    lag_timeout: float | None = None,
    stale_after: float | None = None,
    send_rate: float | tuple[float, int] | None = None,
    send_rate_counts_pings: bool = False,
    **kwargs: Any,
) -> contextlib.AbstractAsyncContextManager[AsyncSession]: ...


def aconnect_ws(
    url: httpx.URL | str,
    client: httpx.AsyncClient | None = None,
    *,
    max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    max_fragmented_size_bytes: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    subprotocols: list[str] | None = None,
    session_class: type[AsyncWebSocketSession] | None = None,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    overflow: Overflow = "block",
    lag_timeout: float | None = None,
    stale_after: float | None = None,
    send_rate: float | tuple[float, int] | None = None,
    send_rate_counts_pings: bool = False,
    **kwargs: Any,
) -> contextlib.AbstractAsyncContextManager[AsyncWebSocketSession]:
    """Open an async WebSocket session.

    Example::

        async with aconnect_ws("ws://localhost:8000/ws") as ws:
            await ws.send_text("Hello!")
            async for message in ws:
                print(message)

    Args:
        url: the WebSocket URL (``ws://``, ``wss://``, ``http://`` or ``https://``).
        client: the :class:`httpx.AsyncClient` to connect with; a default one
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
            that many wait, the session stops reading the network, so a slow
            consumer slows the server down and memory stays bounded. Defaults to 512.
        keepalive_ping_interval_seconds: how often to ping the server; ``None``
            disables keepalive. Defaults to 20 seconds.
        keepalive_ping_timeout_seconds: how long the server may stay silent
            after a ping: then the connection is closed with 1011 and
            :class:`~streams.WebSocketNetworkError` raised. Bytes still
            arriving, or a consumer too slow to let the session read them, count
            as signs of life. Defaults to 20 seconds.
        subprotocols: the subprotocols to offer, in order of preference.
        session_class: the session class to make (a subclass of
            :class:`AsyncWebSocketSession`); the default one if ``None``.
        close_timeout: how long the closing handshake may take before the
            connection is dropped. Defaults to 10 seconds.
        compression: the permessage-deflate offer (:class:`DeflateOptions`), or
            ``None`` to offer no compression.
        overflow: what to do when ``queue_size`` messages wait for the consumer:
            ``"block"`` (the default) stops reading the network (backpressure
            through TCP); ``"drop_oldest"`` / ``"drop_newest"`` drop the oldest
            waiting message or the new one and never stop reading (counted in
            ``statistics().overflow_dropped``); ``"disconnect"`` closes with
            1008 once the queue stayed full ``lag_timeout`` seconds, then raises
            :class:`~streams.WebSocketOverflowError` after the messages queued.
        lag_timeout: with ``overflow="disconnect"`` only: how long the oldest
            queued message may wait while the queue is full. Defaults to 5 seconds.
        stale_after: seconds without a data message read from the network
            (pings and pongs do not count, nor time when messages wait for the
            consumer) before the session closes with 1011 and raises
            :class:`~streams.WebSocketStaleError`; ``None`` (the default) never.
        send_rate: a limit on sent messages, for servers that disconnect
            clients sending too fast: messages per second, or ``(rate, burst)``
            (``burst`` messages may go at once after a quiet time; 1 with a
            plain rate). Sends wait for their turn, in order, and are never
            dropped; pongs and the Close never wait. ``None``: no limit.
        send_rate_counts_pings: whether pings (keepalive's too) wait for the
            send rate as well. Defaults to False.
        **kwargs: passed to :meth:`httpx.AsyncClient.stream`: ``headers``,
            ``params``, ``cookies``, ``auth``, ``timeout``, ``extensions``...

    Yields:
        The open :class:`AsyncWebSocketSession`.

    Raises:
        WebSocketUpgradeError: the server refused the upgrade or answered with
            an invalid one; the exception carries the response.
        httpx.HTTPError: the request itself failed (connection refused, TLS
            verification, timeout...), as raised by httpx.
    """
    options = SessionOptions.pick(locals())
    return connect_with_options(
        url, client, subprotocols, options, session_class or AsyncWebSocketSession, kwargs
    )


def connect_with_options(
    url: httpx.URL | str,
    client: httpx.AsyncClient | None,
    subprotocols: list[str] | None,
    options: SessionOptions,
    session_class: type[AsyncWebSocketSession],
    kwargs: dict[str, Any],
) -> SessionContext[AsyncWebSocketSession]:
    """:func:`aconnect_ws` for inner layers: the options object built once by a public function."""
    return SessionContext(client, url, subprotocols, options, session_class, dict(kwargs))
