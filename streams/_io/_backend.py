"""The network backend the library gives httpcore: asyncio transports, or trio's wrapped."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable

import httpcore

from ._asyncio import AsyncioBackend

__all__ = ["NetworkBackend"]


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class NetworkBackend(httpcore.AsyncNetworkBackend):
    """Opens connections with :class:`AsyncioBackend` on asyncio, :class:`TrioBackend` on trio."""

    def __init__(self) -> None:
        self._asyncio = AsyncioBackend()
        self._other: httpcore.AsyncNetworkBackend | None = None

    def _backend(self) -> httpcore.AsyncNetworkBackend:
        if _on_asyncio():
            return self._asyncio
        if self._other is None:
            if "trio" in sys.modules:
                from ._trio import TrioBackend

                self._other = TrioBackend()
            else:
                self._other = httpcore.AnyIOBackend()
        return self._other

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._backend().connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._backend().connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._backend().sleep(seconds)
