"""How the end of a session is reported, the same way by the engine and the sync API.

The first error that ends a session abnormally is the one kept; a session
that ended without one reports the close (``WebSocketDisconnect`` with the
code and reason); a normal close (1000, 1001, 1005) ends an iteration quietly.
"""

from __future__ import annotations

from ._exceptions import HTTPXWSException, WebSocketDisconnect

__all__ = ["NORMAL_CLOSE_CODES", "end_error", "end_of_stream", "first_error"]

#: Close codes after which iterating a session just stops.
NORMAL_CLOSE_CODES = frozenset({1000, 1001, 1005})


def first_error(
    kept: HTTPXWSException | None, error: HTTPXWSException, cause: BaseException | None
) -> HTTPXWSException:
    """The error to keep: ``kept`` if there is one, else ``error`` (caused by ``cause``)."""
    if kept is not None:
        return kept
    if cause is not None:
        error.__cause__ = cause
    return error


def end_error(error: HTTPXWSException | None, ending: tuple[int, str]) -> HTTPXWSException:
    """The exception that reports the end of a session: its error, else the close."""
    return error if error is not None else WebSocketDisconnect(*ending)


def end_of_stream(error: HTTPXWSException) -> None:
    """At the end of the messages: return after a normal close, else raise ``error``."""
    if isinstance(error, WebSocketDisconnect) and error.code in NORMAL_CLOSE_CODES:
        return
    raise error
