"""``berth host …``: list hosts and evacuate a dead one (admin)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from berth.cli.containers import client_from, reported

__all__ = ["app"]

app = typer.Typer(help="Hosts of the pool (admin).", no_args_is_help=True)

Host = Annotated[str, typer.Argument(help="Host name or UUID.")]


@app.command("ls")
def list_hosts(ctx: typer.Context) -> None:
    """List hosts with their capacity and use."""
    with reported(), client_from(ctx) as client:
        hosts = client.call("GET", "/hosts", what="hosts")["hosts"]
    table = Table("Host", "CPUs used", "Memory used (MiB)", "Containers")
    for h in hosts:
        table.add_row(
            h["hostname"],
            f"{h['cpu_used']:g}/{h['cpus']}",
            f"{h['mem_used']}/{h['mem_total']}",
            str(h["total_containers"]),
            str(h.get("availability_zone") or "-"),
        )
    Console().print(table)


@app.command()
def evacuate(ctx: typer.Context, host: Host) -> None:
    """Move a dead host's auto_heal containers to other hosts (force its service down first)."""
    with reported(), client_from(ctx) as client:
        report = client.call("POST", f"/hosts/{host}/evacuate", what=f"host {host}")
    console = Console()
    for uuid, target in report["moved"].items():
        console.print(f"[green]moved[/green] {uuid} -> {target}")
    for uuid, reason in report["failed"].items():
        console.print(f"[red]could not place[/red] {uuid}: {reason}")
    if report["left"]:
        console.print(f"{len(report['left'])} container(s) without auto_heal stay on {host}.")
    if report["failed"]:
        raise typer.Exit(1)
