"""Rate-limited sends: wait for a turn, never drop; pongs, pings and the Close do not wait."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import streams
from streams._engine import _rate

pytestmark = pytest.mark.anyio


class VirtualClock:
    """Stands in for anyio's clock in the bucket's module: sleeping advances time at once."""

    Lock = anyio.Lock

    def __init__(self) -> None:
        self.now = 0.0

    def current_time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def test_the_bucket_lets_a_burst_through_then_paces(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock()
    monkeypatch.setattr(_rate, "anyio", clock)
    bucket = _rate.TokenBucket(rate=10, burst=2)
    times = []
    for _ in range(5):
        await bucket.take()
        times.append(round(clock.now, 6))
    assert times == [0.0, 0.0, 0.1, 0.2, 0.3]
    clock.now += 10  # a quiet time refills at most `burst` tokens
    start = clock.now
    for _ in range(3):
        await bucket.take()
    assert round(clock.now - start, 6) == 0.1


async def test_rate_limited_sends_all_arrive_in_order(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url, send_rate=(2000, 10)) as ws:
        for i in range(60):
            await ws.send_text(f"m{i}")
        assert [await ws.receive_text() for _ in range(60)] == [f"m{i}" for i in range(60)]


async def test_pings_wait_only_when_counted(echo_url: str) -> None:
    async with streams.aconnect_ws(echo_url, send_rate=(0.01, 1)) as ws:
        await ws.send_text("takes the only token")
        with anyio.fail_after(5):
            await (await ws.ping()).wait()  # pings do not wait by default
        with anyio.move_on_after(0.2) as scope:
            await ws.send_text("waits about 100 s for its turn")
        assert scope.cancelled_caught
        assert await ws.receive_text() == "takes the only token"
    async with streams.aconnect_ws(
        echo_url, send_rate=(0.01, 1), send_rate_counts_pings=True
    ) as ws:
        await ws.send_text("takes the only token")
        with anyio.move_on_after(0.2) as scope:
            await ws.ping()
        assert scope.cancelled_caught


@pytest.mark.parametrize("limit", [0, -1.0, (10, 0), (10, 1.5), "fast"])
async def test_a_bad_send_rate_is_refused(limit: object) -> None:
    with pytest.raises(ValueError, match="send_rate"):
        async with streams.aconnect_ws("ws://127.0.0.1:9/", send_rate=limit):  # type: ignore[arg-type]
            pass
