"""Pure translations between Berth's objects and the Docker Engine API's JSON.

No I/O here: ``docker.py`` calls the engine and hands the raw dicts to these
functions, so the mapping is tested without an engine.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
from berth.volumes.base import volume_name

__all__ = [
    "DIND_HOST_OPTIONS",
    "TenantLimits",
    "create_params",
    "from_inspect",
    "from_listing",
    "healthcheck",
    "human_duration",
    "restart_policy",
    "signal_name",
    "status_text",
    "zun_stats",
]

_NS = 1_000_000_000
_MIB = 1024 * 1024

# Docker-in-Docker for cluster nodes (node_profile "dind", never set by users):
# what dockerd inside needs, short of --privileged (which fails on some hosts).
DIND_HOST_OPTIONS: dict[str, Any] = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "cgroupns": "host",
    "binds": ["/sys/fs/cgroup:/sys/fs/cgroup:rw"],
    "tmpfs": {"/var/lib/docker": "exec", "/run": "exec"},
}
_STATES: dict[str, ObservedStateName] = {
    "created": "created",
    "running": "running",
    "paused": "paused",
    "restarting": "restarting",
    "removing": "removing",
    "exited": "stopped",
    "dead": "dead",
}
_EXIT_CODE = re.compile(r"^Exited \((-?\d+)\)")


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """What every tenant container is held to on its host, whatever it asked for.

    ``pids`` caps its processes, so a fork bomb exhausts its own cgroup, not the
    host's process table; ``log_max_mb`` caps each of its ``log_files`` engine log
    files, so a chatty container cannot fill the host's disk with its stdout.
    0 disables a cap. Cluster nodes (``dind``) are left without the pids cap:
    their inner containers share the node's cgroup.
    """

    pids: int = 0
    log_max_mb: int = 0
    log_files: int = 3


def _config(spec: DesiredContainer, owner: str | None) -> dict[str, Any]:
    """``create_container``'s arguments, None where the engine's default applies."""
    labels = dict(spec.labels)
    labels.update(
        {
            LABEL_UUID: spec.uuid,
            LABEL_PROJECT: spec.project_id,
            LABEL_SPEC_VERSION: str(spec.spec_version),
        }
    )
    if owner:
        labels[LABEL_OWNER] = owner
    return {
        "image": spec.image,
        "name": container_name(spec.uuid),
        "labels": labels,
        "command": list(spec.command) or None,
        "entrypoint": spec.entrypoint,
        "working_dir": spec.workdir,
        "environment": [f"{k}={v}" for k, v in spec.environment.items()] or None,
        "hostname": spec.hostname,
        "stdin_open": spec.interactive,
        "tty": spec.tty,
        "healthcheck": healthcheck(spec.healthcheck),
    }


def _resource_options(spec: DesiredContainer, limits: TenantLimits) -> dict[str, Any]:
    """The host config's limits: the spec's own, then the host's caps on every tenant."""
    host: dict[str, Any] = {}
    if spec.cpu:
        host["nano_cpus"] = round(spec.cpu * _NS)
    if spec.memory:
        # memswap equal to memory: otherwise the container may swap past its limit.
        host["mem_limit"] = host["memswap_limit"] = spec.memory * _MIB
    if limits.pids > 0 and spec.node_profile != "dind":
        host["pids_limit"] = limits.pids
    if limits.log_max_mb > 0:
        host["log_config"] = {
            "Type": "json-file",
            "Config": {"max-size": f"{limits.log_max_mb}m", "max-file": str(limits.log_files)},
        }
    if spec.cpuset:
        host["cpuset_cpus"] = ",".join(str(c) for c in spec.cpuset)
    if spec.runtime and spec.runtime != "runc":
        host["runtime"] = spec.runtime
    return host


def _mounts(spec: DesiredContainer) -> list[dict[str, Any]]:
    return [
        {
            "Type": "bind" if m.host_path else "volume",
            "Source": m.host_path or volume_name(m.volume_uuid),
            "Target": m.destination,
            "ReadOnly": m.read_only,
        }
        for m in spec.volumes
        if m.destination
    ]


