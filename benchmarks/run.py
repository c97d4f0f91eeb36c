"""Run the whole benchmark suite with one command and write the results.

    python benchmarks/run.py                 # default: 5 runs, writes docs/benchmarks/
    python benchmarks/run.py --full          # the same with 10,000 idle sessions (not 1,000)
    python benchmarks/run.py --quick         # smoke test: small counts, 1 run, under a minute
    python benchmarks/run.py --runs 7 --scenario recv_text echo --clients streams websockets
    python benchmarks/run.py --quick --transport wss   # wss:// only

The server (benchmarks/server.py) runs in its own process, listening for ws:// and, with a
throwaway CA made by trustme for the run, for wss://; every client verifies its certificate.
Every measurement runs a fresh client process. With two CPUs or more, the server is pinned to
one CPU and the clients to another. Clients are interleaved run by run (run 1 of every client on
every transport, then run 2, ...), so a slow minute on a shared machine hits every client alike;
ratios to websockets and to picows are computed within each run and transport, then summarised
by their median.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import HANDSHAKES_IN_FLIGHT, IDLE, SCENARIOS, Scenario  # noqa: E402

MEMORY = (*IDLE, "flood_memory")
TRANSPORTS = ("ws", "wss")
#: The chart of each transport, in the output folder.
CHART_FILES = {"ws": "chart.png", "wss": "chart-wss.png"}


@dataclass(frozen=True)
class Client:
    id: str
    script: str
    variant: str
    label: str
    memory: bool = True  # runs the memory scenarios
    default: bool = True
    only: tuple[str, ...] = ()  # if set, the only scenarios it runs

    def runs(self, scenario: str) -> bool:
        """Whether this client takes part in ``scenario``."""
        if self.only:
            return scenario in self.only
        return self.memory or scenario not in MEMORY


CLIENTS: dict[str, Client] = {
    c.id: c
    for c in (
        Client("raw", "client_raw.py", "sync", "raw socket (reference)", memory=False),
        Client("picows", "client_picows.py", "asyncio", "picows"),
        Client("websockets", "client_websockets.py", "asyncio", "websockets"),
        Client(
            "websockets-sync", "client_websockets.py", "sync", "websockets (sync)", memory=False
        ),
        Client("aiohttp", "client_aiohttp.py", "asyncio", "aiohttp"),
        Client("httpx-ws", "client_httpx_ws.py", "asyncio", "httpx-ws"),
        Client("streams", "client_streams.py", "asyncio", "streams (asyncio)"),
        # The idle scenarios only (elsewhere every streams session has its own client already).
        Client("streams-each", "client_streams.py", "each", "streams (a client each)", only=IDLE),
        Client("streams-trio", "client_streams.py", "trio", "streams (trio)"),
        Client("streams-uvloop", "client_streams.py", "uvloop", "streams (uvloop)"),
        Client("streams-sync", "client_streams.py", "sync", "streams (sync)", memory=False),
        # Not in the default set: more rows, same story.
        Client("httpx-ws-trio", "client_httpx_ws.py", "trio", "httpx-ws (trio)", default=False),
        Client("picows-uvloop", "client_picows.py", "uvloop", "picows (uvloop)", default=False),
        Client(
            "websockets-uvloop",
            "client_websockets.py",
            "uvloop",
            "websockets (uvloop)",
            default=False,
        ),
        Client("aiohttp-uvloop", "client_aiohttp.py", "uvloop", "aiohttp (uvloop)", default=False),
    )
}

#: A result is flagged as limited by the server when the server used at least this much CPU.
SERVER_BOUND_CPU = 90.0


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def probe(code: str) -> bool:
    """Return whether ``code`` runs without error in a fresh interpreter."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=False)
    return r.returncode == 0


def available_clients(wanted: list[str], explicit: bool) -> tuple[list[Client], list[str]]:
    notes: list[str] = []
    have_streams = probe("import streams; streams.aconnect_ws")
    have_sync = have_streams and probe("import streams; streams.connect_ws")
    have_uvloop = importlib.util.find_spec("uvloop") is not None
    out = []
    for cid in wanted:
        c = CLIENTS[cid]
        if c.id.startswith("streams") and not have_streams:
            notes.append(f"{c.label}: skipped, `streams.aconnect_ws` is not importable")
            continue
        if c.variant == "sync" and c.id.startswith("streams") and not have_sync:
            notes.append(f"{c.label}: skipped, streams has no sync API (`streams.connect_ws`)")
            continue
        if c.id == "websockets-sync" and not have_sync and not explicit:
            # Only there as the partner of streams' sync API.
            continue
        if c.variant == "uvloop" and not have_uvloop:
            notes.append(f"{c.label}: skipped, uvloop is not installed")
            continue
        out.append(c)
    return out, notes


