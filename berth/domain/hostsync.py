"""What the control plane and an agent tell each other (plain data, no I/O).

The agent pulls a ``DesiredHost`` (every container assigned to its host, with
the state the user wants), compares it with what runs, acts, and pushes one
``Observation`` per container it looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DesiredContainer",
    "DesiredHost",
    "HostReport",
    "Observation",
    "PendingOp",
    "RegistryAuth",
]

DesiredStateName = Literal["created", "running", "stopped", "paused", "deleted"]
ObservedStateName = Literal[
    "absent", "created", "running", "stopped", "paused", "restarting", "dead", "removing"
]


@dataclass(slots=True)
class PendingOp:
    """A one-shot operation (not a level state): reboot, kill or rebuild.

    ``id`` is the request id; the agent reports it back as done, so an op is
    applied once even if the agent restarts in between.
    """

    id: str
    op: Literal["reboot", "kill", "rebuild"]
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RegistryAuth:
    """Credentials for pulling from (or pushing to) ``registry`` (``host[:port]``).

    Sent to an agent only alongside the pull or push that needs them; the
    password never appears in a repr (and so in no log line).
    """

    registry: str
    username: str
    password: str = field(repr=False)


@dataclass(slots=True)
class DesiredContainer:
    uuid: str
    name: str
    project_id: str
    image: str
    desired_state: DesiredStateName
    spec_version: int
    command: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cpu: float | None = None
    cpuset: list[int] | None = None
    memory: int | None = None
    workdir: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None
    restart_policy: dict[str, Any] | None = None
    auto_remove: bool = False
    auto_heal: bool = False
    healthcheck: dict[str, Any] | None = None
    interactive: bool = False
    tty: bool = False
    image_pull_policy: str | None = None
    runtime: str | None = None
    privileged: bool = False
    pending_ops: list[PendingOp] = field(default_factory=list)
    stop_timeout: int = 10
    # When the user last changed desired_state (ISO 8601; naive means UTC). A
    # stopped container is started again only if it last started before this:
    # otherwise it ran and exited on its own, and is reported, not restarted.
    desired_since: str | None = None
    # The spec_version the runtime container already reflects (as last reported).
    applied_spec_version: int = 0
    # The runtime id last reported; set means "it existed", so a vanished
    # container is recreated only with auto_heal.
    runtime_id: str | None = None
    # Set after an error: the agent must neither act on nor garbage-collect this
    # container until the user asks for something again (start, reboot, delete).
    held: bool = False
    # Credentials for pulling ``image``: present only while the container has no
    # runtime container yet (a pull may be ahead), from the project's registry
    # or for the image store.
    registry_auth: RegistryAuth | None = field(default=None, repr=False)


@dataclass(slots=True)
class DesiredHost:
    hostname: str
    generation: int
    containers: list[DesiredContainer] = field(default_factory=list)


@dataclass(slots=True)
class Observation:
    """What the agent saw (and did) for one container.

    ``state`` ``absent`` means no runtime container exists. ``error`` is set when
    the agent could not reach the desired state; it becomes the status_reason.
    ``done_ops`` lists PendingOp ids applied; ``spec_version`` the version applied.
    """

    uuid: str
    state: ObservedStateName
    spec_version: int
    runtime_id: str | None = None
    status_detail: str | None = None
    error: str | None = None
    exit_code: int | None = None
    started_at: str | None = None
    addresses: dict[str, Any] | None = None
    done_ops: list[str] = field(default_factory=list)
    removed: bool = False


@dataclass(slots=True)
class HostReport:
    """An agent's registration: its host's capacity and capabilities."""

    hostname: str
    cpus: int
    mem_total: int
    disk_total: int
    runtimes: list[str]
    agent_url: str
    availability_zone: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    architecture: str | None = None
    os_type: str | None = None
    os: str | None = None
    kernel_version: str | None = None
    enable_cpu_pinning: bool = False
    disk_quota_supported: bool = False
    # The images present on the host as ``repo:tag`` (for the image-locality weigher).
    images: list[str] = field(default_factory=list)
