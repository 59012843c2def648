"""The runtime driver contract: what the agent needs from a container engine.

A driver addresses containers by their Berth UUID, never by the engine's id:
the engine object is named ``berth-<uuid>`` and labelled ``berth.uuid``, so a
restarted agent finds whatever exists and nothing is ever created twice.
Drivers do no bookkeeping of their own and never talk to the control plane.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# typing_extensions: pydantic (FastAPI responses) accepts only its TypedDict on 3.11.
from typing_extensions import TypedDict

from berth import errors
from berth.config import Settings
from berth.domain.hostsync import DesiredContainer, ObservedStateName, RegistryAuth
from berth.networks.base import NetworkDriver
from berth.plugins import Kind
from berth.runtimes.streams import StreamingRuntime
from berth.volumes.base import VolumeDriver

__all__ = [
    "EXECUTE_MAX_OUTPUT",
    "HOST_LABEL_ENGINE",
    "HOST_LABEL_ENGINE_VERSION",
    "LABEL_OWNER",
    "LABEL_PROJECT",
    "LABEL_REBUILD",
    "LABEL_SPEC_VERSION",
    "LABEL_UUID",
    "PULL_POLICIES",
    "RUNTIME_DRIVERS",
    "HostFacts",
    "RuntimeContainer",
    "RuntimeDriver",
    "RuntimeFactory",
    "TopResult",
    "ZunStats",
    "container_name",
    "effective_pull_policy",
    "engine_labels",
    "kill_refused_exec",
    "output_too_large",
    "parse_instant",
]

log = logging.getLogger(__name__)

LABEL_UUID = "berth.uuid"
LABEL_PROJECT = "berth.project"
LABEL_SPEC_VERSION = "berth.spec_version"
# Which agent manages the object: several Berth deployments (or test runs) can
# share one engine, and an agent must never garbage-collect another's containers.
LABEL_OWNER = "berth.owner"
# The rebuild request (its pending op id) a container was recreated for: a rebuild
# is done exactly when the runtime container carries its id, whatever crashed.
LABEL_REBUILD = "berth.rebuild"

PULL_POLICIES = ("always", "ifnotpresent", "never")
# What a non-interactive exec may write before it is cut off: its output is held in
# memory, and then again as JSON, by the agent and the API.
EXECUTE_MAX_OUTPUT = 1024 * 1024


def bad_ps_args(ps_args: str | None, exc: errors.BerthError) -> errors.BerthError:
    """What ``top`` raises for the engine's ``exc``: a 400 when ``ps`` refused ``ps_args``.

    The engine answers a generic server error (500) when ``ps`` exits with an error or
    prints no PID column, which would reach the user as an unavailable host (503).
    Narrower errors (a missing container, a stopped one) and errors without
    ``ps_args`` pass through unchanged.
    """
    if ps_args is None or type(exc) is not errors.BerthError:
        return exc
    return errors.Invalid(f"Invalid ps_args {ps_args!r}: {exc.message}")


def output_too_large(command: list[str], limit: int) -> errors.Invalid:
    """The error of an exec that wrote more than ``limit`` bytes."""
    return errors.Invalid(
        f"The command {' '.join(command)!r} wrote more than {limit} bytes of output "
        "(execute_max_output_bytes): redirect it to a file and copy that with cp, or run "
        "it in an interactive session."
    )


def kill_refused_exec(exec_id: str, info: Mapping[str, Any]) -> None:
    """SIGKILL the process of an exec whose output was refused; ``info`` is the engine's
    exec inspect (Docker's and libpod's have ``Running``, ``Pid``, ``ContainerID``).

    Left alone it blocks on its full pipe for ever (``yes``; on Podman conmon keeps
    it writing), and the engine then takes seconds to remove its container. No
    engine has a call to end an exec; its ``Pid`` is the host's (the agent runs in
    the host's pid namespace), and it is signalled only if it runs in the
    container's cgroup: a pid of another namespace (an agent in a container) names
    some other process here, or none. Best effort: logged when it cannot.
    """
    pid, container = int(info.get("Pid") or 0), str(info.get("ContainerID") or "")
    if not (info.get("Running") and pid > 1 and len(container) >= 12):
        log.info("exec %s is not running (pid %d): nothing to end", exec_id[:12], pid)
        return
    try:
        if container not in Path(f"/proc/{pid}/cgroup").read_text():
            return
        os.kill(pid, signal.SIGKILL)
    except OSError as exc:  # gone meanwhile, or not ours to signal
        log.info("cannot end exec %s (pid %d): %s", exec_id[:12], pid, exc)
        return
    # Until its engine has reaped it (a second at most), so that a `top` right after
    # the refusal no longer lists it.
    until = time.monotonic() + 1.0
    while Path(f"/proc/{pid}").exists() and time.monotonic() < until:
        time.sleep(0.01)


def exec_process_gone(info: Mapping[str, Any], init_pid: int) -> bool:
    """True when the engine says an exec runs (``info``: its exec inspect) but its
    process has ended: the engine lost its exit.

    Docker 20.10 with containerd 1.6 (Debian 12) does this under load: the shim reaps
    a quick exec and never reports it, and the exec's stream stays open for ever.
    Judged only where the agent sees the host's pids: the container's init process
    (``init_pid``) is in the container's cgroup here. Elsewhere it says False.
    """
    pid, container = int(info.get("Pid") or 0), str(info.get("ContainerID") or "")
    if not (info.get("Running") and pid > 1 and len(container) >= 12):
        return False
    return _in_cgroup(init_pid, container) and not _in_cgroup(pid, container)


def _in_cgroup(pid: int, container: str) -> bool:
    try:
        return pid > 1 and container in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


ZunStats = TypedDict(
    "ZunStats",
    {
        "CONTAINER": str,
        "CPU %": float,
        "MEM USAGE(MiB)": float,
        "MEM LIMIT(MiB)": float,
        "MEM %": float,
        "BLOCK I/O(B)": str,
        "NET I/O(B)": str,
    },
)
"""Zun's ``GET /containers/{id}/stats`` body, key for key."""


