"""``berth sim-pool``: many simulated agents against a real control plane (capacity tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Annotated

import typer

__all__ = ["sim_pool"]


def sim_pool(
    agents: Annotated[int, typer.Option(min=1, help="How many simulated hosts to run.")] = 100,
    control_url: Annotated[
        str | None,
        typer.Option(help="The control plane's base URL (default: BERTH_CONTROL_URL)."),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Hosts are named sim-<prefix>-<n>.")] = "p",
    first: Annotated[
        int, typer.Option(min=0, help="The first <n>: give each process its own range.")
    ] = 0,
    cpus: Annotated[int, typer.Option(min=1, help="CPUs each host registers.")] = 32,
    memory: Annotated[int, typer.Option(min=1, help="MiB of memory each host registers.")] = 131072,
    disk: Annotated[int, typer.Option(min=1, help="GiB of disk each host registers.")] = 1000,
    ramp: Annotated[
        float, typer.Option(min=0, help="Seconds over which the agents start, evenly.")
    ] = 10.0,
    token_per_agent: Annotated[
        bool,
        typer.Option(help="Each agent logs in itself instead of sharing the process's token."),
    ] = False,
    connections: Annotated[
        int | None,
        typer.Option(
            min=1, help="Size of the shared HTTP connection pool (default 2 per agent + 16)."
        ),
    ] = None,
    stats: Annotated[
        bool, typer.Option(help="Print the pool's counts as a JSON line every 2 s.")
    ] = True,
) -> None:
    """Run simulated agents: the real agent loop and HTTP client over instant in-memory engines.

    Every agent registers a made-up host, heartbeats, long-polls its desired
    state and reports, as a standalone berth-agent does, with the agents'
    service password (BERTH_AGENT_PASSWORD or <data_dir>/agent-password).
    Containers "start" at once and run nowhere. Start several processes with
    distinct --first (or --prefix) to spread a large pool over cores. Ctrl-C stops.
    Logs go to stderr, the counts to stdout.
    """
    # Imported here, not at the top: the agent and the control plane's modules take
    # ~1.4 s to import, and every `berth` command (a `--help`, a `container list`)
    # imports this module to register the command.
    from berth.agent.simpool import PoolOptions, SimPool, run_until_cancelled
    from berth.cli.serve import agent_password
    from berth.config import load_settings
    from berth.runtimes.fake import InstantDriver

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings()
    url = control_url or settings.control_url
    if not url:
        raise typer.BadParameter("give --control-url or set BERTH_CONTROL_URL")
    options = PoolOptions(
        control_url=url,
        password=agent_password(settings),
        agents=agents,
        prefix=prefix,
        first=first,
        ramp=ramp,
        token_per_agent=token_per_agent,
        connections=connections,
    )
    pool = SimPool(settings, options, lambda _host: InstantDriver(cpus, memory, disk))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_until_cancelled(pool, sys.stdout if stats else None))
