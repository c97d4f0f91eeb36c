"""The sync API: :func:`connect_ws` and :class:`WebSocketSession`, on the async session.

A sync session is the async session (:class:`~streams.AsyncWebSocketSession`)
running in ONE helper thread that hosts an anyio event loop. Two small tasks
in that loop connect it to the calling threads:

- the receiver moves every message available at once (``_receive_batch``)
  into the sync session's buffer and wakes the waiting threads, so reading
  never waits for a round trip to the loop, and ``for message in ws`` costs a
  lock per message. The buffer holds at most ``queue_size`` messages: beyond,
  the receiver waits, the async session's channel fills and its reader stops
  reading the network (backpressure as in the async API);
- the sender writes, in order, the messages that ``send_text``/``send_bytes``
  put in the outbox; the calling thread does not wait for each write, and the
  session's send queue keeps frames from several threads apart.

Everything else (``ping``, ``close``, ``send(event)``) is a blocking call into
the loop (``anyio.from_thread.run``). Keepalive pings, pong answers and the
closing handshake run in the helper thread whatever the calling threads do.

The upgrade request goes through an :class:`httpx.AsyncClient` built in the
helper thread from the configuration of the :class:`httpx.Client` given (see
:func:`connect_ws` for what is carried over).
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import functools
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar, overload

import anyio
import anyio.from_thread
import anyio.lowlevel
import httpcore
import httpx
import msgspec
from wsproto.events import BytesMessage, Event, TextMessage

from ._codec import decode_json, encode_json, encode_json_text, json_decoder
from ._connect import (
    DEFAULT_COMPRESSION,
    AsyncWebSocketClient,
    default_ssl_context,
    http_url,
)
from ._exceptions import (
    HTTPXWSException,
    WebSocketDecodeError,
    WebSocketInvalidTypeReceived,
    WebSocketUpgradeError,
)
from ._session import (
    AsyncWebSocketSession,
    SessionStatistics,
    as_event,
    expect_bytes,
    expect_text,
)
from ._types import (
    DEFAULT_CLOSE_TIMEOUT_SECONDS,
    DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    DEFAULT_QUEUE_SIZE,
    JSONMode,
    Message,
)
from .protocol import Handshake

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.from_thread import BlockingPortal
    from anyio.lowlevel import EventLoopToken

    from .protocol._deflate import DeflateOptions

__all__ = [
    "PongEvent",
    "ReceiveTimeout",
    "SyncMessageStream",
    "WebSocketClient",
    "WebSocketSession",
    "connect_ws",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
SyncSession = TypeVar("SyncSession", bound="WebSocketSession")

#: The event loop the helper thread runs by default.
DEFAULT_BACKEND: Literal["asyncio", "trio"] = "asyncio"

#: Which frames carry JSON in :meth:`WebSocketSession.json`.
SyncJSONMode = Literal["text", "binary", "any"]


class ReceiveTimeout(queue.Empty, TimeoutError):
    """No message arrived within the timeout given to a sync ``receive*()`` method.

    It is both a :class:`queue.Empty` (what httpx-ws raises) and a
    :class:`TimeoutError` (what the async API raises), so ``except queue.Empty``
    and ``except TimeoutError`` both catch it. Nothing is consumed: the next
    ``receive*()`` call gets the next message.
    """


class PongEvent:
    """Returned by :meth:`WebSocketSession.ping`: set when the matching Pong arrives.

    It behaves like a :class:`threading.Event` that only the session sets:
    ``wait()`` blocks the calling thread, any number of threads may wait.
    It is also set when the connection closes, so a waiter never hangs.
    """

    __slots__ = ("_event", "_session")

    def __init__(self, session: WebSocketSession, event: anyio.Event) -> None:
        self._session = session
        self._event = event

    def is_set(self) -> bool:
        """Return whether the Pong arrived (or the connection closed)."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the Pong arrives, or at most ``timeout`` seconds.

        Returns:
            ``True`` if the event is set (the Pong arrived or the connection
            closed), ``False`` if the timeout expired first.
        """
        event = self._event
        if event.is_set():
            return True
        try:
            return self._session._call(_wait_event, event, timeout)
        except _Detached:
            return event.is_set()

    def __repr__(self) -> str:
        return f"<PongEvent set={self.is_set()}>"


async def _wait_event(event: anyio.Event, timeout: float | None) -> bool:
    with anyio.move_on_after(timeout):
        await event.wait()
    return event.is_set()


class _Detached(Exception):
    """The session's helper thread is gone (the ``with`` block was left)."""


async def _run_callback(callback: Callable[[], None]) -> None:
    callback()


