"""Benchmark client for httpx-ws (httpx + wsproto + anyio).

Variants: ``asyncio``, ``trio``. Default settings except no keepalive pings and a message size
limit large enough for 1 MiB messages. Every session goes through an ``httpx.AsyncClient`` made
here, ``verify=`` the context that trusts ``--ca`` on wss://; the memory scenarios share one
(a client per session costs an SSL context each, see docs/performance.md).
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
from httpx_ws import WebSocketDisconnect, aconnect_ws

args = client_args(("asyncio", "trio"))
OPTIONS: dict[str, Any] = {
    "max_message_size_bytes": 16 * MIB,
    "keepalive_ping_interval_seconds": None,
}
NO_DEFLATE = "httpx-ws does not offer permessage-deflate: no row in the idle scenario with it"
KIND = {
    "recv_text": "text",
    "recv_json": "json",
    "recv_struct": "json_struct",
    "recv_big": "binary",
}


SSL = ssl_context(args)


def new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=SSL if SSL is not None else True, trust_env=False)


def shared_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=SSL if SSL is not None else True,
        trust_env=False,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
    )


async def main() -> None:
    s, n, size = args.scenario, args.n, args.size
    url = args.url
    if s in KIND:
        decode: Any = lambda m: None  # noqa: E731
        if s == "recv_json":
            decode = msgspec.json.decode
        elif s == "recv_struct":
            decode = msgspec.json.Decoder(Tick).decode
        async with aconnect_ws(url + blast_path(n, size, KIND[s]), new_client(), **OPTIONS) as ws:
            receive = ws.receive_bytes if s == "recv_big" else ws.receive_text
            w = Window()
            w.start()
            count = 0
            try:
                while True:
                    decode(await receive())
                    count += 1
            except WebSocketDisconnect:
                pass
            w.stop()
        w.received = count
        emit(args, "httpx-ws", throughput(s, n, size, w))
    elif s == "echo":
        async with aconnect_ws(url + "/echo", new_client(), **OPTIONS) as ws:
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
        emit(args, "httpx-ws", latency(samples, w))
    elif s in ("send_text", "send_big"):
        async with aconnect_ws(url + f"/sink?n={n}", new_client(), **OPTIONS) as ws:
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
        emit(args, "httpx-ws", throughput(s, n, size, w))
    elif s == "idle_memory":
        client = shared_client()
        path = url + idle_path(s)

        async def open_one() -> object:
            # Entered and never exited: the process leaves with the sessions open.
            session = aconnect_ws(path, client, **OPTIONS)
            await session.__aenter__()
            return session

        await open_idle(args, "httpx-ws", open_one)
    elif s == "idle_deflate":
        emit(args, "httpx-ws", {"skip": "no permessage-deflate", "note": NO_DEFLATE})
    elif s == "flood_memory":
        client = shared_client()
        async with aconnect_ws(url + "/echo", client, **OPTIONS):
            pass
        before = settle_rss()
        stack = AsyncExitStack()  # kept open: the process leaves without closing
        ws = await stack.enter_async_context(
            aconnect_ws(url + blast_path(n, size, "binary"), client, **OPTIONS)
        )
        got = 0
        with RssSampler() as rss:
            deadline = time.monotonic() + args.ms / 1000
            while time.monotonic() < deadline:
                await ws.receive_bytes()
                got += 1
                await anyio.sleep(0.001)
        emit(args, "httpx-ws", {"value": (rss.peak - before) / MIB, "consumed": got})


if __name__ == "__main__":
    run_main(lambda: anyio.run(main, backend=args.variant))