def _network_mode(spec: DesiredContainer) -> str | None:
    if spec.network_container:
        # A capsule member shares its sandbox's network namespace (and so its hostname).
        return f"container:{container_name(spec.network_container)}"
    if spec.networks:
        # The first project network at create; the agent connects any others.
        return network_name(spec.networks[0].id)
    if spec.no_network:
        # Detached from every network (then recreated, say by a rebuild): loopback
        # only, never the engine's default bridge, until a network is attached.
        return "none"
    return None


def _fixed_address(spec: DesiredContainer) -> dict[str, Any] | None:
    """The endpoint of the first network with the address the control plane leased (overlay):
    the engine must not pick one. None when the engine picks (the bridge driver)."""
    if spec.network_container or not spec.networks or not spec.networks[0].address:
        return None
    first = spec.networks[0]
    endpoint = {"IPAMConfig": {"IPv4Address": first.address}}
    return {"EndpointsConfig": {network_name(first.id): endpoint}}


def _with_dind(host: dict[str, Any]) -> dict[str, Any]:
    """``host`` plus DIND_HOST_OPTIONS, its lists and maps extended rather than replaced."""
    result = dict(host)
    for key, value in DIND_HOST_OPTIONS.items():
        if isinstance(value, list):
            result[key] = [*host.get(key, []), *value]
        elif isinstance(value, dict):
            result[key] = {**host.get(key, {}), **value}
        else:
            result[key] = value
    return result


