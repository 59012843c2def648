"""The ``berth`` command (grows with the dashboard/CLI issue)."""

from __future__ import annotations

import typer

from berth.config import load_settings

__all__ = ["app"]

app = typer.Typer(help="Berth: a Zun-compatible container platform.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print Berth's version."""
    typer.echo("berth 0.1.0")


@app.command()
def status() -> None:
    """Say whether the local Berth API answers."""
    import httpx

    settings = load_settings()
    url = f"{settings.effective_public_url}/identity/v3"
    try:
        r = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        typer.echo(f"Berth does not answer at {url} ({exc}). Start it with ./scripts/up.")
        raise typer.Exit(1) from exc
    typer.echo(f"Berth answers at {settings.effective_public_url} (HTTP {r.status_code}).")


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    import asyncio

    from berth.store.db import Database

    async def run() -> None:
        db = Database(load_settings().effective_database_url)
        await db.migrate()
        await db.close()

    asyncio.run(run())
    typer.echo("database schema is up to date")
