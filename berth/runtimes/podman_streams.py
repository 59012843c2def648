"""Podman's streaming half: exec and attach sessions, TTY resizes, log following, archives.

Mixed into ``PodmanDriver`` (it uses the driver's ``_api``). Sessions are
libpod's hijacked connections: one HTTP request on a fresh connection to the
service's unix socket, answered ``101 UPGRADED`` (or ``200``), after which
the same connection carries the raw stream both ways. asyncio's own unix
streams carry it (``StreamDuplex``): no thread per session, unlike the Docker
SDK's blocking sockets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import signal
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx

from berth import errors
from berth.runtimes import podmanmap
from berth.runtimes.base import container_name
from berth.runtimes.hangup import signal_session
from berth.runtimes.streams import ArchiveStat, Duplex, FrameDemuxer, until_started

__all__ = ["PodmanStreams", "StreamDuplex", "hijack"]

log = logging.getLogger(__name__)
_HANGUP_GRACE = 2.0  # seconds an exec gets to end after SIGHUP before SIGKILL
_HEAD_LIMIT = 64 * 1024


class StreamDuplex:
    """A Duplex over a hijacked libpod connection (asyncio unix streams)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        demux: bool,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._demux = FrameDemuxer() if demux else None
        self._on_close = on_close
        self._closed = False

    async def read(self) -> bytes:
        """The next output bytes; ``b""`` once the process or the connection ended."""
        while not self._closed:
            try:
                chunk = await self._reader.read(65536)
            except (OSError, asyncio.IncompleteReadError):
                return b""
            if not chunk or self._demux is None:
                return chunk
            payload = self._demux.feed(chunk)
            if payload:
                return payload
        return b""

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the process (ignored once closed)."""
        if self._closed:
            return
        with contextlib.suppress(OSError):
            self._writer.write(data)
            await self._writer.drain()

    async def close(self) -> None:
        """Close the connection, then run ``on_close`` once."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        if self._on_close is not None:
            await self._on_close()


async def hijack(
    socket: str, path: str, body: dict[str, Any] | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """POST ``path`` on a connection of its own and return it once libpod upgraded it.

    An error answer (a JSON body) raises the matching Berth error.
    """
    try:
        reader, writer = await asyncio.open_unix_connection(socket, limit=_HEAD_LIMIT)
    except OSError as exc:
        raise errors.HostUnavailable(
            f"the Podman service at {socket} does not answer: {exc}"
        ) from exc
    # Whatever follows the head is the process's stdin once upgraded: an attach
    # sends no body at all.
    payload = json.dumps(body).encode() if body is not None else b""
    kind = "Content-Type: application/json\r\n" if payload else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: d\r\n{kind}Content-Length: {len(payload)}\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    )
    try:
        writer.write(head.encode() + payload)
        await writer.drain()
        raw = await reader.readuntil(b"\r\n\r\n")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        writer.close()
        raise errors.HostUnavailable(f"the Podman service dropped the session: {exc}") from exc
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    if status in (101, 200):
        return reader, writer
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    length = int(headers.get("content-length") or 0)
    try:
        content = await reader.readexactly(length) if length else await reader.read(_HEAD_LIMIT)
    except (OSError, asyncio.IncompleteReadError):
        content = b""
    writer.close()
    raise podmanmap.error_for(status, content)


