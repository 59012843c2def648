"""Pure translations between Berth's objects and Podman's libpod API JSON.

No I/O here: ``podman.py`` calls the libpod REST API and hands the raw dicts
to these functions, so the mapping is tested without an engine. The create
bodies are libpod's ``SpecGenerator`` (containers) and ``PodSpecGenerator``
(pods) as Podman 4.3 reads them.

A capsule becomes a real Podman pod: its **sandbox** (the container labelled
``berth.capsule`` with its own UUID) is the pod's *infra* container, named
``berth-<uuid>`` and carrying the usual labels, so the agent sees and drives it
like any container; the pod holds the network namespace, the published ports
and the capsule's whole resource claim. A member (``network_container`` set)
is created inside that pod and so shares its network, UTS and IPC namespaces.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from berth import errors
from berth.domain.hostsync import DesiredContainer, ObservedStateName
from berth.networks.base import network_name
from berth.runtimes.base import (
    LABEL_OWNER,
    LABEL_PROJECT,
    LABEL_REBUILD,
    LABEL_SPEC_VERSION,
    LABEL_UUID,
    RuntimeContainer,
    ZunStats,
    container_name,
    parse_instant,
)

# The engines' inspect JSON agrees on ports and addresses: one reading of it.
from berth.runtimes.dockermap import (
    TenantLimits,
    _addresses,
    _int,
    _published_inspect,
    human_duration,
    status_text,
)
from berth.volumes.base import volume_name

__all__ = [
    "LABEL_CAPSULE",
    "container_spec",
    "error_for",
    "from_inspect",
    "from_listing",
    "healthconfig",
    "image_tags",
    "is_sandbox",
    "labels",
    "listed_addresses",
    "listing_status",
    "log_params",
    "pod_name",
    "pod_spec",
    "qualified",
    "resources",
    "zun_stats",
]

# Set by the control plane on a capsule's sandbox (value: the capsule's UUID,
# which is also the sandbox's own UUID).
LABEL_CAPSULE = "berth.capsule"

_NS = 1_000_000_000
_MIB = 1024 * 1024
_CPU_PERIOD = 100_000  # µs: the CFS period Podman itself uses for --cpus

# Podman has more states than Docker: "configured" and "initialized" have not
# run yet, "stopped" is "exited" before Podman's cleanup ran, "stopping" still
# has its process.
_STATES: dict[str, ObservedStateName] = {
    "configured": "created",
    "created": "created",
    "initialized": "created",
    "running": "running",
    "stopping": "running",
    "paused": "paused",
    "exited": "stopped",
    "stopped": "stopped",
    "removing": "removing",
}

# Docker-in-Docker for cluster nodes, the libpod way (see dockermap.DIND_HOST_OPTIONS).
_DIND: dict[str, Any] = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "seccomp_profile_path": "unconfined",
    "cgroupns": {"nsmode": "host"},
}
_DIND_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/sys/fs/cgroup", "source": "/sys/fs/cgroup", "type": "bind",
     "options": ["rbind", "rw"]},
    {"destination": "/var/lib/docker", "source": "tmpfs", "type": "tmpfs", "options": ["exec"]},
    {"destination": "/run", "source": "tmpfs", "type": "tmpfs", "options": ["exec"]},
]  # fmt: skip


def pod_name(uuid: str) -> str:
    """The Podman pod of the capsule whose sandbox is ``uuid``."""
    return f"berth-pod-{uuid}"


def is_sandbox(spec: DesiredContainer) -> bool:
    """Whether ``spec`` is a capsule's sandbox (it becomes a pod's infra container)."""
    return spec.labels.get(LABEL_CAPSULE) == spec.uuid


def labels(spec: DesiredContainer, owner: str | None) -> dict[str, str]:
    """The user's labels plus Berth's own, exactly as the Docker driver writes them."""
    result = dict(spec.labels)
    result.update(
        {
            LABEL_UUID: spec.uuid,
            LABEL_PROJECT: spec.project_id,
            LABEL_SPEC_VERSION: str(spec.spec_version),
        }
    )
    if owner:
        result[LABEL_OWNER] = owner
    return result


def resources(
    cpu: float | None,
    memory: int | None,
    cpuset: list[int] | None = None,
    pids: int = 0,
) -> dict[str, Any]:
    """An OCI ``LinuxResources`` (libpod's ``resource_limits`` and update body); {} when unlimited.

    CPU as a CFS quota over a 100 ms period (what ``--cpus`` sets); swap equal
    to memory, so the container cannot swap past its limit.
    """
    result: dict[str, Any] = {}
    cpu_part: dict[str, Any] = {}
    if cpu:
        cpu_part.update(quota=round(cpu * _CPU_PERIOD), period=_CPU_PERIOD)
    if cpuset:
        cpu_part["cpus"] = ",".join(str(c) for c in cpuset)
    if cpu_part:
        result["cpu"] = cpu_part
    if memory:
        result["memory"] = {"limit": memory * _MIB, "swap": memory * _MIB}
    if pids > 0:
        result["pids"] = {"limit": pids}
    return result


def healthconfig(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """libpod's ``healthconfig`` (CMD-SHELL, nanoseconds) from Zun's ``{test|cmd, ...}``."""
    if not check:
        return None
    command = check.get("test") or check.get("cmd")
    if not command:
        return None
    result: dict[str, Any] = {"Test": ["CMD-SHELL", str(command)]}
    for key in ("interval", "timeout"):
        if check.get(key):
            result[key.capitalize()] = int(float(check[key]) * _NS)
    if check.get("retries"):
        result["Retries"] = int(check["retries"])
    return result


def _restart(policy: dict[str, Any] | None) -> dict[str, Any]:
    if not policy or not policy.get("Name"):
        return {}
    name = str(policy["Name"])
    if name == "on-failure":
        return {"restart_policy": name, "restart_tries": int(policy.get("MaximumRetryCount") or 0)}
    return {"restart_policy": name}


def _network(spec: DesiredContainer) -> dict[str, Any]:
    """The network part of a container or pod body: first project network, none, or default."""
    if spec.networks:
        # The first project network at create; the agent connects any others.
        return {"netns": {"nsmode": "bridge"}, "Networks": {network_name(spec.networks[0].id): {}}}
    if spec.no_network:
        # Detached from every network: loopback only, never Podman's default network.
        return {"netns": {"nsmode": "none"}}
    return {}


def _ports(spec: DesiredContainer) -> dict[str, Any]:
    if not spec.published_ports:
        return {}
    # No host_port: Podman picks a free one (reported back as ``published``).
    return {
        "portmappings": [
            {"container_port": p.port, "protocol": p.protocol} for p in spec.published_ports
        ]
    }


def _limits(spec: DesiredContainer, limits: TenantLimits) -> dict[str, Any]:
    """Resource limits, the log size cap and the OCI runtime of a container's create body."""
    body: dict[str, Any] = {}
    pids = limits.pids if spec.node_profile != "dind" else 0
    limits_body = resources(spec.cpu, spec.memory, spec.cpuset, pids)
    if limits_body:
        body["resource_limits"] = limits_body
    if limits.log_max_mb > 0:
        body["log_configuration"] = {"driver": "k8s-file", "size": limits.log_max_mb * _MIB}
    if spec.runtime and spec.runtime != "runc":
        body["oci_runtime"] = spec.runtime
    return body


def _mounts(spec: DesiredContainer) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(bind mounts of host paths, named volumes) of a container's create body."""
    mounts = [
        {
            "destination": m.destination,
            "source": m.host_path,
            "type": "bind",
            "options": ["rbind", "ro" if m.read_only else "rw"],
        }
        for m in spec.volumes
        if m.destination and m.host_path
    ]
    volumes = [
        {
            "Name": volume_name(m.volume_uuid),
            "Dest": m.destination,
            "Options": ["ro" if m.read_only else "rw"],
        }
        for m in spec.volumes
        if m.destination and not m.host_path
    ]
    return mounts, volumes


def container_spec(
    spec: DesiredContainer, owner: str | None, limits: TenantLimits = TenantLimits()
) -> dict[str, Any]:
    """The ``POST /libpod/containers/create`` body for a plain container or a capsule member."""
    body: dict[str, Any] = {
        "name": container_name(spec.uuid),
        "image": spec.image,
        "labels": labels(spec, owner),
        "command": list(spec.command) or None,
        "entrypoint": spec.entrypoint,
        "work_dir": spec.workdir,
        "env": dict(spec.environment) or None,
        "hostname": spec.hostname,
        "stdin": spec.interactive,
        "terminal": spec.tty,
        "healthconfig": healthconfig(spec.healthcheck),
        "remove": spec.auto_remove,
        "privileged": spec.privileged,
        **_restart(spec.restart_policy),
    }
    body.update(_limits(spec, limits))
    mounts, volumes = _mounts(spec)
    if spec.network_container:
        # A capsule member joins its sandbox's pod: network, UTS (so the
        # hostname) and IPC are the pod's.
        body["pod"] = pod_name(spec.network_container)
        body.pop("hostname")
    else:
        body.update(_network(spec))
        body.update(_ports(spec))
    if spec.node_profile == "dind":
        body.update(_DIND)
        mounts.extend(_DIND_MOUNTS)
    if mounts:
        body["mounts"] = mounts
    if volumes:
        body["volumes"] = volumes
    return {k: v for k, v in body.items() if v is not None}


def pod_spec(spec: DesiredContainer, owner: str | None) -> dict[str, Any]:
    """The ``POST /libpod/pods/create`` body for a capsule's sandbox.

    The sandbox itself is the infra container: its image and command keep the
    namespaces alive, the pod's labels are copied onto it (so it is listed and
    addressed as ``berth-<uuid>``), and the pod's cgroup holds the capsule's
    whole CPU and memory claim, shared by the members.
    """
    body: dict[str, Any] = {
        "name": pod_name(spec.uuid),
        "labels": labels(spec, owner),
        "infra_name": container_name(spec.uuid),
        "infra_image": spec.image,
        "infra_command": [*(spec.entrypoint or []), *spec.command] or None,
        "hostname": spec.hostname,
        **_network(spec),
        **_ports(spec),
    }
    limits_body = resources(spec.cpu, spec.memory, spec.cpuset)
    if limits_body:
        body["resource_limits"] = limits_body
    return {k: v for k, v in body.items() if v is not None}


def from_inspect(data: dict[str, Any]) -> RuntimeContainer:
    """A detailed RuntimeContainer from ``GET /libpod/containers/{name}/json``."""
    state = data.get("State") or {}
    tags = (data.get("Config") or {}).get("Labels") or {}
    started = parse_instant(state.get("StartedAt"))
    observed = _STATES.get(str(state.get("Status")), "dead")
    settings = data.get("NetworkSettings") or {}
    return RuntimeContainer(
        uuid=tags.get(LABEL_UUID, ""),
        runtime_id=str(data.get("Id")),
        state=observed,
        status_detail=_status_text(state),
        spec_version=_int(tags.get(LABEL_SPEC_VERSION)),
        # An exit code means something only once the container has exited.
        exit_code=int(state.get("ExitCode") or 0) if observed == "stopped" else None,
        started_at=started.isoformat() if started else None,
        addresses=_addresses(settings.get("Networks")),
        detailed=True,
        rebuild_id=tags.get(LABEL_REBUILD),
        networks=sorted((settings.get("Networks") or {}).keys()),
        published=_published_inspect(settings.get("Ports")),
    )


def _status_text(state: dict[str, Any]) -> str:
    """Docker's STATUS text for a libpod ``State`` (whose ``Running`` is false while paused)."""
    if state.get("Status") == "paused":
        state = {**state, "Running": True, "Paused": True}
    return status_text(state)


def from_listing(entry: dict[str, Any], now: datetime | None = None) -> RuntimeContainer:
    """A sparse RuntimeContainer from one ``GET /libpod/containers/json?all=true`` entry.

    libpod's listing has no addresses and a start time in whole seconds only:
    sparse, like the Docker driver's (inspect for the detail).
    """
    tags = entry.get("Labels") or {}
    observed = _STATES.get(str(entry.get("State")), "dead")
    return RuntimeContainer(
        uuid=tags.get(LABEL_UUID, ""),
        runtime_id=str(entry.get("Id")),
        state=observed,
        status_detail=listing_status(entry, now),
        spec_version=_int(tags.get(LABEL_SPEC_VERSION)),
        exit_code=int(entry.get("ExitCode") or 0) if observed == "stopped" else None,
        detailed=False,
        rebuild_id=tags.get(LABEL_REBUILD),
        networks=sorted(entry.get("Networks") or []),
        published=_published_listing(entry.get("Ports")),
    )


def listed_addresses(entry: dict[str, Any]) -> dict[str, Any]:
    """A container's addresses in one entry of Podman's Docker-compatible listing."""
    return _addresses((entry.get("NetworkSettings") or {}).get("Networks"))


def listing_status(entry: dict[str, Any], now: datetime | None = None) -> str:
    """The ``docker ps`` STATUS text for a libpod listing entry (which leaves it empty)."""
    now = now or datetime.now(UTC)
    state = str(entry.get("State"))
    if state in ("running", "stopping", "paused"):
        up = human_duration(_since_epoch(entry.get("StartedAt"), now))
        return f"Up {up} (Paused)" if state == "paused" else f"Up {up}"
    if state in ("exited", "stopped"):
        ago = human_duration(_since_epoch(entry.get("ExitedAt"), now))
        return f"Exited ({int(entry.get('ExitCode') or 0)}) {ago} ago"
    if state == "removing":
        return "Removal In Progress"
    return "Created" if state in ("configured", "created", "initialized") else state.capitalize()


def _since_epoch(value: Any, now: datetime) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, now.timestamp() - seconds) if seconds > 0 else 0.0


