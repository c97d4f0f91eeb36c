"""The ``streams`` command: an interactive client and the demo.

streams connect URL [options]   print what arrives, send what is typed or piped
streams demo [--seconds N]      a local feed and a typed pipeline, live
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import anyio
import anyio.from_thread
import anyio.lowlevel
import httpx
import msgspec

from . import __version__
from ._classify import Failure, classify
from ._connect import aconnect_ws
from ._console import Console, escape_controls
from ._demo_server import DEFAULT_PORT, serve_main
from ._exceptions import WebSocketDisconnect, WebSocketUpgradeError
from ._session import AsyncWebSocketSession

__all__ = ["main"]


_decoder = msgspec.json.Decoder()


class CLIError(Exception):
    """An error reported as one line, with exit status 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streams", description="WebSockets as reactive streams, from the command line."
    )
    parser.add_argument("--debug", action="store_true", help="log the protocol; show tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    connect = commands.add_parser(
        "connect",
        help="connect to a WebSocket server: print messages, send stdin lines",
        description="Print incoming messages (JSON pretty-printed and coloured on a terminal, "
        "as received when piped; control characters escaped) and send each line typed or "
        "piped on stdin. On a terminal, sent lines follow '> ' and received ones '< '. "
        "Ctrl-C closes with 1000.",
    )
    connect.add_argument("url", help="ws://, wss://, http:// or https:// URL")
    connect.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="NAME: VALUE",
        help="an HTTP header for the handshake (repeatable)",
    )
    connect.add_argument(
        "-s",
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="a subprotocol to offer (repeatable)",
    )
    mode = connect.add_mutually_exclusive_group()
    mode.add_argument("--binary", action="store_true", help="send stdin lines as binary messages")
    mode.add_argument(
        "--json", action="store_true", help="check that stdin lines are JSON before sending"
    )
    connect.add_argument(
        "-n", "--count", type=int, metavar="N", help="exit after N messages are printed"
    )
    connect.add_argument(
        "-t", "--timeout", type=float, metavar="SECONDS", help="exit after SECONDS"
    )
    connect.add_argument(
        "--select",
        metavar="PATH",
        help="print only this field of JSON messages, e.g. .data.price or .items[0]",
    )
    connect.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="PATH OP VALUE",
        help="print only JSON messages matching, e.g. '.px > 100' "
        "(ops: == != < <= > >= ~ for 'contains'; repeatable, all must match)",
    )
    connect.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour and pretty-print JSON (auto: when stdout is a terminal)",
    )
    connect.add_argument(
        "--raw",
        action="store_true",
        help="print control characters as received (by default they are escaped, "
        "e.g. ESC as \\x1b, so that a message cannot act on the terminal)",
    )
    connect.add_argument(
        "--insecure", action="store_true", help="do not verify the server's TLS certificate"
    )
    connect.add_argument(
        "--max-size",
        type=int,
        default=16 * 1024 * 1024,
        metavar="BYTES",
        help="largest message accepted (default 16 MiB)",
    )

    demo = commands.add_parser(
        "demo",
        help="run a local feed and a typed pipeline over it (no network needed)",
        description="Serve a made-up ticker feed on 127.0.0.1, consume it with "
        "ws.json(Tick).filter(...).batch(...), show a live view, then a summary. "
        "With --serve, only serve the feed, an echo and a flood endpoint, for "
        "'streams connect' and the documentation's examples, until Ctrl-C.",
    )
    demo.add_argument(
        "--seconds", type=float, default=5.0, help="how long the feed runs (default 5)"
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="serve /feed, /echo and /flood on ws://127.0.0.1:PORT until Ctrl-C",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the port of --serve (default {DEFAULT_PORT}; 0: a free one)",
    )
    return parser


# ------------------------------------------------------------------ selection

_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(-?\d+)\]|\.\"([^\"]*)\"")
_MISSING = object()


def parse_path(path: str) -> list[str | int]:
    """Parse a field path like ``.data.items[0].px`` into keys and indexes.

    Raises:
        CLIError: the path is malformed.
    """
    if path in ("", "."):
        return []
    steps: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            raise CLIError(f"invalid field path {path!r} at {path[pos:]!r}")
        name, index, quoted = match.groups()
        if index is not None:
            steps.append(int(index))
        else:
            steps.append(name if name is not None else quoted)
        pos = match.end()
    return steps


def get_path(value: Any, steps: Sequence[str | int]) -> Any:
    """Follow ``steps`` into ``value``; return a sentinel when a step is missing."""
    for step in steps:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "~": lambda a, b: b in a,
}
_CONDITION = re.compile(r"^\s*(\S+)\s*(==|!=|<=|>=|<|>|~)\s*(.*?)\s*$")


