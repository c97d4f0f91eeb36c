"""OwnedTaskGroup: a task group entered and exited in two methods, the block's error unwrapped."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from streams._taskgroup import OwnedTaskGroup

pytestmark = pytest.mark.anyio


async def test_the_block_error_comes_out_as_itself_and_the_tasks_are_cancelled() -> None:
    owned = OwnedTaskGroup()
    cancelled = anyio.Event()

    async def background() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    tg = await owned.enter()
    tg.start_soon(background)
    await anyio.lowlevel.checkpoint()
    error = ValueError("in the block")
    await owned.exit(error)
    assert cancelled.is_set()
    assert not owned.entered


async def test_without_cancel_it_waits_for_the_tasks() -> None:
    owned = OwnedTaskGroup()
    done: list[int] = []

    async def work() -> None:
        await anyio.lowlevel.checkpoint()
        done.append(1)

    tg = await owned.enter()
    tg.start_soon(work)
    await owned.exit(None, cancel=False)
    assert done == [1]


async def test_an_outer_cancellation_still_ends_the_caller() -> None:
    owned = OwnedTaskGroup()
    with anyio.CancelScope() as outer:
        tg = await owned.enter()
        tg.start_soon(anyio.sleep_forever)
        outer.cancel()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class() as exc:
            await owned.exit(exc)
            raise
    assert outer.cancelled_caught


async def test_entering_twice_raises() -> None:
    owned = OwnedTaskGroup()
    await owned.enter()
    try:
        with pytest.raises(RuntimeError, match="already entered"):
            await owned.enter()
    finally:
        await owned.exit(None)
