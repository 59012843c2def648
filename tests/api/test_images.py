"""The image API, the image store's tenancy and commit, through the real app with an
in-memory agent (FakeDriver), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from berth.config import Settings
from berth.runtimes.fake import FakeDriver
from berth.services.images import images as images_service
from berth.store.base import new_uuid, utcnow
from berth.store.tables import ImageRow, ProjectRow
from tests.api.conftest import IMAGE
from tests.helpers import make_member
from tests.helpers import zun_headers as h

STORE = "127.0.0.1:5999"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "image_store": STORE,
            "image_store_username": "berth",
            "image_store_password": "store-pw",
        }
    )


@pytest.fixture
async def tokens(client: httpx.AsyncClient, admin_token: str) -> dict[str, str]:
    return {
        "admin": admin_token,
        "alice": await make_member(client, admin_token, "team-a", "alice"),
        "bob": await make_member(client, admin_token, "team-b", "bob"),
    }


async def project_id(app: FastAPI, name: str) -> str:
    async with app.state.berth.db.read() as session:
        row = (
            await session.execute(select(ProjectRow).where(ProjectRow.name == name))
        ).scalar_one()
    return row.id


async def store_image(app: FastAPI, project: str, repo: str, tag: str, public: bool = False) -> str:
    row = ImageRow(
        uuid=new_uuid(),
        project_id=project,
        user_id="u",
        repo=repo,
        tag=tag,
        host=None,
        image_id="sha256:" + "0" * 64,
        size=10,
        visibility="public" if public else "private",
        status="active",
    )
    async with app.state.berth.db.transaction() as session:
        session.add(row)
    return row.uuid


async def wait_status(
    client: httpx.AsyncClient, token: str, ident: str, want: str
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(200):
        body = (await client.get(f"/container/v1/containers/{ident}", headers=h(token))).json()
        if body.get("status") == want:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{ident} never reached {want}: {body}")


async def test_pull_list_show_delete_on_a_host(
    client: httpx.AsyncClient, tokens: dict[str, str], runtime: FakeDriver
) -> None:
    a = h(tokens["admin"])
    runtime.pullable.add("library/nginx:1.25")
    r = await client.post(
        "/container/v1/images/", json={"repo": "library/nginx:1.25", "host": "test-host"}, headers=a
    )
    assert r.status_code == 202, r.text
    image = r.json()
    assert image["status"] == "active" and image["image_id"].startswith("sha256:")
    assert (image["repo"], image["tag"], image["host"]) == ("library/nginx", "1.25", "test-host")
    assert r.headers["location"].endswith(f"/v1/images/{image['uuid']}")
    listed = (await client.get("/container/v1/images/", headers=a)).json()["images"]
    assert [i["uuid"] for i in listed] == [image["uuid"]]
    shown = await client.get(f"/container/v1/images/{image['uuid']}", headers=a)
    assert shown.json()["repo"] == "library/nginx"
    r = await client.delete(f"/container/v1/images/{image['uuid']}", headers=a)
    assert r.status_code == 200 and r.json() is None
    assert "library/nginx:1.25" not in runtime.images
    assert (await client.get(f"/container/v1/images/{image['uuid']}", headers=a)).status_code == 404

    r = await client.post(
        "/container/v1/images", json={"repo": "nope/missing", "host": "test-host"}, headers=a
    )
    assert r.status_code == 202 and r.json()["status"] == "error"
    assert "not found" in r.json()["status_reason"]
    r = await client.post("/container/v1/images", json={"repo": "x/y", "host": "ghost"}, headers=a)
    assert r.status_code == 400
    r = await client.post("/container/v1/images", json={"repo": "x/y"}, headers=a)
    assert r.status_code == 400


async def test_members_may_search_but_not_manage_images(
    app: FastAPI, client: httpx.AsyncClient, tokens: dict[str, str], runtime: FakeDriver
) -> None:
    m = h(tokens["alice"])
    uuid = await store_image(app, await project_id(app, "team-a"), "tools", "1")
    body = {"repo": "busybox", "host": "test-host"}
    assert (await client.post("/container/v1/images", json=body, headers=m)).status_code == 403
    assert (await client.get("/container/v1/images", headers=m)).status_code == 403
    assert (await client.get(f"/container/v1/images/{uuid}", headers=m)).status_code == 403
    assert (await client.delete(f"/container/v1/images/{uuid}", headers=m)).status_code == 403
    r = await client.get("/container/v1/images/tools/search?image_driver=None", headers=m)
    assert r.status_code == 200 and [x["id"] for x in r.json()] == [uuid]


async def test_store_images_are_private_to_their_project_unless_public(
    app: FastAPI, client: httpx.AsyncClient, tokens: dict[str, str], runtime: FakeDriver
) -> None:
    team_a, team_b = await project_id(app, "team-a"), await project_id(app, "team-b")
    await store_image(app, team_a, "app", "1")
    await store_image(app, team_b, "secret", "1")
    await store_image(app, "admin-project", "base", "1", public=True)
    a = h(tokens["alice"])
    runtime.pullable |= {f"{STORE}/{team_a}/app:1", f"{STORE}/public/base:1"}
    runtime.credentials[STORE] = ("berth", "store-pw")

    async def create(image: str, driver: str = "glance") -> httpx.Response:
        body = {"image": image, "image_driver": driver, "memory": 64}
        return await client.post("/container/v1/containers?run=true", json=body, headers=a)

    own = await create("app:1")
    assert own.status_code == 202, own.text
    public = await create("base:1")
    assert public.status_code == 202, public.text
    theirs = await create("secret:1")
    assert theirs.status_code == 400 and "not in the image store" in theirs.text
    direct = await create(f"{STORE}/{team_b}/secret:1", driver="docker")
    assert direct.status_code == 400 and "image_driver=glance" in direct.text

    r = await client.get("/container/v1/images/secret/search?image_driver=glance", headers=a)
    assert r.json() == []
    r = await client.get(
        "/container/v1/images/base/search?image_driver=glance&exact_match=True", headers=a
    )
    assert [x["name"] for x in r.json()] == ["base"]
    assert r.json()[0]["metadata"]["visibility"] == "public"

    for created in (own.json(), public.json()):
        await wait_status(client, tokens["alice"], created["uuid"], "Running")
        spec = runtime.containers[created["uuid"]].spec
        assert spec.image.startswith(f"{STORE}/")
    assert runtime.containers[own.json()["uuid"]].spec.image == f"{STORE}/{team_a}/app:1"


async def test_commit_pushes_into_the_callers_project(
    app: FastAPI, client: httpx.AsyncClient, tokens: dict[str, str], runtime: FakeDriver
) -> None:
    a = h(tokens["alice"])
    team_a = await project_id(app, "team-a")
    r = await client.post(
        "/container/v1/containers?run=true", json={"image": IMAGE, "memory": 64}, headers=a
    )
    c = await wait_status(client, tokens["alice"], r.json()["uuid"], "Running")
    url = f"/container/v1/containers/{c['uuid']}/commit"
    assert (
        await client.post(f"{url}?repository=snap&tag=v1", headers=h(tokens["bob"]))
    ).status_code == 404
    r = await client.post(f"{url}?repository=snap&tag=v1", headers=a)
    assert r.status_code == 202, r.text
    image_uuid = r.json()["uuid"]
    ref = f"{STORE}/{team_a}/snap:v1"
    assert runtime.pushed[ref] is not None and runtime.pushed[ref].username == "berth"
    shown = await client.get(f"/container/v1/images/{image_uuid}", headers=h(tokens["admin"]))
    assert shown.json()["status"] == "active" and shown.json()["project_id"] == team_a
    assert (await client.post(f"{url}?repository=Bad Name", headers=a)).status_code == 400
    actions = await client.get(f"/container/v1/containers/{c['uuid']}/container_actions", headers=a)
    assert "commit" in [x["action"] for x in actions.json()["containerActions"]]

    r = await client.post(
        "/container/v1/containers?run=true",
        json={"image": "snap:v1", "image_driver": "glance", "memory": 64},
        headers=a,
    )
    assert r.status_code == 202, r.text
    await wait_status(client, tokens["alice"], r.json()["uuid"], "Running")
    r = await client.post(
        "/container/v1/containers",
        json={"image": "snap:v1", "image_driver": "glance"},
        headers=h(tokens["bob"]),
    )
    assert r.status_code == 400

    await client.post(f"/container/v1/containers/{c['uuid']}/stop", headers=a)
    await wait_status(client, tokens["alice"], c["uuid"], "Stopped")
    r = await client.delete(f"/container/v1/containers/{c['uuid']}", headers=a)
    assert r.status_code == 204
    for _ in range(100):
        if (
            await client.get(f"/container/v1/containers/{c['uuid']}", headers=a)
        ).status_code == 404:
            break
        await asyncio.sleep(0.05)
    r = await client.post(f"{url}?repository=late", headers=a)
    assert r.status_code == 404


async def test_a_project_runs_one_upload_at_once(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """An upload is written whole to the API's disk before it is pushed: a project's
    second one while the first is still arriving is a 403 naming the setting, before
    its archive is read; another project's goes on; the slot frees when the first ends."""
    arriving = asyncio.Event()
    finish = asyncio.Event()

    async def slow_body() -> Any:
        yield b"x" * 65536
        arriving.set()
        await finish.wait()
        yield b"not a tar"

    url = "/container/v1/images/upload?name=app:1"
    first = asyncio.create_task(client.post(url, content=slow_body(), headers=h(tokens["alice"])))
    await asyncio.wait_for(arriving.wait(), 5)
    r = await client.post(url, content=b"not a tar", headers=h(tokens["alice"]))
    assert r.status_code == 403 and "max_uploads_per_project" in r.text, r.text
    r = await client.post(url, content=b"not a tar", headers=h(tokens["bob"]))
    assert r.status_code == 400 and "docker save" in r.text, r.text  # not held up
    finish.set()
    r = await asyncio.wait_for(first, 10)
    assert r.status_code == 400 and "docker save" in r.text, r.text
    r = await client.post(url, content=b"not a tar", headers=h(tokens["alice"]))
    assert r.status_code == 400, r.text  # the slot is free again


