"""Container statuses, which actions each status allows, and how observations map to status."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from berth import errors
from berth.domain import shellwords

__all__ = [
    "ACTION_ALLOWED",
    "Status",
    "TaskState",
    "action_allowed",
    "exec_argv",
    "status_for_observation",
]


class Status(StrEnum):
    CREATING = "Creating"
    CREATED = "Created"
    RUNNING = "Running"
    STOPPED = "Stopped"
    PAUSED = "Paused"
    RESTARTING = "Restarting"
    REBUILDING = "Rebuilding"
    DELETING = "Deleting"
    DELETED = "Deleted"
    ERROR = "Error"
    DEAD = "Dead"
    UNKNOWN = "Unknown"


class TaskState(StrEnum):
    IMAGE_PULLING = "image_pulling"
    CREATING = "container_creating"
    STARTING = "container_starting"
    DELETING = "container_deleting"
    STOPPING = "container_stopping"
    REBOOTING = "container_rebooting"
    PAUSING = "container_pausing"
    UNPAUSING = "container_unpausing"
    KILLING = "container_killing"
    REBUILDING = "container_rebuilding"


S = Status
_RUNNING_ONLY = frozenset({S.RUNNING})

# Zun's state table (spec §4.3): the statuses in which each action may start.
ACTION_ALLOWED: Final[dict[str, frozenset[Status]]] = {
    "start": frozenset({S.CREATED, S.STOPPED, S.ERROR}),
    "stop": _RUNNING_ONLY,
    "reboot": frozenset({S.CREATED, S.RUNNING, S.STOPPED, S.ERROR}),
    "rebuild": frozenset({S.CREATED, S.RUNNING, S.STOPPED, S.ERROR}),
    "pause": _RUNNING_ONLY,
    "unpause": frozenset({S.PAUSED}),
    "kill": _RUNNING_ONLY,
    "execute": _RUNNING_ONLY,
    "execute_resize": _RUNNING_ONLY,
    "attach": _RUNNING_ONLY,
    "resize": _RUNNING_ONLY,
    "top": _RUNNING_ONLY,
    "stats": _RUNNING_ONLY,
    "logs": frozenset({S.CREATED, S.ERROR, S.PAUSED, S.RUNNING, S.STOPPED, S.UNKNOWN}),
    "get_archive": frozenset({S.CREATED, S.PAUSED, S.RUNNING, S.STOPPED}),
    "put_archive": frozenset({S.CREATED, S.PAUSED, S.RUNNING, S.STOPPED}),
    "commit": frozenset({S.RUNNING, S.STOPPED, S.PAUSED}),
    "update": frozenset({S.CREATED, S.RUNNING, S.STOPPED, S.PAUSED}),
    "resize_container": frozenset({S.CREATED, S.RUNNING, S.STOPPED, S.PAUSED}),
    "add_security_group": frozenset({S.CREATED, S.RUNNING, S.STOPPED, S.PAUSED}),
    "remove_security_group": frozenset({S.CREATED, S.RUNNING, S.STOPPED, S.PAUSED}),
    "delete": frozenset({S.CREATED, S.ERROR, S.STOPPED, S.DELETED, S.DEAD}),
    "delete_force": frozenset(
        {
            S.CREATED,
            S.CREATING,
            S.ERROR,
            S.RUNNING,
            S.STOPPED,
            S.UNKNOWN,
            S.DELETED,
            S.DEAD,
            S.RESTARTING,
            S.REBUILDING,
            S.DELETING,
        }
    ),
    "delete_stop": frozenset({S.RUNNING, S.CREATED, S.ERROR, S.STOPPED, S.DELETED, S.DEAD}),
}


def action_allowed(action: str, status: str) -> bool:
    """True when Zun's state table lets ``action`` start in ``status``."""
    allowed = ACTION_ALLOWED.get(action)
    return allowed is None or status in allowed


_OBSERVED_TO_STATUS: Final[dict[str, Status]] = {
    "created": S.CREATED,
    "running": S.RUNNING,
    "stopped": S.STOPPED,
    "paused": S.PAUSED,
    "restarting": S.RESTARTING,
    "dead": S.DEAD,
    "removing": S.DELETING,
    "absent": S.UNKNOWN,
}


def status_for_observation(observed: str, desired: str, error: str | None) -> Status:
    """The Zun status for what an agent saw, given what the user wants.

    An agent error wins (``Error``); a container that exists but has not yet
    reached a state the user asked for keeps showing the transitional status
    the API set, which the caller decides; here we only translate the runtime.
    """
    if error:
        return S.ERROR
    if observed == "created" and desired == "stopped":
        return S.STOPPED
    return _OBSERVED_TO_STATUS.get(observed, S.UNKNOWN)


def exec_argv(command: str) -> list[str]:
    """Zun's ``execute`` command string as the argv an engine runs (shell-like quoting)."""
    try:
        argv = shellwords.split(command)
    except ValueError as exc:
        raise errors.Invalid(f"Cannot parse command {command!r}: {exc}") from exc
    if not argv:
        raise errors.Invalid("The command to execute is empty.")
    return argv
