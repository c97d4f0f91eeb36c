"""The session options: one frozen object, its defaults and its checks, built once per connect.

Public functions and constructors keep their explicit, typed keywords (the
seed's signatures, httpx-ws's session constructors); they build one
:class:`SessionOptions`, and every inner layer passes that object along.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ._checks import check_choice, check_int, check_seconds
from ._types import (
    DEFAULT_CLOSE_TIMEOUT_SECONDS,
    DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS,
    DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS,
    DEFAULT_LAG_TIMEOUT_SECONDS,
    DEFAULT_MAX_MESSAGE_SIZE_BYTES,
    DEFAULT_QUEUE_SIZE,
    USE_MAX_MESSAGE_SIZE,
    Overflow,
    UseMaxMessageSize,
)
from .protocol._deflate import DeflateOptions

__all__ = ["DEFAULT_COMPRESSION", "OptionAttributes", "SessionOptions", "unknown_keyword_error"]

#: The compression offered by default: permessage-deflate with its defaults.
DEFAULT_COMPRESSION = DeflateOptions()


_OVERFLOWS: tuple[Overflow, ...] = ("block", "drop_oldest", "drop_newest", "disconnect")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SessionOptions:
    """Every option of a session, checked once.

    Attributes:
        max_message_size_bytes: the largest frame, and the largest message
            received whole, accepted (close 1009 beyond).
        max_fragmented_size_bytes: the largest message accepted in fragments:
            one past ``max_message_size_bytes`` streams, for
            ``receive_fragments()``. ``None``: no limit; the default is
            ``max_message_size_bytes`` (nothing streams).
        queue_size: how many received messages may wait for the consumer
            before the session stops reading the network.
        keepalive_ping_interval_seconds: how often to ping; ``None`` disables keepalive.
        keepalive_ping_timeout_seconds: how long a silent peer is tolerated after a ping.
        close_timeout: how long the closing handshake may take.
        compression: the permessage-deflate offer, or ``None``.
        overflow: what to do when ``queue_size`` messages wait (see :data:`streams.Overflow`).
        lag_timeout: with ``overflow="disconnect"``, how long the queue may stay
            full (``None``: 5 seconds).
        stale_after: how long the session may read no data message before it
            fails with :class:`~streams.WebSocketStaleError`; ``None`` never.
        send_rate: messages per second, or ``(rate, burst)``; sends wait for
            their turn. ``None``: no limit.
        send_rate_counts_pings: whether pings wait for a turn too.

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an option out of range.
    """

    max_message_size_bytes: int = DEFAULT_MAX_MESSAGE_SIZE_BYTES
    max_fragmented_size_bytes: int | UseMaxMessageSize | None = USE_MAX_MESSAGE_SIZE
    queue_size: int = DEFAULT_QUEUE_SIZE
    keepalive_ping_interval_seconds: float | None = DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS
    keepalive_ping_timeout_seconds: float | None = DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT_SECONDS
    compression: DeflateOptions | None = DEFAULT_COMPRESSION
    overflow: Overflow = "block"
    lag_timeout: float | None = None
    stale_after: float | None = None
    send_rate: float | tuple[float, int] | None = None
    send_rate_counts_pings: bool = False

    @property
    def rate_limit(self) -> tuple[float, int] | None:
        """``(rate, burst)`` of ``send_rate``, or ``None``."""
        if self.send_rate is None:
            return None
        if isinstance(self.send_rate, tuple):
            return self.send_rate
        return (self.send_rate, 1)

    @property
    def fragmented_limit(self) -> int | None:
        """The ``max_fragmented_size_bytes`` in force (``None``: no limit)."""
        limit = self.max_fragmented_size_bytes
        return self.max_message_size_bytes if isinstance(limit, UseMaxMessageSize) else limit

    @property
    def lag(self) -> float:
        """The lag timeout in force (with ``overflow="disconnect"``)."""
        return DEFAULT_LAG_TIMEOUT_SECONDS if self.lag_timeout is None else self.lag_timeout

    def __post_init__(self) -> None:
        check_int("max_message_size_bytes", self.max_message_size_bytes, 1)
        fragmented = self.max_fragmented_size_bytes
        if fragmented is not None and not isinstance(fragmented, UseMaxMessageSize):
            if isinstance(fragmented, bool) or not isinstance(fragmented, int):
                raise TypeError(
                    f"max_fragmented_size_bytes must be an int or None, not {fragmented!r}"
                )
            if fragmented < self.max_message_size_bytes:
                raise ValueError(
                    f"max_fragmented_size_bytes ({fragmented}) must be at least"
                    f" max_message_size_bytes ({self.max_message_size_bytes})"
                )
        if self.fragmented_limit != self.max_message_size_bytes and self.overflow in (
            "drop_oldest",
            "drop_newest",
        ):
            raise ValueError(
                f"overflow={self.overflow!r} would drop messages that arrive in parts:"
                " raise max_fragmented_size_bytes only with overflow='block' or 'disconnect'"
            )
        check_int("queue_size", self.queue_size, 0)
        check_seconds("keepalive_ping_interval_seconds", self.keepalive_ping_interval_seconds)
        check_seconds("keepalive_ping_timeout_seconds", self.keepalive_ping_timeout_seconds)
        check_seconds("close_timeout", self.close_timeout, zero=True)
        check_choice("overflow", self.overflow, _OVERFLOWS)
        check_seconds("lag_timeout", self.lag_timeout)
        check_seconds("stale_after", self.stale_after)
        limit = self.send_rate
        if limit is not None:
            rate, burst = limit if isinstance(limit, tuple) else (limit, 1)
            if (
                isinstance(rate, bool)
                or not isinstance(rate, (int, float))
                or not rate > 0
                or isinstance(burst, bool)
                or not isinstance(burst, int)
                or burst < 1
            ):
                raise ValueError(
                    "send_rate must be messages per second (more than 0) or (rate, burst)"
                    f" with an int burst of at least 1, not {limit!r}"
                )
        if self.lag_timeout is not None and self.overflow != "disconnect":
            raise ValueError(
                f"lag_timeout applies only with overflow='disconnect', not {self.overflow!r}"
            )
        if self.overflow != "block" and self.queue_size < 1:
            raise ValueError(f"overflow={self.overflow!r} needs a queue_size of at least 1")
        if self.compression is not None and not isinstance(self.compression, DeflateOptions):
            raise TypeError(
                f"compression must be a streams.DeflateOptions or None, not {self.compression!r}"
            )

    @classmethod
    def pick(cls, values: Mapping[str, Any]) -> SessionOptions:
        """Build from the session options among ``values``, a public signature's ``locals()``.

        Each public function keeps its explicit, typed keywords and builds the
        options with ``SessionOptions.pick(locals())``; an option it does not
        take keeps its default.

        Raises:
            TypeError: an option of the wrong type.
            ValueError: an option out of range.
        """
        return cls(**{name: values[name] for name in option_names() if name in values})

    def replace(self, **changes: Any) -> SessionOptions:
        """Return a copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)


class OptionAttributes:
    """Reads the session options of ``self.options`` as attributes (``client.queue_size``).

    For the classes that open sessions, which stored each option as an
    attribute in earlier versions.
    """

    options: SessionOptions

    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("options")
        if options is not None and name in option_names():
            return getattr(options, name)
        raise AttributeError(name)


def option_names() -> list[str]:
    """The names of the session options, for error messages."""
    return [field.name for field in dataclasses.fields(SessionOptions)]


def unknown_keyword_error(function: str, unknown: str) -> TypeError:
    """The error for a keyword that is neither a session option nor one httpx takes."""
    hint = ""
    if unknown in {"verify", "ssl", "ssl_context", "cert"}:
        hint = (
            " TLS settings belong to the httpx client: pass"
            " client=httpx.AsyncClient(verify=ssl_context) (or httpx.Client for connect_ws);"
            " see the docs' TLS section."
        )
    return TypeError(
        f"{function}() got an unexpected keyword argument {unknown!r}. The session options are"
        f" {', '.join(option_names())}, plus subprotocols and session_class; other keywords go"
        f" to httpx's request (headers, params, cookies, auth, timeout, extensions).{hint}"
    )
