"""Benchmark client for websockets (the new asyncio implementation, and the threaded sync one).

Variants: ``asyncio``, ``uvloop``, ``sync``. Default settings except: no compression (the server
does not offer it anyway) except in the idle scenarios (its default offer), no keepalive pings, ``max_size`` large enough for 1 MiB messages; on
wss:// the certificate is verified against ``--ca`` (``ssl=``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

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

args = client_args(("asyncio", "uvloop", "sync"))
OPTIONS: dict[str, Any] = {
    "compression": None,
    "ping_interval": None,
    "max_size": 16 * MIB,
    "proxy": None,
}
if (SSL := ssl_context(args)) is not None:
    OPTIONS["ssl"] = SSL


def decoder(scenario: str) -> Any:
    if scenario == "recv_json":
        return msgspec.json.decode
    if scenario == "recv_struct":
        return msgspec.json.Decoder(Tick).decode
    return None


def payload(scenario: str, size: int) -> str | bytes:
    return send_text(size) if scenario in ("send_text", "echo") else os.urandom(size)


KIND = {
    "recv_text": "text",
    "recv_json": "json",
    "recv_struct": "json_struct",
    "recv_big": "binary",
}


async def amain() -> None:
    from websockets.asyncio.client import connect

    s, n, size = args.scenario, args.n, args.size
    url = args.url
    if s in KIND:
        decode = decoder(s)
        async with connect(url + blast_path(n, size, KIND[s]), **OPTIONS) as ws:
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
        emit(args, "websockets", throughput(s, n, size, w))
    elif s == "echo":
        async with connect(url + "/echo", **OPTIONS) as ws:
            msg = payload(s, size)
            samples = []
            w = Window()
            w.start()
            for _ in range(n):
                t0 = time.perf_counter_ns()
                await ws.send(msg)
                await ws.recv()
                samples.append(time.perf_counter_ns() - t0)
            w.stop()
        emit(args, "websockets", latency(samples, w))
    elif s in ("send_text", "send_big"):
        async with connect(url + f"/sink?n={n}", **OPTIONS) as ws:
            msg = payload(s, size)
            w = Window()
            w.start()
            for _ in range(n):
                await ws.send(msg)
            reply = await ws.recv()
            w.stop()
        assert reply == f"done {n}", reply
        emit(args, "websockets", throughput(s, n, size, w))
    elif s in IDLE:
        # permessage-deflate at websockets' defaults (compression="deflate").
        idle = {k: v for k, v in OPTIONS.items() if k != "compression"}
        path = url + idle_path(s)
        await open_idle(args, "websockets", lambda: connect(path, **idle))
    elif s == "flood_memory":
        async with connect(url + "/echo", **OPTIONS):
            pass
        before = settle_rss()
        ws = await connect(url + blast_path(n, size, "binary"), **OPTIONS).__aenter__()
        got = 0
        with RssSampler() as rss:
            deadline = time.monotonic() + args.ms / 1000
            while time.monotonic() < deadline:
                await ws.recv()
                got += 1
                await asyncio.sleep(0.001)
        emit(args, "websockets", {"value": (rss.peak - before) / MIB, "consumed": got})


def smain() -> None:
    from websockets.sync.client import connect

    s, n, size = args.scenario, args.n, args.size
    url = args.url
    if s in KIND:
        decode = decoder(s)
        with connect(url + blast_path(n, size, KIND[s]), **OPTIONS) as ws:
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
        emit(args, "websockets", throughput(s, n, size, w))
    elif s == "echo":
        with connect(url + "/echo", **OPTIONS) as ws:
            msg = payload(s, size)
            samples = []
            w = Window()
            w.start()
            for _ in range(n):
                t0 = time.perf_counter_ns()
                ws.send(msg)
                ws.recv()
                samples.append(time.perf_counter_ns() - t0)
            w.stop()
        emit(args, "websockets", latency(samples, w))
    elif s in ("send_text", "send_big"):
        with connect(url + f"/sink?n={n}", **OPTIONS) as ws:
            msg = payload(s, size)
            w = Window()
            w.start()
            for _ in range(n):
                ws.send(msg)
            reply = ws.recv()
            w.stop()
        assert reply == f"done {n}", reply
        emit(args, "websockets", throughput(s, n, size, w))
    else:
        emit(args, "websockets", {"skip": "sessions need one thread each in the sync API"})


def run() -> None:
    if args.variant == "sync":
        smain()
    elif args.variant == "uvloop":
        import uvloop

        uvloop.run(amain())
    else:
        asyncio.run(amain())


if __name__ == "__main__":
    run_main(run)
