"""Proxies: ws:// and wss:// through real HTTP (proxy.py) and SOCKS5 (pproxy) proxies on 127.0.0.1.

The proxies run as subprocesses on free loopback ports, started once per module; readiness is
a TCP connection accepted on their port. A connection went through the proxy when its peer
address (``server_addr`` of the network stream) is the proxy's, not the server's.
A refusal that proxy.py does not make (403 to a CONNECT) comes from a scripted raw socket.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

import streams
from streams._proxy import http_proxy_route
from tests import servers
from tests.test_tls import ca, trusting_context, wss_url

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

__all__ = ["ca", "trusting_context", "wss_url"]

HOST = "127.0.0.1"
START_TIMEOUT = 15.0
USER, PASSWORD = "user", "s3cret"

# pproxy installs uvloop when it can, then asks for the event loop the old way, which
# recent uvloop refuses: run it on asyncio's own loop.
_PPROXY = (
    "import asyncio, sys\n"
    "sys.modules['uvloop'] = None\n"
    "asyncio.set_event_loop(asyncio.new_event_loop())\n"
    "from pproxy.server import main\n"
    "main()\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``port`` until it accepts a connection; fail at once if the process exits."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited ({process.returncode}): {log.read_text()}")
        try:
            socket.create_connection((HOST, port), timeout=1.0).close()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the proxy is not listening on {port}: {log.read_text()}"
                ) from exc
            time.sleep(0.02)  # a polling interval, not a wait for an event


@contextlib.contextmanager
def _run_proxy(argv: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_listening(port, process, log)
        yield
    finally:
        # proxy.py runs worker processes: stop the group this process leads.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _proxy_py(port: int, *extra: str) -> list[str]:
    return [
        *(sys.executable, "-m", "proxy", "--hostname", HOST, "--port", str(port)),
        *("--num-workers", "1", "--num-acceptors", "1", "--log-level", "WARNING", *extra),
    ]


@pytest.fixture(scope="module")
def http_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """proxy.py, no authentication: ``http://127.0.0.1:PORT``."""
    port = _free_port()
    with _run_proxy(_proxy_py(port), port, tmp_path_factory.mktemp("proxy") / "log"):
        yield f"http://{HOST}:{port}"


@pytest.fixture(scope="module")
def auth_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """proxy.py with basic authentication (USER, PASSWORD): ``http://127.0.0.1:PORT``."""
    port = _free_port()
    argv = _proxy_py(port, "--basic-auth", f"{USER}:{PASSWORD}")
    with _run_proxy(argv, port, tmp_path_factory.mktemp("auth-proxy") / "log"):
        yield f"http://{HOST}:{port}"


@pytest.fixture(scope="module")
def socks_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """pproxy as a SOCKS5 proxy: ``socks5://127.0.0.1:PORT``."""
    port = _free_port()
    argv = [sys.executable, "-c", _PPROXY, "-l", f"socks5://{HOST}:{port}"]
    with _run_proxy(argv, port, tmp_path_factory.mktemp("socks-proxy") / "log"):
        yield f"socks5://{HOST}:{port}"


class ScriptedProxy:
    """Answers every CONNECT with ``answer`` (or nothing, if ``None``) and closes; records them."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self._conns: list[socket.socket] = []
        self._sock = socket.create_server((HOST, 0))
        self.url = f"http://{HOST}:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                self.requests.append(request)
                if self.answer is None:  # silent: wait until the client gives up
                    while conn.recv(4096):
                        pass
                    continue
                conn.sendall(self.answer)

    def close(self) -> None:
        for sock in [*self._conns, self._sock]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv() or accept() (Linux)
        self._sock.close()
        self._thread.join(5)


@contextlib.contextmanager
def scripted_proxy(answer: bytes | None) -> Iterator[ScriptedProxy]:
    proxy = ScriptedProxy(answer)
    try:
        yield proxy
    finally:
        proxy.close()


def with_credentials(proxy_url: str, user: str = USER, password: str = PASSWORD) -> str:
    return proxy_url.replace("http://", f"http://{user}:{password}@")


def peer(ws: Any) -> tuple[str, int]:
    """The address the session's TCP connection goes to."""
    address = ws.response.extensions["network_stream"].get_extra_info("server_addr")
    return (address[0], address[1])


