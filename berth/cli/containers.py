"""``berth container …``: run, ls, show, logs, exec, stop, start, rm over the Zun HTTP API."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from berth.cli.client import BerthClient, CliError, default_http
from berth.cli.credentials import CredentialsError, load_credentials
from berth.cli.render import container_table, detail_table, styled_status, wait_for_status

__all__ = ["app", "client_from", "fail", "reported"]

app = typer.Typer(help="Run and manage containers (the Zun API).", no_args_is_help=True)

_ARGS_AFTER_IMAGE = {"allow_interspersed_args": False}
_SETTLED = {"Running", "Error", "Stopped", "Dead"}

Wait = Annotated[bool, typer.Option("--wait", "-w", help="Wait until it settles.")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait with --wait.")]
Name = Annotated[str, typer.Argument(help="Container name or UUID.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error and give the exit to raise."""
    Console(stderr=True, soft_wrap=True).print(f"[bold red]Error:[/bold red] {escape(message)}")
    return typer.Exit(code)


def client_from(ctx: typer.Context) -> BerthClient:
    """A client for the OS_* credentials; ``ctx.obj`` may supply the httpx client (tests)."""
    try:
        creds = load_credentials()
    except CredentialsError as exc:
        raise CliError(str(exc)) from exc
    factory = ctx.obj if callable(ctx.obj) else None
    if factory is not None:
        return BerthClient(creds, factory(), owns_http=False)
    return BerthClient(creds, default_http())


@contextlib.contextmanager
def reported() -> Iterator[None]:
    try:
        yield
    except CliError as exc:
        raise fail(exc.message, exc.exit_code) from exc


def _show(client: BerthClient, ident: str) -> dict[str, Any]:
    found: dict[str, Any] = client.call("GET", f"/containers/{ident}", what=f"container {ident}")
    return found


def _maybe(client: BerthClient, ident: str) -> dict[str, Any] | None:
    try:
        return _show(client, ident)
    except CliError as exc:
        if "not found" in exc.message:
            return None
        raise


def _wait(
    client: BerthClient, ident: str, label: str, want: set[str] | None, timeout: float
) -> dict[str, Any] | None:
    """Wait until the container's status is in ``want`` (None: until it is gone)."""
    console = Console()

    def settled(c: dict[str, Any] | None) -> bool:
        if want is None:
            return c is None
        return c is not None and not c.get("task_state") and c.get("status") in want

    last, ok = wait_for_status(
        console, lambda: _maybe(client, ident), settled, label=label, timeout=timeout
    )
    if not ok:
        state = last.get("status") if last else "gone"
        raise CliError(
            f"{ident} is still {state} after {timeout:g} s: look at `berth container show "
            f"{ident}` and its actions, or wait longer with --timeout."
        )
    return last


def key_value_pairs(values: list[str], option: str, example: str) -> dict[str, str]:
    """``KEY=VALUE`` options (``--env``, ``--label``) as a dict; a usage error names
    the ``option`` and shows ``example``."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{option} {item!r} is not KEY=VALUE: write e.g. {option} {example}.", 2)
        pairs[key] = value
    return pairs


def _ports(values: list[str]) -> dict[str, Any]:
    ports: dict[str, Any] = {}
    for item in values:
        port, _, proto = item.partition("/")
        if not port.isdigit() or not 1 <= int(port) <= 65535 or proto not in ("", "tcp", "udp"):
            raise CliError(f"--expose-port {item!r} is not PORT[/tcp|/udp], e.g. 80/tcp.", 2)
        ports[f"{int(port)}/{proto or 'tcp'}"] = {}
    return ports


@app.command(context_settings=_ARGS_AFTER_IMAGE)
def run(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="Image, e.g. berth-test/busybox:latest.")],
    command: Annotated[list[str] | None, typer.Argument(help="Command and its arguments.")] = None,
    name: Annotated[str | None, typer.Option("--name", "-n")] = None,
    cpu: Annotated[float | None, typer.Option(help="CPUs, e.g. 0.5.")] = None,
    memory: Annotated[int | None, typer.Option("--memory", "-m", help="MiB.")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE")] = None,
    expose_port: Annotated[list[str] | None, typer.Option("--expose-port", "-p")] = None,
    restart: Annotated[
        str | None, typer.Option(help="no, always, unless-stopped or on-failure[:N].")
    ] = None,
    wait: Wait = False,
    timeout: Timeout = 300.0,
) -> None:
    """Create and start a container; with --wait, show its progress until Running or Error."""
    with reported(), client_from(ctx) as client:
        body: dict[str, Any] = {"image": image, "command": list(command or [])}
        if name:
            body["name"] = name
        if cpu is not None:
            body["cpu"] = cpu
        if memory is not None:
            body["memory"] = memory
        if env:
            body["environment"] = key_value_pairs(env, "--env", "GREETING=hi")
        if expose_port:
            body["exposed_ports"] = _ports(expose_port)
        if restart:
            policy, _, count = restart.partition(":")
            body["restart_policy"] = {"Name": policy, "MaximumRetryCount": count or "0"}
        created: dict[str, Any] = client.call("POST", "/containers?run=true", json=body)
        uuid, shown = created["uuid"], created.get("name", created["uuid"])
        if not wait:
            typer.echo(f"{shown} {uuid} {created.get('status')}")
            return
        last = _wait(client, uuid, f"Starting {shown}", _SETTLED, timeout) or created
        _report_settled(shown, last)


def _report_settled(name: str, c: dict[str, Any]) -> None:
    status = str(c.get("status"))
    console = Console()
    if status == "Running":
        console.print(f"{escape(name)} is {styled_status(status)} ({c.get('uuid')})")
        return
    if status == "Stopped":
        console.print(
            f"{escape(name)} is {styled_status(status)}: its command has ended; see "
            f"`berth container logs {escape(name)}`."
        )
        return
    reason = c.get("status_reason") or "no reason given"
    raise CliError(f"{name} is {status}: {reason}")


@app.command("ls")
def list_(
    ctx: typer.Context,
    all_projects: Annotated[
        bool, typer.Option("--all-projects", help="Admins: every project.")
    ] = False,
) -> None:
    """List the project's containers."""
    with reported(), client_from(ctx) as client:
        query = "?all_projects=true" if all_projects else ""
        found = client.call("GET", f"/containers{query}")["containers"]
        if not found:
            typer.echo("No containers. Create one with: berth container run IMAGE [COMMAND]")
            return
        Console().print(container_table(found, with_project=all_projects))


