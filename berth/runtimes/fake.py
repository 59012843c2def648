"""An in-memory RuntimeDriver for fast unit tests (never registered as a plugin), and
``InstantDriver``, its quiet variant for simulated hosts (``berth.agent.simpool``).

It keeps the real driver's promises that the agent relies on: idempotent
create by UUID, absent-is-success remove, 304-style no-op start/stop, the
state errors of a real engine. Tests steer it with ``exit``, ``vanish``,
``fail_next`` and the ``gates`` (an ``asyncio.Event`` per method, or per
``"method:uuid"``/``"ensure_image:image"``, holding calls mid-way, e.g. to kill
the agent between create and start).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from berth import errors
from berth.domain.hostsync import DesiredContainer, ObservedStateName, RegistryAuth
from berth.runtimes.base import (
    EXECUTE_MAX_OUTPUT,
    LABEL_REBUILD,
    HostFacts,
    RuntimeContainer,
    TopResult,
    ZunStats,
    container_name,
    effective_pull_policy,
    output_too_large,
)
from berth.runtimes.fake_streams import FakeStreams
from berth.runtimes.images import ImageInfo

__all__ = ["FakeContainer", "FakeDriver", "InstantDriver"]

_ENDING = frozenset({"KILL", "TERM", "INT", "QUIT", "9", "15", "2", "3"})


@dataclass(slots=True)
class FakeContainer:
    """The fake engine's record of one container."""

    spec: DesiredContainer
    runtime_id: str
    state: ObservedStateName = "created"
    exit_code: int | None = None
    started_at: str | None = None
    cpu: float | None = None
    memory: int | None = None
    logs: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class FakeDriver(FakeStreams):
    """RuntimeDriver in memory. ``calls`` records every (method, uuid) for assertions."""

    def __init__(self, images: set[str] | None = None, pullable: set[str] | None = None) -> None:
        self.images: set[str] = set(images or ())
        self.pullable: set[str] = set(pullable or ())
        # Registry host -> (username, password) it insists on; what each pull was given.
        self.credentials: dict[str, tuple[str, str]] = {}
        self.pull_auth: dict[str, RegistryAuth | None] = {}
        self.pushed: dict[str, RegistryAuth | None] = {}
        self.containers: dict[str, FakeContainer] = {}
        self.init_streams()
        self.calls: list[tuple[str, str]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self._failures: dict[str, BaseException] = {}
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()

    # -- test controls

    def fail_next(self, method: str, exc: BaseException) -> None:
        """Make the next call of ``method`` raise ``exc``."""
        self._failures[method] = exc

    def exit(self, uuid: str, code: int = 0) -> None:
        """The container's main process ends on its own."""
        record = self._get(uuid)
        record.state, record.exit_code = "stopped", code

    def vanish(self, uuid: str) -> None:
        """Someone removed the container behind the agent's back."""
        self.containers.pop(uuid, None)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Return once ``predicate()`` holds (checked after every call), or raise TimeoutError."""
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def _enter(self, method: str, key: str = "") -> None:
        self.calls.append((method, key))
        loop = asyncio.get_running_loop()
        loop.call_soon(self._changed.set)
        # A gate named "method:key" holds one container (or image); "method" holds all.
        gate = self.gates.get(f"{method}:{key}") or self.gates.get(method)
        if gate is not None:
            await gate.wait()
        exc = self._failures.pop(method, None)
        if exc is not None:
            raise exc
        # Soon = after the caller's (synchronous) rest of the method changed the state.
        loop.call_soon(self._changed.set)

    def _get(self, uuid: str) -> FakeContainer:
        try:
            return self.containers[uuid]
        except KeyError:
            raise errors.ContainerNotFound(f"No such container: {container_name(uuid)}") from None

    def _view(self, record: FakeContainer, detailed: bool) -> RuntimeContainer:
        return RuntimeContainer(
            uuid=record.spec.uuid,
            runtime_id=record.runtime_id,
            state=record.state,
            status_detail=record.state.capitalize(),
            spec_version=record.spec.spec_version,
            exit_code=record.exit_code,
            started_at=record.started_at if detailed else None,
            detailed=detailed,
            rebuild_id=record.spec.labels.get(LABEL_REBUILD),
        )

    def _expect(self, record: FakeContainer, *states: str) -> None:
        if record.state not in states:
            raise errors.InvalidStateException(
                f"Container {record.runtime_id} is {record.state}, not {' or '.join(states)}"
            )

    # -- RuntimeDriver

    async def host_facts(self) -> HostFacts:
        """A small fixed host."""
        await self._enter("host_facts")
        return HostFacts(
            cpus=4, mem_total=8192, disk_total=100, runtimes=["runc"], images=sorted(self.images)
        )

    async def list_managed(self) -> list[RuntimeContainer]:
        """Sparse views of every container (no start times, like the real listing)."""
        await self._enter("list_managed")
        return [self._view(r, detailed=False) for r in self.containers.values()]

    async def inspect(self, uuid: str) -> RuntimeContainer | None:
        """The detailed view, or None."""
        await self._enter("inspect", uuid)
        record = self.containers.get(uuid)
        return None if record is None else self._view(record, detailed=True)

    async def ensure_image(
        self, image: str, pull_policy: str | None, auth: RegistryAuth | None = None
    ) -> None:
        """Present images pass; ``pullable`` ones are "pulled"; others are ImageNotFound.

        A registry listed in ``credentials`` refuses pulls without its (username, password).
        """
        await self._enter("ensure_image", image)
        self.pull_auth[image] = auth
        policy = effective_pull_policy(pull_policy)
        if policy == "ifnotpresent" and image in self.images:
            return
        if policy == "never":
            if image in self.images:
                return
            raise errors.ImageNotFound(
                f"image {image!r} not found on this host, and its pull policy is 'never'"
            )
        self._pull(image, auth)

    def _pull(self, image: str, auth: RegistryAuth | None) -> None:
        wanted = self.credentials.get(image.split("/", 1)[0])
        given = (auth.username, auth.password) if auth else None
        if wanted is not None and given != wanted:
            raise errors.ImageNotFound(
                f"image {image!r} could not be pulled: the registry wants credentials "
                "(pull failed: unauthorized: authentication required)"
            )
        if image not in self.pullable:
            raise errors.ImageNotFound(
                f"image {image!r} not found: check the name or the registry (pull failed)"
            )
        self.images.add(image)

    # -- ImageEngine

    async def pull_image(self, image: str, auth: RegistryAuth | None = None) -> ImageInfo:
        """Pull per ``pullable``/``credentials``; the id is derived from the name."""
        await self._enter("pull_image", image)
        self.pull_auth[image] = auth
        self._pull(image, auth)
        return ImageInfo(image_id=f"sha256:{abs(hash(image)):064d}"[:71], size=1024)

    async def remove_image(self, image: str) -> None:
        """Forget the image; in use by a container is Conflict."""
        await self._enter("remove_image", image)
        if any(c.spec.image == image for c in self.containers.values()):
            raise errors.Conflict(f"image {image} is used by a container on this host")
        self.images.discard(image)

    async def commit(
        self, uuid: str, reference: str, auth: RegistryAuth | None = None
    ) -> ImageInfo:
        """Record the snapshot as ``reference`` (pullable from then on)."""
        await self._enter("commit", uuid)
        self._get(uuid)
        self.pushed[reference] = auth
        self.images.add(reference)
        self.pullable.add(reference)
        return ImageInfo(image_id=f"sha256:{uuid.replace('-', '')}", size=2048, digest="sha256:0")

    async def create(self, spec: DesiredContainer) -> str:
        """Create once per UUID; later calls return the same id."""
        await self._enter("create", spec.uuid)
        if spec.uuid in self.containers:
            return self.containers[spec.uuid].runtime_id
        if spec.image not in self.images:
            raise errors.ImageNotFound(f"No such image: {spec.image}")
        runtime_id = f"fake{next(self._ids):060d}"
        self.containers[spec.uuid] = FakeContainer(
            spec=spec, runtime_id=runtime_id, cpu=spec.cpu, memory=spec.memory
        )
        return runtime_id

    async def start(self, uuid: str) -> None:
        """created/stopped → running; running stays running."""
        await self._enter("start", uuid)
        record = self._get(uuid)
        if record.state == "running":
            return
        self._expect(record, "created", "stopped")
        record.state, record.exit_code, record.started_at = "running", None, _now()

    async def stop(self, uuid: str, timeout: int) -> None:
        """running/paused → stopped (exit 0); stopped stays stopped."""
        await self._enter("stop", uuid)
        record = self._get(uuid)
        if record.state in ("running", "paused"):
            record.state, record.exit_code = "stopped", 0

    async def pause(self, uuid: str) -> None:
        """running → paused."""
        await self._enter("pause", uuid)
        record = self._get(uuid)
        self._expect(record, "running")
        record.state = "paused"

    async def unpause(self, uuid: str) -> None:
        """paused → running."""
        await self._enter("unpause", uuid)
        record = self._get(uuid)
        self._expect(record, "paused")
        record.state = "running"

    async def kill(self, uuid: str, signal: str | int | None = None) -> None:
        """running → stopped with 128 + 9; another signal than KILL, TERM, INT or QUIT is
        delivered and it runs on (as a PID 1 without a handler does)."""
        await self._enter("kill", uuid)
        record = self._get(uuid)
        self._expect(record, "running")
        if str(signal or "KILL").upper().removeprefix("SIG") in _ENDING:
            record.state, record.exit_code = "stopped", 137

    async def restart(self, uuid: str, timeout: int) -> None:
        """Anything but paused → running, with a fresh start time."""
        await self._enter("restart", uuid)
        record = self._get(uuid)
        self._expect(record, "created", "running", "stopped")
        record.state, record.exit_code, record.started_at = "running", None, _now()

    async def remove(self, uuid: str, force: bool = True) -> None:
        """Forget it; absent is success; a running container needs ``force``."""
        await self._enter("remove", uuid)
        record = self.containers.get(uuid)
        if record is None:
            return
        if record.state in ("running", "paused") and not force:
            raise errors.InvalidStateException("stop the container before removing it")
        del self.containers[uuid]

    async def update(self, uuid: str, cpu: float | None, memory: int | None) -> None:
        """Record new limits."""
        await self._enter("update", uuid)
        record = self._get(uuid)
        record.cpu = cpu or record.cpu
        record.memory = memory or record.memory

    async def logs(
        self,
        uuid: str,
        *,
        stdout: bool = True,
        stderr: bool = True,
        timestamps: bool = False,
        tail: int | None = None,
        since: float | None = None,
    ) -> str:
        """The lines appended to ``logs`` (``tail`` honoured)."""
        await self._enter("logs", uuid)
        lines = self._get(uuid).logs
        return "".join(lines[-tail:] if tail else lines)

    async def execute(
        self,
        uuid: str,
        command: list[str],
        timeout: float,
        max_output: int = EXECUTE_MAX_OUTPUT,
    ) -> tuple[str, int]:
        """Echo the command; ``sleep N`` longer than ``timeout`` is a Conflict, an echo
        longer than ``max_output`` Invalid."""
        await self._enter("execute", uuid)
        self._expect(self._get(uuid), "running")
        if command[:1] == ["sleep"] and float(command[1]) > timeout:
            raise errors.Conflict(f"the command did not finish within {timeout:g} seconds")
        output = " ".join(command) + "\n"
        if len(output.encode()) > max_output:
            raise output_too_large(command, max_output)
        return output, 0

    async def top(self, uuid: str, ps_args: str | None = None) -> TopResult:
        """One fake process."""
        await self._enter("top", uuid)
        self._expect(self._get(uuid), "running")
        return {"Titles": ["PID", "CMD"], "Processes": [["1", "sh"]]}

    async def stats(self, uuid: str) -> ZunStats:
        """Zeros, with the memory limit."""
        await self._enter("stats", uuid)
        record = self._get(uuid)
        limit = float(record.memory or 0)
        return {
            "CONTAINER": container_name(uuid),
            "CPU %": 0.0,
            "MEM USAGE(MiB)": 0.0,
            "MEM LIMIT(MiB)": limit,
            "MEM %": 0.0,
            "BLOCK I/O(B)": "0/0",
            "NET I/O(B)": "0/0",
        }

    def count(self, method: str, key: str | None = None) -> int:
        """How many times ``method`` was called (for ``key`` only, if given)."""
        return sum(1 for m, k in self.calls if m == method and key in (None, k))

    def snapshot(self) -> dict[str, Any]:
        """{uuid: state}, for readable assertions."""
        return {uuid: record.state for uuid, record in self.containers.items()}


class InstantDriver(FakeDriver):
    """An engine that does everything at once: any image is there, nothing is logged.

    ``FakeDriver`` keeps a log of every call for tests' assertions; a simulated
    host lives for hours, so this one keeps only its containers, and reports
    the capacity it was given.
    """

    def __init__(self, cpus: int, mem_total: int, disk_total: int) -> None:
        super().__init__()
        self._facts = HostFacts(
            cpus=cpus,
            mem_total=mem_total,
            disk_total=disk_total,
            runtimes=["runc"],
            architecture="x86_64",
            os_type="linux",
            os="simulated",
            engine="sim",
            engine_version="1",
        )

    async def _enter(self, method: str, key: str = "") -> None:
        return None  # no call log, no gates, no injected failures

    async def host_facts(self) -> HostFacts:
        """The made-up capacity this host was given."""
        return self._facts

    async def ensure_image(
        self, image: str, pull_policy: str | None, auth: RegistryAuth | None = None
    ) -> None:
        """Every image is "pulled" at once."""
        self.images.add(image)
