"""Pieces shared by the benchmark server, the clients and the runner.

Nothing here imports a WebSocket library: the clients each import only the library they measure.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

# --------------------------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------------------------

SYMBOLS = ("ABCD", "EFGH", "IJKL", "MNOP", "QRST", "UVWX")


class Tick(msgspec.Struct):
    """The typed form of the JSON messages sent by ``/blast?kind=json``."""

    sym: str
    px: float
    qty: int
    seq: int
    side: str
    ts: int


def json_payload(seq: int) -> bytes:
    """Return one ~80-byte JSON object, different for every ``seq``."""
    sym = SYMBOLS[seq % len(SYMBOLS)]
    px = 100 + (seq * 7919 % 100_000) / 100
    qty = 100 + seq % 900
    side = "buy" if seq % 2 == 0 else "sell"
    ts = 1_700_000_000_000_000 + seq
    return (
        f'{{"sym":"{sym}","px":{px:.2f},"qty":{qty},"seq":{seq},"side":"{side}","ts":{ts}}}'
    ).encode()


def text_payload(seq: int, size: int) -> bytes:
    """Return an ASCII text payload of exactly ``size`` bytes, different for every ``seq``."""
    head = f"{seq:010d}:".encode()
    if size <= len(head):
        return head[:size]
    return head + b"x" * (size - len(head))


def send_text(size: int) -> str:
    """Return the ``size``-byte text message that clients send in the send and echo scenarios."""
    return "m" * size


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One measurement. ``unit`` says what the reported value is, ``higher`` whether more is better.

    ``default`` holds the counts of a default run, ``quick`` those of ``--quick``, ``full`` those of
    ``--full`` (the default counts when None). ``extra`` names a second figure the clients report
    with the value, lower is better: (result key, column title).
    """

    name: str
    title: str
    unit: str
    higher: bool
    default: dict[str, int]
    quick: dict[str, int]
    full: dict[str, int] | None = None
    extra: tuple[str, str] | None = None

    def params(self, mode: str) -> dict[str, int]:
        """The counts of a run in ``mode``: "quick", "default" or "full"."""
        if mode == "quick":
            return self.quick
        if mode == "full" and self.full is not None:
            return self.full
        return self.default


MIB = 1024 * 1024

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "recv_text",
            "Receive 64 B text messages",
            "msg/s",
            True,
            {"n": 200_000, "size": 64},
            {"n": 10_000, "size": 64},
        ),
        Scenario(
            "recv_json",
            "Receive + decode ~80 B JSON to dict",
            "msg/s",
            True,
            {"n": 200_000},
            {"n": 10_000},
        ),
        Scenario(
            "recv_struct",
            "Receive + decode ~80 B JSON to a msgspec Struct",
            "msg/s",
            True,
            {"n": 200_000},
            {"n": 10_000},
        ),
        Scenario(
            "echo",
            "Echo round trip, 32 B, sequential (median)",
            "us",
            False,
            {"n": 20_000, "size": 32},
            {"n": 1_000, "size": 32},
        ),
        Scenario(
            "send_text",
            "Send 64 B text messages",
            "msg/s",
            True,
            {"n": 200_000, "size": 64},
            {"n": 10_000, "size": 64},
        ),
        Scenario(
            "recv_big",
            "Receive 1 MiB binary messages",
            "MB/s",
            True,
            {"n": 200, "size": MIB},
            {"n": 10, "size": MIB},
        ),
        Scenario(
            "send_big",
            "Send 1 MiB binary messages",
            "MB/s",
            True,
            {"n": 200, "size": MIB},
            {"n": 10, "size": MIB},
        ),
        Scenario(
            "idle_memory",
            "Memory per idle session, compression declined",
            "KiB",
            False,
            {"n": 1_000},
            {"n": 100},
            full={"n": 10_000},
            extra=("open_seconds", "open all (s)"),
        ),
        Scenario(
            "idle_deflate",
            "Memory per idle session, permessage-deflate",
            "KiB",
            False,
            {"n": 1_000},
            {"n": 100},
            full={"n": 10_000},
            extra=("open_seconds", "open all (s)"),
        ),
        Scenario(
            "flood_memory",
            "Peak RSS growth under a flood, slow consumer",
            "MiB",
            False,
            {"n": 65_536, "size": 1024, "ms": 2000},
            {"n": 8_192, "size": 1024, "ms": 400},
        ),
    )
}

