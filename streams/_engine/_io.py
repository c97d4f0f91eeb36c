"""The small I/O interface the engine runs over; the backends in ``streams/_io/`` provide it."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["ByteIO", "Leftover", "OnData", "StartReader"]


class Leftover:
    """Messages parsed in a backend's callback, for the reader task to deliver from ``index``."""

    __slots__ = ("index", "messages")

    def __init__(self, messages: list[Any], index: int) -> None:
        self.messages = messages
        self.index = index


#: Parses bytes as they arrive, inside the backend's callback; returns
#: ``None`` when everything that follows is done, else a :class:`Leftover`
#: for the reader task.
OnData = Callable[[bytes], Leftover | None]

#: Asks for the reader task, from inside the backend's callback (where no task
#: can be started) or not: something waits for ``read``.
StartReader = Callable[[], None]


@dataclasses.dataclass(slots=True)
class ByteIO:
    """How the engine reads and writes one connection.

    Attributes:
        read: returns the next bytes (at most the size given), ``b""`` at the
            end of the stream, or a :class:`Leftover` the backend's callback
            handed over; raises the stream's error.
        write: writes bytes; returns once the backend accepted them (flow control).
        close: closes the connection.
        write_now: writes what it can of a frame without waiting and returns
            how many bytes it took; only called when nothing else is queued
            or being written. ``None`` when the backend cannot.
        write_backlog: how many bytes ``write_now`` took but still holds in a
            buffer of its own, if it keeps one.
        set_on_data: installs (or removes, with ``None``) the parser called
            inside the backend's callback as bytes arrive, while the reader
            task waits in ``read``; ``None`` when the backend has no callback.
        parse_in_callback: ``await parse_in_callback(on_data, start_reader)``
            parses in the backend's callback with no reader task at all:
            first what a wrapper of the stream holds and what arrived before,
            then bytes as they arrive. Once something waits for ``read`` (a
            :class:`Leftover`, the end, an error), the backend calls
            ``start_reader()``, once; from then on it behaves as with
            ``set_on_data``. ``read`` reads the stream itself after this call.
            ``None`` when the backend cannot.
        name: the backend, for logs and tests.
    """

    read: Callable[[int], Awaitable[Any]]
    write: Callable[[bytes], Awaitable[None]]
    close: Callable[[], Awaitable[None]]
    write_now: Callable[[bytes], int] | None = None
    write_backlog: Callable[[], int] | None = None
    set_on_data: Callable[[OnData | None], None] | None = None
    parse_in_callback: Callable[[OnData, StartReader], Awaitable[None]] | None = None
    name: str = "generic"