class WebSocketSession:
    """An open WebSocket session for threaded code: the methods of httpx-ws, blocking.

    Made by :func:`connect_ws` or :meth:`WebSocketClient.connect`; leaving
    their ``with`` block closes it (code 1000) and stops its helper thread.
    Every method may be called from any thread; sends from several threads
    never interleave their frames.

    Iterating (``for message in ws``) yields ``str`` and ``bytes`` messages;
    a normal close (1000, 1001, 1005) ends the loop, any other close raises
    :class:`~streams.WebSocketDisconnect` (or
    :class:`~streams.WebSocketNetworkError`). Messages are fetched in batches
    and kept in the session: after a ``break``, the next ``receive*()`` call or
    loop gets the next message; nothing is lost.

    The constructor is internal: :func:`connect_ws` calls
    ``session_class(async_session, token)``, so a subclass given as
    ``session_class`` must keep that signature.

    Attributes:
        subprotocol: the subprotocol the server accepted, or ``None``.
        response: the handshake response (its body, if any, cannot be read).
    """

    subprotocol: str | None
    response: httpx.Response | None

    def __init__(self, session: AsyncWebSocketSession, token: EventLoopToken) -> None:
        self._session = session
        self._token: EventLoopToken | None = token
        self._portal: BlockingPortal | None = None
        self.subprotocol = session.subprotocol
        self.response = session.response
        limit = max(session.statistics().queue_size, 1)
        # One condition guards everything the calling threads and the helper
        # thread share: the calls in flight (the helper thread stops only once
        # they returned), the receive buffer and the outbox.
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        # Messages received and not yet handed out, filled by the receiver;
        # `_received_all` once the session ended (the buffer may still hold some).
        self._pending: collections.deque[Message] = collections.deque()
        self._pending_limit = limit
        self._received_all = False
        self._receiver_blocked = False  # waiting for room in `_pending`
        self._room = anyio.Event()
        # Messages sent and not yet taken by the sender; `_sender_due` while a
        # wake-up is due or the sender is draining.
        self._outbox: collections.deque[Message] = collections.deque()
        self._outbox_limit = limit
        self._sender_due = False
        self._send_failed = False
        self._wake = anyio.Event()
        self._drain_lock = anyio.Lock()
        self._background: Future[None] | None = None

    # ------------------------------------------------------------- the bridge

    def _call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``func(*args)`` in the helper thread's event loop and return its result.

        Raises:
            _Detached: the helper thread is gone.
            Exception: whatever ``func`` raises.
        """
        with self._cond:
            token = self._token
            if token is None:
                raise _Detached
            self._in_flight += 1
        try:
            return anyio.from_thread.run(func, *args, token=token)  # type: ignore[arg-type]
        finally:
            with self._cond:
                self._in_flight -= 1
                if not self._in_flight:
                    self._cond.notify_all()

    def _poke(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the helper thread without waiting for it."""
        token = self._token
        if token is None:
            return
        run_sync_soon = getattr(token.backend_class, "run_sync_soon", None)
        if run_sync_soon is not None:
            # anyio >= 4.16: part of the backend interface `anyio.from_thread`
            # is built on; it schedules and returns.
            run_sync_soon(callback, (), token.native_token)
        elif self._portal is not None:
            # Older anyio: a task started through the portal, also without waiting.
            self._portal.start_task_soon(_run_callback, callback)

    def _attach(self, portal: BlockingPortal) -> None:
        """Start the receiver and the sender in the helper thread (once, by ``connect``)."""
        self._portal = portal
        self._background = portal.start_task_soon(self._run_background, name="streams sync")

    async def _run_background(self) -> None:
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self._run_receiver, name="streams sync receiver")
                task_group.start_soon(self._run_sender, name="streams sync sender")
        finally:
            # However they end, no thread may wait for them any more.
            with self._cond:
                self._received_all = True
                self._send_failed = True
                self._cond.notify_all()

    def _detach(self) -> None:
        """Stop using the helper thread: refuse new calls, wait for those in flight
        (they end promptly once the session is closed), stop the background tasks."""
        with self._cond:
            self._token = None
            self._received_all = True
            self._outbox.clear()
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._in_flight)
        if self._background is not None:
            self._background.cancel()

    def _end(self) -> Exception:
        """The exception that reports the end of the session."""
        return self._session._end_error()

    # ----------------------------------------------------------- life cycle

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the session: send a Close frame, wait for the peer's, then close TCP.

        Called when leaving the ``with`` block. Calling it again, or after the
        peer closed, does nothing more. Messages already received stay
        readable; further sends raise :class:`~streams.WebSocketDisconnect`.

        Args:
            code: the close code to send.
            reason: the close reason to send (at most 123 bytes of UTF-8 are sent).

        Waits at most ``close_timeout`` seconds for the peer, then drops the connection.
        """
        try:
            self._call(self._close, code, reason)
        except _Detached:
            pass

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed, else ``None``."""
        return self._session.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason once the connection is closed, else ``None``."""
        return self._session.close_reason

    @property
    def closed(self) -> bool:
        """Whether the connection is closed: no more messages will arrive from the network."""
        return self._session.closed

    def statistics(self) -> SessionStatistics:
        """Return the session's counters; ``messages_queued`` includes the fetched,
        not yet read messages."""
        stats = self._session.statistics()
        if self._pending:
            stats = msgspec.structs.replace(
                stats, messages_queued=stats.messages_queued + len(self._pending)
            )
        return stats

    # -------------------------------------------------------------- receiving

    async def _run_receiver(self) -> None:
        """In the helper thread: move received messages into ``_pending``."""
        session = self._session
        cond = self._cond
        pending = self._pending
        limit = self._pending_limit
        while True:
            with cond:
                room = None
                if len(pending) >= limit:
                    self._receiver_blocked = True
                    room = self._room
            if room is not None:
                await room.wait()
                self._room = anyio.Event()
                continue
            try:
                batch = await session._receive_batch(limit - len(pending))
            except HTTPXWSException:
                batch = []  # the session ended abnormally: its end error says how
            with cond:
                if batch:
                    pending.extend(batch)
                else:
                    self._received_all = True
                cond.notify_all()
            if not batch:
                return

    def _set_room(self) -> None:
        self._room.set()

    def _readable(self) -> bool:
        return bool(self._pending) or self._received_all

    def _take(self, timeout: float | None, everything: bool = False) -> list[Message]:
        """Take the next message (or every buffered one), waiting at most ``timeout``.

        Returns:
            One message (all of them with ``everything``); ``[]`` once the
            session ended and the buffer is empty.

        Raises:
            ReceiveTimeout: nothing arrived in time.
        """
        cond = self._cond
        with cond:
            pending = self._pending
            if not pending and not self._received_all:
                if timeout is not None and timeout <= 0:
                    raise ReceiveTimeout(f"no message received within {timeout} s")
                if not cond.wait_for(self._readable, timeout):
                    raise ReceiveTimeout(f"no message received within {timeout} s")
            if not pending:
                return []
            if everything:
                taken = list(pending)
                pending.clear()
            else:
                taken = [pending.popleft()]
            if self._receiver_blocked and len(pending) < self._pending_limit:
                self._receiver_blocked = False
                self._poke(self._set_room)
            return taken

    def _unread(self, messages: list[Message]) -> None:
        """Put messages back in front of the buffer."""
        with self._cond:
            self._pending.extendleft(reversed(messages))

    def _next_message(self, timeout: float | None) -> Message:
        taken = self._take(timeout)
        if not taken:
            raise self._end()
        return taken[0]

    def receive(self, timeout: float | None = None) -> Event:
        """Receive the next message as a wsproto event.

        Most of the time, :meth:`receive_text`, :meth:`receive_bytes`,
        :meth:`receive_json` or ``for message in ws`` are simpler.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.

        Returns:
            A :class:`wsproto.events.TextMessage` or :class:`wsproto.events.BytesMessage`.
            Pings, pongs and the Close frame are handled by the session.

        Raises:
            ReceiveTimeout: no message arrived in time (a :class:`queue.Empty`
                and a :class:`TimeoutError`).
            WebSocketDisconnect: the connection is closed (raised at once on
                every call after the close, once the messages received before
                it were read).
            WebSocketNetworkError: the network failed or the peer went silent.
        """
        message = self._next_message(timeout)
        return as_event(message)

    def receive_text(self, timeout: float | None = None) -> str:
        """Receive a text message.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.

        Returns:
            The text.

        Raises:
            ReceiveTimeout: no message arrived in time.
            WebSocketDisconnect: the connection is closed.
            WebSocketNetworkError: the network failed.
            WebSocketInvalidTypeReceived: the message was binary (it is
                consumed; the exception's ``event`` holds it).
        """
        message = self._next_message(timeout)
        return expect_text(message)

    def receive_bytes(self, timeout: float | None = None) -> builtins.bytes:
        """Receive a binary message.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.

        Returns:
            The bytes.

        Raises:
            ReceiveTimeout: no message arrived in time.
            WebSocketDisconnect: the connection is closed.
            WebSocketNetworkError: the network failed.
            WebSocketInvalidTypeReceived: the message was text (it is consumed;
                the exception's ``event`` holds it).
        """
        message = self._next_message(timeout)
        return expect_bytes(message)

    def receive_json(self, timeout: float | None = None, mode: JSONMode = "text") -> Any:
        """Receive a JSON message, decoded with msgspec.

        Args:
            timeout: seconds to wait for a message; ``None`` waits for ever.
            mode: ``"text"`` to expect a text frame, ``"binary"`` a binary one.

        Returns:
            The decoded value (dicts, lists, str, int, float, bool, None).

        Raises:
            ValueError: ``mode`` is neither ``"text"`` nor ``"binary"``.
            ReceiveTimeout: no message arrived in time.
            WebSocketDisconnect: the connection is closed.
            WebSocketNetworkError: the network failed.
            WebSocketInvalidTypeReceived: the frame was not of the kind ``mode`` says.
            WebSocketDecodeError: the message is not valid JSON (it carries the
                raw payload).
        """
        data: Message
        if mode == "text":
            data = self.receive_text(timeout)
        elif mode == "binary":
            data = self.receive_bytes(timeout)
        else:
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")
        return decode_json(data)

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        """Return the next message; a normal close ends the iteration, an abnormal one raises."""
        taken = self._take(None)
        if not taken:
            self._session._end_of_stream()
            raise StopIteration
        return taken[0]

    # ------------------------------------------------------------ typed streams

    def messages(self) -> SyncMessageStream[Message]:
        """Return an iterable of the messages, ``str`` or ``bytes``, taken a batch at a time.

        Iterating it consumes the session's messages, like ``for message in ws``.
        """
        return SyncMessageStream(self, None, None, None)

    def text(self) -> SyncMessageStream[str]:
        """Return an iterable of the text messages.

        Raises (while iterating):
            WebSocketInvalidTypeReceived: a binary message arrived, at its position
                (its ``event`` holds it).
        """
        return SyncMessageStream(self, str, None, None)

    def bytes(self) -> SyncMessageStream[builtins.bytes]:
        """Return an iterable of the binary messages.

        Raises (while iterating):
            WebSocketInvalidTypeReceived: a text message arrived, at its position
                (its ``event`` holds it).
        """
        return SyncMessageStream(self, builtins.bytes, None, None)

    @overload
    def json(
        self,
        type: builtins.type[T],
        *,
        mode: SyncJSONMode = "text",
        on_error: Literal["raise"] | Callable[[WebSocketDecodeError], object] = "raise",
    ) -> SyncMessageStream[T]: ...
    @overload
    def json(
        self,
        type: Any = ...,
        *,
        mode: SyncJSONMode = "text",
        on_error: Literal["raise"] | Callable[[WebSocketDecodeError], object] = "raise",
    ) -> SyncMessageStream[Any]: ...
    def json(
        self,
        type: Any = Any,
        *,
        mode: SyncJSONMode = "text",
        on_error: Literal["raise"] | Callable[[WebSocketDecodeError], object] = "raise",
    ) -> SyncMessageStream[Any]:
        """Return an iterable of JSON messages decoded (and validated) by msgspec.

        Decoding happens in the iterating thread, a whole batch at a time.

        Args:
            type: what each message decodes to: a ``msgspec.Struct``, a
                dataclass, ``list[Tick]``...; ``Any`` (the default) gives plain
                dicts and lists.
            mode: ``"text"`` (JSON in text frames, the default), ``"binary"``
                or ``"any"``.
            on_error: ``"raise"``, or a function called with each
                :class:`~streams.WebSocketDecodeError` (the message is then
                skipped; if the function raises, its exception is raised at
                that position).

        Returns:
            A :class:`SyncMessageStream` of ``type``.

        Raises:
            ValueError: ``mode`` or ``on_error`` is invalid.
            TypeError: msgspec does not support ``type``.

        While iterating, raises at the bad message's position:
            WebSocketInvalidTypeReceived: a frame of the wrong kind for ``mode``
                (whatever ``on_error``).
            WebSocketDecodeError: invalid JSON, or a value not matching ``type``
                (with ``on_error="raise"``); it carries the payload and
                msgspec's reason.
        """
        kinds: dict[str, builtins.type | None] = {
            "text": str,
            "binary": builtins.bytes,
            "any": None,
        }
        if mode not in kinds:
            raise ValueError(f"mode must be 'text', 'binary' or 'any', not {mode!r}")
        if on_error == "raise":
            handler = None
        elif callable(on_error):
            handler = on_error
        else:
            raise ValueError(f"on_error must be 'raise' or a callable, not {on_error!r}")
        return SyncMessageStream(self, kinds[mode], json_decoder(type).decode, handler)

    # ----------------------------------------------------------------- sending
    #
    # send_text(), send_bytes() and send_json() put the message in the outbox
    # and return: the sender task in the helper thread writes what the outbox
    # holds, in order, without the calling thread waiting for each write.
    # send(), ping() and close() first let the sender write everything queued
    # before them, so the order of the frames is the order of the calls.

    def _enqueue(self, message: Message) -> None:
        cond = self._cond
        with cond:
            while True:
                token = self._token
                if token is None or self._send_failed or not self._session._protocol.can_send:
                    raise self._end()
                if len(self._outbox) < self._outbox_limit:
                    break
                cond.wait()  # backpressure: the sender takes messages, or the session ends
            self._outbox.append(message)
            if self._sender_due:
                return
            self._sender_due = True
        # Wake the sender without waiting for it.
        self._poke(self._wake_sender)

    def _wake_sender(self) -> None:
        self._wake.set()

    async def _run_sender(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self._drain()

    async def _drain(self) -> None:
        """In the helper thread: write every message in the outbox, in order."""
        session = self._session
        cond = self._cond
        async with self._drain_lock:
            while True:
                with cond:
                    batch = list(self._outbox)
                    self._outbox.clear()
                    if not batch:
                        self._sender_due = False
                        return
                    cond.notify_all()
                try:
                    for message in batch:
                        if isinstance(message, str):
                            await session.send_text(message)
                        else:
                            await session.send_bytes(message)
                except HTTPXWSException:
                    # The session ended: what is left cannot be sent; the
                    # next send raises the session's end.
                    with cond:
                        self._send_failed = True
                        self._outbox.clear()
                        cond.notify_all()

    async def _send_event(self, event: Event) -> None:
        await self._drain()
        await self._session.send(event)

    async def _ping(self, payload: builtins.bytes) -> anyio.Event:
        await self._drain()
        return await self._session.ping(payload)

    async def _close(self, code: int, reason: str | None) -> None:
        await self._drain()
        await self._session.close(code, reason)

    def send(self, event: Event) -> None:
        """Send a wsproto event: a message (or a fragment of one), a ping, a pong, a Close.

        Most of the time, :meth:`send_text`, :meth:`send_bytes`,
        :meth:`send_json` and :meth:`ping` are simpler. Returns once the frame
        is written, after every message sent before it.

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.
        """
        try:
            self._call(self._send_event, event)
        except _Detached:
            raise self._end() from None

    def send_text(self, data: str) -> None:
        """Send a text message.

        The message is queued and written by the session's thread, in order;
        this returns at once unless ``queue_size`` messages are already waiting
        to be written (then it waits for room). Any number of threads may send
        at the same time.

        Raises:
            WebSocketNetworkError: the network failed (on an earlier write).
            WebSocketDisconnect: the session is closing or closed.
        """
        self._enqueue(data)

    def send_bytes(self, data: builtins.bytes) -> None:
        """Send a binary message (queued, like :meth:`send_text`).

        Raises:
            WebSocketNetworkError: the network failed (on an earlier write).
            WebSocketDisconnect: the session is closing or closed.
        """
        self._enqueue(data)

    def send_json(self, data: Any, mode: JSONMode = "text") -> None:
        """Send a value as JSON, encoded with msgspec in the calling thread (queued,
        like :meth:`send_text`).

        Args:
            data: anything msgspec encodes: dicts, lists, msgspec Structs,
                dataclasses, datetimes...
            mode: ``"text"`` sends a text frame, ``"binary"`` a binary one.

        Raises:
            ValueError: ``mode`` is neither ``"text"`` nor ``"binary"``.
            TypeError: msgspec cannot encode ``data`` (nothing is sent).
            WebSocketNetworkError: the network failed (on an earlier write).
            WebSocketDisconnect: the session is closing or closed.
        """
        if mode == "text":
            self._enqueue(encode_json_text(data))
        elif mode == "binary":
            self._enqueue(encode_json(data))
        else:
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")

    def ping(self, payload: builtins.bytes = b"") -> PongEvent:
        """Send a Ping frame, after every message sent before it.

        Args:
            payload: the payload identifying this ping; a random one if empty.

        Returns:
            A :class:`PongEvent`: ``wait(timeout=None)`` blocks until the
            matching Pong arrives (or the connection closes).

        Raises:
            WebSocketNetworkError: the network failed.
            WebSocketDisconnect: the session is closing or closed.
        """
        try:
            event = self._call(self._ping, payload)
        except _Detached:
            raise self._end() from None
        return PongEvent(self, event)


class SyncMessageStream(Generic[T_co]):
    """An iterable of messages, made by ``ws.text()``, ``ws.bytes()``, ``ws.json(T)``
    or ``ws.messages()``.

    Each step takes every message the session holds and converts the whole
    batch in the iterating thread. Items converted and not yet yielded stay in
    this object: after a ``break``, iterating it again resumes where it stopped
    (a new stream does not see them, so keep one stream object per purpose).

    An error is raised at the bad message's position, after the items before
    it; the messages after it go back to the session, and iterating again goes
    on with them. A normal close ends the iteration, an abnormal one raises.
    """

    __slots__ = ("_buf", "_decode", "_error", "_kind", "_on_error", "_session")

    def __init__(
        self,
        session: WebSocketSession,
        kind: type | None,
        decode: Callable[[Any], T_co] | None,
        on_error: Callable[[WebSocketDecodeError], object] | None,
    ) -> None:
        self._session = session
        self._kind = kind
        self._decode = decode
        self._on_error = on_error
        self._buf: collections.deque[T_co] = collections.deque()
        self._error: Exception | None = None

    def __iter__(self) -> Iterator[T_co]:
        return self

    def __next__(self) -> T_co:
        buf = self._buf
        if buf:
            return buf.popleft()
        error = self._error
        if error is not None:
            self._error = None
            raise error
        session = self._session
        while True:
            batch = session._take(None, everything=True)
            if not batch:
                session._session._end_of_stream()
                raise StopIteration
            out, error, rest = self._convert(batch)
            if rest:
                session._unread(rest)
            buf.extend(out)
            if error is not None:
                if not buf:
                    raise error
                self._error = error
            if buf:
                return buf.popleft()

    def _convert(self, batch: list[Message]) -> tuple[list[Any], Exception | None, list[Message]]:
        """Convert a batch: the items before the first failure, the failure, the rest."""
        kind = self._kind
        decode = self._decode
        if kind is None or all(type(payload) is kind for payload in batch):
            if decode is None:
                return batch, None, []
            try:
                return list(map(decode, batch)), None, []
            except Exception:
                pass  # found again below, at its position
        out: list[Any] = []
        for index, payload in enumerate(batch):
            if kind is not None and not isinstance(payload, kind):
                return out, _kind_error(payload), batch[index + 1 :]
            if decode is None:
                out.append(payload)
                continue
            try:
                out.append(decode(payload))
            except Exception as exc:
                reason = (
                    str(exc)
                    if isinstance(exc, msgspec.MsgspecError)
                    else f"{type(exc).__name__}: {exc}"
                )
                decode_error = WebSocketDecodeError(payload, reason)
                decode_error.__cause__ = exc
                if self._on_error is None:
                    return out, decode_error, batch[index + 1 :]
                try:
                    self._on_error(decode_error)
                except Exception as handler_error:
                    return out, handler_error, batch[index + 1 :]
        return out, None, []

    def __repr__(self) -> str:
        return f"<SyncMessageStream buffered={len(self._buf)}>"


def _kind_error(payload: Message) -> WebSocketInvalidTypeReceived:
    if isinstance(payload, str):
        return WebSocketInvalidTypeReceived(TextMessage(data=payload))
    return WebSocketInvalidTypeReceived(BytesMessage(data=payload))


# --------------------------------------------------------------------------- connecting


def _async_hook(hook: Callable[[Any], Any]) -> Callable[[Any], Awaitable[None]]:
    async def call(arg: Any) -> None:
        hook(arg)

    return call


class _UnusableTransport(TypeError):
    """The client's transport cannot be rebuilt as an async one."""


def _refuse_early(
    client: httpx.Client,
    url: httpx.URL | str,
    subprotocols: list[str] | None,
    kwargs: dict[str, Any],
    options: dict[str, Any],
) -> None:
    """Send the upgrade request through ``client`` itself, to report a refusal.

    A client whose transport cannot carry a session (a mock, WSGI or custom
    transport) can still tell that the server refuses the upgrade, as
    httpx-ws reports it: raise :class:`WebSocketUpgradeError` for any answer
    but a valid ``101``, and return otherwise (the caller then raises its
    ``TypeError``).
    """
    handshake = Handshake(
        subprotocols=subprotocols,
        compression=options["compression"],
        max_message_size=options["max_message_size_bytes"],
    )
    kwargs = dict(kwargs)
    headers = httpx.Headers(kwargs.pop("headers", None))
    headers.update(handshake.request_headers())
    with client.stream("GET", http_url(url), headers=headers, **kwargs) as response:
        if response.status_code == 101:
            stream = response.extensions.get("network_stream")
            if stream is not None:
                stream.close()
            return
        response.read()
        raise WebSocketUpgradeError(
            response, f"WebSocket upgrade failed: expected HTTP 101, got {response.status_code}"
        )


def _async_transport(transport: httpx.BaseTransport) -> httpx.AsyncHTTPTransport:
    """An :class:`httpx.AsyncHTTPTransport` with the settings of a standard ``HTTPTransport``.

    Carried over: the SSL context (verification, CA bundle, client
    certificate), the proxy (HTTP, HTTPS or SOCKS, with its headers and
    credentials), the local address, the Unix socket path, the connect
    retries, the socket options and the pool limits. The connection always
    speaks HTTP/1.1 (a WebSocket upgrade cannot go over HTTP/2).

    Raises:
        TypeError: ``transport`` is not a standard :class:`httpx.HTTPTransport`
            (a mock, WSGI or custom transport), or its settings cannot be read.
    """
    if type(transport) is not httpx.HTTPTransport:
        raise _UnusableTransport(
            f"connect_ws cannot use an httpx.Client whose transport is "
            f"{type(transport).__module__}.{type(transport).__qualname__}: the session "
            "runs on an httpx.AsyncClient built from the client's settings, and only a "
            "standard httpx.HTTPTransport can be rebuilt as an async one. Pass a client "
            "without a custom transport, or use aconnect_ws with an httpx.AsyncClient "
            "and an async transport."
        )
    try:
        pool = transport._pool
        if type(pool._network_backend) is not httpcore.SyncBackend:
            raise TypeError("connect_ws cannot use a custom httpcore network backend")
        common: dict[str, Any] = {
            "ssl_context": pool._ssl_context,
            "max_connections": pool._max_connections,
            "max_keepalive_connections": pool._max_keepalive_connections,
            "keepalive_expiry": pool._keepalive_expiry,
            "http1": True,
            "http2": False,
        }
        async_pool: httpcore.AsyncConnectionPool
        if type(pool) is httpcore.ConnectionPool:
            async_pool = httpcore.AsyncConnectionPool(
                retries=pool._retries,
                local_address=pool._local_address,
                uds=pool._uds,
                socket_options=pool._socket_options,
                **common,
            )
        elif type(pool) is httpcore.HTTPProxy:
            async_pool = httpcore.AsyncHTTPProxy(
                proxy_url=pool._proxy_url,
                proxy_headers=pool._proxy_headers,  # Proxy-Authorization included
                proxy_ssl_context=pool._proxy_ssl_context,
                retries=pool._retries,
                local_address=pool._local_address,
                uds=pool._uds,
                socket_options=pool._socket_options,
                **common,
            )
        elif type(pool) is httpcore.SOCKSProxy:
            async_pool = httpcore.AsyncSOCKSProxy(
                proxy_url=pool._proxy_url,
                proxy_auth=pool._proxy_auth,
                retries=pool._retries,
                **common,
            )
        else:
            raise TypeError(f"connect_ws cannot use a {type(pool).__name__} connection pool")
    except AttributeError as exc:
        raise TypeError(
            f"connect_ws cannot read the settings of this httpx transport ({exc}); "
            "use aconnect_ws with an httpx.AsyncClient"
        ) from exc
    # Built with a throw-away pool (verify=False creates no CA bundle), then
    # given the pool built above: httpx has no public way to do both at once.
    async_transport = httpx.AsyncHTTPTransport(verify=False)
    async_transport._pool = async_pool
    return async_transport


def _client_factory(
    client: httpx.Client | None, url: httpx.URL | str
) -> tuple[Callable[[], httpx.AsyncClient], httpx.URL]:
    """Read ``client``'s configuration (in the calling thread).

    Returns:
        A function making the :class:`httpx.AsyncClient` (called in the helper
        thread) and the absolute URL to connect to.

    Raises:
        TypeError: ``client`` is not an :class:`httpx.Client`, or has a transport
            that cannot be rebuilt as an async one.
        RuntimeError: ``client`` is closed.
    """
    if client is None:
        return functools.partial(httpx.AsyncClient, verify=default_ssl_context()), http_url(url)
    if isinstance(client, httpx.AsyncClient):
        raise TypeError(
            "connect_ws takes an httpx.Client; with an httpx.AsyncClient, use aconnect_ws"
        )
    if not isinstance(client, httpx.Client):
        raise TypeError(f"client must be an httpx.Client, not {type(client).__name__}")
    if client.is_closed:
        raise RuntimeError("Cannot send a request, as the client has been closed.")
    target = http_url(client.build_request("GET", url).url)
    transport = _async_transport(client._transport)
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
    for pattern, mounted in client._mounts.items():
        if mounted is None:
            mounts[pattern.pattern] = None
            continue
        try:
            mounts[pattern.pattern] = _async_transport(mounted)
        except TypeError:
            if pattern.matches(target):
                raise
            # A custom transport mounted for other URLs: left out.
    hooks = {
        name: [_async_hook(hook) for hook in hooks] for name, hooks in client.event_hooks.items()
    }
    options: dict[str, Any] = {
        "auth": client.auth,
        "params": client.params,
        "headers": client.headers,
        # The same cookie jar (thread-safe): cookies set by the handshake
        # response land in the sync client.
        "cookies": client.cookies.jar,
        "timeout": client.timeout,
        "follow_redirects": client.follow_redirects,
        "max_redirects": client.max_redirects,
        "event_hooks": hooks,
        "base_url": client.base_url,
        "trust_env": client.trust_env,
        "transport": transport,
        "mounts": mounts,
    }

    def make() -> httpx.AsyncClient:
        return httpx.AsyncClient(**options)

    return make, target


@contextlib.asynccontextmanager
async def _open(
    make_client: Callable[[], httpx.AsyncClient],
    url: httpx.URL,
    subprotocols: list[str] | None,
    kwargs: dict[str, Any],
    options: dict[str, Any],
) -> AsyncIterator[tuple[AsyncWebSocketSession, EventLoopToken]]:
    """In the helper thread: the async client and the async session, for the sync session."""
    async with make_client() as client:
        ws_client = AsyncWebSocketClient(client, **options)
        async with ws_client.connect(url, subprotocols=subprotocols, **kwargs) as session:
            yield session, anyio.lowlevel.current_token()


class WebSocketClient(Generic[SyncSession]):
    """Opens sync WebSocket sessions with the configuration of an :class:`httpx.Client`.

    Args:
        client: the httpx client whose configuration is used (see
            :func:`connect_ws` for what is carried over).
        max_message_size_bytes: the largest message accepted (close 1009 beyond).
        queue_size: how many messages may wait for the consumer before the
            session stops reading the network.
        keepalive_ping_interval_seconds: how often to ping; ``None`` disables keepalive.
        keepalive_ping_timeout_seconds: how long a silent peer is tolerated after a ping.
        session_class: the session class to make, :class:`WebSocketSession` or a subclass.
        close_timeout: how long the closing handshake may take before the
            connection is dropped.
        compression: the permessage-deflate offer, or ``None`` to offer no compression.
        backend: the event loop of the helper thread: ``"asyncio"`` or ``"trio"``.
    """

    def __init__(
        self,
        client: httpx.Client | None,
        *,
        max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
        keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
        session_class: type[SyncSession] = WebSocketSession,  # type: ignore[assignment]
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
        compression: DeflateOptions | None = DEFAULT_COMPRESSION,
        backend: Literal["asyncio", "trio"] = DEFAULT_BACKEND,
    ) -> None:
        self.client = client
        self.max_message_size_bytes = max_message_size_bytes
        self.queue_size = queue_size
        self.keepalive_ping_interval_seconds = keepalive_ping_interval_seconds
        self.keepalive_ping_timeout_seconds = keepalive_ping_timeout_seconds
        self.session_class = session_class
        self.close_timeout = close_timeout
        self.compression = compression
        self.backend = backend

    @contextlib.contextmanager
    def connect(
        self,
        url: httpx.URL | str,
        subprotocols: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[SyncSession]:
        """Open a session; leaving the ``with`` block closes it and stops its thread.

        Args:
            url: the WebSocket URL (``ws://``, ``wss://``, ``http://`` or
                ``https://``), relative to the client's ``base_url`` if it has one.
            subprotocols: the subprotocols to offer, in order of preference.
            **kwargs: passed to :meth:`httpx.AsyncClient.stream`: ``headers``,
                ``params``, ``cookies``, ``auth``, ``timeout``, ``extensions``...

        Yields:
            The open session.

        Raises:
            WebSocketUpgradeError: the server refused the upgrade or answered
                with an invalid one; the exception carries the response.
            httpx.HTTPError: the request itself failed, as raised by httpx.
            TypeError: the client has a transport that cannot carry a session
                (see :func:`connect_ws`); a server refusing the upgrade through
                such a transport still gives ``WebSocketUpgradeError``.

        An exception raised inside the ``with`` block comes out as itself.
        """
        options: dict[str, Any] = {
            "max_message_size_bytes": self.max_message_size_bytes,
            "queue_size": self.queue_size,
            "keepalive_ping_interval_seconds": self.keepalive_ping_interval_seconds,
            "keepalive_ping_timeout_seconds": self.keepalive_ping_timeout_seconds,
            "close_timeout": self.close_timeout,
            "compression": self.compression,
        }
        try:
            make_client, target = _client_factory(self.client, url)
        except _UnusableTransport:
            assert self.client is not None
            _refuse_early(self.client, url, subprotocols, kwargs, options)
            raise
        opened = _open(make_client, target, subprotocols, kwargs, options)
        with anyio.from_thread.start_blocking_portal(
            self.backend, name=f"streams {target.host}:{target.port or ''}"
        ) as portal:
            async_cm = portal.wrap_async_context_manager(opened)
            async_session, token = async_cm.__enter__()
            session: SyncSession | None = None
            try:
                session = self.session_class(async_session, token)
                session._attach(portal)
                with session:
                    yield session
            finally:
                # An exception from the block is not handed to the async side:
                # the session closes the same way (code 1000), and the
                # exception comes out of the block as itself, never grouped.
                try:
                    async_cm.__exit__(None, None, None)
                finally:
                    if session is not None:
                        session._detach()


@contextlib.contextmanager
def connect_ws(
    url: httpx.URL | str,
    client: httpx.Client | None = None,
    *,
    max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    subprotocols: list[str] | None = None,
    session_class: type[SyncSession] = WebSocketSession,  # type: ignore[assignment]
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    backend: Literal["asyncio", "trio"] = DEFAULT_BACKEND,
    **kwargs: Any,
) -> Iterator[SyncSession]:
    """Open a sync WebSocket session.

    Example::

        with connect_ws("ws://localhost:8000/ws") as ws:
            ws.send_text("Hello!")
            for message in ws:
                print(message)

    The session runs in one helper thread hosting an event loop, started here
    and stopped when the ``with`` block is left. The upgrade request is made by
    an :class:`httpx.AsyncClient` built in that thread from ``client``'s
    configuration: ``base_url``, ``headers``, ``params``, ``auth``, ``timeout``,
    ``follow_redirects``, ``max_redirects``, ``trust_env``, event hooks (run in
    the helper thread), the cookie jar itself (cookies set by the handshake
    response land in ``client``), and from its transport and mounts: the SSL
    context (``verify``, ``cert``), proxies, ``local_address``, ``uds``,
    ``retries``, ``socket_options`` and limits. The upgrade always uses
    HTTP/1.1. ``client``'s connection pool is not shared.

    Args:
        url: the WebSocket URL (``ws://``, ``wss://``, ``http://`` or ``https://``).
        client: the :class:`httpx.Client` whose configuration to use; httpx's
            defaults if ``None``.
        max_message_size_bytes: the largest message accepted, after
            decompression; a larger one closes the connection with code 1009.
            Defaults to 64 KiB.
        queue_size: how many received messages may wait for the consumer; when
            that many wait, the session stops reading the network. Defaults to 512.
        keepalive_ping_interval_seconds: how often to ping the server; ``None``
            disables keepalive. Defaults to 20 seconds.
        keepalive_ping_timeout_seconds: how long the server may stay silent
            after a ping before the connection is closed (1011) and
            :class:`~streams.WebSocketNetworkError` raised. Defaults to 20 seconds.
        subprotocols: the subprotocols to offer, in order of preference.
        session_class: the session class to make (:class:`WebSocketSession` or
            a subclass).
        close_timeout: how long the closing handshake may take before the
            connection is dropped. Defaults to 10 seconds.
        compression: the permessage-deflate offer, or ``None`` to offer no compression.
        backend: the event loop of the helper thread: ``"asyncio"`` (the
            default) or ``"trio"``.
        **kwargs: passed to :meth:`httpx.AsyncClient.stream`: ``headers``,
            ``params``, ``cookies``, ``auth``, ``timeout``, ``extensions``...

    Yields:
        The open :class:`WebSocketSession`.

    Raises:
        WebSocketUpgradeError: the server refused the upgrade or answered with
            an invalid one; the exception carries the response.
        httpx.HTTPError: the request itself failed (connection refused, TLS
            verification, timeout...), as raised by httpx.
        TypeError: ``client`` is an :class:`httpx.AsyncClient`, or its transport
            (for ``url``) is not a standard :class:`httpx.HTTPTransport` (a
            mock, WSGI or custom transport cannot be rebuilt as an async one).
        RuntimeError: ``client`` is closed.

    An exception raised inside the ``with`` block comes out as itself, after
    the session closed.
    """
    ws_client: WebSocketClient[SyncSession] = WebSocketClient(
        client,
        max_message_size_bytes=max_message_size_bytes,
        queue_size=queue_size,
        keepalive_ping_interval_seconds=keepalive_ping_interval_seconds,
        keepalive_ping_timeout_seconds=keepalive_ping_timeout_seconds,
        session_class=session_class,
        close_timeout=close_timeout,
        compression=compression,
        backend=backend,
    )
    with ws_client.connect(url, subprotocols=subprotocols, **kwargs) as session:
        yield session
