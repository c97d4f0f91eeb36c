"""The demo's server: a made-up ticker feed, an echo and a flood, on 127.0.0.1.

``streams demo --serve`` runs it on port 8000 (the address the documentation's
examples use) until Ctrl-C; ``streams demo`` runs it in a child process on a
free port for the length of the demo. A small anyio + wsproto server, with
these endpoints:

- ``/feed[?rate=R&seconds=S]``: ticks (``{"sym", "px", "qty", "seq"}``), ``R``
  per second (10 by default; 0: as fast as TCP takes them), for ``S`` seconds
  (by default until the client leaves), then Close 1000. What the client sends
  is echoed.
- ``/echo``: every message sent back.
- ``/flood?n=N&size=S``: ``N`` text messages of ``S`` bytes (a zero-padded
  number then ``x`` filler) as fast as TCP takes them, then Close 1000.

Any other path is refused with HTTP 404.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import msgspec

from .protocol._wsproto import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    ConnectionState,
    ConnectionType,
    Event,
    Ping,
    ProtocolError,
    RejectConnection,
    Request,
    TextMessage,
    WSConnection,
)

__all__ = ["DEFAULT_PORT", "ENDPOINTS", "SYMBOLS", "Tick", "serve", "serve_main"]

DEFAULT_PORT = 8000
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "ASML")
ENDPOINTS = (
    ("/feed", "ticks, 10 a second (?rate=0: at full speed); echoes"),
    ("/echo", "sends every message back"),
    ("/flood?n=N&size=S", "N messages of S bytes, then closes"),
)


class Tick(msgspec.Struct, frozen=True):
    """One price update of the demo feed."""

    sym: str
    px: float
    qty: int
    seq: int


class _Ticks:
    """An endless, reproducible series of encoded ticks, as unmasked server frames."""

    def __init__(self) -> None:
        rng = random.Random(7)
        steps = [rng.gauss(0, 0.0005) for _ in range(4099)]
        drift = sum(steps) / len(steps)  # centred, so prices wander without a trend
        self._noise = [math.exp(step - drift) for step in steps]
        self._sizes = [rng.randrange(1, 500) for _ in range(4093)]
        self._prices = [100.0 + 50 * i for i in range(len(SYMBOLS))]
        self._encoder = msgspec.json.Encoder()
        self.seq = 0

    def frames(self, count: int) -> bytes:
        frames = []
        for _ in range(count):
            seq = self.seq
            index = seq % len(SYMBOLS)
            price = self._prices[index] = self._prices[index] * self._noise[seq % 4099]
            # Now and then a bad print (a zero price) that the demo's pipeline filters out.
            px = 0.0 if seq % 97 == 0 else round(price, 2)
            payload = self._encoder.encode(Tick(SYMBOLS[index], px, self._sizes[seq % 4093], seq))
            # Server frames are not masked: a 2-byte header for short payloads.
            frames.append(bytes((0x81, len(payload))) + payload)
            self.seq = seq + 1
        return b"".join(frames)


def flood_payload(i: int, size: int) -> str:
    """The i-th /flood message: a zero-padded number then filler, ``size`` bytes."""
    if size < 8:
        return "x" * size
    return f"{i:08d}" + "x" * (size - 8)


class _Peer:
    """One client connection: wsproto over an anyio stream, sends serialised."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self._lock = anyio.Lock()
        self._parts: list[str | bytes] = []

    async def send(self, data: bytes) -> None:
        async with self._lock:
            await self.stream.send(data)

    async def request(self) -> Request:
        while True:
            self.ws.receive_data(await self.stream.receive())
            for event in self.ws.events():
                if isinstance(event, Request):
                    return event

    async def events(self) -> Iterator[Event] | None:
        """The events of the next read (maybe none); ``None`` at the end of the connection.

        They are parsed as they are iterated: answering one before the next is
        parsed lets a message be echoed before a Close that came with it.
        """
        try:
            data = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return None
        self.ws.receive_data(data)
        return self.ws.events()

    async def echo_until_close(self) -> None:
        """Echo every message; answer pings and the client's Close."""
        while (events := await self.events()) is not None:
            for event in events:
                if isinstance(event, (TextMessage, BytesMessage)):
                    data = event.data
                    self._parts.append(bytes(data) if isinstance(data, bytearray) else data)
                    if event.message_finished:
                        parts, self._parts = self._parts, []
                        if isinstance(event, TextMessage):
                            message: Event = TextMessage("".join(parts))  # type: ignore[arg-type]
                        else:
                            message = BytesMessage(b"".join(parts))  # type: ignore[arg-type]
                        await self.send(self.ws.send(message))
                elif isinstance(event, Ping):
                    await self.send(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    await self.send(self.ws.send(event.response()))
                    return

    async def close(self, reason: str) -> None:
        """Send Close 1000 (unless the client closed first) and wait a little for the client's."""
        if self.ws.state is not ConnectionState.OPEN:
            return
        await self.send(self.ws.send(CloseConnection(1000, reason)))
        with anyio.move_on_after(1):
            while (events := await self.events()) is not None:
                if any(isinstance(event, CloseConnection) for event in events):
                    return


def _number(query: dict[str, list[str]], name: str, default: float) -> float:
    try:
        return float(query[name][0])
    except (KeyError, ValueError):
        return default


async def _feed(peer: _Peer, rate: float, seconds: float | None) -> None:
    ticks = _Ticks()
    deadline = math.inf if seconds is None else time.monotonic() + seconds
    async with anyio.create_task_group() as tg:

        async def echo() -> None:
            await peer.echo_until_close()
            tg.cancel_scope.cancel()

        tg.start_soon(echo)
        started = time.monotonic()
        while time.monotonic() < deadline:
            if rate > 0:
                due = started + ticks.seq / rate
                await anyio.sleep(max(0.0, due - time.monotonic()))
                await peer.send(ticks.frames(1))
            else:
                await peer.send(ticks.frames(2000))
        tg.cancel_scope.cancel()
    await peer.close("end of demo feed")


async def _flood(peer: _Peer, count: int, size: int) -> None:
    for i in range(count):
        await peer.send(peer.ws.send(TextMessage(flood_payload(i, size))))
    await peer.close("")


async def _serve_connection(stream: anyio.abc.ByteStream) -> None:
    peer = _Peer(stream)
    request = await peer.request()
    target = urlsplit(request.target)
    query = parse_qs(target.query)
    if target.path not in ("/feed", "/echo", "/flood"):
        await peer.send(peer.ws.send(RejectConnection(status_code=404)))
        return
    await peer.send(peer.ws.send(AcceptConnection()))
    if target.path == "/echo":
        await peer.echo_until_close()
    elif target.path == "/flood":
        await _flood(peer, int(_number(query, "n", 10)), int(_number(query, "size", 16)))
    else:
        seconds = _number(query, "seconds", math.inf)
        await _feed(peer, _number(query, "rate", 10), None if seconds == math.inf else seconds)


async def serve(listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
    """Serve the demo endpoints on ``listener`` until cancelled."""

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                await _serve_connection(stream)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                ProtocolError,
            ):
                pass  # the client left or broke the protocol: serve the others

    async with listener:
        await listener.serve(handle)


async def serve_main(port: int, *, describe: bool = True) -> None:
    """Serve on 127.0.0.1 until cancelled; print the URL first (and the endpoints if ``describe``).

    Args:
        port: the port; 0 for a free one.
        describe: list the endpoints after the URL.

    Raises:
        OSError: the port is taken.
    """
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    lines = [f"ws://127.0.0.1:{port}"]
    if describe:
        width = max(len(path) for path, _ in ENDPOINTS)
        lines += [f"  {path:<{width}}  {what}" for path, what in ENDPOINTS]
        lines.append("Serving until Ctrl-C.")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    await serve(listener)


if __name__ == "__main__":
    # The child process of ``streams demo``: a free port, reported on the first line.
    try:
        anyio.run(lambda: serve_main(0, describe=False))
    except KeyboardInterrupt:
        pass
