"""Peak memory growth receiving and sending one large message fragment by fragment.

A peer in its own process (frames written by hand, on 127.0.0.1) sends a message of
``--size-mib`` MiB in 64 KiB frames, then receives one of the same size and answers with its
SHA-256. The client receives it with ``receive_fragments()`` and sends it with
``send_fragments()``, hashing the parts and never holding the message; the peak resident
memory (RSS) of the client process during each transfer, above what it was before, is the
figure. Run alone::

    python benchmarks/large_messages.py                 # 128 MiB, asyncio, trio and sync
    python benchmarks/large_messages.py --size-mib 512 --api asyncio --json

On Linux, the peak is the kernel's high-water mark (``VmHWM``), reset before each transfer;
elsewhere, RSS sampled every millisecond.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
FRAME = 64 * 1024
LIMIT_MIB = 32
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ------------------------------------------------------------------------------ the data


def chunks(size: int) -> Iterator[bytes]:
    """The message, 64 KiB at a time: the same pseudo-random bytes for the peer and the client."""
    block = hashlib.sha256(b"large").digest() * (FRAME // 32)
    sent = 0
    index = 0
    while sent < size:
        n = min(FRAME, size - sent)
        yield index.to_bytes(8, "big") + block[8:n] if n > 8 else block[:n]
        sent += n
        index += 1


def expected_digest(size: int) -> str:
    digest = hashlib.sha256()
    for chunk in chunks(size):
        digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------ the peer


def _header(opcode: int, fin: bool, length: int) -> bytes:
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes((first, length))
    if length < 0x10000:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def _read_exact(sock: socket.socket, n: int, buffer: bytearray) -> bytes:
    while len(buffer) < n:
        data = sock.recv(max(n - len(buffer), 262_144))
        if not data:
            raise EOFError
        buffer += data
    out = bytes(buffer[:n])
    del buffer[:n]
    return out


def _read_frame(sock: socket.socket, buffer: bytearray) -> tuple[int, bool, bytes]:
    b0, b1 = _read_exact(sock, 2, buffer)
    length = b1 & 0x7F
    if length == 126:
        length = int.from_bytes(_read_exact(sock, 2, buffer), "big")
    elif length == 127:
        length = int.from_bytes(_read_exact(sock, 8, buffer), "big")
    key = _read_exact(sock, 4, buffer) if b1 & 0x80 else b""
    payload = _read_exact(sock, length, buffer)
    if key:
        mask = (key * (length // 4 + 1))[:length]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(
            length, "big"
        )
    return b0 & 0x0F, bool(b0 & 0x80), payload


def serve(size: int) -> None:
    """The peer: per connection, send the message, receive one, answer with its SHA-256."""
    listener = socket.create_server(("127.0.0.1", 0))
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    while True:
        sock, _ = listener.accept()
        with sock:
            buffer = bytearray()
            while b"\r\n\r\n" not in buffer:
                buffer += sock.recv(4096)
            head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
            buffer = bytearray(rest)
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            if head.split(b" ")[1] == b"/receive":
                # The message the client receives: 64 KiB frames.
                count = -(-size // FRAME)
                for i, chunk in enumerate(chunks(size)):
                    opcode = 2 if i == 0 else 0
                    sock.sendall(_header(opcode, i == count - 1, len(chunk)) + chunk)
            # The message the client sends (if any): hashed as it arrives.
            digest = hashlib.sha256()
            try:
                while True:
                    opcode, fin, payload = _read_frame(sock, buffer)
                    if opcode == 8:
                        sock.sendall(_header(8, True, len(payload)) + payload)
                        break
                    if opcode in (0, 1, 2):
                        digest.update(payload)
                        if fin:
                            answer = digest.hexdigest().encode()
                            sock.sendall(_header(1, True, len(answer)) + answer)
                            digest = hashlib.sha256()
            except (EOFError, OSError):
                pass


# ---------------------------------------------------------------------------- the memory


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakRSS:
    """The peak RSS of this process during a block, above its RSS before it, in bytes."""

    def __init__(self) -> None:
        self.growth = 0
        self._peak = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def __enter__(self) -> PeakRSS:
        self._before = _current_rss()
        try:
            # Resets VmHWM to the current RSS (Linux).
            Path("/proc/self/clear_refs").write_text("5")
            self._kernel = _rss_kib("VmHWM") is not None
        except OSError:
            self._kernel = False
        if not self._kernel:
            self._peak = self._before
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self._peak = max(self._peak, _current_rss())

    def __exit__(self, *exc: object) -> None:
        if self._kernel:
            peak = (_rss_kib("VmHWM") or 0) * 1024
        else:
            self._stop.set()
            assert self._sampler is not None
            self._sampler.join()
            peak = self._peak
        self.growth = max(peak - self._before, 0)


def _current_rss() -> int:
    kib = _rss_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    import psutil  # type: ignore[import-not-found]  # not Linux: psutil, if installed

    return int(psutil.Process().memory_info().rss)


# ---------------------------------------------------------------------------- the client


OPTIONS: dict[str, Any] = {
    "max_message_size_bytes": FRAME,
    "max_fragmented_size_bytes": None,
    "compression": None,
    "close_timeout": 5.0,
}


async def run_async(url: str, direction: str, size: int) -> dict[str, Any]:
    import streams

    async with streams.aconnect_ws(url + direction, **OPTIONS) as ws:
        with PeakRSS() as peak:
            start = time.perf_counter()
            if direction == "receive":
                digest = hashlib.sha256()
                async for part in ws.receive_fragments():
                    assert isinstance(part, bytes)
                    digest.update(part)
                intact = digest.hexdigest() == expected_digest(size)
            else:
                await ws.send_fragments(chunks(size))
                intact = await ws.receive_text() == expected_digest(size)
            seconds = time.perf_counter() - start
    return _result(peak, intact, seconds)


def run_sync(url: str, direction: str, size: int) -> dict[str, Any]:
    import streams

    with streams.connect_ws(url + direction, **OPTIONS) as ws, PeakRSS() as peak:
        start = time.perf_counter()
        if direction == "receive":
            digest = hashlib.sha256()
            for part in ws.receive_fragments():
                assert isinstance(part, bytes)
                digest.update(part)
            intact = digest.hexdigest() == expected_digest(size)
        else:
            ws.send_fragments(chunks(size))
            intact = ws.receive_text() == expected_digest(size)
        seconds = time.perf_counter() - start
    return _result(peak, intact, seconds)


def _result(peak: PeakRSS, intact: bool, seconds: float) -> dict[str, Any]:
    return {
        "growth_mib": round(peak.growth / MIB, 2),
        "intact": intact,
        "seconds": round(seconds, 2),
    }


def measure(api: str, url: str, direction: str, size: int) -> dict[str, Any]:
    """One transfer with ``api``, in this process."""
    if api == "sync":
        return run_sync(url, direction, size)
    if api == "trio":
        import trio

        return trio.run(run_async, url, direction, size)
    import asyncio

    return asyncio.run(run_async(url, direction, size))


# ------------------------------------------------------------------------------ the runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--api", choices=["asyncio", "trio", "sync"], action="append")
    parser.add_argument("--json", action="store_true", help="print one JSON line per transfer")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=2, metavar=("URL", "DIRECTION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = args.size_mib * MIB
    if args.serve:
        serve(size)
        return 0
    apis = args.api or ["asyncio", "trio", "sync"]
    if args.client:
        url, direction = args.client
        print(json.dumps(measure(apis[0], url, direction, size)), flush=True)
        return 0
    peer = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--size-mib", str(args.size_mib)],
        stdout=subprocess.PIPE,
        text=True,
    )
    results: list[dict[str, Any]] = []
    try:
        assert peer.stdout is not None
        url = f"ws://127.0.0.1:{peer.stdout.readline().split()[1]}/"
        for api in apis:
            for direction in ("receive", "send"):
                # Each transfer in a fresh process: what it costs, not what another left.
                command = [sys.executable, __file__, "--client", url, direction, "--api", api]
                command += ["--size-mib", str(args.size_mib)]
                out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                results.append({"api": api, "direction": direction, **result})
    finally:
        peer.kill()
        peer.wait()
    if args.json:
        for result in results:
            print(json.dumps(result))
    else:
        print(f"Peak RSS growth, one {args.size_mib} MiB message in 64 KiB fragments")
        print(f"{'API':<8} {'direction':<9} {'growth':>10} {'intact':>7} {'seconds':>8}")
        for r in results:
            print(
                f"{r['api']:<8} {r['direction']:<9} {r['growth_mib']:>6.2f} MiB"
                f" {'yes' if r['intact'] else 'NO':>7} {r['seconds']:>8}"
            )
    if all(r["intact"] and r["growth_mib"] < LIMIT_MIB for r in results):
        return 0
    print(f"FAILED: a message was not intact, or memory grew by {LIMIT_MIB} MiB or more")
    return 1


if __name__ == "__main__":
    sys.exit(main())
