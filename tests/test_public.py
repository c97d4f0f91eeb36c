"""The public surface: ``__all__`` complete and sorted, the httpx-ws names, the seed names, typing.

Also keeps the API reference (docs/reference.md) listing every public name.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import re
import sys
import types
from pathlib import Path

import httpx_ws
import httpx_ws.transport
import pytest

import streams
import streams.protocol
import streams.transport
import streams.websocket

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "streams"
REFERENCE = ROOT / "docs" / "reference.md"

PUBLIC_MODULES = [streams, streams.protocol, streams.transport, streams.websocket]
WHOLE_MODULES = {"streams.protocol", "streams.transport", "streams.websocket"}
"""The public modules that docs/reference.md documents whole (``::: streams.websocket``)."""


def _ids(modules: list[types.ModuleType]) -> list[str]:
    return [module.__name__ for module in modules]


# --------------------------------------------------------------------------- __all__


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=_ids(PUBLIC_MODULES))
def test_all_is_sorted_without_duplicates(module: types.ModuleType) -> None:
    names = list(module.__all__)
    assert names == sorted(names), f"{module.__name__}.__all__ is not sorted"
    assert len(names) == len(set(names)), f"{module.__name__}.__all__ has duplicates"


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=_ids(PUBLIC_MODULES))
def test_every_name_in_all_is_importable(module: types.ModuleType) -> None:
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"in {module.__name__}.__all__ but not importable: {missing}"


def _public_bindings(path: Path) -> set[str]:
    """Public names a module binds at top level: imports, classes, functions, assignments."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_") and name != "annotations"}


def test_every_name_exported_by_the_package_is_in_all() -> None:
    exported = _public_bindings(PACKAGE / "__init__.py")
    missing = sorted(exported - set(streams.__all__))
    assert not missing, f"streams/__init__.py exports names missing from __all__: {missing}"


def test_public_modules_are_those_the_reference_documents() -> None:
    # A module or subpackage is public when its name has no leading underscore.
    modules = [path.stem for path in PACKAGE.glob("*.py")]
    packages = [path.parent.name for path in PACKAGE.glob("*/__init__.py")]
    public = {name for name in modules + packages if not name.startswith("_")}
    _, documented = _documented()
    assert {f"streams.{name}" for name in public} == documented


