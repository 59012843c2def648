"""``berth up`` / ``down`` (the repository's scripts) and ``berth status`` (asks the API)."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.markup import escape

import berth
from berth.cli.client import BerthClient, CliError, default_http
from berth.cli.containers import fail
from berth.cli.credentials import CredentialsError, load_credentials
from berth.cli.render import styled_status

__all__ = ["down", "find_repo", "status", "up"]


def find_repo(start: Path | None = None) -> Path | None:
    """The Berth checkout holding ``scripts/up``: the current directory or a parent of it,
    else the checkout this package is installed from (``pip install -e``)."""
    here = (start or Path.cwd()).resolve()
    candidates = [here, *here.parents, Path(berth.__file__).resolve().parents[1]]
    for path in candidates:
        if (path / "scripts" / "up").is_file() and (path / "berth" / "__init__.py").is_file():
            return path
    return None


def _script(name: str) -> None:
    repo = find_repo()
    if repo is None:
        raise fail(
            f"`berth {name}` runs scripts/{name} of a Berth checkout, and none was found here: "
            f"cd into the repository, or run berth-api yourself (see docs/operators.md)."
        )
    code = subprocess.call([str(repo / "scripts" / name)], cwd=repo)
    if code:
        raise fail(f"scripts/{name} failed (exit {code}): see its messages above.", code)


def up() -> None:
    """Start Berth all-in-one in the background (./scripts/up): API, scheduler, agent."""
    _script("up")


def down() -> None:
    """Stop the Berth started by `berth up` (./scripts/down); data and containers stay."""
    _script("down")


def _base_url() -> str:
    try:
        return load_credentials().base_url
    except CredentialsError:
        # Imported here: the settings' model is ~160 ms of every `berth` command's start.
        from berth.config import load_settings

        return load_settings().effective_public_url


def _http(ctx: typer.Context) -> tuple[httpx.Client, bool]:
    if callable(ctx.obj):
        client: httpx.Client = ctx.obj()
        return client, False
    return default_http(), True


def status(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="Berth's base URL (default: OS_AUTH_URL).")
    ] = None,
) -> None:
    """Say whether Berth answers and, with credentials, what runs in your project."""
    console = Console()
    base = (url or _base_url()).rstrip("/")
    http, owned = _http(ctx)
    try:
        try:
            r = http.get(f"{base}/identity/v3", timeout=5.0)
        except httpx.HTTPError as exc:
            raise fail(
                f"cannot reach Berth at {base} ({exc}): start it with ./scripts/up (or berth up)."
            ) from exc
        if r.status_code != 200:
            raise fail(f"{base}/identity/v3 answered {r.status_code}: is this a Berth?")
        console.print(f"Berth answers at [bold]{escape(base)}[/bold]")
        _project_summary(console, http)
    finally:
        if owned:
            http.close()


def _project_summary(console: Console, http: httpx.Client) -> None:
    try:
        creds = load_credentials()
    except CredentialsError:
        console.print("[dim]No OS_* credentials: source .berth/admin-openrc to see more.[/dim]")
        return
    client = BerthClient(creds, http, owns_http=False)
    try:
        found = client.call("GET", "/containers")["containers"]
    except CliError as exc:
        raise fail(exc.message) from exc
    counts = Counter(str(c.get("status")) for c in found)
    summary = ", ".join(f"{n} {styled_status(s)}" for s, n in sorted(counts.items())) or "none"
    project = escape(creds.project_name or client.project_id)
    console.print(f"Project [bold]{project}[/bold] as {escape(creds.username)}: {summary}")
    try:
        services = client.call("GET", "/services")["services"]
    except CliError:
        return  # only admins may list services
    for svc in services:
        state = "green" if svc.get("state") == "up" else "red"
        disabled = " (disabled)" if svc.get("disabled") else ""
        console.print(
            f"  {escape(str(svc.get('binary')))} on {escape(str(svc.get('host')))}: "
            f"[{state}]{svc.get('state')}[/{state}]{disabled}"
        )
