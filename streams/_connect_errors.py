"""Clear errors for a connect call: the URL, the keywords, and httpx's errors restated.

httpx's own messages speak of HTTP and are sometimes empty (a timeout, a
refused connection on some backends). Each error raised here keeps httpx's
type (users catch those) and says what happened, where, and what to do;
the original is its ``__cause__``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from ._options import unknown_keyword_error

__all__ = ["check_request_keywords", "http_url", "restated", "safe_url"]

#: A URL that starts with a scheme (RFC 3986 3.1) and an authority.
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def http_url(
    url: httpx.URL | str, client: httpx.AsyncClient | httpx.Client | None = None
) -> httpx.URL:
    """Return ``url`` with ``ws://`` and ``wss://`` turned into ``http://`` and ``https://``.

    A URL with no scheme is taken relative to ``client``'s ``base_url``, if it has one.

    Raises:
        httpx.UnsupportedProtocol: the URL has no scheme, a scheme other than
            ws, wss, http or https, or no host.
        httpx.InvalidURL: the URL cannot be parsed.
    """
    if isinstance(url, str) and _ABSOLUTE.match(url):
        # Opening many sessions to one feed parses its URL once (an absolute
        # URL owes nothing to the client).
        return _absolute_http_url(url)
    return _http_url(url, client)


@functools.lru_cache(maxsize=256)
def _absolute_http_url(url: str) -> httpx.URL:
    return _http_url(url, None)


def _http_url(url: httpx.URL | str, client: httpx.AsyncClient | httpx.Client | None) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise httpx.InvalidURL(f"invalid WebSocket URL {str(url)!r}: {exc}") from exc
    if not parsed.scheme and client is not None and client.base_url.host:
        parsed = client.build_request("GET", parsed).url  # as httpx merges it
    scheme = _SCHEMES.get(parsed.scheme)
    if scheme is None:
        given = f"the scheme {parsed.scheme!r}" if parsed.scheme else "no scheme"
        raise httpx.UnsupportedProtocol(
            f"invalid WebSocket URL {str(url)!r}: it has {given}; use ws://, wss://"
            " (or http://, https://), for example wss://example.com/feed"
        )
    if not parsed.host:
        raise httpx.UnsupportedProtocol(
            f"invalid WebSocket URL {str(url)!r}: it has no host; write it as"
            f" {parsed.scheme}://host[:port]/path"
        )
    return parsed.copy_with(scheme=scheme)


def safe_url(url: httpx.URL) -> str:
    """``url`` without userinfo, query string or fragment, which may hold secrets."""
    scheme = {"http": "ws", "https": "wss"}.get(url.scheme, url.scheme)
    port = f":{url.port}" if url.port else ""
    return f"{scheme}://{url.host}{port}{url.path}"


@functools.cache
def _request_keywords(stream: Callable[..., Any]) -> frozenset[str]:
    parameters = inspect.signature(stream).parameters
    return frozenset(name for name in parameters if name not in ("self", "method", "url"))


def check_request_keywords(
    function: str, client: httpx.AsyncClient | httpx.Client, kwargs: dict[str, Any]
) -> None:
    """Raise a clear TypeError for a keyword neither a session option nor httpx's request takes."""
    accepted = _request_keywords(type(client).stream)
    for name in kwargs:
        if name not in accepted:
            raise unknown_keyword_error(function, name)


def _timeout_name(exc: httpx.TimeoutException) -> str:
    return {
        httpx.ConnectTimeout: "connect",
        httpx.ReadTimeout: "read",
        httpx.WriteTimeout: "write",
        httpx.PoolTimeout: "pool",
    }.get(type(exc), "")


def _root_message(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if str(cause):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    return ""


@contextlib.contextmanager
def restated(url: httpx.URL) -> Iterator[None]:
    """Re-raise httpx's errors of the upgrade request with a message that says what happened.

    - a timeout names the URL, which timeout and its value;
    - a pool timeout also says how to allow more connections;
    - a connect error names host and port, with its root cause's message;
    - a ``ws://`` connection closed before any response hints at ``wss://``.
    """
    where = safe_url(url)
    try:
        yield
    except httpx.TimeoutException as exc:
        name = _timeout_name(exc)
        value = exc.request.extensions.get("timeout", {}).get(name) if _has_request(exc) else None
        seconds = f" of {value} s" if value is not None else ""
        message = f"{where}: the {name} timeout{seconds} expired during the WebSocket handshake"
        if isinstance(exc, httpx.PoolTimeout):
            message += (
                "; every connection of the client's pool is in use (each open session holds"
                " one): raise max_connections, e.g. httpx.Limits(max_connections=None)"
            )
        else:
            message += "; raise it with timeout=httpx.Timeout(...)"
        raise type(exc)(message, request=exc.request) from exc
    except httpx.ConnectError as exc:
        root = _root_message(exc) or "the connection failed"
        message = f"cannot connect to {url.host}:{url.port or _default_port(url)}: {root}"
        raise httpx.ConnectError(message, request=exc.request) from exc
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if url.scheme != "http":
            raise
        root = _root_message(exc) or "the server closed the connection"
        message = (
            f"{where}: {root} before answering the WebSocket handshake; if the server"
            " speaks TLS on this port, use wss://"
        )
        raise type(exc)(message, request=exc.request) from exc


def _has_request(exc: httpx.RequestError) -> bool:
    try:
        exc.request  # noqa: B018
    except RuntimeError:
        return False
    return True


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80
