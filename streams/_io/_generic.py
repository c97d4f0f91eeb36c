"""Any network stream, through httpcore's public ``AsyncNetworkStream`` interface.

The path for streams the library does not know: the ASGI test transport's, a
custom transport's, httpx's default transport. Reads return ``b""`` at the end
of the stream; errors are the stream's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._engine._io import ByteIO

if TYPE_CHECKING:
    from httpcore import AsyncNetworkStream

__all__ = ["generic_io"]


def generic_io(stream: AsyncNetworkStream) -> ByteIO:
    """Return how to read and write ``stream`` through its own methods."""

    async def read(max_bytes: int) -> bytes:
        return await stream.read(max_bytes)

    async def write(data: bytes) -> None:
        await stream.write(data)

    return ByteIO(read=read, write=write, close=stream.aclose, name="generic")
