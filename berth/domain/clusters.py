"""Magnum clusters as data: statuses, request fields, flavor presets and input checks (no I/O)."""

from __future__ import annotations

import json
import re
import uuid as uuid_mod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from berth import errors
from berth.domain.jsonpatch import python_literal

__all__ = [
    "CREATE_FIELDS",
    "DEFAULT_GROUPS",
    "FLAVORS",
    "IN_PROGRESS",
    "MAX_CLUSTERS_PER_PROJECT",
    "MAX_LABELS",
    "MAX_LABELS_JSON",
    "MAX_TAINTS",
    "NODEGROUP_FIELDS",
    "NODEGROUP_PATCHABLE",
    "PATCHABLE",
    "Flavor",
    "check_labels_size",
    "check_name",
    "check_node_counts",
    "check_resize_bounds",
    "coerce_create",
    "coerce_labels",
    "coerce_nodegroup",
    "coerce_taints",
    "default_group_uuid",
    "resolve_flavor",
]

IN_PROGRESS: Final = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS")
_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_.-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"\s*[-+]?[0-9]{1,12}\s*")
# Entries of a labels map and of a taints list; lengths of a label key and value.
MAX_LABELS: Final = 128
MAX_TAINTS: Final = 64
MAX_LABEL_KEY: Final = 255
MAX_LABEL_VALUE: Final = 4096
# A labels map as Magnum stores it (json.dumps into a MySQL TEXT): 128 values of 4096
# characters alone were half a megabyte in every view of a template, cluster or
# nodegroup, and a project's 100 templates are listed whole.
MAX_LABELS_JSON: Final = 65_535
_INT_MAX: Final = 2**31 - 1
_NODE_COUNTS: Final = frozenset({"node_count", "master_count", "min_node_count", "max_node_count"})

# Request attributes of POST /v1/clusters and their kinds.
CREATE_FIELDS: Final[dict[str, str]] = {
    "name": "str",
    "cluster_template_id": "str",
    "keypair": "str",
    "node_count": "int",
    "master_count": "int",
    "docker_volume_size": "int",
    "labels": "dict",
    "merge_labels": "bool",
    "master_flavor_id": "str",
    "flavor_id": "str",
    "create_timeout": "int",
    "discovery_url": "str",
    "fixed_network": "str",
    "fixed_subnet": "str",
    "floating_ip_enabled": "bool",
    "master_lb_enabled": "bool",
}
# Magnum's default quota ([quotas] max_clusters_per_project); Settings overrides it.
MAX_CLUSTERS_PER_PROJECT: Final = 20
# What a cluster PATCH may change (upstream Magnum's list).
PATCHABLE: Final = frozenset({"node_count", "health_status", "health_status_reason"})


@dataclass(frozen=True, slots=True)
class Flavor:
    """A node size: CPUs and memory of one node container."""

    cpu: float
    memory_mb: int


# Nova's m1 flavors, scaled down (nodes are containers): the presets when none are
# given. The services resolve against the operator's Settings.cluster_flavors.
FLAVORS: Final[dict[str, Flavor]] = {
    "m1.tiny": Flavor(0.5, 512),
    "m1.small": Flavor(1.0, 1024),
    "m1.medium": Flavor(1.0, 2048),
    "m1.large": Flavor(2.0, 4096),
    "m1.xlarge": Flavor(4.0, 8192),
}
DEFAULT_FLAVOR: Final = "m1.small"


def resolve_flavor(name: str | None, presets: Mapping[str, Flavor] = FLAVORS) -> Flavor:
    """The CPU/memory preset of a flavor name (the default flavor when None)."""
    flavor = presets.get(name or DEFAULT_FLAVOR)
    if flavor is None:
        raise errors.Invalid(f"Unable to find flavor {name}. Known: {', '.join(sorted(presets))}.")
    return flavor


def check_name(name: str) -> str:
    """Magnum's cluster name rule: 1-242 chars, a letter first, then letters/digits/_.-."""
    if not 1 <= len(name) <= 242 or not _NAME.fullmatch(name):
        raise errors.Invalid(
            f"Cluster name {name} is invalid: it must start with a letter and contain only "
            "letters, digits, '_', '.' or '-' (at most 242 characters)."
        )
    return name


