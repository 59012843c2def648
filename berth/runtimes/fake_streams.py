"""The fake driver's streaming half: echo sessions, recorded resizes, a tiny file system.

An exec or attach session echoes what it is sent (a line ``exit`` ends it);
``sessions`` records every session and whether it was closed, ``tty_sizes``
every resize. Archives go to ``files`` (``{uuid: {path: bytes}}``), where
``/`` and ``/tmp`` exist as directories. Test code only.
"""

from __future__ import annotations

import asyncio
import io
import posixpath
import tarfile
import uuid as uuid_mod
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from berth import errors
from berth.runtimes.streams import ArchiveStat, Duplex

if TYPE_CHECKING:
    from berth.runtimes.fake import FakeContainer

__all__ = ["EchoSession", "FakeStreams"]


@dataclass
class EchoSession:
    """A Duplex that echoes its input; ``exit`` on a line of its own ends it."""

    kind: str
    uuid: str
    exec_id: str | None = None
    closed: bool = False
    received: bytearray = field(default_factory=bytearray)
    _out: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    async def read(self) -> bytes:
        """What was echoed; ``b""`` once ended."""
        if self.closed and self._out.empty():
            return b""
        return await self._out.get()

    async def write(self, data: bytes) -> None:
        """Echo ``data``; a line ``exit`` ends the session."""
        self.received += data
        self._out.put_nowait(data)
        if data.strip() == b"exit":
            self._out.put_nowait(b"")

    async def close(self) -> None:
        """Record the close and end any reader."""
        self.closed = True
        self._out.put_nowait(b"")


class FakeStreams:
    """Mixed into FakeDriver: it provides ``containers``, ``_enter`` and ``_get``."""

    # Declared for the type checker only; FakeDriver defines them.
    containers: dict[str, FakeContainer]
    _enter: Callable[..., Awaitable[None]]
    _get: Callable[[str], FakeContainer]

    def init_streams(self) -> None:
        """Set up the records (called by FakeDriver.__init__)."""
        self.execs: dict[str, tuple[str, list[str], bool]] = {}
        self.sessions: list[EchoSession] = []
        self.tty_sizes: dict[str, tuple[int, int]] = {}
        self.files: dict[str, dict[str, bytes]] = {}

    def _running(self, uuid: str) -> FakeContainer:
        record = self._get(uuid)
        if record.state != "running":
            raise errors.InvalidStateException(f"Container {record.runtime_id} is not running")
        return record

    def _own_exec(self, uuid: str, exec_id: str) -> None:
        if self.execs.get(exec_id, ("",))[0] != uuid:
            raise errors.Invalid(f"No exec instance {exec_id} in container {uuid}.")

    async def exec_create(self, uuid: str, command: list[str], *, tty: bool) -> str:
        """Record the exec; its id is 64 hex digits like the engine's."""
        await self._enter("exec_create", uuid)
        self._running(uuid)
        exec_id = uuid_mod.uuid4().hex * 2
        self.execs[exec_id] = (uuid, command, tty)
        return exec_id

    async def exec_open(self, uuid: str, exec_id: str) -> Duplex:
        """An echo session for a recorded exec of this container."""
        await self._enter("exec_open", uuid)
        self._running(uuid)
        self._own_exec(uuid, exec_id)
        session = EchoSession("exec", uuid, exec_id)
        self.sessions.append(session)
        return session

    async def exec_resize(self, uuid: str, exec_id: str, height: int, width: int) -> None:
        """Record the size under the exec id."""
        await self._enter("exec_resize", uuid)
        self._own_exec(uuid, exec_id)
        self.tty_sizes[exec_id] = (height, width)

    async def attach(self, uuid: str) -> Duplex:
        """An echo session on the container."""
        await self._enter("attach", uuid)
        self._running(uuid)
        session = EchoSession("attach", uuid)
        self.sessions.append(session)
        return session

    async def resize(self, uuid: str, height: int, width: int) -> None:
        """Record the size under the container's UUID."""
        await self._enter("resize", uuid)
        self._running(uuid)
        self.tty_sizes[uuid] = (height, width)

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
        """The lines of ``logs`` as they are appended, until the container is not running."""
        await self._enter("follow_logs", uuid)
        record = self._get(uuid)
        return _follow(record, len(record.logs) - tail if tail is not None else 0)

    async def get_archive(self, uuid: str, path: str, limit: int) -> tuple[bytes, ArchiveStat]:
        """A tar of a file or directory of ``files``."""
        await self._enter("get_archive", uuid)
        self._get(uuid)
        files = self.files.setdefault(uuid, {})
        path = posixpath.normpath(path)
        chosen = {p: d for p, d in files.items() if p == path or p.startswith(path + "/")}
        if not chosen and path not in ("/", "/tmp"):
            raise errors.Invalid(f"Cannot copy {path}: Could not find the file {path}")
        parent = posixpath.dirname(path)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in sorted(chosen.items()):
                info = tarfile.TarInfo(posixpath.relpath(name, parent))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        data = buffer.getvalue()
        if len(data) > limit:
            raise errors.Invalid(f"{path} is larger than {limit} bytes as a tar.")
        size = len(files[path]) if path in files else 4096
        stat: ArchiveStat = {
            "name": posixpath.basename(path),
            "size": size,
            "mode": 0o644 if path in files else 0o20000000755,
            "mtime": "2026-01-01T00:00:00Z",
            "linkTarget": "",
        }
        return data, stat

    async def put_archive(self, uuid: str, path: str, data: bytes) -> None:
        """Extract regular files into ``files`` under the directory ``path``."""
        await self._enter("put_archive", uuid)
        self._get(uuid)
        files = self.files.setdefault(uuid, {})
        path = posixpath.normpath(path)
        if path not in ("/", "/tmp") and not any(p.startswith(path + "/") for p in files):
            raise errors.Invalid(f"Cannot copy into {path}: Could not find the file {path}")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    files[posixpath.join(path, member.name)] = extracted.read()


async def _follow(record: FakeContainer, start: int) -> AsyncGenerator[bytes, None]:
    sent = max(0, start)
    while True:
        while sent < len(record.logs):
            yield record.logs[sent].encode()
            sent += 1
        if record.state != "running":
            return
        await asyncio.sleep(0.02)