def create_params(
    spec: DesiredContainer, owner: str | None, limits: TenantLimits = TenantLimits()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``create_container`` and ``create_host_config`` keyword arguments for a spec."""
    config = _config(spec, owner)
    host: dict[str, Any] = {
        "auto_remove": spec.auto_remove,
        "privileged": spec.privileged,
        "restart_policy": restart_policy(spec.restart_policy),
        **_resource_options(spec, limits),
    }
    mounts = _mounts(spec)
    if mounts:
        host["mounts"] = mounts
    network_mode = _network_mode(spec)
    if network_mode is not None:
        host["network_mode"] = network_mode
    fixed = _fixed_address(spec)
    if fixed is not None:
        config["networking_config"] = fixed
    if spec.network_container:
        config.pop("hostname", None)  # the sandbox's
    if spec.published_ports:
        # Published on a host port the engine picks (reported back as ``published``).
        config["ports"] = [(p.port, p.protocol) for p in spec.published_ports]
        host["port_bindings"] = {f"{p.port}/{p.protocol}": None for p in spec.published_ports}
    if spec.node_profile == "dind":
        host = _with_dind(host)
    return {k: v for k, v in config.items() if v is not None}, host


def restart_policy(policy: dict[str, Any] | None) -> dict[str, Any] | None:
    """Docker's RestartPolicy from Zun's, whose retry count may arrive as a string."""
    if not policy or not policy.get("Name"):
        return None
    name = str(policy["Name"])
    count = int(policy.get("MaximumRetryCount") or 0)
    if name == "on-failure":
        return {"Name": name, "MaximumRetryCount": count}
    return {"Name": name}


def healthcheck(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """Docker's Healthcheck (CMD-SHELL, nanoseconds) from Zun's ``{test|cmd, interval, ...}``."""
    if not check:
        return None
    command = check.get("test") or check.get("cmd")
    if not command:
        return None
    result: dict[str, Any] = {"test": ["CMD-SHELL", str(command)]}
    for key in ("interval", "timeout"):
        if check.get(key):
            result[key] = int(float(check[key]) * _NS)
    if check.get("retries"):
        result["retries"] = int(check["retries"])
    return result


def human_duration(seconds: float) -> str:
    """Docker's ``units.HumanDuration``: "Less than a second", "3 minutes", "About an hour"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = math.floor(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"


def status_text(state: dict[str, Any], now: datetime | None = None) -> str:
    """What ``docker ps`` shows in STATUS for an inspected ``State`` (Docker's State.String)."""
    now = now or datetime.now(UTC)
    started = parse_instant(state.get("StartedAt"))
    finished = parse_instant(state.get("FinishedAt"))
    if state.get("Running"):
        if state.get("Paused"):
            return f"Up {human_duration(_since(started, now))} (Paused)"
        if state.get("Restarting"):
            ago = human_duration(_since(finished, now))
            return f"Restarting ({state.get('ExitCode', 0)}) {ago} ago"
        health = (state.get("Health") or {}).get("Status")
        suffix = {"starting": " (health: starting)", "healthy": " (healthy)"}.get(
            health or "", " (unhealthy)" if health == "unhealthy" else ""
        )
        return f"Up {human_duration(_since(started, now))}{suffix}"
    if state.get("Status") == "removing":
        return "Removal In Progress"
    if state.get("Dead"):
        return "Dead"
    if started is None:
        return "Created"
    if finished is None:
        return ""
    return f"Exited ({state.get('ExitCode', 0)}) {human_duration(_since(finished, now))} ago"


def _since(moment: datetime | None, now: datetime) -> float:
    return max(0.0, (now - moment).total_seconds()) if moment else 0.0


def from_inspect(data: dict[str, Any]) -> RuntimeContainer:
    """A detailed RuntimeContainer from ``inspect_container`` output."""
    state = data.get("State") or {}
    labels = (data.get("Config") or {}).get("Labels") or {}
    started = parse_instant(state.get("StartedAt"))
    observed = _STATES.get(str(state.get("Status")), "dead")
    # An exit code means something only once the container has exited (and a
    # listing, which parses it from "Exited (N) ...", must agree with this).
    finished = observed == "stopped"
    return RuntimeContainer(
        uuid=labels.get(LABEL_UUID, ""),
        runtime_id=str(data.get("Id")),
        state=observed,
        status_detail=status_text(state),
        spec_version=_int(labels.get(LABEL_SPEC_VERSION)),
        exit_code=state.get("ExitCode") if finished else None,
        started_at=started.isoformat() if started else None,
        addresses=_addresses((data.get("NetworkSettings") or {}).get("Networks")),
        detailed=True,
        rebuild_id=labels.get(LABEL_REBUILD),
        networks=sorted(((data.get("NetworkSettings") or {}).get("Networks") or {}).keys()),
        published=_published_inspect((data.get("NetworkSettings") or {}).get("Ports")),
        macs=_macs((data.get("NetworkSettings") or {}).get("Networks")),
    )


def from_listing(entry: dict[str, Any]) -> RuntimeContainer:
    """A sparse RuntimeContainer from one ``containers(all=True)`` entry (no start time)."""
    labels = entry.get("Labels") or {}
    status = str(entry.get("Status") or "")
    match = _EXIT_CODE.match(status)
    return RuntimeContainer(
        uuid=labels.get(LABEL_UUID, ""),
        runtime_id=str(entry.get("Id")),
        state=_STATES.get(str(entry.get("State")), "dead"),
        status_detail=status,
        spec_version=_int(labels.get(LABEL_SPEC_VERSION)),
        exit_code=int(match.group(1)) if match else None,
        addresses=_addresses((entry.get("NetworkSettings") or {}).get("Networks")),
        detailed=False,
        rebuild_id=labels.get(LABEL_REBUILD),
        networks=sorted(((entry.get("NetworkSettings") or {}).get("Networks") or {}).keys()),
        published=_published_listing(entry.get("Ports")),
        macs=_macs((entry.get("NetworkSettings") or {}).get("Networks")),
    )


def _published_inspect(ports: dict[str, Any] | None) -> dict[str, int]:
    """``{"80/tcp": 32768}`` from inspect's ``NetworkSettings.Ports`` (IPv4 binding first)."""
    result: dict[str, int] = {}
    for key, bindings in (ports or {}).items():
        for binding in bindings or []:
            if str(binding.get("HostPort") or "").isdigit():
                result.setdefault(key, int(binding["HostPort"]))
    return result


def _published_listing(ports: list[dict[str, Any]] | None) -> dict[str, int]:
    """The same from a listing entry's ``Ports``."""
    result: dict[str, int] = {}
    for port in ports or []:
        if port.get("PublicPort") and port.get("PrivatePort"):
            key = f"{port['PrivatePort']}/{port.get('Type') or 'tcp'}"
            result.setdefault(key, int(port["PublicPort"]))
    return result


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _addresses(networks: dict[str, Any] | None) -> dict[str, Any]:
    """``{network: [{"addr", "version"}]}``: the Zun shape, minus Neutron-only fields."""
    result: dict[str, Any] = {}
    for name, net in (networks or {}).items():
        addrs = [
            {"addr": addr, "version": version}
            for addr, version in ((net.get("IPAddress"), 4), (net.get("GlobalIPv6Address"), 6))
            if addr
        ]
        if addrs:
            result[name] = addrs
    return result


def _macs(networks: dict[str, Any] | None) -> dict[str, str]:
    """``{IPv4 address: MAC}`` of every endpoint (the overlay programs other hosts with it)."""
    return {
        str(net["IPAddress"]): str(net["MacAddress"])
        for net in (networks or {}).values()
        if net.get("IPAddress") and net.get("MacAddress")
    }


def signal_name(signal: str | int | None) -> str | int:
    """Docker's kill signal from Zun's forms: None, 9, "9", "kill", "SIGKILL"."""
    if signal is None or signal == "" or str(signal) == "None":
        return "SIGKILL"
    if isinstance(signal, int) or str(signal).isdigit():
        return int(signal)
    name = str(signal).upper()
    return name if name.startswith("SIG") else f"SIG{name}"


def _cpu_percent(raw: dict[str, Any]) -> float:
    """CPU use since the previous sample, 100 per busy CPU (as ``docker stats``)."""
    cpu, pre = raw.get("cpu_stats") or {}, raw.get("precpu_stats") or {}
    cpu_delta = _usage(cpu) - _usage(pre)
    system_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [1])
    return cpu_delta / system_delta * online * 100.0 if system_delta > 0 else 0.0


