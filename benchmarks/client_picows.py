"""Benchmark client for picows (compiled, callback based): the fast asyncio reference.

Messages are turned into the same objects as the other clients produce (``str`` for text,
``bytes`` for binary, a dict or a ``Tick`` for JSON). Variants: ``asyncio``, ``uvloop``. On
wss:// the certificate is verified against ``--ca`` (``ssl_context=``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import msgspec
import picows
from _common import (
    FLOOD_QUEUE_SIZE,
    MIB,
    RssSampler,
    Tick,
    Window,
    blast_path,
    client_args,
    emit,
    idle_path,
    latency,
    open_idle,
    run_main,
    send_text,
    settle_rss,
    ssl_context,
    throughput,
)

args = client_args(("asyncio", "uvloop"))
SSL = ssl_context(args)
T = picows.WSMsgType
NO_DEFLATE = "picows does not implement permessage-deflate: no row in the idle scenario with it"


class Listener(picows.WSListener):  # type: ignore[misc]
    """Turns frames into messages and hands them to ``on_message``; tracks write flow control."""

    def __init__(self, on_message: Any) -> None:
        self.closed = asyncio.get_running_loop().create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.on_message = on_message

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        t = frame.msg_type
        if t == T.TEXT:
            self.on_message(frame.get_payload_as_utf8_text())
        elif t == T.BINARY:
            self.on_message(frame.get_payload_as_bytes())
        elif t == T.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            if not self.closed.done():
                self.closed.set_result(None)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


def ignore(msg: Any) -> None:
    pass


async def connect(path: str, on_message: Any = ignore) -> tuple[picows.WSTransport, Listener]:
    return await picows.ws_connect(  # type: ignore[no-any-return]
        lambda: Listener(on_message), args.url + path, ssl_context=SSL, max_frame_size=16 * MIB
    )


async def receive(path: str, n: int, handle: Any) -> Window:
    w = Window()
    count = 0

    def on_message(msg: Any) -> None:
        nonlocal count
        handle(msg)
        count += 1

    _transport, listener = await connect(path, on_message)
    w.start()
    await listener.closed
    w.stop()
    w.received = count
    return w


async def main() -> None:
    s, n, size = args.scenario, args.n, args.size
    if s == "recv_text":
        w = await receive(blast_path(n, size, "text"), n, lambda m: None)
        emit(args, "picows", throughput(s, n, size, w))
    elif s == "recv_json":
        decode = msgspec.json.decode
        w = await receive(blast_path(n, 0, "json"), n, decode)
        emit(args, "picows", throughput(s, n, size, w))
    elif s == "recv_struct":
        decode = msgspec.json.Decoder(Tick).decode
        w = await receive(blast_path(n, 0, "json_struct"), n, decode)
        emit(args, "picows", throughput(s, n, size, w))
    elif s == "recv_big":
        w = await receive(blast_path(n, size, "binary"), n, lambda m: None)
        emit(args, "picows", throughput(s, n, size, w))
    elif s == "echo":
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def on_message(msg: Any) -> None:
            fut.set_result(msg)

        transport, listener = await connect("/echo", on_message)
        payload = send_text(size).encode()
        samples = []
        w = Window()
        w.start()
        for _ in range(n):
            t0 = time.perf_counter_ns()
            transport.send(T.TEXT, payload)
            await fut
            samples.append(time.perf_counter_ns() - t0)
            fut = loop.create_future()
        w.stop()
        emit(args, "picows", latency(samples, w))
    elif s in ("send_text", "send_big"):
        done = asyncio.get_running_loop().create_future()
        transport, listener = await connect(f"/sink?n={n}", done.set_result)
        kind, payload = (
            (T.TEXT, send_text(size).encode()) if s == "send_text" else (T.BINARY, os.urandom(size))
        )
        w = Window()
        w.start()
        for _ in range(n):
            transport.send(kind, payload)
            if not listener.writable.is_set():
                await listener.writable.wait()
        reply = await done
        w.stop()
        assert reply == f"done {n}", reply
        emit(args, "picows", throughput(s, n, size, w))
    elif s == "idle_memory":
        path = idle_path(s)
        await open_idle(args, "picows", lambda: connect(path))
    elif s == "idle_deflate":
        emit(args, "picows", {"skip": "no permessage-deflate", "note": NO_DEFLATE})
    elif s == "flood_memory":
        # A careful picows user: a bounded queue, reading paused while it is full.
        t, _ = await connect("/echo")
        t.disconnect()
        await asyncio.sleep(0.1)
        before = settle_rss()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        raw: Any = None

        def on_message(msg: Any) -> None:
            queue.put_nowait(msg)
            if queue.qsize() >= FLOOD_QUEUE_SIZE and raw is not None:
                raw.pause_reading()

        transport, listener = await connect(blast_path(n, size, "binary"), on_message)
        raw = transport.underlying_transport
        got = 0
        with RssSampler() as rss:
            deadline = time.monotonic() + args.ms / 1000
            while time.monotonic() < deadline:
                await queue.get()
                if queue.qsize() < FLOOD_QUEUE_SIZE // 2 and not raw.is_reading():
                    raw.resume_reading()
                got += 1
                await asyncio.sleep(0.001)
        emit(args, "picows", {"value": (rss.peak - before) / MIB, "consumed": got})
    else:
        emit(args, "picows", {"skip": "not supported"})


def run() -> None:
    if args.variant == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


if __name__ == "__main__":
    run_main(run)