class TopResult(TypedDict):
    """Zun's ``GET /containers/{id}/top`` body (the engine's ``ps`` table)."""

    Titles: list[str]
    Processes: list[list[str]]


@dataclass(slots=True)
class RuntimeContainer:
    """One managed container as the engine sees it right now.

    ``started_at`` is an ISO 8601 UTC timestamp of the last start, or None when
    the container never started. A sparse listing cannot tell (``detailed`` is
    False there and ``started_at`` is None): inspect before relying on it.
    """

    uuid: str
    runtime_id: str
    state: ObservedStateName
    status_detail: str
    spec_version: int
    exit_code: int | None = None
    started_at: str | None = None
    addresses: dict[str, Any] = field(default_factory=dict)
    detailed: bool = True
    rebuild_id: str | None = None  # the LABEL_REBUILD it carries
    networks: list[str] = field(default_factory=list)  # engine-side network names
    published: dict[str, int] = field(default_factory=dict)  # "80/tcp" -> host port
    macs: dict[str, str] = field(default_factory=dict)  # IPv4 address -> its interface's MAC


@dataclass(slots=True)
class HostFacts:
    """A host's capacity and capabilities, as the engine reports them."""

    cpus: int
    mem_total: int  # MiB
    disk_total: int  # GiB
    runtimes: list[str]
    architecture: str | None = None
    os_type: str | None = None
    os: str | None = None
    kernel_version: str | None = None
    images: list[str] = field(default_factory=list)  # repo:tag of every tagged image
    # The container engine itself ("docker") and its version, for mixed pools: the
    # agent reports them as the host labels ``HOST_LABEL_ENGINE``/``..._VERSION``.
    engine: str | None = None
    engine_version: str | None = None


# Host labels (Zun's host ``labels``, which Zun too fills from the engine) an agent
# adds to the operator's: a request places by engine with the Zun scheduler hint
# ``label:berth.engine=<engine>``, and ``openstack appcontainer host show`` shows it.
HOST_LABEL_ENGINE = "berth.engine"
HOST_LABEL_ENGINE_VERSION = "berth.engine_version"


def engine_labels(facts: HostFacts) -> dict[str, str]:
    """The host labels that say which engine (and version) the host runs, when known."""
    labels = {HOST_LABEL_ENGINE: facts.engine} if facts.engine else {}
    if facts.engine and facts.engine_version:
        labels[HOST_LABEL_ENGINE_VERSION] = facts.engine_version
    return labels


def container_name(uuid: str) -> str:
    """The engine-side name of a Berth container: unique, and found again after a crash."""
    return f"berth-{uuid}"


_FRACTION = re.compile(r"\.(\d+)")


