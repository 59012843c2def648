"""Request bodies of the container API, per microversion, as Pydantic models."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from berth import errors
from berth.api.bounds import INT32_MAX, MAX_EPOCH_SECONDS, check_text
from berth.api.zun.microversions import APIVersion
from berth.config import Settings
from berth.domain import shellwords
from berth.domain.text import CONTROL, one_line, prose

__all__ = [
    "FIELD_MIN_VERSION",
    "MAX_COUNTS",
    "MAX_SECONDS",
    "ContainerCreate",
    "ContainerPatch",
    "check_counts",
    "check_limits",
    "command_list",
    "int_in",
    "kill_signal",
    "logs_since",
    "logs_tail",
    "number_in",
    "parse_model",
]

M = TypeVar("M", bound=BaseModel)

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9-._]*$")
IMAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]")
# Seconds a healthcheck interval, timeout or a stop timeout may last: a day.
MAX_SECONDS = 86_400
# How many entries each list or map of a container may hold. The body's byte limit
# alone lets 1 MiB carry 50,000 labels, each a row in the views, the engine call
# and every agent's desired state; real containers use a handful.
MAX_COUNTS: dict[str, int] = {
    "labels": 128,
    "environment": 512,
    "command": 1024,
    "entrypoint": 64,
    "mounts": 64,
    "nets": 16,
    "security_groups": 32,
    "hints": 32,
    "exposed_ports": 256,
}


# Labels Berth writes on engine objects itself (berth.uuid, berth.project, berth.owner,
# berth.rebuild, berth.cluster, berth.capsule, ...): agents and the cluster engine
# act on them, so a user's container may not carry one of its own.
RESERVED_LABEL_PREFIX = "berth."

# A name, path or reference: one line, no control characters at all.
Plain = Annotated[str, AfterValidator(one_line)]
# A value a program reads (an argument, an environment value): tabs and newlines are
# legitimate there (a script passed to ``sh -c``), NUL and the rest of C0 are not.
Text = Annotated[str, AfterValidator(prose)]

# The microversion each create field appeared in (absent = 1.1).
FIELD_MIN_VERSION: dict[str, APIVersion] = {
    "nets": APIVersion(1, 2),
    "auto_remove": APIVersion(1, 3),
    "runtime": APIVersion(1, 5),
    "hostname": APIVersion(1, 9),
    "mounts": APIVersion(1, 11),
    "privileged": APIVersion(1, 21),
    "healthcheck": APIVersion(1, 22),
    "exposed_ports": APIVersion(1, 24),
    "registry": APIVersion(1, 31),
    "tty": APIVersion(1, 36),
    "host": APIVersion(1, 39),
    "entrypoint": APIVersion(1, 40),
}


def _name(value: str | None) -> str | None:
    if value is not None and (not 2 <= len(value) <= 255 or not NAME_RE.fullmatch(value)):
        raise ValueError(
            "must be 2-255 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


class RestartPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    Name: Literal["no", "always", "on-failure", "unless-stopped"]
    MaximumRetryCount: int | str = 0

    @field_validator("MaximumRetryCount")
    @classmethod
    def _count(cls, v: int | str) -> int | str:
        bad = f"must be an integer from 0 to {INT32_MAX}"
        if isinstance(v, str) and not (v.isascii() and v.isdigit()):
            raise ValueError(bad)
        if not 0 <= int(v) <= INT32_MAX:
            raise ValueError(bad)
        return v


class Healthcheck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cmd: Text | None = None
    interval: int | None = Field(default=None, ge=0, le=MAX_SECONDS)
    retries: int | None = Field(default=None, ge=0, le=INT32_MAX)
    timeout: int | None = Field(default=None, ge=0, le=MAX_SECONDS)


class ContainerCreate(BaseModel):
    """POST /v1/containers (unknown fields are refused, as Zun's schema does)."""

    model_config = ConfigDict(extra="forbid")

    image: Plain = Field(min_length=2, max_length=255)
    name: str | None = None
    command: list[Text] | Text | None = None
    entrypoint: list[Text] | None = None
    cpu: float | str | None = None
    cpu_policy: Literal["dedicated", "shared"] | None = None
    memory: int | str | None = None
    disk: int | str | None = None
    workdir: Plain | None = Field(default=None, max_length=4096)
    labels: dict[Plain, Text] | None = None
    environment: dict[Plain, Text] | None = None
    restart_policy: RestartPolicy | None = None
    interactive: bool | None = None
    tty: bool | None = None
    image_driver: Plain | None = None
    image_pull_policy: Plain | None = None
    security_groups: list[Plain] | None = None
    hints: dict[str, Any] | None = None
    nets: list[dict[str, Any]] | None = None
    mounts: list[dict[str, Any]] | None = None
    runtime: Plain | None = None
    hostname: str | None = Field(default=None, min_length=1, max_length=63)
    auto_remove: bool | None = None
    auto_heal: bool | None = None
    availability_zone: str | None = Field(default=None, min_length=1, max_length=255)
    privileged: bool | None = None
    healthcheck: Healthcheck | None = None
    exposed_ports: dict[str, Any] | None = None
    registry: Plain | None = None
    host: str | None = Field(default=None, min_length=1, max_length=255)

    _n = field_validator("name")(lambda cls, v: _name(v))  # type: ignore[misc]

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not IMAGE_RE.search(v) or any(c.isspace() for c in v):
            raise ValueError("is not a valid image reference")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        reserved = sorted(k for k in v or {} if k.lower().startswith(RESERVED_LABEL_PREFIX))
        if reserved:
            raise ValueError(
                f"label {reserved[0]!r} is in the {RESERVED_LABEL_PREFIX}* namespace, which "
                "Berth keeps for its own labels: choose another name"
            )
        return v

    @field_validator("hostname", "host")
    @classmethod
    def _hostname(cls, v: str | None) -> str | None:
        if v is not None and not HOSTNAME_RE.fullmatch(v):
            raise ValueError("may only hold letters, digits, '-', '.' and '_'")
        return v

    @field_validator("image_pull_policy")
    @classmethod
    def _pull(cls, v: str | None) -> str | None:
        if v is None:
            return None
        lowered = v.lower()
        if lowered not in ("never", "always", "ifnotpresent"):
            raise ValueError("must be one of never, always, ifnotpresent")
        return lowered


class ContainerPatch(BaseModel):
    """PATCH /v1/containers/{id}: the fields that may change on a live container."""

    model_config = ConfigDict(extra="forbid")
    cpu: float | str | None = None
    memory: int | str | None = None
    name: str | None = None
    auto_heal: bool | None = None

    _n = field_validator("name")(lambda cls, v: _name(v))  # type: ignore[misc]


def parse_model(model: type[M], data: dict[str, Any]) -> M:
    """Validate ``data`` into ``model``; a clear 400 naming the bad field otherwise."""
    check_text(data)  # anywhere, also inside the free-form hints, nets and mounts
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            raise errors.Invalid(
                f"Additional properties are not allowed ('{loc}' was unexpected)."
            ) from None
        raise errors.Invalid(f"Invalid input for field '{loc}': {first['msg']}.") from None


def number_in(value: float | str | None, name: str, low: float, high: float) -> float | None:
    """A float from a number or numeric string, within [low, high]."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise errors.Invalid(
            f"Invalid input for field '{name}': {value!r} is not a number."
        ) from None
    if not low <= number <= high:
        raise errors.Invalid(
            f"Invalid input for field '{name}': {value} is out of range [{low:g}, {high:g}]."
        )
    return number


def int_in(value: int | str | None, name: str, low: int, high: int) -> int | None:
    """An integer from a number or digit string, within [low, high]."""
    if value is None:
        return None
    text = str(value).strip()
    if not re.fullmatch(r"-?[0-9]+", text):  # ASCII: int() takes other digits too
        raise errors.Invalid(f"Invalid input for field '{name}': {value!r} is not an integer.")
    # Past 30 digits it is out of any range, and int() of thousands of digits fails.
    number = int(text) if len(text) <= 30 else high + 1
    if not low <= number <= high:
        raise errors.Invalid(
            f"Invalid input for field '{name}': {value} is out of range [{low}, {high}]."
        )
    return number


def kill_signal(value: Any) -> str | None:
    """``signal`` of kill as text (a name like SIGTERM or a number), else a 400."""
    if value is None:
        return None
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or len(text) > 32 or not text.isascii() or CONTROL.search(text):
        raise errors.Invalid(
            f"Invalid input for field 'signal': {str(value)[:40]!r} is not a signal: "
            "give a name such as SIGTERM or a number from 1 to 64."
        )
    return text


def command_list(value: list[str] | str | None, version: APIVersion) -> list[str]:
    """Zun ``command``: a string (shell-split) below 1.20, a list from 1.20 on."""
    if value is None:
        return []
    if isinstance(value, str):
        if version >= APIVersion(1, 20):
            raise errors.Invalid("Invalid input for field 'command': must be a list from 1.20.")
        try:
            return shellwords.split(value)
        except ValueError as exc:
            raise errors.Invalid(f"Invalid input for field 'command': {exc}.") from None
    return list(value)


def check_counts(body: BaseModel) -> None:
    """Raise Invalid when a list or map of ``body`` holds more entries than MAX_COUNTS allows."""
    for name, limit in MAX_COUNTS.items():
        value = getattr(body, name, None)
        if isinstance(value, list | dict) and len(value) > limit:
            raise errors.Invalid(
                f"Invalid input for field '{name}': {len(value)} entries given, at most "
                f"{limit} are allowed; send fewer."
            )


def check_limits(
    settings: Settings, body: ContainerCreate
) -> tuple[float | None, int | None, int | None]:
    """cpu, memory and disk validated against the configured bounds."""
    cpu = number_in(body.cpu, "cpu", settings.minimum_cpus, settings.maximum_cpus)
    memory = int_in(body.memory, "memory", settings.minimum_memory, settings.maximum_memory)
    disk = int_in(body.disk, "disk", settings.minimum_disk, settings.maximum_disk)
    return cpu, memory, disk


def logs_since(value: str | None) -> float | None:
    """``since`` of the logs: seconds since the epoch, up to the year 9999; else a 400."""
    if value in (None, "None", ""):
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= MAX_EPOCH_SECONDS:  # also refuses nan and inf
        raise errors.Invalid(
            f"Invalid input for field 'since': {value!r} must be a UNIX timestamp in seconds "
            f"from 0 to {MAX_EPOCH_SECONDS}."
        )
    return number


def logs_tail(value: str | None) -> str:
    """``tail`` of the logs: ``all`` or a line count up to INT32_MAX (Zun: anything else is all)."""
    if value is None or not (value.isascii() and value.isdigit()):
        return "all"
    if int(value) > INT32_MAX:
        raise errors.Invalid(
            f"Invalid input for field 'tail': {value} lines is more than {INT32_MAX}; "
            "use 'all' for every line."
        )
    return value
