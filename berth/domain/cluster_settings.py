"""Typed settings of clusters, node groups and templates, stored as JSON in rows' ``attrs``.

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
from typing import Any, ClassVar, Final, Self

from berth.domain.cluster_templates import FIELDS

__all__ = [
    "DEFAULT_CREATE_TIMEOUT",
    "DEFAULT_MASTER_COUNT",
    "DEFAULT_NODE_COUNT",
    "UPDATE_HINTS",
    "ClusterSettings",
    "Job",
    "NodeGroupSettings",
    "TemplateSettings",
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
        if not isinstance(value, dict):
            return None
        status, attempts = value.get("status"), value.get("attempts")
        if not isinstance(status, str):
            return None
        if not isinstance(attempts, int) or isinstance(attempts, bool):
            attempts = 0  # junk counts as no start
        return cls(status, attempts)

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
    __dataclass_fields__: ClassVar[dict[str, Any]]  # each subclass is a dataclass
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
        values = {**cls._load(known), "extra": extra, "present": frozenset(known)}
        return cls(**values)

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
        return dataclasses.replace(self, **changes, extra=extra, present=present)

    def without(self, *names: str) -> Self:
        """A copy with fields back at their defaults and no longer stored."""
        defaults = {
            f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING
                     else f.default)
            for f in dataclasses.fields(self)
            if f.name in names
        }  # fmt: skip
        extra = {k: v for k, v in self.extra.items() if k not in names}
        present = self.present - frozenset(names)
        return dataclasses.replace(self, **defaults, extra=extra, present=present)

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
    # The Glance images the nodes run, resolved with the caller's token at create,
    # upgrade or node group create: a template's ``image_id`` -> ``<id>:<checksum>``.
    glance_images: Mapping[str, Any] = field(default_factory=dict)
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
        "glance_images": _is_dict,
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

    def attempts(self, status: str) -> int:
        """How often the operation in ``status`` was started so far (0 for a new one)."""
        # A job not in Berth's exact form (a hand edit) still counts, as it always did.
        job = self.job or Job.from_json(self.extra.get("job"))
        return job.attempts if job is not None and job.status == status else 0

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


_TEMPLATE_CHECKS: Final[dict[str, Callable[[object], bool]]] = {
    "str": _is_str,
    "enum": _is_str,
    "int": _is_int,
    "bool": _is_bool,
    "dict": _is_dict,
}
# A template's columns, not in its JSON.
_TEMPLATE_COLUMNS: Final = ("name", "public", "hidden")


def _not_none(check: Callable[[object], bool]) -> Callable[[object], bool]:
    """A check for a field that has a default: None is then not a value of it."""
    return lambda value: value is not None and check(value)


def _default(name: str) -> Any:
    """A template attribute's default, from the one table of them (``FIELDS``)."""
    return FIELDS[name].default


@dataclass(frozen=True, slots=True)
class TemplateSettings(_Stored):
    """A cluster template's Magnum attributes besides its columns (name, public, hidden).

    Defaults come from ``berth.domain.cluster_templates.FIELDS``; only values a request
    set are stored (a removed one goes back to its default).
    """

    coe: str | None = None
    image_id: str | None = None
    flavor_id: str | None = None
    master_flavor_id: str | None = None
    keypair_id: str | None = None
    external_network_id: str | None = None
    fixed_network: str | None = None
    fixed_subnet: str | None = None
    dns_nameserver: str | None = None
    network_driver: str | None = None
    volume_driver: str | None = None
    docker_volume_size: int | None = None
    docker_storage_driver: str | None = None
    apiserver_port: int | None = None
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    registry_enabled: bool = _default("registry_enabled")
    insecure_registry: str | None = None
    labels: Mapping[str, Any] = field(default_factory=lambda: dict(_default("labels")))
    tls_disabled: bool = _default("tls_disabled")
    server_type: str = _default("server_type")
    master_lb_enabled: bool = _default("master_lb_enabled")
    floating_ip_enabled: bool = _default("floating_ip_enabled")
    tags: str | None = None
    driver: str | None = None
    cluster_distro: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    present: frozenset[str] = frozenset()

    _CHECKS = {  # unannotated: a class constant, not a dataclass field
        name: _not_none(_TEMPLATE_CHECKS[spec.kind]) if spec.default is not None
        else _TEMPLATE_CHECKS[spec.kind]
        for name, spec in FIELDS.items()
        if name not in _TEMPLATE_COLUMNS
    }  # fmt: skip
