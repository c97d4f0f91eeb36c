"""The worker-process recipe of docs/many-feeds.md: failures, leaving early, backpressure.

The docs tests run the page's program as written (every message of every feed arrives, in order,
on asyncio and trio). These tests take its two pieces, ``Workers`` and ``merged_results``, from
the page and give them workers that fail, never end, or send faster than the consumer reads.

The recipe forks its workers before the event loop starts, from a process with no other thread;
pytest's process has threads (the test servers), so each case runs in a fresh interpreter: this
file run as a script, which prints one JSON line of facts for the test to check.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("asyncio", "trio")


def run_case(case: str, backend: str) -> dict[str, Any]:
    """Run ``case`` in a fresh interpreter on ``backend``; return the facts it printed."""
    done = subprocess.run(
        [sys.executable, "-W", "error", __file__, case, backend],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    facts: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return facts


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failing_worker_raises_after_the_batches_it_sent(backend: str) -> None:
    facts = run_case("failing", backend)
    assert facts["batches"] == 2
    assert facts["error"] == "RuntimeError"
    assert "exited with 1" in facts["message"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_leaving_early_lets_the_workers_end(backend: str) -> None:
    facts = run_case("endless", backend)
    assert facts["batches"] == 3
    assert facts["exitcodes"] == [1, 1]  # BrokenPipeError once the pipes are closed


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_slow_consumer_holds_the_worker_back(backend: str) -> None:
    facts = run_case("slow", backend)
    # Batches are larger than the pipe's buffer: what the worker has sent, when the consumer
    # has taken one batch, is that batch, the channel's buffer (4), the batch the reader holds
    # while waiting for room, and at most one more (counted as it leaves the worker).
    assert facts["sent_by_then"] <= 1 + 4 + 1 + 1
    assert facts["batches"] == facts["total"] == 30  # and then everything arrives


# --------------------------------------------------------------------------- the cases


def load_recipe() -> types.ModuleType:
    """The page's program that defines ``merged_results``, as a module (its main not run)."""
    from tests.test_docs import DOCS, python_blocks

    block = next(b for b in python_blocks(DOCS / "many-feeds.md") if "merged_results" in b.source)
    module = types.ModuleType("many_feeds")
    sys.modules[module.__name__] = module
    exec(compile(block.source, "docs/many-feeds.md", "exec"), module.__dict__)
    return module


BIG = 10_000  # results per batch in the "slow" case: ~150 KB encoded, above a pipe's 64 KiB


def send_batches(spec: list[int], conn: Connection) -> None:
    """Worker: send ``count`` batches of ``size`` results (``count`` -1: for ever), then
    raise if ``fail``; ``sent`` (a shared counter) counts the batches sent."""
    count, size, fail, backend = spec
    recipe = sys.modules["many_feeds"]

    async def run() -> None:
        import anyio

        encode = recipe.msgspec.msgpack.Encoder().encode
        data = encode([recipe.Result(0, i, 0.5) for i in range(size)])
        n = 0
        while count < 0 or n < count:
            await anyio.to_thread.run_sync(conn.send_bytes, data)
            n += 1
            with SENT.get_lock():
                SENT.value += 1
        if fail:
            raise ValueError("the worker's own error")

    import anyio

    with conn:
        anyio.run(run, backend=BACKENDS[backend])


def case(name: str, backend: str) -> dict[str, Any]:
    import anyio

    recipe = load_recipe()
    b = BACKENDS.index(backend)
    specs = {
        "failing": [[2, 10, 1, b]],
        "endless": [[-1, 10, 0, b], [-1, 10, 0, b]],
        "slow": [[30, BIG, 0, b]],
    }[name]
    workers = recipe.Workers(specs, send_batches)
    facts: dict[str, Any] = {"batches": 0}

    async def consume() -> None:
        async with recipe.merged_results(workers) as batches:
            async for _batch in batches:
                facts["batches"] += 1
                if name == "endless" and facts["batches"] == 3:
                    break
                if name == "slow" and facts["batches"] == 1:
                    # No event says "the worker is blocked": give it time to run ahead if it
                    # could, then count what it sent.
                    await anyio.sleep(0.5)
                    facts["sent_by_then"] = SENT.value

    try:
        anyio.run(consume, backend=backend)
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        facts.update(error=type(leaf).__name__, message=str(leaf))
    finally:
        workers.close()
    facts["exitcodes"] = [p.exitcode for p in workers.processes]
    facts["total"] = SENT.value
    return facts


if __name__ == "__main__":
    import multiprocessing

    sys.path.insert(0, str(ROOT))
    SENT = multiprocessing.get_context("fork").Value("i", 0)
    print(json.dumps(case(sys.argv[1], sys.argv[2])))
