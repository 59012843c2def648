"""Hanging up an exec session the engine leaves running.

Docker keeps an exec's process alive when its client disconnects: the TTY
never hangs up (``docker exec -it`` leaks the same way). When a Berth session
ends, the agent does what a terminal's hangup would: SIGHUP to every process of
the exec's session (the shell and its jobs), then SIGKILL to what is left.

The engine reports host PIDs. A process is signalled only when
``/proc/<pid>/cgroup`` names the container, so a reused PID is never hit;
without the host's ``/proc`` (an engine on another machine) nothing is
signalled and the process ends with its container.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

__all__ = ["session_members", "signal_session"]

_PROC = Path("/proc")


def _session_of(stat: str) -> int | None:
    """The session id in a ``/proc/<pid>/stat`` line (the comm may hold spaces and parens)."""
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[3])
    except (IndexError, ValueError):
        return None


def _in_container(pid: int, container_id: str, proc: Path) -> bool:
    try:
        return container_id in (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return False


def session_members(leader: int, container_id: str, proc: Path = _PROC) -> list[int]:
    """The PIDs of ``leader``'s session inside ``container_id``, the leader first."""
    if leader <= 0 or not container_id or not _in_container(leader, container_id, proc):
        return []
    members = [leader]
    with contextlib.suppress(OSError):
        for entry in proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == leader:
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if _session_of(stat) == leader and _in_container(int(entry.name), container_id, proc):
                members.append(int(entry.name))
    return members


def signal_session(leader: int, container_id: str, sig: signal.Signals, proc: Path = _PROC) -> int:
    """Send ``sig`` to the session's processes; how many were signalled."""
    sent = 0
    for pid in session_members(leader, container_id, proc):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            sent += 1
    return sent
