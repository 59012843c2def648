"""Magnum cluster-template fields as data: types, limits, defaults, and input coercion (no I/O)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from berth import errors
from berth.domain.clusters import coerce_labels
from berth.domain.text import CONTROL

__all__ = [
    "COES",
    "FIELDS",
    "INT_MAX",
    "NON_REMOVABLE",
    "READ_ONLY",
    "FieldSpec",
    "check_drivers",
    "coerce_field",
    "coerce_fields",
    "default_network_driver",
]

COES: Final = ("kubernetes", "swarm", "swarm-mode")
_SERVER_TYPES: Final = ("vm", "bm")
_TRUE: Final = {"true", "1", "yes", "on", "t", "y"}
_FALSE: Final = {"false", "0", "no", "off", "f", "n"}
_NON_EMPTY: Final = frozenset({"name", "image_id", "keypair_id", "cluster_distro"})
_DIGITS: Final = re.compile(r"\s*[-+]?[0-9]{1,12}\s*")
# The largest value of an integer attribute without its own maximum (an INTEGER column).
INT_MAX: Final = 2**31 - 1

# Per COE: (network drivers Magnum supports, those allowed by its default config,
# volume drivers). Kubernetes from Magnum 23 (magnum/api/validation.py K8sValidator and
# kubernetes_allowed_network_drivers = flannel, calico); swarm from Magnum 16's
# SwarmValidator (removed with the swarm drivers upstream). swarm-mode narrows it to
# docker: Berth's only swarm-mode driver builds Docker overlay networks, so a flannel
# template would silently get something else (docs/compatibility.md).
_DRIVERS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]] = {
    "kubernetes": (("flannel", "calico", "cilium"), ("flannel", "calico"), ("cinder",)),
    "swarm": (("docker", "flannel"), ("docker", "flannel"), ("rexray",)),
    "swarm-mode": (("docker",), ("docker",), ("rexray",)),
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One attribute: its kind (str/int/bool/dict/enum), limits and the default shown."""

    kind: str
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()


FIELDS: Final[dict[str, FieldSpec]] = {
    "name": FieldSpec("str"),
    "coe": FieldSpec("enum", choices=COES),
    "image_id": FieldSpec("str"),
    "flavor_id": FieldSpec("str"),
    "master_flavor_id": FieldSpec("str"),
    "keypair_id": FieldSpec("str"),
    "external_network_id": FieldSpec("str"),
    "fixed_network": FieldSpec("str"),
    "fixed_subnet": FieldSpec("str"),
    "dns_nameserver": FieldSpec("str"),
    "network_driver": FieldSpec("str"),
    "volume_driver": FieldSpec("str"),
    "docker_volume_size": FieldSpec("int", minimum=1, maximum=INT_MAX),
    "docker_storage_driver": FieldSpec("str"),
    "apiserver_port": FieldSpec("int", minimum=1024, maximum=65535),
    "http_proxy": FieldSpec("str"),
    "https_proxy": FieldSpec("str"),
    "no_proxy": FieldSpec("str"),
    "registry_enabled": FieldSpec("bool", default=False),
    "insecure_registry": FieldSpec("str"),
    "labels": FieldSpec("dict", default={}),
    "tls_disabled": FieldSpec("bool", default=False),
    "public": FieldSpec("bool", default=False),
    "hidden": FieldSpec("bool", default=False),
    "server_type": FieldSpec("enum", default="vm", choices=_SERVER_TYPES),
    "master_lb_enabled": FieldSpec("bool", default=False),
    "floating_ip_enabled": FieldSpec("bool", default=True),
    "tags": FieldSpec("str"),
    "driver": FieldSpec("str"),
    "cluster_distro": FieldSpec("str"),
}
READ_ONLY: Final = frozenset({"cluster_distro"})
NON_REMOVABLE: Final = frozenset(
    {
        "coe",
        "image_id",
        "network_driver",
        "external_network_id",
        "tls_disabled",
        "public",
        "server_type",
        "registry_enabled",
        "cluster_distro",
        "hidden",
    }
)


