"""A task group owned by an object: entered in one method, exited in another.

Objects that run background tasks for the length of an ``async with`` block
enter an anyio task group in ``__aenter__`` and exit it in ``__aexit__``. Handing
the block's own exception to the group would wrap it in an exception group;
:class:`OwnedTaskGroup` exits it so that the block's error comes out as itself,
while a cancellation (or ``KeyboardInterrupt``) still reaches the group, which
must see it to end.
"""

from __future__ import annotations

import anyio
from anyio.abc import TaskGroup

__all__ = ["OwnedTaskGroup"]


class OwnedTaskGroup:
    """One anyio task group, entered by :meth:`enter` and exited by :meth:`exit`.

    The tasks must report their errors in-band (through a channel, a stored
    exception...): an exception escaping a task still raises an exception group.
    """

    __slots__ = ("_tg",)

    def __init__(self) -> None:
        self._tg: TaskGroup | None = None

    @property
    def entered(self) -> bool:
        """Whether :meth:`enter` was called and :meth:`exit` not yet."""
        return self._tg is not None

    async def enter(self) -> TaskGroup:
        """Enter a new task group in the calling task.

        Returns:
            The task group, to start tasks in.

        Raises:
            RuntimeError: already entered.
        """
        if self._tg is not None:
            raise RuntimeError("this task group is already entered")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return tg

    async def exit(self, exc: BaseException | None, *, cancel: bool = True) -> None:
        """Exit the group from the task that entered it, and wait for its tasks.

        Args:
            exc: the exception leaving the ``async with`` block, if any. An
                ``Exception`` is not handed to the group (it goes on as itself
                when the caller returns); a cancellation or ``KeyboardInterrupt``
                is.
            cancel: cancel the tasks first (otherwise wait for them to finish).
        """
        tg, self._tg = self._tg, None
        assert tg is not None, "the task group was not entered"
        if cancel:
            tg.cancel_scope.cancel()
        if exc is None or isinstance(exc, Exception):
            await tg.__aexit__(None, None, None)
        else:
            await tg.__aexit__(type(exc), exc, exc.__traceback__)
