"""The proxy's byte plumbing: splice (both ways, idle limit), UTF-8 framing, the ~. escape."""

from __future__ import annotations

import asyncio

import pytest

from berth.pipes import LineEscape, Utf8Aligned, splice


class Pipe:
    """A ByteStream fed by the test; ``written`` collects what the other side sent."""

    def __init__(self, *chunks: bytes) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        for chunk in chunks:
            self.inbox.put_nowait(chunk)
        self.written = bytearray()

    async def read(self) -> bytes:
        return await self.inbox.get()

    async def write(self, data: bytes) -> None:
        self.written += data


async def test_splice_copies_both_ways_until_a_side_ends() -> None:
    a, b = Pipe(b"to-b", b""), Pipe(b"to-a")
    assert await splice(a, b, idle=5) == "a"
    assert b.written == b"to-b" and a.written == b"to-a"


async def test_splice_ends_an_idle_session() -> None:
    a, b = Pipe(b"x"), Pipe()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await splice(a, b, idle=0.2) == "idle"
    assert 0.15 < loop.time() - started < 2


async def test_traffic_keeps_a_session_alive() -> None:
    a, b = Pipe(), Pipe()

    async def chatter() -> None:
        for _ in range(6):
            await asyncio.sleep(0.05)
            a.inbox.put_nowait(b".")
        a.inbox.put_nowait(b"")

    task = asyncio.create_task(chatter())
    assert await splice(a, b, idle=0.2) == "a"
    await task
    assert b.written == b"......"


async def test_a_failed_write_ends_the_written_side() -> None:
    class Broken(Pipe):
        async def write(self, data: bytes) -> None:
            raise ConnectionResetError

    assert await splice(Pipe(b"data"), Broken(), idle=5) == "b"


async def test_utf8_aligned_never_splits_a_character() -> None:
    text = "héllo → wörld €".encode()
    chunks = [text[i : i + 1] for i in range(len(text))] + [b""]
    aligned = Utf8Aligned(Pipe(*chunks))
    out = []
    while chunk := await aligned.read():
        out.append(chunk.decode())  # would raise on a split character
    assert "".join(out) == "héllo → wörld €"


@pytest.mark.parametrize(
    ("chunks", "forwarded", "escaped"),
    [
        ([b"ls\r", b"~", b"."], b"ls\r", True),
        ([b"ls\r~.rest"], b"ls\r", True),
        ([b"~."], b"~.", False),  # not after an Enter: the client's rule
        ([b"a\r", b"~", b"x"], b"a\r~x", False),
        ([b"a\n~~"], b"a\n~~", False),
    ],
)
def test_line_escape(chunks: list[bytes], forwarded: bytes, escaped: bool) -> None:
    escape = LineEscape()
    out, seen = bytearray(), False
    for chunk in chunks:
        data, seen = escape.feed(chunk)
        out += data
        if seen:
            break
    assert (bytes(out), seen) == (forwarded, escaped)
