"""``berth cluster …``: create (with a live progress display), ls, show, delete, config and
templates, over the Magnum-compatible HTTP API (``/container-infra/v1``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from berth.cli.client import BerthClient, CliError
from berth.cli.containers import client_from, key_value_pairs, reported

__all__ = ["app", "cluster_style", "follow_cluster"]

app = typer.Typer(help="Create and manage clusters (the Magnum API).", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="Cluster name or UUID.")]
Wait = Annotated[bool, typer.Option("--wait", "-w", help="Show progress until it settles.")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait with --wait.")]

_SHOWN = (
    "name",
    "uuid",
    "status",
    "status_reason",
    "cluster_template_id",
    "master_count",
    "node_count",
    "flavor_id",
    "master_flavor_id",
    "api_address",
    "master_addresses",
    "node_addresses",
    "health_status",
    "health_status_reason",
    "coe_version",
    "container_version",
    "labels",
    "keypair",
    "create_timeout",
    "project_id",
    "created_at",
    "updated_at",
)


def cluster_style(status: str) -> str:
    """A Magnum status in colour: green done, red failed, magenta working."""
    if status.endswith("_FAILED"):
        style = "bold red"
    elif status.endswith("_IN_PROGRESS"):
        style = "magenta"
    elif status.endswith("_COMPLETE"):
        style = "green"
    else:
        style = "yellow"
    return f"[{style}]{escape(status)}[/{style}]"


def _text(value: Any) -> str:
    if value is None or value == {} or value == []:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _get(client: BerthClient, ident: str) -> dict[str, Any]:
    found: dict[str, Any] = client.call_infra("GET", f"/clusters/{ident}", what=f"cluster {ident}")
    return found


def _maybe(client: BerthClient, ident: str) -> dict[str, Any] | None:
    try:
        return _get(client, ident)
    except CliError as exc:
        if "not found" in exc.message:
            return None
        raise


def _next_step(cluster: dict[str, Any]) -> str:
    name, status = cluster.get("name") or cluster.get("uuid"), str(cluster.get("status"))
    if status == "CREATE_FAILED":
        return (
            f"look at `berth cluster show {name}`, fix the cause, then delete it "
            f"(`berth cluster delete {name}`) and create it again."
        )
    if status == "UPDATE_FAILED":
        return (
            f"look at `berth cluster show {name}`, then send the update again (it is retried) "
            f"or delete the cluster."
        )
    return f"run `berth cluster delete {name}` again to retry, or ask an operator."


def _progress(cluster: dict[str, Any] | None, steps: list[str], label: str, elapsed: float) -> Any:
    status = "gone" if cluster is None else str(cluster.get("status", "?"))
    head = Table.grid(padding=(0, 1))
    head.add_row(
        Spinner("dots"),
        Text.from_markup(f"{escape(label)}: {cluster_style(status)} [dim]{elapsed:.0f} s[/dim]"),
    )
    lines = [Text.from_markup(f"  [dim]•[/dim] {escape(step)}") for step in steps[-8:]]
    return Group(head, *lines)


def follow_cluster(
    client: BerthClient,
    ident: str,
    *,
    label: str,
    timeout: float,
    gone_ok: bool = False,
    interval: float = 0.5,
    console: Console | None = None,
) -> dict[str, Any] | None:
    """Show the cluster's status and each new status_reason live until it settles.

    Returns the settled cluster (None once it is gone, with ``gone_ok``); a
    ``*_FAILED`` end or the timeout is a CliError that says what to do next.
    """
    console = console or Console()
    start = time.monotonic()
    steps: list[str] = []
    cluster = _maybe(client, ident)
    with Live(console=console, refresh_per_second=8, transient=True) as live:
        while True:
            if cluster is not None:
                reason = str(cluster.get("status_reason") or "")
                if reason and (not steps or steps[-1] != reason):
                    steps.append(reason)
            elapsed = time.monotonic() - start
            live.update(_progress(cluster, steps, label, elapsed))
            status = "" if cluster is None else str(cluster.get("status", ""))
            if cluster is None and gone_ok:
                break
            if cluster is None:
                raise CliError(f"cluster {ident} is gone: it was deleted meanwhile.")
            if not status.endswith("_IN_PROGRESS"):
                break
            if elapsed >= timeout:
                raise CliError(
                    f"cluster {ident} is still {status} after {timeout:g} s "
                    f"({cluster.get('status_reason')}): it goes on in the background; "
                    f"follow it with `berth cluster show {ident}`, or wait longer with --timeout."
                )
            time.sleep(interval)
            cluster = _maybe(client, ident)
    for step in steps:
        console.print(f"  [dim]•[/dim] {escape(step)}")
    if cluster is None:
        return None
    status = str(cluster.get("status"))
    if status.endswith("_FAILED"):
        raise CliError(
            f"cluster {cluster.get('name')} is {status}: {cluster.get('status_reason')} "
            f"Next: {_next_step(cluster)}"
        )
    return cluster


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The new cluster's name.")],
    template: Annotated[str, typer.Option("--template", "-t", help="Cluster template.")],
    node_count: Annotated[int | None, typer.Option("--node-count", help="Worker nodes.")] = None,
    master_count: Annotated[int | None, typer.Option("--master-count", help="Masters.")] = None,
    flavor: Annotated[str | None, typer.Option(help="Node flavor, e.g. m1.small.")] = None,
    master_flavor: Annotated[str | None, typer.Option(help="Master flavor.")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE")] = None,
    keypair: Annotated[str | None, typer.Option(help="Keypair name (stored as given).")] = None,
    create_timeout: Annotated[
        int | None, typer.Option(help="Minutes before Berth fails the create (0: never).")
    ] = None,
    wait: Wait = False,
    timeout: Timeout = 3600.0,
) -> None:
    """Create a cluster; with --wait, show its progress until CREATE_COMPLETE or CREATE_FAILED."""
    with reported(), client_from(ctx) as client:
        body: dict[str, Any] = {"name": name, "cluster_template_id": template}
        optional = {
            "node_count": node_count,
            "master_count": master_count,
            "flavor_id": flavor,
            "master_flavor_id": master_flavor,
            "keypair": keypair,
            "create_timeout": create_timeout,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if label:
            body["labels"] = key_value_pairs(label, "--label", "a=b")
        created = client.call_infra("POST", "/clusters", json=body)
        uuid = str(created["uuid"])
        console = Console()
        if not wait:
            console.print(
                f"cluster [bold]{escape(name)}[/bold] ({uuid}) is being created: "
                f"follow it with `berth cluster show {name}`."
            )
            return
        done = follow_cluster(client, uuid, label=f"creating {name}", timeout=timeout)
        assert done is not None
        where = f" at {escape(str(done['api_address']))}" if done.get("api_address") else ""
        console.print(
            f"[green]✓[/green] cluster [bold]{escape(name)}[/bold] is "
            f"{cluster_style(done['status'])}{where}"
            + f": get its configuration with `berth cluster config {name}`."
        )


@app.command("ls")
def list_clusters(ctx: typer.Context) -> None:
    """The project's clusters (every project's for admins)."""
    with reported(), client_from(ctx) as client:
        found = client.call_infra("GET", "/clusters")["clusters"]
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "UUID", "STATUS", "MASTERS", "NODES", "HEALTH"):
        table.add_column(column)
    for c in found:
        table.add_row(
            escape(str(c.get("name") or "")),
            str(c.get("uuid", ""))[:8],
            cluster_style(str(c.get("status", ""))),
            str(c.get("master_count", "—")),
            str(c.get("node_count", "—")),
            escape(str(c.get("health_status") or "—")),
        )
    console = Console()
    if not found:
        console.print("no clusters: create one with `berth cluster create NAME --template T`.")
        return
    console.print(table)


@app.command()
def show(ctx: typer.Context, name: Name) -> None:
    """One cluster: status and reason, sizes, addresses, health."""
    with reported(), client_from(ctx) as client:
        cluster = _get(client, name)
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key in _SHOWN:
        if key in cluster:
            value = cluster[key]
            shown = cluster_style(str(value)) if key == "status" else escape(_text(value))
            table.add_row(key, shown)
    Console().print(table)


@app.command()
def delete(ctx: typer.Context, name: Name, wait: Wait = False, timeout: Timeout = 1800.0) -> None:
    """Delete a cluster and its nodes; with --wait, show progress until it is gone."""
    with reported(), client_from(ctx) as client:
        cluster = _get(client, name)
        client.call_infra("DELETE", f"/clusters/{cluster['uuid']}", what=f"cluster {name}")
        console = Console()
        if not wait:
            console.print(f"cluster [bold]{escape(name)}[/bold] is being deleted.")
            return
        follow_cluster(
            client, str(cluster["uuid"]), label=f"deleting {name}", timeout=timeout, gone_ok=True
        )
        console.print(f"[green]✓[/green] cluster [bold]{escape(name)}[/bold] is deleted.")


@app.command()
def config(
    ctx: typer.Context,
    name: Name,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write the files (default: current directory).")
    ] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write ca.pem, cert.pem, key.pem and env.sh to reach the cluster, like
    `openstack coe cluster config`: a new client key, its certificate signed by the cluster CA."""
    # Imported here: the key and certificate code (cryptography) is ~75 ms of every
    # `berth` command's start otherwise.
    from berth.clusters.client_config import ENV_FILE, env_file, new_client_key

    files = ("ca.pem", "cert.pem", "key.pem", ENV_FILE)
    with reported(), client_from(ctx) as client:
        existing = [f for f in files if (directory / f).exists()]
        if existing and not force:
            raise CliError(
                f"{', '.join(existing)} already exist in {directory}: choose another --dir, "
                "or overwrite them with --force.",
                2,
            )
        cluster = _get(client, name)
        status = str(cluster.get("status"))
        if status in ("CREATE_IN_PROGRESS", "CREATE_FAILED", "DELETE_IN_PROGRESS"):
            raise CliError(
                f"cluster {name} is {status}: its configuration is ready once it is "
                f"CREATE_COMPLETE (follow it with `berth cluster show {name}`)."
            )
        key_pem, csr_pem = new_client_key(client.creds.username or "user")
        signed = client.call_infra(
            "POST", "/certificates", json={"cluster_uuid": cluster["uuid"], "csr": csr_pem}
        )
        ca = client.call_infra("GET", f"/certificates/{cluster['uuid']}", what=f"cluster {name}")
        directory.mkdir(parents=True, exist_ok=True)
        target = directory.resolve()
        content = {
            "ca.pem": str(ca["pem"]),
            "cert.pem": str(signed["pem"]),
            "key.pem": key_pem,
            ENV_FILE: env_file(cluster.get("api_address"), str(target)),
        }
        for file, text in content.items():
            path = target / file
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if file == "key.pem" else 0o644
            )
            with os.fdopen(fd, "w") as out:
                out.write(text)
            if file == "key.pem":
                path.chmod(0o600)
    Console().print(
        f"wrote {', '.join(files)} to {escape(str(target))}\n"
        f"use it with: [bold]source {escape(str(target / ENV_FILE))}[/bold]"
    )


@app.command("templates")
def list_templates(ctx: typer.Context) -> None:
    """The cluster templates the project may use."""
    with reported(), client_from(ctx) as client:
        found = client.call_infra("GET", "/clustertemplates")["clustertemplates"]
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "UUID", "COE", "IMAGE", "PUBLIC"):
        table.add_column(column)
    for t in found:
        table.add_row(
            escape(str(t.get("name") or "")),
            str(t.get("uuid", ""))[:8],
            escape(str(t.get("coe") or "")),
            escape(str(t.get("image_id") or "")),
            "yes" if t.get("public") else "no",
        )
    Console().print(table)