async def test_a_project_commits_one_container_at_once(
    app: FastAPI, client: httpx.AsyncClient, tokens: dict[str, str], runtime: FakeDriver
) -> None:
    """A commit holds an engine thread of its host and pushes the image while the
    request waits: a project's second at once is a 403 naming the setting, before
    anything is made for it; another project's goes on; the slot frees when it ends."""
    a = h(tokens["alice"])
    r = await client.post("/container/v1/containers?run=true", json={"image": IMAGE}, headers=a)
    c = await wait_status(client, tokens["alice"], r.json()["uuid"], "Running")
    url = f"/container/v1/containers/{c['uuid']}/commit"
    gate = runtime.gates[f"commit:{c['uuid']}"] = asyncio.Event()
    first = asyncio.create_task(client.post(f"{url}?repository=snap&tag=v1", headers=a))
    await runtime.wait_for(lambda: ("commit", c["uuid"]) in runtime.calls)
    r = await client.post(f"{url}?repository=snap&tag=v2", headers=a)
    assert r.status_code == 403 and "max_commits_per_project" in r.text, r.text
    assert (await client.post(f"{url}?repository=Bad Name", headers=a)).status_code == 400
    async with app.state.berth.db.read() as session:
        tags = (await session.execute(select(ImageRow.tag).where(ImageRow.repo == "snap"))).all()
    assert [t for (t,) in tags] == ["v1"]  # nothing was made for the refused one
    b = h(tokens["bob"])
    r = await client.post("/container/v1/containers?run=true", json={"image": IMAGE}, headers=b)
    theirs = await wait_status(client, tokens["bob"], r.json()["uuid"], "Running")
    r = await client.post(
        f"/container/v1/containers/{theirs['uuid']}/commit?repository=snap&tag=v1", headers=b
    )
    assert r.status_code == 202, r.text  # not held up by alice's
    gate.set()
    assert (await asyncio.wait_for(first, 10)).status_code == 202
    r = await client.post(f"{url}?repository=snap&tag=v2", headers=a)
    assert r.status_code == 202, r.text  # the slot is free again


