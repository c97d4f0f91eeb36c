"""Bulk hand-off through an anyio memory object stream: the one place that reads its private state.

Handing messages over one ``send_nowait``/``receive_nowait`` pair at a time
costs as much as parsing them. anyio's memory object stream is two small
objects sharing one state whose ``buffer`` is a deque; when that state has the
shape this module knows (anyio 4), the inbox moves messages in and out of the
buffer in bulk, doing exactly what those two methods do. Waiting senders and
receivers, and any other shape, go through anyio's public methods.

``tests/test_engine.py`` fails loudly when the shortcut turns off on the
installed anyio.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._types import Message

__all__ = ["ReceiveStream", "channel_state", "is_closed", "open_channel"]


def channel_state(
    send: MemoryObjectSendStream[Message], receive: MemoryObjectReceiveStream[Message]
) -> Any:
    """Return the state shared by an anyio memory stream's two ends, or ``None``.

    ``None`` when the state does not have anyio 4's shape: then every hand-off
    goes through anyio's public methods.
    """
    state = getattr(send, "_state", None)
    if (
        state is not None
        and getattr(receive, "_state", None) is state
        and isinstance(getattr(state, "buffer", None), collections.deque)
        and isinstance(getattr(state, "waiting_receivers", None), dict)
        and isinstance(getattr(state, "waiting_senders", None), dict)
        and isinstance(getattr(state, "max_buffer_size", None), (int, float))
        and isinstance(getattr(state, "open_receive_channels", None), int)
        and getattr(send, "_closed", None) is False
        and getattr(receive, "_closed", None) is False
    ):
        return state
    return None


def is_closed(end: MemoryObjectSendStream[Any] | MemoryObjectReceiveStream[Any]) -> bool:
    """Whether this end of a memory stream was closed (anyio keeps it in ``_closed``)."""
    return bool(getattr(end, "_closed", False))


class ReceiveStream(MemoryObjectReceiveStream[Message]):
    """A receive end over the same state that also calls ``on_close`` when closed.

    The inbox's receive methods wait for the reader's signal rather than in
    ``receive()``, so anyio's own wake-up on close does not reach them.
    """

    on_close: Callable[[], None] | None = None

    def close(self) -> None:
        super().close()
        if self.on_close is not None:
            self.on_close()


def open_channel(
    queue_size: int, on_close: Callable[[], None]
) -> tuple[MemoryObjectSendStream[Message], MemoryObjectReceiveStream[Message], Any]:
    """Make a channel of ``queue_size`` messages for the inbox.

    Returns:
        Its send end; its receive end, a :class:`ReceiveStream` that calls
        ``on_close`` when its state has the known shape; and that state
        (``None`` otherwise: every hand-off then goes through anyio's methods).
    """
    send, receive = anyio.create_memory_object_stream[Message](queue_size)
    state = channel_state(send, receive)
    if state is None:
        return send, receive, None
    # The same channel end, which also calls on_close when closed.
    own = ReceiveStream(state)
    own.on_close = on_close
    receive.close()
    return send, own, state
