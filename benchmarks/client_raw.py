"""The ceiling: a minimal blocking-socket client in pure Python.

The handshake is written by hand, then a tight loop walks the frames in a buffer and produces
the same objects as the library clients (``str`` for text, ``bytes`` for binary, a dict or a
``Tick`` for JSON). No validation beyond what is needed to walk the frames: this is how fast a
pure-Python reader on one socket can go, not a usable client. On wss:// the socket is wrapped
by ``ssl`` (verified against ``--ca``), so the ceiling includes the TLS record layer.

Variant: ``sync``. The memory scenarios do not apply.
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import time
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import msgspec
from _common import (
    Tick,
    Window,
    blast_path,
    client_args,
    emit,
    latency,
    run_main,
    send_text,
    ssl_context,
    throughput,
)

args = client_args(("sync",))
SSL = ssl_context(args)
KIND = {
    "recv_text": "text",
    "recv_json": "json",
    "recv_struct": "json_struct",
    "recv_big": "binary",
}
RECV = 1 << 20


class Conn:
    def __init__(self, path: str) -> None:
        u = urlsplit(args.url)
        sock = socket.create_connection((u.hostname, u.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock if SSL is None else SSL.wrap_socket(sock, server_hostname=u.hostname)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        self.buf = bytearray(rest)

    def send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 1 << 16:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        key = os.urandom(4)
        mask = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(
            n, "little"
        )
        self.sock.sendall(head + key + masked)

    def messages(self) -> Any:
        """Yield ``str`` or ``bytes`` for every data frame until the close frame."""
        buf = self.buf
        recv = self.sock.recv
        while True:
            pos = 0
            end_buf = len(buf)
            while end_buf - pos >= 2:
                b0 = buf[pos]
                ln = buf[pos + 1] & 0x7F
                start = pos + 2
                if ln == 126:
                    if end_buf - pos < 4:
                        break
                    ln = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                    start = pos + 4
                elif ln == 127:
                    if end_buf - pos < 10:
                        break
                    ln = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    start = pos + 10
                end = start + ln
                if end > end_buf:
                    break
                op = b0 & 0x0F
                if op == 1:
                    yield buf[start:end].decode()
                elif op == 2:
                    yield bytes(buf[start:end])
                elif op == 8:
                    self.send(8, bytes(buf[start : start + 2]))
                    self.sock.close()
                    return
                pos = end
            del buf[:pos]
            chunk = recv(RECV)
            if not chunk:
                return
            buf += chunk

    def receive(self) -> Any:
        return next(self._it)

    def start(self) -> None:
        self._it = self.messages()


def main() -> None:
    s, n, size = args.scenario, args.n, args.size
    if s in KIND:
        decode: Any = None
        if s == "recv_json":
            decode = msgspec.json.decode
        elif s == "recv_struct":
            decode = msgspec.json.Decoder(Tick).decode
        c = Conn(blast_path(n, size, KIND[s]))
        w = Window()
        w.start()
        count = 0
        if decode is None:
            for _msg in c.messages():
                count += 1
        else:
            for msg in c.messages():
                decode(msg)
                count += 1
        w.stop()
        w.received = count
        emit(args, "raw", throughput(s, n, size, w))
    elif s == "echo":
        c = Conn("/echo")
        c.start()
        payload = send_text(size).encode()
        samples = []
        w = Window()
        w.start()
        for _ in range(n):
            t0 = time.perf_counter_ns()
            c.send(1, payload)
            c.receive()
            samples.append(time.perf_counter_ns() - t0)
        w.stop()
        emit(args, "raw", latency(samples, w))
    elif s in ("send_text", "send_big"):
        c = Conn(f"/sink?n={n}")
        c.start()
        opcode, payload = (
            (1, send_text(size).encode()) if s == "send_text" else (2, os.urandom(size))
        )
        w = Window()
        w.start()
        for _ in range(n):
            c.send(opcode, payload)
        reply = c.receive()
        w.stop()
        assert reply == f"done {n}", reply
        emit(args, "raw", throughput(s, n, size, w))
    else:
        emit(args, "raw", {"skip": "not a session library"})


if __name__ == "__main__":
    run_main(main)
