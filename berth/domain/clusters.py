"""Magnum clusters as data: statuses, request fields, flavor presets and input checks (no I/O)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from berth import errors

__all__ = [
    "CREATE_FIELDS",
    "FLAVORS",
    "IN_PROGRESS",
    "MAX_CLUSTERS_PER_PROJECT",
    "PATCHABLE",
    "Flavor",
    "check_name",
    "coerce_create",
    "resolve_flavor",
]

IN_PROGRESS: Final = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS")
_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]*$")

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
# Magnum's default quota ([quotas] max_clusters_per_project).
MAX_CLUSTERS_PER_PROJECT: Final = 20
# What a cluster PATCH may change (upstream Magnum's list).
PATCHABLE: Final = frozenset({"node_count", "health_status", "health_status_reason"})


@dataclass(frozen=True, slots=True)
class Flavor:
    """A node size: CPUs and memory of one node container."""

    cpu: float
    memory_mb: int


# Defaults modelled on Nova's m1 flavors, scaled down: nodes are containers.
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
    if not 1 <= len(name) <= 242 or not _NAME.match(name):
        raise errors.Invalid(
            f"Cluster name {name} is invalid: it must start with a letter and contain only "
            "letters, digits, '_', '.' or '-' (at most 242 characters)."
        )
    return name


def _coerce(name: str, kind: str, value: Any) -> Any:
    bad = errors.Invalid(f"Invalid input for field/attribute {name}. Value: {value}.")
    if kind == "str":
        if isinstance(value, bool) or not isinstance(value, (str, int)) or len(str(value)) > 255:
            raise bad
        return str(value)
    if kind == "int":
        if isinstance(value, bool):
            raise bad
        try:
            return int(str(value))
        except ValueError:
            raise bad from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1", "yes", "on", "t", "y"):
            return True
        if text in ("false", "0", "no", "off", "f", "n"):
            return False
        raise bad
    if not isinstance(value, dict) or not all(
        isinstance(v, (str, int, float, bool)) for v in value.values()
    ):
        raise bad
    return {str(k): str(v) for k, v in value.items()}


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
