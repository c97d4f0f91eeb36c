"""Type aliases and defaults shared by every layer."""

from __future__ import annotations

from typing import Literal, TypeAlias

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT_SECONDS",
    "DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS",
    "DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS",
    "DEFAULT_LAG_TIMEOUT_SECONDS",
    "DEFAULT_MAX_MESSAGE_SIZE_BYTES",
    "DEFAULT_QUEUE_SIZE",
    "JSON_MODES",
    "USE_MAX_MESSAGE_SIZE",
    "JSONMode",
    "Message",
    "Overflow",
    "UseMaxMessageSize",
]

#: A WebSocket message: ``str`` for a text message, ``bytes`` for a binary one.
Message: TypeAlias = str | bytes

#: What a session does when ``queue_size`` messages wait for the consumer:
#: stop reading the socket (``"block"``), drop the oldest waiting message or
#: the new one, or close with 1008 once the queue stayed full ``lag_timeout`` seconds.
Overflow: TypeAlias = Literal["block", "drop_oldest", "drop_newest", "disconnect"]

#: How JSON travels: in text frames (``"text"``) or in binary frames (``"binary"``).
JSONMode: TypeAlias = Literal["text", "binary"]
#: The values of :data:`JSONMode`, for checks.
JSON_MODES: tuple[JSONMode, ...] = ("text", "binary")

DEFAULT_MAX_MESSAGE_SIZE_BYTES = 65_536
DEFAULT_QUEUE_SIZE = 512
DEFAULT_KEEPALIVE_PING_INTERVAL_SECONDS = 20.0
DEFAULT_KEEPALIVE_PING_TIMEOUT_SECONDS = 20.0
DEFAULT_CLOSE_TIMEOUT_SECONDS = 10.0
DEFAULT_LAG_TIMEOUT_SECONDS = 5.0


class UseMaxMessageSize:
    """The type of :data:`USE_MAX_MESSAGE_SIZE`."""

    def __repr__(self) -> str:
        return "USE_MAX_MESSAGE_SIZE"


#: The default of ``max_fragmented_size_bytes``: the value of
#: ``max_message_size_bytes``, so that no message streams unless it is raised.
USE_MAX_MESSAGE_SIZE = UseMaxMessageSize()