# --------------------------------------------------------------------------------------------
# Server and its CPU
# --------------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def pick_cpus(enabled: bool) -> tuple[int, int] | None:
    """Return (server CPU, client CPU), or None when pinning is off or there is one CPU."""
    if not enabled or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def pinning_text(cpus: tuple[int, int] | None, enabled: bool) -> str:
    if cpus is not None:
        return f"server pinned to CPU {cpus[0]}, clients to CPU {cpus[1]}"
    if not enabled:
        return "not pinned (--no-pin)"
    return "not pinned (fewer than 2 CPUs available)"


class Tls:
    """A throwaway CA (trustme) and a certificate for 127.0.0.1, as PEM files in a temp folder."""

    def __init__(self) -> None:
        import trustme

        self._dir = tempfile.TemporaryDirectory(prefix="streams-bench-tls-")
        folder = Path(self._dir.name)
        ca = trustme.CA()
        self.ca = str(folder / "ca.pem")
        self.server_pem = str(folder / "server.pem")
        ca.cert_pem.write_to_path(self.ca)
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
            self.server_pem
        )

    def cleanup(self) -> None:
        self._dir.cleanup()


class Server:
    """The benchmark server process, with a thread sampling its CPU time.

    It listens for ws://, and for wss:// too when given ``tls``; pinned to ``cpu`` if given.
    """

    def __init__(self, tls: Tls | None, cpu: int | None) -> None:
        cmd = [sys.executable, str(HERE / "server.py")]
        if tls is not None:
            cmd += ["--tls", tls.server_pem]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        if cpu is not None:
            os.sched_setaffinity(self.proc.pid, {cpu})
        assert self.proc.stdout is not None
        self.urls: dict[str, str] = {}
        for scheme, tag in (("ws", "PORT"), ("wss", "TLS_PORT"))[: 2 if tls else 1]:
            line = self.proc.stdout.readline()
            if not line.startswith(tag + " "):
                self.proc.kill()
                raise SystemExit(f"the benchmark server did not start: {line!r}")
            self.urls[scheme] = f"{scheme}://127.0.0.1:{int(line.split()[1])}"
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), proc_cpu_seconds(self.proc.pid)))
            except (OSError, IndexError, ValueError):
                return
            self._stop.wait(0.01)
            if len(self.samples) > 200_000:
                del self.samples[:100_000]

    def cpu_percent(self, wall0: float, wall1: float) -> float | None:
        """Return the server's CPU use during [wall0, wall1], if the window is long enough."""
        inside = [s for s in self.samples[-20_000:] if wall0 <= s[0] <= wall1]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.1:
            return None
        (ta, ca), (tb, cb) = inside[0], inside[-1]
        return 100 * (cb - ca) / (tb - ta)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


