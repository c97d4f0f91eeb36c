"""The demo: a local market feed, a typed pipeline over it, a live view.

``streams demo`` needs no network: it serves a made-up ticker feed on
127.0.0.1 (a free port) with a small anyio + wsproto server, connects to it
with :func:`streams.aconnect_ws`, and runs::

    ws.json(Tick).filter(lambda t: t.px > 0).batch(1000, timeout=0.05)

showing throughput and the latest prices while it runs, then a summary.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import anyio
import anyio.abc
import msgspec
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request

from ._connect import aconnect_ws

__all__ = ["Tick", "run_demo", "serve_feed"]

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "ASML")


class Tick(msgspec.Struct, frozen=True):
    """One price update of the demo feed."""

    sym: str
    px: float
    qty: int
    seq: int


async def _feed_connection(stream: anyio.abc.SocketStream, duration: float) -> None:
    """Serve one client: the upgrade, then ticks as fast as TCP takes them."""
    ws = WSConnection(ConnectionType.SERVER)
    encoder = msgspec.json.Encoder()
    async with stream:
        while True:
            data = await stream.receive()
            ws.receive_data(data)
            if any(isinstance(event, Request) for event in ws.events()):
                break
        await stream.send(ws.send(AcceptConnection()))
        rng = random.Random(7)
        steps = [rng.gauss(0, 0.0005) for _ in range(4099)]
        drift = sum(steps) / len(steps)  # centred, so prices wander without a trend
        noise = [math.exp(step - drift) for step in steps]
        sizes = [rng.randrange(1, 500) for _ in range(4093)]
        prices = [100.0 + 50 * i for i in range(len(SYMBOLS))]
        seq = 0
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            frames = []
            for _ in range(2000):
                index = seq % len(SYMBOLS)
                price = prices[index] = prices[index] * noise[seq % 4099]
                # Now and then a bad print (a zero price) that the pipeline filters out.
                px = 0.0 if seq % 97 == 0 else round(price, 2)
                payload = encoder.encode(Tick(SYMBOLS[index], px, sizes[seq % 4093], seq))
                # Server frames are not masked: a 2-byte header for short payloads.
                frames.append(bytes((0x81, len(payload))) + payload)
                seq += 1
            await stream.send(b"".join(frames))
        await stream.send(ws.send(CloseConnection(1000, "end of demo feed")))
        with anyio.move_on_after(1):
            while True:
                ws.receive_data(await stream.receive())
                if any(isinstance(event, CloseConnection) for event in ws.events()):
                    break


async def serve_feed(
    duration: float, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve the demo feed on 127.0.0.1 (a free port, reported through ``task_status``)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener:
        task_status.started(port)

        async def handle(stream: anyio.abc.SocketStream) -> None:
            try:
                await _feed_connection(stream, duration)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

        await listener.serve(handle)


@dataclass
class _View:
    """What the live view shows."""

    started: float = field(default_factory=time.monotonic)
    messages: int = 0
    batches: int = 0
    filtered: int = 0
    last: dict[str, Tick] = field(default_factory=dict)
    first_px: dict[str, float] = field(default_factory=dict)
    rates: list[float] = field(default_factory=list)

    def render(self, width: int = 64) -> list[str]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.messages / elapsed
        spark = _sparkline(self.rates[-40:])
        lines = [
            "streams demo: ws.json(Tick).filter(lambda t: t.px > 0).batch(1000, timeout=0.05)",
            "-" * width,
            f"  received {self.messages:>10,} ticks in {self.batches:,} batches"
            f"   {rate:>12,.0f} ticks/s",
            f"  dropped by the filter {self.filtered:>6,}   throughput {spark}",
            "-" * width,
        ]
        for sym in SYMBOLS:
            tick = self.last.get(sym)
            if tick is None:
                continue
            change = (tick.px / self.first_px[sym] - 1) * 100
            arrow = "▲" if change >= 0 else "▼"
            lines.append(f"  {sym:<5} {tick.px:>10.2f}  {arrow} {change:+6.2f}%   seq {tick.seq:,}")
        return lines


def _sparkline(values: list[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(bars[min(int(v / top * (len(bars) - 1)), len(bars) - 1)] for v in values)


async def run_demo(
    seconds: float = 5.0,
    *,
    out: TextIO = sys.stdout,
    live: bool | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> _View:
    """Run the demo for ``seconds``; return what it saw.

    Args:
        seconds: how long the feed runs.
        out: where to draw.
        live: redraw in place (a terminal) or print a line per second; by
            default, live when ``out`` is a terminal.
        clock: the clock of the view's refresh.
    """
    if live is None:
        live = out.isatty()
    view = _View()
    # The feed runs in a child process, so that server and client each get a core.
    command = [sys.executable, "-m", "streams._demo", "--serve", str(seconds)]
    async with await anyio.open_process(command, stderr=None) as server:
        assert server.stdout is not None
        line = b""
        async for chunk in server.stdout:
            line += chunk
            if b"\n" in line:
                break
        if not line.startswith(b"PORT "):
            raise RuntimeError(f"the demo feed did not start: {line!r}")
        port = int(line.split()[1])
        async with aconnect_ws(f"ws://127.0.0.1:{port}/feed", compression=None) as ws:

            def keep(tick: Tick) -> bool:
                if tick.px > 0:
                    return True
                view.filtered += 1
                return False

            drawn = 0
            last_draw = clock()
            last_count = 0
            async for batch in ws.json(Tick).filter(keep).batch(1000, timeout=0.05):
                view.batches += 1
                view.messages += len(batch)
                for tick in batch:
                    view.first_px.setdefault(tick.sym, tick.px)
                    view.last[tick.sym] = tick
                now = clock()
                if now - last_draw >= (0.1 if live else 1.0):
                    view.rates.append((view.messages - last_count) / (now - last_draw))
                    last_count, last_draw = view.messages, now
                    drawn = _draw(out, view, live, drawn)
        server.terminate()
    _draw(out, view, live, drawn)
    elapsed = time.monotonic() - view.started
    out.write(
        f"\nDone: {view.messages:,} ticks decoded into msgspec Structs in {elapsed:.1f} s "
        f"({view.messages / elapsed:,.0f}/s), {view.filtered:,} filtered out, "
        f"{view.batches:,} batches; closed with code {ws.close_code}.\n"
    )
    out.flush()
    return view


def _draw(out: TextIO, view: _View, live: bool, drawn: int) -> int:
    lines = view.render()
    if live:
        if drawn:
            out.write(f"\x1b[{drawn}F")
        out.write("".join(f"\x1b[2K{line}\n" for line in lines))
    else:
        out.write(lines[2].strip() + "\n")
    out.flush()
    return len(lines)


async def _serve_main(seconds: float) -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_feed, seconds)
        print(f"PORT {port}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        anyio.run(_serve_main, float(sys.argv[2]))
