"""The wsproto names the layers above the protocol core use, from one place.

wsproto is imported only in :mod:`streams.protocol` (and, for httpx-ws's
event-based API, its event classes in ``streams/_session.py``): the sync
session's event API, the message conversions and the demo server take what
they need from here, so a change of wsproto is met in this package alone.
"""

from __future__ import annotations

from wsproto import ConnectionType as ConnectionType
from wsproto import WSConnection as WSConnection
from wsproto.connection import ConnectionState as ConnectionState
from wsproto.events import AcceptConnection as AcceptConnection
from wsproto.events import BytesMessage as BytesMessage
from wsproto.events import CloseConnection as CloseConnection
from wsproto.events import Event as Event
from wsproto.events import Message as Message
from wsproto.events import Ping as Ping
from wsproto.events import RejectConnection as RejectConnection
from wsproto.events import Request as Request
from wsproto.events import TextMessage as TextMessage
from wsproto.extensions import Extension as Extension
from wsproto.frame_protocol import CloseReason as CloseReason
from wsproto.utilities import LocalProtocolError as LocalProtocolError
from wsproto.utilities import ProtocolError as ProtocolError

__all__ = [
    "AcceptConnection",
    "BytesMessage",
    "CloseConnection",
    "CloseReason",
    "ConnectionState",
    "ConnectionType",
    "Event",
    "Extension",
    "LocalProtocolError",
    "Message",
    "Ping",
    "ProtocolError",
    "RejectConnection",
    "Request",
    "TextMessage",
    "WSConnection",
]
