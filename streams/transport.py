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

import enum
import math
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any, TypeAlias

import anyio
import anyio.abc
import anyio.lowlevel
import httpcore
import httpx

from .protocol import Close, ServerProtocol, UnknownEvent, check_upgrade_request
from .protocol._handshake import accept_key

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

#: The connection scope given to the app.
Scope: TypeAlias = MutableMapping[str, Any]
#: An ASGI event, received or sent by the app.
Message: TypeAlias = MutableMapping[str, Any]
#: The app's ``receive`` callable.
Receive: TypeAlias = Callable[[], Awaitable[Message]]
#: The app's ``send`` callable.
Send: TypeAlias = Callable[[Message], Awaitable[None]]
#: An ASGI 3 application.
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

_DEFAULT_PORTS = {"ws": 80, "wss": 443}
_ABNORMAL_CLOSURE = 1006
_INTERNAL_ERROR = 1011
_TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")


def _is_disconnect_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a framework's "the client left" exception (Starlette, FastAPI)."""
    return type(exc).__name__ in {"WebSocketDisconnect", "ClientDisconnected"}


class ASGIWebSocketTransportError(RuntimeError):
    """The app or the test used the transport in a way it cannot serve.

    Raised, for instance, for a WebSocket request to a transport that was not
    entered, or by the upgrade request when the app does not answer the
    handshake within ``initial_receive_timeout`` seconds.
    """


class UnhandledASGIMessageType(ASGIWebSocketTransportError):
    """The app sent an ASGI message that is not valid at this point of the connection.

    Raised inside the app, by its ``send`` call, so the traceback points at the
    offending line (``websocket.send`` before ``websocket.accept``, an unknown
    type, anything after ``websocket.close``...).

    Attributes:
        message: the message the app sent.
    """

    def __init__(self, message: Message, detail: str = "") -> None:
        self.message = message
        text = f"unexpected ASGI message {message.get('type')!r}"
        super().__init__(f"{text}: {detail}" if detail else text)


class UnhandledWebSocketEvent(ASGIWebSocketTransportError):
    """The client sent a WebSocket event the transport cannot hand to the app.

    Raised by :meth:`ASGIWebSocketAsyncNetworkStream.write`. Pings, pongs,
    messages (fragmented or not) and Close frames are all handled, so this
    signals an event wsproto added that the transport does not know.

    Attributes:
        event: the wsproto event.
    """

    def __init__(self, event: Any) -> None:
        self.event = event
        super().__init__(f"unhandled WebSocket event: {event!r}")


class _ClientDisconnected(OSError):
    """Raised by the app's ``send`` once the client has gone (the ASGI spec asks for an OSError)."""


class _AppState(enum.Enum):
    CONNECTING = "connecting"  # the app has not answered the handshake yet
    RESPONSE = "response"  # the app is sending a denial response
    ACCEPTED = "accepted"  # the app accepted: frames flow
    CLOSED = "closed"  # the app closed, refused, or returned


