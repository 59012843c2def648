"""``berth image …``: upload a ``docker save`` archive into the image store; set up the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from berth.cli.containers import client_from, fail, reported

__all__ = ["app"]

app = typer.Typer(help="The image store (Berth's Glance stand-in).", no_args_is_help=True)


@app.command()
def upload(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="A 'docker save -o FILE NAME:TAG' archive.")],
    name: Annotated[
        str | None, typer.Option(help="Store the archive's only image as NAME[:TAG].")
    ] = None,
    public: Annotated[
        bool, typer.Option("--public", help="Usable by every project (admins only).")
    ] = False,
) -> None:
    """Push the images of ARCHIVE into the image store, private to your project (or public).

    Run them with: openstack appcontainer run --image-driver glance NAME:TAG
    """
    if not archive.is_file():
        raise fail(f"{archive} is not a file: create one with 'docker save -o {archive} NAME:TAG'")
    params: dict[str, str] = {"public": "true" if public else "false"}
    if name:
        params["name"] = name
    with reported(), client_from(ctx) as client, archive.open("rb") as body:
        result = client.call(
            "POST",
            "/images/upload",
            what="",
            params=params,
            content=body,
            timeout=httpx.Timeout(1800.0, connect=5.0),
        )
    table = Table("UUID", "Image", "Visibility", "Size", "Digest")
    for image in result["images"]:
        table.add_row(
            image["uuid"],
            f"{image['repo']}:{image['tag']}",
            image["visibility"],
            str(image["size"]),
            str(image["image_id"]),
        )
    Console().print(table)


@app.command("store-config")
def store_config(
    directory: Annotated[Path, typer.Option("--dir", help="The store's directory.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 to serve on.")],
) -> None:
    """Write the image store's docker-registry config (htpasswd auth); print the config path.

    Used by scripts/up, which then runs 'docker-registry serve CONFIG'. The
    password is generated once into DIR/password (mode 0600) and kept.
    """
    from berth.images.store_setup import prepare_store

    files = prepare_store(directory, port)
    typer.echo(str(files.config))