def _published_listing(ports: list[dict[str, Any]] | None) -> dict[str, int]:
    """The same from a libpod listing entry's ``Ports`` (snake_case, with ranges)."""
    result: dict[str, int] = {}
    for port in ports or []:
        if port.get("host_port") and port.get("container_port"):
            key = f"{port['container_port']}/{port.get('protocol') or 'tcp'}"
            result.setdefault(key, int(port["host_port"]))
    return result


_COUNTERS = ("BlockInput", "BlockOutput", "NetInput", "NetOutput")


def zun_stats(sample: dict[str, Any], name: str) -> ZunStats:
    """Zun's stats dict from one ``GET /libpod/containers/stats?stream=false`` entry.

    libpod computes the CPU percentage itself; memory, block and network I/O
    are byte counters.
    """
    counter = {key: int(sample.get(key) or 0) for key in _COUNTERS}
    usage = float(sample.get("MemUsage") or 0) / _MIB
    limit = float(sample.get("MemLimit") or 0) / _MIB
    return {
        "CONTAINER": name,
        "CPU %": round(float(sample.get("CPU") or 0.0), 2),
        "MEM USAGE(MiB)": round(usage, 2),
        "MEM LIMIT(MiB)": round(limit, 2),
        "MEM %": round(usage / limit * 100.0, 2) if limit else 0.0,
        "BLOCK I/O(B)": f"{counter['BlockInput']}/{counter['BlockOutput']}",
        "NET I/O(B)": f"{counter['NetInput']}/{counter['NetOutput']}",
    }


