"""Measure the hop from a worker process to the main process in the "Many feeds" recipe.

The recipe (docs/many-feeds.md) runs sessions in worker processes, which send their results to
the main process in batches through a pipe; the main process merges them into one async
iterator. This script loads the recipe's code from the page itself (the Python block that
defines ``merged_results``), so it measures exactly what the page shows, with a worker that
sends ready-made ``Result`` batches as fast as it can instead of running sessions: what is left
is the hop (msgpack encoding, the pipe, the wake-up, decoding, the channel).

For each batch size it reports the time per batch and per result, and the main process's CPU
per result: what the hop takes from the consumer's core.

    python benchmarks/workers.py                    # prints a table
    python benchmarks/workers.py --update-docs      # also writes it into docs/many-feeds.md
    python benchmarks/workers.py --results 20000    # fewer results per batch size (quicker)
    python benchmarks/workers.py --backend trio    # one event loop only (default: both)
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
import types
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "many-feeds.md"
START, END = "<!-- workers:start -->", "<!-- workers:end -->"
BATCH_SIZES = (1, 10, 100, 1000)


def load_recipe() -> types.ModuleType:
    """Return the page's program that defines ``merged_results``, run as a module (not main)."""
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
    source = next((b for b in blocks if "def merged_results" in b), None)
    if source is None:
        raise SystemExit(f"{PAGE}: no Python block defines merged_results")
    module = types.ModuleType("many_feeds")
    sys.modules[module.__name__] = module  # for the dataclass-like machinery of msgspec
    exec(compile(source, str(PAGE), "exec"), module.__dict__)
    return module


RECIPE = load_recipe()


def produce(spec: list[int], conn: Connection) -> None:
    """The worker: send ``batches`` batches of ``size`` results, then end (end of file)."""
    size, batches, backend = spec[0], spec[1], ("asyncio", "trio")[spec[2]]
    with conn:
        anyio.run(_produce, size, batches, conn, backend=backend)


async def _produce(size: int, batches: int, conn: Connection) -> None:
    encode = RECIPE.msgspec.msgpack.Encoder().encode
    batch = [RECIPE.Result(0, i, 1.5 * i) for i in range(size)]
    for _ in range(batches):
        # As the recipe's worker does: encode each batch, send it from a thread.
        await anyio.to_thread.run_sync(conn.send_bytes, encode(batch))


async def consume(workers: Any) -> tuple[int, float, float]:
    """Read every batch; return (results, wall seconds, main-process CPU seconds)."""
    count = 0
    async with RECIPE.merged_results(workers) as batches:
        first = True
        async for batch in batches:
            if first:  # the clock starts at the first batch: the worker's start-up is left out
                first = False
                t0, cpu0 = time.perf_counter(), time.process_time()
                continue
            count += len(batch)
    return count, time.perf_counter() - t0, time.process_time() - cpu0


def measure(size: int, results: int, backend: str) -> dict[str, float]:
    batches = max(results // size, 50) + 1  # the first batch is not timed
    workers = RECIPE.Workers([[size, batches, ("asyncio", "trio").index(backend)]], produce)
    try:
        count, seconds, cpu = anyio.run(consume, workers, backend=backend)
    finally:
        workers.close()
    timed_batches = batches - 1
    if count != size * timed_batches:
        raise SystemExit(
            f"batch size {size}: received {count} results, expected {size * timed_batches}"
        )
    return {
        "size": size,
        "batch_us": seconds / timed_batches * 1e6,
        "result_us": seconds / count * 1e6,
        "cpu_result_us": cpu / count * 1e6,
        "per_second": count / seconds,
    }


def table(rows: list[dict[str, Any]], results: int) -> str:
    load = os.getloadavg()[0]
    lines = [
        f"One worker process, the same event loop on both sides, about {results:,} results per row, on "
        f"{platform.python_implementation()} {platform.python_version()} "
        f"({os.cpu_count()} cores, load average {load:.1f} at the end; a shared machine: "
        "take the orders of magnitude, not the digits):",
        "",
        "| loop | results per batch | per batch (µs) | per result (µs) | main process CPU per result (µs) | results/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['size']:,} | {r['batch_us']:,.1f} | {r['result_us']:.2f} | "
            f"{r['cpu_result_us']:.2f} | {r['per_second']:,.0f} |"
        )
    return "\n".join(lines)


def update_docs(text: str) -> None:
    page = PAGE.read_text()
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    PAGE.write_text(f"{head}{START}\n\n{text}\n\n{END}{tail}")
    print(f"updated {PAGE.relative_to(ROOT)}", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--results", type=int, default=200_000, help="results per batch size")
    p.add_argument("--backend", nargs="+", choices=("asyncio", "trio"), default=["asyncio", "trio"])
    p.add_argument("--update-docs", action="store_true", help="write the table into the page")
    a = p.parse_args()
    rows = []
    for backend in a.backend:
        for size in BATCH_SIZES:
            rows.append({"backend": backend, **measure(size, a.results, backend)})
            print(f"{backend}, batch size {size}: done", file=sys.stderr)
    text = table(rows, a.results)
    print(text)
    if a.update_docs:
        update_docs(text)


if __name__ == "__main__":
    main()
