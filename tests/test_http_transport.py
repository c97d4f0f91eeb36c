"""The library's httpx transport and asyncio network backend, ws:// and wss://, real servers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import random
import ssl
import urllib.request

import anyio
import anyio.lowlevel
import httpx
import pytest
import trustme

import streams
from streams._connect import _proxies_configured
from tests import servers
from tests.test_tls import ca, trusting_context, wss_url

pytestmark = pytest.mark.anyio

__all__ = ["ca", "trusting_context", "wss_url"]


def expected_io(anyio_backend: str, tls: bool = False) -> str:
    if anyio_backend == "asyncio":
        return "asyncio"
    return "trio-tls" if tls else "trio"


def test_the_transport_uses_the_library_backend_on_the_installed_httpx() -> None:
    """Fails loudly when httpx's transport changed shape and the fast path silently turned off."""
    assert streams.AsyncHTTPTransport().uses_streams_backend
    assert streams.AsyncHTTPTransport(proxy="http://127.0.0.1:1").uses_streams_backend


async def test_the_default_client_reads_through_the_library_backend(
    echo_url: str, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with streams.aconnect_ws(echo_url) as ws:
        assert ws._engine is not None
        assert ws._engine.io.name == expected_io(anyio_backend)
        for i in range(50):
            await ws.send_text(f"m{i}")
        assert [await ws.receive_text() for _ in range(50)] == [f"m{i}" for i in range(50)]


async def test_with_proxy_variables_the_default_client_honours_them(
    echo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NO_PROXY lets the request through directly: what matters is that httpx read them.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with streams.aconnect_ws(echo_url) as ws:
        assert ws._engine is not None
        assert ws._engine.io.name != "asyncio"
        await ws.send_text("direct")
        assert await ws.receive_text() == "direct"


@pytest.fixture
def tls_client(trusting_context: ssl.SSLContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=streams.AsyncHTTPTransport(verify=trusting_context))


async def test_wss_echo_large_messages_and_close_through_the_transport(
    wss_url: str, tls_client: httpx.AsyncClient, anyio_backend: str
) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB
    conn_id = servers.new_id()
    record = servers.REGISTRY.record(conn_id)
    async with (
        tls_client,
        streams.aconnect_ws(
            f"{wss_url}/echo?id={conn_id}", tls_client, max_message_size_bytes=2**21
        ) as ws,
    ):
        assert ws._engine is not None
        assert ws._engine.io.name == expected_io(anyio_backend, tls=True)
        await ws.send_text("over TLS")
        assert await ws.receive_text() == "over TLS"
        for _ in range(3):
            await ws.send_bytes(big)
        for _ in range(3):
            got = await ws.receive_bytes()
            assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
        await ws.close(4001, "tls done")
    await record.wait_finished()
    assert (record.close_code, record.close_reason) == (4001, "tls done")


async def test_wss_frames_stay_in_order_behind_one_the_socket_took_in_part(
    wss_url: str, tls_client: httpx.AsyncClient, anyio_backend: str
) -> None:
    # The first frame after a read is encrypted and written at once: 8 MiB is more than the
    # socket takes, so most of it waits as ciphertext, and every frame after it must follow it.
    big = random.Random(7).randbytes(8 * 1024 * 1024)
    with anyio.fail_after(30):
        async with (
            tls_client,
            streams.aconnect_ws(
                f"{wss_url}/echo", tls_client, max_message_size_bytes=2**24, compression=None
            ) as ws,
        ):
            assert ws._engine is not None
            assert ws._engine.io.name == expected_io(anyio_backend, tls=True)
            for round_ in range(2):
                await ws.send_text(f"start {round_}")
                assert await ws.receive_text() == f"start {round_}"
                await ws.send_bytes(big)
                for i in range(50):
                    await ws.send_text(f"after {i}")
                got = await ws.receive_bytes()
                assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()
                assert [await ws.receive_text() for _ in range(50)] == [
                    f"after {i}" for i in range(50)
                ]
            await ws.flush()
            sent = ws.statistics().bytes_sent
    frames = sum(2 + 4 + len(f"start {r}") for r in range(2))
    frames += 2 * ((2 + 8 + 4 + len(big)) + sum(2 + 4 + len(f"after {i}") for i in range(50)))
    assert sent == frames


async def test_wss_sessions_read_at_once_each_get_their_own_bytes(
    wss_url: str, tls_client: httpx.AsyncClient, anyio_backend: str
) -> None:
    # On asyncio every SSL transport reads the socket into one shared buffer: sessions
    # that receive at the same time must each get exactly their own messages.
    sessions = 6
    payloads = [random.Random(n).randbytes(300_000 + n) for n in range(sessions)]

    async def echo_three_times(n: int, ws: streams.AsyncWebSocketSession) -> None:
        for _ in range(3):
            await ws.send_bytes(payloads[n])
        for _ in range(3):
            got = await ws.receive_bytes()
            assert hashlib.sha256(got).digest() == hashlib.sha256(payloads[n]).digest()

    with anyio.fail_after(30):
        async with tls_client, contextlib.AsyncExitStack() as stack:
            opened = [
                await stack.enter_async_context(
                    streams.aconnect_ws(f"{wss_url}/echo", tls_client, max_message_size_bytes=2**20)
                )
                for _ in range(sessions)
            ]
            if anyio_backend == "asyncio":
                for ws in opened:
                    stream = ws.stream.get_extra_info("streams.asyncio")
                    assert stream.shares_tls_buffer  # fails loudly if the sharing turned off
            async with anyio.create_task_group() as group:
                for n, ws in enumerate(opened):
                    group.start_soon(echo_three_times, n, ws)


async def test_wss_flood_with_backpressure_through_the_transport(
    wss_url: str, tls_client: httpx.AsyncClient
) -> None:
    count, size = 60, 65536
    url = f"{wss_url}/flood?n={count}&size={size}&kind=binary"
    async with (
        tls_client,
        streams.aconnect_ws(url, tls_client, queue_size=4, max_message_size_bytes=size) as ws,
    ):
        received = []
        async for message in ws:
            received.append(message)
            if len(received) % 10 == 0:
                await anyio.lowlevel.checkpoint()  # a consumer slower than the socket
        assert ws.close_code == 1000
    assert received == [servers.flood_payload(i, size, "binary") for i in range(count)]


async def test_plain_http_requests_work_through_the_transport(
    trusting_context: ssl.SSLContext, wss_url: str
) -> None:
    """The transport is a whole httpx transport: a refused upgrade reads its HTTP response."""
    async with httpx.AsyncClient(
        transport=streams.AsyncHTTPTransport(verify=trusting_context)
    ) as client:
        response = await client.get(wss_url.replace("wss://", "https://") + "/echo")
        assert response.status_code in (400, 403, 404, 426)


async def test_an_unknown_ca_is_refused_by_the_transport(wss_url: str) -> None:
    async with httpx.AsyncClient(transport=streams.AsyncHTTPTransport()) as client:
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            async with streams.aconnect_ws(wss_url + "/echo", client):
                pass


def test_trustme_is_what_makes_the_certificates(ca: trustme.CA) -> None:
    assert isinstance(ca, trustme.CA)


@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)
async def test_uvloop_transports_work_with_the_library_backend(
    echo_url: str, wss_url: str, tls_client: httpx.AsyncClient
) -> None:
    pytest.importorskip("uvloop")
    async with tls_client:
        for url, client in ((echo_url, None), (wss_url + "/echo", tls_client)):
            async with streams.aconnect_ws(url, client, max_message_size_bytes=2**20) as ws:
                assert ws._engine is not None
                assert ws._engine.io.name == "asyncio"
                for i in range(100):
                    await ws.send_text(f"m{i}")
                assert [await ws.receive_text() for _ in range(100)] == [
                    f"m{i}" for i in range(100)
                ]
                await ws.send_bytes(b"\x01" * 500_000)
                assert await ws.receive_bytes() == b"\x01" * 500_000


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "all_proxy", "Ws_Proxy"])
def test_proxy_variables_are_found_in_any_case(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for present in [n for n in os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(present)
    assert not _proxies_configured()
    monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert _proxies_configured() == bool(urllib.request.getproxies())
    assert _proxies_configured()
    monkeypatch.setenv(name, "")  # an empty value is no proxy, as for urllib
    assert not _proxies_configured()


def test_transports_with_default_verification_share_one_ssl_context(
    tmp_path: pathlib.Path, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    def context(transport: streams.AsyncHTTPTransport) -> ssl.SSLContext:
        ssl_context = transport._pool._ssl_context
        assert ssl_context is not None
        return ssl_context

    first, second = streams.AsyncHTTPTransport(), streams.AsyncHTTPTransport()
    assert context(first) is context(second)
    assert context(first).verify_mode is ssl.CERT_REQUIRED
    assert context(first).check_hostname
    # What httpx reads from the environment still counts, as with httpx's own transport.
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    from_env = context(streams.AsyncHTTPTransport())
    assert from_env is not context(first)
    assert from_env is context(streams.AsyncHTTPTransport())
    assert context(streams.AsyncHTTPTransport(trust_env=False)) is not from_env
    # Given a context or a client certificate, the transport uses what it was given.
    own = ssl.create_default_context()
    assert context(streams.AsyncHTTPTransport(verify=own)) is own
