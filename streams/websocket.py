"""A WebSocket connection manager that says what to do when the connection ends.

:class:`Websocket` holds one :func:`~streams.aconnect_ws` session at a time and
hands out typed packets. When something goes wrong (the network fails, the
server closes, the handshake is refused) it raises one of three *signals*,
chosen by a :class:`WebsocketPolicy`: :class:`ReconnectSignal` (connecting
again should work), :class:`ResumeSignal` (connect again and resume the
session the server kept), :class:`DisconnectSignal` (stop). Every signal
carries a :class:`WebsocketCause`. It never reconnects by itself:
:func:`streams.reconnecting_ws` does that loop (with backoff, re-subscription
and an outbox) over the same session holder.

Example::

    ws = Websocket()
    try:
        while True:
            try:
                await ws.connect("wss://feed.example/ws")
                while True:
                    packet = await ws.receive()
                    ...
            except (ReconnectSignal, ResumeSignal):
                await anyio.sleep(1)
            except DisconnectSignal:
                break
    finally:
        await ws.disconnect()
"""

from __future__ import annotations

from ._manager import Websocket as Websocket
from ._packets import WebsocketPacket as WebsocketPacket
from ._packets import WebsocketPacketBytes as WebsocketPacketBytes
from ._packets import WebsocketPacketJSON as WebsocketPacketJSON
from ._packets import WebsocketPayloadError as WebsocketPayloadError
from ._packets import WebsocketState as WebsocketState
from ._policy import DEFAULT_CLOSE_ACTIONS as DEFAULT_CLOSE_ACTIONS
from ._policy import DisconnectSignal as DisconnectSignal
from ._policy import ReconnectSignal as ReconnectSignal
from ._policy import ResumeSignal as ResumeSignal
from ._policy import WebsocketAction as WebsocketAction
from ._policy import WebsocketCause as WebsocketCause
from ._policy import WebsocketCauseKind as WebsocketCauseKind
from ._policy import WebsocketPolicy as WebsocketPolicy
from ._policy import WebsocketSignal as WebsocketSignal

__all__ = [
    "DEFAULT_CLOSE_ACTIONS",
    "DisconnectSignal",
    "ReconnectSignal",
    "ResumeSignal",
    "Websocket",
    "WebsocketAction",
    "WebsocketCause",
    "WebsocketCauseKind",
    "WebsocketPacket",
    "WebsocketPacketBytes",
    "WebsocketPacketJSON",
    "WebsocketPayloadError",
    "WebsocketPolicy",
    "WebsocketSignal",
    "WebsocketState",
]