class PodmanStreams:
    """Interactive sessions and copies against the service of ``self._api``."""

    _api: Any

    # -- exec sessions

    async def exec_create(self, uuid: str, command: list[str], *, tty: bool) -> str:
        """Create (not start) an exec with stdin open; its id is libpod's (64 hex)."""
        created = await self._api.json(
            "POST",
            f"/containers/{container_name(uuid)}/exec",
            body={
                "AttachStdin": True,
                "AttachStdout": True,
                "AttachStderr": True,
                "Tty": tty,
                "Cmd": list(command),
            },
        )
        return str(created["Id"])

    async def _exec_of(self, uuid: str, exec_id: str) -> dict[str, Any]:
        """The exec's inspection, if it belongs to this container; errors.Invalid otherwise."""
        container = await self._api.json("GET", f"/containers/{container_name(uuid)}/json")
        try:
            info: dict[str, Any] = await self._api.json("GET", f"/exec/{exec_id}/json")
        except (errors.NotFound, errors.Invalid):
            info = {}
        if info.get("ContainerID") != container.get("Id"):
            raise errors.Invalid(f"No exec instance {exec_id} in container {uuid}.")
        return info

    async def exec_open(self, uuid: str, exec_id: str) -> Duplex:
        """Start the exec and return its session; closing it hangs the session up."""
        info = await self._exec_of(uuid, exec_id)
        tty = bool((info.get("ProcessConfig") or {}).get("tty"))
        reader, writer = await hijack(
            self._api.socket,
            f"{self._api.prefix}/exec/{exec_id}/start",
            {"Detach": False, "Tty": tty},
        )

        async def started() -> bool:
            state = await self._api.json("GET", f"/exec/{exec_id}/json")
            # Running, or ended: Podman then clears Pid (and ExitCode is 0 both before
            # and after a clean run), so an ended session is the one it can remove.
            return bool(state.get("Running") or state.get("Pid") or state.get("CanRemove"))

        await until_started(started)

        async def hang_up() -> None:
            await self._end_exec(exec_id)

        return StreamDuplex(reader, writer, demux=not tty, on_close=hang_up)

    async def exec_resize(self, uuid: str, exec_id: str, height: int, width: int) -> None:
        """Resize an exec's TTY; a session not started yet is a state error."""
        info = await self._exec_of(uuid, exec_id)
        if not info.get("Running"):
            raise errors.InvalidStateException(
                f"Exec {exec_id} is not running: connect to its session first, then resize."
            )
        await self._api.call("POST", f"/exec/{exec_id}/resize", params={"h": height, "w": width})

    async def _end_exec(self, exec_id: str) -> None:
        """SIGHUP the exec's session, SIGKILL what is left after a grace period.

        Podman, like Docker, keeps an exec running when its client goes away.
        """
        try:
            info: dict[str, Any] = await self._api.json("GET", f"/exec/{exec_id}/json")
            starting = time.monotonic() + 1.0
            while info.get("Running") and not info.get("Pid") and time.monotonic() < starting:
                await asyncio.sleep(0.05)
                info = await self._api.json("GET", f"/exec/{exec_id}/json")
            if not info.get("Running"):
                return
            pid, cid = int(info.get("Pid") or 0), str(info.get("ContainerID") or "")
            if not await asyncio.to_thread(signal_session, pid, cid, signal.SIGHUP):
                log.warning("exec %s (pid %s) outlives its session", exec_id[:12], pid)
                return
            deadline = time.monotonic() + _HANGUP_GRACE
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                info = await self._api.json("GET", f"/exec/{exec_id}/json")
                if not info.get("Running"):
                    return
            await asyncio.to_thread(signal_session, pid, cid, signal.SIGKILL)
        except errors.BerthError as exc:  # the container went away meanwhile
            log.debug("ending exec %s: %s", exec_id[:12], exc.message)

    # -- the container's own streams

    async def attach(self, uuid: str) -> Duplex:
        """Attach stdin/stdout/stderr (no past output); closing detaches."""
        name = container_name(uuid)
        info = await self._api.json("GET", f"/containers/{name}/json")
        tty = bool((info.get("Config") or {}).get("Tty"))
        query = urlencode({"stdin": "true", "stdout": "true", "stderr": "true", "stream": "true"})
        reader, writer = await hijack(
            self._api.socket, f"{self._api.prefix}/containers/{name}/attach?{query}"
        )
        return StreamDuplex(reader, writer, demux=not tty)

    async def resize(self, uuid: str, height: int, width: int) -> None:
        """Resize the container's TTY."""
        await self._api.call(
            "POST",
            f"/containers/{container_name(uuid)}/resize",
            params={"h": height, "w": width},
        )

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
        """Check the container now (a missing one raises here) and yield its chunks.

        libpod sends the answer's headers only with the first line the container
        writes, so the request is made by the generator: a quiet container's
        follower gets its answer at once, and its stream stays open, as on Docker.
        """
        name = container_name(uuid)
        await self._api.call("GET", f"/containers/{name}/json")  # ContainerNotFound
        params = podmanmap.log_params(stdout, stderr, timestamps, tail, since, follow=True)
        client: httpx.AsyncClient = self._api.client
        request = client.build_request(
            "GET",
            f"/containers/{name}/logs",
            params=params,
            timeout=httpx.Timeout(None, connect=10.0),
        )
        return _followed(client, request)

    # -- archives

    async def get_archive(self, uuid: str, path: str, limit: int) -> tuple[bytes, ArchiveStat]:
        """A tar of ``path``; errors.Invalid when the path is missing or the tar too large."""
        name = container_name(uuid)
        await self._api.call("GET", f"/containers/{name}/json")  # ContainerNotFound
        client: httpx.AsyncClient = self._api.client
        request = client.build_request("GET", f"/containers/{name}/archive", params={"path": path})
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._api.unavailable(exc) from exc
        try:
            if response.status_code >= 400:
                error = podmanmap.error_for(response.status_code, await response.aread())
                if isinstance(error, errors.NotFound):
                    raise errors.Invalid(f"Cannot copy {path}: {error.message}")
                raise error
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > limit:
                    raise errors.Invalid(
                        f"{path} is larger than {limit} bytes as a tar: copy something smaller."
                    )
            stat = _path_stat(response.headers.get("X-Docker-Container-Path-Stat"))
            return bytes(data), stat
        finally:
            await response.aclose()

    async def put_archive(self, uuid: str, path: str, data: bytes) -> None:
        """Extract a tar into the directory ``path``; errors.Invalid when it is not one.

        libpod creates a missing ``path`` and answers 500 for a file, where Docker
        refuses both: the path is looked at first, so both engines answer alike.
        """
        name = container_name(uuid)
        await self._api.call("GET", f"/containers/{name}/json")  # ContainerNotFound
        await self._extraction_point(name, path)
        client: httpx.AsyncClient = self._api.client
        try:
            response = await client.put(
                f"/containers/{name}/archive",
                params={"path": path},
                content=data,
                headers={"Content-Type": "application/x-tar"},
            )
        except httpx.TransportError as exc:
            raise self._api.unavailable(exc) from exc
        if response.status_code >= 400:
            error = podmanmap.error_for(response.status_code, response.content)
            if isinstance(error, errors.NotFound):
                raise errors.Invalid(f"Cannot copy into {path}: {error.message}")
            raise error

    async def _extraction_point(self, name: str, path: str) -> None:
        """Refuse, in Docker's words, a ``path`` that is no directory in container ``name``."""
        client: httpx.AsyncClient = self._api.client
        try:
            head = await client.head(f"/containers/{name}/archive", params={"path": path})
        except httpx.TransportError as exc:
            raise self._api.unavailable(exc) from exc
        if head.status_code == 404:
            raise errors.Invalid(
                f"Cannot copy into {path}: Could not find the file {path} in container {name}"
            )
        if head.status_code >= 400:
            raise podmanmap.error_for(head.status_code, head.content)
        if not _raw_stat(head.headers.get("X-Docker-Container-Path-Stat")).get("isDir"):
            raise errors.Invalid(f"Cannot copy into {path}: extraction point is not a directory")