@app.command()
def show(ctx: typer.Context, name: Name) -> None:
    """Show one container, with its status reason."""
    with reported(), client_from(ctx) as client:
        Console().print(detail_table(_show(client, name)))


@app.command()
def logs(
    ctx: typer.Context,
    name: Name,
    tail: Annotated[str, typer.Option(help="Lines from the end, or 'all'.")] = "all",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until it stops.")
    ] = False,
) -> None:
    """Print the container's output; with -f, follow it until the container stops (or Ctrl-C)."""
    with reported(), client_from(ctx) as client:
        if follow:
            out = typer.get_binary_stream("stdout")
            path = f"/containers/{name}/logs?tail={tail}&follow=True"
            with contextlib.suppress(KeyboardInterrupt):
                for chunk in client.stream(path, what=f"container {name}"):
                    out.write(chunk)
                    out.flush()
            return
        text = client.call("GET", f"/containers/{name}/logs?tail={tail}", what=f"container {name}")
        typer.echo(text or "", nl=False)


@app.command("exec", context_settings=_ARGS_AFTER_IMAGE)
def exec_(
    ctx: typer.Context,
    name: Name,
    command: Annotated[
        list[str] | None, typer.Argument(help="Command and its arguments (-it: default sh).")
    ] = None,
    interactive: Annotated[
        bool, typer.Option("--interactive", "-i", help="Keep stdin open (use with -t).")
    ] = False,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="A terminal for the command.")] = False,
) -> None:
    """Run a command in a running container; exits with the command's exit code.

    With -it, the command gets a terminal wired to yours (like docker exec -it); type
    ~. after Enter to leave."""
    with reported(), client_from(ctx) as client:
        if interactive or tty:
            from berth.cli.terminal import interactive_exec

            interactive_exec(client, name, shlex.join(command or ["sh"]))
            return
        if not command:
            raise CliError("give the command to run, e.g. `berth container exec web ls /`.", 2)
        result = client.call(
            "POST",
            f"/containers/{name}/execute?run=true",
            json={"command": shlex.join(command)},
            what=f"container {name}",
        )
        typer.echo(result.get("output") or "", nl=False)
        code = result.get("exit_code")
        if isinstance(code, int) and code != 0:
            raise typer.Exit(code)


def _act(ctx: typer.Context, name: str, action: str, wait: bool, timeout: float, want: str) -> None:
    with reported(), client_from(ctx) as client:
        client.call("POST", f"/containers/{name}/{action}", what=f"container {name}")
        if not wait:
            typer.echo(f"{action} of {name} requested")
            return
        last = _wait(client, name, f"{action.capitalize()} {name}", {want, "Error"}, timeout)
        if last and last.get("status") != want:
            raise CliError(f"{name} is {last.get('status')}: {last.get('status_reason')}")
        Console().print(f"{escape(name)} is {styled_status(want)}")


@app.command()
def stop(ctx: typer.Context, name: Name, wait: Wait = False, timeout: Timeout = 120.0) -> None:
    """Stop a running container."""
    _act(ctx, name, "stop", wait, timeout, "Stopped")


@app.command()
def start(ctx: typer.Context, name: Name, wait: Wait = False, timeout: Timeout = 120.0) -> None:
    """Start a stopped container."""
    _act(ctx, name, "start", wait, timeout, "Running")


@app.command()
def rm(
    ctx: typer.Context,
    name: Name,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Remove whatever its state.")
    ] = False,
    stop_first: Annotated[bool, typer.Option("--stop", help="Stop it first if running.")] = False,
    wait: Wait = False,
    timeout: Timeout = 120.0,
) -> None:
    """Delete a container (--stop to stop a running one first, --force in any state)."""
    with reported(), client_from(ctx) as client:
        params = "?force=true" if force else "?stop=true" if stop_first else ""
        client.call("DELETE", f"/containers/{name}{params}", what=f"container {name}")
        if wait:
            _wait(client, name, f"Deleting {name}", None, timeout)
            typer.echo(f"{name} is deleted")
        else:
            typer.echo(f"delete of {name} requested")
