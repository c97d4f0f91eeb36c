"""I/O backends: how the engine reads and writes one connection, one backend per file.

- :mod:`._asyncio`: on asyncio, the library's own httpcore network backend
  (transports, plain and TLS), parsed in the protocol's callback;
- :mod:`._trio`: on trio, httpcore's trio streams read beneath its wrappers;
- :mod:`._backend`: the network backend given to httpcore, by event loop;
- :mod:`._probe`: the bytes httpcore's upgrade wrapper holds, read first;
- :mod:`._generic`: any network stream, through httpcore's public interface;
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ._asyncio import asyncio_io
from ._generic import generic_io

if TYPE_CHECKING:
    from httpcore import AsyncNetworkStream

    from .._engine._io import ByteIO

__all__ = ["open_io"]


def open_io(stream: AsyncNetworkStream) -> ByteIO:
    """Return the fastest backend that can read and write ``stream``."""
    return asyncio_io(stream) or _trio_io(stream) or generic_io(stream)


def _trio_io(stream: AsyncNetworkStream) -> ByteIO | None:
    if "trio" not in sys.modules:  # no trio stream without trio
        return None
    from ._trio import trio_io

    return trio_io(stream)
