"""Every ```python block of the documentation runs, as written, against a real server.

The examples are complete programs. They talk to a server on ``ws://127.0.0.1:8000``: either
they define ``URL`` themselves (``URL = "ws://127.0.0.1:8000/echo"``) or they use a global
``URL``, the server's base address, which the page says is ``"ws://127.0.0.1:8000"``. The test
runs each block as the ``__main__`` module of a process of its own, with ``URL`` set to the test
server's base address and ``127.0.0.1:8000`` replaced by its real port (the endpoints are those
of `tests.servers`: /echo, /flood, /json...). Warnings are errors, as in the test suite. The
processes are forked from one that has already imported the libraries, and several run at once.

A block opts out only with an HTML comment on the line just before its fence, giving the reason::

    <!-- no-run: needs a real market-data feed -->
    ```python

Tracebacks name the Markdown file and its line numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import re
import sys
import traceback
import types
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

DOCS_HOST = "127.0.0.1:8000"
"""The server address the examples are written against."""

BLOCK_TIMEOUT = 10.0
"""Seconds one example may take (most take well under one)."""

WORKERS = 3
"""Examples running at the same time."""

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")
_NO_RUN = re.compile(r"^\s*<!--\s*no-run:\s*(?P<reason>.*?)\s*-->\s*$")
_PYTHON = frozenset({"python", "py", "python3"})


@dataclasses.dataclass(frozen=True)
class Block:
    page: str
    index: int
    """Position among the page's Python blocks, from 0."""
    line: int
    """Line number (from 1) of the block's first line of code in the page."""
    source: str
    no_run: str | None
    """The reason given by a ``<!-- no-run: ... -->`` comment, or None."""

    @property
    def id(self) -> str:
        return f"{self.page}:{self.index}"


def python_blocks(path: Path) -> list[Block]:
    """The fenced Python blocks of a Markdown page, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].lower()
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if info in _PYTHON:
            body = [
                line[len(indent) :] if line.startswith(indent) else line
                for line in lines[start:end]
            ]
            previous = lines[i - 1] if i > 0 else ""
            opt_out = _NO_RUN.match(previous)
            blocks.append(
                Block(
                    page=path.name,
                    index=len(blocks),
                    line=start + 1,
                    source="\n".join(body) + "\n",
                    no_run=opt_out["reason"] if opt_out else None,
                )
            )
        i = end + 1
    return blocks


ALL_BLOCKS = [block for page in sorted(DOCS.glob("*.md")) for block in python_blocks(page)]


# Examples that fail as they stand, by page and the start of the SHA-256 of their source. Any
# change to a block makes it run normally again (its entry is then dead and should go).
KNOWN_FAILURES: dict[tuple[str, str], str] = {}
KNOWN_RUNAWAYS: dict[tuple[str, str], str] = {}


def _fingerprint(block: Block) -> str:
    return hashlib.sha256(block.source.encode()).hexdigest()[:12]


def _example_params() -> list[Any]:
    params = []
    for block in ALL_BLOCKS:
        key = (block.page, _fingerprint(block))
        marks: list[pytest.MarkDecorator] = []
        if key in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[key]))
        if key in KNOWN_RUNAWAYS:
            where = f"docs/{block.page} line {block.line}"
            reason = f"{where}: {KNOWN_RUNAWAYS[key]}: it needs a no-run comment"
            marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param(block, id=block.id, marks=marks))
    return params


@dataclasses.dataclass(frozen=True)
class Outcome:
    returncode: int | None
    """The exit status; None if the example did not finish in time (it was killed)."""
    stdout: str
    stderr: str


# Examples run in processes forked from a server process that has already imported the
# libraries they use: most of the cost of a fresh interpreter is importing httpx and the rest.
_CONTEXT = multiprocessing.get_context(
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)
if _CONTEXT.get_start_method() == "forkserver":
    _CONTEXT.set_forkserver_preload(
        ["aiostream", "anyio", "httpx", "msgspec", "streams", "streams.websocket", __name__]
    )


def _example_main(
    source: str, filename: str, first_line: int, base_url: str, stdout: str, stderr: str
) -> None:
    """The example's process: run ``source`` as the ``__main__`` module, output to files."""
    for fd, path in ((1, stdout), (2, stderr)):
        file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(file, fd)
        os.close(file)
    warnings.simplefilter("error")
    main = types.ModuleType("__main__")
    main.__dict__["URL"] = base_url
    sys.modules["__main__"] = main
    sys.argv = [filename]
    try:
        # Padded so that tracebacks give the line numbers of the Markdown page.
        exec(compile("\n" * (first_line - 1) + source, filename, "exec"), main.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        # Reported as the interpreter would, without this function's frame.
        tb = exc.__traceback__
        traceback.print_exception(exc.with_traceback(tb.tb_next if tb else None))
        sys.exit(1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def run_block(block: Block, base_url: str, output_dir: Path) -> Outcome:
    """Run ``block`` as a program with ``URL`` set to ``base_url``; wait for its end.

    The address the docs use, ``127.0.0.1:8000``, is replaced by the real one.
    """
    host_port = base_url.split("://", 1)[1]
    source = block.source.replace(DOCS_HOST, host_port)
    stdout = output_dir / f"{block.page}-{block.index}.out"
    stderr = output_dir / f"{block.page}-{block.index}.err"
    process = _CONTEXT.Process(
        target=_example_main,
        args=(source, f"docs/{block.page}", block.line, base_url, str(stdout), str(stderr)),
        daemon=True,
    )
    process.start()
    process.join(BLOCK_TIMEOUT)
    finished = process.exitcode is not None
    if not finished:
        process.kill()
        process.join()
    return Outcome(process.exitcode if finished else None, _read(stdout), _read(stderr))


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


# --------------------------------------------------------------------------- the examples


@pytest.fixture(scope="module")
def example_runs(
    request: pytest.FixtureRequest,
    uvicorn_websockets_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Future[Outcome]]]:
    """Start every selected example at once, a few at a time; each test waits for its own.

    They are started in collection order, so a test never waits for more than its own example.
    """
    selected = [
        item.callspec.params["block"]
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.originalname == "test_example_runs"
        and item.callspec.params["block"].no_run is None
        and item.get_closest_marker("skip") is None
    ]
    output_dir = tmp_path_factory.mktemp("docs-examples")
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="docs-example") as executor:
        yield {
            block.id: executor.submit(run_block, block, uvicorn_websockets_url, output_dir)
            for block in selected
        }
        executor.shutdown(cancel_futures=True)


