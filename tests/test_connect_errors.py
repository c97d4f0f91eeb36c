"""What a connect call says when the URL, a keyword or the network is wrong."""

from __future__ import annotations

import socket

import anyio
import httpx
import pytest

import streams
from tests.test_tls import ca, wss_url

pytestmark = pytest.mark.anyio

__all__ = ["ca", "wss_url"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("example.com/feed", "no scheme"),
        ("ftp://example.com/feed", "the scheme 'ftp'"),
        ("ws:/x", "no host"),
    ],
)
async def test_a_bad_url_says_which_schemes_work(url: str, says: str) -> None:
    with pytest.raises(httpx.UnsupportedProtocol) as info:
        async with streams.aconnect_ws(url):
            pass
    assert says in str(info.value)
    assert "ws://, wss://" in str(info.value) or "ws://host" in str(info.value)
    assert "http://' or 'https://' protocol" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "client", "expected"),
    [
        ("wss://example.com/feed?a=1", None, "https://example.com/feed?a=1"),
        ("WS://example.com/", None, "http://example.com/"),
        ("/feed?next=wss://other.example/", "ws://example.com", "http://example.com/feed"),
        (httpx.URL("ws://example.com/x"), None, "http://example.com/x"),
    ],
)
def test_a_websocket_url_becomes_the_http_url_httpx_asks_for(
    url: httpx.URL | str, client: str | None, expected: str
) -> None:
    from streams._connect_errors import http_url

    base = None if client is None else httpx.Client(base_url=client)
    for _ in range(2):  # the second time from the cache of parsed URLs
        assert str(http_url(url, base)).startswith(expected)


@pytest.mark.parametrize("name", ["queue_sise", "verify", "ssl"])
async def test_an_unknown_keyword_is_named_with_the_session_options(
    name: str, echo_url: str
) -> None:
    with pytest.raises(TypeError) as info:
        async with streams.aconnect_ws(echo_url, **{name: 1}):
            pass
    message = str(info.value)
    assert f"unexpected keyword argument {name!r}" in message
    assert "queue_size" in message
    assert "max_message_size_bytes" in message
    assert "AsyncClient.stream" not in message
    if name != "queue_sise":
        assert "httpx.AsyncClient(verify=" in message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_names_host_and_port() -> None:
    port = free_port()
    with pytest.raises(httpx.ConnectError, match=f"cannot connect to 127.0.0.1:{port}"):
        async with streams.aconnect_ws(f"ws://127.0.0.1:{port}/"):
            pass


async def test_a_handshake_timeout_says_which_timeout_and_where() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener:  # accepts (the kernel's backlog) and never answers
        with pytest.raises(httpx.ReadTimeout) as info:
            async with streams.aconnect_ws(
                f"ws://user:secret@127.0.0.1:{port}/feed?token=abc", timeout=0.2
            ):
                pass
    message = str(info.value)
    assert f"ws://127.0.0.1:{port}/feed" in message
    assert "read timeout of 0.2 s" in message
    assert "secret" not in message
    assert "token" not in message
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


async def test_ws_to_a_tls_port_hints_at_wss(wss_url: str) -> None:
    plain = wss_url.replace("wss://", "ws://") + "/echo"
    with pytest.raises(httpx.HTTPError, match="use wss://"):
        async with streams.aconnect_ws(plain):
            pass