@dataclass
class Cell:
    """The results of one client in one scenario, one entry per run."""

    values: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    extra: list[float] = field(default_factory=list)  # the scenario's second figure
    extra_by_run: dict[int, float] = field(default_factory=dict)
    client_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    by_run: dict[int, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    skip: str | None = None


def record(cell: Cell, res: dict[str, Any], notes: list[str]) -> None:
    """Add one client result to its cell."""
    if res.get("note") and res["note"] not in notes:
        notes.append(res["note"])
    if "skip" in res:
        cell.skip = res["skip"]
    elif "error" in res:
        cell.errors.append(res["error"])
    else:
        cell.values.append(res["value"])
        cell.lost.append(res.get("lost", 0))
        cell.by_run[res["run"]] = res["value"]
        if "p99" in res:
            cell.p99.append(res["p99"])
        scenario = SCENARIOS.get(res.get("scenario", ""))
        if scenario is not None and scenario.extra and scenario.extra[0] in res:
            cell.extra.append(res[scenario.extra[0]])
            cell.extra_by_run[res["run"]] = res[scenario.extra[0]]
        if res.get("client_cpu") is not None:
            cell.client_cpu.append(res["client_cpu"])
        if res.get("server_cpu") is not None:
            cell.server_cpu.append(res["server_cpu"])


def run_client(
    server: Server,
    transport: str,
    ca: str | None,
    client: Client,
    scenario: Scenario,
    params: dict[str, int],
    timeout: float,
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(HERE / client.script),
        "--url",
        server.urls[transport],
        *(["--ca", ca] if transport == "wss" and ca else []),
        "--variant",
        client.variant,
        "--scenario",
        scenario.name,
    ]
    for k, v in params.items():
        cmd += [f"--{k}", str(v)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        err = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {r.returncode}: {err[:200]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    if "wall0" in result:
        result["server_cpu"] = server.cpu_percent(result["wall0"], result["wall1"])
    return result


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "ratio":
        return f"{v:.2f}x"
    if abs(v) >= 100_000:
        return f"{v / 1000:,.0f}k"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def advantage(value: float, ref: float, higher: bool) -> float:
    """How many times better than the reference (> 1 is better), whatever the unit's direction."""
    return value / ref if higher else ref / value


def wait_quiet(limit: float) -> None:
    deadline = time.monotonic() + limit
    while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
        print(f"waiting for a quiet machine (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
        time.sleep(10)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="small counts and 1 run (smoke test, < 1 min)"
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="the large counts where a scenario has them: 10,000 idle sessions (default 1,000)",
    )
    p.add_argument(
        "--runs", type=int, default=None, help="runs per client and scenario (default 5, quick 1)"
    )
    p.add_argument("--scenario", nargs="+", choices=sorted(SCENARIOS), default=None, metavar="NAME")
    p.add_argument("--clients", nargs="+", choices=sorted(CLIENTS), default=None, metavar="NAME")
    p.add_argument(
        "--transport",
        nargs="+",
        choices=TRANSPORTS,
        default=None,
        help="ws (plain), wss (TLS, a throwaway CA every client verifies); default both",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server and the clients to separate CPUs",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where results.md and the charts go (default docs/benchmarks, or a temporary folder with --quick)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write every raw result line here")
    p.add_argument(
        "--replot",
        type=Path,
        default=None,
        metavar="JSON",
        help="run nothing: rebuild results.md and the charts from a file written by --json",
    )
    p.add_argument("--no-chart", action="store_true")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait (at most this long) until the 1-minute load average is below 1",
    )
    a = p.parse_args()
    if a.quick and a.full:
        p.error("--quick and --full exclude each other")
    mode = "quick" if a.quick else "full" if a.full else "default"
    if a.replot:
        replot(a.replot, a.out or ROOT / "docs" / "benchmarks", a.no_chart)
        return

    runs = a.runs or (1 if a.quick else 5)
    scenario_names = a.scenario or list(SCENARIOS)
    wanted = a.clients or [c.id for c in CLIENTS.values() if c.default]
    out_dir = a.out or (
        Path(tempfile.gettempdir()) / "streams-bench-quick"
        if a.quick
        else ROOT / "docs" / "benchmarks"
    )
    clients, notes = available_clients(wanted, explicit=a.clients is not None)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    transports = [t for t in TRANSPORTS if t in (a.transport or TRANSPORTS)]
    if "wss" in transports and importlib.util.find_spec("trustme") is None:
        if a.transport:
            raise SystemExit("the wss:// scenarios need trustme: pip install trustme")
        transports.remove("wss")
        notes.append("wss:// skipped: trustme, which makes its certificates, is not installed")
        print(f"note: {notes[-1]}", file=sys.stderr)
    if a.wait_quiet > 0:
        wait_quiet(a.wait_quiet)
    cpus = pick_cpus(not a.no_pin)
    if cpus is not None:
        # This process and so every client it starts run on one CPU, the server on another.
        os.sched_setaffinity(0, {cpus[1]})
    tls = Tls() if "wss" in transports else None
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    server = Server(tls, cpus[0] if cpus else None)
    cells: dict[str, dict[tuple[str, str], Cell]] = {
        t: {(c.id, s): Cell() for c in clients for s in scenario_names} for t in transports
    }
    raw_lines: list[dict[str, Any]] = []
    timeout = 60.0 if a.quick else 300.0
    t_start = time.monotonic()
    try:
        for run in range(runs):
            # Rotate the order each run, so that no client always goes first or last.
            order = clients[run % len(clients) :] + clients[: run % len(clients)]
            for name in scenario_names:
                scenario = SCENARIOS[name]
                params = scenario.params(mode)
                for t in transports:
                    for c in order:
                        cell = cells[t][(c.id, name)]
                        if cell.skip or not c.runs(name):
                            cell.skip = cell.skip or "n/a"
                            continue
                        if not server.alive():
                            raise SystemExit("the benchmark server died")
                        ca = tls.ca if tls else None
                        # Opening idle sessions takes time in proportion: allow 0.1 s each.
                        limit = timeout + (params["n"] * 0.1 if name in IDLE else 0)
                        res = run_client(server, t, ca, c, scenario, params, limit)
                        res.update(client=c.id, scenario=name, run=run, transport=t)
                        raw_lines.append(res)
                        record(cell, res, notes)
                        if "error" in res:
                            print(f"  {c.id} {name} {t}: {res['error']}", file=sys.stderr)
                        elif res.get("lost"):
                            print(
                                f"  {c.id} {name} {t}: lost {res['lost']} messages",
                                file=sys.stderr,
                            )
                print(
                    f"run {run + 1}/{runs} {name} done ({time.monotonic() - t_start:.0f} s)",
                    file=sys.stderr,
                )
    finally:
        server.stop()
        if tls is not None:
            tls.cleanup()
    elapsed = time.monotonic() - t_start

    env = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": f"{cpu_model()}, {os.cpu_count()} logical cores",
        "os": f"{platform.system()} {platform.release()}",
        "load": f"{load_before[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end",
        "runs": runs,
        "mode": mode,
        "cpus": pinning_text(cpus, not a.no_pin),
        "elapsed": elapsed,
        "versions": {
            d: version(d)
            for d in (
                "streams",
                "websockets",
                "aiohttp",
                "httpx-ws",
                "picows",
                "httpx",
                "wsproto",
                "anyio",
                "trio",
                "msgspec",
                "uvloop",
            )
        },
    }
    if a.json:
        header = {
            "env": env,
            "clients": [c.id for c in clients],
            "scenarios": scenario_names,
            "transports": transports,
        }
        header.update(quick=a.quick, mode=mode, notes=notes)
        a.json.write_text("".join(json.dumps(x) + "\n" for x in [header, *raw_lines]))
    write_outputs(out_dir, env, clients, scenario_names, cells, mode, notes, a.no_chart)


def write_outputs(
    out_dir: Path,
    env: dict[str, Any],
    clients: list[Client],
    names: list[str],
    cells: dict[str, dict[tuple[str, str], Cell]],
    mode: str,
    notes: list[str],
    no_chart: bool,
) -> None:
    md = render(env, clients, names, cells, mode, notes)
    print(md)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.md").write_text(md)
    print(f"wrote {out_dir / 'results.md'}", file=sys.stderr)
    if not no_chart:
        for t, by_client in cells.items():
            path = out_dir / CHART_FILES[t]
            chart(path, env, clients, names, by_client, transport=f"{t}://")
            print(f"wrote {path}", file=sys.stderr)
    docs = ROOT / "docs"
    if out_dir.resolve() == (docs / "benchmarks").resolve() and inline_results(
        docs / "performance.md", md
    ):
        print("updated the results section of docs/performance.md", file=sys.stderr)


def replot(path: Path, out_dir: Path, no_chart: bool) -> None:
    """Rebuild the outputs from the raw results of an earlier run (``--json``)."""
    header, *lines = (json.loads(ln) for ln in path.read_text().splitlines() if ln.strip())
    clients = [CLIENTS[c] for c in header["clients"]]
    names = header["scenarios"]
    notes = list(header.get("notes", []))
    transports = header.get("transports", ["ws"])  # files written before wss:// was measured
    cells = {t: {(c.id, s): Cell() for c in clients for s in names} for t in transports}
    for t in transports:
        for c in clients:
            for s in names:
                if not c.runs(s):
                    cells[t][(c.id, s)].skip = "n/a"
    for res in lines:
        record(cells[res.get("transport", "ws")][(res["client"], res["scenario"])], res, notes)
    mode = header.get("mode") or ("quick" if header["quick"] else "default")
    write_outputs(out_dir, header["env"], clients, names, cells, mode, notes, no_chart)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


START, END = "<!-- results:start -->", "<!-- results:end -->"


def inline_results(page: Path, md: str) -> bool:
    """Copy the results between the markers of ``page``, if present (no title, headings one level
    down, so that they sit under the page's own "Results" heading)."""
    try:
        text = page.read_text()
    except OSError:
        return False
    if START not in text or END not in text:
        return False
    lines = [ln for ln in md.strip().splitlines() if not ln.startswith("# ")]  # drop the title
    body = "\n".join("#" + ln if ln.startswith("#") else ln for ln in lines).strip()
    for name in CHART_FILES.values():
        body = body.replace(f"]({name})", f"](benchmarks/{name})")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{START}\n\n{body}\n\n{END}{tail}")
    return True


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def ratio_median(
    cells: dict[tuple[str, str], Cell], cid: str, ref: str, s: Scenario
) -> float | None:
    a, b = cells.get((cid, s.name)), cells.get((ref, s.name))
    if a is None or b is None:
        return None
    rs = [
        advantage(a.by_run[r], b.by_run[r], s.higher)
        for r in a.by_run
        if r in b.by_run and b.by_run[r] > 0 and a.by_run[r] > 0
    ]
    return med(rs)


def extra_ratio_median(
    cells: dict[tuple[str, str], Cell], cid: str, ref: str, s: Scenario
) -> float | None:
    """The median over runs of ``ref``'s second figure divided by ``cid``'s (above 1: better)."""
    a, b = cells.get((cid, s.name)), cells.get((ref, s.name))
    if a is None or b is None:
        return None
    rs = [
        b.extra_by_run[r] / a.extra_by_run[r]
        for r in a.extra_by_run
        if r in b.extra_by_run and a.extra_by_run[r] > 0
    ]
    return med(rs)


def params_text(s: Scenario, mode: str) -> str:
    p = s.params(mode)
    if s.name in IDLE:
        answer = (
            "the server declines it"
            if s.name == "idle_memory"
            else "the server accepts the offer as made"
        )
        return (
            f"{p['n']:,} idle sessions opened with {HANDSHAKES_IN_FLIGHT} handshakes in flight, "
            f"each library offering permessage-deflate at its defaults and {answer}; RSS growth "
            "per session, and the wall time to open them all (*open all*)"
        )
    if s.name == "echo":
        return f"{p['n']:,} sequential round trips of {p['size']} B"
    if s.name == "flood_memory":
        return (
            f"{p['n']:,} messages of {p['size']:,} B sent at once; the consumer reads one "
            f"message per ms for {p['ms']:,} ms"
        )
    if s.name in ("recv_json", "recv_struct"):
        return f"{p['n']:,} messages of ~80 B"
    return f"{p['n']:,} messages of {p['size']:,} B"


def render(
    env: dict[str, Any],
    clients: list[Any],
    names: list[str],
    cells: dict[str, dict[tuple[str, str], Cell]],
    mode: str,
    notes: list[str],
) -> str:
    v = env["versions"]
    transports = list(cells)
    lines = [
        "# Benchmark results",
        "",
        f"- Date: {env['date']}; {env['mode']} mode, {env['runs']} run(s) per client, scenario "
        f"and transport, {env['elapsed']:.0f} s in all",
        f"- Machine: {env['cpu']}; {env['os']}; 1-minute load average {env['load']}",
        f"- CPUs: {env.get('cpus', 'not pinned')}",
        f"- Python: {env['python']}",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Server: picows {v['picows']} in its own process"
        + (f" on uvloop {v['uvloop']}" if v["uvloop"] != "not installed" else "")
        + ", 127.0.0.1"
        + (
            "; wss:// with a certificate from a throwaway CA (trustme) that every client verifies"
            if "wss" in transports
            else ""
        ),
        "",
    ]
    for t in transports:
        lines += [f"![Benchmark chart, {t}://]({CHART_FILES[t]})", ""]
    lines += [
        "Values are medians over the runs; *vs websockets* and *vs picows* are medians of per-run",
        "ratios within the same transport, oriented so that **above 1x is better** (faster, lower",
        "latency or less memory).",
        "",
    ]
    if mode == "quick":
        notes = [
            "quick mode: small counts and one run, for smoke tests; not for comparison",
            *notes,
        ]
    for note in notes:
        lines += [f"> **Note:** {note}", ""]
    for t in transports:
        lines += [f"## Summary, {t}://", ""]
        lines += summary_table(clients, names, cells[t])
        lines.append("")
    lines.append("## Per scenario")
    flagged: list[str] = []
    lost_rows: list[str] = []
    for n in names:
        s = SCENARIOS[n]
        better = "higher" if s.higher else "lower"
        lines += [
            "",
            f"### {s.title}",
            "",
            f"{params_text(s, mode)}; {s.unit}, {better} is better.",
        ]
        for t in transports:
            lines += ["", f"**{t}://**", ""]
            lines += scenario_table(clients, s, cells[t], mode, f"{t}://", flagged, lost_rows)
    lines += ["", "## Was the server the bottleneck?", ""]
    lines.append(
        "The server's CPU is sampled from `/proc/<pid>/stat` during each measured window (windows "
        "shorter than 0.1 s show -). A client near 100% CPU with the server well below it means the "
        f"client is the limit. Rows where the server reached {SERVER_BOUND_CPU:.0f}% are marked †:"
    )
    lines.append("")
    if flagged:
        lines += [f"- † {f}" for f in flagged]
    else:
        lines.append(
            f"- none: the server stayed below {SERVER_BOUND_CPU:.0f}% CPU in every measurement."
        )
    busiest = [
        (med(cells[t][(c.id, n)].server_cpu), c.label, n, t)
        for t in transports
        for c in clients
        for n in names
        if cells[t][(c.id, n)].server_cpu
    ]
    if busiest:
        top = max(busiest, key=lambda x: x[0] or 0)
        lines.append(
            f"- busiest server measurement: {top[0]:.0f}% CPU ({top[1]}, "
            f"{SCENARIOS[top[2]].title}, {top[3]}://)."
        )
    if lost_rows:
        lines += ["", "## Messages lost", ""]
        lines.append(
            "Rows marked ‡ did not deliver every message the server sent before its close frame "
            "(their rate counts only the messages delivered):"
        )
        lines.append("")
        lines += [f"- ‡ {x}" for x in lost_rows]
    errors = [
        (c.label, n, t, e)
        for t in transports
        for c in clients
        for n in names
        for e in cells[t][(c.id, n)].errors
    ]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- {label}, {n}, {t}://: {e}" for label, n, t, e in errors]
    lines.append("")
    return "\n".join(lines)


def summary_table(
    clients: list[Any], names: list[str], cells: dict[tuple[str, str], Cell]
) -> list[str]:
    """One row per client, one column per scenario (and the echo p99): the medians."""
    header = ["client"]
    for n in names:
        s = SCENARIOS[n]
        header.append(f"{short(n)} ({s.unit})")
        if n == "echo":
            header.append("echo p99 (us)")
        if s.extra:
            header.append(f"{short(n)}: {s.extra[1]}")
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for c in clients:
        row = [c.label]
        for n in names:
            cell = cells[(c.id, n)]
            row.append(cell_text(cell, SCENARIOS[n]))
            if n == "echo":
                row.append(fmt(med(cell.p99)) if cell.p99 else "-")
            if SCENARIOS[n].extra:
                row.append(fmt(med(cell.extra)) if cell.extra else "-")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def scenario_table(
    clients: list[Any],
    s: Scenario,
    cells: dict[tuple[str, str], Cell],
    mode: str,
    where: str,
    flagged: list[str],
    lost_rows: list[str],
) -> list[str]:
    """The table of one scenario on one transport; server-bound and lossy rows are added to
    ``flagged`` and ``lost_rows``."""
    n = s.name
    cols = ["client", "median", "min - max", "vs websockets", "vs picows"]
    if n == "echo":
        cols.insert(2, "p99")
    if s.extra:
        cols += [s.extra[1], f"{s.extra[1]}: min - max", f"{s.extra[1]}: vs websockets"]
    if n not in MEMORY:
        cols += ["client CPU", "server CPU"]
    lines = ["| " + " | ".join(cols) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|")
    for c in clients:
        cell = cells[(c.id, n)]
        if cell.skip and not cell.values:
            continue
        if not cell.values:
            lines.append(f"| {c.label} | failed: {(cell.errors or ['?'])[0]} |")
            continue
        server = med(cell.server_cpu)
        bound = server is not None and server >= SERVER_BOUND_CPU
        if bound:
            flagged.append(f"{c.label} in *{s.title}*, {where} (server at {server:.0f}% CPU)")
        if any(cell.lost):
            lost_rows.append(
                f"{c.label} in *{s.title}*, {where}: {max(cell.lost):,} of "
                f"{s.params(mode)['n']:,} messages missing in the worst run "
                f"({sum(1 for x in cell.lost if x)} of {len(cell.lost)} runs)"
            )
        row = [
            c.label,
            fmt(med(cell.values)) + (" †" if bound else "") + (" ‡" if any(cell.lost) else ""),
            f"{fmt(min(cell.values))} - {fmt(max(cell.values))}",
            fmt(ratio_median(cells, c.id, "websockets", s), "ratio"),
            fmt(ratio_median(cells, c.id, "picows", s), "ratio"),
        ]
        if n == "echo":
            row.insert(2, fmt(med(cell.p99)))
        if s.extra:
            row += [
                fmt(med(cell.extra)),
                f"{fmt(min(cell.extra))} - {fmt(max(cell.extra))}" if cell.extra else "-",
                fmt(extra_ratio_median(cells, c.id, "websockets", s), "ratio"),
            ]
        if n not in MEMORY:
            cc = med(cell.client_cpu)
            row += [
                f"{cc:.0f}%" if cc is not None else "-",
                f"{server:.0f}%" if server is not None else "-",
            ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


SHORT = {
    "recv_text": "recv text",
    "recv_json": "recv JSON dict",
    "recv_struct": "recv JSON Struct",
    "echo": "echo p50",
    "send_text": "send text",
    "recv_big": "recv 1 MiB",
    "send_big": "send 1 MiB",
    "idle_memory": "idle session",
    "idle_deflate": "idle, deflate",
    "flood_memory": "flood peak",
}


def short(name: str) -> str:
    return SHORT.get(name, name)


def cell_text(cell: Cell, s: Scenario) -> str:
    if cell.values:
        return fmt(med(cell.values)) + (" ‡" if any(cell.lost) else "")
    if cell.errors:
        return "failed"
    return "-"


def chart(
    path: Path,
    env: dict[str, Any],
    clients: list[Any],
    names: list[str],
    cells: dict[tuple[str, str], Cell],
    transport: str = "ws://",
) -> None:
    """Draw one horizontal bar panel per scenario: medians, with min-max whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    def compact(v: float, _pos: object = None) -> str:
        if abs(v) >= 1e6:
            return f"{v / 1e6:.3g}M"
        if abs(v) >= 1e3:
            return f"{v / 1e3:.3g}k"
        return f"{v:.3g}"

    cols = 3
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.4 * cols, (0.3 * len(clients) + 1.3) * rows + 0.6), squeeze=False
    )
    for i, n in enumerate(names):
        ax = axes[i // cols][i % cols]
        s = SCENARIOS[n]
        labels, mids, lo, hi, colors = [], [], [], [], []
        for c in clients:
            cell = cells[(c.id, n)]
            if not cell.values:
                continue
            m = statistics.median(cell.values)
            labels.append(c.label + (" (lost msgs)" if any(cell.lost) else ""))
            mids.append(m)
            lo.append(m - min(cell.values))
            hi.append(max(cell.values) - m)
            if c.id.startswith("streams"):
                colors.append("#d9534f")
            elif c.id == "raw":
                colors.append("#999999")
            else:
                colors.append("#5b8cc9")
        y = list(range(len(labels)))
        ax.barh(y, mids, xerr=[lo, hi], color=colors, capsize=2, error_kw={"elinewidth": 0.8})
        for yi, m, h in zip(y, mids, hi, strict=True):
            ax.text(m + h, yi, " " + compact(m), va="center", ha="left", fontsize=7)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.xaxis.set_major_formatter(FuncFormatter(compact))
        if mids:
            ax.set_xlim(0, max(m + h for m, h in zip(mids, hi, strict=True)) * 1.22)
        better = "higher is better →" if s.higher else "← lower is better"
        ax.set_title(f"{s.title}\n{s.unit}, {better}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    for j in range(len(names), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(
        f"WebSocket clients over {transport} on {env['python']}, {env['cpu']}, {env['date']}: "
        f"median of {env['runs']} run(s), whiskers show min-max",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
