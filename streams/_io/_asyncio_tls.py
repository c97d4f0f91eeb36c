"""On asyncio over TLS: asyncio's SSL transport reads every socket into one buffer per thread.

asyncio's SSL protocol (``asyncio.sslproto.SSLProtocol``) gives each connection a 256 KiB
buffer for the socket's reads, made and zero-filled when the connection opens: 256 KiB of
memory for every idle ``wss://`` session. What a read puts there is copied into the TLS
object's memory BIO at once, in the same callback (``get_buffer``, ``recv_into``,
``buffer_updated``, with nothing in between), so on a selector event loop one buffer per thread
serves every connection. After the handshake, :func:`share_read_buffer` points the
connection's SSL protocol at that shared buffer and lets its own go.

The buffer, its size and the SSL protocol are private attributes of asyncio's SSL transport
(``_ssl_protocol``, ``_ssl_buffer``, ``_ssl_buffer_view``, ``max_size``): this module is the one
place that touches them. When their shapes are not the known ones, or on an event loop whose
reads complete later (Windows' proactor), or on uvloop (whose SSL transport keeps no such
buffer), nothing changes. ``tests/test_http_transport.py`` fails loudly if this turns off on
asyncio.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

__all__ = ["share_read_buffer"]

_local = threading.local()


def share_read_buffer(transport: Any) -> bool:
    """Make the SSL transport ``transport`` read into the thread's shared buffer.

    Returns:
        Whether it does now (``False``: the transport keeps its own buffer).
    """
    protocol: Any = getattr(transport, "_ssl_protocol", None)
    size = getattr(protocol, "max_size", None)
    if (
        not isinstance(size, int)
        or not isinstance(getattr(protocol, "_ssl_buffer", None), bytearray)
        or not isinstance(getattr(protocol, "_ssl_buffer_view", None), memoryview)
        or not isinstance(asyncio.get_running_loop(), asyncio.SelectorEventLoop)
    ):
        return False
    view = _shared_buffer(size)
    protocol._ssl_buffer = view.obj
    protocol._ssl_buffer_view = view
    return True


def _shared_buffer(size: int) -> memoryview:
    view: memoryview | None = getattr(_local, "view", None)
    if view is None or len(view) < size:
        view = _local.view = memoryview(bytearray(size))
    return view
