"""Sessions under asyncio.run() and uvloop.run() directly, not through anyio.run().

anyio tells which event loop runs from the current task; inside a transport's
callback there is none. Nothing the library runs there may ask anyio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import pytest

import streams


class Tick(msgspec.Struct):
    n: int


async def exercise(url: str) -> None:
    async with streams.aconnect_ws(
        url, stale_after=30, send_rate=(100_000, 100), keepalive_ping_interval_seconds=0.05
    ) as ws:
        for i in range(200):
            await ws.send_text(f'{{"n": {i}}}')
        ticks = await ws.json(Tick).take(200).collect()
        assert [t.n for t in ticks] == list(range(200))
        await (await ws.ping()).wait()
    for overflow in ("drop_oldest", "disconnect"):
        async with streams.aconnect_ws(url, queue_size=4, overflow=overflow) as ws:  # type: ignore[arg-type]
            await ws.send_text("x")
            assert await ws.receive_text() == "x"


def runners() -> list[Any]:
    params: list[Any] = [pytest.param(asyncio.run, id="asyncio.run")]
    try:
        import uvloop
    except ImportError:
        return params
    return [*params, pytest.param(uvloop.run, id="uvloop.run")]


@pytest.mark.parametrize("run", runners())
def test_a_session_works_under_a_plain_event_loop(
    run: Callable[[Coroutine[Any, Any, None]], None], echo_url: str
) -> None:
    run(asyncio.wait_for(exercise(echo_url), 20))
