"""A scripted WebSocket server for fault injection, on anyio (runs in the test's own event loop).

Frames are built and parsed here with `struct`, independently of the library under test::

    async def script(peer: ScriptedPeer) -> None:
        frame = await peer.receive_frame()                 # the client's frame, unmasked
        await peer.send_frame(OP_TEXT, frame.payload, rsv1=True)   # a protocol violation
        assert (await peer.receive_close())[0] == 1002

    async with scripted_server(script) as url:             # "ws://127.0.0.1:PORT"
        ...                                                # connect the client to url + "/anything"

The script runs once per accepted connection. An exception in a script fails the test: it
cancels the test body and is re-raised when the block exits (bare when it is the only failure,
on both backends). When the block exits normally, running scripts get ``finish_timeout``
seconds to end, else `TimeoutError`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFAULT_TIMEOUT = 5.0


# --------------------------------------------------------------------------- frames


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame as seen on the wire (payload already unmasked)."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    masked: bool = False
    rsv2: bool = False
    rsv3: bool = False

    @property
    def text(self) -> str:
        return self.payload.decode()

    @property
    def close(self) -> tuple[int, str]:
        """(code, reason) of a close frame; 1005 when the payload is empty."""
        return parse_close_payload(self.payload)


def apply_mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` (masking and unmasking are the same)."""
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bool | bytes = False,
    length_override: int | None = None,
    length_width: int | None = None,
) -> bytes:
    """Encode one frame.

    Args:
        opcode: 4-bit opcode (any value, reserved ones included).
        payload: the unmasked payload.
        fin, rsv1, rsv2, rsv3: header bits.
        mask: False for no mask, True for a random key, or the 4-byte key itself.
        length_override: the length written in the header instead of ``len(payload)``
            (the payload bytes are still all sent).
        length_width: force the length encoding: 7, 16 or 64 bits (default: minimal).

    Returns:
        The frame's bytes.
    """
    length = len(payload) if length_override is None else length_override
    first = (fin << 7) | (rsv1 << 6) | (rsv2 << 5) | (rsv3 << 4) | (opcode & 0x0F)
    key = (os.urandom(4) if mask is True else mask) or b""
    mask_bit = 0x80 if key else 0
    width = length_width or (7 if length <= 125 else 16 if length <= 0xFFFF else 64)
    if width == 7:
        header = struct.pack("!BB", first, mask_bit | length)
    elif width == 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    elif width == 64:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    else:
        raise ValueError(f"length_width must be 7, 16 or 64, not {width}")
    if key:
        if len(key) != 4:
            raise ValueError("a masking key is 4 bytes")
        return header + key + apply_mask(payload, key)
    return header + payload


def parse_frame(data: bytes | bytearray) -> tuple[Frame, int] | None:
    """Decode the frame at the start of ``data``.

    Returns:
        ``(frame, bytes consumed)``, or None if ``data`` does not hold a whole frame yet.
    """
    if len(data) < 2:
        return None
    first, second = data[0], data[1]
    length, offset = second & 0x7F, 2
    if length == 126:
        if len(data) < 4:
            return None
        (length,) = struct.unpack_from("!H", data, 2)
        offset = 4
    elif length == 127:
        if len(data) < 10:
            return None
        (length,) = struct.unpack_from("!Q", data, 2)
        offset = 10
    masked = bool(second & 0x80)
    key = b""
    if masked:
        if len(data) < offset + 4:
            return None
        key = bytes(data[offset : offset + 4])
        offset += 4
    if len(data) < offset + length:
        return None
    payload = bytes(data[offset : offset + length])
    frame = Frame(
        opcode=first & 0x0F,
        payload=apply_mask(payload, key) if masked else payload,
        fin=bool(first & 0x80),
        rsv1=bool(first & 0x40),
        masked=masked,
        rsv2=bool(first & 0x20),
        rsv3=bool(first & 0x10),
    )
    return frame, offset + length


def close_payload(code: int | None = 1000, reason: str | bytes = "") -> bytes:
    """Payload of a close frame (empty when ``code`` is None); ``reason`` may be invalid bytes."""
    if code is None:
        return b""
    raw = reason.encode() if isinstance(reason, str) else reason
    return struct.pack("!H", code) + raw


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a close payload; (1005, "") when empty."""
    if not payload:
        return 1005, ""
    (code,) = struct.unpack_from("!H", payload)
    return code, payload[2:].decode()


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


# --------------------------------------------------------------------------- the peer


class CloseReceived(AssertionError):
    """A close frame came where a message was expected."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"expected a message, got close ({code}, {reason!r})")
        self.code = code
        self.reason = reason


