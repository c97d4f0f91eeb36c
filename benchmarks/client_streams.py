"""Benchmark client for streams, through its public API only.

Variants: ``asyncio``, ``trio`` (the same code run by ``trio.run``), ``uvloop`` (asyncio on
uvloop, when installed), ``sync`` (the blocking API) and ``each`` (asyncio, a client for each
session in the idle scenarios). Keepalive pings are off, as for every
other client. ``recv_struct`` uses the typed stream ``ws.json(Tick)``.

Every session goes through a client made here, the way ``aconnect_ws(url)`` makes its own by
default: ``httpx.AsyncClient(transport=streams.AsyncHTTPTransport(verify=...))`` (on trio that
transport uses httpcore's trio backend), and ``httpx.Client(verify=...)`` for the sync API. On
wss:// ``verify`` is the context that trusts ``--ca``. The memory scenarios share one client
between sessions (``httpx.Limits(max_connections=None)``), except in the ``each`` variant.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import anyio
import httpx
import msgspec
from _common import (
    FLOOD_QUEUE_SIZE,
    IDLE,
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

import streams

args = client_args(("asyncio", "trio", "uvloop", "sync", "each"))
MAX = 16 * MIB
OPTIONS: dict[str, Any] = {
    "max_message_size_bytes": MAX,
    "keepalive_ping_interval_seconds": None,
}
NOTE: dict[str, str] = {}
KIND = {
    "recv_text": "text",
    "recv_json": "json",
    "recv_struct": "json_struct",
    "recv_big": "binary",
}


SSL = ssl_context(args)
VERIFY = SSL if SSL is not None else True


def new_client(limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=streams.AsyncHTTPTransport(verify=VERIFY, limits=limits))


def shared_client() -> httpx.AsyncClient:
    return new_client(httpx.Limits(max_connections=None, max_keepalive_connections=None))


def new_sync_client() -> httpx.Client:
    return httpx.Client(verify=VERIFY, trust_env=False)


async def main() -> None:
    s, n, size = args.scenario, args.n, args.size
    url = args.url
    if s == "recv_struct" and hasattr(streams.AsyncWebSocketSession, "json"):
        async with streams.aconnect_ws(
            url + blast_path(n, size, KIND[s]), new_client(), **OPTIONS
        ) as ws:
            w = Window()
            w.start()
            count = 0
            async for _tick in ws.json(Tick):
                count += 1
            w.stop()
        w.received = count
        emit(args, "streams", throughput(s, n, size, w))
    elif s in KIND:
        decode: Any = None
        if s == "recv_json":
            decode = msgspec.json.decode
        elif s == "recv_struct":
            # No typed stream in this version: decode by hand, like the other clients.
            decode = msgspec.json.Decoder(Tick).decode
            NOTE["note"] = "streams recv_struct: no ws.json(T) yet, decoded with msgspec by hand"
        async with streams.aconnect_ws(
            url + blast_path(n, size, KIND[s]), new_client(), **OPTIONS
        ) as ws:
            w = Window()
            w.start()
            count = 0
            if decode is None:
                async for _msg in ws:
                    count += 1
            else:
                async for msg in ws:
                    decode(msg)
                    count += 1
            w.stop()
        w.received = count
        emit(args, "streams", {**throughput(s, n, size, w), **NOTE})
    elif s == "echo":
        async with streams.aconnect_ws(url + "/echo", new_client(), **OPTIONS) as ws:
            text = send_text(size)
            samples = []
            w = Window()
            w.start()
            for _ in range(n):
                t0 = time.perf_counter_ns()
                await ws.send_text(text)
                await ws.receive_text()
                samples.append(time.perf_counter_ns() - t0)
            w.stop()
        emit(args, "streams", latency(samples, w))
    elif s in ("send_text", "send_big"):
        async with streams.aconnect_ws(url + f"/sink?n={n}", new_client(), **OPTIONS) as ws:
            w = Window()
            w.start()
            if s == "send_text":
                text = send_text(size)
                for _ in range(n):
                    await ws.send_text(text)
            else:
                data = os.urandom(size)
                for _ in range(n):
                    await ws.send_bytes(data)
            reply = await ws.receive_text()
            w.stop()
        assert reply == f"done {n}", reply
        emit(args, "streams", throughput(s, n, size, w))
    elif s in IDLE:
        # permessage-deflate is offered at its defaults (what OPTIONS leaves alone).
        path = url + idle_path(s)
        shared = shared_client() if args.variant != "each" else None

        async def open_one() -> AsyncExitStack:
            # Entered and never exited: the process leaves with the sessions open.
            stack = AsyncExitStack()
            client = shared or await stack.enter_async_context(new_client())
            await stack.enter_async_context(streams.aconnect_ws(path, client, **OPTIONS))
            return stack

        await open_idle(args, "streams", open_one)
    elif s == "flood_memory":
        client = shared_client()
        async with streams.aconnect_ws(url + "/echo", client, **OPTIONS):
            pass
        before = settle_rss()
        stack = AsyncExitStack()  # kept open: the process leaves without closing
        ws = await stack.enter_async_context(
            streams.aconnect_ws(
                url + blast_path(n, size, "binary"),
                client,
                max_message_size_bytes=MAX,
                queue_size=FLOOD_QUEUE_SIZE,
                keepalive_ping_interval_seconds=None,
            )
        )
        got = 0
        with RssSampler() as rss:
            deadline = time.monotonic() + args.ms / 1000
            while time.monotonic() < deadline:
                await ws.receive_bytes()
                got += 1
                await anyio.sleep(0.001)
        emit(args, "streams", {"value": (rss.peak - before) / MIB, "consumed": got})


def sync_main() -> None:
    connect = getattr(streams, "connect_ws", None)
    if connect is None:
        emit(args, "streams", {"skip": "no sync API"})
        return
    s, n, size = args.scenario, args.n, args.size
    url = args.url
    if s == "recv_struct":
        with connect(url + blast_path(n, size, KIND[s]), new_sync_client(), **OPTIONS) as ws:
            w = Window()
            w.start()
            count = 0
            for _tick in ws.json(Tick):
                count += 1
            w.stop()
        w.received = count
        emit(args, "streams", throughput(s, n, size, w))
    elif s in KIND:
        decode = msgspec.json.decode if s == "recv_json" else None
        with connect(url + blast_path(n, size, KIND[s]), new_sync_client(), **OPTIONS) as ws:
            w = Window()
            w.start()
            count = 0
            if decode is None:
                for _msg in ws:
                    count += 1
            else:
                for msg in ws:
                    decode(msg)
                    count += 1
            w.stop()
        w.received = count
        emit(args, "streams", throughput(s, n, size, w))
    elif s == "echo":
        with connect(url + "/echo", new_sync_client(), **OPTIONS) as ws:
            text = send_text(size)
            samples = []
            w = Window()
            w.start()
            for _ in range(n):
                t0 = time.perf_counter_ns()
                ws.send_text(text)
                ws.receive_text()
                samples.append(time.perf_counter_ns() - t0)
            w.stop()
        emit(args, "streams", latency(samples, w))
    elif s in ("send_text", "send_big"):
        with connect(url + f"/sink?n={n}", new_sync_client(), **OPTIONS) as ws:
            w = Window()
            w.start()
            if s == "send_text":
                text = send_text(size)
                for _ in range(n):
                    ws.send_text(text)
            else:
                data = os.urandom(size)
                for _ in range(n):
                    ws.send_bytes(data)
            reply = ws.receive_text()
            w.stop()
        assert reply == f"done {n}", reply
        emit(args, "streams", throughput(s, n, size, w))
    else:
        emit(args, "streams", {"skip": "the sync API runs a thread per session"})


def run() -> None:
    if args.variant == "sync":
        sync_main()
    elif args.variant == "uvloop":
        import uvloop

        uvloop.run(main())
    elif args.variant == "trio":
        import trio

        trio.run(main)
    else:
        anyio.run(main, backend="asyncio")


if __name__ == "__main__":
    run_main(run)
