"""How the CLI shows things: Rich tables for lists and details, and the live wait display."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = [
    "STATUS_STYLE",
    "container_table",
    "detail_table",
    "styled_status",
    "wait_for_status",
]

STATUS_STYLE = {
    "Running": "green",
    "Created": "cyan",
    "Stopped": "yellow",
    "Paused": "yellow",
    "Creating": "magenta",
    "Restarting": "magenta",
    "Deleting": "magenta",
    "Error": "bold red",
    "Dead": "red",
    "Unknown": "red",
}


def styled_status(status: str) -> str:
    style = STATUS_STYLE.get(status, "white")
    return f"[{style}]{status}[/{style}]"


def container_table(containers: Iterable[dict[str, Any]], *, with_project: bool) -> Table:
    """The ``ls`` table: one row per container."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "UUID", "STATUS", "IMAGE", "CPU", "MEMORY", "HOST"):
        table.add_column(column)
    if with_project:
        table.add_column("PROJECT")
    for c in containers:
        row = [
            c.get("name") or "",
            str(c.get("uuid", ""))[:8],
            styled_status(str(c.get("status", ""))),
            c.get("image") or "",
            f"{c.get('cpu', 0):g}",
            f"{c['memory']} MiB" if c.get("memory") else "—",
            c.get("host") or "—",
        ]
        if with_project:
            row.append(str(c.get("project_id", ""))[:8])
        table.add_row(*row)
    return table


_SHOWN = (
    "name",
    "uuid",
    "status",
    "status_reason",
    "task_state",
    "image",
    "command",
    "cpu",
    "memory",
    "environment",
    "restart_policy",
    "healthcheck",
    "ports",
    "addresses",
    "host",
    "project_id",
    "created_at",
    "updated_at",
)


def _text(key: str, value: Any) -> str:
    if value is None or value == {} or value == []:
        return "—"
    if key == "command" and isinstance(value, list):
        return shlex.join(str(v) for v in value)
    if key == "memory":
        return f"{value} MiB"
    if key == "addresses" and isinstance(value, dict):
        return ", ".join(
            f"{net} {a.get('addr')}" for net, addrs in value.items() for a in addrs or []
        )
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def detail_table(container: dict[str, Any]) -> Table:
    """The ``show`` table: one line per interesting field."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key in _SHOWN:
        if key not in container:
            continue
        value = container[key]
        shown = styled_status(str(value)) if key == "status" else _text(key, value)
        table.add_row(key, shown)
    return table


def wait_for_status(
    console: Console,
    fetch: Callable[[], dict[str, Any] | None],
    done: Callable[[dict[str, Any] | None], bool],
    *,
    label: str,
    timeout: float,
    interval: float = 0.5,
) -> tuple[dict[str, Any] | None, bool]:
    """Poll ``fetch`` under a live status line until ``done`` says so or ``timeout`` passes.

    Returns the last thing fetched and whether ``done`` was reached.
    """
    start = time.monotonic()
    seen = fetch()
    with console.status(f"{label}…") as status:
        while not done(seen):
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                return seen, False
            state = "gone" if seen is None else str(seen.get("status", "?"))
            task = seen.get("task_state") if seen else None
            status.update(
                f"{label}: {styled_status(state)}"
                + (f" [dim]({task})[/dim]" if task else "")
                + f" [dim]{elapsed:.0f} s[/dim]"
            )
            time.sleep(interval)
            seen = fetch()
    return seen, True
