"""The outbox of a reconnecting feed: messages waiting for a connection, and the subscriptions.

It is a deque, not a channel, because it must take back the batch being written
when the connection fails before it is flushed, drop its oldest entry on
overflow and forget superseded subscriptions, which a channel cannot do.
"""

from __future__ import annotations

import builtins
import collections
import dataclasses
import enum
import logging
from collections.abc import Callable
from typing import Any, Literal

import anyio

from ._checks import check_choice, check_int
from ._codec import encode_json, encode_json_text
from ._exceptions import HTTPXWSException
from ._types import JSON_MODES, JSONMode, Message

__all__ = ["FeedSending", "Outbox", "OutboxFullError", "OutboxOverflow"]

logger = logging.getLogger("streams.reconnect")

#: What ``send()`` does when the outbox is full: raise :class:`OutboxFullError`,
#: wait for room, or drop the oldest waiting message (reported as undelivered).
OutboxOverflow = Literal["error", "wait", "drop_oldest"]


class OutboxFullError(HTTPXWSException):
    """The outbox is full (``outbox_overflow="error"``): the message was not accepted.

    Attributes:
        message: the message that was refused.
    """

    def __init__(self, message: Message, size: int) -> None:
        self.message = message
        super().__init__(f"the outbox is full ({size} messages waiting); message not accepted")


class Kind(enum.Enum):
    """What an outbox entry is for."""

    DATA = 0
    SUBSCRIBE = 1
    UNSUBSCRIBE = 2


@dataclasses.dataclass(slots=True, eq=False)
class Entry:
    """One waiting message."""

    message: Message
    kind: Kind


