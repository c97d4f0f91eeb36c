"""WebSockets as reactive streams: typed anyio channels, msgspec JSON and operators.

Example::

    import streams

    async with streams.aconnect_ws("ws://localhost:8000/feed") as ws:
        async for message in ws:
            print(message)
"""

from ._connect import AsyncWebSocketClient as AsyncWebSocketClient
from ._connect import aconnect_ws as aconnect_ws
from ._exceptions import HTTPXWSException as HTTPXWSException
from ._exceptions import WebSocketDecodeError as WebSocketDecodeError
from ._exceptions import WebSocketDisconnect as WebSocketDisconnect
from ._exceptions import WebSocketInvalidTypeReceived as WebSocketInvalidTypeReceived
from ._exceptions import WebSocketNetworkError as WebSocketNetworkError
from ._exceptions import WebSocketUpgradeError as WebSocketUpgradeError
from ._session import AsyncWebSocketSession as AsyncWebSocketSession
from ._session import SessionStatistics as SessionStatistics
from ._types import JSONMode as JSONMode
from ._types import Message as Message
from .protocol._deflate import DeflateOptions as DeflateOptions

__version__ = "0.1.0"

__all__ = [
    "AsyncWebSocketClient",
    "AsyncWebSocketSession",
    "DeflateOptions",
    "HTTPXWSException",
    "JSONMode",
    "Message",
    "SessionStatistics",
    "WebSocketDecodeError",
    "WebSocketDisconnect",
    "WebSocketInvalidTypeReceived",
    "WebSocketNetworkError",
    "WebSocketUpgradeError",
    "aconnect_ws",
]
