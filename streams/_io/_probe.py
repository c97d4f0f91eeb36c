"""Bytes an httpcore wrapper still holds, read before a backend's own stream.

httpcore's upgraded stream wraps the network stream and holds what it read
past the 101 response; those bytes must reach the engine first. A stream of
the library's own answers a *probe* read with nothing: reading through the
wrapper until a read reaches ours empties the wrapper, with its public
``read()`` only. A backend that parses in its own callback takes them all
before it starts (:func:`held_bytes`); the others read through the wrapper
until the first probe is answered (:func:`through_wrapper`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpcore

__all__ = ["Probed", "answer_probe", "held_bytes", "through_wrapper"]

#: How many bytes a read of the wrapper asks for, in :func:`held_bytes`.
HELD_READ = 262_144


class Probed(Protocol):
    """A stream of the library's own: a read while ``probe`` is set returns ``b""`` at once."""

    probe: bool


def answer_probe(stream: Probed) -> bool:
    """Whether this read is a probe (then the stream's ``read`` returns ``b""`` at once)."""
    if stream.probe:
        stream.probe = False
        return True
    return False


async def _probe(stream: httpcore.AsyncNetworkStream, ours: Probed, max_bytes: int) -> bytes | None:
    """Read ``stream`` once; return what it held, or ``None`` when the read reached ours."""
    ours.probe = True
    data = await stream.read(max_bytes)
    if ours.probe:
        ours.probe = False
        return data  # bytes the wrapper held
    return None


async def held_bytes(stream: httpcore.AsyncNetworkStream, ours: Probed) -> bytes:
    """Return every byte ``stream`` (ours, or a wrapper of it) holds before ours, at once.

    Reading the wrapper does not wait: it returns what it holds, or reads ours,
    which answers the probe with nothing.
    """
    if stream is ours:  # type: ignore[comparison-overlap]
        return b""
    chunks: list[bytes] = []
    while data := await _probe(stream, ours, HELD_READ):
        chunks.append(data)
    return b"".join(chunks)


def through_wrapper(
    stream: httpcore.AsyncNetworkStream,
    ours: Probed,
    direct: Callable[[int], Awaitable[Any]],
) -> Callable[[int], Awaitable[Any]]:
    """Return a read function: what ``stream`` holds first, then ``direct`` reads of ours."""
    if stream is ours:  # type: ignore[comparison-overlap]
        return direct
    probing = True

    async def read(max_bytes: int) -> Any:
        nonlocal probing
        if probing:
            data = await _probe(stream, ours, max_bytes)
            if data is not None:
                return data
            probing = False
        return await direct(max_bytes)

    return read
