"""wsproto's connection before it is made, for a protocol core that makes it on first use.

Most frames never reach wsproto (see :mod:`streams.protocol._connection`), and
an idle session never needs it: its objects (a deque of events, a parser
generator, decoders: about 2 KiB) are made only for what wsproto does, a
control frame, a compressed message, a frame the walk leaves to it, a Close.
Until then the protocol's ``_conn`` is :data:`NOT_MADE`, whose ``state`` is
the one a new connection starts in, so that reading the state makes nothing.
"""

from __future__ import annotations

from wsproto.connection import ConnectionState

__all__ = ["NOT_MADE", "NotMade"]


class NotMade:
    """The state of a wsproto connection not made yet: open."""

    __slots__ = ()

    state = ConnectionState.OPEN


#: Shared by every protocol core whose wsproto connection is not made yet.
NOT_MADE = NotMade()