def parse_instant(value: str | None) -> datetime | None:
    """An ISO 8601 / RFC 3339 timestamp as aware UTC; None when unset or Go's zero time.

    Accepts what engines and Zun write: nanoseconds, a space for the "T", no
    zone (meaning UTC). Raises ValueError on anything else.
    """
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.strip().replace(" ", "T", 1)
    # Engines give nanoseconds; Python keeps microseconds.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def effective_pull_policy(policy: str | None) -> str:
    """Normalise a pull policy; None means ``ifnotpresent``.

    Zun effectively pulls always, but that makes every create wait on (and
    fail without) a registry; Berth uses what is present and pulls otherwise.
    Ask for ``always`` explicitly to refresh a moving tag such as ``latest``.
    """
    if policy is None:
        return "ifnotpresent"
    normalised = policy.strip().lower()
    if normalised not in PULL_POLICIES:
        raise ValueError(f"unknown image pull policy {policy!r}: use one of {PULL_POLICIES}")
    return normalised


@runtime_checkable
class RuntimeDriver(StreamingRuntime, Protocol):
    """A container engine, addressed by Berth UUID. Every method is async.

    Operations on a missing container raise ``errors.ContainerNotFound``; an
    operation the container's state forbids raises ``errors.InvalidStateException``.
    ``timeout`` arguments are the engine's own (a stop's grace period, an exec's
    deadline), hence the ASYNC109 exemptions.
    """

    async def host_facts(self) -> HostFacts:
        """Describe the host: CPUs, memory, disk and the OCI runtimes available."""
        ...

    async def list_managed(self) -> list[RuntimeContainer]:
        """Every container this driver manages, from one cheap listing (not detailed)."""
        ...

    async def inspect(self, uuid: str) -> RuntimeContainer | None:
        """The detailed view of one container, or None when it does not exist."""
        ...

    async def ensure_image(
        self, image: str, pull_policy: str | None, auth: RegistryAuth | None = None
    ) -> None:
        """Make ``image`` available locally per the policy, or raise ``errors.ImageNotFound``.

        ``auth``: credentials for the registry, used for this pull only.
        """
        ...

    async def create(self, spec: DesiredContainer) -> str:
        """Create the container (not started) and return its runtime id; idempotent."""
        ...

    async def start(self, uuid: str) -> None:
        """Start the container; starting a running container is a no-op."""
        ...

    async def stop(self, uuid: str, timeout: int) -> None:
        """Stop it, killing it after ``timeout`` seconds; stopping a stopped one is a no-op."""
        ...

    async def pause(self, uuid: str) -> None:
        """Freeze every process of a running container."""
        ...

    async def unpause(self, uuid: str) -> None:
        """Thaw a paused container."""
        ...

    async def kill(self, uuid: str, signal: str | int | None = None) -> None:
        """Send ``signal`` (default SIGKILL) to the main process."""
        ...

    async def restart(self, uuid: str, timeout: int) -> None:
        """Stop (with ``timeout``) and start again."""
        ...

    async def remove(self, uuid: str, force: bool = True) -> None:
        """Remove the container and its anonymous volumes; an absent container is success."""
        ...

    async def update(self, uuid: str, cpu: float | None, memory: int | None) -> None:
        """Change the CPU (cores) and memory (MiB) limits of a live container."""
        ...

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
        """The container's output: ``tail`` last lines (None: all), since an epoch time."""
        ...

    async def execute(
        self,
        uuid: str,
        command: list[str],
        timeout: float,
        max_output: int = EXECUTE_MAX_OUTPUT,
    ) -> tuple[str, int | None]:
        """Run ``command`` inside; return (output, exit code) or raise ``errors.Conflict``
        if it runs longer than ``timeout`` seconds, ``errors.Invalid`` (reading no
        further) once it has written more than ``max_output`` bytes. The exit code is
        None only when the engine lost it (``exec_process_gone``)."""
        ...

    async def top(self, uuid: str, ps_args: str | None = None) -> TopResult:
        """The processes running in the container, as ``ps`` shows them."""
        ...

    async def stats(self, uuid: str) -> ZunStats:
        """A one-shot resource usage sample in Zun's shape."""
        ...


class RuntimeFactory(Protocol):
    """What a ``berth.runtimes`` entry point names: builds the agent's runtime driver.

    It is handed the settings and the network and volume drivers the operator
    chose (``network_driver``, ``volume_driver``); a driver that wires containers
    to networks or volumes keeps them as its ``networks`` and ``volumes``
    attributes, where the agent finds them (without, the host ignores networks).
    """

    def __call__(
        self, settings: Settings, *, networks: NetworkDriver, volumes: VolumeDriver
    ) -> RuntimeDriver: ...


RUNTIME_DRIVERS: Kind[RuntimeFactory] = Kind("berth.runtimes", "runtime driver", "runtime_driver")
"""The container engines an agent can drive (Berth's own: ``docker``)."""