def test_py_typed_is_shipped() -> None:
    assert (PACKAGE / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    # The wheel takes the whole package directory, py.typed included.
    assert re.search(r'packages\s*=\s*\["streams"\]', pyproject)
    assert not any("py.typed" in ex for ex in re.findall(r"exclude\s*=\s*\[([^\]]*)\]", pyproject))


# --------------------------------------------------------------------------- httpx-ws names


def test_httpx_ws_names_exist() -> None:
    missing = sorted(set(httpx_ws.__all__) - set(streams.__all__))
    assert not missing, (
        f"httpx-ws names not exported by streams: {missing} "
        "(`from httpx_ws import X` must keep working as `from streams import X`)"
    )


def test_httpx_ws_transport_names_exist() -> None:
    names = [
        name
        for name, value in vars(httpx_ws.transport).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == "httpx_ws.transport"
        and inspect.isclass(value)
    ]
    assert names, "no public class found in httpx_ws.transport"
    missing = sorted(set(names) - set(streams.transport.__all__))
    assert not missing, f"httpx_ws.transport names missing from streams.transport: {missing}"


# --------------------------------------------------------------------------- the seed names

SEED = ROOT.parent / "shared" / "seeds" / "001_3ae2fcd632d7975f.txt"

# The names of the connection manager's reference, with what the reference says they are.
SEED_STATES = {"CONNECTED": 0, "CONNECTING": 1, "DISCONNECTED": 2, "DISCONNECTING": 3}
SEED_PROPERTIES = ["connected", "connecting", "disconnected", "disconnecting"]
SEED_METHODS = {
    "connect": ["url"],
    "disconnect": [],
    "receive": [],
    "send_bytes": ["data"],
    "send_json": ["data"],
}
SEED_PACKETS = {"WebsocketPacketBytes": bytes, "WebsocketPacketJSON": dict}
SEED_SIGNALS = ["DisconnectSignal", "ReconnectSignal", "ResumeSignal"]
SEED_NAMES = ["Websocket", "WebsocketPacket", *SEED_PACKETS, "WebsocketState", *SEED_SIGNALS]


def test_seed_names_are_those_of_the_seed() -> None:
    if not SEED.is_file():
        pytest.skip(f"{SEED} not found (shared/ is beside the project in CI)")
    text = SEED.read_text(encoding="utf-8")
    words = set(re.findall(r"\w+", text))
    listed = set(SEED_NAMES) | set(SEED_STATES) | set(SEED_PROPERTIES) | set(SEED_METHODS)
    assert not listed - words, f"not in the seed: {sorted(listed - words)}"
    # Every CamelCase name of the seed that starts with "Websocket" or ends with "Signal".
    seed_names = {w for w in words if re.fullmatch(r"Websocket\w*|\w+Signal", w)}
    assert seed_names <= set(SEED_NAMES), f"seed names not checked: {seed_names - set(SEED_NAMES)}"


def test_seed_names_exist_in_streams_websocket() -> None:
    missing = [name for name in SEED_NAMES if name not in streams.websocket.__all__]
    assert not missing, f"seed names missing from streams.websocket.__all__: {missing}"


def test_seed_websocket_state_values() -> None:
    state = streams.websocket.WebsocketState
    assert issubclass(state, enum.IntEnum)
    assert {member.name: member.value for member in state} == SEED_STATES


def test_seed_packets_are_dataclasses_with_a_payload() -> None:
    base = streams.websocket.WebsocketPacket
    for name, payload_type in SEED_PACKETS.items():
        cls = getattr(streams.websocket, name)
        assert issubclass(cls, base)
        assert dataclasses.is_dataclass(cls)
        assert [field.name for field in dataclasses.fields(cls)] == ["payload"]
        assert cls(payload_type()).payload == payload_type()


def test_seed_signals_are_exceptions() -> None:
    for name in SEED_SIGNALS:
        assert issubclass(getattr(streams.websocket, name), Exception), name


def test_seed_websocket_members() -> None:
    cls = streams.websocket.Websocket
    assert _required(cls) == [], "Websocket() must work without arguments"
    for name in SEED_PROPERTIES:
        assert isinstance(inspect.getattr_static(cls, name), property), name
    for name, parameters in SEED_METHODS.items():
        method = getattr(cls, name)
        assert inspect.iscoroutinefunction(method), f"Websocket.{name} is not async"
        assert _required(method)[1:] == parameters, f"Websocket.{name} required parameters"


def _required(function: object) -> list[str]:
    """The parameters of ``function`` without a default (``self`` included for a method)."""
    return [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


# --------------------------------------------------------------------------- the API reference


def _documented() -> tuple[set[str], set[str]]:
    """What docs/reference.md documents: ``(names of streams, modules documented whole)``."""
    names: set[str] = set()
    modules: set[str] = set()
    for target in re.findall(r"^:::\s+(\S+)", REFERENCE.read_text(encoding="utf-8"), re.MULTILINE):
        if target in WHOLE_MODULES:
            modules.add(target)
        else:
            assert re.fullmatch(r"streams\.\w+", target), f"unexpected target {target!r}"
            names.add(target.removeprefix("streams."))
    return names, modules


def test_reference_documents_every_public_name() -> None:
    names, modules = _documented()
    # The public modules are documented whole: everything in their __all__.
    assert modules == WHOLE_MODULES
    whole = [sys.modules[name] for name in sorted(modules)]
    missing = [
        name
        for name in streams.__all__
        if name not in names
        # A name re-exported from a module documented whole is documented there.
        and not any(
            name in module.__all__ and getattr(module, name) is getattr(streams, name)
            for module in whole
        )
    ]
    assert not missing, f"add `::: streams.NAME` to docs/reference.md for: {missing}"
    unknown = sorted(names - set(streams.__all__))
    assert not unknown, f"docs/reference.md documents names streams does not export: {unknown}"