async def test_a_project_keeps_a_bounded_number_of_images(
    app: FastAPI, client: httpx.AsyncClient, tokens: dict[str, str], runtime: FakeDriver
) -> None:
    """Commits and uploads fill the image store under no quota of Zun's: past
    ``max_images_per_project`` a commit is a 403 before its host does anything, an
    upload before its archive is read; another project is not affected."""
    env = app.state.berth.env
    env.settings = env.settings.model_copy(update={"max_images_per_project": 1})
    a = h(tokens["alice"])
    r = await client.post("/container/v1/containers?run=true", json={"image": IMAGE}, headers=a)
    c = await wait_status(client, tokens["alice"], r.json()["uuid"], "Running")
    url = f"/container/v1/containers/{c['uuid']}/commit"
    assert (await client.post(f"{url}?repository=snap&tag=v1", headers=a)).status_code == 202
    commits = runtime.calls.count(("commit", c["uuid"]))
    r = await client.post(f"{url}?repository=snap&tag=v2", headers=a)
    assert r.status_code == 403 and "max_images_per_project" in r.text, r.text
    assert runtime.calls.count(("commit", c["uuid"])) == commits
    r = await client.post("/container/v1/images/upload?name=app:1", content=b"not a tar", headers=a)
    assert r.status_code == 403 and "max_images_per_project" in r.text, r.text
    assert "administrator" in r.json()["errors"][0]["detail"]  # members cannot delete images
    # An upload that replaces one of its images adds none: read, not refused.
    r = await client.post(
        "/container/v1/images/upload?name=snap:v1", content=b"not a tar", headers=a
    )
    assert r.status_code == 400 and "docker save" in r.text, r.text
    b = h(tokens["bob"])
    r = await client.post("/container/v1/images/upload?name=app:1", content=b"not a tar", headers=b)
    assert r.status_code == 400 and "docker save" in r.text, r.text  # read, not refused