#: Size of the messages in the flood scenario and the bounded queue the streams client uses there.
FLOOD_QUEUE_SIZE = 16

#: The idle scenarios: every client offers permessage-deflate at its library's defaults; the
#: server declines it in ``idle_memory`` and accepts the offer as made in ``idle_deflate``.
IDLE = ("idle_memory", "idle_deflate")

#: Handshakes in flight at once while a client opens its idle sessions, the same for every library.
HANDSHAKES_IN_FLIGHT = 100

#: File descriptors left free besides one per session (the interpreter, the libraries, the loop).
FD_MARGIN = 100


def blast_path(n: int, size: int, kind: str) -> str:
    return f"/blast?n={n}&size={size}&kind={kind}"


def idle_path(scenario: str) -> str:
    """The server path of an idle scenario: ``/idle``, with ``?deflate=1`` to accept compression."""
    return "/idle?deflate=1" if scenario == "idle_deflate" else "/idle"


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Return the resident set size of this process, in bytes."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def memory_available() -> int:
    """Return the memory the system can still give, in bytes (``MemAvailable``), or 1 TiB."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 40


def settle_rss() -> int:
    """Collect garbage, then return the RSS (used before and after a memory measurement)."""
    gc.collect()
    return rss_bytes()


class RssSampler:
    """Sample the RSS of this process from a thread (works under any event loop, or none)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


