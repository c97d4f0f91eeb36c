"""The sync API: the protocol core driven over a blocking network stream.

- :mod:`._connect`: the upgrade request through an :class:`httpx.Client`
  (:func:`connect_ws`, :class:`WebSocketClient`);
- :mod:`._io`: blocking reads and writes of the network stream (where a byte enters);
- :mod:`._core`: the connection around the protocol core: writing, keepalive
  and closing (where a byte leaves);
- :mod:`._reader`: reading, with at most one background thread, and the
  hand-over of messages to the receiving thread (where bytes become messages);
- :mod:`._session`: the blocking methods of httpx-ws (:class:`WebSocketSession`);
- :mod:`._stream`: the typed iterables (:class:`SyncMessageStream`: where a
  message becomes a typed value).
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