def port_of(url: str) -> int:
    return int(httpx.URL(url).port or 0)


def expected_io(anyio_backend: str, tls: bool = False) -> str:
    if anyio_backend == "asyncio":
        return "asyncio"
    return "trio-tls" if tls else "trio"


async def echo_once(ws: streams.AsyncWebSocketSession, text: str = "through") -> None:
    await ws.send_text(text)
    assert await ws.receive_text() == text


# --------------------------------------------------------------------------- the shortcut


def test_the_client_proxy_is_found_on_the_installed_httpx() -> None:
    """Fails loudly when httpx's private shape changed and ws:// through proxies turned off."""
    url = httpx.URL("http://example.com/ws")
    proxy = f"http://{USER}:{PASSWORD}@10.1.2.3:3128"
    for client in (httpx.AsyncClient(proxy=proxy), httpx.Client(proxy=proxy)):
        route = http_proxy_route(client, url)
        assert route is not None, "httpx's private shape changed: see streams/_proxy.py"
        assert route.address == "http://10.1.2.3:3128"
        assert route.has_credentials
        assert route.ssl_context is not None


def test_no_route_without_an_http_proxy() -> None:
    url = httpx.URL("https://example.com/ws")
    assert http_proxy_route(httpx.AsyncClient(trust_env=False), url) is None
    assert http_proxy_route(httpx.AsyncClient(proxy="socks5://127.0.0.1:1"), url) is None
    mock = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    assert http_proxy_route(mock, url) is None
    # NO_PROXY-style mounts: None sends matching URLs directly.
    direct = httpx.AsyncClient(proxy="http://127.0.0.1:1", mounts={"https://example.com": None})
    assert http_proxy_route(direct, url) is None
    assert http_proxy_route(direct, httpx.URL("https://example.org/ws")) is not None


# --------------------------------------------------------------------------- HTTP CONNECT


async def test_ws_goes_through_an_http_proxy(
    http_proxy: str, echo_url: str, anyio_backend: str
) -> None:
    async with (
        httpx.AsyncClient(proxy=http_proxy) as client,
        streams.aconnect_ws(echo_url, client) as ws,
    ):
        assert peer(ws) == (HOST, port_of(http_proxy))
        assert ws._engine is not None
        assert ws._engine.io.name == expected_io(anyio_backend)
        for i in range(20):
            await echo_once(ws, f"m{i}")


async def test_wss_goes_through_an_http_proxy(
    http_proxy: str, wss_url: str, trusting_context: ssl.SSLContext, anyio_backend: str
) -> None:
    async with (
        httpx.AsyncClient(proxy=http_proxy, verify=trusting_context) as client,
        streams.aconnect_ws(f"{wss_url}/echo", client) as ws,
    ):
        assert peer(ws) == (HOST, port_of(http_proxy))
        assert ws._engine is not None
        assert ws._engine.io.name == expected_io(anyio_backend, tls=True)
        await echo_once(ws)


async def test_wss_through_a_proxy_still_verifies_the_server(http_proxy: str, wss_url: str) -> None:
    async with httpx.AsyncClient(proxy=http_proxy) as client:
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            async with streams.aconnect_ws(f"{wss_url}/echo", client):
                pass


