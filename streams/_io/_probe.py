"""Bytes an httpcore wrapper still holds, read before a backend's own stream.

httpcore's upgraded stream wraps the network stream and holds what it read
past the 101 response; those bytes must reach the engine first. A stream of
the library's own answers a *probe* read with nothing: reading through the
wrapper until a read reaches ours empties the wrapper, with its public
``read()`` only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpcore

__all__ = ["Probed", "answer_probe", "through_wrapper"]


class Probed(Protocol):
    """A stream of the library's own: a read while ``probe`` is set returns ``b""`` at once."""

    probe: bool


def answer_probe(stream: Probed) -> bool:
    """Whether this read is a probe (then the stream's ``read`` returns ``b""`` at once)."""
    if stream.probe:
        stream.probe = False
        return True
    return False


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
            ours.probe = True
            data = await stream.read(max_bytes)
            if ours.probe:
                ours.probe = False
                return data  # bytes the wrapper held
            probing = False
        return await direct(max_bytes)

    return read
