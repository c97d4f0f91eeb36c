"""The sync API: the protocol core driven over a blocking network stream.

- :mod:`._connect`: the upgrade request through an :class:`httpx.Client`
  (:func:`connect_ws`, :class:`WebSocketClient`);
- :mod:`._core`: the connection: reading, writing, keepalive and closing,
  with at most one background thread;
- :mod:`._session`: the blocking methods of httpx-ws (:class:`WebSocketSession`);
- :mod:`._stream`: the typed iterables (:class:`SyncMessageStream`).
"""

from ._connect import WebSocketClient as WebSocketClient
from ._connect import connect_ws as connect_ws
from ._core import ReceiveTimeout as ReceiveTimeout
from ._session import PongEvent as PongEvent
from ._session import WebSocketSession as WebSocketSession
from ._stream import SyncMessageStream as SyncMessageStream

__all__ = [
    "PongEvent",
    "ReceiveTimeout",
    "SyncMessageStream",
    "WebSocketClient",
    "WebSocketSession",
    "connect_ws",
]
