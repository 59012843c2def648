"""The create-container form: field names, parsing and validation into a ``NewContainer``.

The form's limits are the API's (name syntax, cpu and memory bounds from
Settings), so a container the dashboard accepts is one the API would accept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from berth import errors
from berth.config import Settings
from berth.domain import shellwords
from berth.services.containers.containers import NewContainer

__all__ = ["RESTART_POLICIES", "blank_form", "container_from_form"]

RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_PORT = re.compile(r"^(\d{1,5})(?:/(tcp|udp))?$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def blank_form() -> dict[str, str]:
    """The values the empty form starts with."""
    return {
        "image": "",
        "name": "",
        "command": "",
        "cpu": "",
        "memory": "",
        "environment": "",
        "ports": "",
        "restart_policy": "no",
        "restart_retries": "",
        "hc_cmd": "",
        "hc_interval": "",
        "hc_retries": "",
        "hc_timeout": "",
        "runtime": "",
        "network": "",
        "security_groups": "",
        "volume": "",
        "volume_size": "",
        "mount_destination": "",
        "run": "on",
    }


def _number(form: dict[str, str], key: str, label: str, low: float, high: float) -> float | None:
    text = form.get(key, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise errors.Invalid(f"{label} must be a number, not {text!r}.") from None
    if not low <= value <= high:
        raise errors.Invalid(f"{label} must be between {low:g} and {high:g}; you gave {text}.")
    return value


def _integer(form: dict[str, str], key: str, label: str, low: int, high: int) -> int | None:
    value = _number(form, key, label, low, high)
    if value is not None and not value.is_integer():
        raise errors.Invalid(f"{label} must be a whole number.")
    return None if value is None else int(value)


def key_value_lines(
    text: str,
    noun: str,
    advice: str,
    key_ok: Callable[[str], bool],
    *,
    strip_values: bool = False,
) -> dict[str, str]:
    """A text area of ``KEY=VALUE`` lines (blank lines and ``#`` comments skipped).

    A bad line is a 400 that names the field (``noun``) and the line, and says
    how to write one (``advice``, e.g. "one variable per line, e.g. A=b").
    """
    pairs: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key_ok(key.strip()):
            raise errors.Invalid(
                f"{noun} line {number} ({line!r}) is not KEY=VALUE: write {advice}."
            )
        pairs[key.strip()] = value.strip() if strip_values else value
    return pairs


def _environment(text: str) -> dict[str, str]:
    return key_value_lines(
        text,
        "Environment",
        "one variable per line, e.g. GREETING=hello",
        lambda key: _ENV_KEY.match(key) is not None,
    )


def _ports(text: str) -> dict[str, Any] | None:
    ports: dict[str, Any] = {}
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        found = _PORT.match(item.lower())
        if not found or not 1 <= int(found.group(1)) <= 65535:
            raise errors.Invalid(
                f"Port {item!r} is not valid: use numbers 1-65535, optionally with /tcp or /udp, "
                "separated by commas (e.g. 80, 53/udp)."
            )
        ports[f"{int(found.group(1))}/{found.group(2) or 'tcp'}"] = {}
    return ports or None


def _restart_policy(form: dict[str, str]) -> dict[str, str] | None:
    name = form.get("restart_policy", "no") or "no"
    if name not in RESTART_POLICIES:
        raise errors.Invalid(f"Restart policy must be one of {', '.join(RESTART_POLICIES)}.")
    retries = _integer(form, "restart_retries", "Maximum retries", 0, 1000) or 0
    if name != "on-failure" and retries:
        raise errors.Invalid("Maximum retries applies to the on-failure policy only: clear it.")
    if name == "no":
        return None
    return {"Name": name, "MaximumRetryCount": str(retries)}


def _healthcheck(form: dict[str, str]) -> dict[str, Any] | None:
    cmd = form.get("hc_cmd", "").strip()
    numbers = {
        key: _integer(form, f"hc_{key}", f"Health check {key}", 0, 3600)
        for key in ("interval", "retries", "timeout")
    }
    if not cmd:
        if any(v is not None for v in numbers.values()):
            raise errors.Invalid("Give the health check a command, or clear its other fields.")
        return None
    return {"cmd": cmd, **{k: v for k, v in numbers.items() if v is not None}}


def _mounts(form: dict[str, str]) -> list[dict[str, Any]]:
    """The one volume mount of the form, as given: the volume service judges the combination."""
    source = form.get("volume", "").strip()
    size = form.get("volume_size", "").strip()
    dest = form.get("mount_destination", "").strip()
    if not (source or size or dest):
        return []
    mount: dict[str, Any] = {"destination": dest}
    if source:
        mount["source"] = source
    if size:
        mount["size"] = size
    return [mount]


def container_from_form(
    settings: Settings,
    form: dict[str, str],
    *,
    runtime_allowed: bool,
    security_groups: tuple[str, ...] = (),
) -> tuple[NewContainer, bool]:
    """The validated create request and whether to start it; ``Invalid`` names the bad field.

    ``security_groups`` are the chosen groups (a multi-select sends one value each);
    the network, groups and mount go to the container service as the API passes them.
    """
    image = form.get("image", "").strip()
    if not 2 <= len(image) <= 255 or any(c.isspace() for c in image):
        raise errors.Invalid(
            "Give an image of 2-255 characters, e.g. berth-test/busybox:latest (no spaces)."
        )
    name = form.get("name", "").strip() or None
    if name is not None and (len(name) > 255 or not _NAME.match(name)):
        raise errors.Invalid(
            "The name must be 2-255 letters, digits, '_', '.' or '-', starting with a letter or "
            "digit."
        )
    try:
        command = shellwords.split(form.get("command", ""))
    except ValueError as exc:
        raise errors.Invalid(f"The command cannot be parsed ({exc}): check its quotes.") from None
    runtime = form.get("runtime", "").strip() or None
    if runtime is not None and not runtime_allowed:
        raise errors.Invalid("Choosing a runtime is not allowed for you: clear the runtime field.")
    cpu = _number(form, "cpu", "CPU", settings.minimum_cpus, settings.maximum_cpus)
    memory = _integer(
        form, "memory", "Memory (MiB)", settings.minimum_memory, settings.maximum_memory
    )
    new = NewContainer(
        image=image,
        name=name,
        command=command,
        cpu=cpu,
        memory=memory,
        environment=_environment(form.get("environment", "")),
        exposed_ports=_ports(form.get("ports", "")),
        restart_policy=_restart_policy(form),
        healthcheck=_healthcheck(form),
        runtime=runtime,
        nets=[{"network": net}] if (net := form.get("network", "").strip()) else [],
        security_groups=[g for g in security_groups if g],
        mounts=_mounts(form),
    )
    given = {"image"} | {
        key
        for key in ("name", "cpu", "memory", "exposed_ports", "restart_policy", "healthcheck")
        if getattr(new, key) is not None
    }
    if runtime is not None:
        given.add("runtime")
    given |= {key for key in ("nets", "security_groups", "mounts") if getattr(new, key)}
    new.given = frozenset(given)
    return new, form.get("run") == "on"