class Outbox:
    """Messages waiting to be written, the batch being written, and the subscriptions.

    Args:
        size: how many messages may wait.
        overflow: what :meth:`put` does when full.
        on_undelivered: called with messages that will never be written.
    """

    def __init__(
        self,
        size: int,
        overflow: OutboxOverflow,
        on_undelivered: Callable[[list[Message]], object] | None,
    ) -> None:
        check_int("outbox_size", size, 1)
        check_choice("outbox_overflow", overflow, ("error", "wait", "drop_oldest"))
        self.size = size
        self.overflow: OutboxOverflow = overflow
        self._on_undelivered = on_undelivered
        self.entries: collections.deque[Entry] = collections.deque()
        self.in_flight: list[Entry] = []
        self.subscriptions: dict[Message, None] = {}
        self.undelivered: list[Message] = []
        self._changed: anyio.Event | None = None

    @property
    def pending(self) -> tuple[Message, ...]:
        """The waiting messages, those being written first."""
        return tuple(entry.message for entry in [*self.in_flight, *self.entries])

    @property
    def empty(self) -> bool:
        """Whether nothing waits and nothing is being written."""
        return not self.entries and not self.in_flight

    async def changed(self) -> None:
        """Wait until the outbox changes."""
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def notify(self) -> None:
        """Wake every :meth:`changed` waiter."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def put(self, entry: Entry, check: Callable[[], None]) -> None:
        """Queue ``entry``, applying the overflow rule; ``check`` raises if the feed ended."""
        while len(self.entries) >= self.size:
            if self.overflow == "error":
                raise OutboxFullError(entry.message, len(self.entries))
            if self.overflow == "drop_oldest":
                self.report_undelivered([self.entries.popleft().message])
                continue
            await self.changed()
            check()
        self.entries.append(entry)
        self.notify()

    def forget(self, message: Message) -> None:
        """Forget a subscription, and drop it if it still waits."""
        self.subscriptions.pop(message, None)
        for entry in [e for e in self.entries if e.kind is Kind.SUBSCRIBE and e.message == message]:
            self.entries.remove(entry)
        self.notify()

    def replayed(self) -> None:
        """The subscriptions were sent again: queued (un)subscriptions are superseded."""
        if any(entry.kind is not Kind.DATA for entry in self.entries):
            self.entries = collections.deque(e for e in self.entries if e.kind is Kind.DATA)
            self.notify()

    def take(self) -> list[Entry]:
        """Take every waiting entry as the batch being written."""
        batch = list(self.entries)
        self.entries.clear()
        self.in_flight = batch
        self.notify()
        return batch

    def written(self, batch: list[Entry], *, flushed: bool) -> None:
        """The batch is done: written, or (not ``flushed``) put back in front."""
        if not flushed:
            self.entries.extendleft(reversed(batch))
        self.in_flight = []
        self.notify()

    def close(self) -> None:
        """Report what is left as undelivered."""
        left = [entry.message for entry in self.entries]
        self.entries.clear()
        if left:
            self.report_undelivered(left)
        self.notify()

    def report_undelivered(self, messages: list[Message]) -> None:
        """Keep ``messages`` as undelivered and tell the application."""
        self.undelivered.extend(messages)
        if self._on_undelivered is not None:
            try:
                self._on_undelivered(list(messages))
            except Exception:
                logger.exception("on_undelivered callback failed")
        else:
            logger.warning("%d message(s) were not delivered", len(messages))


class FeedSending:
    """The sending half of a reconnecting feed: every message goes through its :class:`Outbox`.

    The feed provides ``_outbox`` and ``_check()`` (which raises once the feed ended).
    """

    __slots__ = ()

    _outbox: Outbox

    def _check(self) -> None:
        raise NotImplementedError

    @property
    def outbox_size(self) -> int:
        """How many messages may wait to be written."""
        return self._outbox.size

    @property
    def outbox_overflow(self) -> OutboxOverflow:
        """What ``send`` does when the outbox is full."""
        return self._outbox.overflow

    @property
    def subscriptions(self) -> tuple[Message, ...]:
        """The remembered subscriptions, in the order they are replayed."""
        return tuple(self._outbox.subscriptions)

    @property
    def pending(self) -> tuple[Message, ...]:
        """The messages waiting in the outbox (those being written first)."""
        return self._outbox.pending

    @property
    def undelivered(self) -> list[Message]:
        """Every message that was accepted but never written: dropped by the
        ``drop_oldest`` overflow policy, or still waiting when the feed closed."""
        return list(self._outbox.undelivered)

    async def send(self, message: Message) -> None:
        """Queue a message; it is written as soon as a connection takes it.

        Messages go out in the order they were queued, after the hooks and the
        subscriptions of the connection that writes them. A message leaves the
        outbox once flushed to the network; if the connection breaks first,
        it is written again on the next connection (so a message the server
        had already received may arrive twice).

        Raises:
            OutboxFullError: the outbox is full and ``outbox_overflow="error"``.
            DisconnectSignal: the feed ended because of the policy.
            anyio.ClosedResourceError: the feed was closed.

        Cancelling is safe: with ``outbox_overflow="wait"``, a cancelled call
        queued nothing.
        """
        self._check()
        await self._outbox.put(Entry(message, Kind.DATA), self._check)

    async def send_text(self, data: str) -> None:
        """Queue a text message (see :meth:`send`)."""
        await self.send(str(data))

    async def send_bytes(self, data: builtins.bytes) -> None:
        """Queue a binary message (see :meth:`send`)."""
        await self.send(builtins.bytes(data))

    async def send_json(self, data: Any, mode: JSONMode = "text") -> None:
        """Queue a value as JSON, encoded with msgspec (see :meth:`send`).

        Raises:
            TypeError: msgspec cannot encode ``data``.
        """
        if check_choice("mode", mode, JSON_MODES) == "text":
            await self.send(encode_json_text(data))
        else:
            await self.send(encode_json(data))

    async def subscribe(self, message: Message) -> None:
        """Send a subscription message now (through the outbox) and again after every reconnect.

        Subscribing twice to the same message does nothing the second time.
        After a resume (the server kept the session) subscriptions are not
        sent again.

        Raises:
            OutboxFullError: the outbox is full and ``outbox_overflow="error"``
                (the subscription is then not remembered).
        """
        self._check()
        if message in self._outbox.subscriptions:
            return
        self._outbox.subscriptions[message] = None
        try:
            await self._outbox.put(Entry(message, Kind.SUBSCRIBE), self._check)
        except BaseException:
            self._outbox.subscriptions.pop(message, None)
            raise

    async def unsubscribe(
        self, message: Message, unsubscribe_message: Message | None = None
    ) -> None:
        """Forget a subscription; send ``unsubscribe_message`` (if given) through the outbox.

        A subscription still waiting in the outbox is dropped. The unsubscribe
        message is dropped too if a new connection starts before it is written
        (the new connection never had the subscription).
        """
        self._check()
        self._outbox.forget(message)
        if unsubscribe_message is not None:
            await self._outbox.put(Entry(unsubscribe_message, Kind.UNSUBSCRIBE), self._check)

    async def drain(self) -> None:
        """Wait until every queued message has been written.

        Raises:
            DisconnectSignal: the policy ended the feed before (see :attr:`undelivered`).
            anyio.ClosedResourceError: the feed was closed before.
        """
        while not self._outbox.empty:
            self._check()
            await self._outbox.changed()