_MAX_TAGS = 1000  # images reported for the scheduler's image locality (the newest)


def short_reference(tag: str) -> str:
    """A reference as Docker would spell it: Podman's ``localhost/`` and Docker Hub prefixes off."""
    for prefix in ("localhost/", "docker.io/library/", "docker.io/"):
        if tag.startswith(prefix):
            return tag.removeprefix(prefix)
    return tag


def image_tags(images: list[dict[str, Any]]) -> list[str]:
    """Docker-spelled ``repo:tag`` of every tagged image, at most ``_MAX_TAGS`` (the newest)."""
    newest = sorted(images, key=lambda i: int(i.get("Created") or 0), reverse=True)
    tags = [
        short_reference(t)
        for i in newest
        for t in i.get("RepoTags") or ()
        if t and not t.startswith("<none>")
    ]
    return sorted(dict.fromkeys(tags[:_MAX_TAGS]))


def qualified(image: str) -> str:
    """A fully qualified reference to pull: a short name means Docker Hub, as with Docker.

    Podman refuses to guess a registry for a short name (no unqualified-search
    registries by default); locally loaded images are found either way.
    """
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if sep else f"docker.io/library/{image}"


def log_params(
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    tail: int | None,
    since: float | None,
    *,
    follow: bool,
) -> dict[str, str]:
    """The query of ``GET /libpod/containers/{name}/logs``."""
    params = {
        "stdout": str(stdout).lower(),
        "stderr": str(stderr).lower(),
        "timestamps": str(timestamps).lower(),
        "follow": str(follow).lower(),
    }
    if tail is not None:
        params["tail"] = str(tail)
    if since:
        # Nine digits: libpod reads the fraction as a count of nanoseconds.
        params["since"] = f"{since:.9f}"
    return params


# libpod's error causes: a missing object is sometimes a 500.
_MISSING = ("no such container", "no such pod", "no such exec session", "no such object")
_CONFLICTS = ("container state improper", "that name is already in use")


def error_for(status: int, content: bytes) -> errors.BerthError:
    """The Berth error for a libpod error answer (``{"cause", "message", "response"}``)."""
    try:
        answer = json.loads(content)
        message = str(answer.get("message") or answer.get("cause") or content.decode())
        cause = str(answer.get("cause") or "")
    except (ValueError, AttributeError):
        message, cause = content.decode("utf-8", errors="replace"), ""
    if status == 404 or cause in _MISSING:
        return errors.ContainerNotFound(message)
    # libpod answers 500 (not 409) for most "not in this state" refusals and
    # for a taken container name.
    if status == 409 or cause in _CONFLICTS:
        return errors.InvalidStateException(message)
    if status == 400:
        return errors.Invalid(message)
    return errors.BerthError(f"podman error: {message}")
