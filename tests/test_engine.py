"""The engine's parts on their own: what must hold on the installed dependency versions."""

from __future__ import annotations

import anyio
import pytest

from streams._engine._channel import channel_state
from streams._engine._inbox import Inbox
from streams._options import SessionOptions


def test_bulk_hand_off_is_on_with_the_installed_anyio() -> None:
    """Fails loudly if anyio's memory stream no longer has the shape the inbox moves in bulk."""
    send, receive = anyio.create_memory_object_stream[str](4)
    with send, receive:
        assert channel_state(send, receive) is not None
    inbox = Inbox(4)
    assert inbox._state is not None
    inbox.close()


@pytest.mark.anyio
async def test_inbox_hands_over_in_order_and_stops_at_the_bound() -> None:
    inbox = Inbox(3)
    messages: list[str | bytes] = ["a", "b", "c", "d", "e"]
    assert inbox.push(messages, 0) == 3
    assert await inbox.receive_batch() == ["a", "b", "c"]
    assert inbox.push(messages, 3) == 5
    inbox.unread(["z"])
    assert await inbox.next_message() == "z"
    assert await inbox.receive_batch(1) == ["d"]
    inbox.end()
    assert await inbox.receive_batch() == ["e"]
    with pytest.raises(anyio.EndOfStream):
        await inbox.next_message()
    inbox.close()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"queue_size": -1}, ValueError),
        ({"queue_size": "many"}, TypeError),
        ({"max_message_size_bytes": 0}, ValueError),
        ({"keepalive_ping_interval_seconds": 0}, ValueError),
        ({"keepalive_ping_timeout_seconds": float("nan")}, ValueError),
        ({"close_timeout": -1}, ValueError),
        ({"compression": "deflate"}, TypeError),
    ],
)
def test_options_are_checked_once_with_a_message_naming_the_option(
    changes: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error, match=next(iter(changes))):
        SessionOptions(**changes)  # type: ignore[arg-type]
