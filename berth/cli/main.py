"""The ``berth`` command: ``up``/``down``/``status``, ``container …``, ``cluster …``,
``image …``, ``openstack register``, ``migrate``, ``version``, ``sim-pool``.

Commands that talk to Berth use its HTTP API with the openstack CLI's
credentials (``OS_*`` variables or ``OS_CLOUD``), so they work against any
Berth, local or remote.
"""

from __future__ import annotations

import typer

from berth.cli import clusters, containers, hosts, images, local, openstack, simpool

__all__ = ["app"]

app = typer.Typer(
    help="Berth: a Zun-compatible container platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(containers.app, name="container")
app.add_typer(clusters.app, name="cluster")
app.add_typer(hosts.app, name="host")
app.add_typer(images.app, name="image")
app.add_typer(openstack.app, name="openstack")
app.command()(local.up)
app.command()(local.down)
app.command()(local.status)
app.command("sim-pool")(simpool.sim_pool)


@app.command()
def version() -> None:
    """Print Berth's version."""
    typer.echo("berth 0.1.0")


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    import asyncio

    from berth.config import load_settings
    from berth.store.db import Database

    async def run() -> None:
        db = Database(load_settings().effective_database_url)
        await db.migrate()
        await db.close()

    asyncio.run(run())
    typer.echo("database schema is up to date")
