"""HTTP proxies: the upgrade request through a CONNECT tunnel, for ``ws://`` and ``wss://`` alike.

httpx sends a request for an ``http://`` URL to an HTTP proxy as a plain
forwarded request, which a proxy cannot upgrade to a WebSocket (the
connection hangs or is refused). So when the client given would send the
upgrade request through an HTTP proxy (``proxy=``, ``mounts=``, or the proxy
environment variables with ``trust_env``), the request goes instead through
a tunnel: ``CONNECT host:port`` to that same proxy, with its credentials and
headers, then the handshake (after TLS for ``wss://``) inside the tunnel. The
tunnel is opened by the library's network backend, so the session keeps its
fast path. The client's own settings (auth, headers, cookies, timeouts, event
hooks) still apply: the request is sent by a short-lived client made with
them, whose only transport is the tunnel.

Which proxy the client uses for a URL is known only to private parts of httpx
(the client's ``_transport_for_url``, the transport's ``_pool``) and httpcore
(the proxy pool's ``_proxy_url``, ``_proxy_headers``, ``_proxy_ssl_context``,
``_ssl_context``); this module is the only one that reads them. When their
shape is not the known one, the request goes through the client as httpx
sends it (``wss://`` still works; ``ws://`` through an HTTP proxy does not), and
``tests/test_proxy.py`` fails loudly on the installed versions.

SOCKS proxies need none of this: httpx tunnels every request through them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import ssl
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import anyio
import httpcore
import httpx

from ._http import install_backend
from ._io._backend import NetworkBackend

__all__ = ["ProxyRoute", "http_proxy_route", "open_upgrade", "open_upgrade_sync"]

logger = logging.getLogger("streams")

#: The largest answer to CONNECT read (status line and headers).
MAX_ANSWER_BYTES = 65_536

_READ_SIZE = 4096


@dataclasses.dataclass(frozen=True)
class ProxyRoute:
    """The HTTP proxy a client sends a URL's requests through.

    Attributes:
        scheme: the proxy's scheme, ``"http"`` or ``"https"``.
        host: the proxy's host.
        port: the proxy's port.
        headers: the headers sent to the proxy (``Proxy-Authorization`` included).
        proxy_ssl_context: the SSL context for an ``https://`` proxy, or ``None``.
        ssl_context: the SSL context for the server (the client's ``verify``).
    """

    scheme: str
    host: str
    port: int
    headers: tuple[tuple[bytes, bytes], ...]
    proxy_ssl_context: ssl.SSLContext | None
    ssl_context: ssl.SSLContext | None

    @property
    def address(self) -> str:
        """The proxy's URL, never with its credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def has_credentials(self) -> bool:
        """Whether a ``Proxy-Authorization`` header goes to the proxy."""
        return any(name.lower() == b"proxy-authorization" for name, _ in self.headers)


def http_proxy_route(client: httpx.AsyncClient | httpx.Client, url: httpx.URL) -> ProxyRoute | None:
    """Return the HTTP proxy ``client`` sends ``url`` through, or ``None``.

    ``None`` also when the client sends it directly, through a SOCKS proxy or a
    custom transport, or when httpx's private shape is not the known one.
    """
    transport_for_url = getattr(client, "_transport_for_url", None)
    if not callable(transport_for_url):
        logger.debug("httpx's client has an unknown shape: requests go as httpx sends them")
        return None
    pool = getattr(transport_for_url(url), "_pool", None)
    is_async = isinstance(client, httpx.AsyncClient)
    if not isinstance(pool, httpcore.AsyncHTTPProxy if is_async else httpcore.HTTPProxy):
        return None
    proxy_url = getattr(pool, "_proxy_url", None)
    headers = getattr(pool, "_proxy_headers", None)
    proxy_context = getattr(pool, "_proxy_ssl_context", None)
    context = getattr(pool, "_ssl_context", None)
    if (
        not isinstance(proxy_url, httpcore.URL)
        or not isinstance(headers, list)
        or not isinstance(proxy_context, ssl.SSLContext | None)
        or not isinstance(context, ssl.SSLContext | None)
    ):
        logger.debug("httpcore's proxy pool has an unknown shape: requests go as httpx sends them")
        return None
    origin = proxy_url.origin
    return ProxyRoute(
        scheme=origin.scheme.decode("ascii"),
        host=origin.host.decode("ascii"),
        port=origin.port,
        headers=tuple(headers),
        proxy_ssl_context=proxy_context,
        ssl_context=context,
    )


# ------------------------------------------------------------------ the CONNECT exchange


class _Tunnel:
    """The CONNECT request to the proxy, and the reading of its answer (no I/O)."""

    def __init__(self, route: ProxyRoute, host: str, port: int) -> None:
        self._route = route
        self._port = port
        self.target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        target = self.target.encode("ascii")
        lines = [b"CONNECT " + target + b" HTTP/1.1", b"Host: " + target]
        lines += [name + b": " + value for name, value in route.headers]
        self.request = b"\r\n".join(lines) + b"\r\n\r\n"
        self._answer = b""

    def answered(self, data: bytes) -> bool:
        """Take bytes read from the proxy; return whether the tunnel is open.

        Raises:
            httpcore.ProxyError: the proxy refused, closed the connection, or
                did not answer as an HTTP proxy does.
        """
        where = f"the proxy {self._route.address}"
        self._answer += data
        if not b"HTTP/".startswith(self._answer[:5]):
            first = self._answer.partition(b"\r\n")[0][:80]
            raise httpcore.ProxyError(
                f"{where} answered CONNECT {self.target} with {first!r}: is it an HTTP"
                " proxy? (a SOCKS proxy's URL starts with socks5://)"
            )
        if not data:
            raise httpcore.ProxyError(
                f"{where} closed the connection before answering CONNECT {self.target}"
            )
        end = self._answer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._answer) > MAX_ANSWER_BYTES:
                raise httpcore.ProxyError(f"{where} answered CONNECT with too long a header")
            return False
        lines = self._answer[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise httpcore.ProxyError(
                f"{where} answered CONNECT {self.target} with {lines[0][:80]!r}"
            )
        status = int(parts[1])
        if not 200 <= status < 300:
            reason = parts[2] if len(parts) > 2 else ""
            raise httpcore.ProxyError(self._refusal(status, reason, lines[1:]))
        if len(self._answer) > end + 4:
            raise httpcore.ProxyError(f"{where} sent data on the tunnel before the request")
        return True

    @contextlib.contextmanager
    def timeouts(self, timeout: float | None) -> Iterator[None]:
        """Report a read or write timeout of the exchange as the connect timeout it is."""
        try:
            yield
        except (httpcore.ReadTimeout, httpcore.WriteTimeout) as exc:
            raise httpcore.ConnectTimeout(
                f"the proxy {self._route.address} did not open the tunnel to {self.target}"
                f" in {timeout} s"
            ) from exc

    def _refusal(self, status: int, reason: str, header_lines: list[str]) -> str:
        route = self._route
        message = (
            f"the proxy {route.address} refused to open a tunnel to {self.target}:"
            f" {status} {reason}".rstrip()
        )
        if status == 407 and route.has_credentials:
            return f"{message}; it rejected the credentials of the proxy URL"
        if status == 407:
            schemes = [
                line.partition(":")[2].strip().partition(" ")[0]
                for line in header_lines
                if line.lower().startswith("proxy-authenticate:")
            ]
            asks = f" ({', '.join(schemes)})" if schemes else ""
            host = route.address.partition("://")[2]
            return (
                f"{message}; it asks for credentials{asks}: put them in the proxy URL,"
                f' e.g. proxy="{route.scheme}://USER:PASSWORD@{host}"'
            )
        if 400 <= status < 500 and self._port != 443:
            return (
                f"{message}; many proxies open tunnels to port 443 only: use wss://"
                " (on port 443) if the server offers it"
            )
        return message


def _unreachable(route: ProxyRoute, exc: Exception) -> str:
    return f"the proxy {route.address} is unreachable ({exc or type(exc).__name__})"


def _proxy_context(route: ProxyRoute) -> ssl.SSLContext:
    return route.proxy_ssl_context or httpx.create_ssl_context()


class TunnelBackend(httpcore.AsyncNetworkBackend):
    """A network backend whose TCP connections are tunnels through an HTTP proxy."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, route: ProxyRoute) -> None:
        self._inner = inner
        self._route = route

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        route = self._route
        try:
            stream = await self._inner.connect_tcp(
                route.host, route.port, timeout, local_address, socket_options
            )
        except httpcore.ConnectError as exc:
            raise httpcore.ConnectError(_unreachable(route, exc)) from exc
        try:
            if route.scheme == "https":
                stream = await stream.start_tls(_proxy_context(route), route.host, timeout)
            tunnel = _Tunnel(route, host, port)
            with tunnel.timeouts(timeout):
                await stream.write(tunnel.request, timeout)
                while not tunnel.answered(await stream.read(_READ_SIZE, timeout)):
                    pass
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            raise
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class SyncTunnelBackend(httpcore.NetworkBackend):
    """The blocking :class:`TunnelBackend`, on httpcore's sync backend."""

    def __init__(self, route: ProxyRoute) -> None:
        self._inner = httpcore.SyncBackend()
        self._route = route

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        route = self._route
        try:
            stream = self._inner.connect_tcp(
                route.host, route.port, timeout, local_address, socket_options
            )
        except httpcore.ConnectError as exc:
            raise httpcore.ConnectError(_unreachable(route, exc)) from exc
        try:
            if route.scheme == "https":
                stream = stream.start_tls(_proxy_context(route), route.host, timeout)
            tunnel = _Tunnel(route, host, port)
            with tunnel.timeouts(timeout):
                stream.write(tunnel.request, timeout)
                while not tunnel.answered(stream.read(_READ_SIZE, timeout)):
                    pass
        except BaseException:
            stream.close()
            raise
        return stream


# ------------------------------------------------------------------ the upgrade request


def _client_settings(client: httpx.AsyncClient | httpx.Client) -> dict[str, Any]:
    """What a client adds to its requests, for a short-lived client sending one of them."""
    return {
        "auth": client.auth,
        "params": client.params,
        "headers": client.headers,
        "cookies": client.cookies.jar,  # the jar itself: cookies set come back to the client
        "timeout": client.timeout,
        "follow_redirects": client.follow_redirects,
        "max_redirects": client.max_redirects,
        "event_hooks": client.event_hooks,
        "trust_env": False,
    }


def open_upgrade(
    client: httpx.AsyncClient, url: httpx.URL, **kwargs: Any
) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
    """``client.stream("GET", url, **kwargs)``, through a tunnel if an HTTP proxy is on the way."""
    route = None if client.is_closed else http_proxy_route(client, url)
    if route is not None:
        transport = httpx.AsyncHTTPTransport(verify=route.ssl_context or True)
        if install_backend(transport, TunnelBackend(NetworkBackend(), route)):
            logger.debug("through the proxy %s", route.address)
            tunnel = httpx.AsyncClient(transport=transport, **_client_settings(client))
            return _stream_async(tunnel, url, kwargs)
    if type(client).stream is not httpx.AsyncClient.stream:
        return client.stream("GET", url, **kwargs)  # a subclass's own stream()
    return _Upgrade(client, url, kwargs)


class _Upgrade:
    """``client.stream("GET", url, **kwargs)`` that holds only the response once it came.

    httpx's ``stream()`` is a generator whose frame (the request, the
    keywords) lives as long as the response is open: for an upgrade, the
    whole life of the session. This does what it does (``build_request``,
    ``send(stream=True)``, then ``aclose()`` on leaving) and keeps the response alone.
    """

    __slots__ = ("_client", "_kwargs", "_response", "_url")

    def __init__(self, client: httpx.AsyncClient, url: httpx.URL, kwargs: dict[str, Any]) -> None:
        self._client: httpx.AsyncClient | None = client
        self._url = url
        self._kwargs = kwargs
        self._response: httpx.Response | None = None

    async def __aenter__(self) -> httpx.Response:
        client = self._client
        if client is None:
            raise RuntimeError("this upgrade request was already sent")
        self._client = None
        kwargs = dict(self._kwargs)
        auth = kwargs.pop("auth", httpx.USE_CLIENT_DEFAULT)
        follow_redirects = kwargs.pop("follow_redirects", httpx.USE_CLIENT_DEFAULT)
        request = client.build_request("GET", self._url, **kwargs)
        del self._url, self._kwargs
        response = await client.send(
            request, auth=auth, follow_redirects=follow_redirects, stream=True
        )
        self._response = response
        return response

    async def __aexit__(self, *exc_info: object) -> None:
        response, self._response = self._response, None
        if response is not None:
            await response.aclose()


@contextlib.asynccontextmanager
async def _stream_async(
    tunnel: httpx.AsyncClient, url: httpx.URL, kwargs: dict[str, Any]
) -> AsyncIterator[httpx.Response]:
    async with tunnel, tunnel.stream("GET", url, **kwargs) as response:
        yield response


def open_upgrade_sync(
    client: httpx.Client, url: httpx.URL, **kwargs: Any
) -> contextlib.AbstractContextManager[httpx.Response]:
    """The blocking :func:`open_upgrade`."""
    route = None if client.is_closed else http_proxy_route(client, url)
    if route is not None:
        transport = httpx.HTTPTransport(verify=route.ssl_context or True)
        if install_backend(transport, SyncTunnelBackend(route)):
            logger.debug("through the proxy %s", route.address)
            tunnel = httpx.Client(transport=transport, **_client_settings(client))
            return _stream_sync(tunnel, url, kwargs)
    return client.stream("GET", url, **kwargs)


@contextlib.contextmanager
def _stream_sync(
    tunnel: httpx.Client, url: httpx.URL, kwargs: dict[str, Any]
) -> Iterator[httpx.Response]:
    with tunnel, tunnel.stream("GET", url, **kwargs) as response:
        yield response