def _shown(value: Any) -> str:
    """A value for an error message, cut short (str() of a huge int even raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**40:
        return "(an integer of more than 40 digits)"
    try:
        text = str(value)
    except ValueError:  # a container holding an integer of more than 4300 digits
        return "(a value too large to show)"
    return text if len(text) <= 80 else text[:77] + "..."


def _no_control(name: str, text: str) -> str:
    if _CONTROL.search(text):
        raise errors.Invalid(
            f"Invalid input for field/attribute {name}: control characters (NUL, newlines, "
            "tabs, ...) are not allowed."
        )
    return text


def coerce_labels(name: str, value: Any) -> dict[str, str]:
    """A labels map: at most MAX_LABELS scalar entries, one-line keys and values, bounded."""
    if not isinstance(value, dict) or not all(
        isinstance(v, (str, int, float, bool)) for v in value.values()
    ):
        raise errors.Invalid(
            f"Invalid input for field/attribute {name}. Value: {_shown(value)}. "
            "Values must be strings, numbers or booleans."
        )
    if len(value) > MAX_LABELS:
        raise errors.Invalid(
            f"Invalid input for field/attribute {name}: {len(value)} labels given, at most "
            f"{MAX_LABELS} are allowed."
        )
    out: dict[str, str] = {}
    for key, item in value.items():
        text = _shown(item) if isinstance(item, int) else str(item)
        if len(str(key)) > MAX_LABEL_KEY or len(text) > MAX_LABEL_VALUE:
            raise errors.Invalid(
                f"Invalid input for field/attribute {name}: a key is at most {MAX_LABEL_KEY} "
                f"characters, a value at most {MAX_LABEL_VALUE}."
            )
        out[_no_control(name, str(key))] = _no_control(name, text)
    check_labels_size(name, out)
    return out


def check_labels_size(name: str, labels: Mapping[str, Any]) -> None:
    """Invalid (400) when ``labels`` take more than MAX_LABELS_JSON characters as JSON (as
    Magnum stores them): given ones, and those merged with a template's or cluster's."""
    stored = len(json.dumps(labels))
    if stored > MAX_LABELS_JSON:
        raise errors.Invalid(
            f"Invalid input for field/attribute {name}: the labels take {stored} characters "
            f"as JSON, at most {MAX_LABELS_JSON} are stored (Magnum's column): keep fewer or "
            "shorter values."
        )


def _coerce(name: str, kind: str, value: Any) -> Any:
    bad = errors.Invalid(f"Invalid input for field/attribute {name}. Value: {_shown(value)}.")
    if kind == "str":
        if isinstance(value, bool) or not isinstance(value, (str, int)) or len(_shown(value)) > 255:
            raise bad
        return _no_control(name, str(value))
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise bad
        if isinstance(value, str) and not _DIGITS.fullmatch(value):
            raise bad  # ASCII digits only: int() also takes "١٢" and "1_000"
        number = int(value) if isinstance(value, int) else int(value.strip())
        # Bounded like the integer columns they land in: past them a database refuses
        # (5xx). Node counts get the operator's far lower cap instead, in the services.
        big = abs(number) > _INT_MAX and name not in _NODE_COUNTS
        if big or (isinstance(value, str) and len(value) > 12):
            raise errors.Invalid(
                f"Invalid input for field/attribute {name}. Value: {_shown(value)}: "
                f"at most {_INT_MAX}."
            )
        return number
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1", "yes", "on", "t", "y"):
            return True
        if text in ("false", "0", "no", "off", "f", "n"):
            return False
        raise bad
    return coerce_labels(name, value)


def coerce_create(body: Mapping[str, Any]) -> dict[str, Any]:
    """Coerce a cluster-create body; unknown attributes are a 400, nulls mean "not given"."""
    unknown = sorted(set(body) - set(CREATE_FIELDS))
    if unknown:
        raise errors.Invalid(f"Unknown attribute for argument cluster: {unknown[0]}")
    return {
        name: _coerce(name, CREATE_FIELDS[name], value)
        for name, value in body.items()
        if value is not None
    }


# -- node groups (microversion 1.9+)

DEFAULT_GROUPS: Final = ("default-master", "default-worker")
# Request attributes of POST /v1/clusters/{id}/nodegroups and their kinds.
NODEGROUP_FIELDS: Final[dict[str, str]] = {
    "name": "str",
    "node_count": "int",
    "min_node_count": "int",
    "max_node_count": "int",
    "flavor_id": "str",
    "image_id": "str",
    "docker_volume_size": "int",
    "labels": "dict",
    "merge_labels": "bool",
    "role": "str",
    "project_id": "str",
    "node_labels": "dict",
    "node_taints": "list",
}
# What a nodegroup PATCH may change (Magnum: everything else is "internal").
NODEGROUP_PATCHABLE: Final = frozenset(
    {"min_node_count", "max_node_count", "node_labels", "node_taints"}
)
_TAINT_EFFECTS: Final = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def default_group_uuid(cluster_uuid: str, name: str) -> str:
    """The stable UUID of a cluster's default group (uuid5 of the cluster and group name)."""
    return str(uuid_mod.uuid5(uuid_mod.UUID(cluster_uuid), name))