class ASGIWebSocketAsyncNetworkStream(httpcore.AsyncNetworkStream):
    """The client's end of one WebSocket connection to an ASGI app, as a network stream.

    What the client writes is parsed as WebSocket frames
    (:class:`~streams.protocol.ServerProtocol`) and handed to the app as ASGI
    events; what the app sends comes back as frames from :meth:`read`. It
    behaves like httpcore's socket streams: :meth:`read` returns ``b""`` once
    the server side has closed, raises :class:`httpcore.ReadTimeout` on
    timeout, and :meth:`read` or :meth:`write` after :meth:`aclose` raise
    :class:`httpcore.ReadError` or :class:`httpcore.WriteError`.

    :class:`ASGIWebSocketTransport` makes one per upgrade request and gives it
    to the client in the ``101`` response; there is seldom a reason to make
    one directly.

    Args:
        app: the ASGI app.
        scope: the connection's scope (``type`` ``websocket``).
        task_group: where the app task runs; it must outlive the connection.
        initial_receive_timeout: seconds the app has to answer the handshake,
            and to return once the connection has ended; ``None`` waits as
            long as it takes.
        raise_app_exceptions: whether :meth:`handshake` raises an exception
            the app raised before answering (else the response is a ``500``).
        on_finished: called once with this stream when the connection has
            fully ended (the app has returned and the stream is closed).

    Attributes:
        app_exception: the exception the app raised, if it raised one and
            :meth:`handshake` did not raise it.
    """

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        task_group: anyio.abc.TaskGroup,
        initial_receive_timeout: float | None = 1.0,
        *,
        raise_app_exceptions: bool = True,
        on_finished: Callable[[ASGIWebSocketAsyncNetworkStream], None] | None = None,
    ) -> None:
        self.app = app
        self.scope = scope
        self.app_exception: Exception | None = None
        self._task_group = task_group
        self._timeout = initial_receive_timeout
        self._raise_app_exceptions = raise_app_exceptions
        self._on_finished = on_finished
        self._protocol = ServerProtocol()
        self._state = _AppState.CONNECTING
        # Client -> app: ASGI events. App -> client: bytes of frames. Unbounded,
        # like the buffers of a socket pair, so neither side ever waits on the other.
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._outbox, self._from_app = anyio.create_memory_object_stream[bytes](math.inf)
        self._read_buffer = b""
        self._app_scope = anyio.CancelScope()
        self._app_done = anyio.Event()
        self._handshake_done = anyio.Event()
        self._response: httpx.Response | None = None
        self._handshake_error: Exception | None = None
        self._denial: tuple[int, list[tuple[bytes, bytes]], list[bytes]] | None = None
        self._disconnected = False  # the app was sent websocket.disconnect
        self._client_gone = False  # the connection is over on the network side
        self._closed = False  # aclose() was called
        self._finished = False

    # ----------------------------------------------------------------- handshake

    async def handshake(self) -> httpx.Response:
        """Start the app and wait for its answer to the opening handshake.

        Returns:
            The ``101`` response, carrying this stream as its ``network_stream``
            extension, when the app accepted; otherwise the refusal as a plain
            response: the app's denial response, ``403`` when it closed before
            accepting, ``500`` when it returned or (with
            ``raise_app_exceptions=False``) raised before answering. After a
            refusal the connection has ended.

        Raises:
            Exception: whatever the app raised before answering, with its
                traceback (unless ``raise_app_exceptions`` is false).
            ASGIWebSocketTransportError: the app did not answer within
                ``initial_receive_timeout`` seconds (it is cancelled).

        Cancelling is safe: the app is cancelled and the connection ends.
        """
        self._to_app.send_nowait({"type": "websocket.connect"})
        self._task_group.start_soon(self._run_app, name=f"ASGI app {self.scope.get('path')}")
        try:
            with anyio.fail_after(self._timeout):
                await self._handshake_done.wait()
        except TimeoutError as exc:
            self._shutdown()
            raise ASGIWebSocketTransportError(
                f"the ASGI app did not answer the WebSocket handshake within {self._timeout} s"
                " (did it forget to accept?)"
            ) from exc
        except BaseException:
            self._shutdown()
            raise
        error, self._handshake_error = self._handshake_error, None
        response, self._response = self._response, None
        if error is not None:
            await self.aclose()
            raise error
        if response is None:
            await self.aclose()
            raise ASGIWebSocketTransportError("the connection ended before the app answered")
        if response.status_code != 101:
            await self.aclose()
        return response

    def _set_response(
        self, status_code: int, headers: list[tuple[bytes, bytes]], content: bytes = b""
    ) -> None:
        """Answer the handshake with a refusal: the connection ends there."""
        self._response = httpx.Response(status_code, headers=headers, content=content)
        self._state = _AppState.CLOSED
        self._handshake_done.set()
        self._disconnect(_ABNORMAL_CLOSURE)

    def _accept(self, message: Message) -> None:
        key = b""
        for name, value in self.scope.get("headers", ()):
            if name.lower() == b"sec-websocket-key":
                key = value
        headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"upgrade"),
            (b"sec-websocket-accept", accept_key(key.decode("latin-1")).encode()),
        ]
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            headers.append((b"sec-websocket-protocol", subprotocol.encode()))
        for name, value in message.get("headers") or ():
            headers.append((bytes(name), bytes(value)))
        self._state = _AppState.ACCEPTED
        self._response = httpx.Response(
            101,
            headers=headers,
            extensions={"network_stream": self, "reason_phrase": b"Switching Protocols"},
        )
        self._handshake_done.set()

    # ------------------------------------------------------------- the app side
    # An endpoint written ``while True: await ws.receive_text()`` ends with its
    # framework's disconnect exception once it was told the client left: that
    # is how such apps end, not a failure (servers log nothing for it either).

    async def _run_app(self) -> None:
        try:
            with self._app_scope:
                failure: Exception | None = None
                try:
                    await self.app(self.scope, self._receive, self._send)
                except _ClientDisconnected:
                    pass  # the client went away while the app was sending: not an app error
                except Exception as exc:
                    if not (self._disconnected and _is_disconnect_error(exc)):
                        failure = exc
                self._app_returned(failure)
        finally:
            self._app_inbox.close()
            self._to_app.close()
            self._app_done.set()
            self._handshake_done.set()
            self._maybe_finished()

    def _app_returned(self, failure: Exception | None) -> None:
        state = self._state
        if failure is not None:
            self.app_exception = failure
        if state is _AppState.CONNECTING or state is _AppState.RESPONSE:
            if failure is not None:
                if self._raise_app_exceptions:
                    self._handshake_error = failure
                    self.app_exception = None  # delivered by handshake()
                self._set_response(500, [_TEXT_PLAIN], b"Internal Server Error")
            elif self._denial is not None:
                status, headers, body = self._denial  # an unfinished denial: send what there is
                self._set_response(status, headers, b"".join(body))
            else:
                self._set_response(
                    500, [_TEXT_PLAIN], b"the ASGI app returned without answering the handshake"
                )
            return
        if state is _AppState.ACCEPTED:
            self._state = _AppState.CLOSED
            if self._protocol.open and not self._client_gone:
                if failure is None:
                    self._emit(self._protocol.send_close(1000))
                else:
                    self._emit(self._protocol.send_close(_INTERNAL_ERROR, str(failure)))

    async def _receive(self) -> Message:
        try:
            return await self._app_inbox.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            # After websocket.disconnect nothing more will come, as with a real
            # server: wait until the connection's end cancels the app.
            await anyio.sleep_forever()
            raise  # pragma: no cover - sleep_forever only ends by cancellation

    async def _send(self, message: Message) -> None:
        await anyio.lowlevel.checkpoint()
        kind = message.get("type")
        state = self._state
        if state is _AppState.CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._set_response(403, [])
            elif kind == "websocket.http.response.start":
                status = message.get("status")
                if not isinstance(status, int) or not 100 <= status < 600:
                    raise UnhandledASGIMessageType(message, f"invalid status {status!r}")
                headers = [(bytes(k), bytes(v)) for k, v in message.get("headers") or ()]
                self._denial = (status, headers, [])
                self._state = _AppState.RESPONSE
            else:
                raise UnhandledASGIMessageType(
                    message,
                    "expected 'websocket.accept', 'websocket.close'"
                    " or 'websocket.http.response.start'",
                )
        elif state is _AppState.RESPONSE:
            if kind != "websocket.http.response.body":
                raise UnhandledASGIMessageType(message, "expected 'websocket.http.response.body'")
            assert self._denial is not None
            status, headers, body = self._denial
            body.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self._set_response(status, headers, b"".join(body))
        elif state is _AppState.ACCEPTED:
            if self._client_gone:
                raise _ClientDisconnected("the WebSocket client has disconnected")
            if kind == "websocket.send":
                self._send_message(message)
            elif kind == "websocket.close":
                code = message.get("code") or 1000
                reason = message.get("reason") or ""
                self._state = _AppState.CLOSED
                self._emit(self._protocol.send_close(code, reason))
                self._disconnect(code, reason)
            else:
                raise UnhandledASGIMessageType(
                    message, "expected 'websocket.send' or 'websocket.close'"
                )
        else:
            raise UnhandledASGIMessageType(message, "the WebSocket connection is already closed")

    def _send_message(self, message: Message) -> None:
        data = message.get("bytes")
        if data is not None:
            self._emit(self._protocol.send_bytes(bytes(data)))
        elif (text := message.get("text")) is not None:
            self._emit(self._protocol.send_text(str(text)))
        else:
            raise UnhandledASGIMessageType(message, "'websocket.send' needs 'bytes' or 'text'")

    def _disconnect(self, code: int, reason: str = "") -> None:
        """Tell the app the connection is over (once), then nothing more."""
        if self._disconnected:
            return
        self._disconnected = True
        try:
            self._to_app.send_nowait(
                {"type": "websocket.disconnect", "code": code, "reason": reason}
            )
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the app has returned
        self._to_app.close()

    def _deliver(self, message: Message) -> None:
        try:
            self._to_app.send_nowait(message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the app has closed or returned: the message is dropped, as by a server

    # ---------------------------------------------------------- the client side

    def _emit(self, data: bytes) -> None:
        if data:
            try:
                self._outbox.send_nowait(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the client closed the stream

    def _end_of_stream(self) -> None:
        """The server side is done: reads return what is left, then ``b""``."""
        self._client_gone = True
        self._outbox.close()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read frames the app (or the transport: pongs, Close) sent.

        Args:
            max_bytes: the most bytes to return.
            timeout: seconds to wait for data; ``None`` waits as long as it takes.

        Returns:
            Between 1 and ``max_bytes`` bytes, or ``b""`` once the server side
            has closed the connection (the closing handshake is over, or the
            client sent an invalid frame).

        Raises:
            httpcore.ReadTimeout: nothing arrived within ``timeout`` seconds.
            httpcore.ReadError: the stream was closed with :meth:`aclose`.

        Cancelling is safe: no data is lost.
        """
        if self._closed:
            raise httpcore.ReadError("the WebSocket stream is closed")
        if not self._read_buffer:
            try:
                with anyio.fail_after(timeout):
                    chunk = await self._from_app.receive()
            except TimeoutError as exc:
                raise httpcore.ReadTimeout(f"no data within {timeout} s") from exc
            except anyio.EndOfStream:
                if self._closed:
                    # aclose() ended the wait (before anyio 4.16, closing the
                    # receiving end does not wake a waiting receiver; closing the
                    # sending end does, with EndOfStream).
                    raise httpcore.ReadError("the WebSocket stream is closed") from None
                return b""
            except anyio.ClosedResourceError as exc:
                raise httpcore.ReadError("the WebSocket stream is closed") from exc
            parts = [chunk]
            size = len(chunk)
            while size < max_bytes:
                try:
                    chunk = self._from_app.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                parts.append(chunk)
                size += len(chunk)
            self._read_buffer = b"".join(parts)
        else:
            await anyio.lowlevel.checkpoint()
        data = self._read_buffer[:max_bytes]
        self._read_buffer = self._read_buffer[max_bytes:]
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write frames from the client; complete messages reach the app as ASGI events.

        Pings are answered at once, a Close frame is answered and ends the
        connection, an invalid frame ends it with the matching close code.
        Data written after the end of the connection is discarded, as by a
        peer that has closed its socket.

        Args:
            buffer: bytes of (masked) client frames, in any chunking.
            timeout: ignored: writing never waits.

        Raises:
            httpcore.WriteError: the stream was closed with :meth:`aclose`.
            UnhandledWebSocketEvent: wsproto reported an event the transport
                does not know.

        Cancelling is safe: the bytes are either all taken or not at all.
        """
        await anyio.lowlevel.checkpoint()
        if self._closed:
            raise httpcore.WriteError("the WebSocket stream is closed")
        if self._client_gone or self._protocol.closed:
            return
        try:
            events = self._protocol.receive_data(buffer)
        except UnknownEvent as exc:
            raise UnhandledWebSocketEvent(exc.event) from None
        owed = self._protocol.data_to_send()  # pongs, the answer to a Close frame
        for event in events:
            if isinstance(event, Close):
                self._emit(owed)
                owed = b""
                # After the app's own Close, the client's answers it: the app
                # already got its own code.
                self._disconnect(event.code, event.reason)
                self._end_of_stream()
            elif isinstance(event, str):
                self._deliver({"type": "websocket.receive", "text": event})
            else:
                self._deliver({"type": "websocket.receive", "bytes": event})
        self._emit(owed)

    # ------------------------------------------------------------------- closing

    async def aclose(self) -> None:
        """Close the client's end: the connection is over.

        If the closing handshake did not happen, the app gets
        ``websocket.disconnect`` with code ``1006``. The app then has
        ``initial_receive_timeout`` seconds to return before it is cancelled;
        this waits for it, so once this returns the app has finished.

        Cancelling is safe: the app is cancelled at once.
        """
        if self._closed:
            return
        self._shutdown(cancel_app=False)
        try:
            with anyio.move_on_after(self._timeout):
                await self._app_done.wait()
        finally:
            self._app_scope.cancel()
        await self._app_done.wait()

    def _shutdown(self, *, cancel_app: bool = True) -> None:
        self._closed = True
        self._client_gone = True
        self._disconnect(_ABNORMAL_CLOSURE)
        self._outbox.close()
        self._from_app.close()
        self._read_buffer = b""
        if cancel_app:
            self._app_scope.cancel()
        self._maybe_finished()

    def _maybe_finished(self) -> None:
        if self._finished or not (self._closed and self._app_done.is_set()):
            return
        self._finished = True
        if self._on_finished is not None:
            self._on_finished(self)

    def get_extra_info(self, info: str) -> Any:
        """Return ``client_addr``, ``server_addr`` (from the scope), ``is_readable``, else None."""
        if info == "client_addr":
            return self.scope.get("client")
        if info == "server_addr":
            return self.scope.get("server")
        if info == "is_readable":
            return bool(self._read_buffer) or self._from_app.statistics().current_buffer_used > 0
        return None


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