@pytest.mark.parametrize("block", _example_params())
def test_example_runs(block: Block, example_runs: dict[str, Future[Outcome]]) -> None:
    if block.no_run is not None:
        pytest.skip(f"docs/{block.page} line {block.line}: no-run: {block.no_run}")
    outcome = example_runs[block.id].result()
    where = f"docs/{block.page} block {block.index} (line {block.line})"
    output = f"--- stdout\n{outcome.stdout}--- stderr\n{outcome.stderr}"
    if outcome.returncode is None:
        pytest.fail(
            f"{where} did not finish within {BLOCK_TIMEOUT} s "
            f"(a program that runs for ever needs a no-run comment)\n{output}",
            pytrace=False,
        )
    if outcome.returncode != 0:
        pytest.fail(f"{where} exited with {outcome.returncode}\n{output}", pytrace=False)


# --------------------------------------------------------------------------- the collector itself


def test_pages_have_examples() -> None:
    pages = {block.page for block in ALL_BLOCKS}
    assert {"index.md", "quickstart.md", "channels.md", "backpressure.md"} <= pages


def test_opt_outs_give_a_reason() -> None:
    for block in ALL_BLOCKS:
        if block.no_run is not None:
            assert block.no_run, f"docs/{block.page} line {block.line}: no-run without a reason"


def test_collector_reads_fences_and_opt_outs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n"
        "```sh\n"
        "streams demo\n"
        "```\n"
        "<!-- no-run: needs a real feed -->\n"
        "```python\n"
        "print(1)\n"
        "```\n"
        "- a list item:\n"
        "\n"
        "    ```python\n"
        "    if True:\n"
        "        print(2)\n"
        "    ```\n"
        "````python\n"
        "print('```')\n"
        "````\n",
        encoding="utf-8",
    )
    blocks = python_blocks(page)
    assert [(b.index, b.line, b.no_run) for b in blocks] == [
        (0, 7, "needs a real feed"),
        (1, 12, None),
        (2, 16, None),
    ]
    assert blocks[1].source == "if True:\n    print(2)\n"
    assert blocks[2].source == "print('```')\n"


def test_tracebacks_name_the_page_and_line(uvicorn_websockets_url: str, tmp_path: Path) -> None:
    block = Block(
        page="example.md",
        index=0,
        line=41,
        source=(
            f'assert URL == "{uvicorn_websockets_url}"\n'
            f'assert "{DOCS_HOST}" != "x"\n'
            "print('before')\n"
            "raise KeyError(URL)\n"
        ),
        no_run=None,
    )
    outcome = run_block(block, uvicorn_websockets_url, tmp_path)
    assert outcome.returncode == 1
    assert outcome.stdout == "before\n"
    # The documented address was replaced by the real one before the block ran.
    assert 'File "docs/example.md", line 44, in <module>' in outcome.stderr
    assert outcome.stderr.rstrip().endswith(f"KeyError: '{uvicorn_websockets_url}'")
    assert "_example_main" not in outcome.stderr


def test_examples_run_as_main_with_warnings_as_errors(tmp_path: Path) -> None:
    source = (
        "import dataclasses, sys, warnings\n"
        "@dataclasses.dataclass\n"
        "class Point:\n"
        "    x: int\n"
        "assert __name__ == '__main__' and sys.modules['__main__'].Point is Point\n"
        "warnings.warn('deprecated', DeprecationWarning)\n"
    )
    block = Block(page="warn.md", index=0, line=1, source=source, no_run=None)
    outcome = run_block(block, "ws://127.0.0.1:9", tmp_path)
    assert outcome.returncode == 1
    assert "DeprecationWarning: deprecated" in outcome.stderr


def test_a_block_that_never_ends_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "BLOCK_TIMEOUT", 2.0)
    block = Block(
        page="forever.md",
        index=0,
        line=1,
        source="import time\nprint('started', flush=True)\ntime.sleep(60)\n",
        no_run=None,
    )
    outcome = run_block(block, "ws://127.0.0.1:9", tmp_path)
    assert outcome.returncode is None
    assert outcome.stdout == "started\n"
