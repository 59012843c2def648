"""Capsule templates (Zun's pod format) and the status of a capsule: pure rules, no I/O.

``parse_template`` checks what ``openstack capsule create -f template.yaml``
sends (``{"template": {...}}``) and returns plain dataclasses; every mistake
is an ``errors.Invalid`` naming the field, so the user gets a clear 400.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from berth import errors
from berth.domain.injected_files import in_kernel_fs
from berth.domain.text import CONTROL, CONTROL_BUT_LINES

__all__ = [
    "MAX_COUNTS",
    "CapsuleSpec",
    "MemberSpec",
    "MountSpec",
    "VolumeSpec",
    "capsule_status",
    "parse_template",
]

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]")
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_MEMORY = re.compile(r"([0-9]{1,12})\s*(Mi|M|MiB|Gi|G|GiB)?")
# A name, path or image: one line. A command argument or an environment value may
# hold tabs and newlines (a script for ``sh -c``), never NUL or other C0 characters.
# Entries per list or map of a template: a 1 MiB body could otherwise carry tens of
# thousands, each a container, a volume or a row of every agent's desired state.
MAX_COUNTS: dict[str, int] = {
    "containers": 16,
    "volumes": 16,
    "ports": 256,
    "volumeMounts": 64,
    "env": 512,
    "labels": 128,
    "annotations": 128,
    "command": 1024,
}
_TOP_KEYS = {"kind", "capsuleVersion", "metadata", "restartPolicy", "availabilityZone", "spec"}
_CONTAINER_KEYS = {
    "name",
    "image",
    "command",
    "args",
    "resources",
    "ports",
    "volumeMounts",
    "env",
    "workDir",
    "workingDir",
    "imagePullPolicy",
    "stdin",
    "tty",
}
RESTART_POLICIES = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}


@dataclass
class MountSpec:
    volume: str
    path: str
    read_only: bool = False


@dataclass
class MemberSpec:
    image: str
    name: str | None = None
    command: list[str] = field(default_factory=list)
    cpu: float | None = None
    memory: int | None = None
    environment: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    ports: list[str] = field(default_factory=list)
    mounts: list[MountSpec] = field(default_factory=list)
    image_pull_policy: str | None = None
    interactive: bool = False
    tty: bool = False


@dataclass
class VolumeSpec:
    name: str
    volume_id: str | None = None
    size: int | None = None
    auto_remove: bool = False


@dataclass
class CapsuleSpec:
    name: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    restart_policy: str
    containers: list[MemberSpec]
    init_containers: list[MemberSpec]
    volumes: list[VolumeSpec]
    availability_zone: str | None = None


def _bad(where: str, why: str) -> errors.Invalid:
    return errors.Invalid(f"Invalid capsule template: {where} {why}.")


def _count(value: Any, where: str, kind: str) -> None:
    limit = MAX_COUNTS[kind]
    if isinstance(value, list | dict) and len(value) > limit:
        raise _bad(where, f"has {len(value)} entries, at most {limit} are allowed")


def _line(value: str, where: str) -> str:
    if CONTROL.search(value):
        raise _bad(where, "must not hold control characters (NUL, newlines, tabs, ...)")
    return value


def _text(value: str, where: str) -> str:
    if CONTROL_BUT_LINES.search(value):
        raise _bad(where, "must not hold NUL or control characters other than tab and newline")
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(where, "must be an object")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
    ):
        raise _bad(where, "must be a list of strings")
    _count(value, where, "command")
    return [_text(str(v), where) for v in value]


def _str_map(value: Any, where: str, kind: str) -> dict[str, str]:
    """``{k: v}``, or Kubernetes' ``[{name, value}]`` for env."""
    _count(value, where, kind)
    pairs: list[tuple[Any, Any]] = []
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise _bad(where, "must map names to values")
            pairs.append((item["name"], item.get("value", "")))
    else:
        pairs = list(_dict(value, where).items())
    result: dict[str, str] = {}
    for key, item in pairs:
        if not isinstance(item, str | int | float | bool):
            raise _bad(f"{where}.{_line(str(key), where)}", "must be a string")
        result[_line(str(key), f"{where} names")] = _text(str(item), f"{where} values")
    return result


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(where, "must be a list")
    return value