async def test_the_client_settings_reach_the_server_through_the_proxy(
    http_proxy: str, uvicorn_websockets_url: str
) -> None:
    hooked: list[str] = []

    async def hook(request: httpx.Request) -> None:
        hooked.append(str(request.url))

    async with (
        httpx.AsyncClient(
            proxy=http_proxy,
            headers={"x-token": "client"},
            params={"id": "p1"},
            event_hooks={"request": [hook]},
        ) as client,
        streams.aconnect_ws(
            f"{uvicorn_websockets_url}/headers", client, headers={"x-call": "call"}
        ) as ws,
    ):
        headers = await ws.receive_json()
        assert headers["x-token"] == "client"
        assert headers["x-call"] == "call"
        assert "proxy-authorization" not in headers
    assert hooked == [f"{uvicorn_websockets_url.replace('ws://', 'http://')}/headers?id=p1"]


async def test_mounted_proxy_transports_are_used(http_proxy: str, echo_url: str) -> None:
    for transport in (
        httpx.AsyncHTTPTransport(proxy=http_proxy),
        streams.AsyncHTTPTransport(proxy=http_proxy),
    ):
        async with (
            httpx.AsyncClient(mounts={"http://": transport}) as client,
            streams.aconnect_ws(echo_url, client) as ws,
        ):
            assert peer(ws) == (HOST, port_of(http_proxy))
            await echo_once(ws)


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


