"""The walk's fast path: a run of whole small messages, as a feed sends them."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["small_messages"]


def small_messages(data: bytes, pos: int, n: int, append: Callable[[str | bytes], None]) -> int:
    """Add the run of whole small messages at ``pos`` to the output; return where it ends.

    The common case of a feed, taken in a loop of its own: one unmasked,
    unfragmented text or binary frame of at most 125 bytes after another,
    each a whole message. Returns at the first frame that is anything else
    (or cut short, or invalid UTF-8), for the general walk to judge.
    """
    try:
        while True:
            length = data[pos + 1]
            end = pos + 2 + length
            # A length byte below 126 means a 7-bit length and no mask bit.
            if length > 125 or end > n:
                return pos
            b0 = data[pos]
            if b0 == 0x81:
                append(data[pos + 2 : end].decode())
            elif b0 == 0x82:
                append(data[pos + 2 : end])
            else:
                return pos
            pos = end
    except (IndexError, UnicodeDecodeError):
        return pos
