"""A small in-memory Glance: the v2 calls Berth makes, answered as Glance answers them.

Tokens map to projects (``tokens``); an image is visible to its owner's
project, to everyone when public, and to an accepted member when shared.
Fast edge cases (Glance down, oversized images, bad data) run against it;
tests/compat/test_openstack_glance.py drives the real Glance.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import FastAPI

from berth.api.app import create_app
from berth.config import Settings
from berth.images.glance import GlanceAccess, GlanceClient
from berth.services.identity.keystone import KeystoneTokens
from tests.conftest import make_settings
from tests.fakes.keystone import KS, FakeKeystone, token_body

__all__ = [
    "GL",
    "FakeGlance",
    "glance_settings",
    "serving",
    "two_projects_glance",
    "two_projects_keystone",
]

GL = "http://glance.test:9292"


@dataclass
class _Image:
    body: dict[str, Any]
    data: bytes = b""
    members: set[str] = field(default_factory=set)


class FakeGlance:
    """Glance's image API over a dict; ``down`` refuses connections, ``status`` forces answers."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens  # token -> project id
        self.images: dict[str, _Image] = {}
        self.down = False
        self.status: int | None = None
        self.downloads = 0

    def add(
        self,
        name: str,
        owner: str,
        data: bytes,
        *,
        visibility: str = "private",
        size: int | None = None,
        container_format: str = "docker",
    ) -> str:
        """An active image; its id."""
        image_id = str(uuid.uuid4())
        self.images[image_id] = _Image(
            {
                "id": image_id,
                "name": name,
                "status": "active",
                "container_format": container_format,
                "disk_format": "raw",
                "size": len(data) if size is None else size,
                "checksum": hashlib.md5(data, usedforsecurity=False).hexdigest(),
                "owner": owner,
                "visibility": visibility,
                "tags": [],
            },
            data,
        )
        return image_id

    def _visible(self, image: _Image, project: str) -> bool:
        body = image.body
        return (
            project == "*"  # an admin's token (Berth's service user's, here)
            or body["owner"] == project
            or body["visibility"] in ("public", "community")
            or (body["visibility"] == "shared" and project in image.members)
        )

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.status is not None:
            return httpx.Response(self.status, text="boom")
        token = request.headers.get("x-auth-token", "")
        project = "*" if token.startswith("service-") else self.tokens.get(token)
        if project is None:
            return httpx.Response(401, text="The request you have made requires authentication.")
        parts = request.url.path.strip("/").split("/")  # v2, images, [id, [file]]
        if request.method == "GET" and len(parts) == 2:
            query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
            found = [
                i.body
                for i in self.images.values()
                if self._visible(i, project)
                and all(i.body.get(k) == v for k, v in query.items() if k != "limit")
            ]
            return httpx.Response(200, json={"images": found})
        if request.method == "POST" and len(parts) == 2:
            body = json.loads(request.content)
            image_id = str(uuid.uuid4())
            made = {"id": image_id, "status": "queued", "owner": project, "size": None}
            self.images[image_id] = _Image({"visibility": "shared", "tags": [], **body, **made})
            return httpx.Response(201, json=self.images[image_id].body)
        image = self.images.get(parts[2]) if len(parts) > 2 else None
        if image is None or not self._visible(image, project):
            return httpx.Response(404, text="No image found")
        if request.method == "GET" and len(parts) == 3:
            return httpx.Response(200, json=image.body)
        if request.method == "GET":
            self.downloads += 1
            return httpx.Response(200, content=image.data)
        if request.method == "PUT":
            image.data = request.read()
            image.body.update(status="active", size=len(image.data))
            return httpx.Response(204)
        if request.method == "DELETE":
            del self.images[parts[2]]
            return httpx.Response(204)
        return httpx.Response(405)


def two_projects_keystone(*extra: tuple[str, dict[str, Any]]) -> FakeKeystone:
    """The fake Keystone's tokens ``alice`` (member of p1), ``bob`` (member of p2) and ``extra``."""
    ks = FakeKeystone()
    ks.valid["alice"] = token_body(["member"], project="p1")
    ks.valid["bob"] = token_body(["member"], user="bob", project="p2")
    ks.valid.update(extra)
    return ks


def two_projects_glance() -> FakeGlance:
    """A fake Glance where the tokens of ``two_projects_keystone`` see p1 and p2."""
    return FakeGlance({"alice": "p1", "bob": "p2"})


def glance_settings(tmp_path: Path, db_url: str, max_bytes: int) -> Settings:
    """Settings of a Berth in an OpenStack cloud: the fake Keystone's tokens, the fake Glance."""
    return make_settings(
        tmp_path,
        db_url,
        identity_backend="keystone",
        keystone_url=KS,
        keystone_service_password=FakeKeystone.SERVICE_PASSWORD,
        glance_url=GL,
        glance_image_max_bytes=max_bytes,
    )


@asynccontextmanager
async def serving(
    settings: Settings, keystone: FakeKeystone, glance: FakeGlance, max_bytes: int
) -> AsyncIterator[FastAPI]:
    """The API app (no workers) talking to ``keystone`` and ``glance`` in memory."""
    application = create_app(settings, run_workers=False)
    state = application.state.berth
    await state.keystone.aclose()
    await state.env.glance.client.aclose()
    http = httpx.AsyncClient(transport=httpx.MockTransport(keystone.handler))
    state.keystone = KeystoneTokens(settings, http)
    client = GlanceClient(GL, 5, 5, transport=httpx.MockTransport(glance.handler))
    state.env.glance = GlanceAccess(client, state.keystone.service_token, max_bytes)
    try:
        async with application.router.lifespan_context(application):
            yield application
    finally:
        await http.aclose()
        await client.aclose()