async def test_proxy_variables_are_honoured(
    http_proxy: str, echo_url: str, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", http_proxy)
    async with streams.aconnect_ws(echo_url) as ws:  # the default client
        assert peer(ws) == (HOST, port_of(http_proxy))
        await echo_once(ws)
    async with httpx.AsyncClient() as client, streams.aconnect_ws(echo_url, client) as ws:
        assert peer(ws) == (HOST, port_of(http_proxy))
    async with (
        httpx.AsyncClient(trust_env=False) as client,
        streams.aconnect_ws(echo_url, client) as ws,
    ):
        assert peer(ws) == (HOST, port_of(echo_url))


async def test_no_proxy_goes_direct(
    http_proxy: str, echo_url: str, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", http_proxy)
    clean_proxy_env.setenv("NO_PROXY", HOST)
    async with streams.aconnect_ws(echo_url) as ws:
        assert peer(ws) == (HOST, port_of(echo_url))


# --------------------------------------------------------------------------- authentication


async def test_proxy_credentials_in_the_url(
    auth_proxy: str, echo_url: str, wss_url: str, trusting_context: ssl.SSLContext
) -> None:
    proxy = with_credentials(auth_proxy)
    async with httpx.AsyncClient(proxy=proxy, verify=trusting_context) as client:
        for url in (echo_url, f"{wss_url}/echo"):
            async with streams.aconnect_ws(url, client) as ws:
                assert peer(ws) == (HOST, port_of(auth_proxy))
                await echo_once(ws)


async def test_missing_credentials_say_where_to_put_them(auth_proxy: str, echo_url: str) -> None:
    async with httpx.AsyncClient(proxy=auth_proxy) as client:
        with pytest.raises(httpx.ProxyError) as info:
            async with streams.aconnect_ws(echo_url, client):
                pass
    message = str(info.value)
    assert f"the proxy {auth_proxy} refused to open a tunnel to {HOST}:{port_of(echo_url)}" in (
        message
    )
    assert "407" in message
    assert "(Basic)" in message
    assert f'proxy="http://USER:PASSWORD@{auth_proxy.removeprefix("http://")}"' in message


async def test_wrong_credentials_are_named_without_the_password(
    auth_proxy: str, wss_url: str, trusting_context: ssl.SSLContext
) -> None:
    proxy = with_credentials(auth_proxy, password="wrong-secret")
    async with httpx.AsyncClient(proxy=proxy, verify=trusting_context) as client:
        with pytest.raises(httpx.ProxyError) as info:
            async with streams.aconnect_ws(f"{wss_url}/echo", client):
                pass
    message = str(info.value)
    assert "407" in message
    assert "rejected the credentials" in message
    assert auth_proxy in message
    assert "wrong-secret" not in message
    assert USER not in message


# --------------------------------------------------------------------------- refusals


async def test_a_refused_port_80_suggests_wss() -> None:
    answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    with scripted_proxy(answer) as proxy:
        proxy_url = proxy.url.replace("http://", "http://someone:pw@")
        async with httpx.AsyncClient(proxy=proxy_url) as client:
            with pytest.raises(httpx.ProxyError) as info:
                async with streams.aconnect_ws("ws://example.com/feed", client):
                    pass
        assert proxy.requests[0].startswith(b"CONNECT example.com:80 HTTP/1.1\r\n")
        assert b"Proxy-Authorization: Basic " in proxy.requests[0]
    message = str(info.value)
    assert f"the proxy {proxy.url} refused to open a tunnel to example.com:80: 403" in message
    assert "use wss://" in message
    assert "someone" not in message
    assert ":pw@" not in message


async def test_a_refusal_on_port_443_does_not_suggest_wss() -> None:
    answer = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
    with scripted_proxy(answer) as proxy:
        async with httpx.AsyncClient(proxy=proxy.url) as client:
            with pytest.raises(httpx.ProxyError) as info:
                async with streams.aconnect_ws("wss://example.com/feed", client):
                    pass
    assert str(info.value) == (
        f"the proxy {proxy.url} refused to open a tunnel to example.com:443: 502 Bad Gateway"
    )


async def test_a_proxy_that_is_not_an_http_proxy() -> None:
    with scripted_proxy(b"\x05\xff") as proxy:  # a SOCKS5 server's refusal
        async with httpx.AsyncClient(proxy=proxy.url) as client:
            with pytest.raises(httpx.ProxyError, match="is it an HTTP proxy"):
                async with streams.aconnect_ws("ws://example.com/feed", client):
                    pass


async def test_a_proxy_that_closes_at_once() -> None:
    with scripted_proxy(b"") as proxy:
        async with httpx.AsyncClient(proxy=proxy.url) as client:
            with pytest.raises(httpx.ProxyError, match="closed the connection before answering"):
                async with streams.aconnect_ws("ws://example.com/feed", client):
                    pass


async def test_a_silent_proxy_is_a_connect_timeout() -> None:
    with scripted_proxy(None) as proxy:
        async with httpx.AsyncClient(
            proxy=proxy.url, timeout=httpx.Timeout(5, connect=0.3)
        ) as client:
            with pytest.raises(
                httpx.ConnectTimeout, match=r"the connect timeout of 0\.3 s expired"
            ):
                async with streams.aconnect_ws("ws://example.com/feed", client):
                    pass
    assert proxy.requests[0].startswith(b"CONNECT example.com:80 ")


def test_sync_silent_proxy_is_a_connect_timeout() -> None:
    with (
        scripted_proxy(None) as proxy,
        httpx.Client(proxy=proxy.url, timeout=httpx.Timeout(5, connect=0.3)) as client,
        pytest.raises(httpx.ConnectTimeout, match=r"the connect timeout of 0\.3 s expired"),
        streams.connect_ws("ws://example.com/feed", client),
    ):
        pass


async def test_an_unreachable_proxy_is_named_without_credentials() -> None:
    port = _free_port()
    async with httpx.AsyncClient(proxy=f"http://{USER}:{PASSWORD}@{HOST}:{port}") as client:
        with pytest.raises(httpx.ConnectError) as info:
            async with streams.aconnect_ws("ws://example.com/feed", client):
                pass
    message = str(info.value)
    assert f"the proxy http://{HOST}:{port} is unreachable" in message
    assert PASSWORD not in message


# --------------------------------------------------------------------------- SOCKS5


async def test_ws_and_wss_through_socks5(
    socks_proxy: str, echo_url: str, wss_url: str, trusting_context: ssl.SSLContext
) -> None:
    async with httpx.AsyncClient(proxy=socks_proxy, verify=trusting_context) as client:
        for url in (echo_url, f"{wss_url}/echo"):
            async with streams.aconnect_ws(url, client) as ws:
                assert peer(ws) == (HOST, port_of(socks_proxy))
                await echo_once(ws)


# --------------------------------------------------------------------------- sync API


def test_sync_ws_and_wss_through_an_http_proxy(
    auth_proxy: str, echo_url: str, wss_url: str, trusting_context: ssl.SSLContext
) -> None:
    proxy = with_credentials(auth_proxy)
    with httpx.Client(proxy=proxy, verify=trusting_context) as client:
        for url in (echo_url, f"{wss_url}/echo"):
            with streams.connect_ws(url, client) as ws:
                assert peer(ws) == (HOST, port_of(auth_proxy))
                ws.send_text("sync")
                assert ws.receive_text() == "sync"


def test_sync_missing_credentials(auth_proxy: str, echo_url: str) -> None:
    with (
        httpx.Client(proxy=auth_proxy) as client,
        pytest.raises(httpx.ProxyError, match=r"407 .* it asks for credentials"),
        streams.connect_ws(echo_url, client),
    ):
        pass


def test_sync_through_socks5(socks_proxy: str, echo_url: str) -> None:
    with (
        httpx.Client(proxy=socks_proxy) as client,
        streams.connect_ws(echo_url, client) as ws,
    ):
        assert peer(ws) == (HOST, port_of(socks_proxy))
        ws.send_text("sync")
        assert ws.receive_text() == "sync"


# --------------------------------------------------------------------------- the docs


def _first_python_block(page: Path) -> str:
    text = page.read_text()
    start = text.index("```python\n") + len("```python\n")
    return text[start : text.index("```", start)]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_docs_example_runs(uvicorn_websockets_url: str, backend: str) -> None:
    """The Proxies page's first example, with proxy.py: in a process of its own (it starts more)."""
    source = _first_python_block(Path(__file__).parent.parent / "docs" / "proxies.md")
    assert "anyio.run(main)" in source
    source = source.replace("anyio.run(main)", f"anyio.run(main, backend={backend!r})")
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", f"URL = {uvicorn_websockets_url!r}\n{source}"],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- an https:// proxy


@pytest.fixture(scope="module")
def tls_proxy(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[str]:
    """proxy.py speaking TLS to its clients (a certificate of the test CA): ``https://...``."""
    directory = tmp_path_factory.mktemp("tls-proxy")
    cert = ca.issue_cert(HOST)
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    port = _free_port()
    argv = _proxy_py(
        port, "--cert-file", str(directory / "cert.pem"), "--key-file", str(directory / "key.pem")
    )
    with _run_proxy(argv, port, directory / "log"):
        yield f"https://{HOST}:{port}"


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_through_an_https_proxy(
    tls_proxy: str,
    echo_url: str,
    wss_url: str,
    trusting_context: ssl.SSLContext,
    scheme: str,
) -> None:
    proxy = httpx.Proxy(tls_proxy, ssl_context=trusting_context)
    url = echo_url if scheme == "ws" else f"{wss_url}/echo"
    async with (
        httpx.AsyncClient(proxy=proxy, verify=trusting_context) as client,
        streams.aconnect_ws(url, client) as ws,
    ):
        assert peer(ws) == (HOST, port_of(tls_proxy))
        await echo_once(ws)
        sock = ws.response.extensions["network_stream"].get_extra_info("socket")
    # asyncio closes a TLS connection once the proxy ends its side too: wait for that, so
    # that the test's event loop does not end with the connection still closing.
    await servers.wait_until(lambda: sock.fileno() == -1, timeout=10)


def test_sync_ws_through_an_https_proxy(
    tls_proxy: str, echo_url: str, trusting_context: ssl.SSLContext
) -> None:
    proxy = httpx.Proxy(tls_proxy, ssl_context=trusting_context)
    with (
        httpx.Client(proxy=proxy) as client,
        streams.connect_ws(echo_url, client) as ws,
    ):
        assert peer(ws) == (HOST, port_of(tls_proxy))
        ws.send_text("sync")
        assert ws.receive_text() == "sync"
