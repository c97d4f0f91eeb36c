"""The engine: the protocol core driven over a small I/O interface, as anyio tasks.

- :mod:`._engine`: the engine of one connection (tasks, closing handshake, counters);
- :mod:`._reader`: bytes from the network into messages, into the inbox;
- :mod:`._inbox`: the bounded receive channel, bulk hand-off, backpressure;
- :mod:`._outbox`: the send queue and its flusher;
- :mod:`._keepalive`: pings and the dead-peer check;
- :mod:`._io`: the interface the I/O backends (``streams/_io/``) provide;
- :mod:`._channel`: the one place that reads anyio's memory stream state.
"""

from ._engine import NORMAL_CLOSE_CODES, Engine
from ._io import ByteIO, Leftover

__all__ = ["NORMAL_CLOSE_CODES", "ByteIO", "Engine", "Leftover"]
