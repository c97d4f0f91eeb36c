"""An httpx transport that runs an ASGI app in-process, WebSocket included.

:class:`ASGIWebSocketTransport` is :class:`httpx.ASGITransport` (plain HTTP
requests go through it unchanged) plus the server side of WebSocket: an
upgrade request starts the app in a task of its own, and the ``101`` response
carries an :class:`ASGIWebSocketAsyncNetworkStream` as its ``network_stream``
extension. That stream speaks real WebSocket frames (parsed and produced by
:class:`~streams.protocol.ServerProtocol`), so the client under test runs
exactly the code it runs against a server::

    transport = ASGIWebSocketTransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        async with streams.aconnect_ws("/ws", client) as ws:
            await ws.send_text("hello")
            assert await ws.receive_text() == "hello"

The app tasks live in a task group the transport opens when it is entered, so
enter it: ``async with httpx.AsyncClient(transport=...)`` does, and so does
``async with ASGIWebSocketTransport(app)``.

How a connection goes, seen from the app (as with uvicorn):

- ``receive()`` first returns ``websocket.connect``. The app answers with
  ``websocket.accept`` (its ``subprotocol`` and ``headers`` go into the ``101``
  response), ``websocket.close`` (the client gets ``403``), or a denial
  response (``websocket.http.response.start`` / ``.body``: the client gets
  that status, headers and body). It has ``initial_receive_timeout`` seconds
  to answer.
- Then ``websocket.receive`` for each complete client message (fragments are
  joined), and ``websocket.disconnect`` once, with the client's close code
  and reason (``1006`` if the client dropped the connection without a Close
  frame; the app's own code and reason right after the app closed). Pings are
  answered with pongs by the transport.
- ``websocket.send`` and ``websocket.close`` (``code`` defaults to ``1000``,
  ``reason`` to ``""``) become frames. After the client has gone, ``send``
  raises an :class:`OSError`, as the ASGI specification asks.
- When the app returns without closing, the client gets Close ``1000``; when
  it raises, Close ``1011`` with the exception's text as the reason.

App exceptions are not lost in a close code: one raised before the app
answered the handshake comes out of the upgrade request itself (as
:class:`httpx.ASGITransport` does for HTTP); one raised later is re-raised
when the transport exits (the end of the ``async with`` block of the client),
with its own traceback: bare when it is the only one and the block itself
raised nothing, else in an :class:`ExceptionGroup`. ``raise_app_exceptions=False``
turns both off: the client then only sees a ``500`` response or Close ``1011``.

Each connection's resources (the app task, its queues) are released when the
connection ends: when the client closes its network stream, the app gets
``websocket.disconnect`` and ``initial_receive_timeout`` seconds to return,
then it is cancelled.
"""

from __future__ import annotations

from types import TracebackType

import anyio
import anyio.abc
import httpx

from ._asgi_stream import ASGIApp as ASGIApp
from ._asgi_stream import ASGIWebSocketAsyncNetworkStream as ASGIWebSocketAsyncNetworkStream
from ._asgi_stream import ASGIWebSocketTransportError as ASGIWebSocketTransportError
from ._asgi_stream import Message as Message
from ._asgi_stream import Receive as Receive
from ._asgi_stream import Scope as Scope
from ._asgi_stream import Send as Send
from ._asgi_stream import UnhandledASGIMessageType as UnhandledASGIMessageType
from ._asgi_stream import UnhandledWebSocketEvent as UnhandledWebSocketEvent
from .protocol import check_upgrade_request

__all__ = [
    "ASGIApp",
    "ASGIWebSocketAsyncNetworkStream",
    "ASGIWebSocketTransport",
    "ASGIWebSocketTransportError",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "UnhandledASGIMessageType",
    "UnhandledWebSocketEvent",
]

_DEFAULT_PORTS = {"ws": 80, "wss": 443}
_TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")


