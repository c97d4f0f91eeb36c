"""Autobahn|Testsuite conformance: sections 1-10 of the client cases, against the streams client.

The fuzzing server (kosoku) runs as a subprocess on 127.0.0.1; the runner is
``benchmarks/autobahn.py`` (see docs/conformance.md). About 15 s per backend.
The ``conformance`` marker selects it alone::

    pytest -m conformance tests/test_autobahn.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.conformance, pytest.mark.anyio]

RUNNER_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "autobahn.py"

#: The client cases of sections 1 to 10 (section 8 has none).
CASES_IN_SECTIONS_1_TO_10 = 301


def load_runner() -> ModuleType:
    """Import benchmarks/autobahn.py (a script, not a package module)."""
    name = "streams_autobahn_runner"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, RUNNER_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(300)
async def test_sections_1_to_10_are_ok(tmp_path: Path) -> None:
    runner = load_runner()
    summary = await runner.run_suite(
        client="streams",
        include=runner.section_globs(runner.parse_sections("1-10")),
        agent="streams",
        outdir=tmp_path,
    )
    assert len(summary.cases) == CASES_IN_SECTIONS_1_TO_10
    if not summary.passed():
        pytest.fail(
            "Autobahn cases not OK (nor INFORMATIONAL), or client errors:\n"
            f"{runner.render_table(summary)}\n{runner.render_not_ok(summary)}",
            pytrace=False,
        )
