"""One WebSocket connection to an in-process ASGI app, as an httpcore network stream.

The server side of :mod:`streams.transport`: :class:`ASGIWebSocketAsyncNetworkStream`
is the client's end, turning the client's frames into ASGI events (parsed by
:class:`~streams.protocol.ServerProtocol`); the app's side (the app task, its
handshake answer and its messages) is :class:`~streams._asgi_app.ASGIAppSide`.
See :mod:`streams.transport` for how a connection goes, seen from the app.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import httpcore
import httpx

from ._asgi_app import ABNORMAL_CLOSURE, INTERNAL_ERROR, AppState, ASGIAppSide
from ._asgi_app import ASGIApp as ASGIApp
from ._asgi_app import ASGIWebSocketTransportError as ASGIWebSocketTransportError
from ._asgi_app import Message as Message
from ._asgi_app import Receive as Receive
from ._asgi_app import Scope as Scope
from ._asgi_app import Send as Send
from ._asgi_app import UnhandledASGIMessageType as UnhandledASGIMessageType
from ._asgi_app import UnhandledWebSocketEvent as UnhandledWebSocketEvent
from ._exceptions import WebSocketDisconnect, WebSocketUpgradeError
from .protocol import Close, ServerProtocol, UnknownEvent

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


class ASGIWebSocketAsyncNetworkStream(ASGIAppSide, httpcore.AsyncNetworkStream):
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
        self._state = AppState.CONNECTING
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

    # ---------------------------------------------------------- the client side

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
            raise WebSocketDisconnect(INTERNAL_ERROR, str(exc)) from exc
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
            self._disconnect(message.get("code", ABNORMAL_CLOSURE), message.get("reason", ""))
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
        self._disconnect(ABNORMAL_CLOSURE)
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