async def test_a_project_keeps_a_bounded_number_of_image_bytes(
    app: FastAPI, client: httpx.AsyncClient, tokens: dict[str, str], runtime: FakeDriver
) -> None:
    """The image store's disk is every project's: past ``max_image_bytes_per_project``
    an upload is a 403 before its archive is read, or once received when its archive
    would pass the bound, and a commit before its host does anything; another project
    is not affected."""
    env = app.state.berth.env
    env.settings = env.settings.model_copy(update={"max_image_bytes_per_project": 1000})
    team_a = await project_id(app, "team-a")
    await store_image(app, team_a, "base", "1")  # 10 bytes stored
    a = h(tokens["alice"])
    upload = "/container/v1/images/upload?name=app:1"
    r = await client.post(upload, content=b"x" * 995, headers=a)  # 10 + 995 > 1000
    assert r.status_code == 403 and "max_image_bytes_per_project" in r.text, r.text
    r = await client.post(upload, content=b"x" * 990, headers=a)  # fits: read, not a tar
    assert r.status_code == 400 and "docker save" in r.text, r.text
    async with app.state.berth.db.transaction() as session:
        row = (await session.execute(select(ImageRow).where(ImageRow.repo == "base"))).scalar_one()
        row.size = 1000
    r = await client.post(upload, content=b"x", headers=a)
    assert r.status_code == 403 and "max_image_bytes_per_project" in r.text, r.text
    r = await client.post("/container/v1/containers?run=true", json={"image": IMAGE}, headers=a)
    c = await wait_status(client, tokens["alice"], r.json()["uuid"], "Running")
    r = await client.post(
        f"/container/v1/containers/{c['uuid']}/commit?repository=snap&tag=v1", headers=a
    )
    assert r.status_code == 403 and "max_image_bytes_per_project" in r.text, r.text
    assert ("commit", c["uuid"]) not in runtime.calls
    b = h(tokens["bob"])
    r = await client.post(upload, content=b"x" * 990, headers=b)
    assert r.status_code == 400 and "docker save" in r.text, r.text  # read, not refused


async def test_a_pull_or_commit_whose_api_stopped_ends_in_error(
    app: FastAPI, client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """A pull or commit is ``pulling``/``saving`` while its API process waits for the
    host; a process that stopped meanwhile left it so for ever (and counting against
    ``max_images_per_project``). The worker marks those older than any call could wait
    ``error``, saying what to do; one still in its time is left alone."""
    env = app.state.berth.env
    team_a = await project_id(app, "team-a")
    old = utcnow() - dt.timedelta(seconds=env.settings.image_pull_timeout + 120)
    rows = {}
    async with app.state.berth.db.transaction() as session:
        for name, status, created in (
            ("stuck-commit", "saving", old), ("stuck-pull", "pulling", old),
            ("running", "saving", utcnow()), ("done", "active", old),
        ):  # fmt: skip
            row = ImageRow(
                uuid=new_uuid(), project_id=team_a, user_id="u", repo=name, tag="1",
                host=None, status=status, created_at=created,
            )  # fmt: skip
            session.add(row)
            rows[name] = row.uuid
    assert await images_service.fail_interrupted(env) == 2
    want = {"stuck-commit": "error", "stuck-pull": "error", "running": "saving", "done": "active"}
    for name in rows:
        shown = await client.get(f"/container/v1/images/{rows[name]}", headers=h(tokens["admin"]))
        assert shown.json()["status"] == want[name], (name, shown.text)
    shown = await client.get(
        f"/container/v1/images/{rows['stuck-commit']}", headers=h(tokens["admin"])
    )
    assert "Delete the image" in shown.json()["status_reason"]


async def test_upload_is_refused_before_the_archive_is_read(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    r = await client.post(
        "/container/v1/images/upload?public=true", content=b"x" * 1024, headers=h(tokens["bob"])
    )
    assert r.status_code == 403 and "image:upload:public" in r.text
    r = await client.post(
        "/container/v1/images/upload?name=app:1", content=b"not a tar", headers=h(tokens["bob"])
    )
    assert r.status_code == 400 and "docker save" in r.text
