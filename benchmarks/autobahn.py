"""Run the Autobahn|Testsuite client cases against a WebSocket client and print a table.

The fuzzing server (``kosoku -m fuzzingserver``) is started on 127.0.0.1 as a
subprocess. A client then follows the standard client procedure:

1. ``GET /getCaseCount``: one text message with the number of selected cases;
2. for each case N, ``/runCase?case=N&agent=AGENT``: echo every message back
   (text as text, binary as binary) until the server closes;
3. ``/updateReports?agent=AGENT``: the server writes its reports and exits.

The reports (one JSON file per case and an ``index.json``) are read back and
summarised: one row per section with the counts of each verdict and of each
closing-handshake verdict, then every case that is not OK with the reason.

Usage::

    python benchmarks/autobahn.py                       # every case, streams client
    python benchmarks/autobahn.py --sections 1-10       # what CI runs
    python benchmarks/autobahn.py --cases "1.*,5.19,9.1.*" --client websockets
    python benchmarks/autobahn.py --sections 12,13 --deflate no-context-takeover --json -
    python benchmarks/autobahn.py --sections all --fail-on 1-10 --backend trio -v

The exit status is 0 when every selected case (or every case of the
``--fail-on`` sections) is OK or INFORMATIONAL for both the message exchange
and the closing handshake and the client raised nothing unexpected, 1
otherwise, 2 when the run itself broke. See docs/conformance.md.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import anyio
import anyio.abc

#: Autobahn's names of the sections, for the table.
SECTION_TITLES = {
    1: "Framing",
    2: "Pings/Pongs",
    3: "Reserved Bits",
    4: "Opcodes",
    5: "Fragmentation",
    6: "UTF-8 Handling",
    7: "Close Handling",
    9: "Limits/Performance",
    10: "Misc",
    12: "Compression (payloads)",
    13: "Compression (parameters)",
}
ALL_SECTIONS = tuple(SECTION_TITLES)

#: The verdicts of the message exchange, in table order.
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
#: The verdicts of the closing handshake that count as good.
GOOD = frozenset({"OK", "INFORMATIONAL"})

#: Largest message of the suite is 16 MiB (9.1.6, 9.2.6); leave room above it.
CONFORMANCE_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

DEFAULT_AGENT = "streams"

#: The permessage-deflate offers a client can make.
Deflate = Literal["per-case", "default", "off", "no-context-takeover"]
DEFLATE_CHOICES: tuple[Deflate, ...] = get_args(Deflate)
SERVER_START_TIMEOUT = 30.0
SERVER_EXIT_TIMEOUT = 120.0

_ANNOUNCE = re.compile(rb"listening on ws://([^\s:/]+):(\d+)")


# --------------------------------------------------------------------------- selection


def parse_sections(spec: str) -> list[int]:
    """Parse ``"1-10"``, ``"1,2,5-7"`` or ``"all"`` into a sorted list of section numbers.

    Raises:
        ValueError: on a malformed spec or a section the suite does not have.
    """
    if spec.strip().lower() == "all":
        return list(ALL_SECTIONS)
    sections: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise ValueError(f"bad section spec {part!r} (expected N or N-M)") from None
        sections.update(s for s in range(first, last + 1) if s in SECTION_TITLES)
        if first not in SECTION_TITLES or last not in SECTION_TITLES:
            raise ValueError(f"no section {part!r}; sections are {list(ALL_SECTIONS)}")
    return sorted(sections)


def section_globs(sections: Iterable[int]) -> list[str]:
    """The case globs (``"1.*"``...) that select whole sections."""
    return [f"{s}.*" for s in sections]


def split_globs(spec: str | None) -> list[str]:
    """Split a comma-separated list of case ids or ``*`` globs."""
    if not spec:
        return []
    return [g.strip() for g in spec.split(",") if g.strip()]


def case_section(case_id: str) -> int:
    """``"9.7.3"`` -> ``9``."""
    return int(case_id.split(".", 1)[0])


def case_sort_key(case_id: str) -> tuple[int, ...]:
    """Numeric order: 1.2.10 after 1.2.9."""
    return tuple(int(p) for p in case_id.split("."))


# --------------------------------------------------------------------------- clients


class EchoClient(Protocol):
    """What the runner needs from a WebSocket client library."""

    name: str

    async def get_case_count(self, url: str) -> int:
        """Open ``url``, read the one text message holding the case count."""
        ...

    async def echo(self, url: str) -> str:
        """Echo every message of ``url`` until the server closes.

        Returns a short description of how the session ended, for the report.
        Raises only on a failure of the client itself (not of the session).
        """
        ...

    async def update_reports(self, url: str) -> None:
        """Open ``url`` and wait until the server closes it."""
        ...


class StreamsClient:
    """Drives ``streams`` through its public API only."""

    name = "streams"

    def __init__(self, max_message_size: int, deflate: Deflate) -> None:
        import streams

        self._streams = streams
        self._kwargs: dict[str, Any] = {
            "max_message_size_bytes": max_message_size,
            "keepalive_ping_interval_seconds": None,
        }
        if deflate == "off":
            self._kwargs["compression"] = None
        elif deflate == "no-context-takeover":
            self._kwargs["compression"] = streams.DeflateOptions(client_no_context_takeover=True)
        elif deflate != "default":
            raise ValueError(f"a client makes one offer, not {deflate!r}")

    def _connect(self, url: str) -> Any:
        return self._streams.aconnect_ws(url, **self._kwargs)

    async def get_case_count(self, url: str) -> int:
        async with self._connect(url) as ws:
            return int(await ws.receive_text())

    async def echo(self, url: str) -> str:
        try:
            async with self._connect(url) as ws:
                async for msg in ws:
                    if isinstance(msg, str):
                        await ws.send_text(msg)
                    else:
                        await ws.send_bytes(msg)
            return f"closed {ws.close_code}"
        except self._streams.HTTPXWSException as exc:
            return f"{type(exc).__name__}: {exc}"

    async def update_reports(self, url: str) -> None:
        try:
            async with self._connect(url) as ws:
                async for _ in ws:
                    pass
        except self._streams.HTTPXWSException:
            pass


class WebsocketsClient:
    """Drives the ``websockets`` library (asyncio only); a reference to validate the runner."""

    name = "websockets"

    def __init__(self, max_message_size: int, deflate: Deflate) -> None:
        import websockets
        from websockets.asyncio.client import connect
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

        self._exc = websockets.ConnectionClosed
        self._kwargs: dict[str, Any] = {
            "max_size": max_message_size,
            "ping_interval": None,
            "compression": None if deflate == "off" else "deflate",
        }
        if deflate == "no-context-takeover":
            self._kwargs["compression"] = None
            self._kwargs["extensions"] = [
                ClientPerMessageDeflateFactory(client_no_context_takeover=True)
            ]
        self._connect = connect

    async def get_case_count(self, url: str) -> int:
        async with self._connect(url, **self._kwargs) as ws:
            return int(await ws.recv())

    async def echo(self, url: str) -> str:
        try:
            async with self._connect(url, **self._kwargs) as ws:
                async for msg in ws:
                    await ws.send(msg)
            return f"closed {ws.close_code}"
        except self._exc as exc:
            return f"{type(exc).__name__}: {exc}"

    async def update_reports(self, url: str) -> None:
        try:
            async with self._connect(url, **self._kwargs) as ws:
                async for _ in ws:
                    pass
        except self._exc:
            pass


CLIENTS: dict[str, Callable[[int, Deflate], EchoClient]] = {
    "streams": StreamsClient,
    "websockets": WebsocketsClient,
}


# --------------------------------------------------------------------------- fuzzing server


def kosoku_command() -> list[str]:
    """The command that starts kosoku: the script next to this interpreter, else on PATH."""
    local = Path(sys.executable).with_name("kosoku")
    if local.exists():
        return [str(local)]
    found = shutil.which("kosoku")
    if found is None:
        raise RuntimeError("kosoku is not installed (pip install kosoku)")
    return [found]


@dataclass
class FuzzingServer:
    """A running ``kosoku -m fuzzingserver`` subprocess; its output goes to ``log``."""

    process: anyio.abc.Process
    host: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def stop(self) -> None:
        """Kill the server if it still runs, and reap it."""
        if self.process.returncode is None:
            self.process.kill()
        with anyio.CancelScope(shield=True):
            await self.process.wait()
            await self.process.aclose()


async def start_server(
    include: Sequence[str], exclude: Sequence[str], outdir: Path
) -> FuzzingServer:
    """Start the fuzzing server on 127.0.0.1 (a free port) and wait until it accepts.

    The server writes its reports to ``outdir`` and its output to ``outdir/kosoku.log``.

    Raises:
        RuntimeError: the server exited, or did not listen within ``SERVER_START_TIMEOUT``.
    """
    cmd = [*kosoku_command(), "-m", "fuzzingserver", "127.0.0.1:0", "-o", str(outdir)]
    for glob in include:
        cmd += ["-i", glob]
    for glob in exclude:
        cmd += ["-x", glob]
    log = outdir / "kosoku.log"
    with log.open("wb") as sink:
        process = await anyio.open_process(cmd, stdout=sink, stderr=sink)
    server = FuzzingServer(process, "", 0, log)
    try:
        with anyio.move_on_after(SERVER_START_TIMEOUT):
            # The server binds port 0 and announces the port it got.
            while (match := _ANNOUNCE.search(log.read_bytes())) is None:
                if process.returncode is not None:
                    raise RuntimeError(f"kosoku exited before listening:\n{server.output()}")
                await anyio.sleep(0.02)
            server.host, server.port = match.group(1).decode(), int(match.group(2))
            while True:
                try:
                    sock = await anyio.connect_tcp(server.host, server.port)
                except OSError:
                    await anyio.sleep(0.02)
                else:
                    await sock.aclose()
                    return server
        raise RuntimeError(f"kosoku did not listen within {SERVER_START_TIMEOUT} s")
    except BaseException:
        await server.stop()
        raise


# --------------------------------------------------------------------------- reports


@dataclass
class CaseReport:
    """One case, as the fuzzing server judged it."""

    id: str
    behavior: str
    behavior_close: str
    description: str = ""
    expectation: str = ""
    result: str = ""
    result_close: str = ""
    duration_ms: int = 0
    remote_close_code: int | None = None
    local_close_code: int | None = None
    client_outcome: str | None = None

    @property
    def section(self) -> int:
        return case_section(self.id)

    @property
    def ok(self) -> bool:
        return self.behavior in GOOD and self.behavior_close in GOOD


def read_reports(outdir: Path, agent: str) -> list[CaseReport]:
    """Read ``index.json`` and the per-case JSON files the server wrote for ``agent``."""
    index = json.loads((outdir / "index.json").read_text())
    if agent not in index:
        raise RuntimeError(f"no reports for agent {agent!r} in {outdir} (got {list(index)})")
    reports = []
    for case_id, entry in index[agent].items():
        detail: dict[str, Any] = {}
        path = outdir / entry["reportfile"]
        if path.exists():
            detail = json.loads(path.read_text())
        reports.append(
            CaseReport(
                id=case_id,
                behavior=entry["behavior"],
                behavior_close=entry["behaviorClose"],
                description=detail.get("description", ""),
                expectation=detail.get("expectation", ""),
                result=detail.get("result", ""),
                result_close=detail.get("resultClose", ""),
                duration_ms=entry.get("duration", 0),
                remote_close_code=entry.get("remoteCloseCode"),
                local_close_code=detail.get("localCloseCode"),
            )
        )
    reports.sort(key=lambda r: case_sort_key(r.id))
    return reports


# --------------------------------------------------------------------------- summary


@dataclass
class SectionRow:
    section: int
    cases: int = 0
    behaviors: dict[str, int] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=dict)
    duration_ms: int = 0


@dataclass
class Summary:
    """The outcome of one run."""

    client: str
    agent: str
    selection: list[str]
    cases: list[CaseReport]
    client_errors: dict[str, str]
    elapsed_seconds: float
    server_start_seconds: float

    def rows(self) -> list[SectionRow]:
        rows: dict[int, SectionRow] = {}
        for case in self.cases:
            row = rows.setdefault(case.section, SectionRow(case.section))
            row.cases += 1
            row.behaviors[case.behavior] = row.behaviors.get(case.behavior, 0) + 1
            row.closes[case.behavior_close] = row.closes.get(case.behavior_close, 0) + 1
            row.duration_ms += case.duration_ms
        return [rows[s] for s in sorted(rows)]

    def not_ok(self, sections: Iterable[int] | None = None) -> list[CaseReport]:
        wanted = None if sections is None else set(sections)
        return [c for c in self.cases if not c.ok and (wanted is None or c.section in wanted)]

    def passed(self, sections: Iterable[int] | None = None) -> bool:
        """True when every case (of ``sections``) is OK/INFORMATIONAL and the client never broke."""
        return not self.not_ok(sections) and not self.client_errors

    def to_json(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "agent": self.agent,
            "selection": self.selection,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "server_start_seconds": round(self.server_start_seconds, 3),
            "total": len(self.cases),
            "ok": sum(c.ok for c in self.cases),
            "sections": {
                str(r.section): {
                    "cases": r.cases,
                    "behavior": r.behaviors,
                    "close": r.closes,
                    "duration_ms": r.duration_ms,
                }
                for r in self.rows()
            },
            "not_ok": [asdict(c) for c in self.not_ok()],
            "client_errors": self.client_errors,
        }


def render_table(summary: Summary) -> str:
    """The per-section table, in Markdown (readable as plain text too)."""
    head = ["Section", "Cases", *BEHAVIORS, "Close OK", "Close INFO", "Close other", "Time (s)"]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 0 else "--:" for i in range(len(head))) + "|",
    ]
    total = SectionRow(0)
    for row in summary.rows():
        counts = [row.behaviors.get(b, 0) for b in BEHAVIORS]
        # ERROR (a case that could not be run to a verdict) is shown as FAILED.
        counts[-1] += sum(v for k, v in row.behaviors.items() if k not in BEHAVIORS)
        close_ok = row.closes.get("OK", 0)
        close_info = row.closes.get("INFORMATIONAL", 0)
        close_other = row.cases - close_ok - close_info
        cells = [
            f"{row.section} {SECTION_TITLES.get(row.section, '')}".strip(),
            str(row.cases),
            *map(str, counts),
            str(close_ok),
            str(close_info),
            str(close_other),
            f"{row.duration_ms / 1000:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        total.cases += row.cases
        for name, n in zip(BEHAVIORS, counts, strict=True):
            total.behaviors[name] = total.behaviors.get(name, 0) + n
        for key, n in (("OK", close_ok), ("INFORMATIONAL", close_info), ("other", close_other)):
            total.closes[key] = total.closes.get(key, 0) + n
        total.duration_ms += row.duration_ms
    cells = [
        "**Total**",
        str(total.cases),
        *(str(total.behaviors.get(b, 0)) for b in BEHAVIORS),
        str(total.closes.get("OK", 0)),
        str(total.closes.get("INFORMATIONAL", 0)),
        str(total.closes.get("other", 0)),
        f"{total.duration_ms / 1000:.1f}",
    ]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plain(text: str) -> str:
    """Case texts carry a little HTML: turn it into one line of plain text."""
    text = re.sub(r"<br\s*/?>", " ", text)
    text = re.sub(r"</?\w+[^>]*>", "", text)
    return " ".join(text.split())


def render_not_ok(summary: Summary) -> str:
    """Every case that is not OK, with what the server expected and what the client saw."""
    out = []
    for case in summary.not_ok():
        out.append(
            f"- {case.id}: {case.behavior} / close {case.behavior_close}"
            f" (remote close {case.remote_close_code}, local close {case.local_close_code})"
        )
        out.append(f"    description: {_plain(case.description)}")
        out.append(f"    expectation: {_plain(case.expectation)}")
        out.append(f"    result:      {_plain(case.result)}")
        out.append(f"    close:       {_plain(case.result_close)}")
        if case.client_outcome:
            out.append(f"    client:      {case.client_outcome}")
    for where, error in summary.client_errors.items():
        out.append(f"- client error in {where}: {error}")
    return "\n".join(out)


def render(summary: Summary) -> str:
    ok = sum(c.ok for c in summary.cases)
    parts = [
        f"Autobahn client cases, client={summary.client}, agent={summary.agent}",
        "",
        render_table(summary),
        "",
        f"{ok}/{len(summary.cases)} cases OK or INFORMATIONAL;"
        f" ran in {summary.elapsed_seconds:.1f} s"
        f" (server start {summary.server_start_seconds:.1f} s)",
    ]
    details = render_not_ok(summary)
    if details:
        parts += ["", "Not OK:", details]
    return "\n".join(parts)


# --------------------------------------------------------------------------- run


async def run_suite(
    *,
    client: str | EchoClient = "streams",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    agent: str = DEFAULT_AGENT,
    outdir: Path | str = Path("reports") / "clients",
    max_message_size: int = CONFORMANCE_MAX_MESSAGE_SIZE,
    deflate: Deflate = "default",
    case_timeout: float = 600.0,
    progress: Callable[[str], None] | None = None,
) -> Summary:
    """Run the selected cases against ``client`` and return the summary.

    Args:
        client: ``"streams"``, ``"websockets"`` or an object with the ``EchoClient`` methods.
        include: case ids or ``*`` globs (empty: every case).
        exclude: case ids or ``*`` globs removed from the selection.
        agent: the agent name the reports are filed under.
        outdir: where the server writes its reports (created; old reports are overwritten).
        max_message_size: the client's message size limit.
        deflate: the permessage-deflate offer: the client's default, none, or the
            default plus ``client_no_context_takeover`` (which 13.2, 13.5 and 13.6 need).
        case_timeout: the client gives up on a case after this many seconds.
        progress: called with a line of text after each case.

    Raises:
        RuntimeError: if the server cannot be started or wrote no report.
    """
    echo_client = CLIENTS[client](max_message_size, deflate) if isinstance(client, str) else client
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    index = outdir / "index.json"
    if index.exists():
        index.unlink()
    outcomes: dict[int, str] = {}
    case_errors: dict[int, str] = {}
    client_errors: dict[str, str] = {}
    started = time.perf_counter()
    server = await start_server(include, exclude, outdir)
    server_started = time.perf_counter() - started
    try:
        count = await echo_client.get_case_count(f"{server.url}/getCaseCount")
        for n in range(1, count + 1):
            url = f"{server.url}/runCase?case={n}&agent={agent}"
            t0 = time.perf_counter()
            with anyio.move_on_after(case_timeout) as scope:
                try:
                    outcomes[n] = await echo_client.echo(url)
                except Exception as exc:  # a bug of the client, not a verdict
                    case_errors[n] = repr(exc)
                    outcomes[n] = f"client error {type(exc).__name__}"
            if scope.cancelled_caught:
                case_errors[n] = f"no close after {case_timeout:.0f} s"
                outcomes[n] = "client timeout"
            if progress is not None:
                progress(f"case {n}/{count}: {outcomes[n]} ({time.perf_counter() - t0:.2f} s)")
        try:
            await echo_client.update_reports(f"{server.url}/updateReports?agent={agent}")
        except Exception as exc:  # the server may still have written its reports
            client_errors["updateReports"] = repr(exc)
        # The server writes the reports, then exits.
        with anyio.move_on_after(SERVER_EXIT_TIMEOUT):
            await server.process.wait()
    finally:
        await server.stop()
    elapsed = time.perf_counter() - started
    if not index.exists():
        raise RuntimeError(f"the fuzzing server wrote no report:\n{server.output()}")
    reports = read_reports(outdir, agent)
    # Reports come in case order, which is the runCase numbering.
    for n, report in enumerate(reports, start=1):
        report.client_outcome = outcomes.get(n)
    for n, error in case_errors.items():
        client_errors[reports[n - 1].id if n <= len(reports) else f"case #{n}"] = error
    return Summary(
        client=echo_client.name,
        agent=agent,
        selection=list(include) or ["*"],
        cases=reports,
        client_errors=client_errors,
        elapsed_seconds=elapsed,
        server_start_seconds=server_started,
    )


#: The cases whose description asks the client to offer no context takeover
#: (Autobahn's "client offers (requestNoContextTakeover, ...): [(True, ...)]").
NO_CONTEXT_TAKEOVER_CASES = ("13.2.*", "13.5.*", "13.6.*")


def _selects_any(include: Sequence[str], exclude: Sequence[str], globs: Sequence[str]) -> bool:
    """Whether a selection may contain cases of ``globs`` (judged on a sample id of each)."""
    samples = [glob.replace("*", "1") for glob in globs]
    return any(
        (not include or any(fnmatch.fnmatchcase(sample, g) for g in include))
        and not any(fnmatch.fnmatchcase(sample, g) for g in exclude)
        for sample in samples
    )


async def run_per_case(
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    outdir: Path | str = Path("reports") / "clients",
    **options: Any,
) -> Summary:
    """Run the selection with the offer each case describes, as Autobahn's own clients do.

    The cases of :data:`NO_CONTEXT_TAKEOVER_CASES` get the default offer plus
    ``client_no_context_takeover``, in a second server run (reports under
    ``OUTDIR/no-context-takeover``); every other case gets the default offer.
    The two summaries are merged.
    """
    outdir = Path(outdir)
    nct = NO_CONTEXT_TAKEOVER_CASES
    runs: list[Summary] = []
    if not (include and all(g in nct for g in include)):
        runs.append(
            await run_suite(
                include=include,
                exclude=[*exclude, *nct],
                outdir=outdir,
                deflate="default",
                **options,
            )
        )
    if _selects_any(include, exclude, nct):
        wanted = [g for g in nct if not include or _selects_any(include, (), [g])]
        runs.append(
            await run_suite(
                include=wanted,
                exclude=exclude,
                outdir=outdir / "no-context-takeover",
                deflate="no-context-takeover",
                **options,
            )
        )
    first = runs[0]
    return Summary(
        client=first.client,
        agent=first.agent,
        selection=list(include) or ["*"],
        cases=sorted(
            (case for run in runs for case in run.cases), key=lambda c: case_sort_key(c.id)
        ),
        client_errors={k: v for run in runs for k, v in run.client_errors.items()},
        elapsed_seconds=sum(run.elapsed_seconds for run in runs),
        server_start_seconds=sum(run.server_start_seconds for run in runs),
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the Autobahn|Testsuite client cases and print a per-section table."
    )
    select = parser.add_argument_group("case selection (default: every case)")
    select.add_argument("--cases", help='comma-separated case ids or globs, e.g. "1.*,2.*,9.1.6"')
    select.add_argument("--sections", help='sections, e.g. "1-10" or "1,2,12-13" or "all"')
    select.add_argument("--exclude", help="comma-separated case ids or globs to leave out")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="streams")
    parser.add_argument("--agent", help="agent name in the reports (default: the client's name)")
    parser.add_argument("--outdir", default="reports/clients", help="report directory")
    parser.add_argument("--json", metavar="PATH", help="write the summary as JSON ('-' = stdout)")
    parser.add_argument(
        "--fail-on",
        metavar="SECTIONS",
        help="only non-OK cases of these sections make the exit status non-zero (default: all)",
    )
    parser.add_argument(
        "--deflate",
        choices=DEFLATE_CHOICES,
        default="per-case",
        help="permessage-deflate offer: the one each case describes (the default), the"
        " client's default, none, or with client_no_context_takeover for every case",
    )
    parser.add_argument(
        "--max-message-size", type=int, default=CONFORMANCE_MAX_MESSAGE_SIZE, metavar="BYTES"
    )
    parser.add_argument("--case-timeout", type=float, default=600.0, metavar="SECONDS")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("-v", "--verbose", action="store_true", help="print a line per case")
    args = parser.parse_args(argv)
    if args.client == "websockets" and args.backend != "asyncio":
        parser.error("the websockets client runs on asyncio only")
    try:
        args.include = split_globs(args.cases)
        if args.sections:
            args.include += section_globs(parse_sections(args.sections))
        args.fail_sections = parse_sections(args.fail_on) if args.fail_on else None
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)

    async def _main() -> Summary:
        def progress(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        options: dict[str, Any] = {
            "client": args.client,
            "include": args.include,
            "exclude": split_globs(args.exclude),
            "agent": args.agent or args.client,
            "outdir": args.outdir,
            "max_message_size": args.max_message_size,
            "case_timeout": args.case_timeout,
            "progress": progress if args.verbose else None,
        }
        if args.deflate == "per-case":
            return await run_per_case(**options)
        return await run_suite(deflate=args.deflate, **options)

    try:
        summary = anyio.run(_main, backend=args.backend)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(summary))
    if args.json:
        text = json.dumps(summary.to_json(), indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    fail_sections = args.fail_sections
    if fail_sections is not None:
        print(f"exit status from sections {fail_sections}")
    return 0 if summary.passed(fail_sections) else 1


if __name__ == "__main__":
    sys.exit(main())
