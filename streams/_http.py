"""An httpx transport whose connections use the library's own network backend.

httpx's :class:`httpx.AsyncHTTPTransport` takes no network backend, so this
subclass gives its httpcore pool (plain, HTTP proxy or SOCKS proxy) the
library's :class:`~streams._io._backend.NetworkBackend`: on asyncio, sessions
opened through it read and write the event loop's transports directly
(``ws://`` and ``wss://``). Everything else (TLS settings, proxies, limits,
retries, the exception mapping) is httpx's own.

Giving the pool its backend touches a private attribute of httpx (``_pool``)
and of httpcore (``_network_backend``); this module is the only place that
does, and when either is missing the transport works as httpx's does
(``uses_streams_backend`` is then False; ``tests/test_http_transport.py``
fails loudly if that happens on the installed versions). The tunnels to HTTP
proxies (``streams._proxy``) give their pools a backend the same way.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from ._io._backend import NetworkBackend

__all__ = ["AsyncHTTPTransport", "install_backend"]

logger = logging.getLogger("streams")


class AsyncHTTPTransport(httpx.AsyncHTTPTransport):
    """httpx's async transport, on the library's network backend (same arguments as httpx's).

    Use it in a client of your own to get the fast path::

        client = httpx.AsyncClient(transport=streams.AsyncHTTPTransport(verify=ctx))
        async with streams.aconnect_ws("wss://example.com/ws", client) as ws: ...

    A client given ``transport=`` no longer reads the proxy environment
    variables: pass ``proxy=`` here, or mount one transport per proxy. With
    ``verify=True`` (the default) every transport shares one SSL context
    (loading the CA certificates once), so a client per session stays cheap.

    Attributes:
        uses_streams_backend: whether the pool uses the library's backend.
    """

    def __init__(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits | None = None,
        proxy: httpx.Proxy | httpx.URL | str | None = None,
        uds: str | None = None,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> None:
        extra: dict[str, Any] = {} if limits is None else {"limits": limits}
        if verify is True and cert is None:
            verify = shared_ssl_context(trust_env)
        super().__init__(
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            proxy=proxy,
            uds=uds,
            local_address=local_address,
            retries=retries,
            socket_options=socket_options,
            **extra,
        )
        self.uses_streams_backend = install_backend(self, NetworkBackend())


def shared_ssl_context(trust_env: bool = True) -> ssl.SSLContext:
    """httpx's SSL context for ``verify=True``, made once per CA location and shared.

    Loading the CA certificates takes about 20 ms and 1 MiB per context:
    a client per session would pay that per session. The context depends on
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` (with ``trust_env``), as httpx's does.
    """
    if not trust_env:
        return _ssl_context(False, None, None)
    return _ssl_context(True, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _ssl_context(trust_env: bool, cafile: str | None, capath: str | None) -> ssl.SSLContext:
    # The environment is read again inside, as it was when the key was made.
    return httpx.create_ssl_context(trust_env=trust_env)


def install_backend(
    transport: httpx.AsyncHTTPTransport | httpx.HTTPTransport,
    backend: httpcore.AsyncNetworkBackend | httpcore.NetworkBackend,
) -> bool:
    """Give the pool of an httpx transport (async or sync) ``backend``; return whether it took."""
    pool = getattr(transport, "_pool", None)
    if (
        isinstance(pool, httpcore.AsyncConnectionPool)
        and isinstance(getattr(pool, "_network_backend", None), httpcore.AsyncNetworkBackend)
        and isinstance(backend, httpcore.AsyncNetworkBackend)
    ) or (
        isinstance(pool, httpcore.ConnectionPool)
        and isinstance(getattr(pool, "_network_backend", None), httpcore.NetworkBackend)
        and isinstance(backend, httpcore.NetworkBackend)
    ):
        pool._network_backend = backend
        return True
    logger.debug("httpx's transport has an unknown shape: using httpx's own network backend")
    return False
