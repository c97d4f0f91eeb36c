"""WebSocket endpoints shared by every real server the tests run against.

One implementation of each endpoint, written against the small `Conn` interface; two adapters
bind it to a server: `StarletteConn` (ASGI, served by uvicorn and hypercorn through `make_app()`)
and `WebsocketsConn` (the `websockets` library's own server, through `websockets_handler` plus
the `websockets_process_request` / `websockets_select_subprotocol` hooks).

Endpoints (query parameters in brackets; every endpoint also takes ``id``, see `REGISTRY`):

/echo                        echo every text/binary message as received, until the client closes
/flood [n, size, kind]       send n messages of ``size`` bytes (`flood_payload`), then close 1000
/close [code, reason]        accept, then close at once with code/reason
/recv_then_close [code]      wait for one message, close with ``code`` and the message as reason
                             (UTF-8, truncated to 120 bytes)
/subprotocols                accept the first client-offered subprotocol that is in `SUBPROTOCOLS`,
                             send it back as text ("" if none), then echo
/headers                     send the request headers as a JSON object (lower-cased names),
                             then echo
/reject [status]             refuse the handshake with that HTTP status and body "rejected\n"
/json [n]                    send {"sym": "ABC", "px": 1.5, "seq": i} for i in range(n)
                             (default 3), then echo
/stats [of]                  send the JSON snapshot of ``REGISTRY[of]``, then close 1000
/market [feed]               an exchange-like quote feed (see `market`): after the client's
                             {"op": "subscribe", "symbols": [...]}, quotes {"seq", "sym", "px"};
                             10, then the rest once a snapshot was served; one is lost, one
                             repeated; the last symbol goes quiet halfway; {"op": "stop"} ends
                             it (close 1000)
/market/snapshot [feed]      send {"seq", "prices"}: the book of ``feed`` as it stands, then close

Observing the server side: pass ``?id=<unique>`` (see `new_id()`) and read ``REGISTRY[id]``,
a `ConnectionRecord` updated live by the handler (messages received, close code received, send
timings). Create the record before connecting (``REGISTRY.record(id)``) to wait on it without races.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse
from websockets.typing import Subprotocol

SUBPROTOCOLS = ("chat.v2", "chat.v1")
"""Subprotocols /subprotocols agrees to (the client's order of preference wins)."""

CLOSE_TIMEOUT = 2.0
"""How long a server waits for the client's answer to its close frame."""

REASON_LIMIT = 120
"""/recv_then_close truncates the echoed reason to this many UTF-8 bytes."""


# --------------------------------------------------------------------------- registry


@dataclasses.dataclass(eq=False)
class ConnectionRecord:
    """What one server-side connection saw. Written by the server thread, read by tests."""

    path: str = ""
    received: list[str | bytes] = dataclasses.field(default_factory=list)
    close_code: int | None = None
    """Close code received from the client (1005 if none given, 1006 if the TCP link dropped)."""
    close_reason: str | None = None
    subprotocol: str | None = None
    rejected_status: int | None = None
    sent: int = 0
    """Messages sent so far (updated live during /flood)."""
    send_seconds_total: float = 0.0
    send_seconds_max: float = 0.0
    """Longest completed send: how long the server was blocked by back-pressure."""
    send_started: float | None = None
    """`time.perf_counter()` when the send in progress started (None between sends)."""
    error: str | None = None
    """repr() of an unexpected exception in the handler, if any."""
    finished: threading.Event = dataclasses.field(default_factory=threading.Event)
    """Set when the handler returned (the connection is over on the server side)."""

    @property
    def blocked_for(self) -> float:
        """Seconds the send in progress has been waiting so far (0.0 if none)."""
        started = self.send_started
        return 0.0 if started is None else time.perf_counter() - started

    async def wait_finished(self, timeout: float = 5.0) -> None:
        """Wait (without blocking the event loop) until the handler has returned.

        Raises:
            TimeoutError: if it did not finish within ``timeout`` seconds.
        """
        if not await anyio.to_thread.run_sync(self.finished.wait, timeout):
            raise TimeoutError(f"server handler for {self.path or '?'} did not finish")

    def snapshot(self) -> dict[str, Any]:
        """JSON-able summary (messages are counted, not copied)."""
        return {
            "path": self.path,
            "received": len(self.received),
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "subprotocol": self.subprotocol,
            "rejected_status": self.rejected_status,
            "sent": self.sent,
            "send_seconds_total": self.send_seconds_total,
            "send_seconds_max": self.send_seconds_max,
            "blocked_for": self.blocked_for,
            "error": self.error,
            "finished": self.finished.is_set(),
        }


class Registry:
    """Thread-safe map ``id -> ConnectionRecord``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, ConnectionRecord] = {}

    def record(self, conn_id: str) -> ConnectionRecord:
        """The record for ``conn_id``, created if needed (tests and handlers both may)."""
        with self._lock:
            return self._records.setdefault(conn_id, ConnectionRecord())

    def __getitem__(self, conn_id: str) -> ConnectionRecord:
        with self._lock:
            return self._records[conn_id]

    def __contains__(self, conn_id: object) -> bool:
        with self._lock:
            return conn_id in self._records

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


REGISTRY = Registry()


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Poll ``predicate`` (server-thread state, which no event loop can wait on) until true.

    Raises:
        TimeoutError: still false after ``timeout`` seconds.
    """
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - the state lives in another thread
            await anyio.sleep(0.005)


def new_id() -> str:
    """A unique connection id for ``?id=``."""
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- the adapter interface


class PeerGone(Exception):
    """The client went away while the handler was sending or receiving."""


class Conn(Protocol):
    """What a handler needs from a server connection."""

    path: str
    query: dict[str, str]
    headers: list[tuple[str, str]]
    """Request headers, names lower-cased, in order."""
    offered_subprotocols: list[str]
    close_code: int | None
    close_reason: str | None

    async def accept(self, subprotocol: str | None) -> None: ...

    async def reject(self, status: int) -> None: ...

    async def receive(self) -> str | bytes | None:
        """Next message, or None once the client closed (close_code/close_reason then set)."""
        ...

    async def send(self, message: str | bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


def choose_subprotocol(offered: Iterable[str]) -> str | None:
    """The first of the client's offer that the server supports."""
    return next((p for p in offered if p in SUBPROTOCOLS), None)


def split_header_list(values: Iterable[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def flood_payload(i: int, size: int, kind: str = "text") -> str | bytes:
    """The i-th /flood message: zero-padded number then filler, exactly ``size`` bytes.

    If ``size`` is under 8 the numbering is dropped (plain filler).
    """
    if kind == "binary":
        if size < 8:
            return b"\x00" * size
        return i.to_bytes(8, "big") + b"\xff" * (size - 8)
    if size < 8:
        return "x" * size
    return f"{i:08d}" + "x" * (size - 8)


def json_payload(i: int) -> dict[str, Any]:
    """The i-th /json message (sent as compact JSON text)."""
    return {"sym": "ABC", "px": 1.5, "seq": i}


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


# --------------------------------------------------------------------------- endpoints


async def _receive(conn: Conn, rec: ConnectionRecord) -> str | bytes | None:
    message = await conn.receive()
    if message is None:
        rec.close_code, rec.close_reason = conn.close_code, conn.close_reason
    else:
        rec.received.append(message)
    return message


async def _send(conn: Conn, rec: ConnectionRecord, message: str | bytes) -> None:
    rec.send_started = start = time.perf_counter()
    try:
        await conn.send(message)
    finally:
        rec.send_started = None
    elapsed = time.perf_counter() - start
    rec.sent += 1
    rec.send_seconds_total += elapsed
    rec.send_seconds_max = max(rec.send_seconds_max, elapsed)


async def _echo_until_closed(conn: Conn, rec: ConnectionRecord) -> None:
    while (message := await _receive(conn, rec)) is not None:
        await _send(conn, rec, message)


async def echo(conn: Conn, rec: ConnectionRecord) -> None:
    await conn.accept(None)
    await _echo_until_closed(conn, rec)


async def flood(conn: Conn, rec: ConnectionRecord) -> None:
    n, size = int(conn.query.get("n", "10")), int(conn.query.get("size", "16"))
    kind = conn.query.get("kind", "text")
    await conn.accept(None)
    for i in range(n):
        await _send(conn, rec, flood_payload(i, size, kind))
    await conn.close(1000, "")


async def close(conn: Conn, rec: ConnectionRecord) -> None:
    await conn.accept(None)
    await conn.close(int(conn.query.get("code", "1000")), conn.query.get("reason", ""))


async def recv_then_close(conn: Conn, rec: ConnectionRecord) -> None:
    await conn.accept(None)
    message = await _receive(conn, rec)
    if message is None:
        return
    text = message if isinstance(message, str) else message.decode(errors="replace")
    await conn.close(int(conn.query.get("code", "1000")), _truncate_utf8(text, REASON_LIMIT))


async def subprotocols(conn: Conn, rec: ConnectionRecord) -> None:
    rec.subprotocol = choose_subprotocol(conn.offered_subprotocols)
    await conn.accept(rec.subprotocol)
    await _send(conn, rec, rec.subprotocol or "")
    await _echo_until_closed(conn, rec)


async def headers(conn: Conn, rec: ConnectionRecord) -> None:
    await conn.accept(None)
    seen: dict[str, str] = {}
    for name, value in conn.headers:
        seen[name] = f"{seen[name]}, {value}" if name in seen else value
    await _send(conn, rec, json.dumps(seen))
    await _echo_until_closed(conn, rec)


async def reject(conn: Conn, rec: ConnectionRecord) -> None:
    rec.rejected_status = reject_status(conn.query)
    await conn.reject(rec.rejected_status)


def reject_status(query: Mapping[str, str]) -> int:
    return int(query.get("status", "403"))


async def json_(conn: Conn, rec: ConnectionRecord) -> None:
    await conn.accept(None)
    for i in range(int(conn.query.get("n", "3"))):
        await _send(conn, rec, json.dumps(json_payload(i), separators=(",", ":")))
    await _echo_until_closed(conn, rec)


async def stats(conn: Conn, rec: ConnectionRecord) -> None:
    await conn.accept(None)
    of = conn.query.get("of", "")
    snapshot = REGISTRY[of].snapshot() if of in REGISTRY else None
    await _send(conn, rec, json.dumps(snapshot))
    await conn.close(1000, "")


@dataclasses.dataclass
class Market:
    """The book of one /market feed: the last price per symbol, and the last quote number."""

    seq: int = 0
    prices: dict[str, float] = dataclasses.field(default_factory=dict)
    snapshot_served: anyio.Event = dataclasses.field(default_factory=anyio.Event)

    def quote(self, sym: str) -> str:
        """Publish the next quote of ``sym``: update the book, return the quote as JSON."""
        self.seq += 1
        px = round(100.0 + self.seq * 0.25, 2)
        self.prices[sym] = px
        return json.dumps({"seq": self.seq, "sym": sym, "px": px})


MARKETS: dict[str, Market] = {}
"""The /market books by ``feed`` name (each client picks its own; the server thread owns them)."""

MARKET_LOST = 120
MARKET_REPEATED = 60


async def market(conn: Conn, rec: ConnectionRecord) -> None:
    """/market: 10 quotes, then (once a snapshot of the book was served) bursts of quotes for
    every symbol (4 bursts of 50, 20 ms apart), quote `MARKET_LOST` lost and `MARKET_REPEATED`
    sent twice; then every symbol but the last, one quote every 10 ms, until the client sends
    {"op": "stop"}; then close 1000."""
    await conn.accept(None)
    book = MARKETS.setdefault(conn.query.get("feed", ""), Market())
    request = await _receive(conn, rec)
    if request is None:
        return
    symbols: list[str] = json.loads(request)["symbols"]
    stop = anyio.Event()

    async def listen() -> None:
        while (message := await _receive(conn, rec)) is not None:
            if json.loads(message).get("op") == "stop":
                break
        stop.set()

    async def publish(sym: str) -> None:
        quote = book.quote(sym)
        if book.seq != MARKET_LOST:
            for _ in range(2 if book.seq == MARKET_REPEATED else 1):
                await _send(conn, rec, quote)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        for i in range(10):
            await publish(symbols[i % len(symbols)])
        await book.snapshot_served.wait()
        for _ in range(4):
            for i in range(50):
                await publish(symbols[i % len(symbols)])
            await anyio.sleep(0.02)
        i = 0
        while not stop.is_set():
            await publish(symbols[i % (len(symbols) - 1)])
            i += 1
            with anyio.move_on_after(0.01):
                await stop.wait()
    await conn.close(1000, "")


async def market_snapshot(conn: Conn, rec: ConnectionRecord) -> None:
    await conn.accept(None)
    book = MARKETS.setdefault(conn.query.get("feed", ""), Market())
    await _send(conn, rec, json.dumps({"seq": book.seq, "prices": book.prices}))
    book.snapshot_served.set()
    await conn.close(1000, "")


Handler = Callable[[Conn, ConnectionRecord], Awaitable[None]]

ENDPOINTS: dict[str, Handler] = {
    "/echo": echo,
    "/flood": flood,
    "/close": close,
    "/recv_then_close": recv_then_close,
    "/subprotocols": subprotocols,
    "/headers": headers,
    "/reject": reject,
    "/json": json_,
    "/stats": stats,
    "/market": market,
    "/market/snapshot": market_snapshot,
}


async def handle(conn: Conn) -> None:
    """Run the endpoint for ``conn.path``; record into ``REGISTRY[id]`` if ``?id=`` is given."""
    conn_id = conn.query.get("id")
    rec = REGISTRY.record(conn_id) if conn_id else ConnectionRecord()
    rec.path = conn.path
    try:
        await ENDPOINTS[conn.path](conn, rec)
    except PeerGone:
        pass
    except Exception as exc:
        rec.error = repr(exc)
        raise
    finally:
        if rec.close_code is None:
            rec.close_code, rec.close_reason = conn.close_code, conn.close_reason
        rec.finished.set()


# --------------------------------------------------------------------------- ASGI (Starlette)


class StarletteConn:
    """`Conn` over a Starlette WebSocket (served by uvicorn and hypercorn)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.path = ws.url.path
        self.query = dict(ws.query_params)
        self.headers = [
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in ws.headers.raw
        ]
        self.offered_subprotocols = list(ws.scope.get("subprotocols", []))
        self.close_code: int | None = None
        self.close_reason: str | None = None

    async def accept(self, subprotocol: str | None) -> None:
        await self.ws.accept(subprotocol=subprotocol)

    async def reject(self, status: int) -> None:
        if "websocket.http.response" in self.ws.scope.get("extensions", {}):
            await self.ws.send_denial_response(PlainTextResponse("rejected\n", status_code=status))
        else:  # the server answers 403 to a close before accept
            await self.ws.close(code=1008)

    async def receive(self) -> str | bytes | None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            self.close_code = message.get("code", 1005)
            self.close_reason = message.get("reason") or ""
            return None
        text: str | None = message.get("text")
        return text if text is not None else message["bytes"]

    async def send(self, message: str | bytes) -> None:
        key = "text" if isinstance(message, str) else "bytes"
        try:
            await self.ws.send({"type": "websocket.send", key: message})
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:
            self.close_code = getattr(exc, "code", 1006)
            self.close_reason = ""
            raise PeerGone from exc

    async def close(self, code: int, reason: str) -> None:
        try:
            await self.ws.close(code=code, reason=reason)
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:
            raise PeerGone from exc
        # Wait (bounded) for the disconnect, to record the client's answer.
        with anyio.move_on_after(CLOSE_TIMEOUT):
            while self.close_code is None and await self.receive() is not None:
                pass


async def _starlette_endpoint(ws: WebSocket) -> None:
    await handle(StarletteConn(ws))


async def _ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ready\n")


def make_app() -> Starlette:
    """The ASGI app: every endpoint as a WebSocket route, and ``GET /ready`` for start-up."""
    routes: list[Route | WebSocketRoute] = [Route("/ready", _ready)]
    routes += [WebSocketRoute(path, _starlette_endpoint) for path in ENDPOINTS]
    return Starlette(routes=routes)


# --------------------------------------------------------------------------- the websockets server


def _split_path(raw: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(raw)
    return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))


class WebsocketsConn:
    """`Conn` over a `websockets` ServerConnection (the handshake is already done)."""

    def __init__(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.ws = ws
        self.path, self.query = _split_path(ws.request.path)
        self.headers = [(k.lower(), v) for k, v in ws.request.headers.raw_items()]
        self.offered_subprotocols = _offered(ws.request.headers)
        self.close_code: int | None = None
        self.close_reason: str | None = None

    async def accept(self, subprotocol: str | None) -> None:
        # Accepted during the handshake by `websockets_select_subprotocol`, same choice.
        assert self.ws.subprotocol == subprotocol

    async def reject(self, status: int) -> None:  # pragma: no cover - done in process_request
        raise AssertionError("rejected in websockets_process_request")

    def _closed(self, exc: ConnectionClosed) -> None:
        rcvd = exc.rcvd
        self.close_code = rcvd.code if rcvd is not None else 1006
        self.close_reason = rcvd.reason if rcvd is not None else ""

    async def receive(self) -> str | bytes | None:
        try:
            return await self.ws.recv()
        except ConnectionClosed as exc:
            self._closed(exc)
            return None

    async def send(self, message: str | bytes) -> None:
        try:
            await self.ws.send(message)
        except ConnectionClosed as exc:
            self._closed(exc)
            raise PeerGone from exc

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)  # waits for the client's answer (close_timeout)
        rcvd = self.ws.protocol.close_rcvd
        self.close_code = rcvd.code if rcvd is not None else 1006
        self.close_reason = rcvd.reason if rcvd is not None else ""


def _offered(headers: Headers) -> list[str]:
    return split_header_list(headers.get_all("Sec-WebSocket-Protocol"))


async def websockets_handler(ws: ServerConnection) -> None:
    """Connection handler for `websockets.asyncio.server.serve`."""
    await handle(WebsocketsConn(ws))


def websockets_process_request(ws: ServerConnection, request: WsRequest) -> WsResponse | None:
    """``process_request`` hook: answers ``GET /ready``, /reject and unknown paths over HTTP."""
    path, query = _split_path(request.path)
    if path == "/ready":
        return ws.respond(HTTPStatus.OK, "ready\n")
    if path == "/reject":
        status = reject_status(query)
        if query.get("id"):
            rec = REGISTRY.record(query["id"])
            rec.path, rec.rejected_status = path, status
            rec.finished.set()
        return ws.respond(status, "rejected\n")
    if path not in ENDPOINTS:
        return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
    return None


def websockets_select_subprotocol(
    ws: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """``select_subprotocol`` hook: only /subprotocols picks one."""
    assert ws.request is not None
    path, _ = _split_path(ws.request.path)
    chosen = choose_subprotocol(offered) if path == "/subprotocols" else None
    return None if chosen is None else Subprotocol(chosen)
