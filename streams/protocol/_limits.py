"""The limits on one message a client receives, and the close reasons that name them.

Both fail the connection with close code 1009 (message too big); the reason
says what went over which limit, in the words of the options.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_FRAGMENTS", "message_too_big", "too_many_fragments"]

#: The most frames one message may arrive in (its first frame and its
#: continuation frames). Each frame of a message being assembled is kept until
#: the message ends, so a message of millions of empty frames would grow memory
#: without ever reaching the size limit; past this many frames the connection
#: fails with close code 1009. websockets has the same default.
DEFAULT_MAX_FRAGMENTS = 4096


def message_too_big(limit: int, size: int | None = None) -> str:
    """The reason a message over the size limit fails the connection (close code 1009).

    Args:
        limit: the size limit, in bytes (the ``max_message_size_bytes`` option).
        size: the size of the message, when known; ``None`` when the message
            is only known to be larger than the limit (its frames are not all
            in yet, or it is compressed and inflating stopped at the limit).
    """
    if size is None:
        return f"message of more than {limit} bytes exceeds max_message_size_bytes={limit}"
    return f"message of {size} bytes exceeds max_message_size_bytes={limit}"


def too_many_fragments(count: int, limit: int) -> str:
    """The reason a message in too many frames fails the connection (close code 1009)."""
    return f"too many fragments: {count} frames in one message, more than max_fragments={limit}"
