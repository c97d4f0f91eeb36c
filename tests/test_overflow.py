"""Slow-consumer policies: block (backpressure), drop the oldest or the newest, disconnect."""

from __future__ import annotations

import anyio
import pytest

import streams
from tests import servers
from tests.peers import OP_CLOSE, OP_TEXT, ScriptedPeer, build_frame, close_payload, scripted_server

pytestmark = pytest.mark.anyio

COUNT = 100


def burst(count: int = COUNT) -> bytes:
    return b"".join(build_frame(OP_TEXT, f"m{i}".encode()) for i in range(count))


async def read_all(ws: streams.AsyncWebSocketSession, into: list[str | bytes]) -> None:
    async for message in ws:
        into.append(message)


@pytest.mark.parametrize(
    ("overflow", "kept"),
    [("drop_newest", range(10)), ("drop_oldest", range(COUNT - 10, COUNT))],
)
async def test_a_drop_policy_keeps_reading_and_drops(overflow: str, kept: range) -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_raw(burst())
        await peer.receive_close()
        await peer.send_frame(OP_CLOSE, close_payload(1000))

    with anyio.fail_after(10):
        async with (
            scripted_server(script) as url,
            streams.aconnect_ws(url + "/", queue_size=10, overflow=overflow) as ws,  # type: ignore[arg-type]
        ):
            # The session read everything without waiting for the consumer.
            await servers.wait_until(lambda: ws.statistics().messages_received == COUNT)
            stats = ws.statistics()
            assert stats.overflow_dropped == COUNT - 10
            assert stats.messages_dropped == 0
            assert stats.messages_queued == 10
            assert not stats.reader_paused
            assert [await ws.receive_text() for _ in range(10)] == [f"m{i}" for i in kept]


async def test_drop_oldest_keeps_the_newest_across_reads() -> None:
    async def script(peer: ScriptedPeer) -> None:
        for i in range(30):
            await peer.send_frame(OP_TEXT, f"m{i}".encode())
        await peer.receive_close()
        await peer.send_frame(OP_CLOSE, close_payload(1000))

    with anyio.fail_after(10):
        async with (
            scripted_server(script) as url,
            streams.aconnect_ws(url + "/", queue_size=3, overflow="drop_oldest") as ws,
        ):
            await servers.wait_until(lambda: ws.statistics().messages_received == 30)
            assert [await ws.receive_text() for _ in range(3)] == ["m27", "m28", "m29"]
            assert ws.statistics().overflow_dropped == 27


async def test_disconnect_closes_1008_then_raises_after_the_queued_messages() -> None:
    closes: list[tuple[int, str]] = []
    closed = anyio.Event()

    async def script(peer: ScriptedPeer) -> None:
        await peer.send_raw(burst(50))
        closes.append(await peer.receive_close(timeout=10))
        closed.set()
        await peer.close_tcp()

    with anyio.fail_after(10):
        async with scripted_server(script) as url:
            async with streams.aconnect_ws(
                url + "/", queue_size=5, overflow="disconnect", lag_timeout=0.3
            ) as ws:
                await closed.wait()  # the consumer read nothing meanwhile
                received: list[str | bytes] = []
                with pytest.raises(streams.WebSocketOverflowError) as info:
                    await read_all(ws, received)
            assert received == [f"m{i}" for i in range(5)]
    assert closes == [(1008, "slow consumer: queue_size=5 full for lag_timeout=0.3 s")]
    error = info.value
    assert isinstance(error, streams.WebSocketNetworkError)
    assert (error.policy, error.queue_size, error.lag_timeout) == ("disconnect", 5, 0.3)
    assert "queue_size=5" in str(error)
    assert "overflow='disconnect'" in str(error)


async def test_a_consumer_that_keeps_up_is_not_disconnected() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_raw(burst(200))
        await peer.send_frame(OP_CLOSE, close_payload(1000))
        await peer.receive_close()

    with anyio.fail_after(10):
        async with (
            scripted_server(script) as url,
            streams.aconnect_ws(
                url + "/", queue_size=5, overflow="disconnect", lag_timeout=5
            ) as ws,
        ):
            assert [m async for m in ws] == [f"m{i}" for i in range(200)]
            assert ws.close_code == 1000


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"overflow": "drop"}, "overflow must be .block., .drop_oldest., .drop_newest. or"),
        ({"lag_timeout": 1.0}, "lag_timeout applies only with overflow='disconnect'"),
        ({"overflow": "drop_oldest", "queue_size": 0}, "queue_size of at least 1"),
    ],
)
async def test_policy_options_are_checked(options: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        async with streams.aconnect_ws("ws://127.0.0.1:9/", **options):  # type: ignore[arg-type]
            pass
