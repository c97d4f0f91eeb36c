"""wss:// through httpx's TLS: a private CA (trustme) and the websockets server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Iterator

import httpx
import pytest
import trustme
import websockets.asyncio.server

import streams
from tests import servers

pytestmark = pytest.mark.anyio

START_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def wss_url(ca: trustme.CA) -> Iterator[str]:
    """``wss://127.0.0.1:PORT`` of the test endpoints, served by websockets with the CA's cert."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        async with websockets.asyncio.server.serve(
            servers.websockets_handler,
            sock=sock,
            ssl=server_context,
            process_request=servers.websockets_process_request,
            select_subprotocol=servers.websockets_select_subprotocol,
            ping_interval=None,
            compression=None,
            max_size=16 * 1024 * 1024,
            close_timeout=servers.CLOSE_TIMEOUT,
            logger=logging.getLogger("tests.wss_server"),
        ):
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert started.wait(START_TIMEOUT), "the wss server did not start"
        yield f"wss://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)
        thread.join(START_TIMEOUT)
        if not thread.is_alive():
            loop.close()
        sock.close()


@pytest.fixture
def trusting_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_wss_connects_with_a_client_trusting_the_ca(
    wss_url: str, trusting_context: ssl.SSLContext
) -> None:
    async with (
        httpx.AsyncClient(verify=trusting_context) as client,
        streams.aconnect_ws(wss_url + "/echo", client) as ws,
    ):
        await ws.send_text("over TLS")
        assert await ws.receive_text() == "over TLS"
        await ws.send_bytes(b"\x00" * 60_000)
        assert await ws.receive_bytes() == b"\x00" * 60_000
        assert ws.response is not None
        assert ws.response.request.url.scheme == "https"
        await (await ws.ping()).wait()


async def test_https_url_works_too(wss_url: str, trusting_context: ssl.SSLContext) -> None:
    url = "https://" + wss_url.removeprefix("wss://") + "/echo"
    async with (
        httpx.AsyncClient(verify=trusting_context) as client,
        streams.aconnect_ws(url, client) as ws,
    ):
        await ws.send_text("https")
        assert await ws.receive_text() == "https"


async def test_flood_and_close_over_tls(wss_url: str, trusting_context: ssl.SSLContext) -> None:
    count, size = 40, 65536
    conn_id = servers.new_id()
    record = servers.REGISTRY.record(conn_id)
    url = f"{wss_url}/flood?n={count}&size={size}&kind=binary&id={conn_id}"
    async with (
        httpx.AsyncClient(verify=trusting_context) as client,
        streams.aconnect_ws(url, client, queue_size=8, max_message_size_bytes=size) as ws,
    ):
        received = [message async for message in ws]
        assert ws.close_code == 1000
    assert received == [servers.flood_payload(i, size, "binary") for i in range(count)]
    await record.wait_finished()
    assert record.close_code == 1000


async def test_client_close_code_reaches_the_tls_server(
    wss_url: str, trusting_context: ssl.SSLContext
) -> None:
    conn_id = servers.new_id()
    record = servers.REGISTRY.record(conn_id)
    async with (
        httpx.AsyncClient(verify=trusting_context) as client,
        streams.aconnect_ws(f"{wss_url}/echo?id={conn_id}", client) as ws,
    ):
        await ws.close(4000, "tls bye")
    await record.wait_finished()
    assert (record.close_code, record.close_reason) == (4000, "tls bye")


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


async def test_default_client_refuses_an_unknown_ca(wss_url: str) -> None:
    with pytest.raises(httpx.ConnectError) as info:
        async with streams.aconnect_ws(wss_url + "/echo"):
            pass
    assert any(isinstance(exc, ssl.SSLCertVerificationError) for exc in causes(info.value))


async def test_given_client_without_the_ca_refuses_too(wss_url: str) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError) as info:
            async with streams.aconnect_ws(wss_url + "/echo", client):
                pass
        assert not client.is_closed
    assert any(isinstance(exc, ssl.SSLCertVerificationError) for exc in causes(info.value))


async def test_connect_error_message_names_the_certificate_failure(wss_url: str) -> None:
    # On trio, httpcore's own ConnectError has no message: the library restates the cause.
    with pytest.raises(httpx.ConnectError) as info:
        async with streams.aconnect_ws(wss_url + "/echo"):
            pass
    assert "certificate verify failed" in str(info.value).lower()