def coerce_taints(value: Any) -> list[dict[str, str]]:
    """Kubernetes-style taints: a list of ``{key, value?, effect}`` (a literal string too)."""
    if isinstance(value, str):
        value = python_literal("node_taints", value) if value.strip() else []
    if not isinstance(value, list):
        raise errors.Invalid("Invalid input for field/attribute node_taints: a list is expected.")
    if len(value) > MAX_TAINTS:
        raise errors.Invalid(
            f"Invalid input for field/attribute node_taints: {len(value)} taints given, at "
            f"most {MAX_TAINTS} are allowed."
        )
    out = []
    for taint in value:
        shown = _shown(taint)
        key = taint.get("key") if isinstance(taint, dict) else None
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_LABEL_KEY:
            raise errors.Invalid(f"Invalid taint {shown}: a key of 1-255 characters is required.")
        effect = taint.get("effect")
        if not isinstance(effect, str) or effect not in _TAINT_EFFECTS:
            raise errors.Invalid(
                f"Invalid taint effect {_shown(effect)!r}: use {', '.join(_TAINT_EFFECTS)}."
            )
        unknown = sorted(str(k) for k in set(taint) - {"key", "value", "effect"})
        if unknown:
            raise errors.Invalid(f"Invalid taint {shown}: unknown {unknown[0][:40]}.")
        item = {"key": _no_control("node_taints", key), "effect": effect}
        tv = taint.get("value")
        if tv not in (None, ""):
            if not isinstance(tv, (str, int, float)) or isinstance(tv, bool) or len(str(tv)) > 255:
                raise errors.Invalid(f"Invalid taint {shown}: the value is 255 characters at most.")
            item["value"] = _no_control("node_taints", str(tv))
        out.append(item)
    return out


def coerce_nodegroup(body: Mapping[str, Any]) -> dict[str, Any]:
    """Coerce a nodegroup-create body; unknown attributes are a 400, nulls mean "not given"."""
    unknown = sorted(set(body) - set(NODEGROUP_FIELDS))
    if unknown:
        raise errors.Invalid(f"Unknown attribute for argument nodegroup: {unknown[0]}")
    out: dict[str, Any] = {}
    for name, value in body.items():
        if value is None:
            continue
        kind = NODEGROUP_FIELDS[name]
        out[name] = coerce_taints(value) if kind == "list" else _coerce(name, kind, value)
    if "name" not in out:
        raise errors.Invalid("Mandatory field missing: name")
    if not 1 <= len(out["name"]) <= 255 or not _NAME.fullmatch(out["name"]):
        raise errors.Invalid(
            f"Nodegroup name {out['name']} is invalid: it must start with a letter and contain "
            "only letters, digits, '_', '.' or '-' (it names the node containers)."
        )
    for name in ("node_count", "min_node_count", "max_node_count", "docker_volume_size"):
        if name in out and out[name] < (1 if name == "docker_volume_size" else 0):
            raise errors.Invalid(f"Invalid input for field/attribute {name}. Value: {out[name]}.")
    return out


def check_node_counts(name: str, node_count: int, low: int, high: int | None) -> None:
    """Magnum's ``_validate_node_count``: min <= node_count <= max (a 409 NodeGroupInvalidInput)."""
    problem = None
    if high is not None and high < low:
        attr, expl = (
            "max_node_count",
            (f"min_node_count ({low}) should be less or equal to max_node_count ({high})"),
        )
        problem = (attr, expl)
    elif high is not None and node_count > high:
        problem = (
            "max_node_count",
            f"node_count ({node_count}) should be less or equal to max_node_count ({high})",
        )
    elif low > node_count:
        problem = (
            "min_node_count",
            f"min_node_count ({low}) should be less or equal to node_count ({node_count})",
        )
    if problem:
        raise errors.Conflict(f"{problem[0]} for {name} is invalid ({problem[1]}).")


def check_resize_bounds(name: str, node_count: int, low: int, high: int | None) -> None:
    """Magnum's NGResizeOutBounds (400): a resize must stay within the group's bounds."""
    if node_count < low or (high is not None and node_count > high):
        raise errors.Invalid(
            f"Resizing {name} outside the allowed range: min_node_count = {low}, "
            f"max_node_count = {high}"
        )
