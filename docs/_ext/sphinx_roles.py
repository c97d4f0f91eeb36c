"""A griffe extension for the API reference: reStructuredText habits of the docstrings.

The docstrings use Sphinx roles (``:class:`~streams.MessageStream```, ``:meth:`receive_text```)
and ``Example::`` before literal blocks; mkdocstrings renders Markdown. Each role becomes an
optional cross-reference (a link when the target is documented, plain code otherwise), and
``Example::`` becomes ``Example:`` (the indented block after it is already code in Markdown).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(attr|class|data|exc|func|meth|mod|obj):`(~?)([^`<>]+)`")
_CALLABLE_ROLES = frozenset({"func", "meth"})
_LITERAL_MARKER = re.compile(r"(?<=\w)::$(?=\n[ \t]*\n)", re.MULTILINE)
_LITERAL_ALONE = re.compile(r"^[ \t]*::\n(?=[ \t]*\n)", re.MULTILINE)


def _resolve(obj: griffe.Object, name: str) -> str:
    """The full path of ``name`` as seen from ``obj`` (its scope, then its parents')."""
    head, _, rest = name.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            resolved = scope.resolve(head)
        except (griffe.NameResolutionError, KeyError, AttributeError):
            scope = scope.parent
            continue
        return f"{resolved}.{rest}" if rest else resolved
    return name


def _rewrite(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        role, short, target = match.groups()
        shown = target.rsplit(".", 1)[-1] if short else target
        if role in _CALLABLE_ROLES:
            shown += "()"
        identifier = html.escape(_resolve(obj, target), quote=True)
        code = f"<code>{html.escape(shown)}</code>"
        return f'<autoref identifier="{identifier}" optional>{code}</autoref>'

    # "Example::" (or "::" alone) introduces a literal block in reStructuredText.
    text = _LITERAL_MARKER.sub(":", _ROLE.sub(replace, text))
    return _LITERAL_ALONE.sub("", text)


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj, obj.docstring.value)
            stack.extend(member for member in obj.members.values() if not member.is_alias)