def _cpu(value: Any, where: str) -> float | None:
    if value is None:
        return None
    text = str(value)[:40] if isinstance(value, str | int | float) else "?"
    try:
        cpu = float(text.removesuffix("m")) / (1000 if text.endswith("m") else 1)
    except ValueError:
        raise _bad(where, f"{text!r} is not a number of CPUs") from None
    if not math.isfinite(cpu) or cpu <= 0:
        raise _bad(where, "must be a positive number of CPUs")
    return cpu


def _memory(value: Any, where: str) -> int | None:
    if value is None:
        return None
    text = str(value)[:40] if isinstance(value, str | int) else "?"
    match = _MEMORY.fullmatch(text.strip())
    if not match:
        raise _bad(where, f"{text!r} is not a memory size in MiB (e.g. 256 or 256Mi)")
    amount = int(match.group(1))
    return amount * 1024 if (match.group(2) or "").startswith("G") else amount


def _bool(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(where, "must be true or false")
    return value


def _image(spec: dict[str, Any], where: str) -> str:
    image = spec.get("image")
    if (
        not isinstance(image, str)
        or not 2 <= len(image) <= 255
        or not _IMAGE.search(image)
        or any(c.isspace() for c in image)
    ):
        raise _bad(f"{where}.image", "is required and must be an image reference")
    return _line(image, f"{where}.image")


def _member_name(spec: dict[str, Any], where: str) -> str | None:
    name = spec.get("name")
    if name is not None and (
        not isinstance(name, str) or len(name) > 255 or not _NAME.fullmatch(name)
    ):
        raise _bad(f"{where}.name", "must be letters, digits, '_', '.' or '-'")
    return name


def _resources(spec: dict[str, Any], where: str) -> tuple[float | None, int | None]:
    """CPU and memory: the limit if given, else the request."""
    resources = _dict(spec.get("resources"), f"{where}.resources")
    requests = _dict(resources.get("requests"), f"{where}.resources.requests")
    limits = _dict(resources.get("limits"), f"{where}.resources.limits")
    cpu = _cpu(limits.get("cpu", requests.get("cpu")), f"{where}.resources cpu")
    memory = _memory(limits.get("memory", requests.get("memory")), f"{where}.resources memory")
    return cpu, memory


def _port(raw: Any, where: str) -> str:
    p = _dict(raw, where)
    number = p.get("containerPort")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
        raise _bad(f"{where}.containerPort", "must be a port number 1-65535")
    protocol = p.get("protocol", "TCP")
    if not isinstance(protocol, str) or protocol.upper() not in ("TCP", "UDP"):
        raise _bad(f"{where}.protocol", "must be TCP or UDP")
    return f"{number}/{protocol.lower()}"


def _mount(raw: Any, where: str, n: int, volume_names: set[str]) -> MountSpec:
    """Mount ``n`` of the member at ``where`` (whose name its readOnly error carries)."""
    at = f"{where}.volumeMounts[{n}]"
    m = _dict(raw, at)
    vol, path = m.get("name"), m.get("mountPath")
    if not isinstance(vol, str) or not isinstance(path, str) or not path.startswith("/"):
        raise _bad(at, "needs a volume name and an absolute mountPath")
    _line(path, f"{at}.mountPath")
    if in_kernel_fs(path):
        raise _bad(f"{at}.mountPath", "may not lie under /proc, /sys or /dev")
    if vol not in volume_names:
        raise _bad(at, f"names volume {vol!r}, not in spec.volumes")
    return MountSpec(vol, path, _bool(m.get("readOnly"), f"{where} readOnly"))


def _pull_policy(spec: dict[str, Any], where: str) -> str | None:
    policy = spec.get("imagePullPolicy")
    if policy is None:
        return None
    if not isinstance(policy, str) or policy.lower() not in ("always", "never", "ifnotpresent"):
        raise _bad(f"{where}.imagePullPolicy", "must be Always, Never or IfNotPresent")
    return policy.lower()


def _workdir(spec: dict[str, Any], where: str) -> str | None:
    workdir = spec.get("workDir", spec.get("workingDir"))
    if workdir is None:
        return None
    if not isinstance(workdir, str) or len(workdir) > 4096:
        raise _bad(f"{where}.workDir", "must be a path")
    return _line(workdir, f"{where}.workDir")


def _member(raw: Any, where: str, volume_names: set[str]) -> MemberSpec:
    # Checked in this order, so a template with several mistakes reports the same first one.
    spec = _dict(raw, where)
    unknown = sorted(set(spec) - _CONTAINER_KEYS)
    if unknown:
        raise _bad(where, f"has unknown key(s) {', '.join(unknown)}")
    image = _image(spec, where)
    name = _member_name(spec, where)
    cpu, memory = _resources(spec, where)
    _count(spec.get("ports"), f"{where}.ports", "ports")
    _count(spec.get("volumeMounts"), f"{where}.volumeMounts", "volumeMounts")
    ports = [
        _port(port, f"{where}.ports[{n}]")
        for n, port in enumerate(_list(spec.get("ports"), f"{where}.ports"))
    ]
    mounts = [
        _mount(mount, where, n, volume_names)
        for n, mount in enumerate(_list(spec.get("volumeMounts"), f"{where}.volumeMounts"))
    ]
    policy = _pull_policy(spec, where)
    workdir = _workdir(spec, where)
    return MemberSpec(
        image=image,
        name=name,
        command=_strings(spec.get("command"), f"{where}.command")
        + _strings(spec.get("args"), f"{where}.args"),
        cpu=cpu,
        memory=memory,
        environment=_str_map(spec.get("env"), f"{where}.env", "env"),
        workdir=workdir,
        ports=ports,
        mounts=mounts,
        image_pull_policy=policy,
        interactive=_bool(spec.get("stdin"), f"{where}.stdin"),
        tty=_bool(spec.get("tty"), f"{where}.tty"),
    )


def _volume(raw: Any, where: str) -> VolumeSpec:
    v = _dict(raw, where)
    name = v.get("name")
    if not isinstance(name, str) or not 2 <= len(name) <= 255 or not _NAME.fullmatch(name):
        raise _bad(f"{where}.name", "is required: 2-255 letters, digits, '_', '.' or '-'")
    cinder = v.get("cinder")
    if not isinstance(cinder, dict):
        raise _bad(where, "needs a 'cinder' object with volumeID or size")
    volume_id, size = cinder.get("volumeID"), cinder.get("size")
    if (volume_id is None) == (size is None):
        raise _bad(f"{where}.cinder", "needs exactly one of volumeID and size")
    if volume_id is not None and (
        not isinstance(volume_id, str) or not 1 <= len(volume_id) <= 255
    ):
        raise _bad(f"{where}.cinder.volumeID", "must be a volume UUID or name")
    if volume_id is not None:
        _line(volume_id, f"{where}.cinder.volumeID")
    if size is not None and (
        not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 2**31 - 1
    ):
        raise _bad(f"{where}.cinder.size", "must be a whole number of GiB, at least 1")
    return VolumeSpec(
        name, volume_id, size, _bool(cinder.get("autoRemove"), f"{where}.cinder.autoRemove")
    )


def _top(template: Any) -> dict[str, Any]:
    """The template's outer object: known keys, the required ones, kind and version."""
    top = _dict(template, "the template")
    unknown = sorted(set(top) - _TOP_KEYS)
    if unknown:
        raise _bad("the template", f"has unknown key(s) {', '.join(unknown)}")
    for key in ("kind", "metadata", "spec"):
        if key not in top:
            raise _bad("the template", f"needs '{key}'")
    if top["kind"] not in ("capsule", "Capsule"):
        raise _bad("kind", "must be 'capsule'")
    if top.get("capsuleVersion") not in (None, "beta", "Beta"):
        raise _bad("capsuleVersion", "must be 'beta'")
    return top


def _capsule_name(meta: dict[str, Any]) -> str | None:
    name = meta.get("name")
    if name is not None and (
        not isinstance(name, str) or not 2 <= len(name) <= 255 or not _NAME.fullmatch(name)
    ):
        raise _bad("metadata.name", "must be 2-255 letters, digits, '_', '.' or '-'")
    return name


def _volumes(spec: dict[str, Any]) -> list[VolumeSpec]:
    raw_volumes = _list(spec.get("volumes"), "spec.volumes")
    _count(raw_volumes, "spec.volumes", "volumes")
    volumes = [_volume(v, f"spec.volumes[{n}]") for n, v in enumerate(raw_volumes)]
    names = [v.name for v in volumes]
    if len(set(names)) != len(names):
        raise _bad("spec.volumes", "has two volumes with the same name")
    return volumes


def _member_lists(spec: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The raw containers (at least one) and initContainers, at most 16 in all."""
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise _bad("spec.containers", "must list at least one container")
    inits = _list(spec.get("initContainers"), "spec.initContainers")
    _count([*containers, *inits], "spec.containers and spec.initContainers", "containers")
    return containers, inits


def _restart_policy(spec: dict[str, Any]) -> str:
    policy = spec.get("restartPolicy", "Always")
    if not isinstance(policy, str) or policy not in RESTART_POLICIES:
        raise _bad("spec.restartPolicy", "must be Always, OnFailure or Never")
    return RESTART_POLICIES[policy]


def _zone(top: dict[str, Any]) -> str | None:
    zone = top.get("availabilityZone")
    if zone is None:
        return None
    if not isinstance(zone, str) or not 1 <= len(zone) <= 255:
        raise _bad("availabilityZone", "must be a zone name")
    return _line(zone, "availabilityZone")


def parse_template(template: Any) -> CapsuleSpec:
    """The capsule a template describes, or errors.Invalid saying what is wrong."""
    # Checked in this order, so a template with several mistakes reports the same first one.
    top = _top(template)
    meta = _dict(top["metadata"], "metadata")
    name = _capsule_name(meta)
    spec = _dict(top["spec"], "spec")
    volumes = _volumes(spec)
    names = {v.name for v in volumes}
    containers, inits = _member_lists(spec)
    restart_policy = _restart_policy(spec)
    zone = _zone(top)
    return CapsuleSpec(
        name=name,
        labels=_str_map(meta.get("labels"), "metadata.labels", "labels"),
        annotations=_str_map(meta.get("annotations"), "metadata.annotations", "annotations"),
        restart_policy=restart_policy,
        containers=[_member(c, f"spec.containers[{n}]", names) for n, c in enumerate(containers)],
        init_containers=[
            _member(c, f"spec.initContainers[{n}]", names) for n, c in enumerate(inits)
        ],
        volumes=volumes,
        availability_zone=zone,
    )


def capsule_status(
    deleting: bool,
    sandbox: str | None,
    inits: list[str],
    apps: list[str],
) -> str:
    """A capsule's Zun status from its containers' statuses (None: sandbox gone)."""
    every = [s for s in (sandbox, *inits, *apps) if s is not None]
    if deleting:
        return "Deleting"
    if "Error" in every:
        return "Error"
    if not apps or any(s in ("Creating", None) for s in (sandbox, *apps)):
        return "Creating"
    if all(s == "Running" for s in apps):
        return "Running"
    if all(s in ("Stopped", "Dead") for s in apps):
        return "Stopped"
    if any(s == "Unknown" for s in every):
        return "Unknown"
    if any(s == "Restarting" for s in apps):
        return "Restarting"
    return "Created" if all(s == "Created" for s in apps) else "Running"