class ASGIWebSocketTransport(httpx.ASGITransport):
    """:class:`httpx.ASGITransport` that also serves WebSocket upgrades in-process.

    A request is a WebSocket upgrade when its scheme is ``ws``/``wss`` or it
    carries ``Upgrade: websocket``; every other request goes to
    :class:`httpx.ASGITransport` unchanged. Each upgrade is a connection of its
    own: its own scope, its own app task, released when it ends.

    The app tasks run in a task group opened when the transport is entered:
    use ``async with httpx.AsyncClient(transport=ASGIWebSocketTransport(app))``
    (the client enters its transport), or ``async with`` the transport itself;
    both may be nested. When the outermost block exits, open connections are
    closed (their apps get ``websocket.disconnect`` with ``1006``) and the
    exceptions the apps raised after the handshake are re-raised: the single
    exception as itself if the block raised nothing, else an
    :class:`ExceptionGroup` of them.

    Args:
        app: the ASGI app.
        raise_app_exceptions: re-raise the app's exceptions (see above; an
            exception before the handshake comes out of the request). When
            false, the client only sees a ``500`` response or Close ``1011``.
        root_path: the ``root_path`` of the scope.
        client: the ``client`` of the scope, ``(host, port)``.
        initial_receive_timeout: seconds the app has to answer the opening
            handshake (else the request raises
            :class:`ASGIWebSocketTransportError`), and to return once its
            connection has ended (else it is cancelled); ``None`` waits as long
            as it takes.
    """

    def __init__(
        self,
        app: ASGIApp,
        raise_app_exceptions: bool = True,
        root_path: str = "",
        client: tuple[str, int] = ("127.0.0.1", 123),
        *,
        initial_receive_timeout: float | None = 1.0,
    ) -> None:
        super().__init__(
            app, raise_app_exceptions=raise_app_exceptions, root_path=root_path, client=client
        )
        self.initial_receive_timeout = initial_receive_timeout
        self._task_group: anyio.abc.TaskGroup | None = None
        self._depth = 0
        self._connections: set[ASGIWebSocketAsyncNetworkStream] = set()
        self._app_exceptions: list[Exception] = []

    async def __aenter__(self) -> ASGIWebSocketTransport:
        if self._depth == 0:
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
            self._task_group = task_group
        self._depth += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        """Leave the transport; the outermost exit closes every connection.

        Raises:
            Exception: the one exception an app raised after its handshake,
                when the block raised nothing.
            ExceptionGroup: the exceptions the apps raised, when there are
                several or the block raised too (it is then their context).

        Cancelling is safe: the apps are cancelled.
        """
        self._depth -= 1
        if self._depth > 0:
            return
        task_group, self._task_group = self._task_group, None
        assert task_group is not None, "the transport was not entered"
        try:
            for connection in list(self._connections):
                task_group.start_soon(connection.aclose)
        finally:
            # The block's own exception goes on as itself: the group only sees
            # a cancellation (which it must see to end). The transport never
            # cancels the group, so the group never swallows an exception and
            # its result can be ignored.
            if isinstance(exc_value, anyio.get_cancelled_exc_class()):
                await task_group.__aexit__(exc_type, exc_value, traceback)
            else:
                await task_group.__aexit__(None, None, None)
        errors, self._app_exceptions = self._app_exceptions, []
        if errors and self.raise_app_exceptions:
            if len(errors) == 1 and exc_value is None:
                raise errors[0]
            raise ExceptionGroup(f"the ASGI app raised {len(errors)} exception(s)", errors)

    async def aclose(self) -> None:
        """Close every open WebSocket connection, as the client's end of each does."""
        for connection in list(self._connections):
            await connection.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Serve a WebSocket upgrade, or plain HTTP through :class:`httpx.ASGITransport`.

        Returns:
            For an upgrade the app accepted, a ``101`` response whose
            ``network_stream`` extension is the connection; for one it refused,
            the refusal (see :meth:`ASGIWebSocketAsyncNetworkStream.handshake`);
            for an invalid upgrade request, ``400`` (or ``426`` for a wrong
            ``Sec-WebSocket-Version``) without calling the app.

        Raises:
            ASGIWebSocketTransportError: the transport was not entered, or the
                app did not answer the handshake in time.
            Exception: what the app raised before answering the handshake.

        Cancelling is safe: the app of an unfinished handshake is cancelled.
        """
        if not _is_websocket_request(request):
            return await super().handle_async_request(request)
        task_group = self._task_group
        if task_group is None:
            raise ASGIWebSocketTransportError(
                "WebSocket requests need the transport entered: use"
                " `async with httpx.AsyncClient(transport=ASGIWebSocketTransport(app))`"
                " or `async with ASGIWebSocketTransport(app)`"
            )
        refusal = _check_upgrade_request(request)
        if refusal is not None:
            return refusal
        connection = ASGIWebSocketAsyncNetworkStream(
            self.app,
            self._websocket_scope(request),
            task_group,
            self.initial_receive_timeout,
            raise_app_exceptions=self.raise_app_exceptions,
            on_finished=self._connection_finished,
        )
        self._connections.add(connection)
        return await connection.handshake()

    def _connection_finished(self, connection: ASGIWebSocketAsyncNetworkStream) -> None:
        self._connections.discard(connection)
        if connection.app_exception is not None:
            self._app_exceptions.append(connection.app_exception)

    def _websocket_scope(self, request: httpx.Request) -> Scope:
        url = request.url
        scheme = "wss" if url.scheme in ("https", "wss") else "ws"
        return {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": scheme,
            "path": url.path,
            "raw_path": url.raw_path.split(b"?", 1)[0],
            "query_string": url.query,
            "root_path": self.root_path,
            "headers": [(name.lower(), value) for name, value in request.headers.raw],
            "client": self.client,
            "server": (url.host, url.port if url.port is not None else _DEFAULT_PORTS[scheme]),
            "subprotocols": [
                token.strip()
                for value in request.headers.get_list("sec-websocket-protocol")
                for token in value.split(",")
                if token.strip()
            ],
            "extensions": {"websocket.http.response": {}},
        }


def _is_websocket_request(request: httpx.Request) -> bool:
    if request.url.scheme in ("ws", "wss"):
        return True
    return any(
        token.strip().lower() == "websocket"
        for value in request.headers.get_list("upgrade")
        for token in value.split(",")
    )


def _check_upgrade_request(request: httpx.Request) -> httpx.Response | None:
    """Return the error response to an invalid upgrade request, ``None`` for a valid one."""
    refusal = check_upgrade_request(list(request.headers.raw), request.url.raw_path)
    if refusal is None:
        return None
    return httpx.Response(
        refusal.status_code,
        headers=[_TEXT_PLAIN, *refusal.headers],
        content=refusal.reason.encode(),
    )
