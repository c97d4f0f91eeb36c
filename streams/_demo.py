"""The demo: a local market feed, a typed pipeline over it, a live view.

``streams demo`` needs no network: it runs the demo server
(:mod:`streams._demo_server`) in a child process on a free port of
127.0.0.1, connects to its feed with :func:`streams.aconnect_ws`, and runs::

    ws.json(Tick).filter(lambda t: t.px > 0).batch(1000, timeout=0.05)

showing throughput and the latest prices while it runs, then a summary. On a
terminal the view is redrawn in place and fits the terminal (every line is
cut to its width, and the view to its height); on a pipe it prints a plain
progress line a second. Ctrl-C ends it early, with the summary.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import anyio
import anyio.abc

from ._connect import aconnect_ws
from ._console import screen_rows
from ._demo_server import SYMBOLS, Tick
from ._session import AsyncWebSocketSession

__all__ = ["Tick", "run_demo"]

PIPELINE = ("ws.json(Tick)", ".filter(lambda t: t.px > 0)", ".batch(1000, timeout=0.05)")


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

    def rate(self) -> float:
        return self.messages / max(time.monotonic() - self.started, 1e-9)

    def render(self, columns: int = 80, rows: int = 24) -> list[str]:
        """The lines of the view, each shorter than ``columns``, at most ``rows - 1`` of them."""
        width = max(min(columns - 1, 64), 1)
        spark = _sparkline(self.rates[-max(width - 14, 1) :])
        lines = [
            "streams demo: " + PIPELINE[0],
            "  " + "".join(PIPELINE[1:]),
            "-" * width,
            f"  received {self.messages:>11,} ticks in {self.batches:,} batches",
            f"  rate     {self.rate():>11,.0f} ticks/s, {self.filtered:,} filtered out",
            f"  throughput {spark}",
            "-" * width,
        ]
        for sym in SYMBOLS:
            tick = self.last.get(sym)
            if tick is None:
                continue
            change = (tick.px / self.first_px[sym] - 1) * 100
            arrow = "▲" if change >= 0 else "▼"
            lines.append(f"  {sym:<5} {tick.px:>9.2f} {arrow} {change:+6.2f}%  seq {tick.seq:,}")
        # Cut to the width, so that no line wraps; drop what the height cannot hold.
        return [line[:width] for line in lines[: max(rows - 1, 1)]]

    def progress(self) -> str:
        """One plain line for a pipe."""
        elapsed = time.monotonic() - self.started
        return (
            f"{elapsed:5.1f} s: {self.messages:,} ticks in {self.batches:,} batches,"
            f" {self.rate():,.0f}/s, {self.filtered:,} filtered out"
        )

    def summary(self, close_code: int | None) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        closed = "interrupted" if close_code is None else f"closed with code {close_code}"
        return (
            f"Done: {self.messages:,} ticks decoded into msgspec Structs\n"
            f"in {elapsed:.1f} s ({self.messages / elapsed:,.0f}/s),"
            f" {self.filtered:,} filtered out,\n"
            f"{self.batches:,} batches; {closed}.\n"
        )


def _sparkline(values: list[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(bars[min(int(v / top * (len(bars) - 1)), len(bars) - 1)] for v in values)


class _Screen:
    """Draws the view: in place on a terminal, as progress lines on a pipe."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self.out = out
        self.live = live
        self._rows = 0  # screen rows drawn last time, to move back over

    def _size(self) -> os.terminal_size:
        try:
            return os.get_terminal_size(self.out.fileno())
        except (OSError, ValueError):
            return shutil.get_terminal_size()

    def draw(self, view: _View) -> None:
        if not self.live:
            self.out.write(view.progress() + "\n")
            self.out.flush()
            return
        size = self._size()
        lines = view.render(size.columns, size.lines)
        head = f"\x1b[{self._rows}F" if self._rows else ""
        # Each line cleared before it is written; anything left below from a
        # taller view (the terminal was resized) cleared too.
        self.out.write(head + "".join(f"\x1b[2K{line}\n" for line in lines) + "\x1b[J")
        self.out.flush()
        self._rows = screen_rows(lines, size.columns)


async def run_demo(
    seconds: float = 5.0,
    *,
    out: TextIO = sys.stdout,
    live: bool | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> _View:
    """Run the demo for ``seconds`` (or until Ctrl-C); return what it saw.

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
    screen = _Screen(out, live)
    if not live:
        out.write("streams demo: " + "".join(PIPELINE) + "\n")
    stop = _Stop()
    # The feed runs in a child process, so that server and client each get a
    # core; in a session of its own, so that Ctrl-C at the terminal reaches
    # only this process, which ends the child.
    command = [sys.executable, "-m", "streams._demo_server"]
    async with (
        await anyio.open_process(command, stderr=None, start_new_session=True) as server,
        anyio.create_task_group() as tg,
    ):
        try:
            if sys.platform != "win32":
                tg.start_soon(stop.on_sigint, tg.cancel_scope)
            url = await _server_url(server)
            async with aconnect_ws(f"{url}/feed?rate=0&seconds={seconds}", compression=None) as ws:
                stop.ws = ws
                view.started = time.monotonic()

                def keep(tick: Tick) -> bool:
                    if tick.px > 0:
                        return True
                    view.filtered += 1
                    return False

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
                        screen.draw(view)
            tg.cancel_scope.cancel()
        finally:
            server.kill()
    screen.draw(view)
    close_code = None if stop.interrupted or stop.ws is None else stop.ws.close_code
    out.write("\n" + view.summary(close_code))
    out.flush()
    return view


class _Stop:
    """Ctrl-C: before the connection is open, stop at once; after, close it (code 1000).

    Closing lets the pipeline end as it does at the end of the feed, with the
    messages that arrived before the server's Close.
    """

    def __init__(self) -> None:
        self.ws: AsyncWebSocketSession | None = None
        self.interrupted = False

    async def on_sigint(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                self.interrupted = True
                if self.ws is None:
                    scope.cancel()
                else:
                    await self.ws.close(1000)
                return


async def _server_url(server: anyio.abc.Process) -> str:
    """The URL the demo server prints on its first line."""
    assert server.stdout is not None
    line = b""
    async for chunk in server.stdout:
        line += chunk
        if b"\n" in line:
            break
    url = line.split(b"\n")[0].decode(errors="replace")
    if not url.startswith("ws://"):
        raise RuntimeError(f"the demo server did not start: {line!r}")
    return url
