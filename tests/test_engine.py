"""The engine's parts on their own: what must hold on the installed dependency versions."""

from __future__ import annotations

import gc
import sys
import warnings

import anyio
import pytest

from streams._engine._channel import channel_state
from streams._engine._inbox import Inbox, messages
from streams._options import SessionOptions


def test_bulk_hand_off_is_on_with_the_installed_anyio() -> None:
    """Fails loudly if anyio's memory stream no longer has the shape the inbox moves in bulk."""
    send, receive = anyio.create_memory_object_stream[str](4)
    with send, receive:
        assert channel_state(send, receive) is not None
    inbox = Inbox(4)
    assert inbox.receive_stream is not None  # the channel is made on first use
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


@pytest.mark.anyio
async def test_async_for_over_the_inbox_resumes_after_a_break_and_warns_of_nothing() -> None:
    inbox = Inbox(10)
    inbox.push(["a", "b", "c", "d", "e", "f"], 0)

    async def slow() -> str | bytes:
        try:
            return await inbox.next_message()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    hooks = sys.get_asyncgen_hooks()
    got: list[str | bytes] = []
    with warnings.catch_warnings():
        # trio's finalizer warns about an async generator dropped before its end.
        warnings.simplefilter("error")
        async for message in messages(inbox, slow):
            got.append(message)
            if message == "b":
                break
        gc.collect()
        inbox.unread(["again"])  # put back in front: the next iteration starts with it
        async for message in messages(inbox, slow):
            got.append(message)
            if message == "d":
                break
        gc.collect()
    assert got == ["a", "b", "again", "c", "d"]
    assert sys.get_asyncgen_hooks() == hooks  # the event loop's hooks are back
    inbox.end()
    assert [message async for message in messages(inbox, slow)] == ["e", "f"]
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


@pytest.mark.anyio
async def test_async_for_over_a_fresh_inbox_takes_messages_from_its_buffer() -> None:
    """The channel is made on first use: iteration begun before any message still has it."""
    inbox = Inbox(4)

    async def slow() -> str | bytes:
        raise AssertionError("the buffer had messages: no wait was needed")

    iterator = messages(inbox, slow)
    assert inbox.push(["a", b"b"], 0) == 2
    assert [await iterator.__anext__(), await iterator.__anext__()] == ["a", b"b"]
    inbox.close()
