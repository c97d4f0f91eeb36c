"""Static typing of the time and state operators, checked by mypy (``files`` in pyproject.toml).

Nothing here runs: each ``assert_type`` states the type mypy must infer.
"""

from __future__ import annotations

from typing import assert_type

import msgspec

from streams import AsyncWebSocketSession, MessageStream, ReconnectingWebSocket, Timestamped


class Tick(msgspec.Struct):
    sym: str
    px: float


async def time_operators(ws: AsyncWebSocketSession, feed: ReconnectingWebSocket) -> None:
    ticks = ws.json(Tick)
    assert_type(ticks.throttle(1.0), MessageStream[Tick])
    assert_type(ticks.sample(1.0), MessageStream[Tick])
    assert_type(ticks.debounce(0.5), MessageStream[Tick])
    assert_type(ticks.timeout(5), MessageStream[Tick])
    assert_type(ticks.timestamp(), MessageStream[Timestamped[Tick]])
    assert_type(feed.json(Tick).timestamp(), MessageStream[Timestamped[Tick]])
    async for tick, received_at in ticks.timestamp():
        assert_type(tick, Tick)
        assert_type(received_at, float)
    assert_type(ticks.scan(lambda total, t: total + t.px, 0.0), MessageStream[float])
    assert_type(ticks.distinct_until_changed(), MessageStream[Tick])
    assert_type(ticks.distinct_until_changed(lambda t: t.px), MessageStream[Tick])
    groups = ticks.group_by(lambda t: t.sym)
    assert_type(groups, MessageStream[tuple[str, MessageStream[Tick]]])
    async for sym, group in groups:
        assert_type(sym, str)
        assert_type(await group.first(), Tick)
