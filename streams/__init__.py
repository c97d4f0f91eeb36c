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
from ._exceptions import SequenceGapError as SequenceGapError
from ._exceptions import WebSocketDecodeError as WebSocketDecodeError
from ._exceptions import WebSocketDisconnect as WebSocketDisconnect
from ._exceptions import WebSocketInvalidTypeReceived as WebSocketInvalidTypeReceived
from ._exceptions import WebSocketKeepaliveTimeout as WebSocketKeepaliveTimeout
from ._exceptions import WebSocketNetworkError as WebSocketNetworkError
from ._exceptions import WebSocketOverflowError as WebSocketOverflowError
from ._exceptions import WebSocketStaleError as WebSocketStaleError
from ._exceptions import WebSocketUpgradeError as WebSocketUpgradeError
from ._http import AsyncHTTPTransport as AsyncHTTPTransport
from ._operators import BatchSource as BatchSource
from ._operators import BroadcastPolicy as BroadcastPolicy
from ._operators import BroadcastStream as BroadcastStream
from ._operators import DecodeErrorHandler as DecodeErrorHandler
from ._operators import GapHandler as GapHandler
from ._operators import JSONSender as JSONSender
from ._operators import JSONStreamMode as JSONStreamMode
from ._operators import MessageStream as MessageStream
from ._operators import OnDecodeError as OnDecodeError
from ._operators import OnGap as OnGap
from ._operators import SequencedStream as SequencedStream
from ._operators import Stale as Stale
from ._operators import SupportsDecode as SupportsDecode
from ._operators import Timestamped as Timestamped
from ._operators import broadcast as broadcast
from ._operators import bytes_stream as bytes_stream
from ._operators import json_sender as json_sender
from ._operators import json_stream as json_stream
from ._operators import merge as merge
from ._operators import message_stream as message_stream
from ._operators import text_stream as text_stream
from ._reconnect import Backoff as Backoff
from ._reconnect import OutboxFullError as OutboxFullError
from ._reconnect import OutboxOverflow as OutboxOverflow
from ._reconnect import ReconnectingWebSocket as ReconnectingWebSocket
from ._reconnect import StateChange as StateChange
from ._reconnect import StateChanges as StateChanges
from ._reconnect import reconnecting_ws as reconnecting_ws
from ._session import AsyncWebSocketSession as AsyncWebSocketSession
from ._session import SessionStatistics as SessionStatistics
from ._sync import PongEvent as PongEvent
from ._sync import ReceiveTimeout as ReceiveTimeout
from ._sync import SyncMessageStream as SyncMessageStream
from ._sync import WebSocketClient as WebSocketClient
from ._sync import WebSocketSession as WebSocketSession
from ._sync import connect_ws as connect_ws
from ._types import JSONMode as JSONMode
from ._types import Message as Message
from ._types import Overflow as Overflow
from .protocol._deflate import DeflateOptions as DeflateOptions
from .websocket import DisconnectSignal as DisconnectSignal
from .websocket import ReconnectSignal as ReconnectSignal
from .websocket import ResumeSignal as ResumeSignal
from .websocket import Websocket as Websocket
from .websocket import WebsocketAction as WebsocketAction
from .websocket import WebsocketCause as WebsocketCause
from .websocket import WebsocketCauseKind as WebsocketCauseKind
from .websocket import WebsocketPacket as WebsocketPacket
from .websocket import WebsocketPacketBytes as WebsocketPacketBytes
from .websocket import WebsocketPacketJSON as WebsocketPacketJSON
from .websocket import WebsocketPayloadError as WebsocketPayloadError
from .websocket import WebsocketPolicy as WebsocketPolicy
from .websocket import WebsocketSignal as WebsocketSignal
from .websocket import WebsocketState as WebsocketState

__version__ = "0.1.0"

__all__ = [
    "AsyncHTTPTransport",
    "AsyncWebSocketClient",
    "AsyncWebSocketSession",
    "Backoff",
    "BatchSource",
    "BroadcastPolicy",
    "BroadcastStream",
    "DecodeErrorHandler",
    "DeflateOptions",
    "DisconnectSignal",
    "GapHandler",
    "HTTPXWSException",
    "JSONMode",
    "JSONSender",
    "JSONStreamMode",
    "Message",
    "MessageStream",
    "OnDecodeError",
    "OnGap",
    "OutboxFullError",
    "OutboxOverflow",
    "Overflow",
    "PongEvent",
    "ReceiveTimeout",
    "ReconnectSignal",
    "ReconnectingWebSocket",
    "ResumeSignal",
    "SequenceGapError",
    "SequencedStream",
    "SessionStatistics",
    "Stale",
    "StateChange",
    "StateChanges",
    "SupportsDecode",
    "SyncMessageStream",
    "Timestamped",
    "WebSocketClient",
    "WebSocketDecodeError",
    "WebSocketDisconnect",
    "WebSocketInvalidTypeReceived",
    "WebSocketKeepaliveTimeout",
    "WebSocketNetworkError",
    "WebSocketOverflowError",
    "WebSocketSession",
    "WebSocketStaleError",
    "WebSocketUpgradeError",
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
    "aconnect_ws",
    "broadcast",
    "bytes_stream",
    "connect_ws",
    "json_sender",
    "json_stream",
    "merge",
    "message_stream",
    "reconnecting_ws",
    "text_stream",
]
