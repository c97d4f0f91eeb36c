"""The app's side of one WebSocket connection to an in-process ASGI app.

:class:`ASGIAppSide` runs the app in a task and serves its ASGI calls: the
``websocket.connect`` it receives first, its answer to the handshake (accept,
close, or a denial response), then its messages, turned into frames by the
server protocol. The client's side, the network stream the session reads and
writes, is :class:`~streams._asgi_stream.ASGIWebSocketAsyncNetworkStream`,
built on it.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

import anyio
import anyio.abc
import anyio.lowlevel
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .protocol import ServerProtocol
from .protocol._handshake import accept_key

__all__ = [
    "ABNORMAL_CLOSURE",
    "INTERNAL_ERROR",
    "ASGIApp",
    "ASGIAppSide",
    "ASGIWebSocketTransportError",
    "AppState",
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


ABNORMAL_CLOSURE = 1006
INTERNAL_ERROR = 1011
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


class AppState(enum.Enum):
    """Where the app stands in the connection."""

    CONNECTING = "connecting"  # the app has not answered the handshake yet
    RESPONSE = "response"  # the app is sending a denial response
    ACCEPTED = "accepted"  # the app accepted: frames flow
    CLOSED = "closed"  # the app closed, refused, or returned


class ASGIAppSide:
    """The app's side of a connection: the app task, its handshake answer and its messages.

    A base of :class:`~streams._asgi_stream.ASGIWebSocketAsyncNetworkStream`,
    whose constructor makes the state declared here.
    """

    app: ASGIApp
    scope: Scope
    app_exception: Exception | None
    _protocol: ServerProtocol
    _state: AppState
    _raise_app_exceptions: bool
    _to_app: MemoryObjectSendStream[Message]
    _app_inbox: MemoryObjectReceiveStream[Message]
    _outbox: MemoryObjectSendStream[bytes]
    _app_scope: anyio.CancelScope
    _app_done: anyio.Event
    _handshake_done: anyio.Event
    _response: httpx.Response | None
    _handshake_error: Exception | None
    _denial: tuple[int, list[tuple[bytes, bytes]], list[bytes]] | None
    _refusal_close: tuple[int, str] | None
    _app_returned_early: bool
    _disconnected: bool
    _client_gone: bool

    def _maybe_finished(self) -> None:
        """Called when the app task ended (see the network stream)."""
        raise NotImplementedError

    def _set_response(
        self, status_code: int, headers: list[tuple[bytes, bytes]], content: bytes = b""
    ) -> None:
        """Answer the handshake with a refusal: the connection ends there."""
        self._response = httpx.Response(status_code, headers=headers, content=content)
        self._state = AppState.CLOSED
        self._handshake_done.set()
        self._disconnect(ABNORMAL_CLOSURE)

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
        self._state = AppState.ACCEPTED
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
        if state is AppState.CONNECTING or state is AppState.RESPONSE:
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
        if state is AppState.ACCEPTED:
            self._state = AppState.CLOSED
            if self._protocol.open and not self._client_gone:
                if failure is None:
                    self._emit(self._protocol.send_close(1000))
                else:
                    self._emit(self._protocol.send_close(INTERNAL_ERROR, str(failure)))

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
        if state is AppState.CONNECTING:
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
                self._state = AppState.RESPONSE
            else:
                raise UnhandledASGIMessageType(
                    message,
                    "expected 'websocket.accept', 'websocket.close'"
                    " or 'websocket.http.response.start'",
                )
        elif state is AppState.RESPONSE:
            if kind != "websocket.http.response.body":
                raise UnhandledASGIMessageType(message, "expected 'websocket.http.response.body'")
            assert self._denial is not None
            status, headers, body = self._denial
            body.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self._set_response(status, headers, b"".join(body))
        elif state is AppState.ACCEPTED:
            if self._client_gone:
                raise _ClientDisconnected("the WebSocket client has disconnected")
            if kind == "websocket.send":
                self._send_message(message)
            elif kind == "websocket.close":
                code = message.get("code") or 1000
                reason = message.get("reason") or ""
                self._state = AppState.CLOSED
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

    def _emit(self, data: bytes) -> None:
        if data:
            try:
                self._outbox.send_nowait(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the client closed the stream
