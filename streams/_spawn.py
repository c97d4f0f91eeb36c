"""Start a task outside the caller's cancel scopes, with the event loop's public API.

anyio starts tasks only inside a task group, and a task group entered by a
caller belongs to the caller's cancel scopes: leaving them (an exception, a
timeout around one call) while the group is still open corrupts them. A
:class:`~streams.Websocket` used without ``async with`` has no block to hold a
group, so its session holder runs in a task started here instead: asyncio's
``loop.create_task`` or trio's ``trio.lowlevel.spawn_system_task``. This is the
only module that talks to asyncio or trio for that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["spawn_detached"]

logger = logging.getLogger("streams.websocket")

# asyncio keeps only weak references to tasks: hold them until they finish.
_running: set[asyncio.Task[None]] = set()


def spawn_detached(function: Callable[[], Awaitable[None]], name: str) -> None:
    """Run ``function()`` in a new task that no caller's cancel scope contains.

    The task ends when ``function`` returns, or is cancelled when the event loop
    (asyncio) or the run (trio) ends. ``function`` should handle its own errors:
    one that escapes is logged (on trio it would crash the run).

    Args:
        function: the task's body.
        name: the task's name, for debuggers.
    """

    async def guarded() -> None:
        try:
            await function()
        except Exception:
            logger.exception("background task %s failed", name)

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio (anyio's only other backend)
        import trio

        trio.lowlevel.spawn_system_task(guarded, name=name)
        return
    task = loop.create_task(guarded(), name=name)
    _running.add(task)
    task.add_done_callback(_running.discard)
