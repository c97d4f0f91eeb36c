"""One classification of failures, read by the connection manager and the command line alike.

Pure: no event loop, no network.
"""

from __future__ import annotations

import ssl

import anyio
import httpx
import pytest

from streams import (
    WebsocketCause,
    WebsocketCauseKind,
    WebSocketDisconnect,
    WebSocketKeepaliveTimeout,
    WebSocketNetworkError,
    WebSocketUpgradeError,
)
from streams._classify import Failure, chain, classify, single_leaf
from streams._cli import _describe

URL = "ws://127.0.0.1:9/ws"


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


def _refused() -> BaseException:
    return _caused(httpx.ConnectError("[Errno 111] Connect call failed"), ConnectionRefusedError())


def _untrusted() -> BaseException:
    return _caused(httpx.ConnectError("handshake failed"), ssl.SSLCertVerificationError("bad"))


CASES: list[tuple[BaseException, Failure | None]] = [
    (WebSocketUpgradeError(httpx.Response(403)), Failure.HANDSHAKE_REJECTED),
    (WebSocketKeepaliveTimeout("no pong"), Failure.KEEPALIVE_TIMEOUT),
    (WebSocketDisconnect(1011, "keepalive ping timeout"), Failure.KEEPALIVE_TIMEOUT),
    (WebSocketDisconnect(1001, "going away"), Failure.CLOSED),
    (_untrusted(), Failure.TLS),
    (httpx.ConnectError("certificate verify failed"), Failure.TLS),
    (_refused(), Failure.REFUSED),
    (httpx.ConnectError("Connection refused"), Failure.REFUSED),
    (httpx.ConnectError("Name or service not known"), Failure.CONNECT),
    (httpx.ReadTimeout("slow"), Failure.TIMEOUT),
    (httpx.RemoteProtocolError("bad response"), Failure.NETWORK),
    (WebSocketNetworkError("reset"), Failure.NETWORK),
    (ConnectionResetError(), Failure.NETWORK),
    (anyio.EndOfStream(), Failure.NETWORK),
    (httpx.UnsupportedProtocol("ftp"), Failure.BAD_URL),
    (ValueError("a bug"), None),
    (ExceptionGroup("one", [WebSocketDisconnect(1000)]), Failure.CLOSED),
]


@pytest.mark.parametrize(("exc", "expected"), CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_classify(exc: BaseException, expected: Failure | None) -> None:
    assert classify(exc) is expected


def test_single_leaf_unwraps_nested_groups_of_one() -> None:
    leaf = KeyError("x")
    assert single_leaf(ExceptionGroup("a", [ExceptionGroup("b", [leaf])])) is leaf
    two = ExceptionGroup("a", [KeyError(), ValueError()])
    assert single_leaf(two) is two


def test_chain_follows_causes_and_stops_on_a_loop() -> None:
    first, second = KeyError(), ValueError()
    first.__cause__ = second
    second.__context__ = first
    assert list(chain(first)) == [first, second]


def test_the_manager_and_the_command_line_agree() -> None:
    untrusted, refused = _untrusted(), _refused()
    tls = WebsocketCause.from_exception(untrusted, connecting=True)
    assert tls is not None
    assert tls.kind is WebsocketCauseKind.TLS_ERROR
    assert _describe(untrusted, URL).startswith(f"TLS failure connecting to {URL}")
    connect = WebsocketCause.from_exception(refused, connecting=True)
    assert connect is not None
    assert connect.kind is WebsocketCauseKind.CONNECT_ERROR
    assert _describe(refused, URL) == f"connection refused: {URL}"
    assert WebsocketCause.from_exception(httpx.UnsupportedProtocol("ftp"), connecting=True) is None
    assert _describe(httpx.ReadTimeout("slow"), URL) == f"timed out connecting to {URL}"
