"""The pull API of :class:`~streams.Websocket`: packets in and out, a signal when it ended.

:class:`PullAPI` receives and sends on the connected session; when the
connection ended, it raises the signal the policy chose (and raises it again
until the next ``connect()``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from ._packets import WebsocketPacket, WebsocketState, to_packet
from ._policy import WebsocketSignal
from ._session import AsyncWebSocketSession

if TYPE_CHECKING:
    from ._holder import Held, SessionHolder

__all__ = ["PullAPI"]

logger = logging.getLogger("streams.websocket")

_CONNECTED, _CONNECTING = WebsocketState.CONNECTED, WebsocketState.CONNECTING
_DISCONNECTED = WebsocketState.DISCONNECTED


class PullAPI:
    """Receiving and sending for :class:`~streams.Websocket`, whose state is declared here."""

    _holder: SessionHolder
    _state: WebsocketState
    _held: Held | None
    _ended: WebsocketSignal | None
    _connect_done: anyio.Event

    async def _current(self) -> AsyncWebSocketSession:
        """The connected session, or raise the signal that ended the last one."""
        if self._state is _CONNECTING:
            await self._connect_done.wait()
        held = self._held
        session = held.session if held is not None and self._state is _CONNECTED else None
        if session is not None:  # perhaps closed: its error then says why
            return session
        if self._ended is not None:
            raise self._ended
        raise RuntimeError("the websocket is not connected: call connect() first")

    def _signal(self, exc: Exception) -> WebsocketSignal:
        """Turn a session's exception into the signal the policy chooses, and drop the session."""
        if self._ended is None:
            verdict = self._holder.judge(exc, connecting=False)
            if verdict is None:
                raise exc
            self._ended = WebsocketSignal.for_action(verdict[1], verdict[0])
            logger.debug("connection ended: %s", self._ended)
        if self._state is _CONNECTED:
            self._state = _DISCONNECTED
            if self._held is not None:  # its task closes the session now
                self._held.release()
        return self._ended

    async def receive(self) -> WebsocketPacket:
        """Block until a payload is received.

        Returns:
            The received payload, either bytes or JSON: a binary message gives
            a :class:`WebsocketPacketBytes`, a text message holding a JSON object
            a :class:`WebsocketPacketJSON`.

        Raises:
            DisconnectSignal: Error occurred and no further attempts should be
                made to connect (or :meth:`disconnect` was called).
            ReconnectSignal: Error occurred and further attempts should be made to connect.
            RuntimeError: An unexpected payload type was received: a text message
                that is not a JSON object (a :class:`WebsocketPayloadError`
                holding the text; the connection stays open), or not connected.
            ResumeSignal: Error occurred and an attempt to resume the session should be made.

        Cancelling is safe: no message is lost.
        """
        session = await self._current()
        try:
            message = await session._receive_message(None)
        except Exception as exc:
            raise self._signal(exc) from exc
        return to_packet(message)

    async def send_bytes(self, data: bytes) -> None:
        """Send a bytes payload through the websocket.

        Args:
            data: The bytes payload to send.

        Raises:
            DisconnectSignal: Error occurred and no further attempts should be made to connect.
            ReconnectSignal: Error occurred and further attempts should be made to connect.
            ResumeSignal: Error occurred and an attempt to resume the session should be made.
        """
        session = await self._current()
        try:
            await session.send_bytes(data)
        except Exception as exc:
            raise self._signal(exc) from exc

    async def send_json(self, data: dict[str, Any]) -> None:
        """Send a JSON payload through the websocket (as a text message).

        Args:
            data: The JSON payload to send.

        Raises:
            DisconnectSignal: Error occurred and no further attempts should be made to connect.
            ReconnectSignal: Error occurred and further attempts should be made to connect.
            ResumeSignal: Error occurred and an attempt to resume the session should be made.
            TypeError: ``data`` cannot be encoded as JSON.
        """
        session = await self._current()
        try:
            await session.send_json(data)
        except (TypeError, ValueError):
            raise
        except Exception as exc:
            raise self._signal(exc) from exc
