"""The ``streams`` command, run as a subprocess (``python -m streams``) against real servers.

Standard output and error are pipes here, so messages are printed raw (no pretty-printing, no
colour) and nothing else is written to standard error unless something went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import trustme
import websockets.asyncio.server

from tests import servers
from tests.peers import ScriptedPeer, scripted_server

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 20.0
"""Seconds a command may take before the test gives up on it (most take under one)."""

EXIT_TIMEOUT = 5.0
"""Seconds a command may take to exit once told to (it takes well under one)."""

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
ENV.pop("PYTHONWARNINGS", None)
COMMAND = [sys.executable, "-m", "streams"]


def streams_cli(
    *args: str, stdin: str = "", timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``streams ARGS`` with ``stdin`` piped in (closed at its end); wait for the exit."""
    return subprocess.run(
        [*COMMAND, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=ENV,
    )


def open_cli(*args: str) -> subprocess.Popen[str]:
    """Start ``streams ARGS`` with standard input left open (a pipe the test writes to)."""
    return subprocess.Popen(
        [*COMMAND, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=ENV,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on standard error and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("streams: "), lines[0]
    return lines[0]


def new_record() -> tuple[str, servers.ConnectionRecord]:
    conn_id = servers.new_id()
    return conn_id, servers.REGISTRY.record(conn_id)


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- connect: messages


def test_piped_lines_are_sent_and_echoes_printed_raw(uvicorn_websockets_url: str) -> None:
    conn_id, record = new_record()
    lines = ["hello", '{"op": "ping"}', "three words here"]
    result = streams_cli(
        "connect",
        f"{uvicorn_websockets_url}/echo?id={conn_id}",
        "--count",
        "3",
        stdin="".join(line + "\n" for line in lines),
    )
    assert result.returncode == 0, result.stderr
    # Piped output: each message as received, JSON untouched (not pretty-printed).
    assert result.stdout == "".join(line + "\n" for line in lines)
    assert result.stderr == ""
    assert record.finished.wait(5)
    assert record.received == lines
    assert record.close_code == 1000


@pytest.mark.anyio
async def test_end_of_stdin_still_prints_the_answers() -> None:
    """At the end of standard input the command closes, but prints what arrives until the close."""

    async def slow_echo(peer: ScriptedPeer) -> None:
        message = await peer.receive_message()
        await anyio.sleep(0.3)  # a server that takes its time to answer
        assert isinstance(message, str)
        await peer.send_text(f"late {message}")
        assert (await peer.answer_close())[0] == 1000

    async with scripted_server(slow_echo) as url:
        result = await anyio.run_process(
            [*COMMAND, "connect", url + "/slow"], input=b"hello\n", check=False, env=ENV, cwd=ROOT
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "late hello\n"


def test_count_stops_after_n_printed_messages(uvicorn_websockets_url: str) -> None:
    conn_id, record = new_record()
    result = streams_cli("connect", f"{uvicorn_websockets_url}/json?n=5&id={conn_id}", "-n", "2")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [0, 1]
    assert record.finished.wait(5)
    assert record.close_code == 1000


def test_timeout_stops_and_closes_with_1000(uvicorn_websockets_url: str) -> None:
    conn_id, record = new_record()
    # The end of stdin does not close the command when -t (or -n) says when to stop.
    result = streams_cli("connect", f"{uvicorn_websockets_url}/json?n=3&id={conn_id}", "-t", "0.5")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [0, 1, 2]
    assert record.finished.wait(5)
    assert record.close_code == 1000


def test_timeout_exits_while_stdin_stays_open(uvicorn_websockets_url: str) -> None:
    process = open_cli("connect", f"{uvicorn_websockets_url}/json?n=3", "-t", "0.5")
    try:
        # Nothing is typed and stdin is not closed, as in a terminal: the timeout ends it.
        assert process.wait(timeout=EXIT_TIMEOUT) == 0
    finally:
        _stop(process)


def test_select_prints_one_field(uvicorn_websockets_url: str) -> None:
    result = streams_cli(
        "connect", f"{uvicorn_websockets_url}/json?n=5", "--select", ".seq", "-n", "5"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["0", "1", "2", "3", "4"]


def test_where_keeps_matching_messages(uvicorn_websockets_url: str) -> None:
    result = streams_cli(
        "connect", f"{uvicorn_websockets_url}/json?n=5", "--where", ".seq >= 3", "-n", "2"
    )
    assert result.returncode == 0, result.stderr
    # Matching messages are printed as received.
    assert result.stdout.splitlines() == [
        '{"sym":"ABC","px":1.5,"seq":3}',
        '{"sym":"ABC","px":1.5,"seq":4}',
    ]


def test_where_conditions_combine_with_select(uvicorn_websockets_url: str) -> None:
    result = streams_cli(
        "connect",
        f"{uvicorn_websockets_url}/json?n=5",
        "--where", ".sym == ABC",
        "--where", ".seq != 1",
        "--where", ".sym ~ B",
        "--select", ".seq",
        "-n", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["0", "2", "3", "4"]


def test_invalid_where_is_a_usage_error(uvicorn_websockets_url: str) -> None:
    result = streams_cli("connect", f"{uvicorn_websockets_url}/json", "--where", "no operator")
    assert "invalid condition" in assert_one_line_error(result)
    assert result.returncode == 2


def test_json_mode_refuses_invalid_lines(uvicorn_websockets_url: str) -> None:
    conn_id, record = new_record()
    result = streams_cli(
        "connect", f"{uvicorn_websockets_url}/echo?id={conn_id}", "--json", "-n", "2",
        stdin='{"a": 1}\nnot json\n[2, 3]\n',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"a": 1}', "[2, 3]"]
    assert "invalid JSON" in assert_stderr_line(result.stderr)
    assert record.finished.wait(5)
    assert record.received == ['{"a": 1}', "[2, 3]"]


def assert_stderr_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_binary_mode_sends_binary_messages(uvicorn_websockets_url: str) -> None:
    conn_id, record = new_record()
    result = streams_cli(
        "connect", f"{uvicorn_websockets_url}/echo?id={conn_id}", "--binary", "-n", "1",
        stdin="bytes\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "bytes\n"
    assert record.finished.wait(5)
    assert record.received == [b"bytes"]


def test_headers_reach_the_server(uvicorn_websockets_url: str) -> None:
    result = streams_cli(
        "connect", f"{uvicorn_websockets_url}/headers",
        "-H", "X-Token: abc 123", "--header", "X-Other:two", "-n", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    headers = json.loads(result.stdout)
    assert headers["x-token"] == "abc 123"
    assert headers["x-other"] == "two"


def test_invalid_header_is_a_usage_error(uvicorn_websockets_url: str) -> None:
    result = streams_cli("connect", f"{uvicorn_websockets_url}/echo", "-H", "no colon")
    assert "invalid header" in assert_one_line_error(result)
    assert result.returncode == 2


def test_subprotocols_are_offered_in_order(uvicorn_websockets_url: str) -> None:
    conn_id, record = new_record()
    result = streams_cli(
        "connect", f"{uvicorn_websockets_url}/subprotocols?id={conn_id}",
        "-s", "unknown", "-s", "chat.v1", "--subprotocol", "chat.v2", "-n", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # The server takes the first one it knows, in the client's order of preference.
    assert result.stdout == "chat.v1\n"
    assert record.subprotocol == "chat.v1"


# --------------------------------------------------------------------------- connect: output

HOSTILE = "before\x1b[2J\x1b[Hafter\x08bell\x07 csi\x9b tab\tend"
"""Text that would clear the screen, move the cursor and ring the bell if printed raw."""


def test_control_characters_are_escaped_by_default(uvicorn_websockets_url: str) -> None:
    result = streams_cli(
        "connect", f"{uvicorn_websockets_url}/echo", "-n", "1", stdin=HOSTILE + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "before\\x1b[2J\\x1b[Hafter\\x08bell\\x07 csi\\x9b tab\tend\n"
    assert not any(0x00 <= ord(c) < 0x20 and c not in "\t\n" for c in result.stdout)


def test_raw_prints_control_characters_as_received(uvicorn_websockets_url: str) -> None:
    result = streams_cli(
        "connect", f"{uvicorn_websockets_url}/echo", "-n", "1", "--raw", stdin=HOSTILE + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == HOSTILE + "\n"


def test_binary_messages_are_escaped_too(uvicorn_websockets_url: str) -> None:
    result = streams_cli(
        "connect", f"{uvicorn_websockets_url}/echo", "--binary", "-n", "1",
        stdin="\x1b]0;title\x07\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "\\x1b]0;title\\x07\n"


def test_color_always_pretty_prints_and_colours(uvicorn_websockets_url: str) -> None:
    result = streams_cli(
        "connect", f"{uvicorn_websockets_url}/json?n=1", "-n", "1", "--color", "always"
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b[" in result.stdout
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    assert json.loads(plain) == {"sym": "ABC", "px": 1.5, "seq": 0}
    assert plain.startswith('{\n  "sym": "ABC"')


# --------------------------------------------------------------------------- connect: errors


def test_connection_refused_is_one_line() -> None:
    url = f"ws://127.0.0.1:{free_port()}/echo"
    result = streams_cli("connect", url)
    assert url in assert_one_line_error(result)
    assert result.stdout == ""


def test_connection_refused_says_refused() -> None:
    result = streams_cli("connect", f"ws://127.0.0.1:{free_port()}/echo")
    assert "refused" in assert_one_line_error(result).lower()


def test_handshake_rejected_gives_the_status(uvicorn_websockets_url: str) -> None:
    result = streams_cli("connect", f"{uvicorn_websockets_url}/reject?status=403")
    line = assert_one_line_error(result)
    assert "403" in line
    assert "rejected" in line


def test_debug_shows_the_traceback(uvicorn_websockets_url: str) -> None:
    result = streams_cli("--debug", "connect", f"{uvicorn_websockets_url}/reject?status=403")
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "WebSocketUpgradeError" in result.stderr
    # The protocol log is on too.
    assert "connecting to" in result.stderr


def test_abnormal_close_gives_the_code_and_reason(uvicorn_websockets_url: str) -> None:
    # -t keeps the command waiting (the end of stdin alone would close it first).
    result = streams_cli(
        "connect", f"{uvicorn_websockets_url}/close?code=4001&reason=bye", "-t", "10"
    )
    line = assert_one_line_error(result)
    assert "4001" in line
    assert "bye" in line


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def wss_url(ca: trustme.CA) -> Iterator[str]:
    """``wss://127.0.0.1:PORT``: the test endpoints with a certificate no default store trusts."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        async with websockets.asyncio.server.serve(
            servers.websockets_handler,
            sock=sock,
            ssl=context,
            process_request=servers.websockets_process_request,
            ping_interval=None,
            compression=None,
            close_timeout=servers.CLOSE_TIMEOUT,
            logger=logging.getLogger("tests.cli_wss_server"),
        ):
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert started.wait(10), "the wss server did not start"
        yield f"wss://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        if not thread.is_alive():
            loop.close()
        sock.close()


def test_untrusted_certificate_is_a_tls_error(wss_url: str) -> None:
    result = streams_cli("connect", f"{wss_url}/echo")
    line = assert_one_line_error(result)
    assert "TLS" in line
    assert "certificate" in line.lower()
    assert "--insecure" in line


def test_insecure_skips_verification(wss_url: str) -> None:
    result = streams_cli("connect", f"{wss_url}/echo", "--insecure", "-n", "1", stdin="secret\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "secret\n"


# --------------------------------------------------------------------------- Ctrl-C


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Make sure a started command is gone (killed if still running); return its output."""
    if process.poll() is None:
        process.kill()
    stdout, stderr = process.communicate()
    return stdout, stderr


def _interrupted_cli(url: str) -> subprocess.Popen[str]:
    """A command connected to ``url`` (an echo), stdin left open, sent SIGINT."""
    process = open_cli("connect", url)
    assert process.stdin is not None
    assert process.stdout is not None
    # Once an echo is printed, the command is connected and listening for Ctrl-C.
    process.stdin.write("ping\n")
    process.stdin.flush()
    assert process.stdout.readline() == "ping\n"
    process.send_signal(signal.SIGINT)
    return process


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a subprocess is POSIX only")
def test_sigint_closes_with_1000(uvicorn_websockets_url: str) -> None:
    conn_id, record = new_record()
    process = _interrupted_cli(f"{uvicorn_websockets_url}/echo?id={conn_id}")
    try:
        assert record.finished.wait(EXIT_TIMEOUT)
        assert record.close_code == 1000
    finally:
        _, stderr = _stop(process)
    assert "Traceback" not in stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a subprocess is POSIX only")
def test_sigint_exits_promptly_while_stdin_stays_open(uvicorn_websockets_url: str) -> None:
    process = _interrupted_cli(f"{uvicorn_websockets_url}/echo")
    try:
        assert process.wait(timeout=EXIT_TIMEOUT) in (0, 130)
    finally:
        _stop(process)


# --------------------------------------------------------------------------- demo and usage


def test_demo_runs_and_prints_the_summary() -> None:
    result = streams_cli("demo", "--seconds", "1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.strip().splitlines()
    summary = "\n".join(
        lines[lines.index(next(line for line in lines if line.startswith("Done: "))) :]
    )
    assert "ticks decoded" in summary
    assert summary.endswith("closed with code 1000.")


def test_demo_on_a_pipe_prints_plain_progress_lines() -> None:
    result = streams_cli("demo", "--seconds", "1.5")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith("streams demo: ws.json(Tick)")
    progress = [line for line in lines if re.match(r" *\d+\.\d s: [\d,]+ ticks in ", line)]
    assert len(progress) >= 2, result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX only")
def test_demo_ends_quietly_on_ctrl_c() -> None:
    """Ctrl-C at a terminal signals the whole foreground process group."""
    process = subprocess.Popen(
        [*COMMAND, "demo", "--seconds", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=ENV,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("streams demo:")
        assert " s: " in process.stdout.readline()  # the feed is flowing
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=EXIT_TIMEOUT)
    finally:
        _stop(process)
    assert process.returncode == 0
    assert stderr == ""
    assert stdout.rstrip().endswith("interrupted.")


@contextlib.contextmanager
def demo_server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``streams demo --serve`` on a free port, and the URL it printed."""
    process = subprocess.Popen(
        [*COMMAND, "demo", "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=ENV,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", url), url
        yield process, url
    finally:
        _stop(process)


def test_demo_serve_serves_echo_flood_and_feed() -> None:
    with demo_server() as (process, url):
        echo = streams_cli("connect", url + "/echo", stdin="one\ntwo\n")
        assert (echo.returncode, echo.stdout) == (0, "one\ntwo\n"), echo.stderr
        flood = streams_cli("connect", url + "/flood?n=3&size=12")
        assert flood.stdout.splitlines() == ["00000000xxxx", "00000001xxxx", "00000002xxxx"]
        feed = streams_cli("connect", url + "/feed?rate=0", "-n", "3", "--select", ".seq")
        assert feed.stdout.splitlines() == ["0", "1", "2"]
        missing = streams_cli("connect", url + "/nowhere")
        assert "HTTP 404" in assert_one_line_error(missing)
        assert process.poll() is None  # still serving


def test_demo_serve_echoes_on_the_feed() -> None:
    with demo_server() as (_, url):
        result = streams_cli(
            "connect", url + "/feed?rate=20", "--where", ".op == hi", "-n", "1",
            stdin='{"op": "hi"}\n',
        )  # fmt: skip
        assert result.stdout == '{"op": "hi"}\n', result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a subprocess is POSIX only")
def test_demo_serve_stops_quietly_on_ctrl_c() -> None:
    with demo_server() as (process, _):
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=EXIT_TIMEOUT) == 0
        assert process.stderr is not None
        assert process.stderr.read() == ""


def test_demo_serve_on_a_taken_port_is_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        result = streams_cli("demo", "--serve", "--port", str(sock.getsockname()[1]))
    assert "--port" in assert_one_line_error(result)


def test_version() -> None:
    result = streams_cli("--version")
    assert result.returncode == 0
    assert result.stdout == "streams 0.1.0\n"


def test_no_command_is_a_usage_error() -> None:
    result = streams_cli()
    assert result.returncode == 2
    assert "usage: streams" in result.stderr


def test_help_lists_the_commands() -> None:
    result = streams_cli("--help")
    assert result.returncode == 0
    assert "connect" in result.stdout
    assert "demo" in result.stdout
