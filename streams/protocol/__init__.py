"""The WebSocket protocol with no I/O: bytes in, messages and bytes out.

Nothing here imports anyio, asyncio, trio or httpx. :class:`ClientProtocol` is
fed the bytes read from the network and returns whole messages; what it must
send back (pongs, close frames) waits in :meth:`ClientProtocol.data_to_send`.
The opening handshake lives in :mod:`streams.protocol._handshake`.
"""

from ._connection import ClientProtocol as ClientProtocol
from ._connection import CloseState as CloseState
from ._handshake import Handshake as Handshake

__all__ = ["ClientProtocol", "CloseState", "Handshake"]
