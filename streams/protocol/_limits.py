"""The limits on one message a client receives, and the close reasons that name them.

Both fail the connection with close code 1009 (message too big); the reason
says what went over which limit, in the words of the options.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_FRAGMENTS",
    "FRAGMENT_BYTES",
    "fragmented_too_big",
    "message_too_big",
    "too_many_fragments",
]

#: The frames any message may arrive in (its first frame and its continuation
#: frames), whatever their size; websockets has the same default. Each frame of
#: a message being assembled is kept until the message ends, so a message of
#: millions of empty frames would grow memory without ever reaching the size
#: limit: past this many frames, and one more per :data:`FRAGMENT_BYTES` of
#: payload, the connection fails with close code 1009.
DEFAULT_MAX_FRAGMENTS = 4096

#: Past :data:`DEFAULT_MAX_FRAGMENTS`, the frames of a message must bring this
#: many bytes each on average: what a frame costs to keep stays small next to
#: its payload. A 4 MiB message in 64-byte frames (65,536 of them, as the
#: Autobahn suite sends) is accepted; a flood of empty frames is not.
FRAGMENT_BYTES = 64


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


def fragmented_too_big(limit: int, size: int | None = None) -> str:
    """The reason a message in fragments over ``max_fragmented_size_bytes`` fails the connection.

    Args:
        limit: the limit, in bytes.
        size: the size of the message, when known (``None``: its frames are not all in yet).
    """
    if size is None:
        return f"message of more than {limit} bytes exceeds max_fragmented_size_bytes={limit}"
    return f"message of {size} bytes exceeds max_fragmented_size_bytes={limit}"


def too_many_fragments(count: int, size: int, limit: int) -> str:
    """The reason a message in too many frames fails the connection (close code 1009).

    Args:
        count: the frames of the message so far.
        size: its payload so far, in bytes.
        limit: the frames allowed whatever their size (``max_fragments``).
    """
    return (
        f"too many fragments: {count} frames for {size} bytes,"
        f" over max_fragments={limit} plus one per {FRAGMENT_BYTES} bytes"
    )
