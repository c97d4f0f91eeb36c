"""The WebSocket protocol with no I/O: bytes in, messages and bytes out.

Nothing here imports anyio, asyncio, trio or httpx. :class:`ClientProtocol` is
fed the bytes read from the network and returns whole messages; what it must
send back (pongs, close frames) waits in :meth:`ClientProtocol.data_to_send`.
The opening handshake lives in :mod:`streams.protocol._handshake`; the server
side (:class:`ServerProtocol`, for in-process servers) in :mod:`streams.protocol._server`.
"""

from ._connection import ClientProtocol as ClientProtocol
from ._connection import CloseState as CloseState
from ._handshake import Handshake as Handshake
from ._server import Close as Close
from ._server import Refusal as Refusal
from ._server import ServerProtocol as ServerProtocol
from ._server import UnknownEvent as UnknownEvent
from ._server import check_upgrade_request as check_upgrade_request
from ._streamed import SendingFragments as SendingFragments
from ._streamed import StreamedMessage as StreamedMessage

__all__ = [
    "ClientProtocol",
    "Close",
    "CloseState",
    "Handshake",
    "Refusal",
    "SendingFragments",
    "ServerProtocol",
    "StreamedMessage",
    "UnknownEvent",
    "check_upgrade_request",
]
