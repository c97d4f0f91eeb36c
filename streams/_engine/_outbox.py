"""The outbox: frames on their way to the network, in order, one write per burst.

Sends queue whole frames for one flusher task (started the first time a frame
must wait for it), which joins everything queued since its last write into one
write: concurrent senders never interleave frames, and a burst of sends costs
one write. A send returns as soon as its frame is queued, without a trip
through the event loop, unless more than ``HIGH_WATER`` bytes wait.

When the I/O backend can write without waiting (``write_now``), the first
frame after each read is written at once when nothing else is queued or being
written: what a reply to a message wants.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel

from ._io import ByteIO

__all__ = ["HIGH_WATER", "Outbox"]

#: Queued bytes beyond which a send waits until they are written.
HIGH_WATER = 65_536


class Outbox:
    """The send queue of a session and its flusher.

    Attributes:
        bytes_out: bytes written to the network.
        size: bytes queued and not yet handed to the network.
        done: the flusher ended (cancelled or failed): nothing more is written by it.
        failed: a write failed.
    """

    def __init__(self, io: ByteIO, on_failure: Callable[[Exception], Awaitable[None]]) -> None:
        self._write = io.write
        self._write_now = io.write_now
        self._backlog = io.write_backlog
        self._on_failure = on_failure
        self._out: list[bytes] = []
        self.size = 0
        self._wanted: anyio.Event | None = None
        self._pending = False
        self._drained: anyio.Event | None = None
        self._writing = False
        # A frame was written by queue() itself since the last read.
        self._wrote_directly = False
        self.done = False
        self.failed = False
        self.bytes_out = 0
        #: Starts the flusher task, the first time something must wait for it
        #: (set by the engine; most sessions write everything at once).
        self.start_flusher: Callable[[], None] | None = None
        #: Set when the message being sent in fragments is finished (``None``
        #: when there is none): whole messages wait for it.
        self.fragments_done: anyio.Event | None = None

    def read_happened(self) -> None:
        """A read came in: the next frame may be written at once again."""
        self._wrote_directly = False

    def disable_write_now(self) -> None:
        """Write only through the flusher from now on (the stream is closing)."""
        self._write_now = None

    def queue(self, frame: bytes) -> None:
        """Queue bytes for the network, after everything queued before."""
        write_now = self._write_now
        if (
            write_now is not None
            and not self._out
            and not self._writing
            and not self._wrote_directly
        ):
            try:
                written = write_now(frame)
            except (OSError, RuntimeError):
                # Let the stream's own write raise it, in the flusher.
                self._write_now = None
                written = 0
            if written:
                self.bytes_out += written
                if written == len(frame):
                    self._wrote_directly = True
                    backlog = self._backlog
                    if backlog is None or not backlog():
                        return
                    # Part of it waits in the backend's buffer: an empty write
                    # makes the flusher wait until it is out, so that drain()
                    # waits for it too.
                    frame = b""
                else:
                    frame = frame[written:]
        self._out.append(frame)
        self.size += len(frame)
        if not self._pending:
            self._pending = True
            if self._wanted is not None:
                self._wanted.set()
            elif self.start_flusher is not None:
                self.start_flusher()

    @property
    def idle(self) -> bool:
        """Whether nothing is queued or being written."""
        return not self._out and not self._writing

    async def drain(self) -> None:
        """Wait until everything queued is written, or the flusher ended."""
        while (self._out or self._writing) and not self.done:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()

    async def run(self) -> None:
        """The flusher task: write what is queued, one write per turn."""
        write = self._write
        try:
            while True:
                if self._pending:
                    # Cancelled here, nothing was taken from the queue yet.
                    await anyio.lowlevel.checkpoint()
                else:
                    self._wanted = anyio.Event()
                    await self._wanted.wait()
                self._wanted = None
                self._pending = False
                self._wrote_directly = False
                while self._out:
                    chunks = self._out
                    size = self.size
                    self._out = []
                    self.size = 0
                    self._writing = True
                    try:
                        await write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                    finally:
                        self._writing = False
                    self.bytes_out += size
                self._set_drained()
        except Exception as exc:
            self._out = []
            self.size = 0
            self.failed = True
            self._write_now = None
            await self._on_failure(exc)
        finally:
            # Cancelled, frames still queued stay queued: flush_last() writes
            # them, after what a cancelled write may have left behind.
            self.done = True
            self._write_now = None
            self._set_drained()

    def _set_drained(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    async def flush_last(self, timeout: float | None) -> None:
        """Write what is still queued, even if the flusher was cancelled; bounded by ``timeout``."""
        with anyio.move_on_after(timeout):
            await self.drain()
            if self._out and not self.failed:
                data = b"".join(self._out)
                self._out = []
                self.size = 0
                try:
                    await self._write(data)
                except Exception:
                    return
                self.bytes_out += len(data)