class ScriptedPeer:
    """The server's side of one connection, driven by a test script."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.request_line = ""
        self.path = ""
        self.request_headers: list[tuple[str, str]] = []
        """Request headers as sent (original case, in order)."""
        self._buffer = bytearray()
        self._eof = False

    # ---- reading

    async def _read_more(self) -> None:
        try:
            self._buffer += await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            self._eof = True
            raise anyio.EndOfStream from None

    async def _read_request(self, timeout: float) -> None:
        with anyio.fail_after(timeout):
            while b"\r\n\r\n" not in self._buffer:
                await self._read_more()
        end = self._buffer.index(b"\r\n\r\n")
        head = self._buffer[:end].decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        self.request_line = head[0]
        self.path = head[0].split(" ")[1] if " " in head[0] else ""
        for line in head[1:]:
            name, _, value = line.partition(":")
            self.request_headers.append((name.strip(), value.strip()))

    def header(self, name: str) -> str | None:
        """First request header called ``name`` (case-insensitive), or None."""
        return next((v for k, v in self.request_headers if k.lower() == name.lower()), None)

    async def receive_frame(
        self, *, timeout: float = DEFAULT_TIMEOUT, allow_unmasked: bool = False
    ) -> Frame:
        """Next frame from the client.

        Raises:
            AssertionError: the frame is not masked (unless ``allow_unmasked``).
            anyio.EndOfStream: the client closed TCP first.
            TimeoutError: nothing complete within ``timeout``.
        """
        with anyio.fail_after(timeout):
            while (parsed := parse_frame(self._buffer)) is None:
                await self._read_more()
        frame, consumed = parsed
        del self._buffer[:consumed]
        if not frame.masked and not allow_unmasked:
            raise AssertionError(f"client sent an unmasked frame: {frame}")
        return frame

    async def receive_message(self, *, timeout: float = DEFAULT_TIMEOUT) -> str | bytes:
        """Next text/binary message (fragments joined); answers pings, skips pongs.

        Raises:
            CloseReceived: the client's close frame came instead (an AssertionError).
            AssertionError: a protocol oddity came instead.
        """
        parts: list[Frame] = []
        while True:
            frame = await self.receive_frame(timeout=timeout)
            if frame.opcode == OP_PING:
                await self.send_frame(OP_PONG, frame.payload)
                continue
            if frame.opcode == OP_PONG:
                continue
            if frame.opcode == OP_CLOSE:
                raise CloseReceived(*frame.close)
            expected_cont = bool(parts)
            if (frame.opcode == OP_CONT) != expected_cont:
                raise AssertionError(f"unexpected frame in a message: {frame}")
            parts.append(frame)
            if frame.fin:
                data = b"".join(f.payload for f in parts)
                return data.decode() if parts[0].opcode == OP_TEXT else data

    async def receive_close(
        self, *, timeout: float = DEFAULT_TIMEOUT, skip_other: bool = True
    ) -> tuple[int, str]:
        """Receive frames until the client's close frame; return its (code, reason).

        Non-close frames are skipped, or fail the test when ``skip_other`` is False.
        """
        while True:
            frame = await self.receive_frame(timeout=timeout)
            if frame.opcode == OP_CLOSE:
                return frame.close
            if not skip_other:
                raise AssertionError(f"expected a close frame, got {frame}")

    async def wait_eof(self, *, timeout: float = DEFAULT_TIMEOUT) -> list[Frame]:
        """Wait until the client closes TCP; return the frames received meanwhile."""
        frames: list[Frame] = []
        with anyio.fail_after(timeout):
            while True:
                try:
                    frames.append(await self.receive_frame(timeout=timeout, allow_unmasked=True))
                except anyio.EndOfStream:
                    return frames

    # ---- writing

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (corrupt data, chopped frames, several frames at once)."""
        await self.stream.send(data)

    async def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv1: bool = False,
        rsv2: bool = False,
        rsv3: bool = False,
        mask: bool | bytes = False,
        length_override: int | None = None,
        length_width: int | None = None,
    ) -> None:
        """Send one frame (see `build_frame`)."""
        await self.send_raw(
            build_frame(
                opcode,
                payload,
                fin=fin,
                rsv1=rsv1,
                rsv2=rsv2,
                rsv3=rsv3,
                mask=mask,
                length_override=length_override,
                length_width=length_width,
            )
        )

    async def send_text(self, text: str) -> None:
        await self.send_frame(OP_TEXT, text.encode())

    async def send_bytes(self, data: bytes) -> None:
        await self.send_frame(OP_BINARY, data)

    async def send_close(self, code: int | None = 1000, reason: str | bytes = "") -> None:
        await self.send_frame(OP_CLOSE, close_payload(code, reason))

    # ---- closing

    async def close_handshake(
        self, code: int | None = 1000, reason: str = "", *, timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[int, str]:
        """Server-initiated clean close: send close, await the client's, close TCP.

        Returns:
            The client's (code, reason).
        """
        await self.send_close(code, reason)
        answer = await self.receive_close(timeout=timeout)
        await self.close_tcp()
        return answer

    async def answer_close(self, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
        """Client-initiated clean close: await its close frame, echo the code, close TCP.

        Returns:
            The client's (code, reason).
        """
        code, reason = await self.receive_close(timeout=timeout)
        await self.send_close(None if code == 1005 else code)
        await self.close_tcp()
        return code, reason

    async def echo(self, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
        """Echo messages (answering pings) until the client closes; then `answer_close`.

        Returns:
            The client's (code, reason).
        """
        while True:
            try:
                message = await self.receive_message(timeout=timeout)
            except CloseReceived as close:
                await self.send_close(None if close.code == 1005 else close.code)
                await self.close_tcp()
                return close.code, close.reason
            if isinstance(message, str):
                await self.send_text(message)
            else:
                await self.send_bytes(message)

    async def half_close(self) -> None:
        """Send FIN (no more data from the server) but keep reading."""
        await self.stream.send_eof()

    async def close_tcp(self) -> None:
        """Close the TCP connection gracefully (FIN)."""
        await self.stream.aclose()

    async def abort(self) -> None:
        """Reset the TCP connection (RST: SO_LINGER 0, then close)."""
        raw: socket.socket = self.stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()


# --------------------------------------------------------------------------- the server

Script = Callable[[ScriptedPeer], Awaitable[None]]


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Status"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


async def _handshake(
    peer: ScriptedPeer,
    *,
    subprotocol: str | None,
    extra_headers: Sequence[tuple[str, str]],
    status: int,
    accept_key_override: str | None,
) -> None:
    lines = []
    if status == 101:
        key = peer.header("Sec-WebSocket-Key") or ""
        accept = accept_key(key) if accept_key_override is None else accept_key_override
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept}"]
        if subprotocol is not None:
            lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        body = b""
    else:
        body = b"rejected\n"
        lines += [f"Content-Length: {len(body)}", "Content-Type: text/plain", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in extra_headers]
    head = "".join(line + "\r\n" for line in lines) + "\r\n"
    await peer.send_raw(_status_line(status) + head.encode("latin-1") + body)


@asynccontextmanager
async def scripted_server(
    script: Script | None,
    *,
    subprotocol: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
    status: int = 101,
    accept_key_override: str | None = None,
    handshake: bool = True,
    finish_timeout: float = DEFAULT_TIMEOUT,
) -> AsyncIterator[str]:
    """Serve ``script`` on 127.0.0.1 (random port); yield the base URL ``ws://127.0.0.1:PORT``.

    Args:
        script: run with a `ScriptedPeer` for each connection once the handshake is answered
            (None: answer the handshake and do nothing more).
        subprotocol: the Sec-WebSocket-Protocol to answer with (whatever the client offered).
        extra_headers: added to the response.
        status: response status; anything but 101 sends a small text body and Connection: close.
        accept_key_override: send this Sec-WebSocket-Accept instead of the right one.
        handshake: False to only read the request and let the script answer (or not).
        finish_timeout: how long scripts may still run after the block exits normally.

    Raises:
        TimeoutError: a script was still running ``finish_timeout`` s after the block exited.
        Exception: a script's own exception when it is the only failure (else an exception
            group of all of them).
    """
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)

    async def run(stream: anyio.abc.SocketStream) -> None:
        peer = ScriptedPeer(stream)
        async with stream:
            try:
                await peer._read_request(DEFAULT_TIMEOUT)
            except anyio.EndOfStream:
                return  # the client left before sending a request: nothing to script
            if handshake:
                await _handshake(
                    peer,
                    subprotocol=subprotocol,
                    extra_headers=extra_headers,
                    status=status,
                    accept_key_override=accept_key_override,
                )
            if script is not None:
                await script(peer)

    try:
        async with anyio.create_task_group() as scripts:
            accepting = anyio.CancelScope()

            async def accept_loop() -> None:
                with accepting:
                    async with listener:
                        await listener.serve(run, task_group=scripts)

            scripts.start_soon(accept_loop)
            try:
                yield f"ws://127.0.0.1:{port}"
            except BaseException:
                scripts.cancel_scope.cancel()
                raise
            accepting.cancel()
            scripts.cancel_scope.deadline = anyio.current_time() + finish_timeout
    except BaseExceptionGroup as group:
        # One failure (the test body's or a script's): raise it bare, so that
        # `pytest.raises` and tracebacks read the same on asyncio and trio.
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
    if scripts.cancel_scope.cancelled_caught:
        raise TimeoutError(f"a scripted peer was still running {finish_timeout} s after the test")


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return leaves