class Window:
    """The measured interval: wall clock (for the runner's server-CPU sampling) and process CPU."""

    def __init__(self) -> None:
        self.t0 = self.t1 = 0.0
        self.wall0 = self.wall1 = 0.0
        self.cpu0 = self.cpu1 = 0.0
        self.received: int | None = None  # messages actually received, when it is counted

    def start(self) -> None:
        self.wall0 = time.time()
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        self.t1 = time.perf_counter()
        self.cpu1 = time.process_time()
        self.wall1 = time.time()

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0

    def fields(self) -> dict[str, float]:
        return {
            "seconds": round(self.seconds, 6),
            "wall0": self.wall0,
            "wall1": self.wall1,
            "client_cpu": round(100 * (self.cpu1 - self.cpu0) / max(self.seconds, 1e-9), 1),
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Return the ``q`` quantile (0..1) of an already sorted list (nearest rank)."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def throughput(scenario: str, n: int, size: int, window: Window) -> dict[str, Any]:
    """Build the result fields of a throughput scenario.

    The rate counts the messages actually received; missing ones are reported as ``lost``.
    """
    got = n if window.received is None else window.received
    if got > n:
        raise SystemExit(f"received {got} messages, expected {n}")
    out: dict[str, Any] = {"messages": got, **window.fields()}
    if got < n:
        out["lost"] = n - got
    if scenario in ("recv_big", "send_big"):
        out["value"] = got * size / window.seconds / 1e6
    else:
        out["value"] = got / window.seconds
    return out


def latency(samples_ns: list[int], window: Window) -> dict[str, Any]:
    """Build the result fields of the echo scenario (microseconds)."""
    us = sorted(s / 1000 for s in samples_ns)
    return {
        "messages": len(us),
        "value": percentile(us, 0.5),
        "p99": percentile(us, 0.99),
        **window.fields(),
    }


# --------------------------------------------------------------------------------------------
# Client command line
# --------------------------------------------------------------------------------------------


def client_args(variants: tuple[str, ...]) -> argparse.Namespace:
    """Parse the command line shared by every client script."""
    p = argparse.ArgumentParser()
    p.add_argument(
        "--url",
        required=True,
        help="base URL of the benchmark server, ws://127.0.0.1:PORT or wss://127.0.0.1:PORT",
    )
    p.add_argument(
        "--ca", default=None, help="PEM file of the CA to verify the wss:// server's certificate"
    )
    p.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    p.add_argument("--variant", default=variants[0], choices=variants)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--ms", type=int, default=0, help="duration of the slow consumer (flood_memory)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    random.seed(args.seed)
    raise_open_files()
    return args


def raise_open_files() -> int:
    """Raise the soft limit on open files up to the hard limit; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # a system that caps the soft limit lower (macOS)
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def sessions_that_fit(n: int) -> tuple[int, str | None]:
    """Return how many of ``n`` sessions the open-files limit allows, and a note if fewer.

    Each session holds one socket; :data:`FD_MARGIN` descriptors stay free for the rest.
    """
    limit = raise_open_files()
    in_use = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    room = limit - in_use - FD_MARGIN
    if room >= n:
        return n, None
    fit = max(room, 1)
    return fit, (
        f"open-files hard limit {limit:,} is below {n:,} sessions plus a margin of "
        f"{in_use + FD_MARGIN}: measured {fit:,} sessions (raise it with `ulimit -Hn`)"
    )


def ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """Return the context that verifies the server against ``--ca`` for a wss:// URL, else None."""
    if not args.url.startswith("wss://"):
        return None
    if args.ca is None:
        raise SystemExit("a wss:// URL needs --ca, the PEM file of the server's CA")
    return ssl.create_default_context(cafile=args.ca)


async def open_idle(
    args: argparse.Namespace, library: str, open_one: Callable[[], Awaitable[object]]
) -> None:
    """Open ``--n`` idle sessions with ``open_one`` and report memory per session and time to open.

    ``open_one`` opens one session and returns once its handshake is done, the session staying
    open: it returns an object to keep (a connection, or an entered context manager, never
    exited). One session is opened first and kept, so that first-use costs (imports, caches)
    are not counted. Then :data:`HANDSHAKES_IN_FLIGHT` tasks open the rest, one at a time each:
    the same number of handshakes in flight for every library. The tasks stay alive once done
    (a session entered as a context manager belongs to the task that entered it), so no
    library pays for a task per session. The value is the RSS growth over the sessions after
    they are all open, divided by their number; ``open_seconds`` is the wall time to open them.
    Opening stops early, with a note, once the sessions hold half the memory that was
    available. Reports (and leaves the process) through :func:`emit`.
    """
    import anyio

    n, note = sessions_that_fit(args.n)
    kept: list[object] = [await open_one()]
    await anyio.sleep(0.1)
    before = settle_rss()
    budget = memory_available() // 2
    remaining = n

    openers = min(HANDSHAKES_IN_FLIGHT, n)
    finished = 0
    all_open = anyio.Event()

    async def opener() -> None:
        nonlocal remaining, note, finished
        while remaining > 0:
            remaining -= 1
            kept.append(await open_one())
            if len(kept) % 64 == 0 and rss_bytes() - before > budget:
                if remaining > 0:
                    note = (
                        f"stopped at {len(kept) - 1:,} of {n:,} sessions: they took half the "
                        f"memory available ({budget * 2 / MIB:,.0f} MiB)"
                    )
                remaining = 0
        finished += 1
        if finished == openers:
            all_open.set()
        await anyio.sleep_forever()  # the sessions it entered stay with it

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(openers):
            tg.start_soon(opener)
        await all_open.wait()
        seconds = time.perf_counter() - t0
        await anyio.sleep(0.3)
        after = settle_rss()
        n = len(kept) - 1
        result: dict[str, Any] = {
            "value": (after - before) / n / 1024,
            "open_seconds": round(seconds, 4),
            "sessions": n,
        }
        if note is not None:
            result["note"] = f"{library}, {args.scenario}: {note}"
        emit(args, library, result)  # leaves the process


def emit(args: argparse.Namespace, library: str, result: dict[str, Any]) -> None:
    """Print the one JSON line of results and leave at once (no lingering close handshakes)."""
    line = {
        "library": library,
        "variant": args.variant,
        "scenario": args.scenario,
        "python": sys.version.split()[0],
        **result,
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    os._exit(0)


def run_main(fn: Callable[[], None]) -> None:
    """Run a client's ``main`` and turn any failure into a non-zero exit with a message."""
    try:
        fn()
    except SystemExit:
        raise
    except BaseException as exc:
        traceback.print_exc()
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]  # the runner shows the last line: the first real error
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        sys.stderr.flush()
        os._exit(1)
