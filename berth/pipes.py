"""Joining two byte streams both ways, with an idle limit (the heart of every proxy hop).

The API joins a user's websocket to an agent's; the agent joins the API's
websocket to an engine session. Both are ``splice(a, b, idle=...)`` over two
``ByteStream`` adapters; neither side knows what the other is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal, Protocol

__all__ = ["ByteStream", "LineEscape", "Utf8Aligned", "splice"]

log = logging.getLogger(__name__)

Ending = Literal["a", "b", "idle"]


class ByteStream(Protocol):
    """Something to read bytes from and write bytes to."""

    async def read(self) -> bytes:
        """The next bytes; ``b""`` once the stream ended."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data`` (raises once the stream is gone)."""
        ...


async def splice(a: ByteStream, b: ByteStream, *, idle: float) -> Ending:
    """Copy a→b and b→a until one side ends or nothing moved for ``idle`` seconds.

    Returns which side ended first (``"a"`` or ``"b"``, a failed write counting
    as the written side ending) or ``"idle"``. Closing the streams is the
    caller's job: only it knows how.
    """
    loop = asyncio.get_running_loop()
    last = loop.time()

    async def copy(src: ByteStream, dst: ByteStream, dst_name: Ending) -> Ending:
        nonlocal last
        src_name: Ending = "b" if dst_name == "a" else "a"
        while True:
            try:
                chunk = await src.read()
            except Exception as exc:  # any transport failure ends the stream
                log.debug("stream %s ended: %r", src_name, exc)
                return src_name
            if not chunk:
                return src_name
            last = loop.time()
            try:
                await dst.write(chunk)
            except Exception as exc:
                log.debug("stream %s ended: %r", dst_name, exc)
                return dst_name

    tasks = [
        asyncio.create_task(copy(a, b, "b")),
        asyncio.create_task(copy(b, a, "a")),
    ]
    try:
        while True:
            remaining = last + idle - loop.time()
            if remaining <= 0:
                return "idle"
            done, _ = await asyncio.wait(
                tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if done:
                return next(iter(done)).result()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Utf8Aligned:
    """Reads from ``stream`` in chunks that never split a UTF-8 character.

    The stock Zun client decodes every websocket frame on its own as UTF-8;
    a character cut between two frames would crash it. The byte sequence is
    unchanged, only where frames end moves (by at most three bytes).
    """

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._held = b""

    async def read(self) -> bytes:
        """The next chunk ending on a character boundary; ``b""`` at the end."""
        while True:
            chunk = await self._stream.read()
            if not chunk:
                rest, self._held = self._held, b""
                return rest
            data = self._held + chunk
            cut = _boundary(data)
            self._held = data[cut:]
            if cut:
                return data[:cut]

    async def write(self, data: bytes) -> None:
        """Pass ``data`` through."""
        await self._stream.write(data)


def _boundary(data: bytes) -> int:
    """The length of ``data`` without an incomplete UTF-8 sequence at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)  # ASCII: complete
        if byte >= 0xC0:  # a lead byte: complete if its sequence fits
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)  # not UTF-8 at all: pass it on as it is


class LineEscape:
    """Spots ``~.`` typed at the start of a line (after Enter), as ssh and the Zun client do.

    The stock client announces "type ~. to disconnect" but, on Python 3,
    compares the bytes it reads with a str and never sees it, sending the keys
    on instead; the proxy honours the announced escape for it. ``feed`` returns
    the bytes to pass on and whether the escape was typed (what follows it is
    dropped). A ``~`` at a line start is held back until the next byte shows
    whether it starts the escape.
    """

    def __init__(self) -> None:
        self._line_start = False  # like the client: only after an Enter
        self._held = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, escape seen)."""
        out = bytearray()
        for byte in data:
            if self._held:
                self._held = False
                if byte == ord("."):
                    return bytes(out), True
                out.append(ord("~"))
            elif self._line_start and byte == ord("~"):
                self._held = True
                self._line_start = False
                continue
            out.append(byte)
            self._line_start = byte in (ord("\r"), ord("\n"))
        return bytes(out), False