def parse_condition(text: str) -> Callable[[Any], bool]:
    """Parse ``PATH OP VALUE`` into a predicate on decoded JSON.

    VALUE is read as JSON when it is valid JSON (``100``, ``"buy"``, ``true``),
    else as a plain string.

    Raises:
        CLIError: the condition is malformed.
    """
    match = _CONDITION.match(text)
    if match is None:
        raise CLIError(f"invalid condition {text!r}: expected 'PATH OP VALUE', e.g. '.px > 100'")
    path, op, raw = match.groups()
    steps = parse_path(path)
    try:
        expected = json.loads(raw)
    except ValueError:
        expected = raw
    compare = _OPS[op]

    def predicate(value: Any) -> bool:
        actual = get_path(value, steps)
        if actual is _MISSING:
            return False
        try:
            return bool(compare(actual, expected))
        except TypeError:
            return False

    return predicate


# -------------------------------------------------------------------- output

_COLORS = {
    "key": "\x1b[34;1m",
    "str": "\x1b[32m",
    "num": "\x1b[36m",
    "lit": "\x1b[35m",
    "reset": "\x1b[0m",
}
_TOKEN = re.compile(
    r'("(?:[^"\\]|\\.)*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|\b(true|false|null)\b'
)


def colorize(text: str) -> str:
    """Colour pretty-printed JSON for a terminal."""

    def paint(match: re.Match[str]) -> str:
        string, colon, number, literal = match.groups()
        if string is not None:
            kind = "key" if colon else "str"
            return f"{_COLORS[kind]}{string}{_COLORS['reset']}{colon or ''}"
        if number is not None:
            return f"{_COLORS['num']}{number}{_COLORS['reset']}"
        return f"{_COLORS['lit']}{literal}{_COLORS['reset']}"

    return _TOKEN.sub(paint, text)


class Printer:
    """Formats incoming messages for the console.

    Args:
        console: where the messages go.
        pretty: pretty-print JSON, show binary messages as ``<N bytes>`` and hex.
        color: colour pretty-printed JSON.
        raw: print control characters as they came (else escaped: ``\x1b``).
        select: the path of the one field to print, if any.
        where: the conditions a JSON message must meet to be printed.
    """

    def __init__(
        self,
        console: Console,
        *,
        pretty: bool,
        color: bool,
        raw: bool = False,
        select: list[str | int] | None,
        where: list[Callable[[Any], bool]],
    ) -> None:
        self.console = console
        self.pretty = pretty
        self.color = color
        self.raw = raw
        self.select = select
        self.where = where

    def show(self, message: str | bytes) -> bool:
        """Print ``message`` if it passes the filters; return whether it was printed."""
        needs_json = self.pretty or self.select is not None or self.where
        value: Any = _MISSING
        if needs_json:
            try:
                value = _decoder.decode(message)
            except msgspec.DecodeError:
                value = _MISSING
        if self.where or self.select is not None:
            if value is _MISSING:
                return False
            if not all(predicate(value) for predicate in self.where):
                return False
            if self.select is not None:
                value = get_path(value, self.select)
                if value is _MISSING:
                    return False
        colored = False
        if value is not _MISSING and (self.pretty or self.select is not None):
            if self.pretty:
                text = json.dumps(value, indent=2, ensure_ascii=False)
                colored = self.color
            else:
                text = json.dumps(value, ensure_ascii=False)
        elif isinstance(message, bytes):
            text = message.hex() if self.pretty else message.decode("utf-8", "backslashreplace")
            if self.pretty:
                text = f"<{len(message)} bytes> {text}"
        else:
            text = message
        if not self.raw:
            text = escape_controls(text)
        if colored:
            self.console.show(colorize(text), plain=text)
        else:
            self.console.show(text)
        return True


# ------------------------------------------------------------------ commands


async def _send_stdin(
    ws: AsyncWebSocketSession, args: argparse.Namespace, console: Console
) -> None:
    lines, receive = anyio.create_memory_object_stream[str](16)
    token = anyio.lowlevel.current_token()

    def pump() -> None:
        # A daemon thread: blocked in readline(), it never keeps the process alive.
        try:
            for line in sys.stdin:
                anyio.from_thread.run(lines.send, line, token=token)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, RuntimeError):
            return
        try:
            anyio.from_thread.run_sync(lines.close, token=token)
        except RuntimeError:
            pass

    threading.Thread(target=pump, name="streams stdin", daemon=True).start()
    async with receive:
        async for line in receive:
            line = line.rstrip("\r\n")
            if args.binary:
                await ws.send_bytes(line.encode())
            elif args.json:
                try:
                    _decoder.decode(line)
                except msgspec.DecodeError as exc:
                    sys.stderr.write(f"streams: not sent, invalid JSON: {exc}\n")
                else:
                    await ws.send_text(line)
            else:
                await ws.send_text(line)
            console.prompt()


