"""Shared fixtures: the anyio backends and real WebSocket servers on 127.0.0.1.

Each server runs once per session in a daemon thread with its own asyncio loop, on a socket bound
to port 0 by the fixture (so the port is known before the server starts). Start-up waits for a real
HTTP answer to ``GET /ready``; teardown stops the server and joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import hypercorn.asyncio
import hypercorn.config
import pytest
import uvicorn
import uvicorn.config
import websockets.asyncio.server

# The project root on sys.path: `streams` and the helpers (`tests.servers`, `tests.peers`) import
# from the working tree without installing the package. Import helpers as `tests.servers` (one
# module object: `servers.REGISTRY` is shared with the server threads).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests import servers  # noqa: E402

# A test run started as a background job inherits SIGINT ignored, and so would
# every process it starts: the Ctrl-C tests need it handled, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

HOST = "127.0.0.1"
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

# uvicorn's sans-I/O websockets protocol (uvicorn >= 0.35) replaces the deprecated legacy one.
UVICORN_WEBSOCKETS = (
    "websockets-sansio" if "websockets-sansio" in uvicorn.config.WS_PROTOCOLS else "websockets"
)

SERVER_NAMES = ("uvicorn-websockets", "uvicorn-wsproto", "hypercorn", "websockets")


@pytest.fixture(params=["asyncio", "trio"], ids=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --------------------------------------------------------------------------- server threads

ServeFn = Callable[[socket.socket, asyncio.Event], Coroutine[Any, Any, None]]


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(128)
    return sock


def _wait_ready(port: int, thread: threading.Thread) -> None:
    """Block until the server answers ``GET /ready`` (the backlog holds the probe until then)."""
    with socket.create_connection((HOST, port), timeout=START_TIMEOUT) as probe:
        probe.sendall(
            f"GET /ready HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n" not in head:
            chunk = probe.recv(4096)
            if not chunk:
                break
            head += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        alive = "running" if thread.is_alive() else "dead"
        raise RuntimeError(f"server on port {port} not ready ({alive}): {head[:80]!r}")


@contextlib.contextmanager
def _run_server(name: str, serve: ServeFn) -> Iterator[str]:
    """Run ``serve(sock, stop)`` in a daemon thread with its own loop; yield ``ws://host:port``."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve(sock, stop))
        except BaseException as exc:  # reported to the test session by the fixture
            failure.append(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=target, name=f"server-{name}", daemon=True)
    thread.start()
    try:
        _wait_ready(port, thread)
        yield f"ws://{HOST}:{port}"
    finally:
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT)
        sock.close()
    if thread.is_alive():
        raise RuntimeError(f"{name} server did not stop within {STOP_TIMEOUT} s")
    if failure:
        raise RuntimeError(f"{name} server failed") from failure[0]


class _Uvicorn(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # older uvicorn; never from a thread anyway
        pass


def _uvicorn(ws: str) -> ServeFn:
    async def serve(sock: socket.socket, stop: asyncio.Event) -> None:
        config = uvicorn.Config(
            servers.make_app(),
            ws=ws,
            ws_max_size=MAX_MESSAGE_SIZE,
            ws_ping_interval=None,
            ws_ping_timeout=None,
            ws_per_message_deflate=False,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=int(servers.CLOSE_TIMEOUT),
        )
        server = _Uvicorn(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await stop.wait()
        server.should_exit = True
        await task

    return serve


async def _hypercorn(sock: socket.socket, stop: asyncio.Event) -> None:
    config = hypercorn.config.Config()
    # Hypercorn adopts (and later closes) the descriptor: give it a duplicate.
    config.bind = [f"fd://{sock.dup().detach()}"]
    config.loglevel = "WARNING"
    config.accesslog = None
    config.graceful_timeout = servers.CLOSE_TIMEOUT
    config.websocket_max_message_size = MAX_MESSAGE_SIZE
    config.websocket_ping_interval = None
    app = servers.make_app()
    await hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


async def _websockets(sock: socket.socket, stop: asyncio.Event) -> None:
    async with websockets.asyncio.server.serve(
        servers.websockets_handler,
        sock=sock,
        process_request=servers.websockets_process_request,
        select_subprotocol=servers.websockets_select_subprotocol,
        ping_interval=None,
        compression=None,
        max_size=MAX_MESSAGE_SIZE,
        open_timeout=servers.CLOSE_TIMEOUT,
        close_timeout=servers.CLOSE_TIMEOUT,
        logger=logging.getLogger("tests.websockets_server"),
    ):
        await stop.wait()


@pytest.fixture(scope="session")
def uvicorn_websockets_url() -> Iterator[str]:
    with _run_server("uvicorn-websockets", _uvicorn(UVICORN_WEBSOCKETS)) as url:
        yield url


@pytest.fixture(scope="session")
def uvicorn_wsproto_url() -> Iterator[str]:
    with _run_server("uvicorn-wsproto", _uvicorn("wsproto")) as url:
        yield url


@pytest.fixture(scope="session")
def hypercorn_url() -> Iterator[str]:
    with _run_server("hypercorn", _hypercorn) as url:
        yield url


@pytest.fixture(scope="session")
def websockets_url() -> Iterator[str]:
    with _run_server("websockets", _websockets) as url:
        yield url


@pytest.fixture(params=SERVER_NAMES, ids=SERVER_NAMES)
def server_name(request: pytest.FixtureRequest) -> str:
    """Which real server `server_url` points at (tests may ask for both)."""
    return str(request.param)


@pytest.fixture
def server_url(request: pytest.FixtureRequest, server_name: str) -> str:
    """Base URL of each real server in turn (ids as in `SERVER_NAMES`)."""
    return str(request.getfixturevalue(server_name.replace("-", "_") + "_url"))


@pytest.fixture
def echo_url(uvicorn_websockets_url: str) -> str:
    return uvicorn_websockets_url + "/echo"
