"""Benchmark client for aiohttp's WebSocket client (``ClientSession.ws_connect``).

Variants: ``asyncio``, ``uvloop``. Default settings except no heartbeat, ``compress=15`` (an offer of permessage-deflate) in the
idle scenarios and ``max_msg_size``
large enough for 1 MiB messages; on wss:// the certificate is verified against ``--ca``
(``ssl=``). One ``ClientSession`` is shared by all sessions, as aiohttp recommends.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aiohttp
import msgspec
from _common import (
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

args = client_args(("asyncio", "uvloop"))
OPTIONS: dict[str, Any] = {"max_msg_size": 16 * MIB, "heartbeat": None, "compress": 0}
if (SSL := ssl_context(args)) is not None:
    OPTIONS["ssl"] = SSL
KIND = {
    "recv_text": "text",
    "recv_json": "json",
    "recv_struct": "json_struct",
    "recv_big": "binary",
}
DATA = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)


async def main() -> None:
    s, n, size = args.scenario, args.n, args.size
    url = args.url
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        if s in KIND:
            decode: Any = None
            if s == "recv_json":
                decode = msgspec.json.decode
            elif s == "recv_struct":
                decode = msgspec.json.Decoder(Tick).decode
            async with http.ws_connect(url + blast_path(n, size, KIND[s]), **OPTIONS) as ws:
                w = Window()
                w.start()
                count = 0
                if decode is None:
                    async for msg in ws:
                        if msg.type in DATA:
                            msg.data  # noqa: B018
                            count += 1
                else:
                    async for msg in ws:
                        if msg.type in DATA:
                            decode(msg.data)
                            count += 1
                w.stop()
            w.received = count
            emit(args, "aiohttp", throughput(s, n, size, w))
        elif s == "echo":
            async with http.ws_connect(url + "/echo", **OPTIONS) as ws:
                text = send_text(size)
                samples = []
                w = Window()
                w.start()
                for _ in range(n):
                    t0 = time.perf_counter_ns()
                    await ws.send_str(text)
                    await ws.receive_str()
                    samples.append(time.perf_counter_ns() - t0)
                w.stop()
            emit(args, "aiohttp", latency(samples, w))
        elif s in ("send_text", "send_big"):
            async with http.ws_connect(url + f"/sink?n={n}", **OPTIONS) as ws:
                w = Window()
                w.start()
                if s == "send_text":
                    text = send_text(size)
                    for _ in range(n):
                        await ws.send_str(text)
                else:
                    data = os.urandom(size)
                    for _ in range(n):
                        await ws.send_bytes(data)
                reply = await ws.receive_str()
                w.stop()
            assert reply == f"done {n}", reply
            emit(args, "aiohttp", throughput(s, n, size, w))
        elif s in IDLE:
            # aiohttp offers no compression unless asked: compress=15 is its documented way
            # to offer permessage-deflate (its default window).
            idle = {**OPTIONS, "compress": 15}
            path = url + idle_path(s)
            await open_idle(args, "aiohttp", lambda: http.ws_connect(path, **idle))
        elif s == "flood_memory":
            async with http.ws_connect(url + "/echo", **OPTIONS):
                pass
            before = settle_rss()
            ws = await http.ws_connect(url + blast_path(n, size, "binary"), **OPTIONS)
            got = 0
            with RssSampler() as rss:
                deadline = time.monotonic() + args.ms / 1000
                while time.monotonic() < deadline:
                    await ws.receive_bytes()
                    got += 1
                    await asyncio.sleep(0.001)
            emit(args, "aiohttp", {"value": (rss.peak - before) / MIB, "consumed": got})


def run() -> None:
    if args.variant == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


if __name__ == "__main__":
    run_main(run)
