"""Every ```python block of the documentation runs, as written, against a real server.

The examples are complete programs. They talk to a server on ``ws://127.0.0.1:8000``: either
they define ``URL`` themselves (``URL = "ws://127.0.0.1:8000/echo"``) or they use a global
``URL``, the server's base address, which the page says is ``"ws://127.0.0.1:8000"``. The test
runs each block as the ``__main__`` module of a process of its own, with ``URL`` set to the test
server's base address and ``127.0.0.1:8000`` replaced by its real port (the endpoints are those
of `tests.servers`: /echo, /flood, /json...). Warnings are errors, as in the test suite. The
processes are forked from one that has already imported the libraries, and several run at once.

Every example runs on both backends: one that calls ``anyio.run(main)`` runs once as written
(asyncio, anyio's default) and once with ``anyio.run`` defaulting to trio. A pytest example (one
that imports pytest and defines ``test_`` functions) is run by pytest, and must itself run its
tests on both backends (an ``anyio_backend`` fixture with both). An example that uses
asyncio-only libraries (aiostream's time operators, uvloop) says so on the line just before its
fence, and runs on asyncio only::

    <!-- asyncio-only: aiostream's timeout is asyncio-only -->
    ```python

A block opts out only with an HTML comment on the line just before its fence, giving the reason::

    <!-- no-run: needs a real market-data feed -->
    ```python

Tracebacks name the Markdown file and its line numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import multiprocessing
import os
import re
import subprocess
import sys
import traceback
import types
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
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
_ASYNCIO_ONLY = re.compile(r"^\s*<!--\s*asyncio-only:\s*(?P<reason>.*?)\s*-->\s*$")
_PYTEST_TEST = re.compile(r"^(async )?def test_", re.MULTILINE)
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
    asyncio_only: str | None = None
    """The reason given by a ``<!-- asyncio-only: ... -->`` comment, or None."""

    @property
    def id(self) -> str:
        return f"{self.page}:{self.index}"

    @property
    def is_pytest(self) -> bool:
        """Whether the block is a pytest module (run by pytest, which picks the backends)."""
        return "import pytest" in self.source and _PYTEST_TEST.search(self.source) is not None

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends the block runs on: "pytest" for a pytest module, which runs both."""
        if self.is_pytest:
            return ("pytest",)
        if self.asyncio_only is not None or "anyio.run(" not in self.source:
            return ("asyncio",)
        return ("asyncio", "trio")


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
            asyncio_only = _ASYNCIO_ONLY.match(previous)
            blocks.append(
                Block(
                    page=path.name,
                    index=len(blocks),
                    line=start + 1,
                    source="\n".join(body) + "\n",
                    no_run=opt_out["reason"] if opt_out else None,
                    asyncio_only=asyncio_only["reason"] if asyncio_only else None,
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
        for backend in block.backends:
            params.append(pytest.param(block, backend, id=f"{block.id}-{backend}", marks=marks))
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
    source: str,
    filename: str,
    first_line: int,
    base_url: str,
    stdout: str,
    stderr: str,
    status: str,
    backend: str = "asyncio",
) -> None:
    """The example's process: run ``source`` as the ``__main__`` module, output to files.

    ``backend`` becomes the default backend of ``anyio.run``; for ``"pytest"``, ``source``
    is a test module, run by pytest. The exit status is also written to the file ``status``.
    """
    code: object = 1
    try:
        _run_example(source, filename, first_line, base_url, stdout, stderr, backend)
        code = 0
    except SystemExit as exc:
        code = exc.code
        raise
    finally:
        number = 0 if code is None else code if isinstance(code, int) else 1
        Path(status).write_text(str(number), encoding="ascii")


def _run_example(
    source: str,
    filename: str,
    first_line: int,
    base_url: str,
    stdout: str,
    stderr: str,
    backend: str,
) -> None:
    for fd, path in ((1, stdout), (2, stderr)):
        file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(file, fd)
        os.close(file)
    if backend == "pytest":
        sys.exit(_run_pytest(source, filename, first_line, stdout))
    if backend != "asyncio":
        anyio.run = functools.partial(anyio.run, backend=backend)  # type: ignore[assignment]
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


def _run_pytest(source: str, filename: str, first_line: int, output: str) -> int:
    """Run the test module ``source`` with pytest, warnings as errors; return pytest's status."""
    directory = Path(output).with_suffix(".pytest")
    directory.mkdir()
    # Padded so that tracebacks give the line numbers of the Markdown page.
    module = directory / "test_example.py"
    module.write_text("\n" * (first_line - 1) + source, encoding="utf-8")
    (directory / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n", encoding="utf-8")
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", str(module)]
    sys.stdout.write(f"{filename}: {' '.join(command[1:])}\n")
    sys.stdout.flush()
    try:
        return subprocess.run(command, timeout=BLOCK_TIMEOUT - 1, check=False).returncode
    except subprocess.TimeoutExpired:
        sys.stderr.write(f"{filename}: pytest did not finish in time\n")
        return 1


def run_block(block: Block, base_url: str, output_dir: Path, backend: str = "asyncio") -> Outcome:
    """Run ``block`` as a program with ``URL`` set to ``base_url``; wait for its end.

    The address the docs use, ``127.0.0.1:8000``, is replaced by the real one. ``backend``
    is the default backend of ``anyio.run``, or ``"pytest"`` to run a test module.
    """
    host_port = base_url.split("://", 1)[1]
    source = block.source.replace(DOCS_HOST, host_port)
    name = f"{block.page}-{block.index}-{backend}"
    stdout = output_dir / f"{name}.out"
    stderr = output_dir / f"{name}.err"
    status = output_dir / f"{name}.status"
    process = _CONTEXT.Process(
        target=_example_main,
        args=(
            source,
            f"docs/{block.page}",
            block.line,
            base_url,
            str(stdout),
            str(stderr),
            str(status),
            backend,
        ),
        # Not daemonic: an example may start processes of its own (docs/many-feeds.md), which
        # a daemonic process may not. Every example is joined, or killed, below.
        daemon=False,
    )
    process.start()
    process.join(BLOCK_TIMEOUT)
    finished = process.exitcode is not None
    if not finished:
        process.kill()
        process.join()
    return Outcome(
        _exit_status(process, status) if finished else None, _read(stdout), _read(stderr)
    )


def _exit_status(process: multiprocessing.process.BaseProcess, status: Path) -> int | None:
    """The example's exit status.

    Under load, the forkserver can lose the status of a process that ended normally and
    report 255 instead (CPython issue 140867); the status the example wrote itself is then
    the one to believe. A process that died before writing it keeps the forkserver's.
    """
    if process.exitcode == 255 and status.exists():
        return int(status.read_text(encoding="ascii"))
    return process.exitcode


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
    selected: list[tuple[Block, str]] = [
        (item.callspec.params["block"], item.callspec.params["backend"])
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.originalname == "test_example_runs"
        and item.callspec.params["block"].no_run is None
        and item.get_closest_marker("skip") is None
    ]
    output_dir = tmp_path_factory.mktemp("docs-examples")
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="docs-example") as executor:
        yield {
            f"{block.id}-{backend}": executor.submit(
                run_block, block, uvicorn_websockets_url, output_dir, backend
            )
            for block, backend in selected
        }
        executor.shutdown(cancel_futures=True)


@pytest.mark.parametrize(("block", "backend"), _example_params())
def test_example_runs(block: Block, backend: str, example_runs: dict[str, Future[Outcome]]) -> None:
    if block.no_run is not None:
        pytest.skip(f"docs/{block.page} line {block.line}: no-run: {block.no_run}")
    outcome = example_runs[f"{block.id}-{backend}"].result()
    where = f"docs/{block.page} block {block.index} (line {block.line}) on {backend}"
    output = f"--- stdout\n{outcome.stdout}--- stderr\n{outcome.stderr}"
    if outcome.returncode is None:
        pytest.fail(
            f"{where} did not finish within {BLOCK_TIMEOUT} s "
            f"(a program that runs for ever needs a no-run comment)\n{output}",
            pytrace=False,
        )
    if outcome.returncode != 0:
        pytest.fail(f"{where} exited with {outcome.returncode}\n{output}", pytrace=False)
    if backend == "pytest":
        # A pytest example runs its tests on both backends (its anyio_backend fixture).
        for name in ("asyncio", "trio"):
            assert f"[{name}] PASSED" in outcome.stdout, f"{where}: no test ran on {name}\n{output}"


# ---------------------------------------------------------------- against streams demo --serve

DEMO_PAGES = ("index.md", "quickstart.md")
"""The pages that send a reader without a server to ``streams demo --serve``."""


@pytest.fixture(scope="module")
def demo_server_url() -> Iterator[str]:
    """``streams demo --serve`` on a free port, as a reader would run it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "streams", "demo", "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(block, id=block.id)
        for block in ALL_BLOCKS
        if block.page in DEMO_PAGES and block.no_run is None
    ],
)
def test_example_runs_against_the_demo_server(
    block: Block, demo_server_url: str, tmp_path: Path
) -> None:
    outcome = run_block(block, demo_server_url, tmp_path)
    output = f"--- stdout\n{outcome.stdout}--- stderr\n{outcome.stderr}"
    assert outcome.returncode == 0, f"docs/{block.page} line {block.line}\n{output}"


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


def test_examples_run_on_both_backends_unless_marked(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nimport anyio\nanyio.run(main)\n```\n"
        "<!-- asyncio-only: uses uvloop -->\n"
        "```python\nimport anyio\nanyio.run(main)\n```\n"
        "```python\nimport pytest\n\n@pytest.mark.anyio\nasync def test_x() -> None: ...\n```\n"
        "```python\nprint('sync')\n```\n",
        encoding="utf-8",
    )
    blocks = python_blocks(page)
    assert [b.backends for b in blocks] == [
        ("asyncio", "trio"),
        ("asyncio",),
        ("pytest",),
        ("asyncio",),
    ]
    assert blocks[1].asyncio_only == "uses uvloop"


def test_trio_run_makes_trio_the_default_of_anyio_run(tmp_path: Path) -> None:
    source = (
        "import anyio, sniffio\n"
        "async def main() -> None:\n"
        "    print(sniffio.current_async_library())\n"
        "anyio.run(main)\n"
    )
    block = Block(page="backend.md", index=0, line=1, source=source, no_run=None)
    for backend in ("asyncio", "trio"):
        outcome = run_block(block, "ws://127.0.0.1:9", tmp_path, backend)
        assert (outcome.returncode, outcome.stdout) == (0, f"{backend}\n"), outcome.stderr


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
    assert "_run_example" not in outcome.stderr


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


def test_the_status_an_example_writes_outlasts_a_lost_one(tmp_path: Path) -> None:
    block = Block(
        page="status.md", index=0, line=1, source="import sys\nsys.exit(3)\n", no_run=None
    )
    outcome = run_block(block, "ws://127.0.0.1:9", tmp_path)
    assert outcome.returncode == 3
    status = tmp_path / "status.md-0-asyncio.status"
    assert status.read_text(encoding="ascii") == "3"

    class Lost:
        exitcode = 255  # what the forkserver reports when it loses a child's status

    assert _exit_status(Lost(), status) == 3  # type: ignore[arg-type]
    status.unlink()
    assert _exit_status(Lost(), status) == 255  # type: ignore[arg-type]


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
