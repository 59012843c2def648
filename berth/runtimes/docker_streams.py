"""Docker's streaming half: exec and attach sessions, TTY resizes, log following, archives.

Mixed into ``DockerDriver`` (it uses the driver's ``_engine``). Sessions use
the SDK to open the engine's hijacked connection (it knows the socket, TLS and
API version already; aiodocker would be a second engine client to configure)
and ``SocketDuplex`` to bridge that blocking socket to asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any, Protocol, TypeVar

from berth import errors
from berth.runtimes.base import container_name
from berth.runtimes.hangup import signal_session
from berth.runtimes.streams import (
    ArchiveStat,
    Duplex,
    SocketDuplex,
    ThreadedReader,
    until_started,
)

__all__ = ["DockerStreams"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_HANGUP_GRACE = 2.0  # seconds an exec gets to end after SIGHUP before SIGKILL


class _EngineCalls(Protocol):
    async def run(self, call: Callable[[Any], T]) -> T: ...


def _socket_of(conn: Any) -> Any:
    """The real socket under the SDK's ``SocketIO`` (or the TLS socket itself)."""
    return getattr(conn, "_sock", conn)


class DockerStreams:
    """Interactive sessions and copies against the engine of ``self._engine``."""

    _engine: _EngineCalls

    # -- exec sessions

    async def exec_create(self, uuid: str, command: list[str], *, tty: bool) -> str:
        """Create (not start) an exec with stdin open; its id is the engine's (64 hex)."""
        name = container_name(uuid)
        created: dict[str, Any] = await self._engine.run(
            lambda api: api.exec_create(
                name, command, stdin=True, tty=tty, stdout=True, stderr=True
            )
        )
        return str(created["Id"])

    async def _exec_of(self, uuid: str, exec_id: str) -> dict[str, Any]:
        """The exec's inspection, if it belongs to this container; errors.Invalid otherwise."""
        name = container_name(uuid)
        container: dict[str, Any] = await self._engine.run(lambda api: api.inspect_container(name))
        try:
            info: dict[str, Any] = await self._engine.run(lambda api: api.exec_inspect(exec_id))
        except (errors.NotFound, errors.Invalid):
            info = {}
        if info.get("ContainerID") != container.get("Id"):
            raise errors.Invalid(f"No exec instance {exec_id} in container {uuid}.")
        return info

    async def exec_open(self, uuid: str, exec_id: str) -> Duplex:
        """Start the exec and return its session; closing it hangs the session up."""
        info = await self._exec_of(uuid, exec_id)
        tty = bool((info.get("ProcessConfig") or {}).get("tty"))
        conn = await self._engine.run(lambda api: api.exec_start(exec_id, socket=True, tty=tty))

        async def started() -> bool:
            state = await self._engine.run(lambda api: api.exec_inspect(exec_id))
            return bool(state.get("Running") or state.get("ExitCode") is not None)

        await until_started(started)

        async def hang_up() -> None:
            await self._end_exec(exec_id)

        return SocketDuplex(
            _socket_of(conn),
            owners=[conn],
            demux=not tty,
            on_close=hang_up,
            name=f"berth-exec-{exec_id[:12]}",
        )

    async def exec_resize(self, uuid: str, exec_id: str, height: int, width: int) -> None:
        """Resize an exec's TTY; a session not started yet is a state error at once.

        (The engine would hold the request for 10 s waiting for the session to
        start, then fail.) ``exec_open`` returns only once the session is up.
        """
        info = await self._exec_of(uuid, exec_id)
        if not info.get("Running"):
            raise errors.InvalidStateException(
                f"Exec {exec_id} is not running: connect to its session first, then resize."
            )
        await self._engine.run(lambda api: api.exec_resize(exec_id, height=height, width=width))

    async def _end_exec(self, exec_id: str) -> None:
        """SIGHUP the exec's session, SIGKILL what is left after a grace period."""
        try:
            info: dict[str, Any] = await self._engine.run(lambda api: api.exec_inspect(exec_id))
            starting = time.monotonic() + 1.0
            while info.get("Running") and not info.get("Pid") and time.monotonic() < starting:
                await asyncio.sleep(0.05)  # closed as it started: its PID comes a moment later
                info = await self._engine.run(lambda api: api.exec_inspect(exec_id))
            if not info.get("Running"):
                return
            pid, cid = int(info.get("Pid") or 0), str(info.get("ContainerID") or "")
            if not await asyncio.to_thread(signal_session, pid, cid, signal.SIGHUP):
                log.warning(
                    "exec %s (pid %s) outlives its session: this agent cannot signal it "
                    "(no host /proc); it ends with its container",
                    exec_id[:12],
                    pid,
                )
                return
            deadline = time.monotonic() + _HANGUP_GRACE
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                info = await self._engine.run(lambda api: api.exec_inspect(exec_id))
                if not info.get("Running"):
                    return
            await asyncio.to_thread(signal_session, pid, cid, signal.SIGKILL)
        except errors.BerthError as exc:  # the container went away meanwhile: nothing left
            log.debug("ending exec %s: %s", exec_id[:12], exc.message)

    # -- the container's own streams

    async def attach(self, uuid: str) -> Duplex:
        """Attach stdin/stdout/stderr (no past output); closing detaches."""
        name = container_name(uuid)
        info: dict[str, Any] = await self._engine.run(lambda api: api.inspect_container(name))
        tty = bool((info.get("Config") or {}).get("Tty"))
        params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        conn = await self._engine.run(lambda api: api.attach_socket(name, params=params))
        return SocketDuplex(
            _socket_of(conn), owners=[conn], demux=not tty, name=f"berth-attach-{uuid[:8]}"
        )

    async def resize(self, uuid: str, height: int, width: int) -> None:
        """Resize the container's TTY."""
        name = container_name(uuid)
        await self._engine.run(lambda api: api.resize(name, height=height, width=width))

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
        """Open ``logs --follow`` now (a missing container raises here) and yield its chunks."""
        name = container_name(uuid)
        options: dict[str, Any] = {
            "stdout": stdout,
            "stderr": stderr,
            "timestamps": timestamps,
            "tail": "all" if tail is None else tail,
        }
        if since:
            options["since"] = float(since)
        stream = await self._engine.run(
            lambda api: api.logs(name, stream=True, follow=True, **options)
        )
        reader = ThreadedReader(lambda: next(stream, b""), name=f"berth-logs-{uuid[:8]}")
        return _chunks(reader, stream)

    # -- archives

    async def get_archive(self, uuid: str, path: str, limit: int) -> tuple[bytes, ArchiveStat]:
        """A tar of ``path``; errors.Invalid when the path is missing or the tar too large."""
        name = container_name(uuid)
        await self._engine.run(lambda api: api.inspect_container(name))  # ContainerNotFound

        def fetch(api: Any) -> tuple[bytes, ArchiveStat]:
            stream, stat = api.get_archive(name, path)
            data = bytearray()
            for chunk in stream:
                data += chunk
                if len(data) > limit:
                    stream.close()
                    raise errors.Invalid(
                        f"{path} is larger than {limit} bytes as a tar: copy something smaller."
                    )
            return bytes(data), stat

        try:
            return await self._engine.run(fetch)
        except errors.NotFound as exc:
            raise errors.Invalid(f"Cannot copy {path}: {exc.message}") from exc

    async def put_archive(self, uuid: str, path: str, data: bytes) -> None:
        """Extract a tar into the directory ``path``; errors.Invalid when it is not one."""
        name = container_name(uuid)
        await self._engine.run(lambda api: api.inspect_container(name))  # ContainerNotFound
        try:
            await self._engine.run(lambda api: api.put_archive(name, path, data))
        except errors.NotFound as exc:
            raise errors.Invalid(f"Cannot copy into {path}: {exc.message}") from exc


async def _chunks(reader: ThreadedReader, stream: Any) -> AsyncGenerator[bytes, None]:
    try:
        while chunk := await reader.read():
            yield chunk
    finally:
        reader.stop()
        await asyncio.to_thread(stream.close)
