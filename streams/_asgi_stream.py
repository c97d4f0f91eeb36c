"""One WebSocket connection to an in-process ASGI app, as an httpcore network stream.

The server side of :mod:`streams.transport`: :class:`ASGIWebSocketAsyncNetworkStream`
runs the app in a task, turns the client's frames into ASGI events (parsed by
:class:`~streams.protocol.ServerProtocol`) and the app's messages into frames.
See :mod:`streams.transport` for how a connection goes, seen from the app.
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

from ._exceptions import WebSocketDisconnect, WebSocketUpgradeError
from .protocol import Close, ServerProtocol, UnknownEvent
from .protocol._handshake import accept_key

__all__ = [
    "ASGIApp",
    "ASGIWebSocketAsyncNetworkStream",
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
        # Why the app refused the handshake, for the context manager: its Close, or nothing.
        self._refusal_close: tuple[int, str] | None = None
        self._app_returned_early = False
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
                self._app_returned_early = True
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
                self._refusal_close = (message.get("code") or 1000, message.get("reason") or "")
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
            # One message of the app per read, as httpx-ws's stream does: a
            # client reading frame by frame never waits for a frame it already has.
            self._read_buffer = chunk
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

    # ------------------------------------------------ httpx-ws's context manager

    async def __aenter__(self) -> tuple[ASGIWebSocketAsyncNetworkStream, bytes]:
        """Run the handshake, as httpx-ws's stream does when entered.

        Returns:
            This stream and the ``101`` response's head, as bytes.

        Raises:
            WebSocketDisconnect: the app closed before accepting (its code and
                reason), or raised (code 1011, the exception's text as reason).
            WebSocketUpgradeError: the app sent a denial response (carried by
                the exception).
            ASGIWebSocketTransportError: the app returned without answering, or
                did not answer in time.
        """
        try:
            response = await self.handshake()
        except ASGIWebSocketTransportError:
            raise
        except Exception as exc:
            raise WebSocketDisconnect(_INTERNAL_ERROR, str(exc)) from exc
        if response.status_code == 101:
            head = [b"HTTP/1.1 101 Switching Protocols"]
            head += [name + b": " + value for name, value in response.headers.raw]
            return self, b"\r\n".join(head) + b"\r\n\r\n"
        if self._refusal_close is not None:
            raise WebSocketDisconnect(*self._refusal_close)
        if self._app_returned_early:
            raise ASGIWebSocketTransportError(
                "the ASGI app returned without accepting the WebSocket connection"
            )
        await response.aread()
        raise WebSocketUpgradeError(response)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the stream (see :meth:`aclose`)."""
        await self.aclose()

    async def send(self, message: Message) -> None:
        """Hand an ASGI message to the app, as if the client had sent it (httpx-ws's method).

        Dropped once the app has returned or the connection has ended.
        """
        await anyio.lowlevel.checkpoint()
        if message.get("type") == "websocket.disconnect":
            self._disconnect(message.get("code", _ABNORMAL_CLOSURE), message.get("reason", ""))
        else:
            self._deliver(message)

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
