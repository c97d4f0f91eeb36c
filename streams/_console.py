"""The terminal side of ``streams connect``: escaping, direction marks, the prompt.

A server's text goes to the user's terminal, so control characters in it are
escaped (``\\x1b`` instead of ESC) unless the user asks for them raw: an
escape sequence from the server could otherwise clear the screen or move the
cursor. On an interactive terminal (standard input and output both
terminals), the line being typed follows a ``> `` prompt and stays on screen
as the record of what was sent; a message that arrives meanwhile is printed
as ``< MESSAGE`` on new lines inserted above the prompt, so the line being
typed is not broken (the terminal keeps it: the prompt's line only moves
down). websockets' command line client does the same.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from typing import TextIO

__all__ = ["Console", "escape_controls", "screen_rows"]

# C0 controls but tab and line feed, DEL, and C1 controls (CSI is \x9b).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

SENT = "> "
"""The prompt, which stays in front of each line sent."""
RECEIVED = "< "
"""In front of each message received."""
_CONTINUED = "  "

_SAVE = "\x1b7"
_RESTORE = "\x1b8"


def escape_controls(text: str) -> str:
    r"""Escape the control characters of ``text`` that act on a terminal: ESC becomes ``\x1b``.

    Tab and line feed are kept.
    """
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _width(line: str) -> int:
    """The columns ``line`` takes on a terminal (wide characters take two)."""
    width = 0
    for char in line:
        if char == "\t":
            width += 8 - width % 8
        elif unicodedata.combining(char):
            continue
        elif unicodedata.east_asian_width(char) in ("W", "F"):
            width += 2
        else:
            width += 1
    return width


def screen_rows(lines: list[str], columns: int) -> int:
    """The rows of a terminal ``columns`` wide that ``lines`` take once wrapped."""
    columns = max(columns, 1)
    return sum(max(1, math.ceil(_width(line) / columns)) for line in lines)


class Console:
    """Where ``streams connect`` writes what arrives.

    Args:
        out: the output.
        interactive: whether the user types at a terminal that is also the
            output: then :meth:`prompt` shows the ``> `` prompt, and
            :meth:`show` prints messages as ``< MESSAGE`` above the line being
            typed.
    """

    def __init__(self, out: TextIO, *, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self._prompted = False

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.out.fileno()).columns
        except (OSError, ValueError):
            return 80

    def prompt(self) -> None:
        """Show the prompt for the next line to send (interactive only)."""
        if self.interactive:
            self.out.write(SENT)
            self.out.flush()
            self._prompted = True

    def show(self, text: str, plain: str | None = None) -> None:
        """Print a message received.

        Args:
            text: the message as it is to be printed (colour included).
            plain: the same without colour, to count the rows it takes;
                ``text`` when ``None``.
        """
        if not self.interactive:
            self.out.write(text + "\n")
            self.out.flush()
            return
        lines = [
            (RECEIVED if i == 0 else _CONTINUED) + line for i, line in enumerate(text.split("\n"))
        ]
        plain_lines = [RECEIVED + line for line in (text if plain is None else plain).split("\n")]
        if not self._prompted:
            self.out.write("\r\n".join(lines) + "\r\n")
            self.out.flush()
            return
        rows = screen_rows(plain_lines, self._columns())
        # Make room below (scrolling at the bottom of the screen), go back to the
        # prompt's line, insert as many blank lines as the message takes (the
        # prompt's line moves down), write the message there, and put the
        # cursor back where it was in the line being typed.
        self.out.write(
            f"{_SAVE}{chr(10) * rows}\x1b[{rows}A\x1b[{rows}L\r"
            + "\r\n".join(lines)
            + f"{_RESTORE}\x1b[{rows}B"
        )
        self.out.flush()

    def close(self) -> None:
        """Clear the prompt's line at the end (interactive only)."""
        if self.interactive and self._prompted:
            self.out.write("\r\x1b[2K")
            self.out.flush()
            self._prompted = False
