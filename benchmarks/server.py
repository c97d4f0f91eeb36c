"""Benchmark WebSocket server, run in its own process so that it is not the bottleneck.

It uses picows (compiled) on 127.0.0.1, with uvloop when installed. The port is chosen by the
system and printed on the first line of standard output as ``PORT <n>``. With ``--tls PEM`` (a
file holding the server's private key and certificate chain) it also listens for wss:// on a
second port, printed on the next line as ``TLS_PORT <n>``. The scenario is chosen by the
request path (the same on both ports):

- ``/blast?n=N&size=S&kind=text|binary|json|json_struct``: send N messages as fast as the
  socket accepts them (frames pre-built before the handshake answer, written in large chunks
  with write flow control), then a close frame with code 1000.
- ``/echo``: send every message back.
- ``/sink?n=N``: receive N messages, then send one text message ``done N``.
- ``/idle``: send nothing (the idle-session scenarios); a client's permessage-deflate offer is
  declined. ``/idle?deflate=1`` accepts the first offer as made (no data frame ever flows).

Run alone: ``python benchmarks/server.py [--tls PEM]`` and stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import struct
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import picows
from _common import json_payload, raise_open_files, text_payload

CHUNK = 256 * 1024
CLOSE_1000 = b"\x88\x02\x03\xe8"


def frame_header(opcode: int, length: int) -> bytes:
    """Return the header of an unmasked, final server frame."""
    first = 0x80 | opcode
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def frame(opcode: int, payload: bytes) -> bytes:
    return frame_header(opcode, len(payload)) + payload


_cache: dict[tuple[int, int, str], list[bytes]] = {}


def build_blast(n: int, size: int, kind: str) -> list[bytes]:
    """Return the chunks to write for a blast: every frame, then the close frame."""
    key = (n, size, kind)
    chunks = _cache.get(key)
    if chunks is not None:
        return chunks
    chunks = []
    if kind == "binary":
        # Same payload every time: share one frame (or one chunk of small frames).
        one = frame(0x2, os.urandom(size))
        if len(one) >= CHUNK:
            chunks = [one] * n
        else:
            per = max(1, CHUNK // len(one))
            full, rest = divmod(n, per)
            block = one * per
            chunks = [block] * full + ([one * rest] if rest else [])
    else:
        buf = bytearray()
        for seq in range(n):
            payload = (
                json_payload(seq) if kind in ("json", "json_struct") else text_payload(seq, size)
            )
            buf += frame(0x1, payload)
            if len(buf) >= CHUNK:
                chunks.append(bytes(buf))
                buf.clear()
        if buf:
            chunks.append(bytes(buf))
    chunks.append(CLOSE_1000)
    if len(_cache) > 16:
        _cache.clear()
    _cache[key] = chunks
    return chunks


class _Base(picows.WSListener):  # type: ignore[misc]
    transport: Any = None

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport

    def close_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> bool:
        if frame.msg_type == picows.WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send_close(picows.WSCloseCode.OK)
            transport.disconnect()
            return True
        if frame.msg_type == picows.WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
            return True
        return False

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class Blast(_Base):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.i = 0
        self.paused = False

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        self.raw.set_write_buffer_limits(high=4 * CHUNK, low=CHUNK)
        self.pump()

    def pump(self) -> None:
        chunks, raw = self.chunks, self.raw
        while not self.paused and self.i < len(chunks):
            if raw.is_closing():
                return
            raw.write(chunks[self.i])
            self.i += 1

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.CLOSE:
            # Our close frame was written raw, so picows does not know about it.
            transport.disconnect()
            return
        self.close_frame(transport, frame)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()


class Echo(_Base):
    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if self.close_frame(transport, frame):
            return
        transport.send(frame.msg_type, frame.get_payload_as_bytes(), frame.fin)


class Sink(_Base):
    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if self.close_frame(transport, frame):
            return
        if frame.fin:
            self.count += 1
            if self.count == self.n:
                transport.send(picows.WSMsgType.TEXT, f"done {self.n}".encode())


class Idle(_Base):
    """Sends nothing: answers pings and the closing handshake only."""

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        self.close_frame(transport, frame)


def accept_deflate(offers: str) -> str | None:
    """Return the ``Sec-WebSocket-Extensions`` answer accepting the first permessage-deflate
    offer as made (RFC 7692), or None if there is none.

    Parameters with a value are kept, as are the no-context-takeover flags; a bare
    ``client_max_window_bits`` (the client lets the server choose) is left out, so the client
    keeps its 15-bit window. picows does not implement the extension: this is only for ``/idle``,
    where no data frame ever flows.
    """
    for offer in offers.split(","):
        name, *params = (p.strip() for p in offer.split(";"))
        if name != "permessage-deflate":
            continue
        kept = [p for p in params if "=" in p or p.endswith("no_context_takeover")]
        return "; ".join([name, *kept])
    return None


def route(
    request: picows.WSUpgradeRequest,
) -> picows.WSListener | picows.WSUpgradeResponseWithListener | None:
    url = urlsplit(request.path.decode())
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    if url.path == "/blast":
        return Blast(
            build_blast(int(q.get("n", "1000")), int(q.get("size", "64")), q.get("kind", "text"))
        )
    if url.path == "/echo":
        return Echo()
    if url.path == "/sink":
        return Sink(int(q.get("n", "1")))
    if url.path == "/idle":
        answer = accept_deflate(", ".join(request.headers.getall("Sec-WebSocket-Extensions", [])))
        if q.get("deflate") != "1" or answer is None:
            return Idle()  # compression declined: the answer names no extension
        response = picows.WSUpgradeResponse.create_101_response(
            extra_headers={"Sec-WebSocket-Extensions": answer}
        )
        return picows.WSUpgradeResponseWithListener(response, Idle())
    return None


async def listen(ssl_context: ssl.SSLContext | None) -> asyncio.Server:
    return await picows.ws_create_server(
        route,
        "127.0.0.1",
        0,
        max_frame_size=64 * 1024 * 1024,
        websocket_handshake_timeout=30,
        backlog=2048,
        ssl=ssl_context,
    )


def server_ssl_context(pem: str) -> ssl.SSLContext:
    """Return the server-side context of the wss:// listener (key and chain in one PEM file)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pem)
    return ctx


async def main(tls: str | None) -> None:
    servers = [await listen(None)]
    sys.stdout.write(f"PORT {servers[0].sockets[0].getsockname()[1]}\n")
    if tls is not None:
        servers.append(await listen(server_ssl_context(tls)))
        sys.stdout.write(f"TLS_PORT {servers[1].sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The benchmark server (picows).")
    parser.add_argument(
        "--tls", metavar="PEM", help="also serve wss:// with this private key and certificate chain"
    )
    tls = parser.parse_args().tls
    raise_open_files()  # one socket per session: 10,000 in the full idle scenarios
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(tls))
    else:
        uvloop.run(main(tls))