def _raw_stat(header: str | None) -> dict[str, Any]:
    """The stat libpod sends with an archive (base64 JSON) as it is; {} when unreadable."""
    raw: dict[str, Any] = {}
    if header:
        with contextlib.suppress(ValueError):
            raw = json.loads(base64.b64decode(header + "=" * (-len(header) % 4)))
    return raw if isinstance(raw, dict) else {}


def _path_stat(header: str | None) -> ArchiveStat:
    """The stat libpod sends with an archive, in Zun's shape."""
    raw = _raw_stat(header)
    return {
        "name": str(raw.get("name") or ""),
        "size": int(raw.get("size") or 0),
        "mode": int(raw.get("mode") or 0),
        "mtime": str(raw.get("mtime") or ""),
        "linkTarget": str(raw.get("linkTarget") or ""),
    }


async def _followed(
    client: httpx.AsyncClient, request: httpx.Request
) -> AsyncGenerator[bytes, None]:
    """The followed log's payload; it ends when the container stops, goes away or the
    service does."""
    try:
        response = await client.send(request, stream=True)
    except httpx.TransportError:
        log.warning("following the logs at %s: the Podman service does not answer", request.url)
        return
    if response.status_code >= 400:  # removed between the check and the request
        await response.aclose()
        return
    async with contextlib.aclosing(_chunks(response)) as chunks:
        async for chunk in chunks:
            yield chunk


async def _chunks(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    demux = FrameDemuxer()
    try:
        async for chunk in response.aiter_raw():
            payload = demux.feed(chunk)
            if payload:
                yield payload
    except httpx.TransportError:
        return
    finally:
        await response.aclose()
