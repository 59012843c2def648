"""Interactive streams, log following and file copy: what a driver offers beyond the verbs.

A *duplex* is one live byte stream to a process in a container (an attach or
an exec session): ``read`` returns ``b""`` once the stream ended, ``write``
feeds the process's stdin, ``close`` ends the session for good (the engine
connection is closed and whatever an exec left running is ended).

Engines hand out blocking sockets; ``SocketDuplex`` bridges one to asyncio
with a reader thread of its own (a session can last hours: it must not hold
a thread of the engine's small pool) and a bounded queue, so a slow client
slows the reader instead of filling memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol

from typing_extensions import TypedDict

__all__ = [
    "ArchiveStat",
    "Duplex",
    "FrameDemuxer",
    "SocketDuplex",
    "StreamingRuntime",
    "ThreadedReader",
    "until_started",
]

# How long an open waits for the engine to mark its exec running. It takes a few ms on
# an idle host and more than a second on a loaded one (a dashboard terminal's first
# resize failed so in CI, when the wait was a second).
START_WAIT = 10.0


async def until_started(started: Callable[[], Awaitable[bool]], wait: float = START_WAIT) -> None:
    """Return once ``started()`` (the exec runs, or already ended), or after ``wait`` s.

    Engines answer an exec's start before they mark it running; an open waits so
    that a resize right after it finds the session up. The pause between checks
    grows to 200 ms: a slow engine is a loaded one, to be asked less.
    """
    until, pause = time.monotonic() + wait, 0.02
    while time.monotonic() < until and not await started():
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 0.2)


class Duplex(Protocol):
    """One live session with a process in a container."""

    async def read(self) -> bytes:
        """The next output bytes; ``b""`` once the session ended."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the process's stdin."""
        ...

    async def close(self) -> None:
        """End the session: close the engine connection, end an exec's processes."""
        ...


class ArchiveStat(TypedDict):
    """What the engine says about a copied path (Zun's ``stat`` of ``get_archive``)."""

    name: str
    size: int
    mode: int
    mtime: str
    linkTarget: str


class StreamingRuntime(Protocol):
    """The streaming half of a runtime driver (``RuntimeDriver`` includes it)."""

    async def exec_create(self, uuid: str, command: list[str], *, tty: bool) -> str:
        """Prepare ``command`` with stdin open (a TTY if asked); return the exec id."""
        ...

    async def exec_open(self, uuid: str, exec_id: str) -> Duplex:
        """Start a prepared exec of this container and return its session."""
        ...

    async def exec_resize(self, uuid: str, exec_id: str, height: int, width: int) -> None:
        """Resize the TTY of an exec of this container (errors.Invalid if it is not one)."""
        ...

    async def attach(self, uuid: str) -> Duplex:
        """Attach to the main process's stdin and output (detached again on close)."""
        ...

    async def resize(self, uuid: str, height: int, width: int) -> None:
        """Resize the container's own TTY."""
        ...

    async def follow_logs(
        self,
        uuid: str,
        *,
        stdout: bool = True,
        stderr: bool = True,
        timestamps: bool = False,
        tail: int | None = None,
        since: float | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """Open the output stream (errors raise here), yielding until the container stops.

        Close the generator (``aclose``) to stop following early.
        """
        ...

    async def get_archive(self, uuid: str, path: str, limit: int) -> tuple[bytes, ArchiveStat]:
        """A tar of ``path`` in the container; errors.Invalid if missing or over ``limit`` bytes."""
        ...

    async def put_archive(self, uuid: str, path: str, data: bytes) -> None:
        """Extract the tar ``data`` into the directory ``path`` (errors.Invalid if missing)."""
        ...


class ThreadedReader:
    """Calls a blocking ``read`` in a thread of its own, queueing chunks for asyncio.

    ``read`` returns ``b""`` (or raises) at the end. ``stop`` makes the thread
    give up as soon as its current read returns; closing the source is the
    caller's job (that is what unblocks the read).
    """

    def __init__(self, read: Callable[[], bytes], *, name: str, depth: int = 16) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(depth)
        self._read = read
        self._stop = threading.Event()
        self._ended = False
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._read()
                if not chunk or not self._deliver(chunk):
                    break
        except Exception:  # OSError once closed, engine errors: all end the stream
            pass
        self._deliver(b"")

    def _deliver(self, chunk: bytes) -> bool:
        if self._loop.is_closed():
            return False
        try:
            future = asyncio.run_coroutine_threadsafe(self._queue.put(chunk), self._loop)
        except RuntimeError:  # the loop shut down meanwhile
            return False
        while True:
            try:
                future.result(timeout=0.5)
                return True
            except concurrent.futures.TimeoutError:
                if self._stop.is_set() or self._loop.is_closed():
                    future.cancel()
                    return False
            except concurrent.futures.CancelledError:
                return False

    async def read(self) -> bytes:
        """The next chunk; ``b""`` at the end (and ever after)."""
        if self._ended:
            return b""
        chunk = await self._queue.get()
        if not chunk:
            self._ended = True
        return chunk

    def stop(self) -> None:
        """Let the thread end after its current read."""
        self._stop.set()


class FrameDemuxer:
    """Joins the payloads of Docker's multiplexed stdout/stderr frames (8-byte headers).

    A stream without a TTY arrives framed; the frames may be cut anywhere.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        """The payload bytes completed by ``data`` (maybe none yet)."""
        self._buffer += data
        out = bytearray()
        while len(self._buffer) >= 8:
            size = int.from_bytes(self._buffer[4:8], "big")
            if len(self._buffer) < 8 + size:
                break
            out += self._buffer[8 : 8 + size]
            del self._buffer[: 8 + size]
        return bytes(out)


class SocketDuplex:
    """A Duplex over an engine's hijacked connection (a blocking socket).

    ``owners`` are the SDK objects holding the connection, closed with it;
    ``demux`` unframes a stream without a TTY; ``on_close`` runs once after the
    socket closed (an exec uses it to end its processes).
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        owners: list[Any] | None = None,
        demux: bool = False,
        on_close: Callable[[], Awaitable[None]] | None = None,
        name: str = "berth-stream",
    ) -> None:
        self._sock = sock
        self._owners = owners or []
        self._demux = FrameDemuxer() if demux else None
        self._on_close = on_close
        self._closed = False
        self._reader = ThreadedReader(lambda: sock.recv(65536), name=name)

    async def read(self) -> bytes:
        """The next output bytes; ``b""`` once the process or the connection ended."""
        while True:
            chunk = await self._reader.read()
            if not chunk or self._demux is None:
                return chunk
            payload = self._demux.feed(chunk)
            if payload:
                return payload

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the process (ignored once closed)."""
        if not self._closed:
            await asyncio.to_thread(self._sock.sendall, data)

    async def close(self) -> None:
        """Close the connection (unblocking the reader), then run ``on_close`` once."""
        if self._closed:
            return
        self._closed = True
        self._reader.stop()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        for owner in self._owners:
            with contextlib.suppress(Exception):
                owner.close()
        if self._on_close is not None:
            await self._on_close()
