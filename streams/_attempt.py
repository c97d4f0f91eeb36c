"""What every connection attempt of a long-lived face sends: built once, evaluated per attempt.

:class:`~streams.Websocket` and :class:`~streams.ReconnectingWebSocket` build
one :class:`ConnectOptions` from their keywords; the session holder opens
every session with it. ``headers`` and ``params`` may be callables (sync or
async), called again before each attempt, so that a token that expires is
renewed when the connection is made again.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

import httpx

from ._options import SessionOptions
from ._session import AsyncWebSocketSession

__all__ = ["ConnectOptions", "HeadersArg", "ParamsArg"]

#: Request headers, as httpx takes them.
Headers: TypeAlias = httpx.Headers | Mapping[str, str] | Sequence[tuple[str, str]]
#: Query parameters, as httpx takes them.
Params: TypeAlias = httpx.QueryParams | Mapping[str, Any] | Sequence[tuple[str, Any]] | str

#: Headers, or a function (sync or async) called before each attempt that returns them.
HeadersArg: TypeAlias = Headers | Callable[[], Headers | Awaitable[Headers]] | None
#: Query parameters, or a function (sync or async) called before each attempt that returns them.
ParamsArg: TypeAlias = Params | Callable[[], Params | Awaitable[Params]] | None


async def _evaluate(value: Any) -> Any:
    """``value``, or what it returns (awaited if need be) when it is a callable."""
    if callable(value):
        value = value()
        if inspect.isawaitable(value):
            value = await value
    return value


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConnectOptions:
    """How a long-lived face connects: the session options and the upgrade request.

    Attributes:
        session: the session options, checked once.
        subprotocols: the subprotocols to offer.
        session_class: the session class to make.
        headers: the request headers, or a callable evaluated before each attempt.
        params: the query parameters, or a callable evaluated before each attempt.
        request: the other keywords of httpx's request (``cookies``, ``auth``, ``timeout``...).
    """

    session: SessionOptions
    subprotocols: list[str] | None = None
    session_class: type[AsyncWebSocketSession] = AsyncWebSocketSession
    headers: HeadersArg = None
    params: ParamsArg = None
    request: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(
        cls,
        values: Mapping[str, Any],
        request: Mapping[str, Any],
    ) -> ConnectOptions:
        """Build from a public signature's keywords (its ``locals()``) and its other keywords.

        Raises:
            TypeError: an option of the wrong type, or ``session_class`` that
                is not a subclass of :class:`~streams.AsyncWebSocketSession`.
            ValueError: an option out of range.
        """
        request = dict(request)
        session_class = request.pop("session_class", None) or AsyncWebSocketSession
        if not (
            isinstance(session_class, type) and issubclass(session_class, AsyncWebSocketSession)
        ):
            raise TypeError(
                f"session_class must be a subclass of AsyncWebSocketSession, not {session_class!r}"
            )
        return cls(
            session=SessionOptions.pick(values),
            subprotocols=values.get("subprotocols"),
            session_class=session_class,
            headers=values.get("headers"),
            params=values.get("params"),
            request=request,
        )

    async def request_keywords(self) -> dict[str, Any]:
        """The keywords of one attempt's request, ``headers`` and ``params`` evaluated now.

        Raises:
            Exception: whatever a ``headers`` or ``params`` callable raised.
        """
        keywords = dict(self.request)
        for name in ("headers", "params"):
            value = await _evaluate(getattr(self, name))
            if value is not None:
                keywords[name] = value
        return keywords
