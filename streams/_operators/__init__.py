"""Typed streams and their operators, one module per family (as in aiostream).

* ``stream``: :class:`MessageStream`, the pull protocol and the base classes of operators;
* ``sources``: the roots, which read a session, an anyio channel or any async iterable;
* ``transform``: ``map``, ``enumerate``;
* ``select``: ``filter``, ``take``, ``skip``;
* ``batch``: ``batch``, ``chunks``;
* ``decode``: frame kinds and decoding (text, bytes, JSON, any decoder), shared
  with the sync streams;
* ``fanin``: ``merge`` and ``broadcast``;
* ``time``: ``throttle``, ``sample``, ``debounce``, ``timeout``, ``timestamp``;
* ``stateful``: ``scan``, ``distinct_until_changed``;
* ``group``: ``group_by``;
* ``feed``: ``conflate``, ``stale``, ``sequence``;
* ``send``: :class:`JSONSender`;
* ``typed``: :class:`TypedStreams`, the methods the session and the reconnecting
  feed offer (``ws.json(T)``, ``ws.text()``...).
"""

from .decode import Converter as Converter
from .decode import DecodeErrorHandler as DecodeErrorHandler
from .decode import JSONStreamMode as JSONStreamMode
from .decode import OnDecodeError as OnDecodeError
from .decode import SupportsDecode as SupportsDecode
from .decode import bytes_stream as bytes_stream
from .decode import json_converter as json_converter
from .decode import json_stream as json_stream
from .decode import text_stream as text_stream
from .fanin import BroadcastPolicy as BroadcastPolicy
from .fanin import BroadcastStream as BroadcastStream
from .fanin import broadcast as broadcast
from .fanin import merge as merge
from .feed import GapHandler as GapHandler
from .feed import OnGap as OnGap
from .feed import SequencedStream as SequencedStream
from .feed import Stale as Stale
from .send import JSONSender as JSONSender
from .send import json_sender as json_sender
from .sources import BatchSource as BatchSource
from .sources import message_stream as message_stream
from .stream import MessageStream as MessageStream
from .time import Timestamped as Timestamped
from .typed import TypedStreams as TypedStreams

__all__ = [
    "BatchSource",
    "BroadcastPolicy",
    "BroadcastStream",
    "Converter",
    "DecodeErrorHandler",
    "GapHandler",
    "JSONSender",
    "JSONStreamMode",
    "MessageStream",
    "OnDecodeError",
    "OnGap",
    "SequencedStream",
    "Stale",
    "SupportsDecode",
    "Timestamped",
    "TypedStreams",
    "broadcast",
    "bytes_stream",
    "json_converter",
    "json_sender",
    "json_stream",
    "merge",
    "message_stream",
    "text_stream",
]