async def _connect(args: argparse.Namespace, out: TextIO) -> int:
    headers: list[tuple[str, str]] = []
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise CLIError(f"invalid header {header!r}: expected 'NAME: VALUE'")
        headers.append((name.strip(), value.strip()))
    select = parse_path(args.select) if args.select is not None else None
    where = [parse_condition(text) for text in args.where]
    tty = out.isatty()
    # --color decides both colour and pretty-printing.
    styled = args.color == "always" or (args.color == "auto" and tty)
    console = Console(out, interactive=tty and _stdin_is_terminal())
    printer = Printer(
        console, pretty=styled, color=styled, raw=args.raw, select=select, where=where
    )

    verify: ssl.SSLContext | bool = not args.insecure
    async with (
        httpx.AsyncClient(verify=verify, timeout=10.0) as client,
        aconnect_ws(
            args.url,
            client,
            subprotocols=args.subprotocol or None,
            headers=headers,
            max_message_size_bytes=args.max_size,
        ) as ws,
    ):
        if tty and ws.subprotocol:
            sys.stderr.write(f"streams: connected, subprotocol {ws.subprotocol}\n")
        elif sys.stderr.isatty():
            sys.stderr.write("streams: connected\n")
        console.prompt()
        printed = 0
        with anyio.move_on_after(args.timeout) as scope:
            async with anyio.create_task_group() as tg:

                async def stop_on_sigint() -> None:
                    with anyio.open_signal_receiver(signal.SIGINT) as signals:
                        async for _ in signals:
                            tg.cancel_scope.cancel()
                            return

                async def send_then_maybe_close() -> None:
                    await _send_stdin(ws, args, console)
                    if args.count is None and args.timeout is None:
                        # stdin is done and nothing else is awaited: close, and
                        # print what arrives until the server's Close frame.
                        await ws.close(1000)

                if sys.platform != "win32":
                    tg.start_soon(stop_on_sigint)
                if not sys.stdin.closed:
                    tg.start_soon(send_then_maybe_close)
                async for message in ws:
                    if printer.show(message):
                        printed += 1
                        if args.count is not None and printed >= args.count:
                            break
                tg.cancel_scope.cancel()
        del scope
        console.close()
        await ws.close(1000)
        if ws.close_code not in (None, 1000, 1001, 1005):
            raise WebSocketDisconnect(ws.close_code or 1006, ws.close_reason)
    return 0


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except ValueError:  # closed
        return False


def _describe(exc: BaseException, url: str) -> str:
    """One line for an error, without a traceback."""
    failure = classify(exc)
    if isinstance(exc, WebSocketUpgradeError):
        status = exc.response.status_code
        if status != 101:
            phrase = exc.response.reason_phrase
            return f"handshake rejected by {url}: HTTP {status} {phrase}".rstrip()
        return f"invalid handshake from {url}: {exc}"
    if failure is Failure.TLS:
        return f"TLS failure connecting to {url}: {exc} (use --insecure to skip verification)"
    if failure is Failure.REFUSED:
        return f"connection refused: {url}"
    if failure is Failure.CONNECT:
        return f"cannot connect to {url}: {exc}"
    if failure is Failure.TIMEOUT:
        return f"timed out connecting to {url}"
    if isinstance(exc, httpx.HTTPError):
        return f"HTTP error with {url}: {exc}"
    if isinstance(exc, WebSocketDisconnect):
        return f"connection closed: code {exc.code}" + (f", {exc.reason}" if exc.reason else "")
    return f"{type(exc).__name__}: {exc}"


def _demo(args: argparse.Namespace) -> int:
    if args.serve:
        try:
            anyio.run(serve_main, args.port)
        except KeyboardInterrupt:
            pass  # Ctrl-C: the way to stop it
        except OSError as exc:
            raise CLIError(
                f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc}"
                " (choose another --port, or 0 for a free one)"
            ) from exc
        return 0
    from ._demo import run_demo

    anyio.run(run_demo, args.seconds)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streams`` command; return its exit status."""
    args = _parser().parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    try:
        if args.command == "demo":
            return _demo(args)
        return anyio.run(_connect, args, sys.stdout)
    except KeyboardInterrupt:
        return 130
    except CLIError as exc:
        sys.stderr.write(f"streams: {exc}\n")
        return 2
    except Exception as exc:
        if args.debug:
            raise
        while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        sys.stderr.write(f"streams: {_describe(exc, getattr(args, 'url', ''))}\n")
        return 1
