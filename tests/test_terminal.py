"""The ``streams`` command on a terminal: escaping, the prompt, pretty-printing, the demo's view.

The console and the demo's view are driven with a fake terminal (a ``StringIO`` that says it is
a tty) to check what they write; the command itself runs on a pseudo-terminal, and, where tmux
is installed, in a tmux pane of a given size whose screen is then read back as a person sees it.
"""

from __future__ import annotations

import contextlib
import io
import os
import pty
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from streams._console import Console, escape_controls, screen_rows
from streams._demo import _View
from streams._demo_server import SYMBOLS, Tick
from tests.test_cli import COMMAND, ENV, ROOT, demo_server


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


# --------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain text, ünïcödé, 中文", "plain text, ünïcödé, 中文"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
        ("\x00\x07\x08\r\x7f", "\\x00\\x07\\x08\\x0d\\x7f"),
        ("c1 \x9b31m", "c1 \\x9b31m"),
    ],
)
def test_escape_controls(text: str, escaped: str) -> None:
    assert escape_controls(text) == escaped


def test_screen_rows_count_wrapped_and_wide_lines() -> None:
    assert screen_rows(["a" * 80], 80) == 1
    assert screen_rows(["a" * 81], 80) == 2
    assert screen_rows(["", "x"], 80) == 2
    assert screen_rows(["中" * 40], 80) == 1
    assert screen_rows(["中" * 41], 80) == 2
    assert screen_rows(["\t" * 10], 80) == 1
    assert screen_rows(["\t" * 11], 80) == 2


# --------------------------------------------------------------------------- the console


def test_console_on_a_pipe_prints_lines() -> None:
    out = io.StringIO()
    console = Console(out, interactive=False)
    console.prompt()
    console.show("one")
    console.show('{\n  "a": 1\n}')
    console.close()
    assert out.getvalue() == 'one\n{\n  "a": 1\n}\n'


def test_console_inserts_messages_above_the_line_being_typed() -> None:
    out = FakeTTY()
    console = Console(out, interactive=True)
    console.prompt()
    assert out.getvalue() == "> "
    out.truncate(0)
    out.seek(0)
    console.show("first\nsecond")
    # Save the cursor, make room for two rows, go back up to the prompt's line, insert two
    # lines there (the prompt's line moves down), write the message, restore the cursor.
    assert out.getvalue() == "\x1b7\n\n\x1b[2A\x1b[2L\r< first\r\n  second\x1b8\x1b[2B"


def test_console_counts_the_rows_of_long_lines() -> None:
    out = FakeTTY()
    console = Console(out, interactive=True)
    console.prompt()
    console.show("x" * 100)  # the fake terminal is 80 columns wide: "< " and 100 take 2 rows
    assert "\x1b[2L" in out.getvalue()
    colored = "\x1b[32m" + "y" * 70 + "\x1b[0m"
    console.show(colored, plain="y" * 70)  # colour codes take no room
    assert out.getvalue().endswith("\x1b[1L\r< " + colored + "\x1b8\x1b[1B")


def test_console_before_the_prompt_and_at_the_end() -> None:
    out = FakeTTY()
    console = Console(out, interactive=True)
    console.show("early")
    assert out.getvalue() == "< early\r\n"
    console.prompt()
    console.close()
    assert out.getvalue().endswith("> \r\x1b[2K")


# --------------------------------------------------------------------------- the demo's view


def full_view() -> _View:
    view = _View(messages=12_345_678, batches=12_346, filtered=127_000)
    view.rates = [float(i % 7 + 1) for i in range(200)]
    for i, sym in enumerate(SYMBOLS):
        view.first_px[sym] = 100.0 + 50 * i
        view.last[sym] = Tick(sym, 99_999.99, 10, 123_456_789)
    return view


@pytest.mark.parametrize(("columns", "rows"), [(60, 20), (80, 24), (200, 50), (40, 10), (20, 5)])
def test_demo_view_fits_the_terminal(columns: int, rows: int) -> None:
    lines = full_view().render(columns, rows)
    assert all(len(line) < columns for line in lines), lines
    assert screen_rows(lines, columns) == len(lines) < rows


def test_demo_view_shows_everything_from_60_columns() -> None:
    lines = full_view().render(60, 20)
    text = "\n".join(lines)
    assert "ws.json(Tick)" in lines[0]
    assert lines[1].strip() == ".filter(lambda t: t.px > 0).batch(1000, timeout=0.05)"
    assert "12,345,678" in text
    assert all(f"  {sym} " in text for sym in SYMBOLS)


