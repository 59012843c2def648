"""Typed settings of a cluster and of a node group, stored as JSON in their rows' ``attrs``.

Rows are read with ``from_json`` and written back with ``to_json``: the only code that
knows the JSON keys. Loading is lossless: keys Berth does not know (written by another
version) and values of an unexpected type are kept aside and written back unchanged,
and a field is written only when the row had it or it was set, so a round trip gives
back the same JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Self

__all__ = [
    "DEFAULT_CREATE_TIMEOUT",
    "DEFAULT_MASTER_COUNT",
    "DEFAULT_NODE_COUNT",
    "UPDATE_HINTS",
    "ClusterSettings",
    "Job",
    "NodeGroupSettings",
]

# Minutes an operation may run (Magnum's default); 0 means no deadline.
DEFAULT_CREATE_TIMEOUT: Final = 60
# Nodes of a cluster when a request does not say (Magnum's defaults).
DEFAULT_MASTER_COUNT: Final = 1
DEFAULT_NODE_COUNT: Final = 1
# The per-operation hints a cluster update gives its driver; each update replaces them.
UPDATE_HINTS: Final = ("nodes_to_remove", "upgrade")


def _is_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _is_int(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _is_bool(value: object) -> bool:
    return value is None or isinstance(value, bool)


def _is_dict(value: object) -> bool:
    return isinstance(value, dict)


def _is_list(value: object) -> bool:
    return isinstance(value, list)


def _is_hint(value: object) -> bool:
    return value is None or isinstance(value, dict)


@dataclass(frozen=True, slots=True)
class Job:
    """The running operation of a cluster: its status and how often it was started."""

    status: str
    attempts: int

    @classmethod
    def from_json(cls, value: object) -> Job | None:
        """The job of a stored ``{"status", "attempts"}``; None when there is none or junk."""
        if not isinstance(value, dict) or not isinstance(value.get("status"), str):
            return None
        attempts = value.get("attempts")
        ok = isinstance(attempts, int) and not isinstance(attempts, bool)
        return cls(value["status"], attempts if ok else 0)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {"status": self.status, "attempts": self.attempts}


def _job_exact(value: object) -> Job | None:
    """The job only when the stored form is exactly its ``to_json`` (else kept verbatim)."""
    job = Job.from_json(value)
    return job if job is not None and job.to_json() == value else None


class _Stored:
    """Lossless JSON mapping shared by the settings dataclasses (see the module doc)."""

    __slots__ = ()
    _CHECKS: Mapping[str, Callable[[object], bool]] = {}

    extra: Mapping[str, Any]
    present: frozenset[str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Self:
        """The settings of a stored row; anything unknown or mistyped is kept in ``extra``."""
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in (data or {}).items():
            check = cls._CHECKS.get(key)
            if check is not None and check(value):
                known[key] = value
            else:
                extra[key] = value
        return cls(**cls._load(known), extra=extra, present=frozenset(known))  # type: ignore[call-arg]

    @classmethod
    def _load(cls, known: dict[str, Any]) -> dict[str, Any]:
        return known

    def _dump(self, name: str) -> Any:
        return getattr(self, name)

    def to_json(self) -> dict[str, Any]:
        """The stored form: the kept unknown keys, then every field the row had or was set."""
        out = dict(self.extra)
        for name in self._CHECKS:
            if name in self.present:
                out[name] = self._dump(name)
        return out

    def with_(self, **changes: Any) -> Self:
        """A copy with fields set (each is then stored, even when None)."""
        extra = {k: v for k, v in self.extra.items() if k not in changes}
        present = self.present | frozenset(changes)
        return dataclasses.replace(self, **changes, extra=extra, present=present)  # type: ignore[type-var]

    def without(self, *names: str) -> Self:
        """A copy with fields back at their defaults and no longer stored."""
        defaults = {
            f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING
                     else f.default)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.name in names
        }  # fmt: skip
        extra = {k: v for k, v in self.extra.items() if k not in names}
        present = self.present - frozenset(names)
        return dataclasses.replace(self, **defaults, extra=extra, present=present)  # type: ignore[type-var]

    def stored(self, name: str) -> Any:
        """The stored value of a key, as an API body shows it (None when never stored)."""
        return self.to_json().get(name)


@dataclass(frozen=True, slots=True)
class ClusterSettings(_Stored):
    """A cluster's Magnum fields not in columns, what its last operation found, and its job.

    A count or timeout is None when the row never had it: ``masters``, ``nodes`` and
    ``timeout`` give the defaults.
    """

    keypair: str | None = None
    node_count: int | None = None
    master_count: int | None = None
    docker_volume_size: int | None = None
    labels: Mapping[str, Any] = field(default_factory=dict)
    template_labels: Mapping[str, Any] = field(default_factory=dict)
    master_flavor_id: str | None = None
    flavor_id: str | None = None
    create_timeout: int | None = None
    discovery_url: str | None = None
    fixed_network: str | None = None
    fixed_subnet: str | None = None
    floating_ip_enabled: bool | None = None
    master_lb_enabled: bool | None = None
    # Health as the last poll (or a PATCH) set it.
    health_status: str | None = None
    health_status_reason: Mapping[str, Any] = field(default_factory=dict)
    # What the last successful operation found.
    api_address: str | None = None
    master_addresses: list[str] = field(default_factory=list)
    node_addresses: list[str] = field(default_factory=list)
    coe_version: str | None = None
    container_version: str | None = None
    # Hints of the pending update for the driver (each update replaces them).
    nodes_to_remove: Mapping[str, Any] | None = None
    upgrade: Mapping[str, Any] | None = None
    # The running operation (counted at each start, cleared at its end).
    job: Job | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    present: frozenset[str] = frozenset()

    _CHECKS = {  # unannotated: a class constant, not a dataclass field
        "keypair": _is_str,
        "node_count": _is_int,
        "master_count": _is_int,
        "docker_volume_size": _is_int,
        "labels": _is_dict,
        "template_labels": _is_dict,
        "master_flavor_id": _is_str,
        "flavor_id": _is_str,
        "create_timeout": _is_int,
        "discovery_url": _is_str,
        "fixed_network": _is_str,
        "fixed_subnet": _is_str,
        "floating_ip_enabled": _is_bool,
        "master_lb_enabled": _is_bool,
        "health_status": _is_str,
        "health_status_reason": _is_dict,
        "api_address": _is_str,
        "master_addresses": _is_list,
        "node_addresses": _is_list,
        "coe_version": _is_str,
        "container_version": _is_str,
        "nodes_to_remove": _is_hint,
        "upgrade": _is_hint,
        "job": lambda v: _job_exact(v) is not None,
    }

    @classmethod
    def _load(cls, known: dict[str, Any]) -> dict[str, Any]:
        if "job" in known:
            known["job"] = Job.from_json(known["job"])
        return known

    def _dump(self, name: str) -> Any:
        value = getattr(self, name)
        return value.to_json() if isinstance(value, Job) else value

    @property
    def masters(self) -> int:
        """The master count (the default when the row has none)."""
        return DEFAULT_MASTER_COUNT if self.master_count is None else self.master_count

    @property
    def nodes(self) -> int:
        """The worker count (the default when the row has none)."""
        return DEFAULT_NODE_COUNT if self.node_count is None else self.node_count

    @property
    def timeout(self) -> int:
        """Minutes an operation may run (the default when the row has none); 0: no limit."""
        return DEFAULT_CREATE_TIMEOUT if self.create_timeout is None else self.create_timeout


@dataclass(frozen=True, slots=True)
class NodeGroupSettings(_Stored):
    """A node group's fields not in columns: Kubernetes node labels and taints."""

    merge_labels: bool = False
    node_labels: Mapping[str, Any] = field(default_factory=dict)
    node_taints: list[dict[str, Any]] = field(default_factory=list)
    extra: Mapping[str, Any] = field(default_factory=dict)
    present: frozenset[str] = frozenset()

    _CHECKS = {  # unannotated: a class constant, not a dataclass field
        "merge_labels": lambda v: isinstance(v, bool),
        "node_labels": _is_dict,
        "node_taints": _is_list,
    }
