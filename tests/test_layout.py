"""The layers keep their rules: checked by reading the imports of every module in ``streams/``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "streams"
# The module of httpx-ws's event-based API may take wsproto's event classes.
EVENT_API = PACKAGE / "_session.py"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute module an ``import`` or ``from ... import`` names, with its line.

    Imports under ``if TYPE_CHECKING:`` and inside functions count too.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def modules_outside_protocol() -> list[Path]:
    return [
        path for path in sorted(PACKAGE.rglob("*.py")) if (PACKAGE / "protocol") not in path.parents
    ]


def test_the_scan_finds_imports_under_type_checking(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from wsproto.extensions import Extension\n"
        "def f():\n"
        "    import wsproto\n"
    )
    assert [name for _, name in imported_modules(module)] == [
        "typing",
        "wsproto.extensions",
        "wsproto",
    ]


@pytest.mark.parametrize(
    "path", modules_outside_protocol(), ids=lambda path: str(path.relative_to(PACKAGE))
)
def test_wsproto_is_imported_only_in_the_protocol_package(path: Path) -> None:
    for line, module in imported_modules(path):
        if module != "wsproto" and not module.startswith("wsproto."):
            continue
        if path == EVENT_API and module == "wsproto.events":
            continue
        raise AssertionError(
            f"streams/{path.relative_to(PACKAGE)}:{line} imports {module}: wsproto belongs in"
            " streams/protocol/ (take its names from streams.protocol._wsproto)"
        )