# --------------------------------------------------------------------------- on a pseudo-terminal


def run_on_pty(*args: str) -> str:
    """Run ``streams ARGS`` with its output on a pseudo-terminal (input a closed pipe)."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [*COMMAND, *args],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=ENV,
        )
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other end is closed
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(timeout=20) == 0
    finally:
        os.close(leader)
    return output.decode().replace("\r\n", "\n")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_terminal_output_is_pretty_and_coloured(uvicorn_websockets_url: str) -> None:
    output = run_on_pty("connect", f"{uvicorn_websockets_url}/json?n=1", "-n", "1")
    assert "\x1b[34;1m" in output  # keys coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", output) == (
        '{\n  "sym": "ABC",\n  "px": 1.5,\n  "seq": 0\n}\n'
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")
def test_color_never_prints_messages_as_received(uvicorn_websockets_url: str) -> None:
    output = run_on_pty(
        "connect", f"{uvicorn_websockets_url}/json?n=1", "-n", "1", "--color", "never"
    )
    assert output == '{"sym":"ABC","px":1.5,"seq":0}\n'


# --------------------------------------------------------------------------- in tmux

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Pane:
    """A detached tmux session of a given size running one command, on a server of its own."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        ).stdout

    def screen(self) -> list[str]:
        """The lines of the screen, as shown (tmux drops the spaces that end a line)."""
        return self.tmux("capture-pane", "-p", "-t", "test").rstrip("\n").split("\n")

    def wait_for(self, condition: Callable[[list[str]], bool], timeout: float = 15) -> list[str]:
        """Read the screen until ``condition`` holds; fail with the screen after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail("the screen never got there:\n" + "\n".join(screen))
            time.sleep(0.05)  # polling the screen: tmux has no event to wait on


@contextlib.contextmanager
def tmux_pane(command: list[str], columns: int, rows: int) -> Iterator[Pane]:
    # A server of its own for each pane: a server that was told to exit may still be going.
    pane = Pane(f"streams-test-{uuid.uuid4().hex[:12]}")
    environment = " ".join(f"{name}={shlex.quote(ENV[name])}" for name in ("PYTHONPATH",))
    shell = f"cd {shlex.quote(str(ROOT))} && {environment} {shlex.join(command)}; sleep 60"
    pane.tmux("new-session", "-d", "-s", "test", "-x", str(columns), "-y", str(rows), shell)
    try:
        yield pane
    finally:
        pane.tmux("kill-server")


@needs_tmux
def test_messages_arrive_above_the_line_being_typed() -> None:
    with demo_server() as (_, url):
        command = [*COMMAND, "connect", url + "/feed?rate=5", "--select", ".seq"]
        with tmux_pane(command, 60, 10) as pane:
            pane.wait_for(lambda screen: "< 0" in screen)
            pane.tmux("send-keys", "-t", "test", "hel")
            # Messages keep arriving: the screen scrolls, the line being typed stays last.
            screen = pane.wait_for(lambda screen: "< 12" in screen)
            lines = [line for line in screen if line]
            assert lines[-1] == "> hel"
            assert all(re.fullmatch(r"< \d+", line) for line in lines[:-1]), screen
            pane.tmux("send-keys", "-t", "test", "lo", "Enter")
            screen = pane.wait_for(lambda screen: "> hello" in screen and screen[-1] == ">")
            # What was sent stays on the screen, marked, among the messages received.
            assert screen.count("> hello") == 1


@needs_tmux
@pytest.mark.parametrize(("columns", "rows"), [(80, 24), (60, 20)])
def test_demo_fits_the_terminal(columns: int, rows: int) -> None:
    with tmux_pane([*COMMAND, "demo", "--seconds", "3"], columns, rows) as pane:
        pane.wait_for(lambda screen: any("ASML" in line for line in screen))
        during = pane.screen()
        screen = pane.wait_for(
            lambda screen: any(line.startswith("Done: ") for line in screen), timeout=30
        )
    for shown in (during, screen):
        # Redrawn in place: the view appears once, however many times it was drawn.
        assert sum(line.startswith("streams demo:") for line in shown) == 1, shown
        assert sum("received" in line for line in shown) == 1, shown
    assert screen[0].startswith("streams demo: ws.json(Tick)")
    assert any(line.rstrip().endswith("closed with code 1000.") for line in screen), screen