def _memory_mib(raw: dict[str, Any]) -> tuple[float, float]:
    """Memory usage and limit in MiB."""
    memory = raw.get("memory_stats") or {}
    # Like `docker stats`: page cache the kernel can reclaim is not "usage".
    inactive = (memory.get("stats") or {}).get("total_inactive_file") or 0
    usage = max(0, (memory.get("usage") or 0) - inactive) / _MIB
    limit = (memory.get("limit") or 0) / _MIB
    return usage, limit


def _block_io(raw: dict[str, Any]) -> str:
    """``"read/write"`` bytes."""
    io_read = io_write = 0
    for item in (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(item.get("op", "")).lower()
        io_read += item.get("value", 0) if op == "read" else 0
        io_write += item.get("value", 0) if op == "write" else 0
    return f"{io_read}/{io_write}"


def _net_io(raw: dict[str, Any]) -> str:
    """``"received/sent"`` bytes over every interface."""
    rx = sum(n.get("rx_bytes", 0) for n in (raw.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (raw.get("networks") or {}).values())
    return f"{rx}/{tx}"


def zun_stats(raw: dict[str, Any], name: str) -> ZunStats:
    """Zun's stats dict from one ``stats(stream=False)`` sample (CPU % as ``docker stats``)."""
    cpu_percent = _cpu_percent(raw)
    usage, limit = _memory_mib(raw)
    return {
        "CONTAINER": name,
        "CPU %": round(cpu_percent, 2),
        "MEM USAGE(MiB)": round(usage, 2),
        "MEM LIMIT(MiB)": round(limit, 2),
        "MEM %": round(usage / limit * 100.0, 2) if limit else 0.0,
        "BLOCK I/O(B)": _block_io(raw),
        "NET I/O(B)": _net_io(raw),
    }


def _usage(sample: dict[str, Any]) -> int:
    return int((sample.get("cpu_usage") or {}).get("total_usage") or 0)