def _bad(name: str, value: Any, why: str) -> errors.Invalid:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**40:
        shown = "(an integer of more than 40 digits)"
    else:
        text = str(value) if not isinstance(value, dict | list) else type(value).__name__
        shown = text if len(text) <= 80 else text[:77] + "..."
    return errors.Invalid(f"Invalid input for field/attribute {name}. Value: {shown}. {why}")


def _text(name: str, spec: FieldSpec, value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise _bad(name, value, "Wrong type. Expected 'str'.")
    if isinstance(value, int) and abs(value) > 10**255:
        raise _bad(name, value, "Length must be 1-255 characters.")
    text = str(value)
    if len(text) > 255 or (name in _NON_EMPTY and not text):
        raise _bad(name, value, "Length must be 1-255 characters.")
    if CONTROL.search(text):
        raise _bad(name, "...", "Control characters (NUL, newlines, tabs, ...) are not allowed.")
    if spec.choices and text not in spec.choices:
        raise _bad(name, value, f"Value should be one of: {', '.join(spec.choices)}.")
    return text


def _bool(name: str, spec: FieldSpec, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in _TRUE:
        return True
    if str(value).lower() in _FALSE:
        return False
    raise _bad(name, value, "Wrong type. Expected a boolean.")


def _int(name: str, spec: FieldSpec, value: Any) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):  # ASCII, not "١٢" or "1_0"
        number = int(value)
    if number is None:
        raise _bad(name, value, "Wrong type. Expected 'int'.")
    if spec.minimum is not None and number < spec.minimum:
        raise _bad(name, value, f"It must be at least {spec.minimum}.")
    if spec.maximum is not None and number > spec.maximum:
        raise _bad(name, value, f"It must be at most {spec.maximum}.")
    return number


def _dict(name: str, spec: FieldSpec, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _bad(name, value, "Wrong type. Expected a dict.")
    return coerce_labels(name, value)


# How each FieldSpec.kind coerces a value that is not None.
_COERCE: Final[dict[str, Callable[[str, FieldSpec, Any], Any]]] = {
    "str": _text,
    "enum": _text,
    "bool": _bool,
    "int": _int,
    "dict": _dict,
}


def coerce_field(name: str, value: Any) -> Any:
    """The stored value of ``name`` given ``value`` from a request; None stays None."""
    spec = FIELDS[name]
    if value is None:
        return None if spec.kind != "dict" else {}
    return _COERCE[spec.kind](name, spec, value)


def coerce_fields(body: Mapping[str, Any], *, allowed: frozenset[str]) -> dict[str, Any]:
    """Coerce every attribute of a request body; unknown or read-only ones are a 400."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise errors.Invalid(f"Unknown attribute for argument cluster_template: {unknown[0]}")
    forbidden = sorted(set(body) - allowed)
    if forbidden:
        raise errors.Invalid(f"Cannot set read only field {forbidden[0]}")
    return {name: coerce_field(name, value) for name, value in body.items()}


def check_drivers(coe: str, network_driver: str | None, volume_driver: str | None) -> None:
    """Invalid unless the COE supports (and allows) both drivers; None means unspecified.

    Magnum's words (``Validator.validate_network_driver`` / ``validate_volume_driver``).
    """
    supported, allowed, volumes = _DRIVERS[coe]
    if network_driver is not None and network_driver not in supported:
        raise errors.Invalid(
            f"Network driver type {network_driver} is not supported, expecting a "
            f"{'/'.join((*supported, 'unspecified'))} network driver."
        )
    if network_driver is not None and network_driver not in allowed:
        raise errors.Invalid(
            f"Network driver type {network_driver} is not allowed, expecting a "
            f"{'/'.join((*allowed, 'unspecified'))} network driver. "
        )
    if volume_driver is not None and volume_driver not in volumes:
        raise errors.Invalid(
            f"Volume driver type {volume_driver} is not supported, expecting a "
            f"{'/'.join((*volumes, 'unspecified'))} volume driver."
        )


def default_network_driver(coe: str) -> str:
    """Magnum's default network driver per COE (flannel for Kubernetes, docker otherwise)."""
    return "flannel" if coe == "kubernetes" else "docker"
